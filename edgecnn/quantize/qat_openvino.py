"""QAT for OpenVINO (``edgecnn qat --target openvino``): NNCF quantizers with learned scales.

``OpenvinoNNCF`` is the backend ``quantize.qat`` drives (its ``Backend`` protocol);
``FixedFakeQuantize`` holds a learned range at export, so the graph ``torch.export`` captures
converts to OpenVINO FakeQuantize nodes. Exported with ``edgecnn export --target openvino --int8``.

A band-aware model (``registry.takes_mask``) arrives as ``MaskRows(static_model(model))`` and is
quantized and stripped with both inputs (image, mask); the ops of its ``StemGains`` (the static stem's
mask-to-gains arithmetic) are in NNCF's ignored scope, so they stay float as PTQ leaves them.
"""

from __future__ import annotations

import copy
import json
import re

import torch
from torch import nn

from edgecnn import backends
from edgecnn.models.dynamic_conv import StemGains
from edgecnn.models.wave_conv import WaveGains
from edgecnn.models.surgery import swap


class FixedFakeQuantize(nn.Module):
    """``torch.fake_quantize_per_{tensor,channel}_affine`` with constant parameters.

    What ``nncf.strip`` leaves is a ``torch.ao`` ``FakeQuantize``, whose
    forward reads its on/off flags from tensors: ``torch.export`` cannot
    capture that branch ("data-dependent expression"). With the learned
    scales frozen into this module the graph exports, and OpenVINO converts
    each op into a FakeQuantize node.
    """

    def __init__(self, fq: nn.Module):
        super().__init__()
        self.quant_min, self.quant_max = int(fq.quant_min), int(fq.quant_max)
        self.per_channel = fq.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
        if self.per_channel:
            self.axis = int(fq.ch_axis)
            self.register_buffer("scale", fq.scale.detach().reshape(-1).clone())
            self.register_buffer("zero_point", fq.zero_point.detach().reshape(-1).to(torch.int32).clone())
        else:  # Python numbers: a per-tensor op takes them as constants
            self.scale_value = float(fq.scale.reshape(-1)[0])
            self.zero_point_value = int(fq.zero_point.reshape(-1)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(x, self.scale, self.zero_point, self.axis,
                                                          self.quant_min, self.quant_max)
        return torch.fake_quantize_per_tensor_affine(x, self.scale_value, self.zero_point_value,
                                                     self.quant_min, self.quant_max)


class OpenvinoNNCF:
    """NNCF QAT on the PyTorch model, default preset (symmetric INT8, per-channel weights)."""

    NAME = "openvino"
    EXPORT_TARGET = "openvino"
    REQUIRES = ("nncf", "openvino")

    def prepare(self, model: nn.Module, in_shape: tuple[int, int, int], calibration: list) -> nn.Module:
        """``nncf.quantize``: quantizers placed and their initial ranges set from ``calibration``."""
        api = backends.nncf_torch()
        # NNCF calls model(*inputs) for a tuple: (image, mask) for a band-aware model.
        dataset = api.nncf.Dataset(calibration, lambda sample: sample[0] if len(sample) == 1 else tuple(sample))
        patterns = float_scopes(model)
        # validate: a pattern that matches no op (NNCF renaming its ops) fails here instead of quantizing the gains.
        extra = {"ignored_scope": api.nncf.IgnoredScope(patterns=patterns, validate=True)} if patterns else {}
        return api.nncf.quantize(copy.deepcopy(model).eval(), dataset, subset_size=len(calibration), **extra)

    def restore(self, model: nn.Module, in_shape: tuple[int, int, int], qat: dict) -> nn.Module:
        """The quantizers of ``qat["nncf_config"]`` put back into ``model``; the caller loads the state dict."""
        api = backends.nncf_torch()
        return api.load_from_config(model, json.loads(qat["nncf_config"]))

    def extra(self, qat_model: nn.Module) -> dict:
        # As JSON text: the config holds NNCF enums that weights_only checkpoint loading refuses.
        return {"nncf_config": json.dumps(backends.nncf_torch().get_config(qat_model))}

    def for_export(self, qat_model: nn.Module, example: tuple) -> nn.Module:
        """A copy with each quantizer replaced by a ``FixedFakeQuantize`` holding its learned range."""
        api = backends.nncf_torch()
        qat_model.eval()
        stripped = api.strip(qat_model, do_copy=True, example_input=example[0] if len(example) == 1 else tuple(example))

        storage = api.get_hook_storage(stripped)
        hooks = {name for name, _ in storage.named_hooks()}
        swap(storage, lambda m, name: name in hooks, lambda fq, name: FixedFakeQuantize(fq))
        return stripped.eval()

    def settings(self) -> dict:
        return {
            "method": "NNCF quantization-aware training (nncf.quantize on the PyTorch model, then fine-tuned; "
                      "nncf.strip at export)",
            "quantizer": f"nncf {backends.version('nncf')}, default preset",
            "weights": "int8 symmetric per-channel, scales learned while fine-tuning",
            "activations": "int8 symmetric per-tensor (unsigned after ReLU), scales learned while fine-tuning",
            "initial_ranges": "min/max over un-augmented training images (nncf.quantize), then learned",
        }


def float_scopes(model: nn.Module) -> list[str]:
    """NNCF ignored-scope patterns for the ops of each ``StemGains`` (or ``WaveGains``) in ``model``.

    NNCF 3.4 names an op by the modules on the call stack, each by its name in its
    caller, and the op: ``net/0/gains/softmax/0`` for ``net.features.0.0.gains`` (the
    ``Sequential`` ``features.0`` is never called itself, so its name is not there). The
    last two names, the stem's in its parent and ``gains``, are on every path to the op.
    """
    patterns = []
    for name, m in model.named_modules():
        if isinstance(m, (StemGains, WaveGains)):
            tail = "/".join(name.split(".")[-2:])
            patterns.append(f"(.*/)?{re.escape(tail)}/")  # NNCF matches from the start (re.match)
    return patterns
