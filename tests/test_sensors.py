"""Bands with wavelengths (issue 29): the sensor presets, what data.bands accepts, its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgecnn.config import dump_recipe, load_recipe
from edgecnn.config.load import validate_recipe
from edgecnn.core.sensors import MAX_NM, MIN_NM, Band, BandError, presets, resolve_bands
from edgecnn.errors import UserError

from conftest import cli

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

# One row per preset: band count, then (band, centre nm, FWHM nm) for a few bands checked against the
# agency figure cited in edgecnn/core/sensors.yaml, first and last band included.
PRESETS = {
    "sentinel2": (10, [("B02", 492.4, 66), ("B04", 664.6, 31), ("B8A", 864.7, 21), ("B12", 2202.4, 175)]),
    "sentinel2_13": (13, [("B01", 442.7, 21), ("B09", 945.1, 20), ("B10", 1373.5, 31), ("B12", 2202.4, 175)]),
    "landsat7": (6, [("B1", 485, 70), ("B4", 835, 130), ("B7", 2215, 270)]),
    "landsat8": (7, [("B1", 443, 16), ("B2", 482, 60), ("B5", 864.7, 28), ("B7", 2200.7, 187)]),
    "landsat9": (7, [("B1", 443, 16), ("B4", 654.6, 37), ("B7", 2200.7, 187)]),
    "planetscope": (4, [("blue", 490, 50), ("green", 565, 36), ("red", 665, 30), ("nir", 865, 40)]),
    "planetscope_ps2": (4, [("blue", 485, 60), ("green", 545, 90), ("red", 630, 80), ("nir", 820, 80)]),
    "planetscope8": (8, [("coastal_blue", 441.5, 21), ("yellow", 610, 20), ("rededge", 705, 16), ("nir", 865, 40)]),
    "modis": (7, [("B1", 645, 50), ("B3", 469, 20), ("B7", 2130, 50)]),
    "micasense": (5, [("blue", 475, 32), ("rededge", 717, 12), ("nir", 842, 57)]),
    "rgb": (3, [("R", 600, 90), ("G", 540, 90), ("B", 460, 80)]),
}


def test_every_preset_has_a_test_row():
    assert sorted(PRESETS) == sorted(presets())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset(name):
    """The preset's bands, their figures, and its sensor's cited source; as a recipe's data.bands it validates,
    reads back as names, and keeps its wavelengths through the run's recipe.yaml."""
    count, checked = PRESETS[name]
    p = presets()[name]
    assert len(p.bands) == count and p.sensor.source
    by_name = {b.name: b for b in p.bands}
    for band, centre, fwhm in checked:
        assert (by_name[band].center_nm, by_name[band].fwhm_nm) == (centre, fwhm)
    for b in p.sensor.bands:
        assert MIN_NM <= b.center_nm <= MAX_NM and b.fwhm_nm > 0
    assert set(p.sensor.approximate) <= {b.name for b in p.sensor.bands}

    r = load_recipe(RECIPES / "quickstart_multispectral.yaml", [f"data.bands={name}"])
    assert r.data.bands == [b.name for b in p.bands] and r.data.band_specs == list(p.bands)
    again = validate_recipe(yaml.safe_load(dump_recipe(r)))
    assert again == r and again.data.band_specs == list(p.bands)


def test_pick_keeps_file_order_and_reaches_every_band_of_the_sensor():
    bands = resolve_bands("sentinel2:B04,B03,B02,B10")  # B10 is not in the 10-band preset, but in its sensor
    assert [b.name for b in bands] == ["B04", "B03", "B02", "B10"]
    assert bands[3].center_nm == 1373.5
    assert resolve_bands({"preset": "sentinel2", "pick": ["b04", "B03"]}) == bands[:2]  # any case
    assert resolve_bands("landsat8:B4,B3") == resolve_bands({"preset": "landsat8", "pick": "B4,B3"})


def test_names_and_explicit_wavelengths():
    # Plain names stay what they were: names without wavelengths, so old recipes mean what they meant.
    r = load_recipe(RECIPES / "quickstart_multispectral.yaml")
    assert r.data.bands == ["R", "G", "B", "NIR"]
    assert [b.center_nm for b in r.data.band_specs] == [None] * 4
    assert "center_nm" not in dump_recipe(r)
    mixed = resolve_bands([{"name": "red", "center_nm": 665, "fwhm_nm": 30}, {"name": "swir", "center_nm": 1610},
                           "elevation"])
    assert mixed == [Band("red", 665.0, 30.0), Band("swir", 1610.0), Band("elevation")]


