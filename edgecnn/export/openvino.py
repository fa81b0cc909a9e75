"""OpenVINO target: an IR pair, ``.xml`` (graph) + ``.bin`` (weights).

``openvino.convert_model`` is given a ``torch.export`` program: its default
TorchScript path fails on the attention block's tracing check. INT8 quantizes
the converted ``openvino.Model`` with NNCF.

Two OpenVINO defaults would make an "fp32" artifact something else, and both
are overridden here:

* ``save_model`` compresses weights to fp16 unless told not to;
* the CPU plugin runs in bf16 on CPUs that support it unless
  ``INFERENCE_PRECISION_HINT`` says f32. Parity is measured with f32 and the
  sidecar records the config, so ``predict`` and ``bench`` can use the same.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.export.artifact import Runner, export_failed, temp_names, torch_export
from edgecnn.quantize import _compat

NAME = "openvino"
SUFFIX = ".xml"
REQUIRES = ("openvino",)  # import names
REQUIRES_INT8 = ("nncf",)
# What parity is measured with and what a runner uses unless told otherwise.
CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def runtime() -> dict:
    return {"name": "openvino", "version": _compat.version("openvino"), "device": "CPU", "config": dict(CONFIG)}


def companions(path: Path) -> list[Path]:
    """The weights file beside the ``.xml``."""
    return [Path(path).with_suffix(".bin")]


def export(graph, path: Path, int8: bool, calibration: list, quantized: tuple | None = None,
           float_layers: tuple[str, ...] = ()) -> dict:
    """Write ``graph`` (a ``Deployable``) to ``path`` (``.xml``) and its ``.bin``.

    Args:
        quantized: ``(module, quantization section)`` of a PyTorch model with
            fake-quantize ops already (QAT); converted as it is, its FakeQuantize
            ranges becoming the IR's, instead of quantizing with NNCF here.
        float_layers: names of ``graph.module``'s layers INT8 leaves in float (the accuracy budget):
            NNCF ignores the OpenVINO nodes converted from their ops.

    Returns:
        The target's sidecar sections: ``export`` and ``quantization`` (``None`` for fp32).

    Raises:
        UserError: openvino (or nncf for INT8) missing, or the conversion fails.
    """
    _compat.require("openvino", purpose="the openvino target")
    import openvino as ov

    from edgecnn.quantize import ptq

    program = torch_export(graph.module if quantized is None else quantized[0], graph.example)
    ignored = []
    try:
        if float_layers and int8 and quantized is None:
            # The decoder convert_model would build, kept so that OpenVINO node names (``<fx node>/aten...``)
            # can be traced back to the modules whose ops they came from.
            from openvino.frontend.pytorch.fx_decoder import TorchFXPythonDecoder

            decoder = TorchFXPythonDecoder.from_exported_program(program)
            prefixes = tuple(f"{n}/" for n in ptq.fx_nodes(decoder.pt_module, float_layers))
            model = ov.convert_model(decoder)
            ignored = [op.get_friendly_name() for op in model.get_ordered_ops()
                       if op.get_friendly_name().startswith(prefixes)]
        else:
            model = ov.convert_model(program)
    except Exception as e:
        raise export_failed("openvino export", "converting the torch.export program (convert_model)", e) from None
    # convert_model leaves batch and spatial sizes dynamic; pin them to the export
    # shape (the graph was captured for it) and name the ports as the sidecar does.
    model.reshape({port: list(t.shape) for port, t in zip(model.inputs, graph.example)})
    for port, name in zip(model.inputs, graph.input_names):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({"logits"})

    sections: dict = {
        "export": {"exporter": "openvino.convert_model(torch.export.export(...)); save_model(compress_to_fp16=False)"},
        "quantization": None,
    }
    if quantized is not None:
        sections["quantization"] = quantized[1]
    elif int8:
        try:
            model, sections["quantization"] = ptq.nncf_openvino(model, calibration, ignored, float_layers)
        except Exception as e:
            raise export_failed("openvino int8", "quantizing with nncf", e) from None
    # .bin first, .xml last: a reader that finds the .xml finds its weights.
    with temp_names([*companions(path), path]) as (tmp_bin, tmp_xml):
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    return sections


def load(path: Path, config: dict | None = None) -> Runner:
    """Compile an ``.xml`` for the CPU with ``openvino.Core``.

    Args:
        config: CPU plugin properties (default ``CONFIG``: f32 inference).
    """
    _compat.require("openvino", purpose="the openvino runtime")
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", CONFIG if config is None else config)
    request = compiled.create_infer_request()
    output = compiled.outputs[0]

    def run(inputs):
        return request.infer(list(inputs))[output].copy()

    return run
