"""The built-in data seen through a sensor (issue 29): material spectra, band integration, same scenes for
every sensor, and the files `edgecnn data synth --sensor` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgecnn.config.schema import DataConfig
from edgecnn.core.sensors import Band, resolve_bands
from edgecnn.data import build_datasets, file_mask
from edgecnn.data import raster as RA
from edgecnn.data import scenes as SC
from edgecnn.data import spectra
from edgecnn.data.synth import write_synth
from edgecnn.errors import UserError

from conftest import cli

rasterio = pytest.importorskip("rasterio")


def narrow(name: str, nm: float) -> Band:
    return Band(name, nm, 10.0)


def test_material_curves_have_the_features_that_tell_materials_apart():
    at = {m: dict(zip(["blue", "green", "red", "nir", "swir1", "swir2"],
                      spectra.band_table([narrow(b, nm) for b, nm in [("b", 490), ("g", 555), ("r", 670), ("n", 860),
                                                                        ("s1", 1610), ("s2", 2200)]],
                                         f()[None])[0]))
          for m, f in spectra.MATERIALS.items()}
    veg = at["vegetation"]
    assert veg["green"] > veg["blue"] and veg["green"] > veg["red"]  # the green bump between chlorophyll troughs
    assert veg["nir"] > 5 * veg["red"] and veg["nir"] > veg["swir1"] > veg["swir2"]  # red edge, SWIR steps
    red_edge = spectra.curves()[0][np.searchsorted(spectra.GRID, [680, 700, 720, 740, 760])]
    assert np.all(np.diff(red_edge) > 0.03)  # the climb happens between 700 and 750 nm
    assert spectra.vegetation()[spectra.GRID == 1450] < 0.5 * spectra.vegetation()[spectra.GRID == 1650]  # leaf water
    for w in ("water", "turbid_water"):
        assert at[w]["nir"] < 0.02 and at[w]["swir1"] < 0.01 < at[w]["green"]
    soil = at["soil"]
    assert soil["blue"] < soil["green"] < soil["red"] < soil["nir"] < soil["swir1"]  # a rising slope
    snow = at["snow"]
    assert min(snow["blue"], snow["green"], snow["red"]) > 0.9 and snow["swir1"] < 0.1
    assert at["dry_grass"]["red"] > 3 * veg["red"] and at["dry_grass"]["swir1"] > veg["swir1"]
    assert np.ptp(list(at["concrete"].values())) < 0.1  # flat
    assert (spectra.curves() > 0).all() and (spectra.curves() < 1).all()


def test_a_band_sees_the_curve_through_its_response():
    flat = np.full((1, len(spectra.GRID)), 0.3)
    assert spectra.band_table(resolve_bands("sentinel2"), flat) == pytest.approx(0.3)  # unit area
    # A wide band averages a feature away that a narrow one sees: the red trough of vegetation.
    veg = spectra.vegetation()[None]
    assert spectra.band_table([Band("wide", 670, 200)], veg)[0, 0] > 1.5 * spectra.band_table([narrow("r", 670)], veg)[0, 0]
    with pytest.raises(ValueError, match="outside the reflective range"):
        spectra.responses(resolve_bands("landsat8:B10"))
    with pytest.raises(ValueError, match="has no wavelength"):
        spectra.responses([Band("NIR")])


def test_more_classes_than_materials_are_distinct_mixtures():
    names, shares = SC.material_classes(150)
    assert len(set(names)) == 150 and np.allclose(shares.sum(axis=1), 1)
    assert len({tuple(np.round(r, 6)) for r in shares}) == 150
    assert names[:6] == ["000_vegetation", "001_water", "002_soil", "003_snow", "004_concrete", "005_dry_grass"]
    first, table = SC.material_classes(12)
    assert np.array_equal(table, shares[:12])  # the first N classes of a bigger set are the set of N


def test_one_seed_gives_every_sensor_the_same_scenes(monkeypatch):
    """Without sensor noise, a band two sensors share renders bit-identically: geometry, classes, materials,
    variety and illumination come from the seed alone."""
    monkeypatch.setattr(SC, "_NOISE", 0.0)
    names, shares = SC.material_classes(6)
    labels = torch.arange(6).repeat_interleave(3)
    red = Band("red", 665.0, 30.0)

    def render(bands, key):
        scenes = SC.Scenes(labels, shares, 16, seed=3, split="val")
        return np.concatenate([v for _, v in scenes.render(bands, key)])

    alone = render([red], "a")
    with_others = render([Band("blue", 490.0, 50.0), red, Band("swir", 1610.0, 90.0)], "b")
    assert np.array_equal(alone[:, 0], with_others[:, 1])
    assert not np.array_equal(alone, render([red], "a")[::-1])  # images differ from one another
    other_seed = np.concatenate([v for _, v in SC.Scenes(labels, shares, 16, 4, "val").render([red], "a")])
    assert not np.array_equal(alone, other_seed)


def test_objects_are_seen_as_their_material_by_two_sensors():
    """Per class, object pixels through Sentinel-2 and Landsat 8 agree at bands of similar wavelength, and
    the classes differ as their materials do."""
    names, shares = SC.material_classes(6)
    labels = torch.arange(6).repeat_interleave(12)
    scenes = SC.Scenes(labels, shares, 24, 0, "train")
    inside = scenes.object_mask(slice(0, len(labels))).numpy() > 0.99
    means = {}
    for sensor, picked in (("sentinel2:B04,B8A,B11", "s2"), ("landsat8:B4,B5,B6", "l8")):
        img = np.concatenate([v for _, v in scenes.render(resolve_bands(sensor), sensor)]) / SC.REFLECTANCE_SCALE
        means[picked] = np.stack([img[labels.numpy() == c].transpose(1, 0, 2, 3)[:, inside[labels.numpy() == c]]
                                  .mean(axis=1) for c in range(6)])  # [class, (red, nir, swir1)]
    np.testing.assert_allclose(means["s2"], means["l8"], atol=0.015)
    red, nir, swir = means["s2"].T
    veg, water, soil, snow = (names.index(n) for n in ("00_vegetation", "01_water", "02_soil", "03_snow"))
    assert nir[veg] > 4 * red[veg] and nir[water] < red[water] + 0.01 and snow in np.argsort(-red)[:1]
    assert swir[snow] < 0.2 * red[snow] and swir[soil] > nir[soil]


def test_synth_sensor_writes_tagged_files_that_read_back(tmp_path):
    counts = write_synth(tmp_path / "l8", 3, 6, 2, 12, 0, "tiff", sensor="landsat8:B4,B3,B2,B5")
    root = tmp_path / "l8"
    lost = json.loads((root / "lost.json").read_text())
    record = json.loads((root / "sensor.json").read_text())
    assert counts == {"train": 18, "val": 6, "classes": 3, "lost": len(lost)}
    assert [b["name"] for b in record["bands"]] == ["B4", "B3", "B2", "B5"] and record["bands"][3]["center_nm"] == 864.7
    path = next((root / "train" / "00_vegetation").glob("*.tif"))
    with rasterio.open(path) as src:
        assert src.descriptions == ("B4", "B3", "B2", "B5") and src.tags()["sensor"] == "landsat8:B4,B3,B2,B5"
        assert src.tags(4)["center_nm"] == "864.7" and src.tags(1)["fwhm_nm"] == "37"
        assert (src.count, src.dtypes[0], src.nodata) == (4, "uint16", 0.0)
    # Read back as a recipe names it; the lost bands are those lost.json records.
    cfg = DataConfig(source="folder", root=root, image_size=12, bands="landsat8:B4,B3,B2,B5", cache="off")
    train, _, classes = build_datasets(cfg, 0, 4)
    assert classes == ["00_vegetation", "01_water", "02_soil"] and len(train) == 18
    for i, (p, _) in enumerate(train.samples):
        own = file_mask(torch.from_numpy(RA.read(p, train.raster))[None])
        rel = p.relative_to(root).as_posix()
        assert (own is not None and own[0].tolist().index(0.0) == lost[rel]) if rel in lost else own is None


@pytest.mark.parametrize("args,match", [
    (["--sensor", "sentinel2", "--bands", "4"], "--bands 4 and --sensor sentinel2"),
    (["--sensor", "sentinel2"], "add --format tiff"),
    (["--sensor", "landsat8:B10", "--format", "tiff"], "thermal bands emit"),
    (["--sensor", "sentinal2", "--format", "tiff"], "did you mean 'sentinel2'"),
])
def test_synth_sensor_errors_are_one_line_exit_2(tmp_path, args, match):
    res = cli("data", "synth", "--out", str(tmp_path / "x"), "--classes", "2", "--train-per-class", "1",
              "--val-per-class", "1", "--image-size", "8", *args)
    assert res.returncode == 2 and match in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_data_stats_on_a_folder_without_labels(tmp_path):
    write_synth(tmp_path / "ps", 2, 3, 1, 8, 0, "tiff", sensor="planetscope")
    flat = tmp_path / "flat"  # any layout: files straight in a folder, no train/val, no classes
    flat.mkdir()
    for i, p in enumerate(sorted((tmp_path / "ps").rglob("*.tif"))):
        p.rename(flat / f"{i}.tif")
    res = cli("data", "stats", str(flat), "--bands", "planetscope", "--image-size", "8")
    assert res.returncode == 0, res.stderr
    assert "in file values" in res.stdout and "│ nir" in res.stdout
    with rasterio.open(flat / "0.tif") as src:
        assert src.count == 4
    pixels = np.stack([RA.read(p, RA.RasterSpec(4, 8)) for p in sorted(flat.glob("*.tif"))])
    printed = res.stdout.strip().splitlines()[-1]  # data.mean=[...] data.std=[...]
    mean = [float(v) for v in printed.split("data.mean=[")[1].split("]")[0].split(",")]
    assert mean == pytest.approx(np.nanmean(pixels, axis=(0, 2, 3)).tolist(), rel=1e-5)
    wrong = cli("data", "stats", str(flat), "--bands", "R,G,B")
    assert wrong.returncode == 2 and "has 4 bands but --bands names 3: R, G, B" in wrong.stderr
