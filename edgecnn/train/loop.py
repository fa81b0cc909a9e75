"""Training: SGD with momentum, StepLR, cross-entropy; a checkpoint every epoch.

Read top to bottom: ``train`` prepares the run folder, builds data and model,
restores state when resuming, then loops over epochs (``_train_epoch`` is one
pass). Everything random (shuffling, augmentation, band subsets, dropout,
init) comes from seeded generators whose state goes into every checkpoint, so
a run killed at any point and resumed with ``--resume`` produces the same
epochs and metrics as one that never stopped.

Under ``torchrun`` every rank draws the same global batches from the same
generator and trains on its strided share of each (what DistributedSampler
does, but driven by the checkpointed generator, so a DDP run sees exactly the
batches a single process would); gradients are averaged by
DistributedDataParallel, metrics are summed over ranks, and rank 0 alone
writes files and prints.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgecnn.config import Recipe, dump_recipe
from edgecnn.core import contracts as C
from edgecnn.core import progress as P
from edgecnn.core.sensors import sub_sensor_layouts
from edgecnn.errors import UserError
from edgecnn.models.deployable import forward  # noqa: F401 (the masked call; used below and by bench.training)
from edgecnn.train import run as R
from edgecnn.train.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from edgecnn.train.env import environment
from edgecnn.train import dist as D
from edgecnn.train.metrics import confusion, summarize
from edgecnn.data import (Augment, build_datasets, collate, combine_masks, file_mask, normalize, skip_record,
                          skip_summary)
from edgecnn.data.stats import PHOTO_MEAN, PHOTO_STD, band_stats, is_photo
from edgecnn.data.bands import judged_subsets, presence_mask, sample_subset_mask, sample_subset_masks, subset_name
from edgecnn.data.sources import Joined, Source, build_sources, source_batches
from edgecnn.models import set_bands
from edgecnn.models.registry import takes_mask

def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """A shuffled epoch as index batches. A lone last sample joins the previous
    batch, because BatchNorm cannot train on a batch of one."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


_CLAMPED: set[tuple[int, int]] = set()  # (asked, cores) already reported by loader_workers


