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
from edgecnn.export.runtimes import target_module


def calibration_samples(graph, train_ds, mean: list[float], std: list[float], count: int, seed: int, workers: int) -> list:
    """``count`` training images, un-augmented and normalised, as artifact inputs.

    A seeded shuffle picks them: datasets list images class by class, and the
    first ``count`` would cover only a few classes.
    """
    import torch

    from edgecnn.train.loop import make_loader, prepare

    cpu = torch.device("cpu")
    order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    samples = []
    for x, _ in make_loader(train_ds, [[i] for i in order], workers, cpu):
        if len(x):
            samples.append(graph.calibration_inputs(prepare(x, cpu, mean, std), len(samples)))
    return samples


def export_run(run: Path, target: str, int8: bool = False, channels: str | None = None, calib: int = 256,
               out: Path | None = None) -> dict:
    """Export a trained run for one runtime and measure the artifact with that runtime.

    Args:
        run: the run folder (its best checkpoint, or last if there is no best); a QAT
            run exports to the target it was fine-tuned for, with ``int8``.
        target: ``executorch`` (.pte, XNNPACK), ``openvino`` (.xml + .bin) or ``onnx`` (.onnx).
        int8: post-training INT8 quantization, calibrated on training images.
        channels: a band subset such as ``"RG"``: the artifact takes only those bands.
            ``None``: all bands (plus a presence-mask input for band-aware models).
        calib: calibration images for ``int8``.
        out: folder for the artifact (default ``RUN/export``).

    Returns:
        The sidecar record, plus ``path`` (the artifact) and ``sidecar`` (its JSON file).

    Raises:
        UserError: unknown target, missing backend package, invalid band subset,
            run/checkpoint/data problems, a QAT run exported to another target
            or without ``int8``, or an export the target cannot do.
    """
    module = target_module(target)  # an unknown target fails before anything loads
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
    from edgecnn.export.deployable import deployable
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
        recipe, model, classes, state, quantized = qat.export_source(run, target, int8, channels)
    else:
        recipe, model, classes, state = R.load_trained(run)
    graph = deployable(model, cfg.bands, cfg.image_size, channels)
    train_ds, val_ds, data_classes = build_datasets(cfg, recipe.seed, len(cfg.bands))
    if list(data_classes) != classes:
        raise UserError(f"{run}: the dataset's classes no longer match the ones the run was trained on; "
                        "point data.root at the same dataset")
    calibration = []
    if int8 and quantized is None:
        calibration = calibration_samples(graph, train_ds, cfg.mean, cfg.std, calib, recipe.seed, cfg.workers)

    precision = "int8" if int8 else "fp32"
    folder = Path(out) if out is not None else run / "export"
    path = folder / artifact_name(recipe.model.name, target, precision, graph.subset, module.SUFFIX)
    sections = module.export(graph, path, int8, calibration, quantized=quantized)
    artifact = Artifact(path, [path, *module.companions(path)])

    # Parity with the runtime itself, configured as later stages will run it.
    runtime = module.runtime()
    runner = module.load(path, runtime.get("config"))
    parity = measure(runner, graph, val_ds, cfg.mean, cfg.std, len(classes), cfg.workers)
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
        **sections,  # export settings, quantization (None for fp32), delegation (executorch)
        "parity": parity,
        "source": {"run": str(run), "checkpoint": R.BEST if (run / R.BEST).exists() else R.LAST,
                   "epoch": state.get("epoch"), "torch": torch.__version__, "edgecnn": _compat.version("edgecnn")},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_sidecar(artifact)
    return {**artifact.sidecar, "path": str(path), "sidecar": str(artifact.sidecar_path)}
