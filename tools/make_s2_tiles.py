#!/usr/bin/env python3
"""Write a folder of Sentinel-2-sized GeoTIFF tiles for trying large rasters (issue 28); not part of the tests.

Each file is 10980 x 10980 (a Sentinel-2 L2A tile at 10 m), 4 bands (R, G, B, NIR) uint16 reflectance,
deflate with the horizontal predictor, tiled 512 x 512, nodata 0, UTM 33N; optionally with average
overviews (2, 4, ..., 64). The layout is the one `edgecnn train` reads: OUT/{train,val}/<class>/<n>.tif.

The classes differ at the scale a 64 px training image still shows (features of 1000 px and more), in
pattern and in their band signature, so that training on them means something:

- water: low reflectance, NIR lowest, slow swells;
- forest: NIR high, visible low, round blobs;
- fields: stripes at a random angle, the visible bands and NIR alternating;
- urban: a grid of blocks, bright in the visible bands.

Every file gets its own phase, angle and brightness, plus a little pixel noise (so deflate works for its
living, as on real data). Pixels are generated and written one strip of 512 rows at a time: memory stays
near 100 MB whatever --size is.

    python tools/make_s2_tiles.py --out /tmp/s2 --train-per-class 3 --val-per-class 1 [--overviews]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

CLASSES = ("fields", "forest", "urban", "water")
# Mean reflectance (x 10000) of R, G, B, NIR per class, and how far the pattern swings it.
SIGNATURE = {"fields": ((900, 1000, 700, 2600), (500, 300, 300, 1400)),
             "forest": ((350, 600, 300, 3500), (150, 150, 100, 900)),
             "urban": ((1700, 1600, 1500, 2200), (700, 700, 700, 500)),
             "water": ((300, 400, 600, 150), (80, 80, 120, 60))}


def pattern(name: str, y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The class's structure in -1..1 at pixel rows ``y`` and columns ``x`` (broadcast to a strip)."""
    if name == "fields":
        a = rng.uniform(0, math.pi)
        period = rng.uniform(1200, 2200)
        return np.sign(np.sin((x * math.cos(a) + y * math.sin(a)) * (2 * math.pi / period) + rng.uniform(0, 6)))
    if name == "forest":
        period = rng.uniform(1500, 2500)
        p1, p2 = rng.uniform(0, 6, 2)
        return np.sin(x * (2 * math.pi / period) + p1) * np.sin(y * (2 * math.pi / period) + p2)
    if name == "urban":
        period = rng.uniform(900, 1400)
        gx = (np.floor(x / period) + np.floor(y / period)) % 2
        return gx * 2.0 - 1.0
    period = rng.uniform(3000, 6000)  # water: long, slow swells
    return np.sin((x + 0.5 * y) * (2 * math.pi / period) + rng.uniform(0, 6)) * 0.5


def write_tile(path: Path, name: str, size: int, seed: int, overviews: bool) -> None:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean, swing = (np.asarray(v, dtype=np.float32)[:, None, None] for v in SIGNATURE[name])
    gain = np.float32(rng.uniform(0.85, 1.15))
    # One draw of the pattern's parameters per file: pattern() draws them from a copy, the same for every strip.
    params = rng.bit_generator.state
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 4, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32633", "transform": from_origin(300000, 5000040, 10, 10), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": 2, "zlevel": 1, "BIGTIFF": "IF_SAFER"}
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        x = np.arange(size, dtype=np.float32)[None, :]
        for top in range(0, size, 512):
            rows = min(512, size - top)
            y = np.arange(top, top + rows, dtype=np.float32)[:, None]
            strip_rng = np.random.default_rng()
            strip_rng.bit_generator.state = params
            p = pattern(name, y, x, strip_rng).astype(np.float32)
            values = (mean + swing * p[None]) * gain
            noise = rng.integers(0, 4, size=(4, rows, size), dtype=np.uint16)
            dst.write((np.clip(values, 1, 60000).astype(np.uint16) + noise), window=Window(0, top, size, rows))
        if overviews:
            dst.build_overviews([2, 4, 8, 16, 32, 64], Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")
    tmp.rename(path)  # a file is there whole or not at all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--classes", type=int, default=4, help=f"first N of {', '.join(CLASSES)}")
    ap.add_argument("--train-per-class", type=int, default=3)
    ap.add_argument("--val-per-class", type=int, default=1)
    ap.add_argument("--size", type=int, default=10980, help="side in pixels (10980: a Sentinel-2 tile)")
    ap.add_argument("--overviews", action="store_true", help="add average overviews 2..64 (as COGs have)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = 0
    for split, count in (("train", args.train_per_class), ("val", args.val_per_class)):
        for c, name in enumerate(CLASSES[: args.classes]):
            for i in range(count):
                path = args.out / split / name / f"{i}.tif"
                if path.exists():
                    continue
                t0 = time.perf_counter()
                write_tile(path, name, args.size, args.seed * 10007 + (split == "val") * 1000 + c * 100 + i, args.overviews)
                n += 1
                print(f"{path}: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"wrote {n} tiles under {args.out}")


if __name__ == "__main__":
    main()