def loader_workers(workers: int) -> int:
    """``workers``, at most the cores this process may run on (torch warns on every loader otherwise).

    Said once per process on stderr when clamped, e.g. a recipe's 4 workers on a 2-core machine.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers <= cores:
        return workers
    if (workers, cores) not in _CLAMPED:
        _CLAMPED.add((workers, cores))
        print(f"data.workers={workers} clamped to {cores}: this process may use {cores} cores", file=sys.stderr)
    return cores


def make_loader(ds: Dataset, batches: Any, workers: int, device: torch.device) -> Any:
    """Batches of (uint8 images, labels). A dataset already on ``device`` (the
    built-in one with ``data.on_device``) is sliced in place: no workers, no copies."""
    images = getattr(ds, "images", None)
    # By type, not equality: the tensors sit on "cuda:0" while the run's device may be plain "cuda".
    if images is not None and images.device.type != "cpu":
        at = images.device
        return ((images[torch.tensor(b, device=at)], ds.labels[torch.tensor(b, device=at)]) for b in batches)
    # A decoded cache is read in this process: a batch is one slice copy, far cheaper than starting
    # workers each epoch and handing the batch over from them (measured: 53,000 vs 2,700 images/s).
    if getattr(getattr(ds, "dataset", ds), "images_file", None) is not None:
        workers = 0
    return DataLoader(
        ds, batch_sampler=batches, num_workers=loader_workers(workers), collate_fn=collate,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )


def prepare(x: torch.Tensor, device: torch.device, mean: list[float], std: list[float],
            augment: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """A raw batch -> augmented, normalised float on ``device``.

    uint8 photos are scaled to 0..1 first (exactly as always); float multi-band
    values are normalised as they are, and their nodata (NaN) pixels become 0
    after it, the band mean: a band that is nodata everywhere is then zero-filled,
    as a missing band is (``data.file_mask`` tells the model which).
    """
    if x.dtype == torch.uint8:
        x = x.to(device, non_blocking=True).float().div_(255)
        if augment is not None:
            x = augment(x, generator)
        return normalize(x, mean, std)
    # Normalising first is exact: flips, rotations and bilinear resampling commute with a per-band affine map.
    x = normalize(x.to(device, non_blocking=True).float(), mean, std)
    x = x.masked_fill_(torch.isnan(x), 0.0)
    return augment(x, generator) if augment is not None else x


@dataclass(frozen=True)
class EvalSettings:
    """How ``evaluate`` runs (not what it measures): batches, loader, device, ranks, memory format.

    ``dist``: under DDP each rank evaluates every ``world``-th image and the confusion
    matrices are summed, so the figures cover the whole split once.
    """

    batch_size: int = 64
    workers: int = 0
    device: torch.device | None = None  # None: the model's
    dist: D.Dist = D.Dist()
    channels_last: bool = False


def evaluate(model: nn.Module, ds: Dataset, num_classes: int, mean: list[float], std: list[float],
             mask: torch.Tensor | None = None, how: EvalSettings = EvalSettings()) -> dict[str, float]:
    """Loss, accuracy and macro precision/recall/F1 of ``model`` on ``ds``.

    Args:
        mask: band presence mask ``[bands]``; ``None`` means all bands present.
        how: batch size, workers, device, DDP ranks, channels-last.
    """
    return _summary(*confusion_and_loss(model, ds, num_classes, mean, std, mask, how))


def _summary(cm: torch.Tensor, loss_sum: float) -> dict[str, float]:
    n = int(cm.sum())
    return {"loss": loss_sum / max(n, 1), **summarize(cm), "images": n}


@torch.no_grad()
def confusion_and_loss(model: nn.Module, ds: Dataset, num_classes: int, mean: list[float], std: list[float],
                       mask: torch.Tensor | None = None,
                       how: EvalSettings = EvalSettings()) -> tuple[torch.Tensor, float]:
    """What ``evaluate`` summarises: the confusion matrix (CPU, over every rank) and the summed loss."""
    batch_size, workers, dist, channels_last = how.batch_size, how.workers, how.dist, how.channels_last
    device = how.device or next(model.parameters()).device
    band_aware = takes_mask(model)
    model.eval()
    mine = list(range(dist.rank, len(ds), dist.world))
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for x, y in make_loader(ds, batches, workers, device):
        if len(y) == 0:
            continue
        own = file_mask(x)  # bands lost in the files themselves stay lost, whatever ``mask`` says
        x = prepare(x, device, mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = forward(model, x, combine_masks(mask, own), band_aware).float()
        y = y.to(device)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        cm += confusion(logits.argmax(1), y, num_classes)
    D.all_sum(cm, dist)
    D.all_sum(loss_sum, dist)
    return cm.cpu(), float(loss_sum)


def evaluate_subsets(model: nn.Module, ds: Dataset, num_classes: int, mean: list[float], std: list[float],
                     bands: list[str], subsets: list[list[str]], **kw: Any) -> dict[str, dict[str, float]]:
    """``evaluate`` once per band subset, keyed by subset name ("RGB", "RG", ...)."""
    return {subset_name(s, bands): evaluate(model, ds, num_classes, mean, std, mask=presence_mask(s, bands), **kw)
            for s in subsets}


def evaluate_sources(model: nn.Module, sources: list[Source], num_classes: int, subsets: Callable | None = None,
                     how: EvalSettings = EvalSettings()) -> tuple[dict[str, float], dict[str, dict]]:
    """``evaluate`` on each source's val split with its own bands and normalisation, and on all of them.

    Args:
        subsets: ``source -> band subsets`` to evaluate within that source too (``None``: none).

    Returns:
        ``(all, per_source)``: the figures over every source's images (from the summed confusion
        matrices), and per source name its figures with ``"subsets"`` (name -> figures).
    """
    total, loss, per = torch.zeros(num_classes, num_classes, dtype=torch.long), 0.0, {}
    for s in sources:
        set_bands(model, s.cfg.band_specs)  # a wavelength stem reads this source's bands
        cm, loss_sum = confusion_and_loss(model, s.val, num_classes, s.cfg.mean, s.cfg.std, how=how)
        total, loss = total + cm, loss + loss_sum
        wanted = subsets(s) if subsets is not None else []
        per[s.name] = _summary(cm, loss_sum) | {"subsets": evaluate_subsets(
            model, s.val, num_classes, s.cfg.mean, s.cfg.std, s.cfg.bands, wanted, how=how)}
    set_bands(model, sources[0].cfg.band_specs)  # left as the run's first source, which export reads
    return _summary(total, loss), per


def _as_sub_sensor(model: nn.Module, x: torch.Tensor, own: torch.Tensor | None, specs: list,
                   gen: torch.Generator, layouts: list[list[int]] = ()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch as a random sub-sensor sees it (``band_subsets: sensors``): half the time the whole sensor, else
    a subset (its size uniform in 1..n-1, then the bands uniformly), the images cut to those bands and the
    wavelength stem set to them.

    Why not a presence mask: a wavelength stem weighs each band by its share of the *listed* bands'
    spectrum and, with context, by the list itself. Masked, a subset keeps the full list's shares and
    context, so it never looks like a sensor that has only those bands; set as the band list, it looks
    exactly like one (a four-band camera, or Landsat without its red edge), which is what it meets zero-shot.
    The files' own lost bands stay masked within the subset.

    ``layouts`` (``train.sub_sensors``, ``core.sensors.sub_sensor_layouts``): named sensors' band layouts,
    which then make every sub-sensor batch, one drawn uniformly each time (measured, docs/multispectral.md:
    PlanetScope zero-shot 82.7% with them in half the sub-sensor batches, 89.0% in all, at 60 epochs).
    """
    n = len(specs)
    if n == 1 or bool(torch.rand((), generator=gen) < 0.5):  # the whole sensor half the time: it is the one trained for
        keep = torch.arange(n)
    elif layouts:
        keep = torch.tensor(layouts[int(torch.randint(len(layouts), (), generator=gen))])
    else:
        size = int(sample_subset_mask(n - 1, gen).sum())  # uniform in 1..n-1 (the mask's bands are not used)
        keep = torch.randperm(n, generator=gen)[:size].sort().values  # that many of all n bands, in band order
    set_bands(model, [specs[i] for i in keep.tolist()])
    return x[:, keep], (None if own is None else own[:, keep.to(own.device)])


