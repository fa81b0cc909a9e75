"""The accuracy budget of INT8 (``--max-drop``): keep the fewest layers in float until the drop is within it.

Three steps, the same for every target:

1. **Rank** the layers (every ``Conv2d`` and ``Linear``) by what quantizing
   each alone costs, simulated in PyTorch in one pass per layer: its input
   fake-quantized per tensor (uint8, the range seen on calibration images)
   and its weight per channel (int8), every other layer in float; the cost is
   the mean squared logit change on a held-out slice of the *training* split.
   Cheap (a forward pass of a small slice per layer), and it needs no runtime.
2. **Probe**: quantize with the target's own tool, the top ``k`` layers left in
   float, and measure the artifact with the target's runtime on that slice.
   ``k`` doubles from 1 until the drop is within budget, then bisects between
   the last miss and the first hit: a handful of probes, each about one PTQ export.
3. The export keeps the best probe; the sidecar's parity is then measured on the
   validation split as always (which the ranking and the probes never saw).

Each backend keeps a layer in float its own way, by the PyTorch module name:
``XNNPACKQuantizer`` leaves the module's ops unannotated; NNCF ignores the
OpenVINO nodes converted from that module's ops; onnxruntime excludes the ONNX
nodes whose name scope is that module.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from edgecnn.models.surgery import swap

MAX_PROBES = 4  # quantize-and-measure rounds after the plain PTQ one: with it, about 5x a plain export at most
RANK_IMAGES = 64  # ranking slice (PyTorch only)
PROBE_IMAGES = 256  # held-out slice the probes are measured on through the runtime
RANGE_IMAGES = 64  # calibration images whose activation ranges the ranking simulates
# A budget is met when the drop is within it AND the artifact gives the float model's top-1 answer on at
# least this share of images: a net drop near zero can hide many changed answers that cancel out.
MIN_AGREEMENT = 0.98


def within(record: dict, max_drop: float, min_agreement: float = MIN_AGREEMENT) -> bool:
    """``measure``'s record meets the budget: drop within ``max_drop`` points, agreement >= ``min_agreement``."""
    return record["drop_points"] <= max_drop + 1e-9 and record["top1_agreement"] >= min_agreement


def closest(records: list[dict]) -> dict:
    """Of records that all miss the budget, the nearest: smallest drop, then most agreement, then fewest layers."""
    return min(records, key=lambda t: (t["drop_points"], -t["top1_agreement"], len(t.get("float_layers", []))))


def layers(module: nn.Module, skip: Sequence[type] = ()) -> list[str]:
    """Names of the layers INT8 quantizes and the budget may keep in float: ``Conv2d`` and ``Linear`` modules."""
    skipped = [n for n, m in module.named_modules() if n and isinstance(m, tuple(skip))] if skip else []
    return [n for n, m in module.named_modules()
            if n and type(m) in (nn.Conv2d, nn.Linear) and not any(n.startswith(s + ".") for s in skipped)]


class _FakeQuantLayer(nn.Module):
    """``layer`` with its weight fake-quantized per output channel (int8 symmetric) and its input per tensor (uint8)."""

    def __init__(self, layer: nn.Module, lo: float, hi: float):
        super().__init__()
        self.layer = copy.deepcopy(layer)
        w = self.layer.weight.detach()
        scale = w.abs().reshape(len(w), -1).amax(1).clamp_min(1e-12) / 127
        shape = (-1,) + (1,) * (w.dim() - 1)
        self.layer.weight.data = (w / scale.reshape(shape)).round().clamp(-127, 127) * scale.reshape(shape)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        self.scale = max((hi - lo) / 255, 1e-12)
        self.zero_point = int(min(max(round(-lo / self.scale), 0), 255))

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255))


def _batches(samples: Sequence[tuple[Tensor, ...]], size: int = 32) -> list[tuple[Tensor, ...]]:
    """Samples stacked into batches when every input has a batch dimension of one, else one by one."""
    if all(t.dim() >= 1 and t.shape[0] == 1 for s in samples[:1] for t in s) and all(len(s) == 1 for s in samples[:1]):
        return [(torch.cat([s[0] for s in samples[i:i + size]]),) for i in range(0, len(samples), size)]
    return list(samples)


