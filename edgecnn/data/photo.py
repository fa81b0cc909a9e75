"""Pillow helpers shared by both readers: any Pillow mode to 8-bit RGB, and what Pillow raises on a bad file.

Its own module so that ``folder.py`` (the photo reader, which also picks the
multi-band reader) and ``raster.py`` (which reads a stray JPEG/PNG in a
multi-band dataset) both import it and neither imports the other's module
back: the two used to import each other.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# What Pillow raises on a broken or hostile file (DecompressionBombError: over Pillow's own pixel limit).
# Anything else is a bug and should surface.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert an image of any Pillow mode to 8-bit RGB.

    Transparent images (RGBA, LA, palette with transparency) are composited
    over white, as a viewer shows them, rather than keeping whatever colour
    hides under transparent pixels. 16-bit and 32-bit greyscale are scaled
    to 0..255 (see ``_wide_to_8bit``).

    Raises:
        OSError: the pixel data is truncated or corrupt.
    """
    im.load()  # decode now, while the caller's file is still open
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # the palette alone loses which index is transparent
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_wide_to_8bit(im), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    # L, 1, P, CMYK (Pillow undoes Adobe's inverted CMYK JPEGs), YCbCr, LAB, HSV.
    return im.convert("RGB")


def _wide_to_8bit(im: Image.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float greyscale image to uint8.

    Fixed scales keep brightness comparable between images where the range
    is known: 16-bit modes divide by 257 (65535 -> 255). For ``I`` and ``F``
    the values decide: data already in 0..255 (or 0..1 for floats) keeps its
    scale, data in 0..65535 is treated as 16-bit, anything else is stretched
    from its own minimum to maximum.
    """
    a = np.nan_to_num(np.asarray(im).astype(np.float64))
    if im.mode.startswith("I;16"):
        scaled = a / 257.0
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode == "F" and 0.0 <= lo and hi <= 1.0:
            scaled = a * 255.0
        elif 0.0 <= lo and hi <= 255.0:
            scaled = a
        elif 0.0 <= lo and hi <= 65535.0:
            scaled = a / 257.0
        else:
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