def _keep_some(mask: torch.Tensor | None, own: torch.Tensor | None) -> torch.Tensor | None:
    if mask is None or own is None:
        return mask
    empty = mask.sum(dim=1) == 0
    return torch.where(empty[:, None], own, mask) if bool(empty.any()) else mask


def own_subsets(ds: Dataset, bands: list[str], workers: int = 0) -> dict[str, list[int]]:
    """The images of ``ds`` grouped by the bands their files carry, e.g. {"R,G,B,NIR": [...], "R,G,B": [...]}.

    Empty when every image carries every band (photos always do).
    """

    groups: dict[str, list[int]] = {}
    for i, (x, _) in enumerate(make_loader(ds, [[i] for i in range(len(ds))], workers, torch.device("cpu"))):
        if x.dtype == torch.uint8:
            return {}
        if len(x) == 0:  # unreadable
            continue
        own = file_mask(x)
        present = bands if own is None else [b for b, m in zip(bands, own[0].tolist()) if m]
        groups.setdefault(subset_name(present, bands) if present else "none", []).append(i)
    return groups if len(groups) > 1 else {}


def is_band_robust(recipe: Recipe, model: nn.Module) -> bool:
    """Runs whose quality is judged on every band subset, not only on full bands."""
    return recipe.train.band_subsets != "none" or takes_mask(model)


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _logger(run: Path) -> logging.Logger:
    log = logging.getLogger(f"edgecnn.train.{run}")
    log.handlers.clear()
    log.propagate = False
    handler = logging.FileHandler(run / R.LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def recipe_differences(out: Path, recipe: Recipe) -> list[str]:
    """The dotted keys where ``recipe`` differs from the one stored in the run folder ``out``.

    The pipeline section says what happens after training: it is left out, so changing it
    never blocks a resume.

    Raises:
        UserError: ``out`` is not a run folder, or its stored recipe no longer validates.
    """
    stored = R.read_run_recipe(out).model_dump(mode="json", exclude={"pipeline"})
    given = recipe.model_dump(mode="json", exclude={"pipeline"})
    if given["data"]["mean"] is None:  # computed from the data when the run started: not a difference
        given["data"] |= {k: stored["data"].get(k) for k in ("mean", "std")}
    for mine, theirs in zip(given["data"].get("sources") or [], stored["data"].get("sources") or []):
        if mine.get("mean") is None:  # so are a source's
            mine |= {k: theirs.get(k) for k in ("mean", "std")}
    diff = [f"{s}.{k}" for s in given if isinstance(given[s], dict)
            for k in given[s] if stored.get(s, {}).get(k) != given[s][k]]
    return diff + [s for s in given if not isinstance(given[s], dict) and stored.get(s) != given[s]]


def check_run_folder(out: Path, recipe: Recipe, resume: bool) -> None:
    """Never overwrite a run silently; only resume the same recipe."""
    exists = R.is_run(out) or (out / R.LAST).exists()
    if exists and not resume:
        raise UserError(f"{out} already holds a run; add --resume to continue it, or --out NEW_DIR for a new one")
    if resume and not (out / R.LAST).exists():
        raise UserError(f"--resume: {out} has no checkpoint ({R.LAST}) to resume from; drop --resume to start the run")
    if resume:
        diff = recipe_differences(out, recipe)
        if diff:
            raise UserError(f"--resume: the recipe differs from the one in {out / R.RECIPE} at: {', '.join(diff)}; "
                            "resume with the same recipe and overrides, or train into a new --out")


class Steps:
    """The steps of ``train`` that a fine-tuning run (QAT) replaces; this base trains from scratch.

    The torchtune way: ``train`` calls these in a fixed order, and a subclass
    overrides the ones it needs (``quantize.qat.QatSteps`` builds a
    fake-quantized model and adds its record to the run folder):

    1. ``setup_model(classes, train_ds, state)``: the model on the CPU, fresh when
       ``state`` is None, else restored from that checkpoint (``--resume``);
    2. ``param_groups(model)``: what the optimizer trains;
    3. ``run_files()``: more files for the run folder (name -> text), written
       after step 1, so they can say what building the model found;
    4. ``checkpoint_extra(model)``: more entries for every checkpoint.

    The class attributes are what the console and ``recipe.yaml`` say.
    """

    epoch = "epoch"  # what an epoch is called on the console
    note = ""  # after the validation accuracy on the console (" (fake-quantized)")
    header = ""  # comment lines before the resolved recipe in recipe.yaml

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.banner = f"training [bold]{recipe.model.name}[/]"  # the first console line's start

    def setup_model(self, classes: list[str], train_ds: Dataset, state: dict | None) -> nn.Module:
        """The registry model the recipe names, initialised from ``recipe.seed`` (``_setup_data`` seeds it)."""
        model = R.build_for_recipe(self.recipe, len(classes))
        if state is not None:
            model.load_state_dict(state[C.CKPT_MODEL])
        return model

    def param_groups(self, model: nn.Module) -> Any:
        return model.parameters()

    def run_files(self) -> dict[str, str]:
        return {}

    def checkpoint_extra(self, model: nn.Module) -> dict:
        return {}


def train(recipe: Recipe, out: Path, resume: bool = False, console: Console | None = None,
          steps: Steps | None = None) -> list[dict]:
    """Train ``recipe`` into the run folder ``out`` (one process, or one rank under torchrun).

    Args:
        steps: how the model starts and what the run folder gets besides the
            usual files; default ``Steps(recipe)``, from scratch (QAT passes its own).

    Returns:
        The per-epoch metric rows (also in ``out/metrics.csv``).

    Raises:
        UserError: the folder already holds a run (without ``resume``), nothing to
            resume, a recipe mismatch on resume, or a data problem.
    """
    tc, out = recipe.train, Path(out)
    steps = steps or Steps(recipe)
    device, dist = _setup_device(tc.device)
    console = (console or Console()) if dist.main else Console(quiet=True)
    log = net = None
    try:
        _setup_ranks(out, recipe, resume, dist)
        # Reading the data and (QAT) preparing the quantized graph can take a minute before the first bar:
        # a progress line says which (stderr; only the main process).
        with P.Progress("train setup", show=dist.main) as setup:
            setup.update("reading the data")
            data = _setup_data(recipe, device)
            recipe = steps.recipe = data.recipe
            state = _resume_state(out, data.classes, tc.epochs) if resume else None
            if state is not None and state[C.CKPT_EPOCH] >= tc.epochs:
                console.print(f"[green]{out} is already finished ({state[C.CKPT_EPOCH]} epochs); nothing to do.[/]")
                return list(state[C.CKPT_HISTORY])
            setup.update("building the model" if type(steps) is Steps else "building the model (QAT: preparing "
                         "the quantized graph)")
            model = steps.setup_model(data.classes, data.train, state).to(device)
            if tc.channels_last:
                model = model.to(memory_format=torch.channels_last)
            opts = _setup_optimizer(model, recipe, steps, state)
            net = _setup_net(model, device, dist, tc.compile)
            if dist.main:
                log = _setup_run_folder(out, recipe, steps, device, dist, data, console, opts.start if resume else None)
                if data.stats is not None:
                    atomic_write_text(out / C.DATA_STATS, json.dumps(data.stats, indent=2))
        ranks = f" x {dist.world} processes" if dist.active else ""
        console.print(f"{steps.banner} on {device}{ranks}: {_images(data.train)} train / "
                      f"{_images(data.val)} val images, {len(data.classes)} classes -> {out}")

        robust = is_band_robust(recipe, model)
        aug = Augment(**recipe.augment.model_dump())
        with _progress(console, dist) as progress:
            # No local keeps the EpochLoop (and its net) alive past the epochs: see ``net = None`` below.
            best = _run_epochs(EpochLoop(net, model, data, recipe, opts, aug if aug.enabled else None, device, dist,
                                         progress, robust, log), out, steps, console)
        if log:
            log.info("finished: best val %s %.4f", "mean accuracy over band subsets" if robust else "accuracy", best)
        return opts.history
    finally:
        _close_log(log)  # however training ends: a notebook trains many runs in one process
        # DDP's reducer holds the process group and gloo work with tensors in it. Freed only at
        # interpreter exit, a gloo thread then needs the GIL of a dying interpreter and the rank
        # aborts ("terminate called without an active exception", seen once in CI): free it first.
        net = None
        D.shutdown(dist)


def _run_epochs(ctx: EpochLoop, out: Path, steps: Steps, console: Console) -> float:
    """The epochs from ``ctx.opts.start``, each appended to ``ctx.opts.history`` and checkpointed; the best score."""
    history, best, epochs, dist = ctx.opts.history, ctx.opts.best, ctx.recipe.train.epochs, ctx.dist
    for epoch in range(ctx.opts.start, epochs):
        row = _epoch_row(ctx, epoch + 1, f"{steps.epoch} {epoch + 1}/{epochs}")
        # Band-robust runs keep the checkpoint that is best over all subsets.
        score = row.get("val_accuracy_subset_mean", row["val_accuracy"])
        history.append(row)
        if dist.main:
            _save_epoch(out, ctx, steps, EpochRecord(epoch + 1, history, max(best, score), score > best))
        best = max(best, score)
        _print_epoch(console, steps, row, epoch, epochs, score if ctx.robust else None)
        D.barrier(dist)  # no rank runs ahead of the checkpoint it may resume from
    return best


def _progress(console: Console, dist: D.Dist) -> Progress | _Lines:
    """The epochs' bars: rich's on a terminal; plain lines elsewhere (rich's print nothing off a terminal, and
    an epoch can take half a minute: a CI log or a piped `make demo` would see nothing move)."""
    if not console.is_terminal:
        return _Lines(show=dist.main)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn()]
    return Progress(*columns, console=console, transient=True, disable=not dist.main)


