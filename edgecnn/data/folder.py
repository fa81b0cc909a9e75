"""Image-folder datasets laid out like ImageNet-mini: ``<root>/<split>/<class>/<image>``.

Loading is written on Pillow alone (torchvision does not import on this
stack). ``load_image`` is public so prediction decodes a user's photo
exactly the way training decoded the dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from edgecnn.core.contracts import MAX_PIXELS
from edgecnn.data import raster as RA
from edgecnn.data.photo import DECODE_ERRORS as _DECODE_ERRORS
from edgecnn.data.photo import to_rgb
from edgecnn.data.raster import RASTER_EXTENSIONS, AllNodata, OverPixelLimit, RasterSpec, ReadError
from edgecnn.errors import UserError

ORIENTATION = 0x0112  # the EXIF tag that says how a photo is turned
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# .jp2 and .npy only ever go through the multi-band readers (data/raster.py).
IMAGE_EXTENSIONS = PHOTO_EXTENSIONS | RASTER_EXTENSIONS


def _layout_hint(split_dir: Path) -> str:
    return f"expected {split_dir.parent}/{split_dir.name}/<class>/<image> as in ImageNet-mini"


def list_classes(split_dir: Path, num_classes: int | None, classes: list[str] | None) -> list[str]:
    """The class folders of one split, in the order that defines the labels.

    Args:
        split_dir: e.g. ``<root>/train``.
        num_classes: take the first N class folders in sorted order; ``None`` takes all.
        classes: exactly these class folders, in this order; when given,
            ``num_classes`` is ignored.

    Raises:
        UserError: the root or the split folder is missing, it holds no class
            folders, fewer than ``num_classes``, or a listed class is missing.
    """
    split_dir = Path(split_dir).expanduser()
    root = split_dir.parent
    if not root.is_dir():
        raise UserError(f"data.root: folder {root} does not exist; set data.root (in the recipe or as an "
                        f"override, data.root=PATH) to a dataset folder, {_layout_hint(split_dir)}")
    if not split_dir.is_dir():
        raise UserError(f"data.root: {split_dir} is not a folder; {_layout_hint(split_dir)}")
    # Hidden folders (.ipynb_checkpoints, .DS_Store-style clutter) are never classes.
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise UserError(f"{split_dir} has no class folders; {_layout_hint(split_dir)}")
    if classes is not None:
        if not classes:
            raise UserError("data.classes is an empty list; name the class folders to use, or leave it out")
        missing = [c for c in classes if c not in found]
        if missing:
            raise UserError(
                f"{split_dir} has no class folder {', '.join(missing)}; "
                f"fix data.classes (found {len(found)} classes, e.g. {', '.join(found[:3])})"
            )
        return list(classes)
    if num_classes is not None:
        if len(found) < num_classes:
            raise UserError(
                f"{split_dir} has {len(found)} class folders but data.num_classes is {num_classes}; "
                f"lower data.num_classes or add class folders"
            )
        return found[:num_classes]
    return found


class ImageFolder(Dataset):
    """The images of one split, labelled by the index of their class folder in ``classes``.

    Files are found by extension (case-insensitive, also in subfolders of a
    class folder) and sorted, so the sample order is the same on every
    machine. Each file's header is opened at scan time (no pixel decode);
    files that cannot serve are left out and listed in ``skipped`` (with the
    reason in ``skip_reasons``): unreadable, another band count, or over the
    pixel limit (``max_pixels``, judged from the header). A file whose pixels
    turn out to be unusable later (a truncated download, every band nodata)
    yields ``None`` from ``__getitem__`` (``try_decode`` says why); ``collate``
    drops it.

    Two readers (see ``needs_raster``): photos (``raster=None``) decode with
    Pillow to uint8 RGB exactly as before multi-band support; multi-band data
    (``raster`` given) decode to float32 with the file's values and NaN at nodata.

    Args:
        split_dir: e.g. ``<root>/train``.
        classes: class folder names, from ``list_classes``.
        image_size: side of the square output images.
        raster: how to read multi-band files; ``None`` reads every file as an 8-bit photo.
        max_pixels: the most pixels (width x height) a photo may decode (``data.max_pixels``); multi-band
            files use ``raster.max_pixels``.

    Attributes:
        classes: the class names, index = label.
        samples: ``(path, label)`` for every usable file.
        skipped: files with an image extension that cannot be used.

    Raises:
        UserError: a class folder is missing, no file in the split is readable, or no
            file has the band count the recipe names (the message names one and both counts).
    """

    def __init__(self, split_dir: Path, classes: list[str], image_size: int, raster: RasterSpec | None = None,
                 max_pixels: int = MAX_PIXELS):
        split_dir = Path(split_dir).expanduser()
        self.classes = list(classes)
        self.image_size = image_size
        self.raster = raster
        self.max_pixels = raster.max_pixels if raster is not None else max_pixels
        self.samples: list[tuple[Path, int]] = []
        self.skipped: list[Path] = []
        self.skip_reasons: dict[Path, str] = {}
        for path, label in scan_files(split_dir, self.classes):
            reason = _unusable(path, raster, self.max_pixels)
            if reason is None:
                self.samples.append((path, label))
            else:
                self.skipped.append(path)
                self.skip_reasons[path] = reason
        if not self.samples:
            _no_samples(split_dir, self.skip_reasons, raster)

    @property
    def dtype(self) -> str:
        """What ``__getitem__`` returns: uint8 photos or float32 multi-band values."""
        return "uint8" if self.raster is None else "float32"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        return self.try_decode(i)[0]

    def try_decode(self, i: int) -> tuple[tuple[Tensor, int] | None, str | None]:
        """``((image, label), None)``, or ``(None, why)`` for a file that turned out unusable at decode."""
        path, label = self.samples[i]
        try:
            if self.raster is None:
                return (load_image(path, self.image_size), label), None
            return (torch.from_numpy(RA.read(path, self.raster)), label), None
        except Image.DecompressionBombError as e:
            return None, f"{OverPixelLimit.kind} (Pillow's decompression-bomb guard: {RA.first_line(e)})"
        except ReadError as e:
            return None, str(e)
        except _DECODE_ERRORS as e:
            return None, f"not a readable image ({RA.first_line(e)})"


def scan_files(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` of every file with an image extension under the class folders, sorted.

    Raises:
        UserError: a class folder is missing.
    """
    found = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise UserError(f"{class_dir} is not a folder; {_layout_hint(split_dir)}")
        for path in sorted(class_dir.rglob("*")):
            # Dot-files with an image suffix are macOS resource forks (._x.jpg), not images.
            if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file():
                found.append((path, label))
    return found


