"""Per-band statistics of a training split: the normalisation a recipe without mean/std trains with.

Streaming: one pass, batch by batch, merging per-batch mean and variance
(Chan et al.), in float64, without nodata (NaN) pixels. On a cached split the
pass reads the cache, so it costs a memory copy, not a decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# Photos keep the project's fixed normalisation (their values are scaled to 0..1 first).
PHOTO_MEAN, PHOTO_STD = 0.5, 0.25


@dataclass(frozen=True)
class BandStats:
    bands: list[str]
    mean: list[float]
    std: list[float]
    nodata_share: list[float]  # share of all pixels that are nodata, per band
    lost_share: list[float]  # share of images in which the band is entirely nodata
    images: int

    def record(self, source: str) -> dict:
        """The ``data_stats.json`` record (keys: ``core.contracts.STATS_KEYS``)."""
        return {"bands": self.bands, "mean": self.mean, "std": self.std, "nodata_share": self.nodata_share,
                "lost_share": self.lost_share, "images": self.images, "source": source}


def band_stats(ds: Dataset, bands: list[str], workers: int = 0) -> BandStats:
    """Mean, std (population), nodata and lost-band shares per band over ``ds``.

    uint8 photos are measured in 0..1 (as ``normalize`` sees them); multi-band data in its own values.
    A band that is nodata everywhere gets mean 0 and std 1; a constant band std 1.
    """
    from edgecnn.data.transforms import collate

    c = len(bands)
    n, mean, m2 = np.zeros(c), np.zeros(c), np.zeros(c)
    nodata, pixels, lost, images = np.zeros(c), 0, np.zeros(c), 0
    batches = [list(range(i, min(i + 64, len(ds)))) for i in range(0, len(ds), 64)]
    for x, _ in DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=collate):
        if len(x) == 0:
            continue
        a = x.numpy().astype(np.float64)
        if x.dtype == torch.uint8:
            a /= 255.0
        a = a.transpose(1, 0, 2, 3).reshape(c, len(x), -1)  # [C, B, HW]
        bad = np.isnan(a)
        nodata += bad.sum(axis=(1, 2))
        lost += bad.all(axis=2).sum(axis=1)
        pixels += a.shape[1] * a.shape[2]
        images += len(x)
        for b in range(c):
            v = a[b][~bad[b]]
            if v.size:
                n[b], mean[b], m2[b] = _merge(n[b], mean[b], m2[b], v)
    std = np.sqrt(np.divide(m2, n, out=np.zeros(c), where=n > 0))
    std = np.where(std > 0, std, 1.0)
    return BandStats(list(bands), [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std],
                     [round(float(v) / max(pixels, 1), 6) for v in nodata],
                     [round(float(v) / max(images, 1), 6) for v in lost], images)


def _merge(n: float, mean: float, m2: float, v: np.ndarray) -> tuple[float, float, float]:
    """Chan's parallel update of (count, mean, sum of squared deviations) with the values ``v``."""
    nb, mb = float(v.size), float(v.mean())
    m2b = float(((v - mb) ** 2).sum())
    total = n + nb
    delta = mb - mean
    return total, mean + delta * nb / total, m2 + m2b + delta * delta * n * nb / total


def is_photo(ds: Dataset) -> bool:
    """A split that yields uint8 photos (the fixed normalisation applies), not multi-band values."""
    return getattr(ds, "dtype", "uint8") == "uint8"


class UnlabelledFiles(Dataset):
    """Every multi-band file under a folder, in any layout, read as ``RasterSpec`` says; label 0.

    For the statistics of data without labels (``edgecnn data stats FOLDER --bands ...``): a sensor's
    files that a run will be evaluated on, say. Files with another band count, or that cannot be read,
    are skipped and counted.

    Raises:
        UserError: no file in the folder has the band count (one line naming a file, both counts and the bands).
    """

    def __init__(self, root, spec):
        from pathlib import Path

        from edgecnn.core.contracts import CACHE_DIR
        from edgecnn.data import raster as RA
        from edgecnn.errors import UserError

        root = Path(root).expanduser()
        self.raster, self.samples, self.skip_reasons = spec, [], {}
        for path in sorted(root.rglob("*")):
            parts = path.relative_to(root).parts
            if path.suffix.lower() not in RA.RASTER_EXTENSIONS or not path.is_file() or \
                    any(p.startswith(".") or p == CACHE_DIR for p in parts):
                continue
            try:
                h = RA.header(path)
            except RA.ReadError as e:
                self.skip_reasons[path] = str(e)
                continue
            if h.bands != spec.bands:
                self.skip_reasons[path] = f"{h.bands} bands but --bands names {spec.bands}: {', '.join(spec.names)}"
                continue
            self.samples.append((path, 0))
        if not self.samples:
            if self.skip_reasons:
                path, reason = next(iter(self.skip_reasons.items()))
                raise UserError(f"{path} has {reason} (none of the {len(self.skip_reasons)} files in {root} can "
                                f"serve); give the files' bands, in file order")
            raise UserError(f"{root} holds no {', '.join(sorted(RA.RASTER_EXTENSIONS))} files")
        self.skipped = list(self.skip_reasons)

    dtype = "float32"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from edgecnn.data import raster as RA

        try:
            return torch.from_numpy(RA.read(self.samples[i][0], self.raster)), 0
        except RA.ReadError:
            return None
