"""Several sensors in one run (``data.sources``): each folder's splits, and batches that never mix them.

Each source is read exactly as a single ``data.root`` folder is (``build_datasets`` on its own ``data``
section: its bands, its reader, its cache, its normalisation), so one source of a multi-sensor run
gives the tensors a run on that folder alone would. For training the sources' splits are laid end
to end (``Joined``) and ``source_batches`` cuts each epoch into batches that each hold one source's
images, because a batch must have one band list.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from edgecnn.data.folder import list_classes
from edgecnn.errors import UserError

if TYPE_CHECKING:
    from edgecnn.config.schema import DataConfig


@dataclass(frozen=True)
class Source:
    """One source's splits and its single-folder ``data`` section (root, bands, mean/std, nodata)."""

    name: str
    cfg: DataConfig
    train: Dataset
    val: Dataset


def check_classes(data_cfg: DataConfig) -> list[str]:
    """The class list every source shares (labels are its indices).

    Raises:
        UserError: a source lacks a class folder another has, or has one more (one line naming both
            sources and the class), or a folder layout problem (``list_classes``).
    """
    named = [(s.name, Path(s.root).expanduser() / "train") for s in data_cfg.sources]
    lists = [list_classes(d, data_cfg.num_classes, data_cfg.classes) for _, d in named]
    (first, first_dir), want = named[0], lists[0]
    for (name, split), have in zip(named[1:], lists[1:]):
        lacking = [c for c in want if c not in have]
        if lacking:
            raise UserError(f"source '{name}' ({split}) has no class folder '{lacking[0]}' that source '{first}' "
                            f"has; every source needs the same class folders")
        extra = [c for c in have if c not in want]
        if extra:
            raise UserError(f"source '{name}' ({split}) has a class folder '{extra[0]}' that source '{first}' "
                            f"({first_dir}) lacks; every source needs the same class folders (or list them in "
                            f"data.classes)")
    return want


def build_sources(data_cfg: DataConfig, seed: int, cache: bool = True) -> tuple[list[Source], list[str]]:
    """Every source's train and val splits, read as its own folder would be, and the shared class names.

    Raises:
        UserError: the sources' class folders differ (``check_classes``), or a folder problem of one
            source (as ``build_datasets`` raises them).
    """
    from edgecnn.data import build_datasets

    classes = check_classes(data_cfg)
    out = []
    for s, cfg in zip(data_cfg.sources, data_cfg.source_configs()):
        train, val, found = build_datasets(cfg, seed, len(cfg.bands), cache)
        assert list(found) == classes, "check_classes and build_datasets list classes alike"
        out.append(Source(s.name, cfg, train, val))
    return out, classes


class Joined(Dataset):
    """Datasets end to end (``torch.utils.data.ConcatDataset`` with what the loop reads of a split).

    A batch from ``source_batches`` lies within one part, so a part's one-slice cache read
    (``__getitems__``) still serves it.
    """

    def __init__(self, parts: list[Dataset]):
        self.parts = list(parts)
        self.starts = [0]
        for p in self.parts:
            self.starts.append(self.starts[-1] + len(p))
        self.skipped = [f for p in self.parts for f in getattr(p, "skipped", [])]
        self.skip_reasons = {k: v for p in self.parts for k, v in getattr(p, "skip_reasons", {}).items()}
        self.dtype = getattr(self.parts[0], "dtype", "float32")

    def __len__(self) -> int:
        return self.starts[-1]

    def source_of(self, i: int) -> int:
        """The index of the part that holds item ``i``."""
        return bisect.bisect_right(self.starts, i) - 1

    def __getitem__(self, i: int):
        k = self.source_of(i)
        return self.parts[k][i - self.starts[k]]

    def __getitems__(self, indices: list[int]):
        k = self.source_of(indices[0])
        local = [i - self.starts[k] for i in indices]
        if any(not 0 <= i < len(self.parts[k]) for i in local):
            raise IndexError("a batch of Joined spans two parts; draw batches with source_batches")
        read = getattr(self.parts[k], "__getitems__", None)
        return read(local) if read is not None else [self.parts[k][i] for i in local]

    @property
    def valid(self):
        """Which items can be read (a cached part knows; others count every item)."""
        import numpy as np

        return np.concatenate([getattr(p, "valid", np.ones(len(p), dtype=bool)) for p in self.parts])

    @property
    def images_file(self):
        # Every part a decoded cache: read in this process, as make_loader does for one cached split.
        files = [getattr(p, "images_file", None) for p in self.parts]
        return files[0] if all(f is not None for f in files) else None


def source_batches(sizes: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch over sources laid end to end, as index batches that each hold one source's images.

    Each source is shuffled and cut into batches (a lone last image joins the batch before it, since
    BatchNorm cannot train on one), then all the batches are put in one random order. So every image is
    seen once per epoch, and each step draws a source with probability proportional to the batches it
    has left: over an epoch each source gets its share of the images as its share of the steps.
    Everything comes from ``generator``: the same state gives the same epoch (a resumed run's too).
    """
    batches: list[list[int]] = []
    start = 0
    for n in sizes:
        order = (torch.randperm(n, generator=generator) + start).tolist()
        mine = [order[i: i + batch_size] for i in range(0, n, batch_size)]
        if len(mine) > 1 and len(mine[-1]) == 1:
            mine[-2].extend(mine.pop())
        batches += mine
        start += n
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
