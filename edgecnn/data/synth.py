"""The built-in synthetic dataset: shapes with a spectral signature.

Each class is a pair (shape, band signature). The shape is one of
``SHAPES`` (class ``c`` draws shape ``c % len(SHAPES)``); the signature is
the shape's intensity in every band, fixed per class by a class table
drawn from a constant seed, so every run and every machine sees the same
classes. Classes that share a shape differ in their signature, and the
table is built so that siblings differ mainly in *one* band: zeroing that
band makes them look alike. That is on purpose: the channel-robust
feature drops input bands, and on this dataset losing a band visibly costs
accuracy.

Everything else is nuisance a classifier has to learn to ignore: the
shape's position, size and rotation, a textured background with a random
per-band offset, a smooth illumination field, a small jitter of the
signature and pixel noise.

``data synth --sensor NAME`` writes another dataset instead: material scenes seen through a sensor's
bands (``scenes.py``, ``spectra.py``), whose classes are told apart by their spectra alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from edgecnn.errors import UserError

SHAPES = ("circle", "square", "triangle", "cross", "ring", "stripes")

# The class table never depends on the sample seed: a recipe's seed changes
# which images are drawn, never what the classes are.
_TABLE_SEED = 20_240_917

# Signature levels live in [_SIG_LOW, 1]; siblings differ by about
# _SIG_DELTA in one band, far more than the per-sample jitter below.
_SIG_LOW = 0.3
_SIG_DELTA = 0.45
_SIG_MARGIN = 0.3  # least L-inf distance between two siblings' signatures

# Per-sample nuisance. Strengths are fractions of the 0..1 intensity range,
# sizes fractions of the image side. Tuned so a small CNN learns the set in
# a few epochs without reaching 100% at once.
_RADIUS = (0.16, 0.32)  # shape circumradius
_BG_OFFSET = (0.0, 0.4)  # per-band background level
_BG_TEXTURE = 0.12  # amplitude of the low-frequency background texture
_ILLUMINATION = 0.2  # amplitude of the multiplicative illumination field
_SIG_JITTER = 0.04
_PIXEL_NOISE = 0.05

# Images per vectorised batch. Small on purpose: every fresh multi-megabyte
# tensor costs page faults, which on a small VM took longer than the
# arithmetic itself (chunks of 256 were 4x slower than 64).
_CHUNK = 64


def synth_class_names(num_classes: int) -> list[str]:
    """Names of the synthetic classes, e.g. ``00_circle_a``, ``06_circle_b``.

    The zero-padded index prefix makes sorted order equal class-index order,
    so a folder written by ``write_synth`` reads back with the same labels.
    The letter tells siblings (same shape, different signature) apart.

    Raises:
        UserError: ``num_classes`` is below 1.
    """
    if num_classes < 1:
        raise UserError(f"num_classes={num_classes}: the synthetic dataset needs at least 1 class")
    width = max(2, len(str(num_classes - 1)))
    names = []
    for c in range(num_classes):
        sibling = c // len(SHAPES)
        tag = chr(ord("a") + sibling) if sibling < 26 else f"s{sibling}"
        names.append(f"{c:0{width}d}_{SHAPES[c % len(SHAPES)]}_{tag}")
    return names


def class_signatures(num_classes: int, bands: int = 3) -> Tensor:
    """The per-class band signature table, float32 ``[num_classes, bands]``.

    Sibling ``k >= 1`` of a shape copies sibling 0's signature and moves one
    band, ``(shape + k - 1) % bands``, by about ``_SIG_DELTA``. When a shape
    has more siblings than that scheme separates (more than ``bands + 1``),
    random signatures at least ``_SIG_MARGIN`` away are drawn instead. Rows
    depend only on earlier rows, so the first N classes of a bigger table
    equal the table for N classes.
    """
    gen = torch.Generator().manual_seed(_TABLE_SEED + bands)
    table: list[Tensor] = []
    for c in range(num_classes):
        shape, sibling = c % len(SHAPES), c // len(SHAPES)
        siblings = table[shape :: len(SHAPES)]  # same shape, already placed
        if sibling == 0:
            table.append(_SIG_LOW + (1 - _SIG_LOW) * torch.rand(bands, generator=gen))
            continue
        candidate = siblings[0].clone()
        band = (shape + sibling - 1) % bands
        if candidate[band] > (1 + _SIG_LOW) / 2:
            candidate[band] -= _SIG_DELTA
        else:
            candidate[band] = min(1.0, candidate[band].item() + _SIG_DELTA)
        placed = torch.stack(siblings)
        margin = _SIG_MARGIN
        while (placed - candidate).abs().amax(dim=1).min() < margin:
            # Few bands, many siblings: no room left at full margin, so shrink it.
            candidate = _SIG_LOW + (1 - _SIG_LOW) * torch.rand(bands, generator=gen)
            margin *= 0.98
        table.append(candidate)
    return torch.stack(table) if table else torch.empty(0, bands)


# Signed distance-like fields in the shape's local frame (circumradius 1):
# positive inside, negative outside, in units of the circumradius.
def _circle(u: Tensor, v: Tensor) -> Tensor:
    return 1 - torch.sqrt(u * u + v * v)


def _square(u: Tensor, v: Tensor) -> Tensor:
    return 0.75 - torch.maximum(u.abs(), v.abs())


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    # Equilateral: inside when all three edge normals see the point within
    # the inradius (0.5 for circumradius 1).
    dists = [u * math.cos(a) + v * math.sin(a) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    return 0.5 - torch.maximum(torch.maximum(dists[0], dists[1]), dists[2])


def _cross(u: Tensor, v: Tensor) -> Tensor:
    arm_h = torch.minimum(0.28 - v.abs(), 0.9 - u.abs())
    arm_v = torch.minimum(0.28 - u.abs(), 0.9 - v.abs())
    return torch.maximum(arm_h, arm_v)


def _ring(u: Tensor, v: Tensor) -> Tensor:
    r = torch.sqrt(u * u + v * v)
    return torch.minimum(r - 0.55, 1 - r)


def _stripes(u: Tensor, v: Tensor) -> Tensor:
    # Three bars across a square: distance to the nearest bar centre (0, +-0.6).
    to_bar = (u - 0.6 * torch.round(u / 0.6)).abs()
    return torch.minimum(0.8 - torch.maximum(u.abs(), v.abs()), 0.17 - to_bar)


_SDF: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (_circle, _square, _triangle, _cross, _ring, _stripes)


def _split_seed(seed: int, split: str) -> int:
    # A hash, not seed + 1: train of seed 1 must not equal val of seed 0.
    digest = hashlib.sha256(f"edgecnn-synth/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _smooth_field(gen: torch.Generator, n: int, channels: int, size: int, cells: int) -> Tensor:
    """Low-frequency noise in about [-1, 1]: a ``cells x cells`` grid upsampled."""
    coarse = torch.rand(n, channels, cells, cells, generator=gen) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


class SynthDataset(Dataset):
    """Shapes with per-class band signatures, generated in memory at construction.

    Args:
        num_classes: number of classes; class ``c`` uses shape ``c % 6``.
        per_class: images per class (labels are balanced, class-major order).
        image_size: side of the square images in pixels.
        seed: sample seed; the same arguments give bit-identical images.
        split: ``"train"`` or ``"val"``; they draw different images.
        bands: number of spectral bands (3 for RGB).

    Attributes:
        images: uint8 ``[N, bands, H, W]``.
        labels: int64 ``[N]``.
        classes: class names from ``synth_class_names``.

    Raises:
        UserError: a count is below 1, ``split`` is unknown, or the image is too small.
    """

    def __init__(self, num_classes: int, per_class: int, image_size: int, seed: int, split: str, bands: int = 3):
        if split not in ("train", "val"):
            raise UserError(f"split={split!r}: the synthetic dataset has splits 'train' and 'val'")
        if per_class < 1 or bands < 1:
            raise UserError(f"per_class={per_class}, bands={bands}: both must be at least 1")
        if image_size < 8:
            raise UserError(f"image_size={image_size}: synthetic shapes need at least 8 pixels; use 32 or more")
        self.classes = synth_class_names(num_classes)
        self.labels = torch.arange(num_classes).repeat_interleave(per_class)
        gen = torch.Generator().manual_seed(_split_seed(seed, split))
        self.images = _generate(self.labels, class_signatures(num_classes, bands), image_size, gen)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])


def _generate(labels: Tensor, signatures: Tensor, size: int, gen: torch.Generator) -> Tensor:
    n, bands = len(labels), signatures.shape[1]
    # Per-sample geometry and signature are drawn for the whole set first, so
    # they do not depend on the chunk size used for the pixel work below.
    radius = size * (_RADIUS[0] + (_RADIUS[1] - _RADIUS[0]) * torch.rand(n, generator=gen))
    # Keep the centre far enough in that most of the shape stays visible.
    centre = radius[:, None] * 0.7 + torch.rand(n, 2, generator=gen) * (size - 1.4 * radius[:, None])
    angle = torch.rand(n, generator=gen) * 2 * math.pi
    signature = signatures[labels] + _SIG_JITTER * torch.randn(n, bands, generator=gen)

    pixel = torch.arange(size, dtype=torch.float32) + 0.5
    out = torch.empty(n, bands, size, size, dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        s = slice(start, min(start + _CHUNK, n))
        m = s.stop - s.start
        dx = pixel[None, None, :] - centre[s, 0, None, None]
        dy = pixel[None, :, None] - centre[s, 1, None, None]
        cos, sin, r = angle[s].cos()[:, None, None], angle[s].sin()[:, None, None], radius[s, None, None]
        u, v = (cos * dx + sin * dy) / r, (cos * dy - sin * dx) / r

        sdf = torch.empty(m, size, size)
        shape_of = labels[s] % len(SHAPES)
        for k, field in enumerate(_SDF):
            idx = shape_of == k
            if idx.any():
                sdf[idx] = field(u[idx], v[idx])
        # Distance in pixels -> one-pixel-wide soft edge, i.e. antialiasing.
        mask = (sdf * r + 0.5).clamp(0, 1)[:, None]

        offset = _BG_OFFSET[0] + (_BG_OFFSET[1] - _BG_OFFSET[0]) * torch.rand(m, bands, 1, 1, generator=gen)
        background = offset + _BG_TEXTURE * _smooth_field(gen, m, bands, size, cells=6)
        illumination = 1 + _ILLUMINATION * _smooth_field(gen, m, 1, size, cells=3)
        image = (background * (1 - mask) + signature[s, :, None, None] * mask) * illumination
        image = image + _PIXEL_NOISE * torch.randn(m, bands, size, size, generator=gen)
        out[s] = (image * 255).round_().clamp_(0, 255).to(torch.uint8)
    return out


# The GeoTIFF form of the synthetic set (``edgecnn data synth --format tiff``): 16-bit values as a
# reflectance sensor gives them, a nodata value, and about one image in LOST_EVERY with one band lost.
TIFF_NODATA = 0
TIFF_SCALE, TIFF_OFFSET = 40, 100  # uint8 v -> 100 + 40 v: 100..10300, never the nodata value
LOST_EVERY = 5


@dataclass(frozen=True)
class SynthFiles:
    """What ``write_synth`` writes: PNGs (RGB) or GeoTIFFs (``bands`` bands, uint16, deflate)."""

    num_classes: int
    train_per_class: int
    val_per_class: int
    image_size: int
    seed: int
    format: str = "png"  # or "tiff"
    bands: int = 3


def write_synth(
    out: Path, num_classes: int, train_per_class: int, val_per_class: int, image_size: int, seed: int,
    format: str = "png", bands: int = 3, sensor: str | None = None,
) -> dict:
    """Write the synthetic dataset as an ImageNet-mini style folder.

    The tree is ``out/{train,val}/<class>/<i>.png`` (RGB PNGs), or with
    ``format="tiff"`` ``<i>.tif``: ``bands``-band uint16 GeoTIFFs (deflate,
    nodata ``TIFF_NODATA``) in which about one image in ``LOST_EVERY`` has one
    band set entirely to nodata (the image's ``lost`` band, recorded in
    ``out/lost.json``). It is written into a sibling ``<out>.tmp-*`` folder and
    renamed at the end, so an interrupted write never leaves a folder that looks complete.

    With ``sensor`` (a ``data.bands`` preset or pick, e.g. ``landsat8`` or ``sentinel2:B04,B03,B02``) the
    images are instead material scenes seen through that sensor's bands (``data/scenes.py``):
    reflectance x 10,000, band names and wavelengths in the files' tags and in ``out/sensor.json``,
    the same scenes for every sensor at one seed; ``bands`` is then unused.

    Returns:
        ``{"train": images, "val": images, "classes": num_classes}`` (and ``"lost"`` for tiff).

    Raises:
        UserError: ``out`` exists and is not an empty folder, an argument is out of range,
            tiff is asked for and rasterio is missing, or ``sensor`` is not a band list the spectra cover.
    """
    spec = SynthFiles(num_classes, train_per_class, val_per_class, image_size, seed, format, bands)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose a new folder or delete it")
    if format not in ("png", "tiff"):
        raise UserError(f"--format {format}: choose png or tiff")
    if format == "png" and bands != 3:
        raise UserError(f"--bands {bands}: PNGs hold RGB; use --format tiff for other band counts")
    sensor_bands = _sensor_bands(sensor, format) if sensor is not None else None
    if format == "tiff":
        from edgecnn.data.raster import rasterio

        rasterio()  # fails before any work when it is missing
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is 0700; the dataset follows the umask like its files
    try:
        lost = {}
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            if sensor_bands is not None:
                lost |= _write_sensor_split(tmp / split, num_classes, per_class, spec, sensor, sensor_bands)
                continue
            ds = SynthDataset(num_classes, per_class, image_size, seed, split, bands)
            lost |= _write_split(tmp / split, ds, spec)
        counts = {"train": num_classes * train_per_class, "val": num_classes * val_per_class, "classes": num_classes}
        if format == "tiff":
            (tmp / "lost.json").write_text(json.dumps(lost, indent=1, sort_keys=True))
            counts["lost"] = len(lost)
        if sensor_bands is not None:
            from edgecnn.data.scenes import REFLECTANCE_SCALE, material_classes
            from edgecnn.data.spectra import MATERIALS

            names, shares = material_classes(num_classes)
            record = {"sensor": sensor, "bands": [b.as_dict() for b in sensor_bands],
                      "reflectance_scale": 1 / REFLECTANCE_SCALE, "nodata": TIFF_NODATA,
                      "classes": {name: {m: round(float(w), 4) for m, w in zip(MATERIALS, row) if w > 0}
                                  for name, row in zip(names, shares)}}
            (tmp / "sensor.json").write_text(json.dumps(record, indent=1))
        if out.exists():
            out.rmdir()  # empty, checked above; rename cannot replace a folder on every OS
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def _write_split(folder: Path, ds: SynthDataset, spec: SynthFiles) -> dict[str, int]:
    """One split's files; returns ``{relative path: lost band index}`` for tiff images with a lost band."""
    width = len(str(len(ds)))
    for name in ds.classes:
        (folder / name).mkdir(parents=True)
    # The lost bands are drawn from their own seed: the images are those of the PNG form.
    gen = torch.Generator().manual_seed(_split_seed(spec.seed, folder.name) + 1)
    lose = torch.rand(len(ds), generator=gen) < 1 / LOST_EVERY
    which = torch.randint(0, spec.bands, (len(ds),), generator=gen)
    lost = {}
    for i, (image, label) in enumerate(zip(ds.images, ds.labels.tolist())):
        stem = folder / ds.classes[label] / f"{i:0{width}d}"
        if spec.format == "png":
            # compress_level=1: these tiny PNGs gain little from harder compression.
            Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").save(stem.with_suffix(".png"), compress_level=1)
            continue
        values = image.numpy().astype("uint16") * TIFF_SCALE + TIFF_OFFSET
        if lose[i]:
            values[int(which[i])] = TIFF_NODATA
            lost[f"{folder.name}/{ds.classes[label]}/{stem.name}.tif"] = int(which[i])
        write_geotiff(stem.with_suffix(".tif"), values, TIFF_NODATA)
    return lost


