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
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core import contracts as C
from edgecnn.core.progress import Progress, say
from edgecnn.errors import UserError
from edgecnn.quantize.calibration import calibration_samples, held_out_images  # noqa: F401
from edgecnn.export.runtimes import target_module
from edgecnn import backends
from edgecnn.export.artifact import Artifact, artifact_name, write_sidecar
from edgecnn.export.runtimes import SUFFIXES


def artifact_path(out: Path | None, run: Path, name: str, suffix: str) -> Path:
    """Where the artifact goes: ``out`` itself when it ends in the target's suffix, else ``out/name``.

    Raises:
        UserError: ``out`` ends in another artifact suffix, or is an existing file.
    """
    if out is None:
        return run / C.EXPORT_DIR / name
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
               out: Path | None = None, max_drop: float | None = None, bands: str | list | None = None,
               data_root: Path | None = None, norm: str | None = None, mask_input: bool = False) -> dict:
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
            (``edgecnn.quantize.budget``); the sidecar's ``accuracy_budget`` records how. The
            default file name says the budget (``...-int8-maxdrop1.0.pte``), so it never
            replaces the plain PTQ artifact or one made with another budget.
        bands: another sensor's band list (as ``data.bands`` takes it), for a wavelength-conditioned
            model (``*_wave``): its stem is generated for those bands and, unless ``channels`` says
            otherwise, folded into the plain backbone over them. Calibration and parity use that
            sensor's files (``data_root``), normalised as ``norm`` says (``train.sensor``).
        data_root: the sensor's folder (train/ and val/ per class); needed when ``bands`` is not the run's.
        norm: ``files`` (the sensor's own statistics, default) or ``interpolate`` (the run's, by wavelength).
        mask_input: with ``bands``: the unfolded artifact for that sensor (image and presence mask: one
            artifact for every subset of its bands) instead of the fold.

    Returns:
        The sidecar record, plus ``path`` (the artifact) and ``sidecar`` (its JSON file).

    Raises:
        UserError: unknown target, missing backend package, invalid band subset,
            run/checkpoint/data problems, a QAT run exported to another target
            or without ``int8``, ``max_drop`` without ``int8`` or with a QAT run, or an export the
            target cannot do; ``bands`` for a model without a wavelength-conditioned stem, for a QAT
            run, or for another sensor without ``data_root``; a band list that cannot fold.
    """
    module = target_module(target)  # an unknown target fails before anything loads
    _check_request(module, target, int8, calib, max_drop)
    sensor = None
    if mask_input and (bands is None or channels is not None):
        raise UserError("--mask-input is for --bands (the unfolded artifact for another sensor) and takes no "
                        "--channels; without --bands a wave run's artifact takes the mask already")
    if bands is not None or data_root is not None:
        sensor = {"data.bands": _check_bands(Path(run), bands),
                  **({"data.root": str(Path(data_root).expanduser())} if data_root is not None else {})}
    # One progress line for the whole export: loading, calibration, conversion, lowering, parity each say so.
    with Progress(f"export {target} {'int8' if int8 else 'fp32'}") as progress:
        return _export(module, Path(run), target, int8, channels, calib, out, max_drop, progress, sensor, norm,
                       mask_input)


def _check_bands(run: Path, bands: str | list | None):
    """``--bands`` as ``data.bands`` takes it, refused before loading for a run that cannot change sensor.

    Raises:
        UserError: no ``--bands`` (with ``--data-root``), a QAT run, or a model that is not wavelength-conditioned.
    """
    from edgecnn.core.catalog import reads_wavelengths
    from edgecnn.quantize import qat
    from edgecnn.train import run as R

    if isinstance(bands, str) and not bands.strip() or isinstance(bands, list) and not bands:
        raise UserError("--bands is empty: a model folds over at least one band; name the sensor's bands, e.g. "
                        "--bands planetscope or --bands sentinel2:B04,B03,B02,B08")
    if bands is None:
        raise UserError("--data-root is another sensor's folder for --bands; give --bands too (e.g. --bands "
                        "planetscope), or leave both out to export for the run's own bands")
    recipe = R.read_run_recipe(run)
    if qat.is_qat_run(run):
        raise UserError(f"--bands with a QAT run ({run}): its quantization was learned on its own bands; export "
                        f"the float run with --bands")
    if not reads_wavelengths(recipe.model.name):
        raise UserError(f"--bands: {recipe.model.name} has no wavelength-conditioned stem, so it reads its bands "
                        f"({', '.join(recipe.data.bands)}) by position and cannot change sensor; drop --bands "
                        f"(--channels picks a subset) or train cnn_attn_wave / resnet34_wave")
    # "R,G,NIR" is a list of names; without a comma, or with a colon, a preset or a pick from one.
    if isinstance(bands, str) and "," in bands and ":" not in bands:
        return [b.strip() for b in bands.split(",") if b.strip()]
    return bands


def _export(module, run: Path, target: str, int8: bool, channels: str | None, calib: int, out: Path | None,
            max_drop: float | None, progress: Progress, sensor: dict | None = None, norm: str | None = None,
            mask_input: bool = False) -> dict:
    progress.update(f"loading {run}")
    src = _load(run, target, int8, channels, max_drop, sensor, norm, mask_input)
    calibration = []
    if int8 and src.quantized is None:  # a QAT run brings its own ranges
        progress.update(f"reading {calib} calibration images")
        calibration = calibration_samples(src.graph, src.train_ds, src.cfg.mean, src.cfg.std, calib,
                                          src.recipe.seed, src.cfg.workers)

    precision = "int8" if int8 else "fp32"
    name = artifact_name(src.recipe.model.name, target, precision, _name_tag(src), module.SUFFIX, max_drop)
    path = artifact_path(out, run, name, module.SUFFIX)
    runtime = module.runtime()
    if max_drop is None:
        progress.update("converting")
        sections, budget = module.export(src.graph, path, int8, calibration, quantized=src.quantized), None
        parity = _parity(module, path, runtime, src)
    else:
        sections, budget, parity = _within_budget(module, src, path, calibration, calib, max_drop, runtime)

    artifact = Artifact(path, [path, *module.companions(path)])
    artifact.sidecar = _sidecar(artifact, src, target, precision, runtime, sections, budget, parity)
    write_sidecar(artifact)
    return {**artifact.sidecar, "path": str(path), "sidecar": str(artifact.sidecar_path)}


def _check_request(module, target: str, int8: bool, calib: int, max_drop: float | None) -> None:
    """Refuse what cannot work before minutes of loading and calibration: bad flags, a missing backend.

    Raises:
        UserError: ``max_drop`` without ``int8`` or below 0, ``calib`` below 1 with ``int8``,
            or the target's packages are not installed.
    """
    if max_drop is not None and (not int8 or max_drop < 0):
        raise UserError(f"--max-drop {max_drop}: an accuracy budget (>= 0 points) for INT8; add --int8"
                        if int8 or max_drop >= 0 else f"--max-drop {max_drop}: give 0 or more points")
    if int8 and calib < 1:
        raise UserError(f"--calib {calib}: INT8 needs at least 1 calibration image; use e.g. --calib 256")

    backends.require(*module.REQUIRES, *(module.REQUIRES_INT8 if int8 else ()),
                    purpose=f"--target {target}{' --int8' if int8 else ''}")


@dataclass
class _Source:
    """What an export reads from a run: its recipe, the graph to export, the datasets, and the checkpoint."""

    run: Path
    recipe: Any  # the recipe the model was loaded with (edgecnn.config.Recipe)
    cfg: Any  # the run's data settings (recipe.data as stored in the run folder)
    graph: Any  # edgecnn.models.deployable.Deployable: the module to export, its inputs and band handling
    classes: list[str]
    state: dict  # the checkpoint
    train_ds: Any
    val_ds: Any
    quantized: tuple | None  # (module, quantization section) of a QAT run
    sensor: dict | None = None  # train.sensor's record: the bands with wavelengths and their normalisation
    trained_on: list[dict] | None = None  # the run's training folders (_training_sources)


def _name_tag(src: _Source) -> str | None:
    """The file name's band part: the subset, or for another sensor its name (and the subset of it)."""
    s = src.sensor
    if s is None or s["seen_in_training"]:
        return src.graph.subset
    if src.graph.mask_input:
        return f"{s['name']}-mask"
    whole = src.graph.input_bands == list(src.cfg.bands)
    return s["name"] if whole else f"{s['name']}-{src.graph.subset}"


