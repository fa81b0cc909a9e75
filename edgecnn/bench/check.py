"""``edgecnn bench --check N``: accuracy measured where the artifact runs.

Before timing, N validation images of the artifact's run (a seeded sample of
the split, prepared on this machine as export's parity is: un-augmented,
scaled, normalised with the sidecar's mean and std) go to the runner on the
device in ``check`` commands; the runner feeds them through the artifact with
the device's runtime and sends the logits back (float32, base64). Here they
are compared with the run's PyTorch model (the fake-quantized model for a QAT
run, as in the sidecar's parity): top-1 agreement, max |logit difference| and
accuracy on those N, into the row's ``check_*`` fields.

So an INT8 artifact's accuracy on a Pi is measured on the Pi's ARM kernels
(XNNPACK and ONNX Runtime round differently there than on x86), with the
Pi's runtime versions. Works wherever ``runner.py`` runs (``local``,
``ssh://``). Not on ``adb://`` or with ``--runner``: ``executor_runner``
fills its inputs with ones and prints only a summary of its outputs, so the
rows say so in ``check_error``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.bench.worker import RunnerFailed
from edgecnn.errors import UserError

# The row fields this fills (check_n, check_top1_agreement, ...) are listed in core.contracts.BOARD_FIELDS.
CHUNK = 32  # images per check command: a line stays a few MB even at 224x224
PER_IMAGE_S = 10.0  # time allowed per image (an emulated board runs a 224 model in about 2 s)
NO_NATIVE = ("--check needs runner.py (Python + the runtime) on the device; executor_runner fills its inputs "
             "with ones and prints no logits, so accuracy cannot be measured through it")


@dataclass
class CheckSet:
    """The images sent to the device and what the host expects back."""

    inputs: list  # per model input, a float32 array [N, *one image's input shape]
    expected: object  # float32 logits [N, classes] of the PyTorch reference
    labels: object  # int [N]
    reference: str


def encode(a) -> dict:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode(msg: dict):
    return np.frombuffer(base64.b64decode(msg["b64"]), dtype="<f4").reshape(msg["shape"])


def run_of(path: Path, sidecar: dict) -> Path:
    """The run an artifact was exported from: the folder above ``export/`` if it is one, else the sidecar's."""
    path = Path(path).resolve()
    here = path.parent.parent
    if path.parent.name == "export" and (here / "recipe.yaml").is_file():
        return here
    source = (sidecar.get("source") or {}).get("run")
    if source and (Path(source) / "recipe.yaml").is_file():
        return Path(source)
    raise UserError(f"--check: {path.name} is not in its run's export/ folder and its sidecar's run "
                    f"({source}) is gone; keep the artifact in RUN/export, or leave --check out")


_DATASETS: dict = {}


def prepare(path: Path, sidecar: dict, n: int) -> CheckSet:
    """N validation images of the artifact's run as the artifact's inputs, and the reference's logits.

    Raises:
        UserError: the run folder cannot be found or loaded, or its dataset no longer matches.
    """
    import torch

    from edgecnn.data import build_datasets, file_mask
    from edgecnn.models.deployable import deployable
    from edgecnn.quantize import qat
    from edgecnn.train import run as R
    from edgecnn.train.loop import make_loader, prepare as normalise

    run = run_of(path, sidecar)
    channels = sidecar.get("channels")
    if qat.is_qat_run(run):
        recipe, model, classes, _, _ = qat.export_source(run, sidecar["target"], sidecar["precision"] == "int8",
                                                         channels)
        reference = "the run's fake-quantized PyTorch model (QAT), on this machine"
    else:
        recipe, model, classes, _ = R.load_trained(run)
        reference = "the run's PyTorch model, on this machine"
    sensor = sidecar.get("sensor")
    if sensor and not sensor.get("seen_in_training", True):  # exported for another sensor (export --bands)
        from edgecnn.train.sensor import from_record

        recipe = from_record(recipe, model, sensor)
        reference += f", set to {sensor['name']}"
    cfg = recipe.data
    norm = sidecar.get("normalization") or {}
    mean, std = norm.get("mean", cfg.mean), norm.get("std", cfg.std)
    graph = deployable(model, cfg.bands, cfg.image_size, channels)
    key = (str(run), cfg.model_dump_json() if hasattr(cfg, "model_dump_json") else repr(cfg), recipe.seed)
    if key not in _DATASETS:  # a run's artifacts share one split (the built-in dataset is generated: seconds)
        _DATASETS[key] = build_datasets(cfg, recipe.seed, len(cfg.bands))[1:]
    val_ds, data_classes = _DATASETS[key]
    if list(data_classes) != list(classes):
        raise UserError(f"--check: {run}: the dataset's classes no longer match the run's; point data.root at "
                        "the same dataset")
    cpu = torch.device("cpu")
    order = torch.randperm(len(val_ds), generator=torch.Generator().manual_seed(recipe.seed))[:n].tolist()
    per_input: list[list] = []
    expected, labels = [], []
    with torch.no_grad():
        for x, y in make_loader(val_ds, [[i] for i in order], 0, cpu):
            if len(y) == 0:
                continue
            own = file_mask(x)  # a band lost in the file is masked, as eval masks it
            mask = None if own is None else own[0]
            x = normalise(x, cpu, mean, std)
            expected.append(graph.reference(x, mask).reshape(-1).float().numpy())
            labels.append(int(y[0]))
            ins = [t.numpy().astype(np.float32) for t in graph.inputs_for(x, mask)]
            per_input = per_input or [[] for _ in ins]
            for lst, a in zip(per_input, ins):
                lst.append(a)
    if not labels:
        raise UserError(f"--check: {run} has no readable validation images")
    return CheckSet([np.stack(lst) for lst in per_input], np.stack(expected), np.array(labels), reference)