def _sensor_bands(sensor: str, format: str) -> list:
    """The bands of ``--sensor``, checked before any work (one-line errors)."""
    from edgecnn.core.sensors import resolve_bands
    from edgecnn.data.spectra import responses

    if format != "tiff":
        raise UserError(f"--sensor {sensor}: sensor renderings are GeoTIFFs of reflectance; add --format tiff")
    try:
        bands = resolve_bands(sensor)
        responses(bands)  # a thermal band or one without a wavelength fails here, not mid-write
    except ValueError as e:  # BandError included
        raise UserError(f"--sensor {sensor}: {e}") from None
    return bands


def _write_sensor_split(folder: Path, num_classes: int, per_class: int, spec: SynthFiles, sensor: str,
                        bands: list) -> dict[str, int]:
    """One split of material scenes through ``bands``; lost bands drawn as ``_write_split`` draws them."""
    from edgecnn.data.scenes import REFLECTANCE_SCALE, Scenes, material_classes

    classes, shares = material_classes(num_classes)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    scenes = Scenes(labels, shares, spec.image_size, spec.seed, folder.name)
    for name in classes:
        (folder / name).mkdir(parents=True)
    width = len(str(len(labels)))
    gen = torch.Generator().manual_seed(_split_seed(spec.seed, folder.name) + 1)
    lose = torch.rand(len(labels), generator=gen) < 1 / LOST_EVERY
    which = torch.randint(0, len(bands), (len(labels),), generator=gen)
    tags = {"sensor": sensor, "bands": ",".join(b.name for b in bands),
            "center_nm": ",".join(f"{b.center_nm:g}" for b in bands),
            "fwhm_nm": ",".join(f"{b.fwhm_nm:g}" if b.fwhm_nm else "" for b in bands),
            "scale": f"reflectance x {REFLECTANCE_SCALE}"}
    band_tags = [{"center_nm": f"{b.center_nm:g}", **({"fwhm_nm": f"{b.fwhm_nm:g}"} if b.fwhm_nm else {})}
                 for b in bands]
    lost = {}
    for s, values in scenes.render(bands, sensor):
        for i, image in zip(range(s.start, s.stop), values):
            label = int(labels[i])
            rel = f"{folder.name}/{classes[label]}/{i:0{width}d}.tif"
            if lose[i]:
                image[int(which[i])] = TIFF_NODATA
                lost[rel] = int(which[i])
            write_geotiff(folder.parent / rel, image, TIFF_NODATA, descriptions=[b.name for b in bands],
                          tags=tags, band_tags=band_tags)
    return lost


def write_geotiff(path: Path, values, nodata: float | None, compress: str = "deflate",
                  descriptions: list[str] | None = None, tags: dict | None = None,
                  band_tags: list[dict] | None = None) -> None:
    """A GeoTIFF of ``values`` ``[bands, H, W]`` (a 10 m UTM grid: the files look like a sensor's tiles).

    ``descriptions`` name the bands (GDAL band descriptions, what ``gdalinfo`` and QGIS show); ``tags``
    go on the dataset and ``band_tags[i]`` on band ``i + 1`` (GDAL metadata)."""
    from edgecnn.data.raster import rasterio

    rio = rasterio()
    from rasterio.transform import Affine

    c, h, w = values.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": str(values.dtype),
               "compress": compress, "nodata": nodata, "crs": "EPSG:32633",
               "transform": Affine(10, 0, 500000, 0, -10, 5000000)}
    with rio.open(path, "w", **profile) as dst:
        dst.write(values)
        for i, text in enumerate(descriptions or []):
            dst.set_band_description(i + 1, text)
        if tags:
            dst.update_tags(**tags)
        for i, t in enumerate(band_tags or []):
            dst.update_tags(i + 1, **t)
