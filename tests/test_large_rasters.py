"""Rasters larger than memory (issue 28): decimated reads, the pixel limit, all-nodata files, the cache's progress.

Every file is written by rasterio (or NumPy, Pillow). The bomb is the one of the issue: a 60000 x 60000 4-band
uint16 GeoTIFF, deflate, tiled, a few hundred KB on disk because all tiles but one are empty (sparse_ok); it
would decode to 27 GiB. Tests that read it run in a subprocess under an address-space limit (RLIMIT_AS), so a
full-resolution read fails there at once instead of taking the machine's memory. The end-to-end training and
predict on a folder holding it is marked slow.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from edgecnn.config.schema import DataConfig
from edgecnn.core.contracts import MAX_PIXELS
from edgecnn.data import build_datasets, file_mask
from edgecnn.data import raster as RA
from edgecnn.data.cache import CachedFolder
from edgecnn.data.folder import ImageFolder, skip_summary
from edgecnn.data.synth import write_synth
from edgecnn.errors import UserError

from conftest import ROOT, cli

rasterio = pytest.importorskip("rasterio")
from rasterio.enums import Resampling  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rasterio.windows import Window  # noqa: E402

BANDS = ["R", "G", "B", "NIR"]
GiB = 1 << 30


def geotiff(path: Path, values: np.ndarray, nodata=None, layout: str = "tiled", overviews=(), mask=None) -> Path:
    """A real GeoTIFF: deflate, tiled (16 x 16 blocks) or striped (GDAL's default strips), optional overviews
    (average) and an internal mask band."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = values.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": str(values.dtype),
               "compress": "deflate", "nodata": nodata, "crs": "EPSG:32633",
               "transform": from_origin(300000, 5000000, 10, 10)}
    if layout == "tiled":
        profile |= {"tiled": True, "blockxsize": 16, "blockysize": 16}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
        if mask is not None:
            dst.write_mask(mask)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.average)
    return path


def write_bomb(path: Path) -> Path:
    """The issue's bomb: 60000 x 60000 x 4 uint16, tiled deflate, one 512 x 512 tile of data, the rest empty."""
    profile = {"driver": "GTiff", "width": 60000, "height": 60000, "count": 4, "dtype": "uint16",
               "compress": "deflate", "tiled": True, "blockxsize": 512, "blockysize": 512, "nodata": 0,
               "sparse_ok": True, "BIGTIFF": "IF_SAFER", "crs": "EPSG:32633",
               "transform": from_origin(300000, 5000000, 10, 10)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((4, 512, 512), 1000, np.uint16), window=Window(30000, 30000, 512, 512))
    return path


