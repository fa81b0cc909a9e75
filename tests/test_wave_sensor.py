"""A wave run on a sensor it never saw (issue 29): eval, export --bands, predict and bench --check, and the
one-line refusals (exit 2, no traceback, nothing written).

The run: cnn_attn_wave trained one epoch on the built-in scenes as Sentinel-2 sees them (16 px, 3 classes);
the unseen sensors: the same scenes through PlanetScope's 4 bands and Landsat 8's 7.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY, cli

from edgecnn.config import load_recipe
from edgecnn.config.load import dump_recipe


def _one_line_refusal(proc, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith(("warning", "export "))]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def _fake_run(folder: Path, *overrides: str) -> Path:
    """A run folder with only its recipe: enough for the refusals made before any checkpoint loads."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(dump_recipe(load_recipe("recipes/quickstart.yaml", list(overrides))))
    return folder


def test_a_wave_recipe_without_wavelengths_is_refused_at_validate():
    proc = cli("validate", "recipes/quickstart.yaml", "model.name=cnn_attn_wave")
    _one_line_refusal(proc, "cnn_attn_wave", "R, G, B have none", "data.bands=sentinel2")


def test_bands_for_a_model_without_a_wave_stem_is_refused_before_loading(tmp_path):
    run = _fake_run(tmp_path / "plain")  # cnn_attn on R, G, B (names only): no wave stem, no wavelengths
    proc = cli("export", str(run), "--target", "executorch", "--bands", "planetscope", "--data-root", str(tmp_path))
    _one_line_refusal(proc, "--bands", "cnn_attn has no wavelength-conditioned stem", "R, G, B")
    assert not (run / "export").exists()


def test_an_empty_band_list_and_a_folder_without_bands_are_refused(tmp_path):
    run = _fake_run(tmp_path / "wave", "model.name=cnn_attn_wave", "data.bands=planetscope", "data.mean=null",
                    "data.std=null")
    _one_line_refusal(cli("export", str(run), "--target", "onnx", "--bands", ""), "--bands is empty")
    _one_line_refusal(cli("export", str(run), "--target", "onnx", "--data-root", str(tmp_path)),
                      "give --bands too")
    assert not (run / "export").exists()


def test_a_model_that_reads_bands_by_position_cannot_change_sensor(tmp_path):
    """for_sensor, in-process: a DynamicConv2D model, another band count."""
    from edgecnn.errors import UserError
    from edgecnn.train import run as R
    from edgecnn.train.sensor import for_sensor

    recipe = load_recipe("recipes/quickstart.yaml", ["model.name=cnn_attn_dynconv_mask", "data.bands=sentinel2",
                                                     "model.heads=2", "data.mean=null", "data.std=null"])
    model = R.build_for_recipe(recipe, 3)
    with pytest.raises(UserError) as e:
        for_sensor(recipe, model, {"data.bands": "planetscope", "data.root": str(tmp_path)})
    assert "\n" not in str(e.value) and "by position" in str(e.value) and "another band count" in str(e.value)


# -- a trained wave run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wave(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("wave")
    data = {}
    for sensor in ("sentinel2", "planetscope", "landsat8"):
        data[sensor] = base / sensor
        cli("data", "synth", "--out", str(data[sensor]), "--format", "tiff", "--sensor", sensor, "--classes", "3",
            "--train-per-class", "8", "--val-per-class", "4", "--image-size", "32", check=True)
    run = base / "run"
    cli("train", "recipes/quickstart.yaml", *TINY, "model.name=cnn_attn_wave", "model.heads=2", "data.source=folder",
        f"data.root={data['sentinel2']}", "data.bands=sentinel2", "data.mean=null", "data.std=null",
        "data.image_size=32", "train.epochs=1",
        "--out", str(run), check=True)
    return {"run": run, **data}


