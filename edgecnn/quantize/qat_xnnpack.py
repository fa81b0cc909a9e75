"""QAT for XNNPACK (``edgecnn qat --target xnnpack``): PT2E with the XNNPACK quantizer.

``XnnpackPT2E`` is the backend ``quantize.qat`` drives (its ``Backend`` protocol); ``PT2EModel`` wraps
the prepared graph so it trains and evaluates like a module. Exported with
``edgecnn export --target executorch --int8``; ``qat.py``'s docstring says how the two backends differ.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgecnn import backends
from edgecnn.errors import export_failed
from edgecnn.quantize.delegable import KEEP_FLOAT, for_xnnpack


class PT2EModel(nn.Module):
    """A PT2E-prepared graph that switches between training and evaluation like a module.

    An exported graph refuses ``.train()``/``.eval()``: torchao swaps its
    BatchNorm and dropout ops instead (``move_exported_model_to_train/eval``).
    Evaluation also stops the observers, so validation images never move the
    quantization ranges; training restarts them.
    """

    def __init__(self, graph: torch.fx.GraphModule):
        super().__init__()
        self.graph = graph
        self.training = True  # prepare_qat_pt2e returns it in training mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def train(self, mode: bool = True) -> PT2EModel:
        api = backends.pt2e_xnnpack("qat for xnnpack")
        (api.move_exported_model_to_train if mode else api.move_exported_model_to_eval)(self.graph)
        self.graph.apply(api.enable_observer if mode else api.disable_observer)
        self.training = mode
        return self


class XnnpackPT2E:
    """PT2E QAT with the XNNPACK quantizer: INT8 symmetric, per-channel weights."""

    NAME = "xnnpack"
    EXPORT_TARGET = "executorch"
    REQUIRES = ("torchao", "executorch")

    def _prepared(self, model: nn.Module, in_shape: tuple[int, int, int]) -> PT2EModel:
        api = backends.pt2e_xnnpack("qat for xnnpack")
        quantizer = api.XNNPACKQuantizer()
        quantizer.set_global(api.get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
        for module_type in KEEP_FLOAT:
            quantizer.set_module_type(module_type, None)
        # The graph that ExecuTorch lowers must be the graph that trained: the
        # XNNPACK rewrites (for_xnnpack) come first. Train mode, so BatchNorm is
        # captured with batch statistics; a dynamic batch, so the converted graph
        # takes batch 1 at export.
        model = for_xnnpack(copy.deepcopy(model)).train()
        example = (torch.zeros(2, *in_shape),)
        try:
            batch = torch.export.Dim("batch", min=1)
            graph = torch.export.export(model, example, dynamic_shapes=({0: batch},)).module()
            return PT2EModel(api.prepare_qat_pt2e(graph, quantizer))
        except Exception as e:
            raise export_failed("qat xnnpack", "capturing the training graph (torch.export, dynamic batch)", e,
                                fix="QAT for xnnpack starts from torch.export; change the model code it names") from None

    def prepare(self, model: nn.Module, in_shape: tuple[int, int, int], calibration: list) -> nn.Module:
        """Fake-quantize ``model`` (inputs ``[B, *in_shape]``); the observers start on the first training batch."""
        return self._prepared(model, in_shape)

    def restore(self, model: nn.Module, in_shape: tuple[int, int, int], qat: dict) -> nn.Module:
        """The same prepared graph for ``model``'s architecture; the caller loads the state dict."""
        return self._prepared(model, in_shape)

    def extra(self, qat_model: nn.Module) -> dict:
        return {}

    def for_export(self, qat_model: nn.Module, example: tuple) -> nn.Module:
        """The INT8 graph (``convert_pt2e``) with the learned scales, ready for ``torch.export`` at batch 1."""
        api = backends.pt2e_xnnpack("qat for xnnpack")
        qat_model.eval()
        return api.convert_pt2e(copy.deepcopy(qat_model.graph))

    def settings(self) -> dict:
        return {
            "method": "PT2E quantization-aware training (torchao prepare_qat_pt2e, convert_pt2e at export)",
            "quantizer": "XNNPACKQuantizer(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))",
            "weights": "int8 symmetric per-channel (fake-quantized while fine-tuning)",
            "activations": "int8 (moving-average min/max observed while fine-tuning)",
            "graph": "torch.export in train mode, dynamic batch",
            "kept_float": [t.__name__ for t in KEEP_FLOAT],
        }
