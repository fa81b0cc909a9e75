"""Classification metrics from a confusion matrix: accuracy and macro precision/recall/F1.

Macro averages weight every class equally, as in the paper's tables, and
equal scikit-learn's ``precision_recall_fscore_support(average="macro")`` with
its default ``labels`` and ``zero_division``: the average runs over every class
that occurs in the labels *or* the predictions; a class never predicted has
precision 0, a class predicted but absent has recall 0 (the 0/0 case,
``zero_division=0``) and so F1 0, and a class neither present nor predicted is
left out.
"""

from __future__ import annotations

import torch


def confusion(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[num_classes, num_classes]`` counts, rows = true class, columns = predicted."""
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(cm: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro precision, recall, F1 (fractions in 0..1) from a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()
    predicted = cm.sum(0)
    actual = cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    present = (actual > 0) | (predicted > 0)  # scikit-learn's default labels: those in y_true or y_pred
    total = cm.sum().clamp(min=1)
    return {
        "accuracy": float(tp.sum() / total),
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
    }
