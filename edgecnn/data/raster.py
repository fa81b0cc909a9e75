"""Multi-band files: GeoTIFF/TIFF and JPEG2000 through rasterio, ``.npy`` through NumPy.

What comes out is float32 ``[bands, size, size]`` with the file's own values
(no /255) and NaN wherever a pixel is nodata: the file's nodata value or mask,
a NaN in the file, or the recipe's ``data.nodata``. NaN is the one carrier of
"nodata" from here to ``train.loop.prepare``, which turns an all-NaN band into
a lost band (mask 0) and any other NaN pixel into the band mean.

Only what training needs is read: a file may be far larger than memory (a
60000 x 60000 4-band GeoTIFF of a few MB on disk decodes to 27 GiB), and no
reader here holds a full-resolution image of a large file.

- A GeoTIFF/JPEG2000 is read from its coarsest overview that is still at least
  as fine as the output (``read_level``; a JPEG2000's resolution levels are
  overviews too), or at full resolution when it has none.
- Every reader decodes its level one strip of rows at a time (whole blocks of
  a tiled file, so each tile is decoded once) and averages each output pixel's
  area in float without its nodata pixels (``_shrink``): an output pixel is
  nodata only when its whole area is. Memory holds a strip, not the image.
  (GDAL's own decimated read, ``out_shape`` with average resampling, needs a
  block cache the size of the image, or it decodes each tile many times: 12 s
  and 1 GB, or 216 s in 64 MB, for a Sentinel-2 tile without overviews, against
  about 10 s in a few hundred MB here.)
- A file may cost at most ``RasterSpec.max_pixels`` (``data.max_pixels``)
  decoded pixels, width x height of the level read: beyond that it is
  ``OverPixelLimit``, decided from the header alone (``check_pixels``). A file
  whose every band is nodata in every pixel is ``AllNodata``: nothing to classify.

rasterio is optional (``edgecnn[geo]``): it is imported only when a file needs it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.core.contracts import MAX_PIXELS
from edgecnn.errors import UserError

GEO_HINT = "pip install 'edgecnn[geo]'"
GEO_EXTENSIONS = frozenset({".tif", ".tiff", ".jp2"})  # read with rasterio when the data is not an 8-bit photo
NPY_EXTENSIONS = frozenset({".npy"})
RASTER_EXTENSIONS = GEO_EXTENSIONS | NPY_EXTENSIONS
_GDAL_NODATA_TAG = 42113  # the ASCII TIFF tag GDAL keeps the nodata value in
# GDAL's block cache defaults to 5% of the machine's memory (6 GB on a 128 GB machine) and keeps every tile a
# read passes through. Strips cut on block rows never need a tile twice: capped, a read's memory is the same on
# every machine.
_GDAL_CACHE_MB = 64
_STRIP_BYTES = 64 << 20  # float32 source pixels a full-resolution read holds at once


class ReadError(ValueError):
    """A file that cannot serve as a sample; the message says why in a few words."""


class OverPixelLimit(ReadError):
    """Reading the file would decode more pixels than ``RasterSpec.max_pixels`` (a decompression bomb, or a
    scene too large to read without overviews)."""

    kind = "over the pixel limit"


class AllNodata(ReadError):
    """Every band of the file is nodata in every pixel (of the centre square the readers use)."""

    kind = "all nodata"


@dataclass(frozen=True)
class Header:
    bands: int
    dtype: str
    width: int
    height: int
    overviews: tuple[int, ...] = ()  # decimation factors of the reduced levels GDAL can read instead
    nodata: float | None = None  # the file's own nodata value


@dataclass(frozen=True)
class RasterSpec:
    """How to read one dataset's multi-band files."""

    bands: int  # band count every file must have
    size: int  # side of the square output
    nodata: float | None = None  # the recipe's data.nodata, on top of the file's own
    max_pixels: int = MAX_PIXELS  # the recipe's data.max_pixels: see check_pixels
    names: tuple[str, ...] = ()  # data.bands, for messages only (the cache key does not see it)


def rasterio():
    """The rasterio module, or a one-line UserError naming the pip command."""
    try:
        import rasterio as rio
    except ImportError:
        raise UserError(f"reading GeoTIFF/JPEG2000 files needs rasterio, which is not installed; {GEO_HINT}") \
            from None
    return rio


