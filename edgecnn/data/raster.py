"""Multi-band files: GeoTIFF/TIFF and JPEG2000 through rasterio, ``.npy`` through NumPy.

What comes out is float32 ``[bands, size, size]`` with the file's own values
(no /255) and NaN wherever a pixel is nodata: the file's nodata value or mask,
a NaN in the file, or the recipe's ``data.nodata``. NaN is the one carrier of
"nodata" from here to ``train.loop.prepare``, which turns an all-NaN band into
a lost band (mask 0) and any other NaN pixel into the band mean.

rasterio is optional (``edgecnn[geo]``): it is imported only when a file needs it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import UserError

GEO_HINT = "pip install 'edgecnn[geo]'"
GEO_EXTENSIONS = frozenset({".tif", ".tiff", ".jp2"})  # read with rasterio when the data is not an 8-bit photo
NPY_EXTENSIONS = frozenset({".npy"})
RASTER_EXTENSIONS = GEO_EXTENSIONS | NPY_EXTENSIONS
_GDAL_NODATA_TAG = 42113  # the ASCII TIFF tag GDAL keeps the nodata value in


class ReadError(ValueError):
    """A file that cannot serve as a sample; the message says why in a few words."""


@dataclass(frozen=True)
class Header:
    bands: int
    dtype: str
    width: int
    height: int


@dataclass(frozen=True)
class RasterSpec:
    """How to read one dataset's multi-band files."""

    bands: int  # band count every file must have
    size: int  # side of the square output
    nodata: float | None = None  # the recipe's data.nodata, on top of the file's own


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
    """Band count, dtype and size of a multi-band file, without reading its pixels.

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
            return Header(src.count, src.dtypes[0], src.width, src.height)
    except (rio.errors.RasterioError, OSError) as e:
        raise ReadError(f"not a readable raster ({_first_line(e)})") from None


def is_photo_header(h: Header) -> bool:
    """An 8-bit, 3-band file: Pillow decodes it exactly as it decodes JPEGs and PNGs."""
    return h.bands == 3 and h.dtype == "uint8"


def read(path: Path, spec: RasterSpec) -> np.ndarray:
    """Decode, crop the centre square, resize in float; float32 ``[bands, size, size]``, NaN = nodata.

    Raises:
        ReadError: unreadable, truncated or corrupt, the wrong band count, or a bad ``.npy``.
    """
    path = Path(path)
    if path.suffix.lower() in NPY_EXTENSIONS:
        a = np.asarray(_open_npy(path, spec.bands), dtype=np.float32).copy()
    elif path.suffix.lower() in GEO_EXTENSIONS:
        a = _read_geo(path, spec.bands)
    else:
        a = _read_photo(path)
    if a.shape[0] != spec.bands:
        raise ReadError(f"{a.shape[0]} bands but data.bands names {spec.bands}")
    if spec.nodata is not None:
        a[a == np.float32(spec.nodata)] = np.nan
    return resize(a, spec.size)


def resize(a: np.ndarray, size: int) -> np.ndarray:
    """The centre square of ``[C, H, W]`` float32 resized to ``size`` per band, in float.

    Shrinking averages areas (a pixel touching nodata stays nodata, NaN spreads
    no further than its own window); enlarging is bilinear.
    """
    import torch
    import torch.nn.functional as F

    _, h, w = a.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    sq = np.ascontiguousarray(a[:, top:top + side, left:left + side])
    if side == size:
        return sq
    t = torch.from_numpy(sq)[None]
    mode = "area" if side > size else "bilinear"
    out = F.interpolate(t, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return out[0].numpy()


def _read_geo(path: Path, bands: int) -> np.ndarray:
    rio = rasterio()
    _check_nodata_tag(path)
    try:
        with rio.open(path) as src:
            if src.count != bands:
                raise ReadError(f"{src.count} bands but data.bands names {bands}")
            a = src.read().astype(np.float32)
            # A nodata value alone: compare here. A mask band or alpha: GDAL's own masks.
            if all(set(f) <= {rio.enums.MaskFlags.nodata, rio.enums.MaskFlags.all_valid}
                   for f in src.mask_flag_enums):
                if src.nodata is not None and not math.isnan(src.nodata):
                    a[a == np.float32(src.nodata)] = np.nan
            else:
                a[src.read_masks() == 0] = np.nan
    except (rio.errors.RasterioError, OSError) as e:
        raise ReadError(f"not a readable raster ({_first_line(e)})") from None
    return a


def _read_photo(path: Path) -> np.ndarray:
    """A JPEG/PNG in a multi-band dataset: its 0..255 values as float, bands first."""
    from PIL import Image

    from edgecnn.data.photo import to_rgb

    try:
        with Image.open(path) as im:
            return np.asarray(to_rgb(im), dtype=np.float32).transpose(2, 0, 1).copy()
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ReadError(f"not a readable image ({_first_line(e)})") from None


def _open_npy(path: Path, bands: int | None = None) -> np.ndarray:
    """A ``.npy`` as ``[C, H, W]`` (memory-mapped); ``[H, W, C]`` is accepted when C matches ``bands`` or is last."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ReadError(f"not a readable .npy ({_first_line(e)})") from None
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
