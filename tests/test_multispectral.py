"""Multi-band files (issue 19): readers, nodata and lost bands, per-band statistics, the decoded cache, bad input.

Every file is written by the real library (rasterio for GeoTIFFs, NumPy for .npy, Pillow for photos);
images are tiny so the module runs in seconds. The one end-to-end test (`edgecnn run` on the
multispectral quickstart, then predict) is marked slow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgecnn.config.schema import DataConfig
from edgecnn.data import build_datasets, combine_masks, file_mask, load_image
from edgecnn.data.bands import all_subsets, subset_name
from edgecnn.data import raster as RA
from edgecnn.data.cache import CachedFolder
from edgecnn.data.folder import ImageFolder, needs_raster
from edgecnn.data.stats import band_stats
from edgecnn.data.synth import write_geotiff, write_synth
from edgecnn.errors import UserError
from edgecnn.train.loop import prepare

from conftest import TINY, cli

rasterio = pytest.importorskip("rasterio")
BANDS = ["R", "G", "B", "NIR"]


def tiff(path: Path, values: np.ndarray, nodata=0, compress="deflate") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_geotiff(path, values, nodata, compress)
    return path


def folder_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(source="folder", root=root, image_size=kw.pop("image_size", 8), bands=kw.pop("bands", BANDS),
                      **kw)


@pytest.fixture
def geo_root(tmp_path) -> Path:
    """train/val with two classes of 4-band uint16 GeoTIFFs (deflate, nodata 0), one with NIR lost.
    Per test (a few milliseconds): a module-wide fixture would put these tests in the slow tier."""
    root = tmp_path / "geo"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(("a", "b")):
            for i in range(3):
                v = rng.integers(100 + 1000 * c, 1100 + 1000 * c, (4, 11, 13), dtype=np.uint16)
                if i == 0 and c == 1:
                    v[3] = 0  # NIR lost in this file
                tiff(root / split / name / f"{i}.tif", v)
    return root


def test_rgb_photo_folder_gives_the_same_tensors_as_before(tmp_path):
    """JPEG and PNG folders stay on Pillow: bit for bit the tensors the photo loader gave before multi-band support."""
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for fmt in ("jpg", "png"):
            d = tmp_path / split / fmt
            d.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(d / f"x.{fmt}")
    files = sorted((tmp_path / "train").rglob("x.*"))
    assert not needs_raster(files, 3, None)
    for cache in ("disk", "off"):
        train = build_datasets(folder_cfg(tmp_path, bands=["R", "G", "B"], image_size=16, cache=cache), 0, 3)[0]
        assert isinstance(train, CachedFolder) == (cache == "disk")
        for i, (path, _) in enumerate(train.samples):
            got = train[i][0]
            # The loader as it was: Pillow's bilinear resize of the centre square, uint8 [3, S, S].
            with Image.open(path) as im:
                im.draft(im.mode, (16, 16))
                rgb = im.convert("RGB")
            w, h = rgb.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            ref = np.asarray(rgb.resize((16, 16), Image.Resampling.BILINEAR, box=box)).transpose(2, 0, 1)
            assert got.dtype == torch.uint8 and torch.equal(got, torch.from_numpy(ref.copy()))
            assert torch.equal(got, load_image(path, 16))


def test_geotiff_keeps_values_and_marks_nodata(tmp_path):
    v = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8) + 500
    v[2, 0, 0] = 7
    a = RA.read(tiff(tmp_path / "a.tif", v, nodata=7, compress="lzw"), RA.RasterSpec(4, 8))
    assert a.dtype == np.float32 and np.isnan(a[2, 0, 0]) and np.isnan(a).sum() == 1
    assert a[0, 1, 1] == v[0, 1, 1]  # no /255: a uint16 reflectance keeps its value
    # float32 with NaN, odd size: centre square, area-averaged in float (never through an 8-bit PIL mode)
    f = np.full((4, 9, 13), 0.25, dtype=np.float32)
    f[1] = np.nan
    b = RA.read(tiff(tmp_path / "f.tif", f, nodata=None), RA.RasterSpec(4, 3))
    assert b.shape == (4, 3, 3) and np.isnan(b[1]).all() and np.allclose(b[[0, 2, 3]], 0.25)
    # the recipe's data.nodata on top of the file's
    c = RA.read(tmp_path / "a.tif", RA.RasterSpec(4, 8, nodata=500.0))
    assert np.isnan(c[0, 0, 0])


def test_npy_channels_first_or_last(tmp_path):
    chw = np.random.default_rng(0).random((4, 6, 6)).astype(np.float32)
    np.save(tmp_path / "chw.npy", chw)
    np.save(tmp_path / "hwc.npy", chw.transpose(1, 2, 0))
    spec = RA.RasterSpec(4, 6)
    assert np.array_equal(RA.read(tmp_path / "chw.npy", spec), chw)
    assert np.array_equal(RA.read(tmp_path / "hwc.npy", spec), chw)
    np.save(tmp_path / "flat.npy", chw[0])
    with pytest.raises(RA.ReadError, match="shape"):
        RA.read(tmp_path / "flat.npy", spec)


def test_lost_band_is_masked_and_partly_nodata_becomes_the_band_mean():
    x = torch.full((2, 4, 4, 4), 10.0)
    x[0, 3] = float("nan")  # lost in image 0
    x[1, 0, 0, 0] = float("nan")  # one nodata pixel in image 1: the band stays present
    own = file_mask(x)
    assert own.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    out = prepare(x, torch.device("cpu"), [10.0, 0, 0, 0], [2.0, 1, 1, 1])
    assert not torch.isnan(out).any() and (out[0, 3] == 0).all() and out[1, 0, 0, 0] == 0
    # A sampled subset never brings back a band the file lost.
    assert combine_masks(torch.tensor([1.0, 0, 1, 1]), own).tolist() == [[1, 0, 1, 0], [1, 0, 1, 1]]
    assert file_mask(torch.zeros(1, 3, 2, 2, dtype=torch.uint8)) is None


def test_folder_reads_geotiffs_with_cache_and_stats(geo_root):
    train, val, classes = build_datasets(folder_cfg(geo_root), 0, 4)
    assert classes == ["a", "b"] and isinstance(train, CachedFolder) and len(train) == 6
    x = train.__getitems__([0, 3]).images  # one slice of the cache: the values a fresh decode gives
    fresh = torch.from_numpy(RA.read(train.samples[3][0], train.raster))
    torch.testing.assert_close(x[1], fresh, rtol=0, atol=0, equal_nan=True)
    assert file_mask(x).tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    s = band_stats(train, BANDS)
    pixels = np.stack([RA.read(p, train.raster) for p, _ in train.samples])
    assert s.mean == pytest.approx(np.nanmean(pixels, axis=(0, 2, 3)).tolist(), rel=1e-5)
    assert s.std == pytest.approx(np.nanstd(pixels, axis=(0, 2, 3)).tolist(), rel=1e-5)
    assert s.lost_share[3] == pytest.approx(1 / 6, abs=1e-5) and s.lost_share[0] == 0


def test_cache_is_reused_then_rebuilt_when_a_file_changes(tmp_path, geo_root):
    cfg = folder_cfg(geo_root, cache_dir=tmp_path / "c")
    first = build_datasets(cfg, 0, 4)[0]
    stamp = (first.images_file).stat().st_mtime_ns
    again = build_datasets(cfg, 0, 4)[0]
    assert again.folder == first.folder and again.images_file.stat().st_mtime_ns == stamp
    # A half-built cache (a kill -9 mid-build) is a .tmp-* folder: never read.
    assert not list((tmp_path / "c").glob(".tmp-*"))
    f = geo_root / "train" / "a" / "1.tif"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert build_datasets(cfg, 0, 4)[0].folder != first.folder


def test_a_kill_mid_build_leaves_nothing_trusted(tmp_path, geo_root):
    cfg = folder_cfg(geo_root, cache_dir=tmp_path / "c")
    ds = build_datasets(folder_cfg(geo_root, cache="off"), 0, 4)[0]
    from edgecnn.data.cache import cache_key

    key = f"train-{cache_key(ds, 'train')}"
    stale = tmp_path / "c" / f".tmp-{key}-999"
    stale.mkdir(parents=True)
    (stale / "images.npy").write_bytes(b"half")
    built = build_datasets(cfg, 0, 4)[0]
    assert built.folder.name == key and not stale.exists()
    assert torch.equal(built[0][0], ds[0][0])


def test_unwritable_cache_dir_is_one_line(tmp_path, geo_root):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="data.cache_dir .*cannot write the decoded cache") as e:
        build_datasets(folder_cfg(geo_root, cache_dir=blocker / "sub"), 0, 4)
    assert "\n" not in str(e.value)


def test_bad_files_are_skipped_and_counted(tmp_path):
    good = np.full((4, 6, 6), 300, dtype=np.uint16)
    d = tmp_path / "train" / "a"
    tiff(d / "ok.tif", good)
    data = tiff(d / "trunc.tif", good, compress="none").read_bytes()
    (d / "trunc.tif").write_bytes(data[: len(data) // 2])
    (d / "junk.tif").write_bytes(b"II*\0garbage")
    tiff(d / "three.tif", good[:3])  # fewer bands than data.bands (a mixed folder)
    raw = tiff(d / "tag.tif", good, nodata=65535).read_bytes()  # a non-numeric GDAL_NODATA tag
    (d / "tag.tif").write_bytes(raw.replace(b"65535\0", b"abcde\0"))
    np.save(d / "rank.npy", np.zeros((6, 6), dtype=np.float32))
    ds = ImageFolder(tmp_path / "train", ["a"], 6, RA.RasterSpec(4, 6))
    assert [p.name for p, _ in ds.samples] in (["ok.tif"], ["ok.tif", "trunc.tif"])
    reasons = {p.name: r for p, r in ds.skip_reasons.items()}
    assert set(reasons) == {"junk.tif", "three.tif", "tag.tif", "rank.npy"} | ({"trunc.tif"} & set(reasons))
    assert "3 bands but data.bands names 4" in reasons["three.tif"] and "non-numeric" in reasons["tag.tif"]
    assert "shape" in reasons["rank.npy"]
    # A truncated file whose header survives fails at decode: None, which collate drops.
    if "trunc.tif" not in reasons:
        assert ds[[p.name for p, _ in ds.samples].index("trunc.tif")] is None


def test_no_file_with_the_recipes_band_count_names_file_and_counts(tmp_path):
    tiff(tmp_path / "train" / "a" / "x.tif", np.ones((3, 6, 6), dtype=np.uint16) * 9)
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match=r"x.tif has 3 bands but data.bands names 4: R, G, B, NIR") as e:
        build_datasets(folder_cfg(tmp_path), 0, 4)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"x.tif has 3 bands but data.bands names 10: B02, B03, B04, B05, B06"):
        build_datasets(folder_cfg(tmp_path, bands="sentinel2"), 0, 10)


def test_missing_rasterio_names_the_pip_command(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "rasterio", None)  # what an install without edgecnn[geo] imports
    with pytest.raises(UserError, match=r"pip install 'edgecnn\[geo\]'"):
        RA.header(tmp_path / "x.tif")


def test_synth_tiff_writes_lost_bands_the_reader_finds(tmp_path):
    counts = write_synth(tmp_path / "ms", 2, 5, 2, 8, 0, "tiff", 4)
    lost = json.loads((tmp_path / "ms" / "lost.json").read_text())
    assert counts["lost"] == len(lost) and counts["train"] == 10
    with rasterio.open(next((tmp_path / "ms" / "train").rglob("*.tif"))) as src:
        assert (src.count, src.dtypes[0], src.nodata, src.compression.value) == (4, "uint16", 0.0, "DEFLATE")
    spec = RA.RasterSpec(4, 8)
    for path in (tmp_path / "ms").rglob("*.tif"):
        own = file_mask(torch.from_numpy(RA.read(path, spec))[None])
        rel = path.relative_to(tmp_path / "ms").as_posix()
        expected = [1.0] * 4
        if rel in lost:
            expected[lost[rel]] = 0.0
        assert (own[0].tolist() if own is not None else [1.0] * 4) == expected, rel


def test_data_stats_cli_and_a_band_mismatch_exits_2(geo_root):
    ok = cli("data", "stats", "recipes/quickstart_multispectral.yaml", f"data.root={geo_root}", "data.cache=off")
    assert ok.returncode == 0, ok.stderr
    assert "NIR" in ok.stdout and "data.mean=[" in ok.stdout and "16.67%" in ok.stdout
    bad = cli("data", "stats", "recipes/quickstart_multispectral.yaml", f"data.root={geo_root}",
              "data.bands=[R,G,B,NIR,SWIR]", "data.cache=off")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "has 4 bands but data.bands names 5" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# -- the whole chain on GeoTIFFs (slow) -------------------------------------------------------------------

MS_TINY = [
    "data.image_size=32", "train.epochs=2", "train.batch_size=8", "train.threads=1",
    "pipeline.export=[{target: executorch}, {target: executorch, int8: ptq}, {target: openvino, int8: ptq}]",
    "pipeline.calib=8", "pipeline.bench.iters=4", "pipeline.bench.warmup=1", "pipeline.bench.rounds=2",
    "pipeline.bench.threads=1", "pipeline.bench.eager=false", "pipeline.bench.time_budget_s=null",
]


@pytest.fixture(scope="module")
def ms_chain(tmp_path_factory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("ms")
    write_synth(base / "data", 3, 8, 5, 16, 0, "tiff", 4)
    out = base / "run"
    proc = cli("run", "recipes/quickstart_multispectral.yaml", f"data.root={base / 'data'}", *MS_TINY,
               "--out", str(out), check=True)
    return out, base / "data", proc.stdout


@pytest.mark.slow
def test_multispectral_chain_and_predict_on_a_lost_band(ms_chain):
    """`edgecnn run` from GeoTIFFs: per-sample subsets, eval per subset and per file subset, mask-input
    exports with parity, a bench; then predict on a file with a lost band agrees with eval's top-1."""
    from edgecnn.models.registry import takes_mask
    from edgecnn.train import run as R
    from edgecnn.train.loop import forward, make_loader

    out, data, _ = ms_chain
    ev = json.loads((out / "eval.json").read_text())
    assert "R,G,B" in ev["subsets"] and ev["file_subsets"]  # artificial subsets, and the files' own
    stats = json.loads((out / "data_stats.json").read_text())
    assert len(stats["mean"]) == 4 and stats["mean"][0] > 100  # file values, not 0..1
    fp32 = out / "export" / "cnn_attn_dynconv_mask-executorch-fp32.pte"
    for name in (fp32.name, "cnn_attn_dynconv_mask-executorch-int8.pte", "cnn_attn_dynconv_mask-openvino-int8.xml"):
        side = json.loads((out / "export" / f"{name}.json").read_text())
        assert [i["name"] for i in side["inputs"]] == ["image", "mask"]
        assert side["normalization"]["reader"] == "raster" and side["normalization"]["mean"] == stats["mean"]
        assert side["parity"]["top1_agreement"] >= 0.9, name
        assert set(side["parity"]["per_subset"]) == {subset_name(s, BANDS) for s in all_subsets(BANDS)}, name
        assert side["parity"]["per_file_group"], name  # the files' own lost-band groups
    delegation = json.loads((out / "export" / "cnn_attn_dynconv_mask-executorch-int8.pte.json").read_text())
    assert delegation["delegation"]["ops_outside"] == {}  # the mask-input artifact runs inside XNNPACK
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert rows and all(r["error"] is None for r in rows)

    lost = json.loads((data / "lost.json").read_text())
    rel = next(p for p in sorted(lost) if p.startswith("val/"))
    recipe, model, classes, _ = R.load_trained(out)
    val = build_datasets(recipe.data, recipe.seed, 4)[1]
    i = [p.resolve() for p, _ in val.samples].index((data / rel).resolve())
    (x, _), = list(make_loader(val, [[i]], 0, torch.device("cpu")))
    own = file_mask(x)
    assert own is not None and own[0, lost[rel]] == 0
    with torch.no_grad():
        logits = forward(model.eval(), prepare(x, torch.device("cpu"), recipe.data.mean, recipe.data.std), own,
                         takes_mask(model))
    got = cli("predict", str(fp32), str(data / rel), "--json", check=True)
    assert json.loads(got.stdout)[0]["class"] == classes[int(logits.argmax(1))]