class _Lines:
    """The bars' calls (``add_task``, ``update``, ``advance``, ``remove_task``) as ``core.progress`` lines:
    ``train: epoch 2/5: 30/47 batches, loss 0.671 (35 s)`` at most every ``EVERY_S`` seconds, then
    ``validating`` once the pass is over."""

    def __init__(self, show: bool):
        self.line = P.Progress("train", show=show)
        self.title, self.done, self.total, self.loss = "", 0, 0, 0.0

    def __enter__(self) -> _Lines:
        self.line.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.line.__exit__(*exc)

    def add_task(self, title: str, total: int, loss: float = 0.0) -> int:
        self.title, self.done, self.total, self.loss = title, 0, total, loss
        self._say()
        return 0

    def update(self, task: int, advance: int = 0, loss: float | None = None) -> None:
        self.done += advance
        self.loss = self.loss if loss is None else loss
        self._say()

    def advance(self, task: int, advance: int = 1) -> None:
        self.update(task, advance)

    def remove_task(self, task: int) -> None:
        self.line.update(f"{self.title}: validating")

    def _say(self) -> None:
        self.line.update(f"{self.title}: {self.done}/{self.total} batches, loss {self.loss:.3f}")


def _close_log(log: logging.Logger | None) -> None:
    for handler in list(log.handlers if log else []):
        log.removeHandler(handler)
        handler.close()