def needs_raster(paths: list[Path], bands: int, nodata: float | None) -> bool:
    """Whether a dataset needs the multi-band readers rather than Pillow's 8-bit RGB.

    It does when the recipe names other than 3 bands or a nodata value, when a
    file is ``.npy`` or JPEG2000, or when a TIFF is not 8-bit with 3 bands.
    Otherwise (JPEG, PNG, 8-bit RGB TIFF) it stays on Pillow, so RGB folders
    load exactly as before. Without rasterio, TIFFs are judged by Pillow's header.
    """
    if bands != 3 or nodata is not None:
        return True
    if any(p.suffix.lower() in {".npy", ".jp2"} for p in paths):
        return True
    tiffs = [p for p in paths if p.suffix.lower() in (".tif", ".tiff")]
    for p in tiffs:
        if RA.has_rasterio():
            try:
                if not RA.is_photo_header(RA.header(p)):
                    return True
            except ReadError:
                continue  # broken either way: skipped later
        elif _pillow_mode(p) not in (None, "RGB"):
            return True
    return False


def _pillow_mode(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            return im.mode
    except _DECODE_ERRORS:
        return None


def _unusable(path: Path, raster: RasterSpec | None, max_pixels: int) -> str | None:
    """Why ``path`` cannot serve as a sample (None when it can), from its header alone."""
    if raster is None:
        if path.suffix.lower() in RASTER_EXTENSIONS - {".tif", ".tiff"}:
            return "a multi-band file in an 8-bit photo dataset"
        return _photo_problem(path, max_pixels)
    if path.suffix.lower() not in RASTER_EXTENSIONS:
        return _photo_problem(path, max_pixels)
    try:
        h = RA.header(path)
        if h.bands != raster.bands:
            named = f": {', '.join(raster.names)}" if raster.names else ""
            return f"{h.bands} bands but data.bands names {raster.bands}{named}"
        RA.check_pixels(path, h, raster)
    except ReadError as e:
        return str(e)
    return None


def _photo_problem(path: Path, max_pixels: int) -> str | None:
    """Why a file Pillow reads cannot serve: unreadable, or more pixels than ``max_pixels`` (Pillow decodes
    whole images; its own decompression-bomb guard refuses twice ``Image.MAX_IMAGE_PIXELS`` whatever the limit)."""
    try:
        with Image.open(path) as im:  # reads the header only; pixels are decoded lazily
            w, h = im.size
    except Image.DecompressionBombError as e:
        return f"{OverPixelLimit.kind} (Pillow's decompression-bomb guard: {RA.first_line(e)})"
    except _DECODE_ERRORS:
        return "not a readable image"
    if w * h > max_pixels:
        return f"{OverPixelLimit.kind} ({w}x{h}: {w * h:,} pixels to decode read whole; the limit is {max_pixels:,})"
    return None


# How skip reasons are grouped in the one-line summary: the kinds a user acts on differently.
_KINDS = (OverPixelLimit.kind, AllNodata.kind, "with another band count", "unreadable")


def skip_kind(reason: str) -> str:
    """The group of a skip reason: over the pixel limit, all nodata, another band count, or unreadable."""
    if reason.startswith(OverPixelLimit.kind):
        return OverPixelLimit.kind
    if reason.startswith(AllNodata.kind):
        return AllNodata.kind
    if " bands but data.bands names " in reason:
        return "with another band count"
    return "unreadable"


def skip_summary(skipped: list[Path], reasons: dict[Path, str], max_pixels: int | None = None) -> str:
    """``skipped 2 files: 1 over the pixel limit (data.max_pixels 178,956,970), 1 all nodata``."""
    counts = dict.fromkeys(_KINDS, 0)
    for p in skipped:
        counts[skip_kind(reasons.get(p, ""))] += 1
    parts = [f"{n} {kind}" + (f" (data.max_pixels {max_pixels:,})" if kind == OverPixelLimit.kind and max_pixels
                              else "") for kind, n in counts.items() if n]
    return f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}: {', '.join(parts)}"