@pytest.mark.parametrize("bands,match", [
    ("sentinl2", "unknown sensor preset 'sentinl2'; did you mean 'sentinel2'?"),
    ("landsat8:B4,B03", "landsat8 has no band 'B03'; did you mean 'B3'?.*its bands: B1, B2"),
    ([{"name": "red", "center_nm": 0.665}], r"center_nm 0.665 is outside 300-15,000 nm \(in micrometres\? "
                                            r"0.665 um is 665 nm\)"),
    ([{"name": "far", "center_nm": 20000}], "center_nm 20000 is outside 300-15,000 nm"),
    ([{"name": "red", "center_nm": 665, "fwhm_nm": 0}], "fwhm_nm 0 must be above 0"),
    ("sentinel2:B04,B03,b04", "two bands are named 'B04': names must be unique"),
    ([{"name": "red", "center_nm": 665}, "RED"], "two bands are named 'red' and 'RED'"),
    ({"preset": "modis", "bands": ["B1"]}, "a mapping in data.bands takes preset and pick"),
    ([{"name": "red", "centre_nm": 665}], "a band has name, center_nm and optionally fwhm_nm"),
    ([], "no bands"),
    (["sentinel2"], "for the preset write it without brackets"),
])
def test_bad_band_lists_are_one_line_errors(bands, match):
    with pytest.raises(BandError, match=match) as e:
        resolve_bands(bands)
    assert "\n" not in str(e.value)
    # Through the schema: one line at data.bands, collected with the recipe's other problems.
    with pytest.raises(UserError) as e:
        validate_recipe({"name": "x", "data": {"bands": bands}, "train": {"epochs": 0}})
    lines = e.value.lines
    assert len(lines) == 2 and any(line.startswith("data.bands") for line in lines)
    assert any(line.startswith("train.epochs") for line in lines)


def test_validate_prints_the_band_error_and_exits_2():
    res = cli("validate", "quickstart", "data.bands=landsat:B4,B3,B2")
    output = res.stdout + res.stderr
    assert res.returncode == 2 and len(output.strip().splitlines()) == 1
    assert "unknown sensor preset 'landsat'; did you mean 'landsat7' or 'landsat8' or 'landsat9'?" in output


def test_statistics_interpolated_by_wavelength():
    from edgecnn.core.sensors import interpolate_stats

    s2 = resolve_bands("sentinel2:B02,B04,B8A,B11")  # 492.4, 664.6, 864.7, 1613.7 nm
    mean, std = [400.0, 300.0, 2800.0, 1800.0], [100.0, 150.0, 900.0, 700.0]
    got_mean, got_std, notes = interpolate_stats(s2, mean, std, resolve_bands("landsat8:B2,B4,B5,B1"))
    # L8 B4 (654.6 nm) lies between S2 B02 and B04: 10 nm short of B04 on a 172.2 nm segment.
    assert got_mean[1] == pytest.approx(300.0 + (400.0 - 300.0) * 10.0 / 172.2)
    assert got_mean[2] == pytest.approx(2800.0) and got_std[2] == pytest.approx(900.0)  # same centre as B8A
    # Beyond the known range: the nearest band's values, and a note naming the gap.
    assert got_mean[3] == 400.0 and got_std[3] == 100.0
    assert notes == ["B2 at 482 nm is 10.4 nm outside the known bands (492.4-1613.7 nm): given B02's statistics",
                     "B1 at 443 nm is 49.4 nm outside the known bands (492.4-1613.7 nm): given B02's statistics"]
    # Known bands in any order give the same answer.
    shuffled = interpolate_stats(s2[::-1], mean[::-1], std[::-1], resolve_bands("landsat8:B2,B4,B5,B1"))
    assert shuffled == (got_mean, got_std, notes)
    with pytest.raises(BandError, match="wanted band NIR has no wavelength"):
        interpolate_stats(s2, mean, std, [Band("NIR")])


def test_match_bands_by_name_then_nearest_wavelength():
    from edgecnn.core.sensors import match_bands

    s2 = resolve_bands("sentinel2")
    slot = {b.name: i for i, b in enumerate(s2)}

    def names(target):
        return [None if j is None else s2[j].name for j in match_bands(resolve_bands(target), s2)]

    # Landsat-8's coastal band (443 nm) loses Sentinel-2's blue to Landsat's own blue (482 nm), nearer.
    assert names("landsat8") == [None, "B02", "B03", "B04", "B8A", "B11", "B12"]
    assert names("planetscope") == ["B02", "B03", "B04", "B8A"]
    # MODIS 2130 nm is 72 nm from B12 but inside its 175 nm window; 1240 nm is near no Sentinel-2 band.
    assert names("modis")[4:] == [None, "B11", "B12"]
    assert match_bands(resolve_bands("sentinel2:B8A,B04"), s2) == [slot["B8A"], slot["B04"]]  # same names
    # Names alone (no wavelengths): matched by name without regard to case, one band per slot.
    assert match_bands([Band("nir"), Band("R"), Band("r2")], [Band("R"), Band("G"), Band("NIR")]) == [2, 0, None]
    # The same name at another wavelength is another band: MODIS B1 (red) is not Landsat B1 (coastal).
    assert match_bands([Band("B1", 645.0, 50.0)], resolve_bands("landsat8")) == [3]
