"""Parity: run an artifact with its real runtime on the validation split and compare with PyTorch.

Images go through the artifact one at a time (artifacts have a static batch of one), each
prepared as training evaluates them: un-augmented, scaled to 0..1, normalised; PyTorch
takes them in batches (``_with_reference``).

Band features are judged per band subset, never on all bands alone: a
mask-input artifact (one file for every subset) is run on every subset of the
validation images (``per_subset``), and every artifact's agreement is also
given per group of files that lost the same bands themselves (``per_file_group``).
Beyond four bands the judged subsets are ``data.bands.judged_subsets``' (all, each band
lost alone, each band alone).
``min_subset_agreement`` is the worst subset's.

``changed`` says how close the answers the artifact changed were: INT8 moves logits by a few
hundredths, so it flips the answers PyTorch itself barely chose. Its ``widest_margin`` is the largest
gap between PyTorch's top two logits among the changed answers, and ``near_ties`` the share of every
judged (image, subset) pair whose gap is below ``NEAR_TIE``: a model with many near ties loses
agreement under any 8-bit grid, a quantizer fault shows as changed answers with wide margins.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from edgecnn.core.progress import say
from edgecnn.data import combine_masks, file_mask
from edgecnn.data.bands import judged_subsets, presence_mask, subset_name
from edgecnn.export.artifact import Runner
from edgecnn.models.deployable import Deployable
from edgecnn.train.loop import make_loader, prepare
from edgecnn.train.metrics import confusion, summarize

SUBSET_IMAGES = 500
REFERENCE_PAIRS = 64  # (image, subset) pairs per PyTorch call (``_with_reference``)
NEAR_TIE = 0.1  # logits: PyTorch's top two this close make a near tie (parity's ``changed``)


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
    bands = graph.bands
    # A mask-input artifact meets every subset in deployment; others have one fixed input.
    subsets = judged_subsets(bands) if graph.mask_input else [None]
    cm_artifact = torch.zeros(num_classes, num_classes, dtype=torch.long)
    cm_torch = torch.zeros_like(cm_artifact)
    agree, n, max_diff, sum_diff = 0, 0, 0.0, 0.0
    per_subset: dict[str, list[int]] = {}  # name -> [agree, right, images]
    per_group: dict[str, list[int]] = {}
    changed, near, pairs, widest = 0, 0, 0, 0.0  # over every judged (image, subset) pair: see ``changed``
    stride = max(1, -(-len(ds) // SUBSET_IMAGES))  # every stride-th image also meets every subset

    def images():
        """Each image prepared, with its file group, the subsets it meets and their masks."""
        for i, (x, y) in enumerate(make_loader(ds, [[i] for i in range(len(ds))], workers, cpu)):
            if i % 50 == 0:
                say(f"parity: {i}/{len(ds)} validation images through the artifact and PyTorch"
                    + (f", each on {len(subsets)} band subsets" if len(subsets) > 1 else ""))
            if len(y) == 0:  # an unreadable image
                continue
            own = file_mask(x)  # a band lost in this file is masked, as eval and predict mask it
            group = ",".join(bands if own is None else [b for b, m in zip(bands, own[0].tolist()) if m])
            x = prepare(x, cpu, mean, std)
            masks = [None if own is None else own[0]]
            chosen = subsets if i % stride == 0 else subsets[:1]  # subsets[0] is all bands
            if graph.mask_input:  # each subset, never bringing back a band the file lost
                masks = [combine_masks(presence_mask(s, bands), own).reshape(len(bands)) for s in chosen]
            yield x, y, group, chosen, masks

    for x, y, group, chosen, masks, reference in _with_reference(graph, images()):
        for j, (subset, mask) in enumerate(zip(chosen, masks)):
            expected = reference[j : j + 1]
            got = torch.from_numpy(run([t.numpy() for t in graph.inputs_for(x, mask)])).reshape(expected.shape)
            same = int((got.argmax(1) == expected.argmax(1)).sum())
            gap = _margin(expected)
            pairs, near = pairs + 1, near + int(gap < NEAR_TIE)
            if not same:
                changed, widest = changed + 1, max(widest, gap)
            right = int((got.argmax(1) == y).sum())
            _add(per_subset, "all" if subset is None else subset_name(subset, bands), same, right, len(y))
            if subset is None or len(subset) == len(bands):  # the artifact's own input: the headline figures
                diff = (got - expected).abs()
                max_diff, sum_diff = max(max_diff, float(diff.max())), sum_diff + float(diff.mean())
                agree += same
                cm_artifact += confusion(got.argmax(1), y, num_classes)
                cm_torch += confusion(expected.argmax(1), y, num_classes)
                n += len(y)
                _add(per_group, group, same, right, len(y))
    record = {
        "split": "val",
        "images": n,
        "reference": "the PyTorch model of the run" + (f", bands {','.join(graph.input_bands)} present, the rest "
                                                       "zero-filled" if graph.subset else ", all bands"),
        "top1_agreement": agree / max(n, 1),
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": sum_diff / max(n, 1),
        "artifact": summarize(cm_artifact),
        "pytorch": summarize(cm_torch),
        "per_file_group": _figures(per_group),
        "changed": {"pairs": pairs, "answers": changed, "widest_margin": widest,
                    "near_ties": near / max(pairs, 1), "near_tie": NEAR_TIE},
    }
    if graph.mask_input:
        record["per_subset_images"] = len(range(0, len(ds), stride))
        record["per_subset"] = _figures(per_subset)
        record["min_subset_agreement"] = min(v["top1_agreement"] for v in record["per_subset"].values())
    return record


def _with_reference(graph: Deployable, items):
    """``items`` (x, y, group, chosen, masks per image) with PyTorch's logits for each of the image's masks.

    PyTorch runs on ``REFERENCE_PAIRS`` (image, subset) pairs at once: a QAT run's fake-quantized graph is
    interpreted op by op, and one image at a time it cost the quickstart's QAT ExecuTorch export about 9 of
    its 45-50 s (docs/results.md). Eval mode: a batch changes no image's logits. Images with a lost-band mask and images without one are
    batched apart (``None`` and a mask are different calls for a model that takes one).
    """
    chunk: list[tuple] = []
    for item in items:
        chunk.append(item)
        if sum(len(masks) for *_, masks in chunk) >= REFERENCE_PAIRS:
            yield from _references(graph, chunk)
            chunk = []
    yield from _references(graph, chunk)


def _references(graph: Deployable, chunk: list[tuple]):
    """``chunk``'s items, each with its rows of one batched PyTorch call (two: with and without a mask)."""
    rows: list[torch.Tensor | None] = [None] * len(chunk)
    for masked in (False, True):
        picked = [i for i, (*_, masks) in enumerate(chunk) if (masks[0] is not None) == masked]
        if not picked:
            continue
        x = torch.cat([chunk[i][0].expand(len(chunk[i][4]), *chunk[i][0].shape[1:]) for i in picked])
        mask = torch.stack([m for i in picked for m in chunk[i][4]]) if masked else None
        logits, start = graph.reference(x, mask), 0
        for i in picked:
            rows[i], start = logits[start : start + len(chunk[i][4])], start + len(chunk[i][4])
    for item, reference in zip(chunk, rows):
        yield (*item, reference)


def _margin(logits: torch.Tensor) -> float:
    """The gap between the top two logits of one image (``inf`` with a single class)."""
    if logits.shape[1] < 2:
        return float("inf")
    top = logits[0].topk(2).values
    return float(top[0] - top[1])


def _add(table: dict[str, list[int]], key: str, same: int, right: int, images: int) -> None:
    row = table.setdefault(key, [0, 0, 0])
    row[0], row[1], row[2] = row[0] + same, row[1] + right, row[2] + images


def _figures(table: dict[str, list[int]]) -> dict[str, dict]:
    """``{key: {images, top1_agreement, accuracy}}`` (the artifact's accuracy), largest group first."""
    return {k: {"images": v[2], "top1_agreement": v[0] / max(v[2], 1), "accuracy": v[1] / max(v[2], 1)}
            for k, v in sorted(table.items(), key=lambda kv: -kv[1][2])}
