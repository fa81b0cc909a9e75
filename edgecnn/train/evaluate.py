"""Evaluate a trained run on its validation split and write ``eval.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgecnn.core import contracts as C
from edgecnn.errors import UserError
from edgecnn.train import run as R
from edgecnn.train.checkpoint import atomic_write_text
from edgecnn.train.sensor import for_sensor, own_sensor
from edgecnn.train.loop import EvalSettings, evaluate, evaluate_subsets, is_band_robust, own_subsets
from edgecnn.data import build_datasets, skip_record, skip_summary
from edgecnn.data.bands import judged_subsets, parse_subset, presence_mask
from edgecnn.models.registry import takes_mask
from edgecnn.models.stats import measure_cost
from rich.table import Table


def evaluate_run(run: Path, which: str = "best", channels: str | None = None, loaded: tuple | None = None,
                 overrides: dict[str, Any] | None = None, norm: str | None = None) -> dict:
    """Accuracy, macro precision/recall/F1, params and MACs of a run's checkpoint.

    Band-robust runs (trained on band subsets, or with a band-aware stem) are
    also evaluated on every non-empty band subset, missing bands zero-filled,
    as in the paper's Table 2. The result is written to ``run/eval.json``.

    Args:
        run: the run folder.
        which: ``"best"`` or ``"last"`` checkpoint.
        channels: ``None`` (full bands, plus every subset for band-robust runs),
            ``"all"`` (every subset, for any run) or one subset such as ``"RG"``.
        loaded: ``(recipe, model, classes, state)`` already loaded by the caller: a QAT run's
            fake-quantized model (``quantize.qat.load_qat``), which training code does not import.
        overrides: ``data.*`` settings to evaluate on instead of the run's: another folder, or
            another sensor (``data.bands``; wavelength-conditioned models only, see ``train.sensor``).
            The result then goes to ``eval-<sensor>.json``, leaving the run's own ``eval.json``.
        norm: for another sensor: ``files`` (its own statistics, the default) or ``interpolate``.

    Raises:
        UserError: not a run, missing/damaged checkpoint, an unknown or empty
            band subset, data problems, or overrides the run cannot take (``train.sensor.for_sensor``).
    """
    run = Path(run)
    qat = C.is_qat_run(run)
    if qat and loaded is None:
        raise UserError(f"{run}: a QAT run; evaluate it with edgecnn eval (it loads the fake-quantized model)")
    # A QAT run: its fake-quantized model, which is what its INT8 export computes.
    recipe, model, classes, state = loaded if loaded is not None else R.load_trained(run, which)
    if overrides:
        recipe, sensor = for_sensor(recipe, model, overrides, norm)
    else:
        sensor = own_sensor(recipe)
    cfg = recipe.data
    subsets = _subsets(channels, recipe, model)  # validates before any work
    device = R.pick_device(recipe.train.device)
    _, val_ds, data_classes = build_datasets(cfg, recipe.seed, len(cfg.bands))
    if list(data_classes) != classes:
        raise UserError(f"{run}: the dataset's classes no longer match the ones the run was trained on; "
                        "point data.root at the same dataset")
    kw = dict(how=EvalSettings(batch_size=recipe.train.batch_size, workers=cfg.workers, device=device))
    model = model.to(device)
    metrics = evaluate(model, val_ds, len(classes), cfg.mean, cfg.std, **kw)
    per_subset = evaluate_subsets(model, val_ds, len(classes), cfg.mean, cfg.std, cfg.bands, subsets, **kw)
    own = _own_subsets(model, val_ds, len(classes), cfg, kw)  # on the device, before the cost moves the model
    cost = _cost(recipe, model.cpu(), len(classes), qat)
    keys = ("accuracy", "precision", "recall", "f1", "loss", "images")
    result = {
        "model": recipe.model.name,
        "run": str(run),
        "checkpoint": "best" if C.checkpoint(run, which).name == C.BEST else "last",
        "epoch": state[C.CKPT_EPOCH],
        "split": "val",
        "fake_quantized": qat,
        **{k: metrics[k] for k in keys},
        "params": cost.params,
        "macs": cost.macs,
        "input_size": cfg.image_size,
        "bands": cfg.bands,
        "sensor": sensor,  # the bands with wavelengths it was measured on, and their normalisation
        "num_classes": len(classes),
        "subsets": {name: {k: m[k] for k in keys} for name, m in per_subset.items()},
        # The images grouped by the bands their own files carry (lost bands in the files), when any lack one.
        "file_subsets": {name: {k: m[k] for k in keys} for name, m in own.items()},
        "device": str(device),
        "torch": torch.__version__,
    }
    if getattr(val_ds, "skipped", None):  # files the split left out (unreadable, over the pixel limit, all nodata)
        result["skipped"] = skip_record(val_ds.skipped, val_ds.skip_reasons)
        result["skipped"]["summary"] = skip_summary(val_ds.skipped, val_ds.skip_reasons, cfg.max_pixels)
    out = run / (C.eval_file(sensor["name"]) if overrides else R.EVAL)
    atomic_write_text(out, json.dumps(result, indent=2))
    return result


def _own_subsets(model, val_ds, num_classes: int, cfg, kw: dict) -> dict[str, dict]:
    """``evaluate`` on each group of validation images that share the same bands in their files."""
    from torch.utils.data import Subset

    groups = own_subsets(val_ds, cfg.bands, cfg.workers)
    return {name: evaluate(model, Subset(val_ds, idx), num_classes, cfg.mean, cfg.std, **kw)
            for name, idx in sorted(groups.items(), key=lambda g: -len(g[1]))}


def _subsets(channels: str | None, recipe, model) -> list[list[str]]:
    """The band subsets ``channels`` asks for (``None``: every subset for band-robust runs, else none)."""
    bands = recipe.data.bands
    if channels is None:
        return judged_subsets(bands) if is_band_robust(recipe, model) else []
    if channels.strip().lower() == "all":
        return judged_subsets(bands)
    return [parse_subset(channels, bands)]


def _cost(recipe, model, num_classes: int, qat: bool):
    """Params and MACs of the architecture: a QAT graph adds quantizer scales, not weights a device stores."""
    cfg = recipe.data
    arch = R.build_for_recipe(recipe, num_classes) if qat else model
    extra = (presence_mask(cfg.bands, cfg.bands),) if takes_mask(arch) else ()
    return measure_cost(arch, cfg.image_size, len(cfg.bands), *extra)


def paper_table(rows: list[dict], title: str = "", first: str = "model") -> "rich.table.Table":  # noqa: F821
    """Rows in the paper's column order: Accuracy, Precision, Recall, F1-score, then MACs and Params
    where the rows carry them (the per-subset table, like the paper's Table 2, has neither)."""
    cost = all("macs" in r for r in rows)
    table = Table(title=title or None)
    cols = [first, "Accuracy", "Precision", "Recall", "F1-score"] + (["MACs", "Params"] if cost else [])
    for col in cols:
        table.add_column(col, justify="left" if col == first else "right")
    for r in rows:
        cells = [r[first], f"{r['accuracy']:.2%}", f"{r['precision']:.2%}", f"{r['recall']:.2%}", f"{r['f1']:.2%}"]
        if cost:
            cells += [f"{r['macs'] / 1e9:.3f} G", f"{r['params'] / 1e6:.3f} M"]
        table.add_row(*cells)
    return table