def has_rasterio() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def header(path: Path) -> Header:
    """Band count, dtype, size, overviews and nodata value of a multi-band file, without reading its pixels.

    Raises:
        ReadError: not a readable raster, a ``.npy`` of the wrong rank, or a non-numeric nodata tag.
        UserError: a GeoTIFF/JPEG2000 file and rasterio is not installed.
    """
    path = Path(path)
    if path.suffix.lower() in NPY_EXTENSIONS:
        a = _open_npy(path)
        return Header(a.shape[0], str(a.dtype), a.shape[2], a.shape[1])  # CHW, as _open_npy returns
    rio = rasterio()
    _check_nodata_tag(path)
    try:
        with rio.open(path) as src:
            return _geo_header(src)
    except (rio.errors.RasterioError, OSError) as e:
        raise ReadError(f"not a readable raster ({first_line(e)})") from None


def _geo_header(src) -> Header:
    return Header(src.count, src.dtypes[0], src.width, src.height, tuple(src.overviews(1)) if src.count else (),
                  src.nodata)


def is_photo_header(h: Header) -> bool:
    """An 8-bit, 3-band file: Pillow decodes it exactly as it decodes JPEGs and PNGs."""
    return h.bands == 3 and h.dtype == "uint8"


def read_level(path: Path, h: Header, spec: RasterSpec) -> int:
    """The decimation factor of the level ``read`` decodes: the coarsest overview still at least as fine as
    the output, or 1 (full resolution).

    1 as well for a ``.npy`` or a photo (no overviews), and when the recipe's ``data.nodata`` is not the file's
    own: the overviews were averaged without knowing it.
    """
    knows = spec.nodata is None or (h.nodata is not None and float(h.nodata) == float(spec.nodata))
    if Path(path).suffix.lower() not in GEO_EXTENSIONS or not knows:
        return 1
    factor = min(h.width, h.height) / spec.size
    return max((f for f in h.overviews if f <= factor), default=1)


def decode_pixels(path: Path, h: Header, spec: RasterSpec) -> int:
    """Pixels (width x height) of the level ``read`` decodes from (an upper bound: it decodes the centre square)."""
    level = read_level(path, h, spec)
    return math.ceil(h.width / level) * math.ceil(h.height / level)


def check_pixels(path: Path, h: Header, spec: RasterSpec) -> None:
    """Raise ``OverPixelLimit`` when reading the file would decode more than ``spec.max_pixels`` pixels.

    Like Pillow's decompression-bomb guard, but counted on what is decoded: a 60000 x 60000 GeoTIFF with
    overviews is read from one of them and passes; without overviews every one of its 3.6 G pixels per band
    would be decoded to average them (minutes, even for empty tiles), so it does not.
    """
    n = decode_pixels(path, h, spec)
    if n <= spec.max_pixels:
        return
    how = "of its nearest overview" if n < h.width * h.height else \
        ("with no overview near the training size" if Path(path).suffix.lower() in GEO_EXTENSIONS else "read whole")
    raise OverPixelLimit(f"over the pixel limit ({h.width}x{h.height}: {n:,} pixels to decode {how}; "
                         f"the limit is {spec.max_pixels:,})")


def read(path: Path, spec: RasterSpec) -> np.ndarray:
    """Decode the centre square at ``spec.size``; float32 ``[bands, size, size]``, NaN = nodata.

    Raises:
        OverPixelLimit: the file would decode more than ``spec.max_pixels`` pixels (see ``check_pixels``).
        AllNodata: every band is nodata in every pixel.
        ReadError: unreadable, truncated or corrupt, the wrong band count, or a bad ``.npy``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in NPY_EXTENSIONS:
        a = _read_npy(path, spec)
    elif suffix in GEO_EXTENSIONS:
        a = _read_geo(path, spec)
    else:
        a = _read_photo(path, spec)
    if np.isnan(a).all():
        raise AllNodata("all nodata (every band is nodata in every pixel)")
    return a


def _mark_nodata(a: np.ndarray, nodata: float | None) -> np.ndarray:
    """The recipe's ``data.nodata`` as NaN, in place."""
    if nodata is not None:
        a[a == np.float32(nodata)] = np.nan
    return a


