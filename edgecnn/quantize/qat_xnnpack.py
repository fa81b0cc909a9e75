"""QAT for XNNPACK (``edgecnn qat --target xnnpack``): PT2E with the XNNPACK quantizer.

``XnnpackPT2E`` is the backend ``quantize.qat`` drives (its ``Backend`` protocol); ``PT2EModel`` wraps
the prepared graph so it trains and evaluates like a module. Exported with
``edgecnn export --target executorch --int8``; ``qat.py``'s docstring says how the two backends differ.

A band-aware model (``registry.takes_mask``) arrives as ``MaskRows(static_model(model))``: captured with
two inputs, ``x [B, bands, S, S]`` and ``mask [B, bands]``, both with the dynamic batch; ``StemGains`` (the
static stem's mask-to-gains arithmetic) is left in float, as PTQ leaves it (``Deployable.keep_float``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgecnn import backends
from edgecnn.errors import export_failed
from edgecnn.models.dynamic_conv import MaskRows, StemGains, mask_rows
from edgecnn.models.wave_conv import WaveGains
from edgecnn.models.registry import takes_mask
from edgecnn.quantize.delegable import KEEP_FLOAT, for_xnnpack


class PT2EModel(nn.Module):
    """A PT2E-prepared graph that switches between training and evaluation like a module.

    An exported graph refuses ``.train()``/``.eval()``: torchao swaps its
    BatchNorm and dropout ops instead (``move_exported_model_to_train/eval``).
    Evaluation also stops the observers, so validation images never move the
    quantization ranges; training restarts them.

    ``band_aware``: the graph was captured with a ``[B, bands]`` mask input; ``forward`` takes
    the mask as a band-aware model does (``None``, ``[bands]`` or ``[B, bands]``) and hands the
    graph one row per image, the only shape it accepts. ``registry.takes_mask`` reads the attribute,
    so training feeds it the recipe's band subsets.
    """

    def __init__(self, graph: torch.fx.GraphModule, band_aware: bool = False):
        super().__init__()
        self.graph = graph
        self.band_aware = band_aware
        self.training = True  # prepare_qat_pt2e returns it in training mode

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.graph(x, mask_rows(x, mask)) if self.band_aware else self.graph(x)

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
        for module_type in _kept_float(model):
            quantizer.set_module_type(module_type, None)
        # The graph that ExecuTorch lowers must be the graph that trained: the
        # XNNPACK rewrites (for_xnnpack) come first. Train mode, so BatchNorm is
        # captured with batch statistics; a dynamic batch, so the converted graph
        # takes batch 1 at export. A band-aware model gets its mask as a second
        # input with the same batch dimension (one row per image: per-image subsets).
        band_aware = takes_mask(model)
        model = for_xnnpack(copy.deepcopy(model)).train()
        example = (torch.zeros(2, *in_shape),) + ((torch.ones(2, in_shape[0]),) if band_aware else ())
        try:
            batch = torch.export.Dim("batch", min=1)
            dynamic = ({0: batch},) * len(example)
            graph = torch.export.export(model, example, dynamic_shapes=dynamic).module()
            return PT2EModel(api.prepare_qat_pt2e(graph, quantizer), band_aware)
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
        """The INT8 graph (``convert_pt2e``) with the learned scales, ready for ``torch.export`` at batch 1.

        A band-aware graph is wrapped in ``MaskRows``: the artifact takes ``(image [1, bands, S, S],
        mask [bands])``, as PTQ's mask-input artifacts do, and reshapes the mask to the graph's one row.
        """
        api = backends.pt2e_xnnpack("qat for xnnpack")
        qat_model.eval()
        converted = api.convert_pt2e(copy.deepcopy(qat_model.graph))
        return MaskRows(converted) if takes_mask(qat_model) else converted  # no .eval(): the graph refuses it

    def settings(self) -> dict:
        return {
            "method": "PT2E quantization-aware training (torchao prepare_qat_pt2e, convert_pt2e at export)",
            "quantizer": "XNNPACKQuantizer(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))",
            "weights": "int8 symmetric per-channel (fake-quantized while fine-tuning)",
            "activations": "int8 (moving-average min/max observed while fine-tuning)",
            "graph": "torch.export in train mode, dynamic batch (a band-aware model: inputs image and a "
                     "per-image presence mask, both with it)",
            "kept_float": [t.__name__ for t in KEEP_FLOAT],  # plus StemGains in a band-aware model (qat.py)
        }


def _kept_float(model: nn.Module) -> tuple[type, ...]:
    """Module types left in float: LayerNorm (``KEEP_FLOAT``) and a static stem's ``StemGains`` or ``WaveGains``."""
    return (*KEEP_FLOAT, *(t for t in (StemGains, WaveGains) if any(isinstance(m, t) for m in model.modules())))