@pytest.mark.slow
def test_eval_on_an_unseen_sensor_records_it_beside_the_runs_own_eval(wave):
    run = wave["run"]
    own = (run / "eval.json").read_text() if (run / "eval.json").exists() else None
    proc = cli("eval", str(run), f"data.root={wave['planetscope']}", "data.bands=planetscope", check=True)
    assert "eval-planetscope.json" in proc.stdout
    result = json.loads((run / "eval-planetscope.json").read_text())
    s = result["sensor"]
    assert s["name"] == "planetscope" and not s["seen_in_training"] and s["trained_on"]["name"] == "sentinel2"
    from edgecnn.core.sensors import resolve_bands

    assert [b["center_nm"] for b in s["bands"]] == [b.center_nm for b in resolve_bands("planetscope")]
    assert s["normalization"]["source"] == "files" and len(s["normalization"]["mean"]) == 4
    # and the BatchNorms' statistics re-estimated on the same files (AdaBN), unless --norm stats
    assert s["normalization"]["batchnorm"]["source"] == "files (AdaBN)" and s["normalization"]["batchnorm"]["images"]
    assert "re-estimated" in proc.stdout
    stats = cli("eval", str(run), f"data.root={wave['planetscope']}", "data.bands=planetscope", "--norm", "stats",
                "--json", check=True)
    only = json.loads(stats.stdout)["sensor"]["normalization"]
    assert only["source"] == "files" and "batchnorm" not in only
    assert result["bands"] == [b["name"] for b in s["bands"]]
    assert ((run / "eval.json").read_text() if (run / "eval.json").exists() else None) == own

    interp = cli("eval", str(run), f"data.root={wave['planetscope']}", "data.bands=planetscope", "--norm",
                 "interpolate", "--json", check=True)
    assert json.loads(interp.stdout)["sensor"]["normalization"]["source"] == "interpolated"

    # Landsat 8's coastal band (443 nm) lies below every Sentinel-2 band the run saw: a warning with the gap.
    l8 = cli("eval", str(run), f"data.root={wave['landsat8']}", "data.bands=landsat8", check=True)
    assert "warning: band B1 at 443 nm overlaps no training band" in l8.stderr and " nm from the nearest" in l8.stderr


@pytest.mark.slow
def test_eval_refuses_what_a_run_cannot_be_evaluated_on(wave):
    run = wave["run"]
    _one_line_refusal(cli("eval", str(run), "data.bands=planetscope"), "data.root=FOLDER")
    _one_line_refusal(cli("eval", str(run), "train.epochs=3", f"data.root={wave['sentinel2']}"),
                      "train.epochs", "only data.*")
    _one_line_refusal(cli("eval", str(run), f"data.root={wave['planetscope']}", "data.bands=planetscope", "--norm",
                          "guess"), "--norm guess")
    assert not list(run.glob("eval-*.json")) or all(json.loads(p.read_text()).get("sensor")
                                                    for p in run.glob("eval-*.json"))


@pytest.mark.slow
def test_export_for_an_unseen_sensor_folds_to_a_plain_model_predict_and_check_run_it(wave, tmp_path):
    import torch

    from edgecnn.models.registry import build_model
    from edgecnn.models.stats import measure_cost

    run = wave["run"]
    refused = cli("export", str(run), "--target", "executorch", "--int8", "--bands", "planetscope")
    _one_line_refusal(refused, "planetscope", "data.root=FOLDER")
    assert not (run / "export").exists()

    cli("export", str(run), "--target", "executorch", "--int8", "--calib", "8", "--bands", "planetscope",
        "--data-root", str(wave["planetscope"]), check=True)
    pte = run / "export" / "cnn_attn_wave-executorch-int8-planetscope.pte"
    side = json.loads(Path(f"{pte}.json").read_text())
    assert side["band_handling"].startswith("folded: WaveConv2D") and side["inputs"][0]["shape"][1] == 4
    assert all(b["center_nm"] for b in side["band_specs"]) and side["sensor"]["name"] == "planetscope"
    assert side["normalization"]["source"] == "files" and side["normalization"]["mean"] == \
        side["sensor"]["normalization"]["mean"]
    # bench --check rebuilds the reference from the sidecar's record: the same BatchNorm statistics again
    from edgecnn.train import run as R
    from edgecnn.train.sensor import for_sensor, from_record

    recipe, exported, _, _ = R.load_trained(run)
    for_sensor(recipe, exported, {"data.root": str(wave["planetscope"]), "data.bands": "planetscope"})
    recipe, rebuilt, _, _ = R.load_trained(run)
    from_record(recipe, rebuilt, side["sensor"])
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), rebuilt.state_dict().values()))
    plain = build_model("cnn_attn", num_classes=3, in_chans=4, heads=2)
    with torch.no_grad():
        assert side["macs"] == measure_cost(plain, 32, 4).macs
    assert side["delegation"]["ops_outside"] == {}

    image = sorted((wave["planetscope"] / "val").rglob("*.tif"))[0]
    out = cli("predict", str(pte), str(image), "--json", "--bands", "planetscope", check=True)
    assert json.loads(out.stdout)[0]["class"] in side["classes"]
    _one_line_refusal(cli("predict", str(pte), str(image), "--bands", "sentinel2"), "was made for planetscope",
                      "--bands sentinel2")
    # An artifact whose sidecar has no wavelengths (written before bands had them) cannot be checked.
    old = tmp_path / pte.name
    shutil.copy(pte, old)
    Path(f"{old}.json").write_text(json.dumps({k: v for k, v in side.items() if k not in ("band_specs", "sensor")}))
    _one_line_refusal(cli("predict", str(old), str(image), "--bands", "planetscope"), "records no wavelengths")

    rows = tmp_path / "bench.json"
    cli("bench", str(pte), "--check", "4", "--rounds", "1", "--iters", "2", "--json", str(rows), check=True)
    row = json.loads(rows.read_text())["rows"][0]
    assert row["check_n"] == 4 and "set to planetscope" in row["check_reference"] and not row.get("check_error")


