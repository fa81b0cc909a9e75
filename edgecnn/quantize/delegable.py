"""Rewrites that let ExecuTorch's XNNPACK delegate take a whole model.

XNNPACK (executorch 1.4) has no LayerNorm: ``native_layer_norm`` stays on a
portable kernel, and the graph is cut into a delegate call before it and one
after. ``for_xnnpack`` swaps every ``nn.LayerNorm`` for ``DelegableLayerNorm``,
the same function written with ops the partitioner takes (see
``executorch/backends/xnnpack/partition/config/``).

The swap happens only on the way to this target, on a copy: the trained model,
its checkpoints and the other targets keep ``nn.LayerNorm``. OpenVINO (MVN) and
ONNX (LayerNormalization) have a fused op for it, and their INT8 quantizers
would otherwise put quantize/dequantize pairs inside the normalisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from edgecnn.models.surgery import swap


class DelegableLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim, computed from ops XNNPACK delegates.

    Mean, subtract, square, mean, rsqrt, scale, shift: every op has an XNNPACK
    config, provided the means are what its ``mean.dim`` takes, a 4-D tensor
    averaged over its last two dims with ``keepdim``; hence the ``[B, N, 1, C]``
    view of a ``[B, N, C]`` input (a ``reshape``: ``unsqueeze``/``squeeze`` are not
    delegated). Other input ranks compute the same, on portable kernels.
    Same ``weight`` and ``bias`` as ``nn.LayerNorm``; equal to it within 1e-5.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = x.reshape(*x.shape[:-1], 1, x.shape[-1])
        mean = x4.mean(dim=(-2, -1), keepdim=True)
        centred = x4 - mean
        var = (centred * centred).mean(dim=(-2, -1), keepdim=True)  # biased, as nn.LayerNorm
        y = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(x.shape)


# Left in float by INT8 (PT2E) for XNNPACK: XNNPACK runs them in fp32 inside the
# delegate, between a dequantize and a quantize. A LayerNorm quantized op by op
# computes its variance from INT8 squares: on the quickstart model that raised
# the mean |logit difference| to the float model from 0.07 to 1.4.
KEEP_FLOAT: tuple[type, ...] = (DelegableLayerNorm,)


def for_xnnpack(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every one-dim ``nn.LayerNorm`` replaced by ``DelegableLayerNorm``.

    Returns ``module`` itself when it holds none. Weights are shared with the
    original's copy, so the result computes what ``module`` computes.
    """
    if not any(_swappable(m) for m in module.modules()):
        return module

    def delegable(child: nn.Module, name: str) -> nn.Module:
        swapped = DelegableLayerNorm(child.normalized_shape, eps=child.eps,
                                     elementwise_affine=child.elementwise_affine, bias=child.bias is not None)
        swapped.load_state_dict(child.state_dict())
        return swapped.train(child.training)

    # (a bare LayerNorm as the whole model, name "", is left alone)
    module = swap(copy.deepcopy(module), lambda m, name: bool(name) and _swappable(m), delegable)
    return module


def _swappable(m: nn.Module) -> bool:
    return type(m) is nn.LayerNorm and len(m.normalized_shape) == 1