@dataclass(frozen=True)
class Data:
    """What ``_setup_data`` builds: the two splits and the class names."""

    train: Dataset
    val: Dataset
    classes: list[str]
    recipe: Recipe  # with data.mean/std resolved (computed from the training split when the recipe gives none)
    stats: dict | None  # that computation's record (data_stats.json), None when nothing was computed
    sources: list[Source] | None = None  # data.sources: each with its splits and resolved normalisation;
    # ``train``/``val`` are then their splits joined (``Joined``)


@dataclass(frozen=True)
class OptimizerSet:
    """What ``_setup_optimizer`` builds, restored from the checkpoint when resuming.

    ``history`` is the list the loop appends each epoch's row to; ``best`` the score to beat at ``start``.
    """

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator  # shuffling, augmentation, band subsets
    start: int  # the first epoch to run, from 0
    history: list[dict]
    best: float


@dataclass(frozen=True)
class EpochLoop:
    """What every epoch of one ``train`` call uses (built once, before the first epoch)."""

    net: nn.Module  # what runs the steps: the model, or its DDP / compiled wrapper
    model: nn.Module
    data: Data
    recipe: Recipe
    opts: OptimizerSet
    aug: Callable | None
    device: torch.device
    dist: D.Dist
    progress: Progress | _Lines
    robust: bool  # band-robust: validated on every band subset
    log: logging.Logger | None  # rank 0 only


@dataclass(frozen=True)
class EpochRecord:
    """A finished epoch as its checkpoint records it (``epoch`` from 1; ``best`` includes this epoch)."""

    epoch: int
    history: list[dict]
    best: float
    improved: bool  # this epoch is the new best: best.pt is written too


def _epoch_row(ctx: EpochLoop, epoch: int, title: str) -> dict:
    """Epoch ``epoch`` (from 1): a training pass, the scheduler's step, validation; its metrics row."""
    t0 = time.perf_counter()
    stats = _train_epoch(ctx, title)
    if stats["dropped"] and ctx.log:
        ctx.log.info("epoch %d: %d images failed to decode and were skipped", epoch, stats["dropped"])
    lr = ctx.opts.opt.param_groups[0]["lr"]
    ctx.opts.sched.step()
    row = {"epoch": epoch, "lr": lr, "train_loss": round(stats["loss"], 6),
           "train_accuracy": round(stats["accuracy"], 6)}
    if ctx.data.sources:
        row |= _validate_sources(ctx.model, ctx.data.sources, len(ctx.data.classes), ctx.recipe, ctx.device,
                                 ctx.dist, ctx.robust)
    else:
        row |= _validate(ctx.model, ctx.data.val, len(ctx.data.classes), ctx.recipe, ctx.device, ctx.dist,
                         ctx.robust)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _setup_device(wanted: str) -> tuple[torch.device, D.Dist]:
    """The device, and this process's rank (the GPU of its local rank under DDP)."""
    device = R.pick_device(wanted)
    dist = D.init(device.type == "cuda")
    if device.type == "cuda" and dist.active:
        device = torch.device("cuda", dist.local_rank)
    return device, dist