@pytest.mark.slow
def test_the_unfolded_artifact_for_another_sensor_takes_its_mask(wave):
    run = wave["run"]
    _one_line_refusal(cli("export", str(run), "--target", "onnx", "--mask-input"), "--mask-input is for --bands")
    proc = cli("export", str(run), "--target", "onnx", "--bands", "landsat8", "--data-root", str(wave["landsat8"]),
               "--mask-input", check=True)
    assert "warning: band B1 at 443 nm" in proc.stderr  # below every Sentinel-2 band the run saw
    side = json.loads((run / "export" / "cnn_attn_wave-onnx-fp32-landsat8-mask.onnx.json").read_text())
    assert [i["name"] for i in side["inputs"]] == ["image", "mask"] and side["inputs"][1]["shape"] == [7]
    assert side["sensor"]["warnings"] and side["parity"]["per_subset"]
    assert side["parity"]["max_abs_logit_diff"] < 1e-3  # fp32: the static form computes what the stem does


# -- training over sub-sensors (train.band_subsets=sensors) ---------------------------------------------


def test_sub_sensor_training_is_refused_for_a_model_without_wavelengths():
    proc = cli("validate", "recipes/quickstart.yaml", "train.band_subsets=sensors")
    _one_line_refusal(proc, "train.band_subsets=sensors", "cnn_attn cannot", "per_sample")


def _sentinel2_wave(size: int):
    """A small cnn_attn_wave on Sentinel-2's bands, a seeded generator, and two images whose every plane holds
    its band's index (so a sub-sensor's planes say which bands it kept)."""
    import torch

    from edgecnn.core.sensors import resolve_bands
    from edgecnn.train import run as R

    recipe = load_recipe("recipes/quickstart.yaml", ["model.name=cnn_attn_wave", "model.heads=2",
                                                     "data.bands=sentinel2", "data.mean=null", "data.std=null"])
    specs = resolve_bands("sentinel2")
    x = torch.arange(len(specs), dtype=torch.float32)[None, :, None, None].expand(2, -1, size, size)
    return R.build_for_recipe(recipe, 3).eval(), specs, torch.Generator().manual_seed(0), x


def test_a_sub_sensor_batch_carries_its_bands_only_and_the_stem_is_set_to_them():
    """In-process: each draw slices the images and the files' lost-band mask to one subset, in band order, and
    sets the stem to exactly those bands (a sensor of its own), so the model runs on it; the whole sensor is
    drawn about half the time."""
    import torch

    from edgecnn.models.wave_conv import wave_stem
    from edgecnn.train.loop import _as_sub_sensor

    model, specs, gen, x = _sentinel2_wave(32)
    own = torch.ones(2, len(specs))
    own[1, 0] = 0  # the second file lost B02
    whole = 0
    for i in range(24):
        sub, sub_own = _as_sub_sensor(model, x, own, specs, gen)
        kept = sub[0, :, 0, 0].long().tolist()  # each plane holds its band's index
        assert kept == sorted(kept) and len(kept) >= 1
        assert wave_stem(model).band_names == [specs[i].name for i in kept]
        assert torch.equal(sub_own, own[:, kept])
        if i < 4:
            assert model(sub, sub_own).shape == (2, 3)
        whole += len(kept) == len(specs)
    assert 5 <= whole <= 19, whole


