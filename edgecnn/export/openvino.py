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
from edgecnn import backends

NAME = "openvino"
SUFFIX = ".xml"
REQUIRES = ("openvino",)  # import names
REQUIRES_INT8 = ("nncf",)
# What parity is measured with and what a runner uses unless told otherwise.
CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def runtime() -> dict:
    return {"name": "openvino", "version": backends.version("openvino"), "device": "CPU", "config": dict(CONFIG)}


def companions(path: Path) -> list[Path]:
    """The weights file beside the ``.xml``."""
    return [Path(path).with_suffix(".bin")]


def _fused_layer_names(gm, model, fx_names: list[str], found: list[str]) -> list[str]:
    """OpenVINO names of the kept-float convolutions/matmuls whose names did not survive conversion.

    convert_model folds a BatchNorm into the convolution before it, and the
    fused Convolution takes the name of the BatchNorm's Multiply
    (``Multiply_7122``), so the ``<fx node>/`` prefix finds nothing (measured on
    ResNet-34: the ignored scope was empty and keeping layers in float changed
    nothing). Both graphs list their convolutions and matmuls in the same
    topological order with the same weight shapes: the k-th FX node of a weight
    shape is the k-th OpenVINO op of that shape.
    """
    wanted = [n for n in fx_names if not any(f.startswith(f"{n}/") for f in found)]
    if not wanted:
        return []
    queues: dict[tuple, list[str]] = {}
    for op in model.get_ordered_ops():
        shape = op.input(1).get_partial_shape() if op.get_type_name() in ("Convolution", "MatMul") else None
        if shape is not None and shape.is_static:
            queues.setdefault(tuple(shape.to_shape()), []).append(op.get_friendly_name())
    seen: dict[tuple, int] = {}
    names = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or not str(node.target).startswith(("aten.convolution", "aten.linear")):
            continue
        weight = node.args[1]
        val = getattr(weight, "meta", {}).get("val")
        if val is None:
            continue
        key = tuple(val.shape)
        k = seen[key] = seen.get(key, -1) + 1
        if node.name in wanted and k < len(queues.get(key, [])):
            names.append(queues[key][k])
    return names


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
    float_layers = (*graph.float_modules, *float_layers)  # a static stem's mixing gains and the head stay float
    backends.require("openvino", purpose="the openvino target")
    import openvino as ov

    from edgecnn.core.progress import say
    from edgecnn.quantize import ptq

    say("torch.export")
    program = torch_export(graph.module if quantized is None else quantized[0], graph.example)
    try:
        say("converting to OpenVINO IR")
        model, ignored = _converted(program, float_layers if int8 and quantized is None else ())
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
        say(f"quantizing (NNCF, calibrating on {len(calibration)} images)")
        try:
            model, sections["quantization"] = ptq.nncf_openvino(model, calibration, ignored, float_layers)
        except Exception as e:
            raise export_failed("openvino int8", "quantizing with nncf", e) from None
    # .bin first, .xml last: a reader that finds the .xml finds its weights.
    with temp_names([*companions(path), path]) as (tmp_bin, tmp_xml):
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    return sections


def _converted(program, float_layers: tuple[str, ...]) -> tuple:
    """``convert_model`` of ``program``, and the OpenVINO node names that came from ``float_layers``' ops.

    With float layers the decoder convert_model would build is kept, so that OpenVINO node names
    (``<fx node>/aten...``) can be traced back to the modules whose ops they came from.
    """
    import openvino as ov

    from edgecnn.quantize import ptq

    if not float_layers:
        return ov.convert_model(program), []
    from openvino.frontend.pytorch.fx_decoder import TorchFXPythonDecoder

    decoder = TorchFXPythonDecoder.from_exported_program(program)
    fx_names = ptq.fx_nodes(decoder.pt_module, float_layers)
    prefixes = tuple(f"{n}/" for n in fx_names)
    model = ov.convert_model(decoder)
    ignored = [op.get_friendly_name() for op in model.get_ordered_ops()
               if op.get_friendly_name().startswith(prefixes)]
    return model, ignored + _fused_layer_names(decoder.pt_module, model, fx_names, ignored)


def load(path: Path, config: dict | None = None) -> Runner:
    """Compile an ``.xml`` for the CPU with ``openvino.Core``.

    Args:
        config: CPU plugin properties (default ``CONFIG``: f32 inference).
    """
    backends.require("openvino", purpose="the openvino runtime")
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", CONFIG if config is None else config)
    request = compiled.create_infer_request()
    output = compiled.outputs[0]

    def run(inputs):
        return request.infer(list(inputs))[output].copy()

    return run