def _centre(h: Header) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centre square every reader crops to."""
    side = min(h.width, h.height)
    return (h.height - side) // 2, (h.width - side) // 2, side


def _read_geo(path: Path, spec: RasterSpec) -> np.ndarray:
    rio = rasterio()
    _check_nodata_tag(path)
    try:
        with rio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB):
            with rio.open(path) as src:
                h = _geo_header(src)
                if h.bands != spec.bands:
                    raise ReadError(f"{h.bands} bands but data.bands names {spec.bands}")
                check_pixels(path, h, spec)
                level = read_level(path, h, spec)
                if level == 1:
                    return _shrink_geo(src, spec)
            # GDAL opens an overview as a dataset of its own (the OVERVIEW_LEVEL open option).
            with rio.open(path, overview_level=h.overviews.index(level)) as ovr:
                return _shrink_geo(ovr, spec)
    except (rio.errors.RasterioError, OSError) as e:
        raise ReadError(f"not a readable raster ({first_line(e)})") from None


def _shrink_geo(src, spec: RasterSpec) -> np.ndarray:
    """``_shrink`` over an open rasterio dataset (a file or one of its overviews), in strips of whole blocks."""
    from rasterio.enums import MaskFlags
    from rasterio.windows import Window

    h = _geo_header(src)
    top, left, side = _centre(h)
    # A nodata value alone: compare here (rasterio's masked reads compute the same mask 4x slower).
    # A mask band or alpha: GDAL's own masks.
    value_only = all(set(f) <= {MaskFlags.nodata, MaskFlags.all_valid} for f in src.mask_flag_enums)
    nodata = src.nodata if value_only and src.nodata is not None and not math.isnan(src.nodata) else None

    def rows(r0: int, r1: int) -> np.ndarray:
        window = Window(left, top + r0, side, r1 - r0)
        a = src.read(window=window, out_dtype="float32")
        if not value_only:
            a[src.read_masks(window=window) == 0] = np.nan
        return _mark_nodata(_mark_nodata(a, nodata), spec.nodata)

    return _shrink(rows, h.bands, side, spec.size, block=src.block_shapes[0][0], top=top)


def _read_npy(path: Path, spec: RasterSpec) -> np.ndarray:
    a = _open_npy(path, spec.bands)
    h = Header(a.shape[0], str(a.dtype), a.shape[2], a.shape[1])
    del a  # every strip maps the file afresh: pages a dropped map held leave this process's memory with it
    if h.bands != spec.bands:
        raise ReadError(f"{h.bands} bands but data.bands names {spec.bands}")
    check_pixels(path, h, spec)
    top, left, side = _centre(h)

    def rows(r0: int, r1: int) -> np.ndarray:
        strip = _open_npy(path, spec.bands)[:, top + r0:top + r1, left:left + side]
        return _mark_nodata(np.asarray(strip, dtype=np.float32).copy(), spec.nodata)

    return _shrink(rows, h.bands, side, spec.size)


def _shrink(rows: Callable[[int, int], np.ndarray], bands: int, side: int, size: int, block: int = 1,
            top: int = 0) -> np.ndarray:
    """The ``side``-square image that ``rows(r0, r1)`` returns a strip of (float32 ``[bands, r1 - r0, side]``,
    NaN = nodata), at ``size``: averaged over each output pixel's area without its nodata pixels, or enlarged.

    The areas are torch's "area" windows (rows and columns ``floor(i * side / size)`` to
    ``ceil((i + 1) * side / size)``), so without nodata this is ``interpolate(mode="area")``; an output pixel
    whose whole area is nodata is NaN. The image is read in strips of about ``_STRIP_BYTES`` whose edges fall
    on the file's block rows (``block`` rows each, the square starting at file row ``top``): each tile is
    decoded once. Each strip's column windows are averaged first, then their rows are summed into the output
    rows, the valid share alongside: a window across two strips adds up exactly.
    Enlarging (a file smaller than the output) is bilinear on the whole, small, image: NaN spreads to the
    output pixels next to a nodata pixel.
    """
    import torch
    import torch.nn.functional as F

    if side <= size:
        a = rows(0, side)
        if side == size:
            return np.ascontiguousarray(a)
        t = F.interpolate(torch.from_numpy(np.ascontiguousarray(a))[None], size=(size, size), mode="bilinear",
                          align_corners=False)
        return t[0].numpy()
    sums = torch.zeros(bands, size, size, dtype=torch.float64)
    counts = torch.zeros(bands, size, size, dtype=torch.float64)
    height = max(block, _STRIP_BYTES // (bands * side * 4) // block * block)
    edges = [0, *range(-(-(top + 1) // height) * height - top, side, height), side]  # on multiples of height
    for s0, s1 in zip(edges, edges[1:]):
        strip = torch.from_numpy(rows(s0, s1))
        nodata = torch.isnan(strip)
        # Each row's column windows first (one contiguous pass over the strip), then the rows of each window:
        # per window, the mean of the valid values times the valid share, and that share.
        valid = None
        if bool(nodata.any()):
            strip.nan_to_num_(nan=0.0)
            valid = F.adaptive_avg_pool1d((~nodata).float(), size).double()  # [bands, rows, size]
        del nodata
        cols = F.adaptive_avg_pool1d(strip, size).double()
        del strip
        for i in range(s0 * size // side, -(-s1 * size // side)):  # output rows whose window meets the strip
            r0, r1 = max(i * side // size, s0) - s0, min(-(-(i + 1) * side // size), s1) - s0
            if r1 <= r0:
                continue
            sums[:, i] += cols[:, r0:r1].sum(1)
            counts[:, i] += valid[:, r0:r1].sum(1) if valid is not None else r1 - r0
    out = torch.where(counts > 0, sums / counts.clamp(min=1e-300), float("nan"))
    return out.float().numpy()


def _read_photo(path: Path, spec: RasterSpec) -> np.ndarray:
    """A JPEG/PNG in a multi-band dataset: its 0..255 values as float, bands first, shrunk like the rest.

    Pillow decodes it whole; its own decompression-bomb guard and ``check_pixels`` bound that.
    """
    from PIL import Image

    from edgecnn.data.photo import DECODE_ERRORS, to_rgb

    try:
        with Image.open(path) as im:
            w, h = im.size
            check_pixels(path, Header(len(im.getbands()), im.mode, w, h), spec)
            a = np.asarray(to_rgb(im), dtype=np.float32).transpose(2, 0, 1).copy()
    except Image.DecompressionBombError as e:
        raise OverPixelLimit(f"over the pixel limit (Pillow's decompression-bomb guard: {first_line(e)})") from None
    except DECODE_ERRORS as e:
        raise ReadError(f"not a readable image ({first_line(e)})") from None
    if a.shape[0] != spec.bands:
        raise ReadError(f"{a.shape[0]} bands but data.bands names {spec.bands}")
    _mark_nodata(a, spec.nodata)
    top, left, side = _centre(Header(a.shape[0], "float32", a.shape[2], a.shape[1]))
    return _shrink(lambda r0, r1: a[:, top + r0:top + r1, left:left + side], a.shape[0], side, spec.size)


def _open_npy(path: Path, bands: int | None = None) -> np.ndarray:
    """A ``.npy`` as ``[C, H, W]`` (memory-mapped); ``[H, W, C]`` is accepted when C matches ``bands`` or is last."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ReadError(f"not a readable .npy ({first_line(e)})") from None
    if a.ndim != 3:
        raise ReadError(f".npy of shape {list(a.shape)}; expected [C,H,W] or [H,W,C]")
    if a.dtype.kind not in "uif" and a.dtype != np.bool_:
        raise ReadError(f".npy of dtype {a.dtype}; expected integers or floats")
    # Channels first unless the last axis is clearly the band axis (the first is not, the last is small).
    hwc = (bands is not None and a.shape[0] != bands and a.shape[2] == bands) or \
          (bands is None and a.shape[2] < a.shape[0] and a.shape[2] <= 32)
    return a.transpose(2, 0, 1) if hwc else a