def test_named_sub_sensors_are_the_run_bands_nearest_to_theirs():
    """train.sub_sensors: each preset becomes the Sentinel-2 bands its own bands would fill (match_bands: the
    RGB camera's red, 600 nm, is too far from B04's 665 to fill it); a layout named twice is drawn as one, and
    the run's own sensor, which fills every band, is no sub-sensor."""
    from edgecnn.core.sensors import resolve_bands, sub_sensor_layouts

    s2 = resolve_bands("sentinel2")
    names = [b.name for b in s2]
    layouts = sub_sensor_layouts(["planetscope", "planetscope_ps2", "rgb", "sentinel2", "landsat8", "landsat9"], s2)
    assert [[names[i] for i in k] for k in layouts] == [
        ["B02", "B03", "B04", "B8A"], ["B02", "B03", "B04", "B08"], ["B02", "B03"],
        ["B02", "B03", "B04", "B8A", "B11", "B12"]]
    every = sub_sensor_layouts(["all"], s2)
    assert all(k in every for k in layouts) and all(0 < len(k) < len(s2) for k in every)


def test_named_sub_sensors_make_every_sub_sensor_batch():
    from edgecnn.train.loop import _as_sub_sensor

    model, specs, gen, x = _sentinel2_wave(8)
    drawn = [_as_sub_sensor(model, x, None, specs, gen, [[0, 1, 2, 7]])[0][0, :, 0, 0].long().tolist()
             for _ in range(400)]
    # Half the batches the whole sensor, the other half the one named layout, never a random subset.
    assert {tuple(k) for k in drawn} == {(0, 1, 2, 7), tuple(range(len(specs)))}
    assert 160 <= sum(k == [0, 1, 2, 7] for k in drawn) <= 240


def test_sub_sensors_that_give_no_sub_sensor_are_said():
    """Naming only sensors with every band of the run (its own) or none of them would silently leave the
    sub-sensors random: training says so, naming the source, and stays quiet when one layout exists."""
    from edgecnn.train.loop import Data, _no_sub_sensor

    def said(names):
        recipe = load_recipe("recipes/cross_sensor.yaml",
                             ["train.band_subsets=sensors", f"train.sub_sensors=[{names}]"])
        return _no_sub_sensor(recipe, Data(None, None, [], recipe, None))

    assert "drawn at random" in said("sentinel2") and "the run" in said("sentinel2")
    assert said("sentinel2,planetscope") is None


def test_sub_sensors_need_band_subsets_sensors_and_known_presets():
    proc = cli("validate", "recipes/cross_sensor.yaml", "train.sub_sensors=[planetscope]")
    _one_line_refusal(proc, "train.sub_sensors", "band_subsets=sensors")
    proc = cli("validate", "recipes/cross_sensor.yaml", "train.band_subsets=sensors", "train.sub_sensors=[landsat88]")
    _one_line_refusal(proc, "landsat88", "did you mean")


@pytest.mark.slow
def test_a_run_trained_over_sub_sensors_validates_exports_and_qats_on_its_own_bands(wave, tmp_path):
    """Training switches the stem to each batch's sub-sensor; validation after each epoch, the checkpoint,
    the export and QAT must see the run's own bands again (they would fail on a stem left at a subset)."""
    run = tmp_path / "subs"
    cli("train", "recipes/quickstart.yaml", *TINY, "model.name=cnn_attn_wave", "model.heads=2", "data.source=folder",
        f"data.root={wave['sentinel2']}", "data.bands=sentinel2", "data.mean=null", "data.std=null",
        "data.image_size=32", "train.epochs=1", "train.band_subsets=sensors", "train.sub_sensors=[planetscope]",
        "--out", str(run), check=True)
    cli("export", str(run), "--target", "onnx", "--bands", "planetscope", "--data-root", str(wave["planetscope"]),
        check=True)
    side = json.loads((run / "export" / "cnn_attn_wave-onnx-fp32-planetscope.onnx.json").read_text())
    assert side["inputs"][0]["shape"][1] == 4 and side["parity"]["max_abs_logit_diff"] < 1e-3
    # QAT's graph has one stored stem for the run's own bands: it trains over masked subsets instead.
    cli("qat", str(run), "--target", "xnnpack", "--epochs", "1", check=True)
    qat = (run / "qat-xnnpack" / "recipe.yaml").read_text()
    assert "band_subsets: per_sample" in qat and "sub_sensors: []" in qat