def compare(got, check: CheckSet) -> dict:
    """The row's ``check_*`` fields from the device's logits."""
    got = np.asarray(got, dtype=np.float32).reshape(check.expected.shape)
    diff = np.abs(got - check.expected)
    top = got.argmax(1)
    return {"check_n": int(len(top)),
            "check_top1_agreement": float((top == check.expected.argmax(1)).mean()),
            "check_max_abs_logit_diff": float(diff.max()),
            "check_mean_abs_logit_diff": float(diff.mean()),
            "check_accuracy": float((top == check.labels).mean()),
            "check_reference_accuracy": float((check.expected.argmax(1) == check.labels).mean()),
            "check_reference": check.reference}


def run_check(worker, check: CheckSet, base_timeout: float) -> dict:
    """Send the images to a loaded runner in chunks; the row's ``check_*`` fields (or ``check_error``)."""

    n = len(check.labels)
    got = []
    try:
        for start in range(0, n, CHUNK):
            msg = {"cmd": "check", "inputs": [encode(a[start:start + CHUNK]) for a in check.inputs]}
            k = min(CHUNK, n - start)
            answer = worker.ask(msg, base_timeout + PER_IMAGE_S * k, f"checking images {start + 1}-{start + k}")
            got.append(decode(answer))
    except RunnerFailed as e:
        return {"check_n": n, "check_error": str(e)}
    return compare(np.concatenate(got), check)


def attach(worker, row: dict, check: CheckSet, base_timeout: float) -> None:
    """Run the check as soon as the runner has loaded, before warm-up and timing.

    The driver's first ``receive`` is the load; it is wrapped once, so the check
    happens inside the runner process that is then timed (no second load) and
    a load failure still reaches the driver unchanged.
    """
    first = worker.receive

    def receive(timeout: float, doing: str) -> dict:
        worker.receive = first
        ready = first(timeout, doing)
        row.update(run_check(worker, check, base_timeout))
        return ready

    worker.receive = receive


def no_check_rows(rows: list[dict], n: int) -> None:
    """``adb://`` and ``--runner`` rows: say why there is no check."""
    for row in rows:
        row.update(check_n=n, check_error=NO_NATIVE)


def note(row: dict) -> str | None:
    """One line for the terminal and the report: ``check on the device: 200 images, ...``; None without --check."""
    if not row.get("check_n"):
        return None
    if row.get("check_error"):
        return f"check: {row['check_error']}"
    return (f"check on {row.get('device') or 'the device'}: {row['check_n']} images, top-1 agreement "
            f"{row['check_top1_agreement']:.1%} with {row.get('check_reference') or 'PyTorch'}, max |logit diff| "
            f"{row['check_max_abs_logit_diff']:.3g}, accuracy {row['check_accuracy']:.1%} "
            f"(PyTorch {row['check_reference_accuracy']:.1%})")
