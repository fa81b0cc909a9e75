"""Several sensors in one run (issue 29, `data.sources`): the schema, batches of one source each, per-source
normalisation, training, resume and eval per source, on tiny renderings of the built-in spectral scenes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from edgecnn.config.load import dump_recipe, validate_recipe
from edgecnn.core.safeyaml import safe_load
from edgecnn.data.sources import Joined, build_sources, source_batches
from edgecnn.errors import UserError

from conftest import cli

S2 = "sentinel2:B02,B03,B04,B08"  # 4 bands, as PlanetScope's preset: a plain model reads both


def recipe(sources, **data):
    return {"name": "x", "model": {"name": "cnn_attn_dynconv_mask"}, "data": {"sources": sources, **data}}


# -- the schema ---------------------------------------------------------------------------------------

def test_sources_resolve_their_bands_and_mirror_the_first():
    r = validate_recipe(recipe([{"root": "~/s2", "bands": S2}, {"root": "/d/ps", "bands": "planetscope",
                                                                "nodata": 0}]))
    d = r.data
    assert d.source == "folder" and d.root is None
    assert [s.name for s in d.sources] == ["s2", "ps"]  # the folders' names
    assert d.bands == ["B02", "B03", "B04", "B08"] and d.band_specs[0].center_nm == pytest.approx(492.4)
    s2, ps = d.source_configs()
    assert s2.root == Path("~/s2").expanduser() and ps.bands == ["blue", "green", "red", "nir"]
    assert ps.band_specs[3].center_nm == 865 and ps.nodata == 0 and s2.nodata is None
    # recipe.yaml keeps the wavelengths of every source and reads back to the same recipe.
    again = validate_recipe(safe_load(dump_recipe(r)))
    assert again == r and again.data.sources[1].band_specs == d.sources[1].band_specs


def test_existing_single_folder_recipes_are_unchanged():
    r = validate_recipe({"name": "x", "data": {"source": "folder", "root": "/d", "bands": "planetscope"}})
    assert r.data.sources is None and r.data.source_configs() == [r.data]


@pytest.mark.parametrize("data, match", [
    ({"root": "/d"}, "data.sources and data.root together"),
    ({"bands": ["R", "G", "B"]}, "data.bands is the first source's"),
    ({"mean": [1.0] * 4, "std": [1.0] * 4}, "give mean and std inside each source"),
    ({"source": "synth"}, "data.sources are folders"),
])
def test_sources_with_a_single_folder_key_are_one_line_errors(data, match):
    with pytest.raises(UserError, match=match) as e:
        validate_recipe(recipe([{"root": "/a/s2", "bands": S2}], **data))
    assert len(e.value.lines) == 1 and "\n" not in e.value.lines[0]


@pytest.mark.parametrize("sources, match", [
    ([{"root": "/a/x", "bands": S2}, {"root": "/b/x", "bands": "planetscope"}], "two sources are named 'x'"),
    ([{"root": "/a", "bands": "sentinal2"}], r"data.sources.0.bands .*did you mean 'sentinel2'"),
    ([{"root": "/a", "bands": S2, "mean": [1, 2, 3, 4]}], "data.sources.0: give both mean and std"),
    ([{"root": "/a", "bands": S2, "mean": [1], "std": [1]}], "4 bands but 1 mean and 1 std values"),
    ([{"bands": S2}], "data.sources.0.root"),
    ([{"root": "/a", "bands": S2, "extra": 1}], "data.sources.0.extra"),
    ([{"root": "/a", "bands": S2, "name": "a,b"}], "without , : @ or /"),
])
def test_bad_sources_are_one_line_errors(sources, match):
    with pytest.raises(UserError, match=match) as e:
        validate_recipe(recipe(sources))
    assert len(e.value.lines) == 1 and "\n" not in e.value.lines[0]


def test_a_plain_model_needs_sources_with_one_band_count():
    two = [{"root": "/s2", "bands": "sentinel2"}, {"root": "/l8", "bands": "landsat8"}]
    with pytest.raises(UserError, match=r"different band counts \(s2 10, l8 7\) but cnn_attn_dynconv_mask has no "
                                        r"wavelength stem; use model.name: cnn_attn_wave") as e:
        validate_recipe(recipe(two))
    assert len(e.value.lines) == 1
    proc = cli("validate", "recipes/quickstart_multispectral.yaml", "data.root=null", "data.bands=null",
               "data.sources=[{root: /s2, bands: sentinel2}, {root: /l8, bands: landsat8}]")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "use model.name: cnn_attn_wave" in proc.stdout + proc.stderr


# -- batches of one source each ---------------------------------------------------------------------------

def test_source_batches_hold_one_source_and_cover_every_image_once():
    sizes, starts = [37, 11, 20], [0, 37, 48, 68]
    batches = source_batches(sizes, 8, torch.Generator().manual_seed(0))
    owner = [next(k for k in range(3) if starts[k] <= b[0] < starts[k + 1]) for b in batches]
    for b, k in zip(batches, owner):
        assert all(starts[k] <= i < starts[k + 1] for i in b)
    assert sorted(i for b in batches for i in b) == list(range(68))
    assert min(len(b) for b in batches) >= 2  # 37 = 4 x 8 + 5, 11 = 8 + 3, 20 = 2 x 8 + 4; no batch of one
    assert [owner.count(k) for k in range(3)] == [5, 2, 3]
    assert owner != sorted(owner)  # interleaved, not source after source


def test_sources_are_drawn_in_proportion_to_their_size():
    # 300 and 100 images in batches of 10: 30 and 10 batches. At any step, the big source's chance is its
    # share of the batches left, so its share of the first ten steps is 3/4 on average over seeds.
    firsts = []
    for seed in range(200):
        batches = source_batches([300, 100], 10, torch.Generator().manual_seed(seed))
        firsts += [b[0] < 300 for b in batches[:10]]
    assert sum(firsts) / len(firsts) == pytest.approx(0.75, abs=0.03)


def test_source_batches_are_deterministic_and_resume_from_the_generator_state():
    g = torch.Generator().manual_seed(3)
    first = source_batches([9, 14], 4, g)
    state = g.get_state()
    second = source_batches([9, 14], 4, g)
    assert second != first  # another epoch, another order
    resumed = torch.Generator()
    resumed.set_state(state)
    assert source_batches([9, 14], 4, resumed) == second
    assert source_batches([9, 14], 4, torch.Generator().manual_seed(3)) == first


def test_joined_reads_a_batch_from_its_source():
    a = [(torch.full((2, 1, 1), float(i)), 0) for i in range(3)]
    b = [(torch.full((4, 1, 1), 10.0 + i), 1) for i in range(2)]
    j = Joined([a, b])
    assert len(j) == 5 and [j.source_of(i) for i in range(5)] == [0, 0, 0, 1, 1]
    assert j[4][0][0, 0, 0] == 11 and j.__getitems__([3, 4])[1][0].shape[0] == 4
    with pytest.raises(IndexError, match="spans two parts"):
        j.__getitems__([2, 3])


# -- on files: two sensors' renderings of the same scenes ---------------------------------------------------

@pytest.fixture(scope="module")
def sensors(tmp_path_factory) -> Path:
    pytest.importorskip("rasterio")
    from edgecnn.data.synth import write_synth

    root = tmp_path_factory.mktemp("sensors")
    write_synth(root / "s2", 3, 6, 2, 16, 0, "tiff", sensor=S2)
    write_synth(root / "ps", 3, 10, 3, 16, 0, "tiff", sensor="planetscope")
    write_synth(root / "l8", 3, 6, 2, 16, 0, "tiff", sensor="landsat8")
    return root


def two_sources(root: Path) -> list[str]:
    return ["data.root=null", "data.bands=null", "data.image_size=16", "train.batch_size=4", "train.threads=1",
            f"data.sources=[{{root: {root / 's2'}, bands: '{S2}'}}, {{root: {root / 'ps'}, bands: planetscope}}]"]


def test_every_source_needs_the_same_class_folders(sensors, tmp_path):
    import shutil

    lacking = tmp_path / "lacking"
    shutil.copytree(sensors / "ps", lacking)
    gone = sorted(p.name for p in (lacking / "train").iterdir())[1]
    shutil.rmtree(lacking / "train" / gone)
    r = validate_recipe(recipe([{"root": str(sensors / "s2"), "bands": S2},
                                {"root": str(lacking), "bands": "planetscope"}]))
    with pytest.raises(UserError, match=f"source 'lacking' .* has no class folder '{gone}' that source 's2' has"):
        build_sources(r.data, 0)


def test_two_sensors_train_with_their_own_bands_and_normalisation(sensors, tmp_path, monkeypatch):
    """One epoch in-process: each batch is one source's, normalised with that source's statistics (computed
    from its own training files and recorded), the model told that source's bands; val per source."""
    import edgecnn.train.loop as loop
    from edgecnn.config import load_recipe
    from edgecnn.data.stats import band_stats
    from rich.console import Console

    seen = []
    monkeypatch.setattr(loop, "set_bands", lambda model, bands: seen.append([b.name for b in bands]))
    prepared = []
    real_prepare = loop.prepare
    monkeypatch.setattr(loop, "prepare", lambda x, device, mean, std, *a: prepared.append((x.shape[1], mean)) or
                        real_prepare(x, device, mean, std, *a))
    r = load_recipe("recipes/quickstart_multispectral.yaml", [*two_sources(sensors), "train.epochs=1"])
    run = tmp_path / "run"
    loop.train(r, run, console=Console(quiet=True))

    stored = safe_load((run / "recipe.yaml").read_text())["data"]
    stats = json.loads((run / "data_stats.json").read_text())["sources"]
    sources, _ = build_sources(r.data, 0)
    for spec, src in zip(stored["sources"], sources):
        own = band_stats(src.train, src.cfg.bands)  # as a run on this folder alone computes them
        assert spec["mean"] == own.mean == stats[src.name]["mean"] and spec["std"] == own.std
        assert [b["name"] for b in spec["bands"]] == src.cfg.bands and spec["bands"][0]["center_nm"] > 400
    assert stored["mean"] == stored["sources"][0]["mean"]  # data.mean mirrors the first source
    assert stats["s2"]["mean"] != stats["ps"]["mean"]
    # Training batches: 18 s2 images in 5 batches, 30 ps images in 8; each with its source's normalisation.
    means = {s["name"]: s["mean"] for s in stored["sources"]}
    train_batches = prepared[:13]
    assert sorted(m == means["s2"] for _, m in train_batches) == [False] * 8 + [True] * 5
    names = {"s2": ["B02", "B03", "B04", "B08"], "ps": ["blue", "green", "red", "nir"]}
    assert seen[:13] == [names["s2"] if m == means["s2"] else names["ps"] for _, m in train_batches]

    row = next(csv.DictReader(open(run / "metrics.csv")))
    assert {"val_accuracy@s2", "val_accuracy@ps", "val_accuracy@ps:red,nir", "val_accuracy_subset_mean"} <= set(row)
    # Over both sources: the images' weighted mean of the two.
    both = (6 * float(row["val_accuracy@s2"]) + 9 * float(row["val_accuracy@ps"])) / 15
    assert float(row["val_accuracy"]) == pytest.approx(both, abs=1e-5)