def _check_nodata_tag(path: Path) -> None:
    """GDAL reads a non-numeric nodata tag as 0, which would mark real zeros as nodata: refuse the file."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return
    text = _tiff_tag_text(path, _GDAL_NODATA_TAG)
    if text is None:
        return
    try:
        float(text.strip())
    except ValueError:
        raise ReadError(f"non-numeric nodata tag {text.strip()[:20]!r}") from None


def _tiff_tag_text(path: Path, tag: int) -> str | None:
    """An ASCII tag of a classic TIFF's first IFD (None when absent, or for BigTIFF and non-TIFF files)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[:2] not in (b"II", b"MM"):
                return None
            e = "<" if head[:2] == b"II" else ">"
            if struct.unpack(e + "H", head[2:4])[0] != 42:
                return None
            f.seek(struct.unpack(e + "I", head[4:8])[0])
            count = struct.unpack(e + "H", f.read(2))[0]
            entries = f.read(12 * count)
            for i in range(count):
                t, kind, n, value = struct.unpack(e + "HHI4s", entries[12 * i:12 * i + 12])
                if t == tag and kind == 2:
                    if n > 4:
                        f.seek(struct.unpack(e + "I", value)[0])
                        value = f.read(n)
                    return value[:n].split(b"\0")[0].decode("latin-1")
    except (OSError, struct.error):
        return None
    return None


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
