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
from edgecnn.train.sensor import for_sensor, matched_sensor, own_sensor
from edgecnn.train.loop import EvalSettings, evaluate, evaluate_sources, evaluate_subsets, is_band_robust, own_subsets
from edgecnn.data import build_datasets, skip_record, skip_summary
from edgecnn.data.sources import build_sources
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
            another sensor (``data.bands``): a wavelength-conditioned model regenerates its stem for it
            (``train.sensor``); any other model gets the sensor's bands matched into its own slots by name
            or nearest wavelength, the rest zero-filled and masked (``_evaluate_matched``).
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
    if overrides and matched_sensor(recipe, model, overrides):  # another sensor, a model that reads bands by position
        if channels is not None:
            raise UserError("--channels with another sensor's bands: they are matched to the run's slots; drop one")
        return _evaluate_matched(run, which, recipe, model, classes, state, qat, overrides)
    if recipe.data.sources and not overrides:
        return _evaluate_sources(run, which, channels, recipe, model, classes, state, qat)
    if recipe.data.sources:  # another folder for a run over several: its first source's settings, overridden
        recipe = recipe.model_copy(update={"data": recipe.data.source_configs()[0]})
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
    result = _result(run, which, recipe, state, qat, metrics, cost, cfg, len(classes), device,
                     sensor=sensor,  # the bands with wavelengths it was measured on, and their normalisation
                     subsets={name: {k: m[k] for k in _KEYS} for name, m in per_subset.items()},
                     # The images grouped by the bands their own files carry (lost bands in the files).
                     file_subsets={name: {k: m[k] for k in _KEYS} for name, m in own.items()})
    if getattr(val_ds, "skipped", None):  # files the split left out (unreadable, over the pixel limit, all nodata)
        result["skipped"] = skip_record(val_ds.skipped, val_ds.skip_reasons)
        result["skipped"]["summary"] = skip_summary(val_ds.skipped, val_ds.skip_reasons, cfg.max_pixels)
    out = run / (C.eval_file(sensor["name"]) if overrides else R.EVAL)
    atomic_write_text(out, json.dumps(result, indent=2))
    return result


_KEYS = ("accuracy", "precision", "recall", "f1", "loss", "images")


def _evaluate_sources(run: Path, which: str, channels: str | None, recipe, model, classes: list[str], state: dict,
                      qat: bool) -> dict:
    """``evaluate_run`` of a run over several sources: the figures over all of them at the top, and per source
    (``sources``: its bands, figures, band subsets and the files' own lost-band groups)."""
    cfg = recipe.data
    sources, data_classes = build_sources(cfg, recipe.seed)
    if list(data_classes) != classes:
        raise UserError(f"{run}: the sources' classes no longer match the ones the run was trained on; "
                        "point data.sources at the same folders")
    wanted = {s.name: _source_subsets(channels, recipe, model, s) for s in sources}
    if channels is not None and not any(wanted.values()):  # a subset no source has: the first one's error
        parse_subset(channels, sources[0].cfg.bands)
    device = R.pick_device(recipe.train.device)
    kw = dict(how=EvalSettings(batch_size=recipe.train.batch_size, workers=cfg.workers, device=device))
    model = model.to(device)
    overall, per = evaluate_sources(model, sources, len(classes), lambda s: wanted[s.name], **kw)
    per_source = {}
    for s in sources:
        own = _own_subsets(model, s.val, len(classes), s.cfg, kw)
        m = per[s.name]
        per_source[s.name] = {
            "root": str(s.cfg.root), "bands": s.cfg.bands, **{k: m[k] for k in _KEYS},
            "subsets": {name: {k: v[k] for k in _KEYS} for name, v in m["subsets"].items()},
            "file_subsets": {name: {k: v[k] for k in _KEYS} for name, v in own.items()},
        }
        if getattr(s.val, "skipped", None):
            per_source[s.name]["skipped"] = skip_record(s.val.skipped, s.val.skip_reasons) | {
                "summary": skip_summary(s.val.skipped, s.val.skip_reasons, cfg.max_pixels)}
    cost = _cost(recipe, model.cpu(), len(classes), qat)  # of the first source's band count, as exported
    result = _result(run, which, recipe, state, qat, overall, cost, cfg, len(classes), device,  # over every source
                     subsets={}, file_subsets={}, sources=per_source)  # per source: in sources
    atomic_write_text(run / R.EVAL, json.dumps(result, indent=2))
    return result


