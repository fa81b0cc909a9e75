"""Post-training INT8 quantization, one function per backend.

Each function takes the float graph in the form its backend quantizes
(a ``torch.export`` module, an OpenVINO model, an ONNX file) and the
calibration samples, and returns the quantized graph together with the
settings worth recording in the artifact's sidecar.

A calibration sample is a tuple of float tensors, one per graph input, batch 1:
the graphs are exported with a static batch of one, so calibration feeds them
one image at a time.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from edgecnn import backends

Sample = tuple[Tensor, ...]


def pt2e_xnnpack(module: torch.nn.Module, example: Sample, calibration: Sequence[Sample],
                 keep_float: Sequence[type] = (), float_layers: Sequence[str] = ()) -> tuple[torch.nn.Module, dict]:
    """PT2E quantization for XNNPACK: symmetric INT8, per-channel weights.

    Args:
        module: the float model in eval mode.
        example: one sample, used to trace.
        calibration: samples whose activation ranges set the INT8 scales.
        keep_float: module types left in float. A ``DynamicConv2D`` mixes its
            kernel at run time; quantized, that kernel would need a run-time
            per-channel quantize op, which ExecuTorch lacks ("Missing out
            variants: quantize_per_channel"), and XNNPACK does not take a
            convolution with a computed weight anyway.
        float_layers: module names left in float (the accuracy budget, ``budget.py``).

    Returns:
        (the converted module, ready for ``torch.export.export`` again; settings for the sidecar)
    """
    api = backends.pt2e_xnnpack()
    quantizer = api.XNNPACKQuantizer()
    quantizer.set_global(api.get_symmetric_quantization_config(is_per_channel=True))
    for module_type in keep_float:
        quantizer.set_module_type(module_type, None)
    for name in float_layers:
        # set_module_name asserts a config; None in its table is what set_module_type(t, None)
        # does for types: the module's ops stay unannotated and the global config skips them.
        quantizer.module_name_config[name] = None
    # PT2E works on the pre-dispatch graph that export(...).module() returns.
    graph = torch.export.export(module, example).module()
    prepared = api.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for sample in calibration:
            prepared(*sample)
    converted = api.convert_pt2e(prepared)
    settings = {
        "method": "PT2E post-training (torchao prepare_pt2e / convert_pt2e)",
        "quantizer": "XNNPACKQuantizer(get_symmetric_quantization_config(is_per_channel=True))",
        "weights": "int8 symmetric per-channel",
        "activations": "int8 per tensor (HistogramObserver: the range that least distorts the calibration histogram)",
        "calibration_images": len(calibration),
        "kept_float": [t.__name__ for t in keep_float],
        "float_layers": list(float_layers),
    }
    return converted, settings


def nncf_openvino(model, calibration: Sequence[Sample], ignored_nodes: Sequence[str] = (),
                  float_layers: Sequence[str] = ()) -> tuple[object, dict]:
    """NNCF post-training quantization of an OpenVINO model (``openvino.Model``).

    Quantizing the converted OpenVINO model, rather than the PyTorch one, is the
    path NNCF supports best: no tracing of its own, and the result is the IR
    that is saved. The options are ``_NNCF_OPTIONS`` (why each: ``_nncf_options``).

    Args:
        model: the float ``openvino.Model``.
        calibration: samples, one tuple per image, in the model's input order.
        ignored_nodes: OpenVINO node names left in float (``float_layers``, the modules they came from).

    Returns:
        (the quantized ``openvino.Model``; settings for the sidecar)
    """
    nncf = backends.nncf()
    # OpenVINO takes a list of arrays in input order for a multi-input model.
    dataset = nncf.Dataset(list(calibration), lambda sample: [t.numpy() for t in sample])
    extra = {"ignored_scope": nncf.IgnoredScope(names=list(ignored_nodes), validate=False)} if ignored_nodes else {}
    quantized = nncf.quantize(model, dataset, subset_size=len(calibration), **extra, **_nncf_options(nncf))
    settings = {
        "method": "nncf.quantize on the OpenVINO model (default preset: performance, symmetric)",
        "quantizer": f"nncf {backends.version('nncf')}",
        "options": {**_NNCF_OPTIONS, "subset_size": len(calibration)},
        "weights": "int8 symmetric per-channel, half range (overflow_fix=enable)",
        "activations": "int8 symmetric per-tensor (uint8 after ReLU); ranges from a histogram of the calibration "
                       "images (RangeEstimatorParametersSet.HISTOGRAM), not NNCF's default mean of per-image min/max",
        "calibration_images": len(calibration),
        "fast_bias_correction": False,
        "float_layers": list(float_layers),
    }
    return quantized, settings


# What nncf_openvino passes to nncf.quantize beyond the dataset, as the sidecar records it.
_NNCF_OPTIONS = {"fast_bias_correction": False, "overflow_fix": "enable",
                 "activations_range_estimator_params": "RangeEstimatorParametersSet.HISTOGRAM"}


def _nncf_options(nncf) -> dict:
    """``nncf.quantize`` keyword arguments for ``_NNCF_OPTIONS``.

    * ``overflow_fix`` on every layer: x86 CPUs without VNNI (AVX2, early AVX-512) saturate int16
      intermediates in u8 x s8 dot products; NNCF's default guards only the first layer. Guarding every
      layer (7-bit weights) raised top-1 agreement from 96.6% to 98.2% on the quickstart model on such a
      CPU, for one bit of weight precision elsewhere.
    * Full bias correction (not the fast one): folded DynamicConv2D ResNet-34, agreement 95.2% -> 96.4%;
      no change on the quickstart model. The MIXED preset was worse (92.8%).
    * Activation ranges from a histogram (the range minimising the quantization error on the histogram
      of every calibration value). NNCF's default for per-tensor activations is MEAN_MINMAX: the *mean*
      over calibration images of each image's min and max, which clips every image whose extremes are
      above the average. On the folded DynamicConv2D ResNet-34 (dc10, RGB) that clipped 0.1-0.7% of the
      values of every activation quantizer (the deep ReLU outputs reach 2x the mean per-image max),
      signal-to-quantization-noise 15-25 dB in the last two stages: held-out drop 3.5 points, agreement
      95.3%, the same with the CPU plugin's int8 kernels or with FakeQuantize emulated in f32
      (LP_TRANSFORMS_MODE=NO), so it is the ranges, not the Zen 5 kernels. The loss is spread over the
      whole network, which is why keeping a few layers in float (budget.search) could not recover it and
      quantize_with_accuracy_control reverted 47 of 54 quantizers. Histogram: 0.39 points, 99.2%
      (38-45 dB after ReLUs); the global MINMAX: 0.78, 99.2%; MEAN_QUANTILE: 5.1, 91.4%. (Histogram without
      the overflow fix: -0.39, 99.6% on that VNNI CPU; kept on for the CPUs without VNNI.)
    """
    RangeEstimatorParametersSet = backends.nncf_range_estimators()
    return {"fast_bias_correction": False,
            "advanced_parameters": nncf.AdvancedQuantizationParameters(
                overflow_fix=nncf.OverflowFix.ENABLE,
                activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM)}


def onnxruntime_static(src: Path, dst: Path, input_names: list[str], calibration: Sequence[Sample],
                       workdir: Path, float_layers: Sequence[str] = ()) -> dict:
    """Static QDQ quantization of the ONNX file ``src`` into ``dst`` with onnxruntime.

    Args:
        src: the float ONNX model.
        dst: where the INT8 model is written.
        input_names: the model's input names, in the order of each sample.
        calibration: samples.
        workdir: a scratch folder for the pre-processed model.
        float_layers: module names whose ONNX nodes (by the exporter's name scopes) stay in float.

    Returns:
        settings for the sidecar.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    pre, pre_error = _pre_processed(src, workdir / "preprocessed.onnx")
    preprocessed = pre_error is None
    # Node names survive pre-processing but their module scopes (metadata) do not: read them from ``src``.
    exclude = _present(pre, onnx_nodes(src, float_layers)) if float_layers else []
    # U8 activations with S8 per-channel weights: what onnxruntime's CPU kernels
    # are built for (see quantize_static's docstring). reduce_range (7-bit weights)
    # because x86 CPUs without VNNI saturate int16 intermediates: on such a CPU it
    # raised top-1 agreement from 93.4% to 98.0% on the quickstart model. Elsewhere
    # it costs one bit of weight precision; that is the price of an artifact
    # whose accuracy does not collapse on such CPUs.
    quantize_static(
        str(pre), str(dst), _reader(input_names, calibration),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
        nodes_to_exclude=exclude,
    )
    return {
        "method": "onnxruntime.quantization.quantize_static",
        "quantizer": "QDQ format, MinMax calibration",
        "weights": "int8 symmetric per-channel, 7-bit range (reduce_range)",
        "activations": "uint8 asymmetric per-tensor",
        "reduce_range": True,
        "pre_processed": preprocessed,
        **({"pre_process_error": pre_error} if pre_error else {}),
        "calibration_images": len(calibration),
        "float_layers": list(float_layers),
    }


def _pre_processed(src: Path, pre: Path) -> tuple[Path, str | None]:
    """Shape inference and graph fusions before calibration, as onnxruntime recommends: quantizing an
    unfused graph puts QDQ pairs between ops that later fuse (Conv+Relu), which costs accuracy and speed.

    Returns:
        (the graph to quantize, None; or, when pre-processing fails, ``src`` and the reason: it is an
        optimisation, so the plain graph is quantized and the sidecar says why)
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(pre))
        return pre, None
    except Exception as e:
        text = str(e).strip()
        return src, f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


def _reader(input_names: list[str], calibration: Sequence[Sample]):
    """onnxruntime's calibration reader: one input feed per calibration sample."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter([{n: t.numpy() for n, t in zip(input_names, sample)} for sample in calibration])

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    return Reader()


def _present(path: Path, names: list[str]) -> list[str]:
    """Those of ``names`` that are nodes of the ONNX file ``path``."""
    import onnx

    nodes = {node.name for node in onnx.load(str(path), load_external_data=False).graph.node}
    return [n for n in names if n in nodes]


def onnx_nodes(path: Path, modules: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes computed by the PyTorch ``modules`` (themselves, not their submodules).

    The dynamo exporter records each node's module path in its
    ``pkg.torch.onnx.name_scopes`` metadata: ``['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_3']``.
    """
    import onnx

    wanted = set(modules)
    names = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
        if scopes:
            scopes = ast.literal_eval(scopes)
            if len(scopes) >= 2 and scopes[-2] in wanted:
                names.append(node.name)
    return names


def fx_nodes(graph_module: torch.fx.GraphModule, modules: Sequence[str]) -> list[str]:
    """Names of the FX nodes computed by the PyTorch ``modules`` (themselves, not their submodules)."""
    wanted = set(modules)
    names = []
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op == "call_function" and stack:
            path = list(stack.values())[-1][0]
            path = path[len("L['self']."):] if path.startswith("L['self'].") else path
            if path in wanted:
                names.append(node.name)
    return names