def test_bench_train_loader_rows(geo_root):
    from edgecnn.bench.training import bench_loader
    from edgecnn.config import load_recipe

    r = load_recipe("recipes/quickstart_multispectral.yaml", [f"data.root={geo_root}", "data.image_size=8",
                                                              "train.batch_size=4"])
    decode, cached = bench_loader(r, epochs=2)
    assert (decode["mode"], cached["mode"]) == ("loader_decode", "loader_cached")
    assert decode["images"] == 6 and cached["images_per_s"] > 0 and cached["dtype"] == "float32"
    assert not (geo_root / ".edgecnn-cache").exists()  # timed in a temporary cache, never the data's


def test_jpeg2000_reads_losslessly(tmp_path):
    from rasterio.transform import Affine

    v = (np.arange(4 * 12 * 12, dtype=np.uint16).reshape(4, 12, 12) % 3000) + 1
    profile = {"driver": "JP2OpenJPEG", "width": 12, "height": 12, "count": 4, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": Affine(10, 0, 0, 0, -10, 0), "QUALITY": 100, "REVERSIBLE": "YES"}
    with rasterio.open(tmp_path / "s2.jp2", "w", **profile) as dst:
        dst.write(v)
    assert np.array_equal(RA.read(tmp_path / "s2.jp2", RA.RasterSpec(4, 12)), v.astype(np.float32))
    assert needs_raster([tmp_path / "s2.jp2"], 3, None)


def test_cache_falls_back_to_the_user_cache_when_the_data_folder_cannot_hold_it(tmp_path, geo_root, monkeypatch,
                                                                                capfd):
    (geo_root / ".edgecnn-cache").write_text("a file where the cache folder would go")  # unwritable, even as root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    train = build_datasets(folder_cfg(geo_root), 0, 4)[0]
    assert isinstance(train, CachedFolder) and train.folder.parent == tmp_path / "xdg" / "edgecnn"
    note = capfd.readouterr().err.strip().splitlines()
    assert len(note) == 2 and all(line.startswith("note: decoded cache not written in") for line in note)


@pytest.mark.slow
def test_predict_mask_option_on_the_mask_input_artifact(ms_chain):
    """--mask marks more bands lost on a mask-input artifact; a wrong length, or an artifact with fixed
    bands, is one line and exit 2."""
    out, data, _ = ms_chain
    artifact = out / "export" / "cnn_attn_dynconv_mask-executorch-int8.pte"
    tile = next(iter(sorted((data / "val").rglob("*.tif"))))
    ok = cli("predict", str(artifact), str(tile), "--mask", "1,0,1,1", "--json", check=True)
    assert json.loads(ok.stdout)[0]["class"]
    for args, message in [(("--mask", "1,0,1"), "give 4 values of 0 or 1"),
                          (("--mask", "0,0,0,0"), "at least one band")]:
        proc = cli("predict", str(artifact), str(tile), *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