@torch.no_grad()
def rank(module: nn.Module, names: list[str], calibration: Sequence[tuple[Tensor, ...]],
         inputs: Sequence[tuple[Tensor, ...]]) -> list[tuple[str, float]]:
    """``names`` with the cost of quantizing each alone, most costly first.

    Args:
        module: the float graph (eval mode).
        names: the layers to rank (``layers``).
        calibration: samples whose input ranges per layer set the simulated activation scales.
        inputs: the ranking slice (held-out training images), as graph inputs.

    Returns:
        ``(name, mean squared logit change)`` pairs, descending.
    """
    module = copy.deepcopy(module).eval()
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name in names:
        def observe(m, args, name=name):
            lo, hi = ranges.get(name, (float("inf"), float("-inf")))
            ranges[name] = [min(lo, float(args[0].min())), max(hi, float(args[0].max()))]
        hooks.append(module.get_submodule(name).register_forward_pre_hook(observe))
    for sample in _batches(list(calibration)[:RANGE_IMAGES]):
        module(*sample)
    for h in hooks:
        h.remove()

    batches = _batches(list(inputs))
    reference = [module(*b) for b in batches]
    costs = []
    for name in names:
        if name not in ranges:  # never ran (a branch the graph does not take)
            costs.append((name, 0.0))
            continue
        trial = copy.deepcopy(module)
        trial = swap(trial, lambda m, n, name=name: n == name, lambda m, n: _FakeQuantLayer(m, *ranges[name]))
        err = sum(float(((trial(*b) - r) ** 2).mean()) * len(r) for b, r in zip(batches, reference))
        costs.append((name, err / max(sum(len(r) for r in reference), 1)))
    return sorted(costs, key=lambda c: -c[1])


@torch.no_grad()
def measure(runner, graph, images: Sequence[tuple[Tensor, int]]) -> dict:
    """Accuracy of the artifact (``runner``) and of the PyTorch reference on ``images``, and their top-1 agreement.

    Args:
        images: ``(normalised full-band image [1, bands, S, S], label)`` pairs.
    """
    right = ref_right = agree = 0
    for x, y in images:
        expected = graph.reference(x).argmax(1)
        got = torch.from_numpy(runner([t.numpy() for t in graph.inputs_for(x)])).reshape(1, -1).argmax(1)
        right += int(got.item() == y)
        ref_right += int(expected.item() == y)
        agree += int(got.item() == expected.item())
    n = max(len(images), 1)
    return {"accuracy": right / n, "reference_accuracy": ref_right / n, "top1_agreement": agree / n,
            "drop_points": 100 * (ref_right - right) / n, "images": len(images)}


def search(probe: Callable[[list[str]], dict], ranked: list[str], max_drop: float,
           max_probes: int = MAX_PROBES, min_agreement: float = MIN_AGREEMENT) -> tuple[list[str], list[dict]]:
    """The fewest top-ranked layers to keep in float to meet the budget (``within``).

    ``k`` = 1, 2, 4, ... until a probe meets the budget, then bisection between
    the last miss and that hit; at most ``max_probes`` probes.

    Args:
        probe: ``probe(float_layers)`` -> ``measure``'s record for an artifact with those layers in float.
        ranked: layer names, most costly first.

    Returns:
        (the layers of the chosen probe; every probe's record with ``float_layers`` and ``seconds``), the chosen
        one being the one that met the budget with the fewest layers, else the ``closest``.
    """
    trials: list[dict] = []

    def run(k: int) -> bool:
        t0 = time.perf_counter()
        record = {"float_layers": ranked[:k], **probe(ranked[:k])}
        record["seconds"] = round(time.perf_counter() - t0, 2)
        trials.append(record)
        return within(record, max_drop, min_agreement)

    lo, hi, k = 0, None, 1  # lo: most layers known to miss; hi: fewest known to meet
    while len(trials) < max_probes and k <= len(ranked):
        if run(k):
            hi = k
            break
        lo, k = k, min(2 * k, len(ranked)) if k < len(ranked) else len(ranked) + 1
    while hi is not None and hi - lo > 1 and len(trials) < max_probes:
        mid = (lo + hi) // 2
        if run(mid):
            hi = mid
        else:
            lo = mid
    met = [t for t in trials if within(t, max_drop, min_agreement)]
    best = min(met, key=lambda t: len(t["float_layers"])) if met else (closest(trials) if trials else None)
    return (best["float_layers"] if best else []), trials
