"""Prune a trained DynamicConv2D stem: drop kernel sets that carry little attention.

The stem's attention spreads each band subset over K kernel sets. Sets that
no subset gives a real share of its attention add parameters (and, unfolded,
mixing work) for nothing. ``prune_run`` measures the mean attention per set and
subset on training images, keeps the sets that reach ``min_share`` for some
subset, and writes the pruned model as a new run folder, with the accuracy on
every subset before and after in ``prune.json``. A pruned ``"mask"`` stem then
folds into a plain convolution per subset (``edgecnn export --channels RG``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from edgecnn.config import dump_recipe
from edgecnn.core import contracts as C
from edgecnn.errors import UserError
from edgecnn.train import run as R
from edgecnn.train.checkpoint import atomic_write_text, save_checkpoint
from edgecnn.train.loop import EvalSettings, evaluate_subsets, prepare
from edgecnn.data import build_datasets, collate
from edgecnn.data.bands import judged_subsets, presence_mask, subset_name
from edgecnn.models.dynamic_conv import band_stem, kernel_usage, kernels_to_keep


def prune_run(run: Path, out: Path | None = None, min_share: float = 0.05, images: int = 512) -> dict:
    """Prune the kernel sets of a run's DynamicConv2D stem into a new run folder.

    Args:
        run: a trained run of a DynamicConv2D model (``*_dynconv``, ``*_dynconv_mask``).
        out: the new run folder (default ``<run>_pruned`` beside it).
        min_share: least mean attention (0..1) a set needs for some subset to stay.
        images: training images used to measure the attention.

    Returns:
        The ``prune.json`` record.

    Raises:
        UserError: the run has no DynamicConv2D stem, or ``out`` already holds a run.
    """
    run = Path(run)
    out = Path(out) if out else run.parent / f"{run.name}_pruned"
    recipe, model, classes, state = _checked(run, out, min_share)
    cfg, bands = recipe.data, recipe.data.bands
    train_ds, val_ds, _ = build_datasets(cfg, recipe.seed, len(bands))
    usage, n = _attention(model, train_ds, cfg, images)
    keep = kernels_to_keep(usage, min_share)

    subsets = judged_subsets(bands)
    kw = dict(how=EvalSettings(batch_size=recipe.train.batch_size, workers=cfg.workers, device=torch.device("cpu")))
    before = evaluate_subsets(model, val_ds, len(classes), cfg.mean, cfg.std, bands, subsets, **kw)
    band_stem(model).prune(keep)
    after = evaluate_subsets(model, val_ds, len(classes), cfg.mean, cfg.std, bands, subsets, **kw)

    record = {
        "from": str(run),
        "min_share": min_share,
        "images": n,
        "kernel_sets_before": len(usage[next(iter(usage))]),
        "kept": keep,
        "usage": {name: [round(float(v), 4) for v in u] for name, u in usage.items()},
        "accuracy_before": {k: m["accuracy"] for k, m in before.items()},
        "accuracy_after": {k: m["accuracy"] for k, m in after.items()},
        "accuracy_change_points": {k: round(100 * (after[k]["accuracy"] - before[k]["accuracy"]), 3) for k in after},
        "stem_filters_near_zero": _near_zero_filters(model, subsets, bands),
        "params_before": sum(p.numel() for p in R.build_for_recipe(recipe, len(classes)).parameters()),
        "params_after": sum(p.numel() for p in model.parameters()),
    }
    _write_pruned(run, out, recipe, model, classes, state, record, len(keep))
    return record


def _checked(run: Path, out: Path, min_share: float) -> tuple:
    """The run's (recipe, model, classes, checkpoint), refused before any work if it cannot be pruned."""
    recipe, model, classes, state = R.load_trained(run)
    if band_stem(model) is None:
        raise UserError(f"{run} holds a {recipe.model.name}; prune works on DynamicConv2D models (*_dynconv*)")
    if not 0 <= min_share < 1:
        raise UserError(f"--min-share {min_share}: give a share of attention between 0 and 1, e.g. 0.05")
    if R.is_run(out) or (out / R.BEST).exists():
        raise UserError(f"{out} already holds a run; remove it or pass --out NEW_DIR")
    return recipe, model, classes, state


def _attention(model, train_ds, cfg, images: int) -> tuple[dict, int]:
    """Mean attention per kernel set and band subset, on ``images`` training images, and their count.

    Un-augmented, as the model sees images at deployment; spread over every class."""
    n = min(images, len(train_ds))
    idx = torch.linspace(0, len(train_ds) - 1, n).long().tolist()
    x, _ = collate([train_ds[i] for i in idx])
    return kernel_usage(band_stem(model), prepare(x, torch.device("cpu"), cfg.mean, cfg.std), cfg.bands), n


def _near_zero_filters(model, subsets: list[list[str]], bands: list[str]) -> dict[str, int]:
    """How many of the stem's filters are near zero once folded for each subset.

    They cannot be removed without narrowing layer1's residual path, so this is measured, not pruned."""
    near_zero = {}
    if band_stem(model).attention_mode == "mask":
        for s in subsets:
            w = band_stem(model).fold(presence_mask(s, bands)).weight.abs().sum(dim=(1, 2, 3))
            near_zero[subset_name(s, bands)] = int((w < 0.01 * w.max()).sum())
    return near_zero


def _write_pruned(run: Path, out: Path, recipe, model, classes: list[str], state: dict, record: dict,
                  kernels: int) -> None:
    """The pruned run folder: best.pt, the float run's env and metrics, prune.json, then recipe.yaml."""
    pruned = recipe.model_copy(update={
        "name": out.name, "model": recipe.model.model_copy(update={"num_kernels": kernels})})
    out.mkdir(parents=True, exist_ok=True)
    # Only best.pt: with no optimizer state a pruned run is for eval and export, not for --resume.
    save_checkpoint(out / R.BEST, {C.CKPT_MODEL: model.state_dict(), C.CKPT_MODEL_NAME: recipe.model.name,
                                   C.CKPT_CLASSES: classes,
                                   C.CKPT_EPOCH: state[C.CKPT_EPOCH], C.CKPT_HISTORY: state.get(C.CKPT_HISTORY, []),
                                   C.CKPT_BANDS: recipe.data.bands, C.CKPT_PRUNED_FROM: str(run)})
    for name in (R.ENV, R.METRICS):
        if (run / name).exists():
            shutil.copyfile(run / name, out / name)
    atomic_write_text(out / "prune.json", json.dumps(record, indent=2))
    atomic_write_text(out / R.RECIPE, dump_recipe(pruned))  # last: its presence marks a complete run folder
