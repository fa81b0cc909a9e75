"""Which training images set the INT8 scales (calibration) and which rank layers for the accuracy budget."""

from __future__ import annotations


def calibration_samples(graph, train_ds, mean: list[float], std: list[float], count: int, seed: int, workers: int) -> list:
    """``count`` training images, un-augmented and normalised, as artifact inputs.

    A seeded shuffle picks them: datasets list images class by class, and the
    first ``count`` would cover only a few classes.
    """
    import torch

    from edgecnn.train.loop import make_loader, prepare

    cpu = torch.device("cpu")
    order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    samples = []
    for x, _ in make_loader(train_ds, [[i] for i in order], workers, cpu):
        if len(x):
            samples.append(graph.calibration_inputs(prepare(x, cpu, mean, std), len(samples)))
    return samples


def held_out_images(train_ds, mean: list[float], std: list[float], skip: int, count: int, seed: int,
                    workers: int) -> list:
    """``count`` training images after the ``skip`` calibration ones in the same seeded shuffle, with labels.

    The accuracy budget ranks and probes on them: training data, but not the
    images that set the INT8 scales, and never the validation split the sidecar reports.
    When the split is too small they wrap round into the calibration images.
    """
    import torch

    from edgecnn.train.loop import make_loader, prepare

    cpu = torch.device("cpu")
    order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(seed)).tolist()
    picked = (order[skip:] + order[:skip])[:count]
    images = []
    for x, y in make_loader(train_ds, [[i] for i in picked], workers, cpu):
        if len(y):
            images.append((prepare(x, cpu, mean, std), int(y[0])))
    return images
