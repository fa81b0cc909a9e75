"""ONNX target: one ``.onnx`` file, run with onnxruntime.

The model is exported with the dynamo exporter (``torch.onnx.export(...,
dynamo=True)``, which goes through ``torch.export``); if that fails the
TorchScript exporter is tried, and the sidecar says which one wrote the file.
INT8 is onnxruntime's static QDQ quantization of the float file.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from edgecnn.errors import UserError
from edgecnn.export.artifact import Runner, export_failed, temp_names
from edgecnn import backends

NAME = "onnx"
SUFFIX = ".onnx"
REQUIRES = ("onnx", "onnxscript", "onnxruntime")  # import names
REQUIRES_INT8 = ()
# The dynamo exporter's own opset (torchlib's); torch's default, 20, only adds a
# version-conversion pass, and 18 also runs on the older onnxruntime builds devices carry.
OPSET = 18
# onnxruntime (>= 1.21) quantizes, when a session is created, the float weights of a Conv/Gemm
# that sits between a DequantizeLinear and a QuantizeLinear: a layer the accuracy budget kept
# in float would be quantized again at load time (measured: top-1 agreement 42% instead of 98%
# on tests/test_accuracy_budget.py). Turned off for every session: a fully quantized or an fp32
# graph has no such Conv, so nothing else changes.
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]


def runtime() -> dict:
    return {"name": "onnxruntime", "version": backends.version("onnxruntime"), "providers": ["CPUExecutionProvider"],
            "disabled_optimizers": list(DISABLED_OPTIMIZERS)}


def companions(path: Path) -> list[Path]:
    """None: the artifact is one file."""
    return []


def _to_onnx(graph, path: Path) -> str:
    """Export ``graph`` to ``path``; returns the exporter's name.

    Raises:
        UserError: both exporters fail (the dynamo exporter's error is reported).
    """
    import torch

    names = dict(input_names=graph.input_names, output_names=["logits"], opset_version=OPSET)
    try:
        # The dynamo exporter narrates each step on stdout; the CLI prints its own summary.
        with contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(graph.module, graph.example, dynamo=True, verbose=False, **names)
        program.save(str(path), external_data=False)
        return "torch.onnx.export(dynamo=True)"
    except Exception as dynamo_error:
        try:
            torch.onnx.export(graph.module, graph.example, str(path), dynamo=False, **names)
            return "torch.onnx.export(dynamo=False) (TorchScript; the dynamo exporter failed)"
        except Exception:
            raise export_failed("onnx export", "converting to ONNX (torch.onnx.export)", dynamo_error) from None


def export(graph, path: Path, int8: bool, calibration: list, quantized: tuple | None = None,
           float_layers: tuple[str, ...] = ()) -> dict:
    """Write ``graph`` (a ``Deployable``) to ``path`` as ``.onnx``.

    Args:
        quantized: must be ``None``: no QAT backend produces models for onnxruntime.
        float_layers: names of ``graph.module``'s layers INT8 leaves in float (the accuracy budget).

    Returns:
        The target's sidecar sections: ``export`` and ``quantization`` (``None`` for fp32).

    Raises:
        UserError: onnx, onnxscript or onnxruntime missing, or the export fails.
    """
    float_layers = (*graph.float_modules, *float_layers)  # a static stem's mixing gains and the head stay float
    backends.require("onnx", "onnxscript", "onnxruntime", purpose="the onnx target")
    from edgecnn.quantize import ptq

    if quantized is not None:
        raise UserError("the onnx target has no QAT path; export the float run with --target onnx --int8")

    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as work:
        work = Path(work)
        fp32 = work / "model.onnx"
        sections: dict = {"export": {"exporter": _to_onnx(graph, fp32), "opset": OPSET}, "quantization": None}
        with temp_names([path]) as (tmp,):
            if int8:
                try:
                    sections["quantization"] = ptq.onnxruntime_static(fp32, tmp, graph.input_names, calibration, work,
                                                                           float_layers)
                except Exception as e:
                    raise export_failed("onnx int8", "quantizing with onnxruntime quantize_static", e) from None
            else:
                shutil.copyfile(fp32, tmp)
    return sections


def load(path: Path, config: dict | None = None) -> Runner:
    """Open an ``.onnx`` with ``onnxruntime.InferenceSession`` on the CPU provider.

    Args:
        config: ``SessionOptions`` attributes, e.g. ``{"intra_op_num_threads": 2}``.
    """
    backends.require("onnxruntime", purpose="the onnx runtime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in (config or {}).items():
        setattr(options, key, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=DISABLED_OPTIMIZERS)
    names = [i.name for i in session.get_inputs()]

    def run(inputs):
        return session.run(None, dict(zip(names, inputs)))[0]

    return run