def skip_record(skipped: list[Path], reasons: dict[Path, str]) -> dict:
    """What ``skipped.json`` holds: the count per kind and every file with its reason."""
    files = {str(p): reasons.get(p, "unreadable") for p in skipped}
    kinds: dict[str, int] = {}
    for r in files.values():
        kinds[skip_kind(r)] = kinds.get(skip_kind(r), 0) + 1
    return {"skipped": len(files), "kinds": kinds, "files": files}


def _no_samples(split_dir: Path, reasons: dict[Path, str], raster: RasterSpec | None) -> None:
    """The one-line error for a split without one usable file."""
    counted = [(p, r) for p, r in reasons.items() if " bands but data.bands names " in r]
    if counted:
        path, reason = counted[0]
        raise UserError(f"{path} has {reason} (so do all {len(counted)} such files in {split_dir}); "
                        f"set data.bands to the files' bands, in file order")
    extra = f" ({len(reasons)} files could not be read, e.g. {next(iter(reasons))}: " \
            f"{next(iter(reasons.values()))})" if reasons else ""
    raise UserError(
        f"{split_dir} has no readable images{extra}; {_layout_hint(split_dir)} "
        f"with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
    )


def load_image(path: Path, image_size: int) -> Tensor:
    """Decode an image file into a uint8 ``[3, image_size, image_size]`` tensor.

    The EXIF orientation is applied first, so a phone photo comes out the way
    a viewer shows it. Any Pillow mode becomes RGB (see ``to_rgb``); the shorter side is resized
    to ``image_size`` with antialiased bilinear filtering and the centre is
    cropped to a square.

    Raises:
        OSError, ValueError, SyntaxError, EOFError: the file is not a decodable image
            (Pillow's own errors, e.g. ``OSError`` for a truncated file).
    """
    with Image.open(path) as im:
        if im.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the image is much
            # bigger than needed: several times faster, and the result is
            # still at least image_size on the shorter side.
            im.draft(im.mode, (image_size, image_size))
        # Phones store photos sideways and say how to turn them in the EXIF Orientation tag:
        # the image a viewer shows is the one to classify. (Read from the header: no copy without it.)
        if im.getexif().get(ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        rgb = to_rgb(im)
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # Resizing only the centre square is the same as resize-shorter-side then
    # centre-crop, minus the work on pixels the crop would throw away.
    # Pillow's resize filters antialias when shrinking.
    square = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