def _load(run: Path, target: str, int8: bool, channels: str | None, max_drop: float | None,
          sensor: dict | None = None, norm: str | None = None, mask_input: bool = False) -> _Source:
    """The run's model as the graph to export (band subset applied), with the datasets it was trained on.

    Raises:
        UserError: an invalid band subset, a QAT run with ``max_drop`` (or the wrong target,
            no ``int8``), checkpoint problems, or a dataset whose classes changed since training.
    """
    from edgecnn.data import build_datasets
    from edgecnn.data.bands import parse_subset, subset_name
    from edgecnn.models.deployable import deployable
    from edgecnn.quantize import qat
    from edgecnn.train import run as R

    recipe = R.read_run_recipe(run)
    trained_on = _training_sources(recipe.data)
    cfg = recipe.data.source_configs()[0]  # a run over several sources exports for its first
    if channels is not None and sensor is None:
        parse_subset(channels, cfg.bands)  # a typo fails before the checkpoint loads
    quantized = None
    if qat.is_qat_run(run):
        if max_drop is not None:
            raise UserError(f"--max-drop with a QAT run ({run}): its ranges are learned, nothing is calibrated; "
                            "export the float run with --max-drop, or drop it")
        recipe, model, classes, state, quantized = qat.export_source(run, target, int8, channels)
        channels = None  # a subset (qat --channels) is folded inside the QAT model, which takes every band
    else:
        recipe, model, classes, state = R.load_trained(run)
    if recipe.data.sources:  # from here on, the recipe of its first source alone
        recipe = recipe.model_copy(update={"data": cfg})
    record = None
    if sensor is not None:
        from edgecnn.models.dynamic_conv import foldable
        from edgecnn.train.sensor import for_sensor

        recipe, record = for_sensor(recipe, model, sensor, norm)
        cfg = recipe.data
        if channels is None and foldable(model) and not mask_input:  # "folded: a plain N-band model"
            channels = subset_name(list(cfg.bands), list(cfg.bands))
        elif channels is not None:
            parse_subset(channels, cfg.bands)
    else:
        from edgecnn.train.sensor import own_sensor

        record = own_sensor(recipe)
    graph = deployable(model, cfg.bands, cfg.image_size, channels)
    if quantized is not None and quantized[1].get("channels"):
        graph.subset = subset_name(parse_subset(quantized[1]["channels"], cfg.bands), cfg.bands)
        graph.how = (f"folded: DynamicConv2D stem folded for {graph.subset} and fine-tuned (QAT); the image input "
                     "carries every band, the graph reads only the subset's")
    train_ds, val_ds, data_classes = build_datasets(cfg, recipe.seed, len(cfg.bands))
    if list(data_classes) != classes:
        raise UserError(f"{run}: the dataset's classes no longer match the ones the run was trained on; "
                        "point data.root at the same dataset")
    return _Source(run, recipe, cfg, graph, classes, state, train_ds, val_ds, quantized, record, trained_on)


