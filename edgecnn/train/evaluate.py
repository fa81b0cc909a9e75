"""Evaluate a trained run on its validation split and write ``eval.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgecnn.train import run as R
from edgecnn.train.checkpoint import atomic_write_text
from edgecnn.train.loop import evaluate


def evaluate_run(run: Path, which: str = "best") -> dict:
    """Accuracy, macro precision/recall/F1, params and MACs of a run's checkpoint.

    The result is also written to ``run/eval.json``.

    Raises:
        UserError: not a run, missing/damaged checkpoint, or data problems.
    """
    from edgecnn.data import build_datasets
    from edgecnn.models.stats import measure_cost

    run = Path(run)
    recipe, model, classes, state = R.load_trained(run, which)
    device = R.pick_device(recipe.train.device)
    _, val_ds, data_classes = build_datasets(recipe.data, recipe.seed)
    if list(data_classes) != classes:
        from edgecnn.errors import UserError

        raise UserError(f"{run}: the dataset's classes no longer match the ones the run was trained on; "
                        "point data.root at the same dataset")
    cfg = recipe.data
    metrics = evaluate(model.to(device), val_ds, len(classes), cfg.mean, cfg.std,
                       recipe.train.batch_size, cfg.workers, device)
    cost = measure_cost(model.cpu(), cfg.image_size, len(cfg.mean))
    result = {
        "model": recipe.model.name,
        "run": str(run),
        "checkpoint": which if (run / (R.BEST if which == "best" else R.LAST)).exists() else "last",
        "epoch": state["epoch"],
        "split": "val",
        "images": metrics["images"],
        "accuracy": metrics["accuracy"],
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "f1": metrics["f1"],
        "loss": metrics["loss"],
        "params": cost.params,
        "macs": cost.macs,
        "input_size": cfg.image_size,
        "num_classes": len(classes),
        "device": str(device),
        "torch": torch.__version__,
    }
    atomic_write_text(run / R.EVAL, json.dumps(result, indent=2))
    return result


def paper_table(rows: list[dict], title: str = "") -> "rich.table.Table":  # noqa: F821
    """Rows in the paper's column order: Accuracy, Precision, Recall, F1-score, FLOPs (MACs), Params."""
    from rich.table import Table

    table = Table(title=title or None)
    for col in ("model", "Accuracy", "Precision", "Recall", "F1-score", "MACs", "Params"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"], f"{r['accuracy']:.2%}", f"{r['precision']:.2%}", f"{r['recall']:.2%}", f"{r['f1']:.2%}",
            f"{r['macs'] / 1e9:.3f} G", f"{r['params'] / 1e6:.3f} M",
        )
    return table
