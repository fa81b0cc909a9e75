"""Training: SGD with momentum, StepLR, cross-entropy; a checkpoint every epoch.

Read top to bottom: ``train`` prepares the run folder, builds data and model,
restores state when resuming, then loops over epochs. Everything random
(shuffling, augmentation, dropout, init) comes from seeded generators whose
state goes into every checkpoint, so a run killed at any point and resumed
with ``--resume`` produces the same epochs and metrics as one that never stopped.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgecnn.config import Recipe, dump_recipe
from edgecnn.errors import UserError
from edgecnn.train import run as R
from edgecnn.train.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from edgecnn.train.env import environment
from edgecnn.train.metrics import confusion, summarize

def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """A shuffled epoch as index batches. A lone last sample joins the previous
    batch, because BatchNorm cannot train on a batch of one."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def make_loader(ds: Dataset, batches: Any, workers: int, device: torch.device) -> DataLoader:
    from edgecnn.data import collate

    return DataLoader(
        ds, batch_sampler=batches, num_workers=workers, collate_fn=collate,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )


def prepare(x: torch.Tensor, device: torch.device, mean: list[float], std: list[float],
            augment: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B,C,H,W] -> augmented, normalised float on ``device``."""
    from edgecnn.data import normalize

    x = x.to(device, non_blocking=True).float().div_(255)
    if augment is not None:
        x = augment(x, generator)
    return normalize(x, mean, std)


def forward(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, band_aware: bool) -> torch.Tensor:
    """Run ``model`` with bands missing where ``mask`` is 0.

    Missing bands are zero-filled after normalisation (the dataset mean), which
    is what a plain model sees in deployment when a band drops; a band-aware
    model (``takes_mask``) also gets the mask itself.
    """
    if mask is None:
        return model(x)
    m = mask.to(x.device)
    x = x * (m[:, :, None, None] if m.dim() == 2 else m[None, :, None, None])
    return model(x, m) if band_aware else model(x)


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset, num_classes: int, mean: list[float], std: list[float],
             batch_size: int = 64, workers: int = 0, device: torch.device | None = None,
             mask: torch.Tensor | None = None) -> dict[str, float]:
    """Loss, accuracy and macro precision/recall/F1 of ``model`` on ``ds``.

    Args:
        mask: band presence mask ``[bands]``; ``None`` means all bands present.
    """
    from edgecnn.models.registry import takes_mask

    device = device or next(model.parameters()).device
    band_aware = takes_mask(model)
    model.eval()
    batches = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, n = 0.0, 0
    for x, y in make_loader(ds, batches, workers, device):
        if len(y) == 0:
            continue
        logits = forward(model, prepare(x, device, mean, std), mask, band_aware)
        y = y.to(device)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
        cm += confusion(logits.argmax(1).cpu(), y.cpu(), num_classes)
    return {"loss": loss_sum / max(n, 1), **summarize(cm), "images": n}


def evaluate_subsets(model: nn.Module, ds: Dataset, num_classes: int, mean: list[float], std: list[float],
                     bands: list[str], subsets: list[list[str]], **kw: Any) -> dict[str, dict[str, float]]:
    """``evaluate`` once per band subset, keyed by subset name ("RGB", "RG", ...)."""
    from edgecnn.data.bands import presence_mask, subset_name

    return {subset_name(s, bands): evaluate(model, ds, num_classes, mean, std, mask=presence_mask(s, bands), **kw)
            for s in subsets}


def is_band_robust(recipe: Recipe, model: nn.Module) -> bool:
    """Runs whose quality is judged on every band subset, not only on full bands."""
    from edgecnn.models.registry import takes_mask

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


def _check_run_folder(out: Path, recipe: Recipe, resume: bool) -> None:
    """Never overwrite a run silently; only resume the same recipe."""
    exists = R.is_run(out) or (out / R.LAST).exists()
    if exists and not resume:
        raise UserError(f"{out} already holds a run; add --resume to continue it, or --out NEW_DIR for a new one")
    if resume and not (out / R.LAST).exists():
        raise UserError(f"--resume: {out} has no checkpoint ({R.LAST}) to resume from; drop --resume to start the run")
    if resume:
        stored = R.read_run_recipe(out).model_dump(mode="json")
        given = recipe.model_dump(mode="json")
        diff = [f"{s}.{k}" for s in given if isinstance(given[s], dict)
                for k in given[s] if stored.get(s, {}).get(k) != given[s][k]]
        diff += [s for s in given if not isinstance(given[s], dict) and stored.get(s) != given[s]]
        if diff:
            raise UserError(f"--resume: the recipe differs from the one in {out / R.RECIPE} at: {', '.join(diff)}; "
                            "resume with the same recipe and overrides, or train into a new --out")


def train(recipe: Recipe, out: Path, resume: bool = False, console: Console | None = None) -> list[dict]:
    """Train ``recipe`` into the run folder ``out``.

    Returns:
        The per-epoch metric rows (also in ``out/metrics.csv``).

    Raises:
        UserError: the folder already holds a run (without ``resume``), nothing to
            resume, a recipe mismatch on resume, or a data problem.
    """
    from edgecnn.data import Augment, build_datasets
    from edgecnn.data.bands import all_subsets, sample_subset_mask, sample_subset_masks
    from edgecnn.models.registry import takes_mask

    console = console or Console()
    out = Path(out)
    _check_run_folder(out, recipe, resume)
    cfg, tc = recipe.data, recipe.train
    torch.set_num_threads(tc.threads or os.cpu_count() or 1)
    device = R.pick_device(tc.device)

    torch.manual_seed(recipe.seed)  # model init
    bands = cfg.bands
    train_ds, val_ds, classes = build_datasets(cfg, recipe.seed, len(bands))
    model = R.build_for_recipe(recipe, len(classes)).to(device)
    band_aware, robust = takes_mask(model), is_band_robust(recipe, model)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=tc.step_size, gamma=tc.gamma)
    gen = torch.Generator().manual_seed(recipe.seed)  # shuffling and augmentation
    aug = Augment(**recipe.augment.model_dump())
    aug = aug if aug.enabled else None

    start, history, best = 0, [], -1.0
    if resume:
        state = load_checkpoint(out / R.LAST, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start, history, best = state["epoch"], list(state["history"]), state["best_accuracy"]
        if start >= tc.epochs:
            console.print(f"[green]{out} is already finished ({start} epochs); nothing to do.[/]")
            return history
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / R.RECIPE, dump_recipe(recipe))
    atomic_write_text(out / R.ENV, json.dumps(environment() | {"device": str(device)}, indent=2))
    log = _logger(out)
    log.info("%s epoch %d of %d on %s: %d train / %d val images, %d classes",
             "resumed at" if resume else "started at", start, tc.epochs, device, len(train_ds), len(val_ds), len(classes))
    skipped = getattr(train_ds, "skipped", []) + getattr(val_ds, "skipped", [])
    if skipped:
        log.info("skipped %d unreadable files: %s", len(skipped), ", ".join(map(str, skipped[:20])))
        console.print(f"[yellow]skipped {len(skipped)} unreadable image files (listed in {out / R.LOG})[/]")

    console.print(f"training [bold]{recipe.model.name}[/] on {device}: {len(train_ds)} train / "
                  f"{len(val_ds)} val images, {len(classes)} classes -> {out}")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        for epoch in range(start, tc.epochs):
            t0 = time.perf_counter()
            model.train()
            batches = epoch_batches(len(train_ds), tc.batch_size, gen)
            task = progress.add_task(f"epoch {epoch + 1}/{tc.epochs}", total=len(batches), loss=0.0)
            loss_sum, correct, seen, dropped = 0.0, 0, 0, 0
            for (x, y), idx in zip(make_loader(train_ds, batches, cfg.workers, device), batches):
                dropped += len(idx) - len(y)
                if len(y) < 2:  # everything in the batch was unreadable
                    progress.advance(task)
                    continue
                x = prepare(x, device, cfg.mean, cfg.std, aug, gen)
                y = y.to(device, non_blocking=True)
                mask = None
                if tc.band_subsets == "per_batch":
                    mask = sample_subset_mask(len(bands), gen)
                elif tc.band_subsets == "per_sample":
                    mask = sample_subset_masks(len(y), len(bands), gen)
                logits = forward(model, x, mask, band_aware)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                progress.update(task, advance=1, loss=loss_sum / seen)
            progress.remove_task(task)
            if dropped:
                log.info("epoch %d: %d images failed to decode and were skipped", epoch + 1, dropped)
            lr = opt.param_groups[0]["lr"]
            sched.step()
            val = evaluate(model, val_ds, len(classes), cfg.mean, cfg.std, tc.batch_size, cfg.workers, device)
            per_subset = {}
            if robust:  # every subset, every epoch: the point of these runs is all of them
                per_subset = evaluate_subsets(model, val_ds, len(classes), cfg.mean, cfg.std, bands,
                                              all_subsets(bands)[1:], batch_size=tc.batch_size,
                                              workers=cfg.workers, device=device)
            row = {
                "epoch": epoch + 1, "lr": lr,
                "train_loss": round(loss_sum / max(seen, 1), 6), "train_accuracy": round(correct / max(seen, 1), 6),
                "val_loss": round(val["loss"], 6), "val_accuracy": round(val["accuracy"], 6),
                "val_precision": round(val["precision"], 6), "val_recall": round(val["recall"], 6),
                "val_f1": round(val["f1"], 6),
            }
            if robust:
                accs = [val["accuracy"]] + [m["accuracy"] for m in per_subset.values()]
                row |= {f"val_accuracy_{name}": round(m["accuracy"], 6) for name, m in per_subset.items()}
                row["val_accuracy_subset_mean"] = round(sum(accs) / len(accs), 6)
            row["seconds"] = round(time.perf_counter() - t0, 2)
            # Band-robust runs keep the checkpoint that is best over all subsets.
            score = row.get("val_accuracy_subset_mean", row["val_accuracy"])
            history.append(row)
            state = {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1, "history": history, "classes": classes,
                "best_accuracy": max(best, score), "bands": bands,
            }
            # best first: a kill between the two writes then never leaves a
            # "last" that is newer than a best it should have replaced.
            if score > best:
                best = score
                save_checkpoint(out / R.BEST, state)
            save_checkpoint(out / R.LAST, state)
            _write_metrics(out / R.METRICS, history)
            log.info("epoch %d: %s", epoch + 1, json.dumps(row))
            subsets_note = f"  mean over band subsets {score:.1%}" if robust else ""
            console.print(
                f"epoch {epoch + 1:>3}/{tc.epochs}  loss {row['train_loss']:.3f}  train acc {row['train_accuracy']:.1%}  "
                f"val acc {row['val_accuracy']:.1%}  val F1 {row['val_f1']:.1%}{subsets_note}  ({row['seconds']:.1f}s)"
            )
    log.info("finished: best val %s %.4f", "mean accuracy over band subsets" if robust else "accuracy", best)
    return history
