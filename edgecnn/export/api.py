"""``export_run``: a trained run -> an artifact for one runtime, its sidecar, and measured parity.

Read top to bottom: check the request, load the run, pick the graph for the
band subset, gather calibration images (INT8), hand the graph to the target's
``export``, reopen what was written with the target's own runtime, measure it
on the validation split, write the sidecar.

A QAT run (``edgecnn qat``, with a ``qat.json``) brings its own quantization:
its fake-quantized model is restored, turned into the target's quantized form
with the ranges it learned, and exported as it is, with no calibration; parity
is then measured against that fake-quantized PyTorch model.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from edgecnn.errors import UserError
from edgecnn.quantize.calibration import calibration_samples, held_out_images  # noqa: F401
from edgecnn.export.runtimes import target_module


def artifact_path(out: Path | None, run: Path, name: str, suffix: str) -> Path:
    """Where the artifact goes: ``out`` itself when it ends in the target's suffix, else ``out/name``.

    Raises:
        UserError: ``out`` ends in another artifact suffix, or is an existing file.
    """
    from edgecnn.export.runtimes import SUFFIXES

    if out is None:
        return run / "export" / name
    out = Path(out)
    if out.suffix.lower() == suffix and not out.is_dir():
        return out
    if out.suffix.lower() in (*SUFFIXES, ".bin", ".json") and not out.is_dir():
        raise UserError(f"--out {out}: a {out.suffix} file, but this target writes {suffix}; "
                        f"give a folder or a path ending in {suffix}")
    if out.is_file():
        raise UserError(f"--out {out} is a file; give a folder or a path ending in {suffix}")
    return out / name


def export_run(run: Path, target: str, int8: bool = False, channels: str | None = None, calib: int = 256,
               out: Path | None = None, max_drop: float | None = None) -> dict:
    """Export a trained run for one runtime and measure the artifact with that runtime.

    Args:
        run: the run folder (its best checkpoint, or last if there is no best); a QAT
            run exports to the target it was fine-tuned for, with ``int8``.
        target: ``executorch`` (.pte, XNNPACK), ``openvino`` (.xml + .bin) or ``onnx`` (.onnx).
        int8: post-training INT8 quantization, calibrated on training images.
        channels: a band subset such as ``"RG"``: the artifact takes only those bands.
            ``None``: all bands (plus a presence-mask input for band-aware models).
        calib: calibration images for ``int8``.
        out: folder for the artifact (default ``RUN/export``), or the artifact's path when it ends
            in the target's suffix (``model.pte``).
        max_drop: accuracy budget in points for ``int8``: when PTQ loses more on held-out
            training images, the layers that cost most are kept in float until it does not
            (``edgecnn.quantize.budget``); the sidecar's ``accuracy_budget`` records how.

    Returns:
        The sidecar record, plus ``path`` (the artifact) and ``sidecar`` (its JSON file).

    Raises:
        UserError: unknown target, missing backend package, invalid band subset,
            run/checkpoint/data problems, a QAT run exported to another target
            or without ``int8``, ``max_drop`` without ``int8`` or with a QAT run, or an export the
            target cannot do.
    """
    module = target_module(target)  # an unknown target fails before anything loads
    if max_drop is not None and (not int8 or max_drop < 0):
        raise UserError(f"--max-drop {max_drop}: an accuracy budget (>= 0 points) for INT8; add --int8"
                        if int8 or max_drop >= 0 else f"--max-drop {max_drop}: give 0 or more points")
    if int8 and calib < 1:
        raise UserError(f"--calib {calib}: INT8 needs at least 1 calibration image; use e.g. --calib 256")

    from edgecnn.quantize import _compat

    # A missing backend fails before minutes of loading and calibration.
    _compat.require(*module.REQUIRES, *(module.REQUIRES_INT8 if int8 else ()),
                    purpose=f"--target {target}{' --int8' if int8 else ''}")

    import torch

    from edgecnn.data import build_datasets
    from edgecnn.data.bands import parse_subset
    from edgecnn.export.artifact import Artifact, artifact_name, write_sidecar
    from edgecnn.models.deployable import deployable
    from edgecnn.export.parity import measure
    from edgecnn.quantize import qat
    from edgecnn.train import run as R

    run = Path(run)
    recipe = R.read_run_recipe(run)
    cfg = recipe.data
    if channels is not None:
        parse_subset(channels, cfg.bands)  # a typo fails before the checkpoint loads
    quantized = None  # (module, quantization section) of a QAT run
    if qat.is_qat_run(run):
        if max_drop is not None:
            raise UserError(f"--max-drop with a QAT run ({run}): its ranges are learned, nothing is calibrated; "
                            "export the float run with --max-drop, or drop it")
        recipe, model, classes, state, quantized = qat.export_source(run, target, int8, channels)
        channels = None  # a subset (qat --channels) is folded inside the QAT model, which takes every band
    else:
        recipe, model, classes, state = R.load_trained(run)
    graph = deployable(model, cfg.bands, cfg.image_size, channels)
    if quantized is not None and quantized[1].get("channels"):
        from edgecnn.data.bands import parse_subset, subset_name

        graph.subset = subset_name(parse_subset(quantized[1]["channels"], cfg.bands), cfg.bands)
        graph.how = (f"folded: DynamicConv2D stem folded for {graph.subset} and fine-tuned (QAT); the image input "
                     "carries every band, the graph reads only the subset's")
    train_ds, val_ds, data_classes = build_datasets(cfg, recipe.seed, len(cfg.bands))
    if list(data_classes) != classes:
        raise UserError(f"{run}: the dataset's classes no longer match the ones the run was trained on; "
                        "point data.root at the same dataset")
    calibration = []
    if int8 and quantized is None:
        calibration = calibration_samples(graph, train_ds, cfg.mean, cfg.std, calib, recipe.seed, cfg.workers)

    precision = "int8" if int8 else "fp32"
    path = artifact_path(out, run, artifact_name(recipe.model.name, target, precision, graph.subset, module.SUFFIX),
                         module.SUFFIX)
    runtime = module.runtime()
    budget = None
    if max_drop is not None:
        sections, budget = _within_budget(module, graph, path, calibration, train_ds, cfg, recipe.seed, calib,
                                          max_drop, runtime)
    else:
        sections = module.export(graph, path, int8, calibration, quantized=quantized)
    artifact = Artifact(path, [path, *module.companions(path)])

    # Parity with the runtime itself, configured as later stages will run it.
    runner = module.load(path, runtime.get("config"))
    parity = measure(runner, graph, val_ds, cfg.mean, cfg.std, len(classes), cfg.workers)
    if budget is not None:
        drop = 100 * (parity["pytorch"]["accuracy"] - parity["artifact"]["accuracy"])
        budget["val_drop_points"] = round(drop, 3)
        budget["val_within_budget"] = drop <= max_drop + 1e-9
        plain_val = budget.pop("_plain_val")
        if budget["float_layers"]:
            budget["val_before"] = plain_val(val_ds, classes)
        budget.pop("_scratch")()
    if quantized is not None:
        parity["reference"] = "the run's fake-quantized PyTorch model (QAT, learned ranges), all bands"

    if sections.get("quantization") and quantized is None:
        sections["quantization"]["calibration_split"] = "train, un-augmented, seeded shuffle"
    artifact.sidecar = {
        "artifact": path.name,
        "files": {f.name: f.stat().st_size for f in artifact.files},
        "size_bytes": artifact.size_bytes,
        "model": recipe.model.name,
        "target": target,
        "precision": precision,
        "runtime": runtime,
        "inputs": [{"name": n, "shape": list(t.shape), "dtype": "float32"}
                   for n, t in zip(graph.input_names, graph.example)],
        "outputs": [{"name": "logits", "shape": [1, len(classes)], "dtype": "float32"}],
        "bands": list(cfg.bands),
        "channels": graph.subset,
        "input_bands": graph.input_bands,
        "band_handling": graph.how,
        "image_size": cfg.image_size,
        "normalization": {"mean": list(cfg.mean), "std": list(cfg.std),
                          "formula": "(pixel / 255 - mean) / std per band; a missing band is 0 after this"},
        "classes": classes,
        "macs": _graph_macs(graph),  # per image, of what was exported (a folded subset's own stem)
        **sections,  # export settings, quantization (None for fp32), delegation (executorch)
        **({"accuracy_budget": budget} if budget is not None else {}),
        "parity": parity,
        "source": {"run": str(run), "checkpoint": R.BEST if (run / R.BEST).exists() else R.LAST,
                   "epoch": state.get("epoch"), "torch": torch.__version__, "edgecnn": _compat.version("edgecnn")},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_sidecar(artifact)
    return {**artifact.sidecar, "path": str(path), "sidecar": str(artifact.sidecar_path)}


def _graph_macs(graph) -> int:
    """Multiply-accumulates of one image through the exported module (``bench`` turns them into GMAC/s)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        graph.module(*graph.example)
    return int(counter.get_total_flops() // 2)


def _within_budget(module, graph, path: Path, calibration: list, train_ds, cfg, seed: int, calib: int,
                   max_drop: float, runtime: dict) -> tuple[dict, dict]:
    """PTQ with the fewest layers in float that keeps the drop on held-out training images within ``max_drop``.

    Every probe is written into a scratch folder beside ``path`` and measured
    with the runtime; the chosen one is moved into place (companions first).

    Returns:
        (the chosen export's sidecar sections, the ``accuracy_budget`` record; its ``_plain_val``
        entry measures the plain PTQ artifact on the validation split, for "before" figures)
    """
    import os
    import shutil
    import tempfile
    import time

    from edgecnn.export.parity import measure
    from edgecnn.quantize import budget as B

    t0 = time.perf_counter()
    images = held_out_images(train_ds, cfg.mean, cfg.std, calib, B.PROBE_IMAGES, seed, cfg.workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.stem}.budget."))
    probes: dict[tuple, tuple[Path, dict]] = {}

    def probe(float_layers: list[str]) -> dict:
        where = scratch / str(len(probes)) / path.name
        where.parent.mkdir()
        sections = module.export(graph, where, True, calibration, float_layers=tuple(float_layers))
        probes[tuple(float_layers)] = (where, sections)
        record = B.measure(module.load(where, runtime.get("config")), graph, images)
        record["size_bytes"] = sum(f.stat().st_size for f in [where, *module.companions(where)])
        return record

    try:
        plain = {"float_layers": [], **probe([])}
        plain["seconds"] = round(time.perf_counter() - t0, 2)
        trials, ranking, rank_seconds = [plain], [], 0.0
        chosen: list[str] = []
        if plain["drop_points"] > max_drop:
            t1 = time.perf_counter()
            names = B.layers(graph.module, graph.keep_float)
            ranking = B.rank(graph.module, names, calibration,
                             [graph.inputs_for(x) for x, _ in images[:B.RANK_IMAGES]])
            rank_seconds = time.perf_counter() - t1
            chosen, more = B.search(probe, [n for n, _ in ranking], max_drop)
            trials += more
            best = next(t for t in more if t["float_layers"] == chosen) if more else plain
            if best["drop_points"] > max_drop and plain["drop_points"] <= best["drop_points"]:
                chosen = []  # nothing met the budget and float layers did not help: plain INT8 is the best
        where, sections = probes[tuple(chosen)]
        for src in [*module.companions(where), where]:  # the file a runtime opens appears last
            os.replace(src, path.parent / src.name)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise

    final = next(t for t in trials if t["float_layers"] == chosen)
    met = final["drop_points"] <= max_drop
    total = sum(p.numel() for p in graph.module.parameters())
    kept = sum(p.numel() for n in chosen for p in graph.module.get_submodule(n).parameters())

    def plain_val(val_ds, classes):
        # The plain PTQ artifact (still in the scratch folder) on the validation split: the "before" of the sidecar.
        try:
            p = measure(module.load(probes[()][0], runtime.get("config")), graph, val_ds, cfg.mean, cfg.std,
                        len(classes), cfg.workers)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"accuracy": p["artifact"]["accuracy"], "top1_agreement": p["top1_agreement"],
                "drop_points": round(100 * (p["pytorch"]["accuracy"] - p["artifact"]["accuracy"]), 3)}

    record = {
        "max_drop_points": max_drop,
        "met": met,
        "selection_split": f"train: {len(images)} un-augmented images held out from calibration (seeded shuffle); "
                           "ranking and probes never see the validation split that parity reports",
        "ranking": "per layer: input (uint8 per tensor) and weight (int8 per channel) fake-quantized alone in "
                   f"PyTorch, mean squared logit change on {min(len(images), B.RANK_IMAGES)} of those images",
        "float_layers": chosen,
        "float_params_fraction": round(kept / max(total, 1), 4),
        "before": {k: plain[k] for k in ("accuracy", "reference_accuracy", "top1_agreement", "drop_points",
                                          "size_bytes")},
        "after": {k: final[k] for k in ("accuracy", "reference_accuracy", "top1_agreement", "drop_points",
                                         "size_bytes")},
        "probes": [{k: t[k] for k in ("float_layers", "drop_points", "top1_agreement", "size_bytes", "seconds")}
                   for t in trials],
        "ranked": [{"layer": n, "cost": round(c, 6)} for n, c in ranking],
        "rank_seconds": round(rank_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "_plain_val": plain_val,
        "_scratch": lambda: shutil.rmtree(scratch, ignore_errors=True),
    }
    if not met:
        record["note"] = (f"no selection of float layers within {B.MAX_PROBES} probes kept the drop within "
                          f"{max_drop} points; kept the best ({final['drop_points']:.2f} points); "
                          "try edgecnn qat for this target")
    return sections, record