@pytest.mark.slow
def test_two_sensors_through_the_cli_resume_and_eval_per_source(sensors, tmp_path):
    args = ["train", "recipes/quickstart_multispectral.yaml", *two_sources(sensors), "train.epochs=2"]
    full = tmp_path / "full"
    out = cli(*args, "--out", str(full), check=True).stdout
    assert "(s2 " in out and ", ps " in out  # per-source val accuracy on the epoch line

    # A run stopped after its first epoch (its checkpoint copied then) resumes into the same second epoch.
    import edgecnn.train.loop as loop
    from edgecnn.config import load_recipe
    from rich.console import Console

    r = load_recipe("recipes/quickstart_multispectral.yaml", [*two_sources(sensors), "train.epochs=2"])
    stopped = tmp_path / "stopped"
    real = loop._epoch_row

    def stop_at_two(ctx, epoch, title):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(ctx, epoch, title)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(loop, "_epoch_row", stop_at_two)
        with pytest.raises(KeyboardInterrupt):
            loop.train(r, stopped, console=Console(quiet=True))
    cli(*args, "--out", str(stopped), "--resume", check=True)

    def rows(run):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(run / "metrics.csv"))]

    assert len(rows(full)) == 2 and rows(stopped) == rows(full)

    result = json.loads(cli("eval", str(full), "--json", check=True).stdout)
    per = result["sources"]
    assert list(per) == ["s2", "ps"] and per["s2"]["images"] == 6 and per["ps"]["images"] == 9
    assert result["images"] == 15 and per["ps"]["bands"] == ["blue", "green", "red", "nir"]
    assert "blue,green" in per["ps"]["subsets"] and "B02,B03" in per["s2"]["subsets"]
    table = cli("eval", str(full), check=True).stdout
    assert "per source" in table and "ps: per band subset" in table


