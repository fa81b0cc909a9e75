"""Parameter and MAC counts.

MACs come from ``torch.utils.flop_counter`` (which counts FLOPs = 2 x MACs for
convolutions, linear layers and matmuls; norms, activations and pooling are
not counted). The paper's "FLOPs" column is MACs in this sense.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Cost:
    params: int
    macs: int
    input_size: int
    in_chans: int
    per_module: dict[str, dict[str, int]] = field(default_factory=dict)  # top-level name -> params, macs


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_cost(model: nn.Module, input_size: int, in_chans: int = 3, *extra_inputs: torch.Tensor) -> Cost:
    """Count parameters and MACs for one image of ``input_size`` x ``input_size``.

    Args:
        model: any module; it is run once in eval mode on a random batch of one.
        input_size: image side in pixels.
        in_chans: input bands.
        *extra_inputs: further forward arguments (e.g. a band presence mask).
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, in_chans, input_size, input_size), *extra_inputs)
    model.train(was_training)
    flops = counter.get_flop_counts()
    root = type(model).__name__
    per_module = {}
    for name, child in model.named_children():
        per_module[name] = {
            "params": count_params(child),
            "macs": int(sum(flops.get(f"{root}.{name}", {}).values()) // 2),
        }
    return Cost(count_params(model), int(counter.get_total_flops() // 2), input_size, in_chans, per_module)
