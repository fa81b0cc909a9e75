"""Parity: run an artifact with its real runtime on the validation split and compare with PyTorch.

Images go through one at a time (artifacts have a static batch of one), each
prepared as training evaluates them: un-augmented, scaled to 0..1, normalised.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from edgecnn.core.progress import say
from edgecnn.data import file_mask
from edgecnn.export.artifact import Runner
from edgecnn.models.deployable import Deployable
from edgecnn.train.loop import make_loader, prepare
from edgecnn.train.metrics import confusion, summarize


def measure(run: Runner, graph: Deployable, ds: Dataset, mean: list[float], std: list[float],
            num_classes: int, workers: int = 0) -> dict:
    """Top-1 agreement, logit differences, and both models' accuracy/precision/recall/F1.

    Args:
        run: the artifact, loaded with its runtime.
        graph: what was exported; gives the artifact's inputs and the PyTorch reference per image.
        ds: the validation split (full bands).
        mean, std: the run's normalisation.
        num_classes: head size.

    Returns:
        The sidecar's ``parity`` record (fractions in 0..1).
    """
    cpu = torch.device("cpu")
    cm_artifact = torch.zeros(num_classes, num_classes, dtype=torch.long)
    cm_torch = torch.zeros_like(cm_artifact)
    agree, n, max_diff, sum_diff = 0, 0, 0.0, 0.0
    for i, (x, y) in enumerate(make_loader(ds, [[i] for i in range(len(ds))], workers, cpu)):
        if i % 50 == 0:
            say(f"parity: {i}/{len(ds)} validation images through the artifact and PyTorch")
        if len(y) == 0:  # an unreadable image
            continue
        own = file_mask(x)  # a band lost in this file is masked, as eval and predict mask it
        mask = None if own is None else own[0]
        x = prepare(x, cpu, mean, std)
        expected = graph.reference(x, mask)
        got = torch.from_numpy(run([t.numpy() for t in graph.inputs_for(x, mask)])).reshape(expected.shape)
        diff = (got - expected).abs()
        max_diff, sum_diff = max(max_diff, float(diff.max())), sum_diff + float(diff.mean())
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        cm_artifact += confusion(got.argmax(1), y, num_classes)
        cm_torch += confusion(expected.argmax(1), y, num_classes)
        n += len(y)
    return {
        "split": "val",
        "images": n,
        "reference": "the PyTorch model of the run" + (f", bands {','.join(graph.input_bands)} present, the rest "
                                                       "zero-filled" if graph.subset else ", all bands"),
        "top1_agreement": agree / max(n, 1),
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": sum_diff / max(n, 1),
        "artifact": summarize(cm_artifact),
        "pytorch": summarize(cm_torch),
    }
