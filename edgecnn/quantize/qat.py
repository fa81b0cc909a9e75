"""Quantization-aware training (QAT): fine-tune a trained float run with fake quantization.

``qat_run`` reads a float run folder, inserts fake-quantize ops for one
backend into its best model, and trains a few more epochs at a tenth of the
recipe's learning rate into a new run folder (default ``RUN/qat-<target>``).
That folder follows the run-folder contract (``recipe.yaml``, ``env.json``,
``metrics.csv``, ``last.pt``/``best.pt``, ``train.log``), resumes like a
training run, and adds ``qat.json``: the backend, the float run it started
from, and the quantizer settings (the recipe schema has no place for them).

Two backends, one class each with the same methods (``Backend``), one file each as PTQ's are
(``qat_xnnpack.py``, ``qat_openvino.py``; both importable from here); this file is what they share:

* ``xnnpack`` (exported with ``edgecnn export --target executorch --int8``): PT2E.
  The float model is captured with ``torch.export`` in train mode with a
  dynamic batch dimension (a graph captured at the training batch size
  converts to an INT8 graph fixed at that size); ``prepare_qat_pt2e`` with
  the XNNPACK quantizer inserts fake-quantize modules whose observers track
  moving-average min/max while training; ``convert_pt2e`` at export turns
  them into the INT8 graph ExecuTorch lowers.
* ``openvino`` (exported with ``--target openvino --int8``): NNCF.
  ``nncf.quantize`` on the PyTorch model calibrates the initial ranges on
  training images and inserts quantizers whose scales are trainable
  parameters, learned with the weights; at export ``nncf.strip`` turns them
  into PyTorch fake-quantize ops with the learned scales, which
  ``openvino.convert_model`` turns into FakeQuantize nodes.

Band-aware models (a DynamicConv2D stem, ``registry.takes_mask``) are fine-tuned in the
form their mask-input artifact runs: ``MaskRows(static_model(model))``, the kernel mixing
moved onto the input and one stored-weight convolution (``dynamic_conv.StaticStem``), with
two inputs, the image and a per-image presence mask. Its ``StemGains`` stay float on both
backends, as PTQ leaves them. Training draws the recipe's band subsets
(``train.band_subsets``, carried over from the float run) and keeps the files' own lost
bands, so one QAT run, and its one artifact ``(image, mask)``, serves every subset.
With ``--channels`` a mask-attention model is instead folded for one subset first
(``BandSubset``): the plain model, one image input.

Checkpoints hold the QAT model's whole ``state_dict`` (weights and quantizer
state) under ``model``, and under ``qat`` what else restoring needs. Restoring
(``load_qat``) rebuilds the float architecture from the run's recipe, puts
the same quantizers in the same places (PT2E: export and ``prepare_qat_pt2e``
again, which is deterministic for one architecture; NNCF: ``load_from_config``)
and loads the state dict: resume and export both go through it.

The epochs are ``edgecnn.train.loop.train`` itself, given ``QatSteps`` (its
``setup_model`` step builds the fake-quantized model, its ``checkpoint_extra``
adds the ``qat`` entry to checkpoints): so QAT resumes, and runs under
torchrun (``--nproc``), exactly like training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from edgecnn.core import contracts as C
from edgecnn import backends
from edgecnn.config.load import parse_overrides, validate_recipe
from edgecnn.data.bands import parse_subset, presence_mask
from edgecnn.errors import UserError
from edgecnn.models.deployable import deployable
from edgecnn.models.dynamic_conv import MaskRows, band_stem, foldable, folded_model, static_model
from edgecnn.models.wave_conv import wave_stem
from edgecnn.models.registry import takes_mask
from edgecnn.quantize.calibration import calibration_samples
from edgecnn.quantize.qat_openvino import FixedFakeQuantize, OpenvinoNNCF  # noqa: F401 (importable from here)
from edgecnn.quantize.qat_xnnpack import PT2EModel, XnnpackPT2E  # noqa: F401 (importable from here)
from edgecnn.train import run as R
from edgecnn.train.checkpoint import load_checkpoint
from edgecnn.train.evaluate import evaluate_run
from edgecnn.train.loop import Steps, check_run_folder, train

QAT_FILE = C.QAT  # "qat.json"
LR_SCALE = 0.1  # of the float recipe's train.lr
EPOCHS = 3
CALIBRATION_IMAGES = 256  # NNCF's initial ranges


# -- the two backends (one file each: qat_xnnpack.py, qat_openvino.py) ----------------------------


class Backend(Protocol):
    """What ``qat_run``, ``load_qat`` and the exporters need from a QAT backend."""

    NAME: str  # the --target of edgecnn qat
    EXPORT_TARGET: str  # the --target of edgecnn export
    REQUIRES: tuple[str, ...]  # import names

    def prepare(self, model: nn.Module, in_shape: tuple[int, int, int], calibration: list) -> nn.Module: ...

    def restore(self, model: nn.Module, in_shape: tuple[int, int, int], qat: dict) -> nn.Module: ...

    def extra(self, qat_model: nn.Module) -> dict: ...

    def for_export(self, qat_model: nn.Module, example: tuple) -> nn.Module: ...

    def settings(self) -> dict: ...


BACKENDS: dict[str, Backend] = {b.NAME: b for b in (XnnpackPT2E(), OpenvinoNNCF())}


def backend(target: str) -> Backend:
    """The QAT backend for ``--target``.

    Raises:
        UserError: not a QAT target (an export target name gets the matching QAT target named).
    """
    if target in BACKENDS:
        return BACKENDS[target]
    by_export = {b.EXPORT_TARGET: b.NAME for b in BACKENDS.values()}
    hint = f"for --target {target} at export, QAT with --target {by_export[target]}; " if target in by_export else ""
    raise UserError(f"qat --target {target}: unknown QAT target; {hint}choose one of: {', '.join(BACKENDS)}")


# -- QAT run folders ---------------------------------------------------------------------------


def is_qat_run(run: Path) -> bool:
    return (Path(run) / QAT_FILE).is_file()


def read_qat(run: Path) -> dict:
    """The ``qat.json`` of a QAT run folder.

    Raises:
        UserError: missing or damaged.
    """
    path = Path(run) / QAT_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run}: not a QAT run (no {QAT_FILE}); create one with edgecnn qat RUN --target ...") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: damaged (not valid JSON); run edgecnn qat into a new --out") from None
    if info.get("target") not in BACKENDS:
        raise UserError(f"{path}: unknown QAT target {info.get('target')!r}; run edgecnn qat into a new --out")
    return info


def qat_recipe(float_recipe, target: str, epochs: int | None, overrides: list[str]):
    """The float run's recipe with QAT's defaults (lr x ``LR_SCALE``, ``EPOCHS`` epochs, no amp or
    compile), then ``overrides``.

    Raises:
        UserError: ``--epochs`` and a ``train.epochs`` override disagree, or the overrides fail the schema.
    """
    parsed = parse_overrides(list(overrides))
    if epochs is not None and parsed.get("train.epochs", epochs) != epochs:
        raise UserError(f"--epochs {epochs} and train.epochs={parsed['train.epochs']} disagree; give one of them")
    data = float_recipe.model_dump(mode="json")
    data["name"] = f"{float_recipe.name}-qat-{target}"
    lr = float(f"{data['train']['lr'] * LR_SCALE:.6g}")  # 0.005, not 0.005000000000000001
    # The float run's GPU fast path (autocast, compile) does not apply to fake-quantized
    # graphs: QAT turns it off rather than refusing a run trained with it.
    data["train"] = {**data["train"], "lr": lr, "epochs": epochs or EPOCHS, "amp": False, "compile": False}
    recipe = validate_recipe(data, parsed)
    if recipe.train.amp or recipe.train.compile:
        raise UserError("qat: train.amp and train.compile are not supported with fake quantization; "
                        "drop those overrides")
    return recipe


def evaluate_any(run: Path, which: str = "best", channels: str | None = None,
                 overrides: dict | None = None, norm: str | None = None) -> dict:
    """``train.evaluate.evaluate_run`` for any run folder: a QAT run is evaluated as its fake-quantized
    model (what its INT8 export computes), loaded here because training code does not import quantize."""
    loaded = load_qat(run, which)[:4] if C.is_qat_run(run) else None
    return evaluate_run(run, which, channels, loaded, overrides, norm)


def load_qat(run: Path, which: str = "best") -> tuple:
    """Rebuild a QAT run's fake-quantized model with its learned state, in eval mode on the CPU.

    Returns:
        (recipe, model, class names, checkpoint dict, qat.json record)

    Raises:
        UserError: not a QAT run, no checkpoint, or a checkpoint that does not fit the recipe.
    """
    run = Path(run)
    info = read_qat(run)
    recipe = R.read_run_recipe(run)
    path = run / (R.BEST if which == "best" and (run / R.BEST).exists() else R.LAST)
    state = load_checkpoint(path)
    classes = list(state[C.CKPT_CLASSES])
    model = _restore(BACKENDS[info["target"]], recipe, len(classes), state, path, info.get("channels"))
    return recipe, model.eval(), classes, state, info


class BandSubset(nn.Module):
    """A band-robust model folded for one subset, fed the full band tensor: ``net(x[:, present])``.

    QAT trains on the run's full-band images; the slice (static, one band at a
    time) is the first op of the graph, so the artifact takes every band and
    ignores the missing ones (zero-filling them is not needed).
    """

    def __init__(self, net: nn.Module, present: list[int], bands: int):
        super().__init__()
        self.net = net
        self.present = None if present == list(range(bands)) else present

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.present is not None:
            x = torch.cat([x[:, i : i + 1] for i in self.present], dim=1)
        return self.net(x)


def fold_for_subset(model: nn.Module, channels: str, bands: list[str]) -> nn.Module:
    """A mask-attention DynamicConv2D model folded into its plain backbone for ``channels`` (``BandSubset``),
    what QAT fine-tunes.

    Raises:
        UserError: not a mask-attention DynamicConv2D model, or an invalid subset.
    """
    if not foldable(model):
        raise UserError("qat --channels: only mask-attention DynamicConv2D models (*_dynconv_mask) and wave models "
                        "(*_wave) fold into a plain model per band subset; drop --channels for other models")
    present = parse_subset(channels, bands)
    return BandSubset(folded_model(model, presence_mask(present, bands)), [bands.index(b) for b in present],
                      len(bands))


def qat_form(model: nn.Module, channels: str | None, bands: list[str]) -> nn.Module:
    """The float module QAT fake-quantizes for ``model``: folded for ``channels``; a band-aware model's
    static form with its mask as a second input (``MaskRows(static_model(model))``); else the model."""
    if channels is not None:
        return fold_for_subset(model, channels, bands)
    if band_stem(model) is not None or wave_stem(model) is not None:
        return MaskRows(static_model(model)).train(model.training)
    return model


def _restore(b: Backend, recipe, num_classes: int, state: dict, path: Path, channels: str | None = None) -> nn.Module:
    backends.require(*b.REQUIRES, purpose=f"qat for {b.NAME}")
    model = qat_form(R.build_for_recipe(recipe, num_classes), channels, list(recipe.data.bands))
    model = b.restore(model, _in_shape(recipe), state.get(C.CKPT_QAT, {}))
    try:
        model.load_state_dict(state[C.CKPT_MODEL])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{path}: the QAT state does not fit the model rebuilt from its recipe ({first}); "
                        "run edgecnn qat into a new --out") from None
    return model


def _in_shape(recipe) -> tuple[int, int, int]:
    return (len(recipe.data.bands), recipe.data.image_size, recipe.data.image_size)


def qat_run(run: Path, target: str, epochs: int | None = None, out: Path | None = None, resume: bool = False,
            overrides: list[str] = (), console=None, channels: str | None = None) -> list[dict]:
    """Fine-tune a float run with fake quantization for ``target`` into a QAT run folder.

    The epochs are ``edgecnn.train.loop.train``'s, so QAT resumes and runs under
    torchrun like training; only its steps differ (``QatSteps``).

    Args:
        run: the float run folder (its best checkpoint is the starting point).
        target: ``xnnpack`` (PT2E, exported with ``--target executorch``) or
            ``openvino`` (NNCF, exported with ``--target openvino``).
        epochs: fine-tuning epochs (default ``EPOCHS``); same as ``train.epochs=N``.
        out: the QAT run folder (default ``RUN/qat-<target>``).
        resume: continue an interrupted QAT run from its last checkpoint.
        overrides: ``dotted.key=value`` words applied to the QAT recipe
            (the float recipe with lr x ``LR_SCALE`` and ``EPOCHS`` epochs).
        channels: a band subset of a mask-attention DynamicConv2D run (``*_dynconv_mask``): fine-tune
            the plain model folded for it (its QAT recipe trains on full-band images, no band dropping).
            Without it a band-aware run is fine-tuned as its mask-input model (static stem, inputs
            image and mask) on the recipe's random band subsets: one run for every subset.

    Returns:
        The per-epoch metric rows (also in ``out/metrics.csv``).

    Raises:
        UserError: not a float run, unknown target, missing backend, ``channels`` for a model
            that does not fold, an existing run without ``resume`` (or nothing
            to resume), a recipe mismatch on resume, or data problems.
    """
    run = Path(run)
    b, recipe, out = _check_request(run, target, epochs, out, resume, overrides, channels)
    if resume:
        steps = QatSteps(b, recipe, run, out, read_qat(out))
    else:
        steps = QatSteps(b, recipe, run, out, *_float_start(run, b, channels))
    return train(recipe, out, resume=resume, console=console, steps=steps)


def _check_request(run: Path, target: str, epochs: int | None, out: Path | None, resume: bool,
                   overrides: list[str], channels: str | None) -> tuple:
    """Everything about the request that can be refused before loading a model.

    Returns:
        (backend, QAT recipe, QAT run folder)
    """
    b = backend(target)
    if is_qat_run(run):
        raise UserError(f"{run} is a QAT run already; pass the float run it came from "
                        f"({read_qat(run).get('float_run', 'see its qat.json')})")
    float_recipe = R.read_run_recipe(run)
    if channels is not None:
        # The folded model sees its subset, always.
        overrides = ["train.band_subsets=none", "train.sub_sensors=[]", *overrides]
    elif float_recipe.train.band_subsets == "sensors":
        # The QAT graph has one stored stem for the run's own bands: it cannot be set to a sub-sensor, and
        # its artifact meets subsets as masks, so QAT draws masked subsets.
        overrides = ["train.band_subsets=per_sample", "train.sub_sensors=[]", *overrides]
    recipe = qat_recipe(float_recipe, target, epochs, overrides)
    out = Path(out) if out is not None else run / f"qat-{target}"
    if resume and is_qat_run(out) and read_qat(out)["target"] != target:
        raise UserError(f"--resume: {out} is a QAT run for --target {read_qat(out)['target']}, not {target}")
    check_run_folder(out, recipe, resume)
    backends.require(*b.REQUIRES, purpose=f"qat for {target}")
    return b, recipe, out


def _float_start(run: Path, b: Backend, channels: str | None) -> tuple[dict, nn.Module, list[str]]:
    """The first ``qat.json`` record, the float model QAT starts from (``qat_form``: folded for ``channels``,
    or a band-aware model's static mask-input form) and its classes.

    Raises:
        UserError: ``channels`` for a model that does not fold (``fold_for_subset``).
    """
    float_recipe, float_model, float_classes, float_state = R.load_trained(run)
    float_model = qat_form(float_model, channels, list(float_recipe.data.bands)).eval()
    band_aware = takes_mask(float_model)
    record = {
        "target": b.NAME, "export_target": b.EXPORT_TARGET,
        "float_run": str(run.resolve()), "float_checkpoint": R.BEST if (run / R.BEST).exists() else R.LAST,
        "float_epoch": float_state.get(C.CKPT_EPOCH), "float_best_accuracy": float_state.get(C.CKPT_BEST_ACCURACY),
        "lr_scale": LR_SCALE, **b.settings(),
        **({"channels": channels} if channels is not None else {}),
        **(_band_aware_settings(b, float_recipe) if band_aware else {}),
        "packages": {p: backends.version(p) for p in ("torch", "torchao", "executorch", "nncf", "openvino")},
    }
    return record, float_model, list(float_classes)


class QatSteps(Steps):
    """``train``'s steps for QAT: the fake-quantized model, no weight decay on quantizer ranges,
    ``qat.json`` in the run folder, the backend's state in every checkpoint."""

    epoch = "qat epoch"
    note = " (fake-quantized)"

    def __init__(self, b: Backend, recipe, run: Path, out: Path, record: dict,
                 float_model: nn.Module | None = None, float_classes: list[str] | None = None):
        super().__init__(recipe)
        self.b, self.run, self.out, self.record = b, run, out, record
        self.float_model, self.float_classes = float_model, float_classes  # None when resuming
        self.header = (f"# edgecnn qat {run} --target {b.NAME}: quantization-aware fine-tuning, "
                       f"settings in {QAT_FILE}\n")
        self.banner = (f"QAT for [bold]{b.NAME}[/] ({b.settings()['method'].split(' (')[0]}) "
                       f"of {recipe.model.name} from {run}")

    def setup_model(self, classes: list[str], train_ds, state: dict | None) -> nn.Module:
        """Resuming: the QAT model restored from ``state``. Starting: the float model, fake-quantized
        (NNCF's initial ranges from un-augmented training images, their count kept for ``qat.json``)."""
        if state is not None:
            return _restore(self.b, self.recipe, len(classes), state, self.out / R.LAST, self.record.get("channels"))
        if self.float_classes != list(classes):
            raise UserError(f"{self.run}: the dataset's classes no longer match the ones the run was trained on; "
                            "point data.root at the same dataset")
        calibration = self._calibration(train_ds) if isinstance(self.b, OpenvinoNNCF) else []
        if calibration:
            self.record["calibration_images"] = len(calibration)
        return self.b.prepare(self.float_model, _in_shape(self.recipe), calibration)

    def _calibration(self, train_ds) -> list:
        cfg = self.recipe.data
        graph = deployable(self.float_model, cfg.bands, cfg.image_size, None)
        return calibration_samples(graph, train_ds, cfg.mean, cfg.std, CALIBRATION_IMAGES, self.recipe.seed,
                                   cfg.workers)

    def param_groups(self, model: nn.Module) -> list[dict]:
        # Quantizer ranges (NNCF's scales are parameters) are not weights: no weight decay on them.
        weights = [p for n, p in model.named_parameters() if "__nncf" not in n]
        ranges = [p for n, p in model.named_parameters() if "__nncf" in n]
        return [{"params": weights}] + ([{"params": ranges, "weight_decay": 0.0}] if ranges else [])

    def run_files(self) -> dict[str, str]:
        return {QAT_FILE: json.dumps(self.record, indent=2) + "\n"}

    def checkpoint_extra(self, model: nn.Module) -> dict:
        return {C.CKPT_QAT: {"target": self.b.NAME, **self.b.extra(model)}}


def export_source(run: Path, target: str, int8: bool, channels: str | None) -> tuple:
    """What ``export_run`` needs from a QAT run: the restored model and the module to export.

    Returns:
        (recipe, fake-quantized model (the parity reference), classes, checkpoint,
        (module with the learned quantization for the target's exporter, quantization section of the sidecar))

    Raises:
        UserError: the export target is not the one the run was fine-tuned for, no ``--int8``,
            a band subset, or restore problems.
    """
    run = Path(run)
    info = read_qat(run)
    b = BACKENDS[info["target"]]
    if target != b.EXPORT_TARGET:
        raise UserError(f"{run} was fine-tuned for {b.NAME} (QAT): export it with --target {b.EXPORT_TARGET} "
                        f"--int8; for {target}, export the float run {info.get('float_run', '')} "
                        f"or run edgecnn qat on it with the matching --target")
    if not int8:
        raise UserError(f"{run} is a QAT run: its artifact is INT8 with the learned quantization; add --int8 "
                        f"(for fp32, export the float run {info.get('float_run', '')})")
    if channels is not None and channels != info.get("channels"):
        raise UserError(f"--channels {channels} with a QAT run: its subset was fixed by edgecnn qat "
                        f"({info.get('channels') or 'all bands'}); drop --channels")
    recipe, model, classes, state, _ = load_qat(run)
    # A band-aware model's artifact takes (image [1, bands, S, S], mask [bands]), as PTQ's mask-input ones.
    mask = (torch.ones(len(recipe.data.bands)),) if takes_mask(model) else ()
    example = (torch.zeros(1, *_in_shape(recipe)), *mask)
    section = {**b.settings(), "qat_run": str(run), "qat_epochs": state.get(C.CKPT_EPOCH),
               "float_run": info.get("float_run"), **({"channels": info["channels"]} if info.get("channels") else {}),
               **(_band_aware_settings(b, recipe) if takes_mask(model) else {})}
    return recipe, model, classes, state, (b.for_export(model, example), section)


def _band_aware_settings(b: Backend, recipe) -> dict:
    """What ``qat.json`` and the sidecar add for a band-aware model: its inputs, its float stem gains, its subsets."""
    kept = b.settings().get("kept_float", [])
    return {
        "inputs": "image [B, bands, S, S] and presence mask [B, bands] (the artifact: image [1, bands, S, S], "
                  "mask [bands])",
        "stem": "StaticStem (the DynamicConv2D's kernel mixing on the input, one stored-weight convolution); "
                "its StemGains left in float" + (" (NNCF ignored scope)" if b.NAME == "openvino" else ""),
        **({"kept_float": [*kept, "StemGains"]} if b.NAME == "xnnpack" else {}),
        "band_subsets": recipe.train.band_subsets,
    }
