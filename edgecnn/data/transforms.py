"""Batch-level transforms: collate, normalise, augment.

Augmentation runs on whole batches, on whatever device the batch is on,
after the DataLoader: one ``affine_grid`` plus one ``grid_sample`` per
batch is far cheaper than per-image Pillow work on a 2-core machine, and
all its randomness comes from one CPU generator the trainer checkpoints,
so a resumed run draws exactly the augmentations an uninterrupted run would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from edgecnn.errors import UserError

# Distortion: a random displacement on a coarse grid of this many cells per
# side, upsampled smoothly, so the image bends rather than shimmers.
_DISTORTION_CELLS = 4
# Largest displacement at distortion=1, in normalised coordinates (-1..1
# spans the image): 0.1 moves a pixel by up to 5% of the image side.
_DISTORTION_MAX_SHIFT = 0.1


def collate(batch) -> tuple[Tensor, Tensor]:
    """Stack ``(image, label)`` pairs into a batch, dropping ``None`` (unreadable) items.

    A batch a cache read as one slice (``data.cache.Stacked``) passes through as it is.

    Returns:
        uint8 (photos) or float32 (multi-band, NaN = nodata) ``[B, C, H, W]`` and int64 ``[B]``.
        When every item is ``None`` both are empty (``[0, 0, 0, 0]`` and ``[0]``); callers skip such a batch.
    """
    images = getattr(batch, "images", None)
    if images is not None:
        return images, batch.labels
    items = [item for item in batch if item is not None]
    if not items:
        return torch.empty(0, 0, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    images = torch.stack([image for image, _ in items])
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
    return images, labels


def file_mask(x: Tensor) -> Tensor | None:
    """The bands each image of a raw batch carries: float ``[B, C]``, 0 where a band is nodata everywhere.

    ``None`` when every image has every band (and always for uint8 photos), so callers keep the
    full-band path.
    """
    if x.dtype == torch.uint8 or x.numel() == 0:
        return None
    present = ~torch.isnan(x).flatten(2).all(dim=2)
    return None if bool(present.all()) else present.float()


def combine_masks(mask: Tensor | None, own: Tensor | None) -> Tensor | None:
    """A sampled or requested subset mask (``[C]`` or ``[B, C]``) and the images' own ``[B, C]``:
    a band is present only where both say so (a subset never brings a lost band back)."""
    if own is None:
        return mask
    if mask is None:
        return own
    return own * (mask.to(own)[None] if mask.dim() == 1 else mask.to(own))


def normalize(x: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """``(x - mean) / std`` per band for a float batch ``[B, C, H, W]`` in 0..1.

    Raises:
        UserError: ``mean`` or ``std`` does not have one value per band.
    """
    bands = x.shape[1]
    if len(mean) != bands or len(std) != bands:
        raise UserError(
            f"data.mean has {len(mean)} and data.std {len(std)} values but the images have {bands} bands; "
            f"give one mean and one std per band"
        )
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, bands, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, bands, 1, 1)
    return (x - m) / s


class Augment:
    """Random flips, rotation and elastic distortion for a float batch in 0..1.

    Args:
        hflip: probability of a horizontal flip, per image.
        vflip: probability of a vertical flip, per image.
        rotation: largest rotation in degrees, either way, drawn uniformly per image.
        distortion: elastic distortion strength, 0..1 (see ``_DISTORTION_MAX_SHIFT``).

    Raises:
        ValueError: a setting is out of range (the recipe schema checks these first).
    """

    def __init__(self, hflip: float = 0.0, vflip: float = 0.0, rotation: float = 0.0, distortion: float = 0.0):
        if not (0 <= hflip <= 1 and 0 <= vflip <= 1 and 0 <= rotation <= 180 and 0 <= distortion <= 1):
            raise ValueError(f"Augment({hflip=}, {vflip=}, {rotation=}, {distortion=}): out of range")
        self.hflip, self.vflip, self.rotation, self.distortion = hflip, vflip, rotation, distortion

    @property
    def enabled(self) -> bool:
        return any(v > 0 for v in (self.hflip, self.vflip, self.rotation, self.distortion))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment ``x`` (float ``[B, C, H, W]``); returns a new batch, same shape and device.

        Draws all randomness from ``generator`` (a CPU generator), the same
        amount every call for a given batch size, whatever the settings.
        When disabled, returns ``x`` itself and draws nothing.
        """
        if not self.enabled:
            return x
        b, _, h, w = x.shape
        draws = torch.rand(b, 3, generator=generator)
        field = torch.rand(b, 2, _DISTORTION_CELLS, _DISTORTION_CELLS, generator=generator) * 2 - 1

        sx = torch.where(draws[:, 0] < self.hflip, -1.0, 1.0)
        sy = torch.where(draws[:, 1] < self.vflip, -1.0, 1.0)
        angle = (draws[:, 2] * 2 - 1) * math.radians(self.rotation)
        cos, sin = angle.cos(), angle.sin()
        # theta maps output to input coordinates (normalised to -1..1 per axis).
        # The rotation is applied in pixel units, hence the h/w factors, so a
        # non-square image turns without shearing.
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = cos * sx
        theta[:, 0, 1] = -sin * sy * (h / w)
        theta[:, 1, 0] = sin * sx * (w / h)
        theta[:, 1, 1] = cos * sy
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)

        field = field.to(device=x.device, dtype=x.dtype) * (self.distortion * _DISTORTION_MAX_SHIFT)
        shift = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid + shift.permute(0, 2, 3, 1)
        # Reflection padding fills the corners a rotation uncovers with nearby
        # image content. Zeros would paint black corners that never occur at
        # test time, and a model could learn them as a cue.
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