def _parity(module, path: Path, runtime: dict, src: _Source) -> dict:
    """The artifact on the validation split, opened with the runtime itself, configured as later stages run it."""
    from edgecnn.export.parity import measure

    say("parity: loading the artifact with its runtime")
    runner = module.load(path, runtime.get("config"))
    parity = measure(runner, src.graph, src.val_ds, src.cfg.mean, src.cfg.std, len(src.classes), src.cfg.workers)
    if src.quantized is not None:
        parity["reference"] = ("the run's fake-quantized PyTorch model (QAT, learned ranges), "
                               + ("given the same mask on every band subset (per_subset)" if src.graph.mask_input
                                  else "all bands"))
    return parity


def _sidecar(artifact, src: _Source, target: str, precision: str, runtime: dict, sections: dict,
             budget: dict | None, parity: dict) -> dict:
    """The sidecar record: everything predict and bench need to feed the artifact, and how it was made."""
    import torch

    from edgecnn.train import run as R

    graph, cfg, run = src.graph, src.cfg, src.run
    if sections.get("quantization") and src.quantized is None:
        sections["quantization"]["calibration_split"] = "train, un-augmented, seeded shuffle"
    return {
        "artifact": artifact.path.name,
        "files": {f.name: f.stat().st_size for f in artifact.files},
        "size_bytes": artifact.size_bytes,
        "model": src.recipe.model.name,
        "target": target,
        "precision": precision,
        "runtime": runtime,
        "inputs": [{"name": n, "shape": list(t.shape), "dtype": "float32"}
                   for n, t in zip(graph.input_names, graph.example)],
        "outputs": [{"name": "logits", "shape": [1, len(src.classes)], "dtype": "float32"}],
        "bands": list(cfg.bands),
        # The bands with wavelengths, the sensor and where its normalisation came from (train.sensor).
        "band_specs": [b.as_dict() if b.center_nm is not None else {"name": b.name} for b in cfg.band_specs],
        "sensor": src.sensor,
        "channels": graph.subset,
        "input_bands": graph.input_bands,
        "band_handling": graph.how,
        "image_size": cfg.image_size,
        "normalization": {**_normalization(cfg, src.train_ds),
                          "source": (src.sensor or {}).get("normalization", {}).get("source", "run")},
        C.SIDECAR_TRAINING_SOURCES: src.trained_on,
        "classes": src.classes,
        "macs": _graph_macs(graph),  # per image, of what was exported (a folded subset's own stem)
        **sections,  # export settings, quantization (None for fp32), delegation (executorch)
        **({"accuracy_budget": budget} if budget is not None else {}),
        "parity": parity,
        "source": {"run": str(run), "checkpoint": R.BEST if (run / R.BEST).exists() else R.LAST,
                   "epoch": src.state.get(C.CKPT_EPOCH), "torch": torch.__version__,
                   "edgecnn": backends.version("edgecnn")},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _normalization(cfg, train_ds) -> dict:
    """How predict turns a file into the artifact's input, exactly as training did."""
    photo = getattr(train_ds, "dtype", "uint8") == "uint8"
    return {"mean": list(cfg.mean), "std": list(cfg.std), "reader": "photo" if photo else "raster",
            "nodata": cfg.nodata, "max_pixels": cfg.max_pixels,
            "formula": "(pixel / 255 - mean) / std per band; a missing band is 0 after this" if photo else
                       "(value - mean) / std per band, the file's values as they are; a nodata pixel is 0 after "
                       "this (the band mean), a band that is nodata in the whole image is 0 and masked"}


def _training_sources(data) -> list[dict]:
    """Each folder the run trained on with its bands and normalisation (``core.contracts.SIDECAR_TRAINING_SOURCES``)."""
    names = [s.name for s in data.sources] if data.sources else [Path(data.root).name if data.root else data.source]
    return [{"name": name, "root": str(c.root) if c.root else None,
             "bands": [{"name": b.name, "center_nm": b.center_nm, "fwhm_nm": b.fwhm_nm} for b in c.band_specs],
             "mean": c.mean, "std": c.std, "nodata": c.nodata}
            for name, c in zip(names, data.source_configs())]


def _graph_macs(graph) -> int:
    """Multiply-accumulates of one image through the exported module (``bench`` turns them into GMAC/s)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        graph.module(*graph.example)
    return int(counter.get_total_flops() // 2)


# -- the accuracy budget (--max-drop) -----------------------------------------------------------------

def _within_budget(module, src: _Source, path: Path, calibration: list, calib: int, max_drop: float,
                   runtime: dict) -> tuple[dict, dict, dict]:
    """PTQ with the fewest layers in float that keeps the drop on held-out training images within ``max_drop``.

    Every probe is written into a scratch folder beside ``path`` and measured with the
    runtime; the chosen one is moved into place, then measured on the validation split
    like any artifact (which the ranking and the probes never saw).

    Returns:
        (the chosen export's sidecar sections, the ``accuracy_budget`` record, parity)
    """
    from edgecnn.quantize import budget as B

    t0 = time.perf_counter()
    cfg = src.cfg
    # Training images after the calibration ones: neither what set the scales nor the validation split.
    images = held_out_images(src.train_ds, cfg.mean, cfg.std, calib, B.PROBE_IMAGES, src.recipe.seed, cfg.workers)
    with _Probes(module, src.graph, path, calibration, images, runtime) as probes:
        plain = {"float_layers": [], **probes([])}
        plain["seconds"] = round(time.perf_counter() - t0, 2)
        chosen, trials, ranking, rank_seconds = _fewest_float_layers(probes, src.graph, calibration, images,
                                                                     plain, max_drop)
        sections = probes.keep(chosen)
        budget = _budget_record(src.graph, images, max_drop, chosen, trials, ranking, rank_seconds, t0)

        parity = _parity(module, path, runtime, src)
        drop = 100 * (parity["pytorch"]["accuracy"] - parity["artifact"]["accuracy"])
        budget["val_drop_points"] = round(drop, 3)
        budget["val_within_budget"] = B.within({"drop_points": drop, "top1_agreement": parity["top1_agreement"]},
                                               max_drop)
        if budget["float_layers"]:  # the plain PTQ probe, still in the scratch folder: the "before" there
            budget["val_before"] = probes.plain_val(src)
    return sections, budget, parity


class _Probes:
    """PTQ exports of one graph with some layers in float, each measured with the runtime on held-out images.

    A probe is written into its own folder of a scratch folder beside ``path``; ``keep``
    moves the chosen one into place; leaving the ``with`` block removes the scratch folder
    (on errors too). Calling the object is ``budget.search``'s ``probe``.
    """

    def __init__(self, module, graph, path: Path, calibration: list, images: list, runtime: dict):
        self.module, self.graph, self.path = module, graph, path
        self.calibration, self.images, self.config = calibration, images, runtime.get("config")
        self.written: dict[tuple, tuple[Path, dict]] = {}  # float layers -> (artifact, its sidecar sections)

    def __enter__(self) -> _Probes:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.stem}.budget."))
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __call__(self, float_layers: list[str]) -> dict:
        """``budget.measure``'s record for PTQ with ``float_layers`` kept in float, plus the artifact's size."""
        from edgecnn.quantize import budget as B

        where = self.scratch / str(len(self.written)) / self.path.name
        where.parent.mkdir()
        sections = self.module.export(self.graph, where, True, self.calibration, float_layers=tuple(float_layers))
        self.written[tuple(float_layers)] = (where, sections)
        record = B.measure(self.module.load(where, self.config), self.graph, self.images)
        record["size_bytes"] = sum(f.stat().st_size for f in [where, *self.module.companions(where)])
        return record

    def keep(self, float_layers: list[str]) -> dict:
        """Move the probe with ``float_layers`` to ``path``; returns its sidecar sections."""
        where, sections = self.written[tuple(float_layers)]
        for f in [*self.module.companions(where), where]:  # the file a runtime opens appears last
            os.replace(f, self.path.parent / f.name)
        return sections

    def plain_val(self, src: _Source) -> dict:
        """The plain PTQ probe (unless it was kept) on the validation split."""
        from edgecnn.export.parity import measure

        runner = self.module.load(self.written[()][0], self.config)
        p = measure(runner, self.graph, src.val_ds, src.cfg.mean, src.cfg.std, len(src.classes), src.cfg.workers)
        return {"accuracy": p["artifact"]["accuracy"], "top1_agreement": p["top1_agreement"],
                "drop_points": round(100 * (p["pytorch"]["accuracy"] - p["artifact"]["accuracy"]), 3)}


def _fewest_float_layers(probes: _Probes, graph, calibration: list, images: list, plain: dict,
                         max_drop: float) -> tuple[list[str], list[dict], list, float]:
    """The layers to keep in float: none when plain PTQ (``plain``) is within budget, else the fewest
    top-ranked ones that meet it (``budget.search``), or none when no probe did better than plain.

    Returns:
        (the chosen layers, every probe's record (plain first), the ranking, seconds spent ranking)
    """
    from edgecnn.quantize import budget as B

    if B.within(plain, max_drop):
        return [], [plain], [], 0.0
    t0 = time.perf_counter()
    names = [n for n in B.layers(graph.module, graph.keep_float) if n != graph.head]  # the head is float already
    # Ranking is PyTorch only (cheap); the probes pay for a target export each.
    ranking = B.rank(graph.module, names, calibration, [graph.inputs_for(x) for x, _ in images[:B.RANK_IMAGES]])
    rank_seconds = time.perf_counter() - t0
    chosen, more = B.search(probes, [n for n, _ in ranking], max_drop)
    best = next(t for t in more if t["float_layers"] == chosen) if more else plain
    if not B.within(best, max_drop) and B.closest([plain, best]) is plain:
        chosen = []  # nothing met the budget and float layers did not help: plain INT8 is the best
    return chosen, [plain, *more], ranking, rank_seconds


def _budget_record(graph, images: list, max_drop: float, chosen: list[str], trials: list[dict], ranking: list,
                   rank_seconds: float, t0: float) -> dict:
    """The sidecar's ``accuracy_budget``: what was chosen, on which images, and every probe (the validation
    figures are added once the artifact's parity is measured)."""
    from edgecnn.quantize import budget as B

    plain = trials[0]
    final = next(t for t in trials if t["float_layers"] == chosen)
    met = B.within(final, max_drop)
    total = sum(p.numel() for p in graph.module.parameters())
    kept = sum(p.numel() for n in chosen for p in graph.module.get_submodule(n).parameters())
    figures = ("accuracy", "reference_accuracy", "top1_agreement", "drop_points", "size_bytes")
    record = {
        "max_drop_points": max_drop,
        "min_top1_agreement": B.MIN_AGREEMENT,
        "met": met,
        "selection_split": f"train: {len(images)} un-augmented images held out from calibration (seeded shuffle); "
                           "ranking and probes never see the validation split that parity reports",
        "ranking": "per layer: input (uint8 per tensor) and weight (int8 per channel) fake-quantized alone in "
                   f"PyTorch, mean squared logit change on {min(len(images), B.RANK_IMAGES)} of those images",
        "float_layers": chosen,
        "float_params_fraction": round(kept / max(total, 1), 4),
        "before": {k: plain[k] for k in figures},
        "after": {k: final[k] for k in figures},
        "probes": [{k: t[k] for k in ("float_layers", "drop_points", "top1_agreement", "size_bytes", "seconds")}
                   for t in trials],
        "ranked": [{"layer": n, "cost": round(c, 6)} for n, c in ranking],
        "rank_seconds": round(rank_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if not met:
        record["note"] = (f"no selection of float layers within {B.MAX_PROBES} probes kept the drop within "
                          f"{max_drop} points and top-1 agreement at {B.MIN_AGREEMENT:.0%} or more; kept the best "
                          f"({final['drop_points']:.2f} points, {final['top1_agreement']:.1%} agreement); "
                          "try edgecnn qat for this target")
    return record