def area_mean(a: np.ndarray, size: int) -> np.ndarray:
    """The reference: each output pixel the mean of the non-NaN pixels of its area (torch's "area" windows),
    NaN when there is none; a plain loop, nothing shared with the reader."""
    c, side, _ = a.shape
    out = np.full((c, size, size), np.nan, dtype=np.float64)
    bounds = [(i * side // size, -(-(i + 1) * side // size)) for i in range(size)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an all-NaN window: NaN, as meant
        for i, (r0, r1) in enumerate(bounds):
            for j, (c0, c1) in enumerate(bounds):
                out[:, i, j] = np.nanmean(a[:, r0:r1, c0:c1].reshape(c, -1), axis=1)
    return out


def level_pixels(path: Path, level_index: int | None) -> np.ndarray:
    """The centre square of a file, or of one of its overviews, at that level's resolution, NaN at nodata."""
    kw = {} if level_index is None else {"overview_level": level_index}
    with rasterio.open(path, **kw) as src:
        m = src.read(masked=True, out_dtype="float64")
    a = np.ma.filled(m, np.nan)
    h, w = a.shape[1:]
    side = min(h, w)
    return a[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]


def run_limited(code: str, limit: int = 2 * GiB, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose address space is capped at ``limit`` bytes."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


# -- the reader: decimated, nodata left out of averages, every layout -------------------------------------------

FORMATS = [  # layout, overviews, dtype, nodata, with a mask band
    ("tiled", (2, 4, 8), "uint16", 0, False),
    ("striped", (), "uint16", 0, False),
    ("striped", (2, 4), "float32", None, False),  # nodata as NaN values, no tag
    ("tiled", (), "float32", -9999.0, False),
    ("tiled", (2, 4, 8), "uint16", None, True),  # GDAL's per-dataset mask instead of a nodata value
]


@pytest.mark.parametrize("layout,overviews,dtype,nodata,masked", FORMATS,
                         ids=["tiled-ovr-u16", "striped-u16", "striped-ovr-f32-nan", "tiled-f32-nodata",
                              "tiled-ovr-mask"])
def test_reads_the_nearest_level_and_averages_only_valid_pixels(tmp_path, monkeypatch, layout, overviews, dtype,
                                                                nodata, masked):
    """Odd sizes (203 x 187), a nodata corner and scattered nodata pixels: what the reader gives is the mean of
    the valid pixels of each output pixel's area, over the level it reads (the coarsest overview still finer
    than the output), in strips of whole blocks (forced small here, so windows straddle strips)."""
    rng = np.random.default_rng(7)
    v = rng.integers(100, 5000, (4, 187, 203)).astype(dtype)
    bad = np.zeros((187, 203), bool)
    bad[:40, :60] = True  # a nodata corner: whole output pixels of nodata
    bad[rng.random((187, 203)) < 0.1] = True  # scattered: must not be averaged in as zeros
    mask = None
    if masked:
        mask = np.where(bad, 0, 255).astype(np.uint8)
    elif nodata is None:
        v[:, bad] = np.nan
    else:
        v[:, bad] = nodata
    path = geotiff(tmp_path / "x.tif", v, nodata=nodata, layout=layout, overviews=overviews, mask=mask)
    monkeypatch.setattr(RA, "_STRIP_BYTES", 4 * 187 * 4 * 20)  # about 20 rows a strip
    spec = RA.RasterSpec(4, 16)
    h = RA.header(path)
    level = RA.read_level(path, h, spec)
    assert level == (8 if 8 in overviews else 4 if overviews else 1)  # 187 / 16 = 11.7: the 8x level when there
    got = RA.read(path, spec)
    ref = area_mean(level_pixels(path, overviews.index(level) if level > 1 else None), 16)
    assert got.shape == (4, 16, 16) and got.dtype == np.float32
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got[~np.isnan(got)], ref[~np.isnan(ref)], rtol=1e-5)
    assert np.isnan(got[:, 0, 0]).all()  # the corner's first output pixel: nothing valid, so nodata
    # Nodata never pulls an average down: every output pixel lies within the valid values' range.
    assert np.nanmin(got) >= 100 - 1e-3 if level == 1 else np.nanmin(got) > 0


def test_partly_nodata_is_not_averaged_as_zero_and_a_lost_band_is_found(tmp_path):
    v = np.full((4, 8, 8), 100, np.uint16)
    v[:, :4, :4] = 0  # top-left window all nodata
    v[:, 4:, :4][:, :3] = 0  # bottom-left window 3/4 nodata
    v[3] = 0  # NIR lost in this file
    a = RA.read(geotiff(tmp_path / "x.tif", v, nodata=0), RA.RasterSpec(4, 2))
    assert np.isnan(a[:3, 0, 0]).all() and (a[:3, 1, 0] == 100).all() and (a[:3, :, 1] == 100).all()
    assert np.isnan(a[3]).all()
    assert file_mask(torch.from_numpy(a)[None]).tolist() == [[1, 1, 1, 0]]


def test_without_nodata_it_is_torchs_area_resize(tmp_path):
    """The strip reader on a file without nodata: interpolate(mode="area") of the centre square, as before."""
    v = np.random.default_rng(3).random((3, 50, 77)).astype(np.float32)
    np.save(tmp_path / "x.npy", v)
    got = RA.read(tmp_path / "x.npy", RA.RasterSpec(3, 9))
    ref = F.interpolate(torch.from_numpy(v[:, :, 13:63].copy())[None], size=(9, 9), mode="area")[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_all_nodata_files_of_every_reader_are_all_nodata(tmp_path):
    spec = RA.RasterSpec(4, 8, nodata=7)
    files = [geotiff(tmp_path / "zero.tif", np.zeros((4, 20, 30), np.uint16), nodata=0, overviews=(2,)),
             geotiff(tmp_path / "nan.tif", np.full((4, 9, 9), np.nan, np.float32), layout="striped")]
    np.save(tmp_path / "sevens.npy", np.full((4, 12, 12), 7, np.int16))  # nodata by the recipe's data.nodata
    for path in [*files, tmp_path / "sevens.npy"]:
        with pytest.raises(RA.AllNodata, match="^all nodata"):
            RA.read(path, spec)


# -- the pixel limit -----------------------------------------------------------------------------------------------

def test_the_pixel_limit_counts_the_level_read(tmp_path):
    """A file over the limit at full resolution passes when an overview brings what is decoded under it; a .npy
    or a GeoTIFF whose nodata only the recipe knows (its overviews averaged it in) is counted whole."""
    v = np.random.default_rng(0).integers(1, 1000, (4, 256, 320)).astype(np.uint16)
    with_ovr = geotiff(tmp_path / "o.tif", v, nodata=0, overviews=(2, 4, 8))
    plain = geotiff(tmp_path / "p.tif", v, nodata=0)
    spec = RA.RasterSpec(4, 16, max_pixels=40 * 32)  # 1/8 level: 40 x 32 = 1280 pixels
    assert RA.decode_pixels(with_ovr, RA.header(with_ovr), spec) == 1280
    assert RA.read(with_ovr, spec).shape == (4, 16, 16)
    for path, s in ((plain, spec), (with_ovr, RA.RasterSpec(4, 16, nodata=5, max_pixels=1280))):
        with pytest.raises(RA.OverPixelLimit, match=r"^over the pixel limit \(320x256: 81,920 pixels"):
            RA.read(path, s)
    np.save(tmp_path / "big.npy", np.zeros((4, 50, 50), np.float32))
    with pytest.raises(RA.OverPixelLimit, match="2,500 pixels to decode read whole"):
        RA.read(tmp_path / "big.npy", RA.RasterSpec(4, 16, max_pixels=2499))


def test_photos_over_the_limit_are_skipped_with_pillows_guard_named(tmp_path):
    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(d / "small.png")
    Image.new("RGB", (300, 200)).save(d / "big.png")
    ds = ImageFolder(tmp_path / "train", ["a"], 16, None, max_pixels=10_000)
    assert [p.name for p, _ in ds.samples] == ["small.png"]
    assert ds.skip_reasons[d / "big.png"].startswith("over the pixel limit (300x200: 60,000 pixels")
    # Pillow's own guard (twice Image.MAX_IMAGE_PIXELS) says so, whatever data.max_pixels is.
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 1000
        ds = ImageFolder(tmp_path / "train", ["a"], 16, None, max_pixels=MAX_PIXELS)
    finally:
        Image.MAX_IMAGE_PIXELS = old
    assert ds.skip_reasons[d / "big.png"].startswith("over the pixel limit (Pillow's decompression-bomb guard:")


def test_the_bomb_is_refused_from_its_header_under_a_2_gib_address_space(tmp_path):
    """Scan and read both refuse the 60000^2 file at once, from its header; a full read would need 27 GiB."""
    bomb = write_bomb(tmp_path / "train" / "a" / "bomb.tif")
    assert bomb.stat().st_size < 1_000_000
    proc = run_limited(f"""
        import time
        from pathlib import Path
        from edgecnn.data import raster as RA
        from edgecnn.data.folder import ImageFolder
        t = time.perf_counter()
        try:
            ImageFolder(Path({str(tmp_path / 'train')!r}), ["a"], 64, RA.RasterSpec(4, 64))
        except Exception as e:
            print(type(e).__name__, str(e))
        try:
            RA.read(Path({str(bomb)!r}), RA.RasterSpec(4, 64))
        except RA.OverPixelLimit as e:
            print("read:", type(e).__name__, round(time.perf_counter() - t, 2))
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    # The folder's only file is over the limit: the split has no usable file, said in one line with the reason.
    assert lines[0].startswith("UserError") and "over the pixel limit (60000x60000: 3,600,000,000 pixels" in lines[0]
    assert lines[1].startswith("read: OverPixelLimit") and float(lines[1].split()[-1]) < 10


def test_a_raster_larger_than_the_address_space_reads_in_strips(tmp_path):
    """6144 x 6144 x 4 float32 is 576 MiB decoded; the interpreter with torch and rasterio already maps 700 MB, so
    under a 1 GiB address space no full read fits. The reader still gives the 32 px image, its nodata corner
    left out of the averages."""
    path = tmp_path / "big.tif"
    profile = {"driver": "GTiff", "width": 6144, "height": 6144, "count": 4, "dtype": "float32",
               "compress": "deflate", "tiled": True, "blockxsize": 512, "blockysize": 512, "nodata": -1.0,
               "sparse_ok": True}
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, 6144, 1024):  # written in strips: this process never holds the image either
            strip = np.full((4, 1024, 6144), 2.0, np.float32)
            if top == 0:
                strip[:, :192, :192] = -1.0
                strip[:, 192:384, :96] = -1.0  # half of the next output pixel down
            dst.write(strip, window=Window(0, top, 6144, 1024))
    proc = run_limited(f"""
        import numpy as np
        from edgecnn.data import raster as RA
        a = RA.read({str(path)!r}, RA.RasterSpec(4, 32))
        print(a.shape, bool(np.isnan(a[:, 0, 0]).all()), float(a[0, 1, 0]), float(np.nanmin(a)), float(np.nanmax(a)))
    """, limit=GiB, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["(4,", "32,", "32)", "True", "2.0", "2.0", "2.0"]


# -- folders, the cache and its progress ---------------------------------------------------------------------------

@pytest.fixture
def bomb_root(tmp_path) -> Path:
    """A small 3-class GeoTIFF folder (write_synth) plus, in train, the bomb and an all-nodata file."""
    root = tmp_path / "data"
    write_synth(root, 3, 4, 2, 16, 0, "tiff", 4)
    cls = sorted((root / "train").iterdir())[0]
    write_bomb(cls / "bomb.tif")
    geotiff(cls / "empty.tif", np.zeros((4, 40, 40), np.uint16), nodata=0)
    return root


def test_training_split_skips_and_counts_the_bomb_and_the_all_nodata_file(bomb_root, tmp_path, capfd):
    cfg = DataConfig(source="folder", root=bomb_root, image_size=16, bands=BANDS, cache_dir=tmp_path / "c")
    train = build_datasets(cfg, 0, 4)[0]
    assert isinstance(train, CachedFolder)
    kinds = {p.name: r.split(" (")[0] for p, r in train.skip_reasons.items()}
    assert kinds == {"bomb.tif": "over the pixel limit", "empty.tif": "all nodata"}
    assert skip_summary(train.skipped, train.skip_reasons, cfg.max_pixels) == \
        "skipped 2 files: 1 over the pixel limit (data.max_pixels 178,956,970), 1 all nodata"
    assert int(train.valid.sum()) == 12  # the 12 synth tiles; the all-nodata file's row is invalid
    # The cache's manifest records the decode-time skip: a second run knows it without decoding.
    manifest = json.loads((train.folder / "skipped.json").read_text())
    assert [Path(p).name for p in manifest["files"]] == ["empty.tif"]
    again = build_datasets(cfg, 0, 4)[0]
    assert again.folder == train.folder and set(again.skip_reasons) == set(train.skip_reasons)
    assert "decoding" not in capfd.readouterr().err  # a build of a second is silent in a log


class _Files(torch.utils.data.Dataset):
    """Three 2x2 photos that take ``pause`` seconds each to decode (what the cache's build pass reads)."""

    raster, image_size, dtype = None, 2, np.uint8

    def __init__(self, pause: float):
        self.pause = pause

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        import time

        time.sleep(self.pause)
        return torch.zeros(3, 2, 2, dtype=torch.uint8), 0


def test_cache_progress_is_plain_lines_on_stderr_when_not_a_terminal(capfd, monkeypatch, tmp_path):
    """The build's progress is core.progress's line: files done, files per second, time left; stderr only."""
    from edgecnn.core import progress as P
    from edgecnn.data.cache import _fill

    monkeypatch.setattr(P, "EVERY_S", 0.1)
    _fill(_Files(0.15), tmp_path, 0, "decoding train into the cache")
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("decoding train into the cache: ") for line in lines)
    assert all(" files/s" in line for line in lines[1:])  # the first may come before the first file is done
    assert any(" left (" in line for line in lines)  # the time left, while files remain
    # It ends on the total, once: a closing line where the last periodic one showed less, never a repeat.
    assert lines[-1].startswith("decoding train into the cache: 3/3 files, ")
    assert sum("3/3 files" in line for line in lines) == 1
    monkeypatch.setattr(P, "EVERY_S", 5.0)
    _fill(_Files(0.0), tmp_path, 0, "quiet")  # quicker than the period: nothing at all
    assert capfd.readouterr() == ("", "")


def test_predict_refuses_the_bomb_and_the_all_nodata_file_in_one_line(bomb_root):
    """predict's decoding step (the artifact's runtime is not needed to refuse a file) under a raster sidecar."""
    from edgecnn.export.predict import _inputs

    sidecar = {"bands": BANDS, "input_bands": BANDS, "image_size": 16, "inputs": [{"name": "image"}, {"name": "mask"}],
               "normalization": {"reader": "raster", "mean": [0.0] * 4, "std": [1.0] * 4, "nodata": None,
                                 "max_pixels": MAX_PIXELS}}
    cls = sorted((bomb_root / "train").iterdir())[0]
    with pytest.raises(UserError, match=r"bomb.tif: over the pixel limit .*; add overviews \(gdaladdo") as e:
        _inputs(cls / "bomb.tif", sidecar, Path("a.onnx"))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"empty.tif: all nodata .*nothing to classify") as e:
        _inputs(cls / "empty.tif", sidecar, Path("a.onnx"))
    assert "\n" not in str(e.value)
    x, mask = _inputs(cls / "00.tif", sidecar, Path("a.onnx"))
    assert x.shape == (1, 4, 16, 16)


def test_predict_refuses_a_photo_over_the_runs_pixel_limit(tmp_path):
    from edgecnn.export.predict import _inputs

    Image.new("RGB", (300, 200), (10, 20, 30)).save(tmp_path / "big.png")
    sidecar = {"bands": ["R", "G", "B"], "input_bands": ["R", "G", "B"], "image_size": 16,
               "inputs": [{"name": "image"}], "normalization": {"reader": "photo", "mean": [0.5] * 3,
                                                                "std": [0.25] * 3, "max_pixels": 50_000}}
    with pytest.raises(UserError, match=r"big.png: over the pixel limit \(300x200: 60,000 pixels; the run's "
                                        r"data.max_pixels is 50,000\); pass a smaller image") as e:
        _inputs(tmp_path / "big.png", sidecar, Path("a.onnx"))
    assert "\n" not in str(e.value)
    sidecar["normalization"]["max_pixels"] = 60_000
    assert _inputs(tmp_path / "big.png", sidecar, Path("a.onnx"))[0].shape == (1, 3, 16, 16)


@pytest.mark.slow
def test_train_on_the_bomb_folder_stays_under_2_gb_then_predict_exits_2(bomb_root, tmp_path):
    """The issue's done-criterion: `edgecnn train` finishes with both files skipped and counted, its peak RSS
    under 2 GB (a fresh process measured by its parent); `predict` on each is one line and exit 2."""
    out = tmp_path / "run"
    args = ["train", "recipes/quickstart_multispectral.yaml", f"data.root={bomb_root}", "data.image_size=16",
            "model.layers=[1,1,1,1]", "train.epochs=1", "train.batch_size=8", "train.threads=1", "--out", str(out)]
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
               "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "edgecnn", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 2 files: 1 over the pixel limit (data.max_pixels 178,956,970), 1 all nodata" in proc.stdout
    assert "12 train / 6 val images" in proc.stdout
    rss = int(proc.stdout.split("maxrss_kb")[1].split()[0]) * 1024
    assert rss < 2e9, rss
    record = json.loads((out / "skipped.json").read_text())
    assert record["kinds"] == {"over the pixel limit": 1, "all nodata": 1}
    cli("export", str(out), "--target", "onnx", check=True)
    artifact = next((out / "export").glob("*.onnx"))
    cls = sorted((bomb_root / "train").iterdir())[0]
    for name, text in (("bomb.tif", "over the pixel limit"), ("empty.tif", "all nodata")):
        got = cli("predict", str(artifact), str(cls / name))
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert len(got.stderr.strip().splitlines()) == 1 and text in got.stderr
    assert cli("predict", str(artifact), str(cls / "00.tif")).returncode == 0