def _setup_ranks(out: Path, recipe: Recipe, resume: bool, dist: D.Dist) -> None:
    """Check the run folder and the batch split on every rank, then share the cores between ranks."""
    tc = recipe.train
    check_run_folder(out, recipe, resume)
    if tc.batch_size % dist.world:
        raise UserError(f"train.batch_size={tc.batch_size} is the global batch; make it a multiple of the "
                        f"{dist.world} processes so every rank's share is equal")
    D.barrier(dist)  # nobody writes before every rank has checked the folder
    # Ranks on one machine share its cores; oversubscribing them is 10x slower, not 10% slower.
    torch.set_num_threads(tc.threads or max(1, (os.cpu_count() or 1) // dist.local_world))


def _setup_data(recipe: Recipe, device: torch.device) -> Data:
    """The two splits, the class names, the recipe with its normalisation resolved, and the training
    split's band statistics when they were computed (seeding the model init first: identical on every rank)."""
    cfg = recipe.data
    torch.manual_seed(recipe.seed)  # model init: identical on every rank
    if cfg.sources:
        sources, classes = build_sources(cfg, recipe.seed)
        recipe, sources, stats = resolve_source_norm(recipe, sources)
        torch.manual_seed(recipe.seed)
        return Data(Joined([s.train for s in sources]), Joined([s.val for s in sources]), classes, recipe, stats,
                    sources)
    train_ds, val_ds, classes = build_datasets(cfg, recipe.seed, len(cfg.bands))
    if cfg.on_device and device.type == "cuda":
        for ds in (train_ds, val_ds):  # the built-in dataset lives on the GPU: no loader can starve it
            ds.images, ds.labels = ds.images.to(device), ds.labels.to(device)
    recipe, stats = resolve_norm(recipe, train_ds)
    torch.manual_seed(recipe.seed)  # the stats pass may have drawn from the global generator
    return Data(train_ds, val_ds, classes, recipe, stats)


def resolve_norm(recipe: Recipe, train_ds: Dataset) -> tuple[Recipe, dict | None]:
    """``recipe`` with ``data.mean/std`` filled in when it gives none, and the statistics record.

    Photos (uint8) take the fixed 0.5/0.25; multi-band files the training split's own per-band
    mean and std without nodata pixels (``data.stats.band_stats``).
    """
    cfg = recipe.data
    if cfg.mean is not None:
        return recipe, None
    n = len(cfg.bands)
    if is_photo(train_ds):
        mean, std, record = [PHOTO_MEAN] * n, [PHOTO_STD] * n, None
    else:
        stats = band_stats(train_ds, cfg.bands, cfg.workers)
        mean, std, record = stats.mean, stats.std, stats.record("training split")
    data = cfg.model_copy(update={"mean": mean, "std": std})
    return recipe.model_copy(update={"data": data}), record


def resolve_source_norm(recipe: Recipe, sources: list[Source]) -> tuple[Recipe, list[Source], dict | None]:
    """``resolve_norm`` per source: each one's mean/std from its own training files where it gives none.

    Returns:
        the recipe with every source's mean/std filled in (and data.mean/std, the first source's), the
        sources with their resolved sections, and ``{"sources": {name: record}}`` for ``data_stats.json``
        (None when nothing was computed).
    """
    specs, resolved, records = [], [], {}
    for spec, src in zip(recipe.data.sources, sources):
        one, record = resolve_norm(recipe.model_copy(update={"data": src.cfg}), src.train)
        if record is not None:
            records[src.name] = record
        resolved.append(Source(src.name, one.data, src.train, src.val))
        specs.append(spec.model_copy(update={"mean": one.data.mean, "std": one.data.std}))
    first = resolved[0].cfg
    data = recipe.data.model_copy(update={"sources": specs, "mean": first.mean, "std": first.std})
    return recipe.model_copy(update={"data": data}), resolved, ({"sources": records} if records else None)


def _resume_state(out: Path, classes: list[str], epochs: int) -> dict:
    """The last checkpoint, checked to be resumable with this dataset (a finished one is not checked further)."""
    state = load_checkpoint(out / R.LAST, map_location="cpu")
    if C.CKPT_OPTIMIZER not in state:
        raise UserError(f"{out / R.LAST} holds no optimizer state (written by edgecnn prune?); it cannot be resumed")
    if state[C.CKPT_EPOCH] < epochs and list(state.get(C.CKPT_CLASSES, classes)) != list(classes):
        raise UserError(f"--resume: the dataset's classes no longer match {out / R.LAST}; "
                        "point data.root at the same dataset")
    return state


def _setup_optimizer(model: nn.Module, recipe: Recipe, steps: Steps, state: dict | None) -> OptimizerSet:
    """SGD, the step schedule and the shuffling generator, restored from ``state`` when resuming."""
    tc = recipe.train
    opt = torch.optim.SGD(steps.param_groups(model), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=tc.step_size, gamma=tc.gamma)
    gen = torch.Generator().manual_seed(recipe.seed)  # shuffling, augmentation, band subsets
    if state is None:
        return OptimizerSet(opt, sched, gen, 0, [], -1.0)
    opt.load_state_dict(state[C.CKPT_OPTIMIZER])
    sched.load_state_dict(state[C.CKPT_SCHEDULER])
    gen.set_state(state[C.CKPT_GENERATOR])
    torch.set_rng_state(state[C.CKPT_TORCH_RNG])
    return OptimizerSet(opt, sched, gen, state[C.CKPT_EPOCH], list(state[C.CKPT_HISTORY]),
                        state[C.CKPT_BEST_ACCURACY])


def _setup_net(model: nn.Module, device: torch.device, dist: D.Dist, compile: bool) -> nn.Module:
    """What runs the steps: SyncBatchNorm + DDP across GPUs (gloo has no SyncBatchNorm: on CPUs
    each rank normalises with its own share of the batch), then optionally compiled."""
    net = model
    if dist.active:
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(net) if compile else net


def _setup_run_folder(out: Path, recipe: Recipe, steps: Steps, device: torch.device, dist: D.Dist, data: Data,
                      console: Console, resumed_at: int | None) -> logging.Logger:
    """Rank 0: the recipe, the steps' files, env.json, and the opened train.log (``resumed_at``: None when fresh)."""
    train_ds, val_ds = data.train, data.val
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / R.RECIPE, steps.header + dump_recipe(recipe))
    for name, text in steps.run_files().items():
        atomic_write_text(out / name, text)
    env = environment() | {"device": str(device), "world_size": dist.world}
    atomic_write_text(out / R.ENV, json.dumps(env, indent=2))
    log = _logger(out)
    log.info("%s epoch %d of %d on %s x %d: %d train / %d val images, %d classes",
             "started at" if resumed_at is None else "resumed at", resumed_at or 0, recipe.train.epochs, device,
             dist.world, _images(train_ds), _images(val_ds), len(data.classes))
    skipped = getattr(train_ds, "skipped", []) + getattr(val_ds, "skipped", [])
    if skipped:
        reasons = getattr(train_ds, "skip_reasons", {}) | getattr(val_ds, "skip_reasons", {})
        summary = skip_summary(skipped, reasons, recipe.data.max_pixels)
        log.info("%s: %s", summary,
                 ", ".join(f"{p} ({reasons[p]})" if p in reasons else str(p) for p in skipped[:20]))
        atomic_write_text(out / C.SKIPPED, json.dumps(skip_record(skipped, reasons), indent=1))
        console.print(f"[yellow]{summary} (listed in {out / C.SKIPPED})[/]", markup=True, highlight=False)
    else:
        (out / C.SKIPPED).unlink(missing_ok=True)  # a resumed run's data may have been fixed since
    if (said := _no_sub_sensor(recipe, data)) is not None:
        log.warning("%s", said)
        console.print(f"[yellow]{said}[/]", markup=True, highlight=False)
    return log


def _no_sub_sensor(recipe: Recipe, data: Data) -> str | None:
    """The warning when ``train.sub_sensors`` names no sensor that is a sub-sensor of a source's bands
    (every one of them has all of the run's bands, or none): that source's sub-sensors are then drawn at random."""
    tc = recipe.train
    if not tc.sub_sensors:
        return None
    names = [s.name for s in data.sources] if data.sources else ["the run"]
    configs = _source_configs(data.sources, recipe.data)
    empty = [n for n, c in zip(names, configs) if not sub_sensor_layouts(tc.sub_sensors, c.band_specs)]
    if not empty:
        return None
    return (f"train.sub_sensors={','.join(tc.sub_sensors)}: none of them has some but not all of the bands of "
            f"{', '.join(empty)}, so its sub-sensor batches are drawn at random; name sensors with fewer bands")


def _source_configs(sources: list[Source] | None, cfg) -> list:
    """Each source's data section (its bands and normalisation), or the run's one when it has no sources."""
    return [s.cfg for s in sources] if sources else [cfg]


def _images(ds: Dataset) -> int:
    """The images a split serves: a cached split keeps the files its build could not decode as invalid rows."""
    valid = getattr(ds, "valid", None)
    return int(valid.sum()) if valid is not None else len(ds)


def _save_epoch(out: Path, ctx: EpochLoop, steps: Steps, record: EpochRecord) -> None:
    """Rank 0: the checkpoint (best first, then last), metrics.csv and the log line of an epoch."""
    model, opt, sched, gen, recipe = ctx.model, ctx.opts.opt, ctx.opts.sched, ctx.opts.gen, ctx.recipe
    epoch, history, classes, best = record.epoch, record.history, ctx.data.classes, record.best
    state = {
        C.CKPT_MODEL: model.state_dict(), C.CKPT_OPTIMIZER: opt.state_dict(), C.CKPT_SCHEDULER: sched.state_dict(),
        C.CKPT_GENERATOR: gen.get_state(), C.CKPT_TORCH_RNG: torch.get_rng_state(),
        C.CKPT_EPOCH: epoch, C.CKPT_HISTORY: history, C.CKPT_CLASSES: classes,
        C.CKPT_BEST_ACCURACY: best, C.CKPT_BANDS: recipe.data.bands, C.CKPT_MODEL_NAME: recipe.model.name,
        **steps.checkpoint_extra(model),
    }
    # best first: a kill between the two writes then never leaves a
    # "last" that is newer than a best it should have replaced.
    if record.improved:
        save_checkpoint(out / R.BEST, state)
    save_checkpoint(out / R.LAST, state)
    _write_metrics(out / R.METRICS, history)
    ctx.log.info("epoch %d: %s", epoch, json.dumps(history[-1]))


def _print_epoch(console: Console, steps: Steps, row: dict, epoch: int, epochs: int, subsets: float | None) -> None:
    subsets_note = f"  mean over band subsets {subsets:.1%}" if subsets is not None else ""
    per_source = [(k.partition("@")[2], v) for k, v in row.items() if k.startswith("val_accuracy@") and ":" not in k]
    sources_note = f" ({', '.join(f'{name} {v:.1%}' for name, v in per_source)})" if per_source else ""
    console.print(
        f"{steps.epoch} {epoch + 1:>3}/{epochs}  loss {row['train_loss']:.3f}  "
        f"train acc {row['train_accuracy']:.1%}  val acc {row['val_accuracy']:.1%}{sources_note}{steps.note}  "
        f"val F1 {row['val_f1']:.1%}{subsets_note}  ({row['seconds']:.1f}s)"
    )


def _train_epoch(ctx: EpochLoop, title: str) -> dict[str, float]:
    """One pass over the training split; returns loss and accuracy summed over all ranks."""
    net, ds, recipe, opt, gen, aug = ctx.net, ctx.data.train, ctx.recipe, ctx.opts.opt, ctx.opts.gen, ctx.aug
    band_aware, device, dist, progress = takes_mask(ctx.model), ctx.device, ctx.dist, ctx.progress
    cfg, tc = recipe.data, recipe.train
    net.train()
    sources = ctx.data.sources
    if sources:  # each batch one source's images (one band list), sources drawn in proportion to their size
        batches = source_batches([len(s.train) for s in sources], tc.batch_size, gen)
    else:
        batches = epoch_batches(len(ds), tc.batch_size, gen)
    if dist.active:
        # Every rank drew the same global batches; each takes every world-th image of each.
        # A global batch too small to give each rank two images (BatchNorm needs two) is dropped.
        batches = [b[dist.rank :: dist.world] for b in batches if len(b) >= 2 * dist.world]
    configs = _source_configs(sources, cfg)
    # The named sensors' band layouts in each source's bands (train.sub_sensors): once an epoch, not a batch.
    layouts = [sub_sensor_layouts(tc.sub_sensors, c.band_specs) for c in configs] if tc.sub_sensors else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.amp)
    task = progress.add_task(title, total=len(batches), loss=0.0)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, seen
    dropped, steps, shown = 0, 0, 0.0
    for (x, y), idx in zip(make_loader(ds, batches, cfg.workers, device), batches):
        dropped += len(idx) - len(y)
        # All ranks must take the same steps (DDP reduces gradients in lockstep), so a batch
        # that lost its images to unreadable files is skipped everywhere or nowhere.
        if D.all_min(len(y), dist, device) < 2:
            progress.advance(task)
            continue
        own = file_mask(x)
        k = ds.source_of(idx[0]) if sources else 0
        src = configs[k]  # this batch's bands and normalisation
        if sources:
            set_bands(ctx.model, src.band_specs)
        x = prepare(x, device, src.mean, src.std, aug, gen)
        if tc.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        mask = None
        if tc.band_subsets == "per_batch":
            mask = sample_subset_mask(len(src.bands), gen)
        elif tc.band_subsets == "per_sample":
            mask = sample_subset_masks(len(y), len(src.bands), gen)
        elif tc.band_subsets == "sensors":
            x, own = _as_sub_sensor(ctx.model, x, own, src.band_specs, gen, layouts[k] if layouts else ())
        # Dropping combines with the files' own lost bands; it never brings one back. A sample left
        # with no band at all keeps its own bands (a model cannot learn from nothing).
        mask = _keep_some(combine_masks(mask, own), own)
        with autocast:
            logits = forward(net, x, mask, band_aware)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Accumulated on the device: a .item() per step would wait for the GPU every step.
        totals += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                               torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
        steps += 1
        if device.type == "cpu" or steps % 20 == 1:  # reading the loss waits for a GPU: not every step
            shown = float(totals[0] / totals[2])
        progress.update(task, advance=1, loss=shown)
    progress.remove_task(task)
    if tc.band_subsets == "sensors":  # the stem is at the last sub-sensor: validation and export read the run's bands
        set_bands(ctx.model, (sources[0].cfg if sources else cfg).band_specs)
    D.all_sum(totals, dist)
    seen = max(float(totals[2]), 1.0)
    return {"loss": float(totals[0]) / seen, "accuracy": float(totals[1]) / seen, "dropped": dropped}


def _validate(model: nn.Module, val_ds: Dataset, num_classes: int, recipe: Recipe, device: torch.device,
              dist: D.Dist, robust: bool) -> dict[str, float]:
    """The validation columns of a metrics row (per band subset for band-robust runs)."""
    cfg, tc = recipe.data, recipe.train
    kw = dict(how=EvalSettings(tc.batch_size, cfg.workers, device, dist, tc.channels_last))
    val = evaluate(model, val_ds, num_classes, cfg.mean, cfg.std, **kw)
    row = {f"val_{k}": round(val[k], 6) for k in ("loss", "accuracy", "precision", "recall", "f1")}
    if robust:  # every subset, every epoch: the point of these runs is all of them
        per_subset = evaluate_subsets(model, val_ds, num_classes, cfg.mean, cfg.std, cfg.bands,
                                      judged_subsets(cfg.bands)[1:], **kw)
        accs = [val["accuracy"]] + [m["accuracy"] for m in per_subset.values()]
        row |= {f"val_accuracy_{name}": round(m["accuracy"], 6) for name, m in per_subset.items()}
        row["val_accuracy_subset_mean"] = round(sum(accs) / len(accs), 6)
    return row


def _validate_sources(model: nn.Module, sources: list[Source], num_classes: int, recipe: Recipe,
                      device: torch.device, dist: D.Dist, robust: bool) -> dict[str, float]:
    """``_validate`` of a run over several sources: the columns over all of them, ``val_accuracy@NAME`` per
    source and, for band-robust runs, ``val_accuracy@NAME:SUBSET`` per band subset of each."""
    cfg, tc = recipe.data, recipe.train
    how = EvalSettings(tc.batch_size, cfg.workers, device, dist, tc.channels_last)
    subsets = (lambda s: judged_subsets(s.cfg.bands)[1:]) if robust else None
    val, per = evaluate_sources(model, sources, num_classes, subsets, how)
    row = {f"val_{k}": round(val[k], 6) for k in ("loss", "accuracy", "precision", "recall", "f1")}
    accs = []
    for name, m in per.items():
        row[f"val_accuracy@{name}"] = round(m["accuracy"], 6)
        row |= {f"val_accuracy@{name}:{sub}": round(v["accuracy"], 6) for sub, v in m["subsets"].items()}
        accs += [m["accuracy"]] + [v["accuracy"] for v in m["subsets"].values()]
    if robust:
        row["val_accuracy_subset_mean"] = round(sum(accs) / len(accs), 6)
    return row
