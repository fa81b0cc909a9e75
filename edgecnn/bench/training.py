"""Training and evaluation throughput (``edgecnn bench-train``): images per second, as flat rows.

What is timed is the step the training loop runs (normalise, augment,
forward, loss, backward, SGD update; or normalise + forward in eval mode) on
a fixed batch of random images of the recipe's shape, so the figure is the
model's and the device's, not the data loader's. GPU steps are timed with a
synchronize after each one.

``bench_loader`` is the other half (``bench-train --loader``): the images per
second the recipe's DataLoader delivers with its workers and no model, once
for the decoding epoch (which fills the decoded cache) and once for the
cached epochs after it.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from edgecnn.config import Recipe
from edgecnn.train import run as R
from edgecnn.train.env import cpu_model
from edgecnn.train.loop import forward, prepare


def _time_steps(step, steps: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):  # first steps pay for allocation, autotuning and (with compile) compilation
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def bench_train(recipe: Recipe, steps: int = 10, warmup: int = 3, num_classes: int | None = None) -> list[dict]:
    """One row for training and one for evaluation throughput of ``recipe``'s model.

    Raises:
        UserError: ``train.device=cuda`` without a GPU.
    """
    from edgecnn.data import Augment
    from edgecnn.data.bands import sample_subset_mask
    from edgecnn.models.registry import takes_mask

    cfg, tc = recipe.data, recipe.train
    device = R.pick_device(tc.device)
    torch.set_num_threads(tc.threads or os.cpu_count() or 1)
    torch.manual_seed(recipe.seed)
    classes = num_classes or len(cfg.classes or []) or cfg.num_classes or 50
    model = R.build_for_recipe(recipe, classes).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if tc.compile else model
    band_aware = takes_mask(model)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    gen = torch.Generator().manual_seed(recipe.seed)
    aug = Augment(**recipe.augment.model_dump())
    aug = aug if aug.enabled else None
    images = torch.randint(0, 256, (tc.batch_size, len(cfg.bands), cfg.image_size, cfg.image_size),
                           dtype=torch.uint8, generator=gen)
    # Random 8-bit images: the photo normalisation whatever the recipe's (a folder's may be computed later).
    mean, std = cfg.mean or [0.5] * len(cfg.bands), cfg.std or [0.25] * len(cfg.bands)
    labels = torch.randint(0, classes, (tc.batch_size,), generator=gen).to(device)
    if device.type == "cuda":
        images = images.pin_memory()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.amp)

    def batch(augment):
        x = prepare(images, device, mean, std, augment, gen)
        return x.contiguous(memory_format=torch.channels_last) if tc.channels_last else x

    def train_step():
        mask = sample_subset_mask(len(cfg.bands), gen) if tc.band_subsets != "none" else None
        with autocast:
            loss = F.cross_entropy(forward(net, batch(aug), mask, band_aware).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step():
        with autocast:
            forward(net, batch(None), None, band_aware)

    rows = []
    for mode, step in (("train", train_step), ("eval", eval_step)):
        net.train(mode == "train")
        times = _time_steps(step, steps, warmup, device)
        rows.append(_row(recipe, mode, times, steps, warmup, device))
    return rows


def _row(recipe: Recipe, mode: str, times: list[float], steps: int, warmup: int, device: torch.device) -> dict:
    """The row of one mode: images per second from the median step, and the settings it ran with."""
    from edgecnn.core.stats import summarize

    cfg, tc = recipe.data, recipe.train
    # The same statistics as every bench row: the median step with its 95% interval.
    stats = summarize([[1000 * t for t in times]])
    p50 = stats["latency_ms_p50"] / 1000
    return {
        "recipe": recipe.name, "model": recipe.model.name, "mode": mode,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "device_type": device.type, "batch": tc.batch_size, "image_size": cfg.image_size,
        "images_per_s": round(tc.batch_size / p50, 2),
        "images_per_s_ci": [round(tc.batch_size / (stats["latency_ms_p50_ci_high"] / 1000), 2),
                            round(tc.batch_size / (stats["latency_ms_p50_ci_low"] / 1000), 2)],
        "step_ms_p50": round(1000 * p50, 3),
        "step_ms_p50_ci_low": round(stats["latency_ms_p50_ci_low"], 3),
        "step_ms_p50_ci_high": round(stats["latency_ms_p50_ci_high"], 3),
        "step_ms_mean": round(stats["latency_ms_mean"], 3), "step_ms_cv": round(stats["cv"] or 0.0, 4),
        "steps": steps, "warmup": warmup, "amp": tc.amp, "channels_last": tc.channels_last,
        "compile": tc.compile, "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def bench_loader(recipe: Recipe, epochs: int = 3) -> list[dict]:
    """Loader-only rows for a folder recipe's training split: the decoding epoch, then cached epochs.

    The decoding epoch builds the decoded cache in a fresh temporary folder (an existing cache
    would hide the decode), with the recipe's ``data.workers``; each cached epoch then reads
    shuffled batches of ``train.batch_size`` from it through a DataLoader with those workers.

    Raises:
        UserError: the recipe's data source is not a folder, or the folder's problems.
    """
    import tempfile
    from pathlib import Path

    from edgecnn.data import build_datasets
    from edgecnn.data.cache import CachedFolder, build, cache_bytes
    from edgecnn.errors import UserError
    from edgecnn.train.loop import epoch_batches, make_loader

    cfg, tc = recipe.data, recipe.train
    if cfg.source != "folder":
        raise UserError("bench-train --loader times a folder's loader; the built-in dataset (synth) has none")
    ds = build_datasets(cfg, recipe.seed, len(cfg.bands), cache=False)[0]
    gen = torch.Generator().manual_seed(recipe.seed)
    with tempfile.TemporaryDirectory(prefix="edgecnn-loader-") as tmp:
        t0 = time.perf_counter()
        cached = CachedFolder(ds, build(ds, Path(tmp), "bench", cfg.workers))
        times = [time.perf_counter() - t0]
        for _ in range(epochs):
            t0 = time.perf_counter()
            seen = sum(len(y) for _, y in make_loader(cached, epoch_batches(len(ds), tc.batch_size, gen),
                                                      cfg.workers, torch.device("cpu")))
            times.append(time.perf_counter() - t0)
    base = {"recipe": recipe.name, "device": cpu_model(), "device_type": "cpu", "batch": tc.batch_size,
            "image_size": cfg.image_size, "images": len(ds), "workers": cfg.workers,
            "dtype": ds.dtype, "bands": len(cfg.bands), "cache_mb": round(cache_bytes(ds) / 2**20, 1),
            "torch": torch.__version__}
    decode = {**base, "mode": "loader_decode", "epochs": 1, "seconds": round(times[0], 3),
              "images_per_s": round(len(ds) / times[0], 1)}
    best = sorted(times[1:])[len(times[1:]) // 2]  # the median cached epoch
    cached_row = {**base, "mode": "loader_cached", "epochs": epochs, "seconds": round(best, 4),
                  "images_per_s": round(seen / best, 1), "speedup_vs_decode": round(times[0] / best, 1)}
    return [decode, cached_row]