def test_sources_with_different_band_counts_stop_a_plain_model(sensors, tmp_path):
    proc = cli("train", "recipes/quickstart_multispectral.yaml", "data.root=null", "data.bands=null",
               f"data.sources=[{{root: {sensors / 's2'}, bands: '{S2}'}}, {{root: {sensors / 'l8'}, bands: landsat8}}]",
               "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "different band counts (s2 4, l8 7)" in proc.stderr + proc.stdout
    assert not (tmp_path / "r").exists()


# -- a run evaluated on a sensor it never saw, without wavelengths ------------------------------------------

@pytest.fixture(scope="module")
def s2_run(sensors, tmp_path_factory) -> Path:
    import edgecnn.train.loop as loop
    from edgecnn.config import load_recipe
    from rich.console import Console

    run = tmp_path_factory.mktemp("s2run") / "run"
    r = load_recipe("recipes/cross_sensor.yaml", ["model.name=cnn_attn_dynconv_mask", "train.band_subsets=per_sample",
                                                  f"data.root={sensors / 's2'}", f"data.bands={S2}",
                                                  "data.image_size=16", "train.epochs=1", "train.batch_size=6",
                                                  "train.threads=1"])
    loop.train(r, run, console=Console(quiet=True))
    return run


def test_matched_bands_lay_another_sensors_bands_into_the_runs_slots(sensors):
    from edgecnn.config.schema import DataConfig
    from edgecnn.data import build_datasets
    from edgecnn.data.bands import MatchedBands

    l8 = DataConfig(source="folder", root=sensors / "l8", bands="landsat8", image_size=16, cache="off")
    _, val, _ = build_datasets(l8, 0, 7, cache=False)
    slots = [1, 2, None, 4]  # B2, B3, nothing, B5
    x, label = MatchedBands(val, slots)[0]
    raw, same = val[0]
    assert label == same and x.shape == (4, 16, 16) and torch.isnan(x[2]).all()
    torch.testing.assert_close(x[[0, 1, 3]], raw[[1, 2, 4]], equal_nan=True)


def test_eval_on_another_sensor_without_wavelengths(s2_run, sensors):
    out = cli("eval", str(s2_run), f"data.root={sensors / 'l8'}", "data.bands=landsat8", "--json", check=True)
    result = json.loads(out.stdout)
    sensor = result["sensor"]
    # The run's 4 Sentinel-2 bands (B02 B03 B04 B08): Landsat's B5 (865 nm) fills B08 (833 nm, 106 nm wide).
    assert sensor["band_match"] == {"B1": None, "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B08", "B6": None,
                                    "B7": None}
    assert sensor["zero_filled"] == [] and sensor["bands"][0]["center_nm"] == pytest.approx(443.0)
    assert result["images"] == 6 and result["bands"] == ["B02", "B03", "B04", "B08"]
    assert result == json.loads((s2_run / "eval-landsat8.json").read_text())  # the run's own eval.json stays
    table = cli("eval", str(s2_run), f"data.root={sensors / 'ps'}", "data.bands=planetscope", check=True).stdout
    assert "blue->B02" in table and "nir->B08" in table


@pytest.mark.parametrize("args, says", [
    (["data.bands=[a, b, c, d]"], "no band of"),
    (["data.bands=planetscope:red,nir,blue"], "has 4 bands but data.bands names 3"),
    (["data.bands=planetscope", "train.epochs=3"], "train.epochs: only data.* settings can change"),
    (["data.bands=planetscope", "--channels", "B02"], "--channels with another sensor"),
])
def test_eval_on_another_folder_errors_are_one_line(s2_run, sensors, args, says):
    proc = cli("eval", str(s2_run), f"data.root={sensors / 'ps'}", *args)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr
