"""The built-in data seen through a sensor's bands (``edgecnn data synth --format tiff --sensor NAME``).

Each image is a scene: an object of the class's material (a shape from ``SHAPES``, at a random
place, size and angle: the shape says nothing about the class) on a background that mixes two
other materials in smooth patches, under a smooth illumination field. Everything about a scene is
drawn from the seed and the split alone: geometry, class, background materials and their mixing,
the object's within-class variety (brightness, a spectral tilt, a little of another material) and
the illumination. Only then do the sensor's bands look at it (``spectra.band_table``), and only
the sensor noise depends on the sensor. So one seed gives the same scenes to every sensor, and a
model trained on one sensor's rendering can be measured on another's.

Values are surface reflectance x 10,000 in uint16 (as Sentinel-2 L2A and many products store
it), never 0: 0 is the nodata value, used for the lost bands as in the default tiff form.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from edgecnn.core.sensors import Band
from edgecnn.data import spectra
from edgecnn.data.synth import _RADIUS, _SDF, _TABLE_SEED, SHAPES, _smooth_field, _split_seed

REFLECTANCE_SCALE = 10_000  # uint16 value = reflectance x 10,000

# Within-class variety of the object and nuisance of the scene (reflectance units or factors).
_BRIGHTNESS = (0.85, 1.15)  # the object's curve times this (grain size, moisture, viewing angle)
_TILT = 0.02  # std of the added spectral tilt, per 1000 nm
_IMPURITY = 0.15  # up to this share of another material inside the object
_ILLUMINATION = (0.75, 1.25)  # the scene's overall light, times a smooth field of about +-15%
_ILLUMINATION_FIELD = 0.15
_TEXTURE = 0.08  # background brightness texture
_NOISE = 0.004  # sensor noise, reflectance units
_CHUNK = 64


def material_classes(num_classes: int) -> tuple[list[str], np.ndarray]:
    """Class names and each class's material shares, ``[num_classes, materials]``.

    Class ``c`` is material ``c`` of ``spectra.MATERIALS`` while there are materials; further
    classes are two-material mixtures (50/50, then 25/75 and 75/25), pairs in a fixed shuffled order,
    and beyond those random three-material mixtures. Rows depend only on the index, so the first N
    classes of a bigger set are the set of N.
    """
    names = list(spectra.MATERIALS)
    m = len(names)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(_TABLE_SEED)).tolist()
    width = max(2, len(str(num_classes - 1)))
    shares = np.zeros((num_classes, m))
    labels = []
    for c in range(num_classes):
        k = c - m
        if k < 0:
            shares[c, c] = 1.0
            labels.append(names[c])
        elif k < 3 * len(pairs):
            (i, j), a = pairs[order[k % len(pairs)]], (0.5, 0.25, 0.75)[k // len(pairs)]
            shares[c, i], shares[c, j] = a, 1 - a
            labels.append(f"{names[i]}+{names[j]}" if a == 0.5 else
                          f"{names[i]}{round(100 * a)}+{names[j]}{round(100 * (1 - a))}")
        else:
            rng = np.random.default_rng(_TABLE_SEED + c)
            picked = rng.choice(m, 3, replace=False)
            shares[c, picked] = rng.dirichlet(np.ones(3))
            labels.append("+".join(names[i] for i in sorted(picked)) + f"-{k}")
    return [f"{c:0{width}d}_{label}" for c, label in enumerate(labels)], shares


class Scenes:
    """The sensor-independent draw of one split: geometry, materials, variety, illumination.

    Args:
        labels: class index per image.
        shares: ``[classes, materials]`` from ``material_classes``.
        image_size: side of the square images.
        seed: the sample seed; with ``split``, the only source of randomness.
        split: ``"train"`` or ``"val"``.
    """

    def __init__(self, labels: Tensor, shares: np.ndarray, image_size: int, seed: int, split: str):
        self.labels, self.size, self.seed, self.split = labels, image_size, seed, split
        n, m = len(labels), shares.shape[1]
        self.gen_seed = _split_seed(seed, f"{split}/spectra")  # not the default synth's draw: its own stream
        gen = torch.Generator().manual_seed(self.gen_seed)
        size = image_size
        self.shape = torch.randint(0, len(SHAPES), (n,), generator=gen)
        self.radius = size * (_RADIUS[0] + (_RADIUS[1] - _RADIUS[0]) * torch.rand(n, generator=gen))
        self.centre = self.radius[:, None] * 0.7 + torch.rand(n, 2, generator=gen) * (size - 1.4 * self.radius[:, None])
        self.angle = torch.rand(n, generator=gen) * 2 * math.pi
        # Background and impurity materials: the three best of random scores, among the materials the
        # class has none of (a vegetation object on a vegetation background would be invisible).
        score = torch.rand(n, m, generator=gen)
        score[torch.from_numpy(shares[labels.numpy()] > 0)] = -1
        others = score.argsort(dim=1, descending=True)[:, :3]
        self.background, self.impurity = others[:, :2], others[:, 2]
        self.impurity_share = _IMPURITY * torch.rand(n, generator=gen)
        self.brightness = _BRIGHTNESS[0] + (_BRIGHTNESS[1] - _BRIGHTNESS[0]) * torch.rand(n, generator=gen)
        self.tilt = _TILT * torch.randn(n, generator=gen)
        self.light = _ILLUMINATION[0] + (_ILLUMINATION[1] - _ILLUMINATION[0]) * torch.rand(n, generator=gen)
        # Object material shares per image: the class's, with a little of the impurity.
        own = torch.from_numpy(shares[labels.numpy()]).float()
        impure = torch.nn.functional.one_hot(self.impurity, m).float()
        f = self.impurity_share[:, None]
        self.object_shares = (1 - f) * own + f * impure

    def object_mask(self, s: slice) -> Tensor:
        """The objects' coverage of each pixel, 0..1 ``[images, S, S]``, with a one-pixel soft edge."""
        size = self.size
        pixel = torch.arange(size, dtype=torch.float32) + 0.5
        dx = pixel[None, None, :] - self.centre[s, 0, None, None]
        dy = pixel[None, :, None] - self.centre[s, 1, None, None]
        cos, sin = self.angle[s].cos()[:, None, None], self.angle[s].sin()[:, None, None]
        r = self.radius[s, None, None]
        u, v = (cos * dx + sin * dy) / r, (cos * dy - sin * dx) / r
        sdf = torch.empty(len(u), size, size)
        for k, field in enumerate(_SDF):
            idx = self.shape[s] == k
            if idx.any():
                sdf[idx] = field(u[idx], v[idx])
        return (sdf * r + 0.5).clamp(0, 1)

    def render(self, bands: list[Band], sensor_key: str) -> Iterator[tuple[slice, np.ndarray]]:
        """The scenes as ``bands`` see them, chunk by chunk: ``(images slice, uint16 [m, bands, S, S])``.

        ``sensor_key`` seeds the sensor noise (the only per-sensor randomness).

        Raises:
            ValueError: a band without a wavelength, or outside 350-2500 nm.
        """
        table = torch.from_numpy(spectra.band_table(bands)).float()  # [materials, bands]
        tilt = torch.from_numpy(spectra.tilt_table(bands)).float()  # [bands]
        # Every chunk draws its fields in the same order and sizes whatever the sensor: same scenes.
        fields = torch.Generator().manual_seed(self.gen_seed + 1)
        noise = torch.Generator().manual_seed(_split_seed(self.seed, f"{self.split}/noise/{sensor_key}"))
        n, size = len(self.labels), self.size
        for start in range(0, n, _CHUNK):
            s = slice(start, min(start + _CHUNK, n))
            m = s.stop - s.start
            mask = self.object_mask(s)[:, None]
            mixing = torch.sigmoid(3 * _smooth_field(fields, m, 1, size, cells=4))
            texture = 1 + _TEXTURE * _smooth_field(fields, m, 1, size, cells=8)
            light = self.light[s, None, None, None] * (1 + _ILLUMINATION_FIELD * _smooth_field(fields, m, 1, size, cells=3))

            obj = self.brightness[s, None] * (self.object_shares[s] @ table + self.tilt[s, None] * tilt)
            obj = obj.clamp_min(0.001)[:, :, None, None]  # [m, bands, 1, 1]
            bg1, bg2 = table[self.background[s, 0]][:, :, None, None], table[self.background[s, 1]][:, :, None, None]
            background = texture * (mixing * bg1 + (1 - mixing) * bg2)
            image = (mask * obj + (1 - mask) * background) * light
            image = image + _NOISE * torch.randn(m, len(bands), size, size, generator=noise)
            dn = (image * REFLECTANCE_SCALE).round_().clamp_(1, 65535)  # 0 stays free for nodata
            yield s, dn.numpy().astype(np.uint16)