def _evaluate_matched(run: Path, which: str, recipe, model, classes: list[str], state: dict, qat: bool,
                      overrides: dict[str, Any]) -> dict:
    """``evaluate_run`` on another sensor's folder, for a model that knows bands by position only.

    Each of the folder's bands goes into the slot of the run's band with the same name or the nearest
    centre wavelength (``core.sensors.match_bands``); the run's bands with no match are zero-filled and,
    for a model that takes a band mask, masked: the "without wavelengths" baseline. Values are normalised
    with the run's statistics of the slot they fill, so both sensors' files must be in one unit
    (reflectance x 10,000 for the built-in spectral data). The run's first source is its band list.
    Written to ``eval-<sensor>.json``, as a wavelength model's evaluation on another sensor is.

    Raises:
        UserError: a bad folder or band list (as ``data.root``/``data.bands`` report them), no data.root,
            other class folders, or no band of the folder that matches one of the run's.
    """
    from edgecnn.config.load import validate_recipe
    from edgecnn.core.sensors import bands_text, match_bands
    from edgecnn.data.bands import MatchedBands
    from edgecnn.train.sensor import sensor_name, sensor_record

    trained = recipe.data.source_configs()[0]
    if "data.root" not in overrides:
        raise UserError("another sensor's bands need its files: give data.root=FOLDER (train/ and val/ per class)")
    tree = recipe.model_dump(mode="json") | {"data": trained.model_dump(mode="json") | {"source": "folder"}}
    target = validate_recipe(tree, {**overrides, "data.mean": None, "data.std": None}).data
    _, val_ds, data_classes = build_datasets(target, recipe.seed, len(target.bands))
    if list(data_classes) != classes:
        raise UserError(f"{target.root}: its classes differ from the ones {run} was trained on; give a folder with "
                        f"the same class folders")
    match = match_bands(target.band_specs, trained.band_specs)
    if all(j is None for j in match):
        raise UserError(f"no band of {target.root} ({bands_text(target.band_specs)}) matches one of the run's "
                        f"({bands_text(trained.band_specs)}) by name or wavelength; give the files' bands with "
                        f"their wavelengths (a sensor preset)")
    slots = [match.index(j) if j in match else None for j in range(len(trained.bands))]
    ds = MatchedBands(val_ds, slots)
    device = R.pick_device(recipe.train.device)
    kw = dict(how=EvalSettings(batch_size=recipe.train.batch_size, workers=trained.workers, device=device))
    model = model.to(device)
    metrics = evaluate(model, ds, len(classes), trained.mean, trained.std, **kw)
    own = _own_subsets(model, ds, len(classes), trained, kw)
    cost = _cost(recipe, model.cpu(), len(classes), qat)
    sensor = sensor_record(target.band_specs, trained.band_specs, target.root,
                    {"source": "run (each slot's statistics)", "mean": list(trained.mean), "std": list(trained.std)})
    sensor.update(
        band_match={b.name: (trained.bands[j] if j is not None else None) for b, j in zip(target.band_specs, match)},
        zero_filled=[b for b, k in zip(trained.bands, slots) if k is None],
        how="without wavelengths: each band in the slot of the run's band with the same name or the nearest centre "
            "(core.sensors.match_bands), the other slots zero-filled and masked; the run's normalisation of each slot",
    )
    result = _result(run, which, recipe, state, qat, metrics, cost, trained, len(classes), device, sensor=sensor,
                     subsets={},
                     # The images grouped by the run's bands they fill (a matched band lost in a file leaves its
                     # slot empty).
                     file_subsets={name: {k: m[k] for k in _KEYS} for name, m in own.items()})
    atomic_write_text(run / C.eval_file(sensor_name(target.band_specs)), json.dumps(result, indent=2))
    return result


def _result(run: Path, which: str, recipe, state: dict, qat: bool, metrics: dict, cost, cfg, num_classes: int,
            device, **figures) -> dict:
    """eval.json's record: what was measured and how, ``metrics`` (``_KEYS``) and the other ``figures``."""
    return {
        "model": recipe.model.name, "run": str(run),
        "checkpoint": "best" if C.checkpoint(run, which).name == C.BEST else "last",
        "epoch": state[C.CKPT_EPOCH], "split": "val", "fake_quantized": qat,
        **{k: metrics[k] for k in _KEYS},
        "params": cost.params, "macs": cost.macs, "input_size": cfg.image_size, "bands": cfg.bands,
        "num_classes": num_classes, **figures,
        "device": str(device), "torch": torch.__version__,
    }


def _source_subsets(channels: str | None, recipe, model, source) -> list[list[str]]:
    """``_subsets`` within one source: ``channels`` naming bands the source lacks asks nothing of it."""
    bands = source.cfg.bands
    if channels is not None and channels.strip().lower() != "all":
        try:
            return [parse_subset(channels, bands)]
        except UserError:
            return []
    return _subsets(channels, recipe.model_copy(update={"data": source.cfg}), model)


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
