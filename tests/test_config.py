from pathlib import Path

import pytest

from edgecnn.config import Recipe, dump_recipe, load_recipe, parse_overrides
from edgecnn.errors import UserError
from conftest import RECIPES, cli


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# edgecnn ") and path.name in first, "each recipe starts with the command that runs it"


def test_overrides_are_typed_and_applied():
    r = load_recipe(RECIPES / "quickstart.yaml", ["train.epochs=3", "data.mean=[0.1,0.2,0.3]", "model.name=cnn"])
    assert r.train.epochs == 3 and r.data.mean == [0.1, 0.2, 0.3] and r.model.name == "cnn"


def test_resolved_recipe_round_trips(tmp_path: Path):
    r = load_recipe(RECIPES / "cnn_attn.yaml")
    (tmp_path / "r.yaml").write_text(dump_recipe(r))
    assert load_recipe(tmp_path / "r.yaml") == r


def test_all_errors_are_collected_with_keys_values_and_hints():
    with pytest.raises(UserError) as e:
        load_recipe(RECIPES / "quickstart.yaml",
                    ["train.epoch=3", "train.batch_size=0", "data.source=web", "model.name=resnet35", "trian.lr=1"])
    lines = e.value.lines
    assert len(lines) == 5
    text = "\n".join(lines)
    assert "train.epoch: unknown key" in text and "did you mean 'train.epochs'" in text
    assert "train.batch_size = 0" in text and "greater than or equal to 1" in text
    assert "data.source = 'web'" in text and "'synth' or 'folder'" in text
    assert "did you mean 'resnet34'" in text
    assert "did you mean 'train'" in text


def test_unknown_key_in_file(tmp_path: Path):
    p = tmp_path / "r.yaml"
    p.write_text("name: x\ntrain:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"train.learning_rate: unknown key.*allowed here: epochs"):
        load_recipe(p)


def test_cross_field_rules():
    with pytest.raises(UserError, match="data.root"):
        load_recipe(RECIPES / "quickstart.yaml", ["data.source=folder"])
    with pytest.raises(UserError, match="mean has 2 values but std has 3"):
        load_recipe(RECIPES / "quickstart.yaml", ["data.mean=[0.5,0.5]"])
    with pytest.raises(UserError, match=r"4 bands \['R', 'G', 'B', 'NIR'\] but 3 mean/std values"):
        load_recipe(RECIPES / "quickstart.yaml", ["data.bands=[R,G,B,NIR]"])
    with pytest.raises(UserError, match="names must be unique"):
        load_recipe(RECIPES / "quickstart.yaml", ["data.bands=[R,r,B]"])
    with pytest.raises(UserError, match="model.layers.*at least one block"):
        load_recipe(RECIPES / "quickstart_dynconv.yaml", ["model.layers=[1,0,1,1]"])
    with pytest.raises(UserError, match="model.layers"):
        load_recipe(RECIPES / "quickstart_dynconv.yaml", ["model.layers=[1,1,1]"])


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    ("name: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("seed: 1\n", "name: required key is missing"),
])
def test_bad_files(tmp_path: Path, content, match):
    p = tmp_path / "r.yaml"
    if content is not None:
        p.write_text(content)
    with pytest.raises(UserError, match=match):
        load_recipe(p)


def test_bad_override_words():
    with pytest.raises(UserError, match="expected dotted.key=value"):
        parse_overrides(["train.epochs"])
    with pytest.raises(UserError, match="seed is a value, not a section"):
        load_recipe(RECIPES / "quickstart.yaml", ["seed.x=1"])


def test_cli_validate_prints_one_line_per_error_and_exits_2():
    proc = cli("validate", "recipes/quickstart.yaml", "train.epoch=3", "model.heads=abc")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 2, proc.stderr
    ok = cli("validate", "recipes/cnn_attn.yaml", "train.epochs=5")
    assert ok.returncode == 0 and "valid recipe" in ok.stdout


def test_help_does_not_import_heavy_libraries():
    """`edgecnn --help` stays instant because no command module imports torch at load time."""
    import subprocess
    import sys

    code = "import sys, edgecnn.cli; print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "train" in cli("--help").stdout


# Nine levels of nine aliases under a key the schema knows (validation walked all 9**9 of them).
LAUGHS = "name: lol\ndata:\n  classes:\n    - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"    - &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.serial  # a wall-clock bound: run alone, not beside another test process
def test_billion_laughs_is_refused_in_under_a_second(tmp_path: Path):
    import time

    p = tmp_path / "lol.yaml"
    p.write_text(LAUGHS)
    t0 = time.perf_counter()
    proc = cli("validate", str(p), timeout=20, fresh=True)
    assert time.perf_counter() - t0 < 5  # a Python start included; the refusal itself is below
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "aliases expand to more than" in proc.stderr, proc.stderr
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="billion laughs"):
        load_recipe(p)
    assert time.perf_counter() - t0 < 1


@pytest.mark.parametrize("content,match", [
    ("name: q\na: &a [*a]\n", "line 2: an alias refers to itself"),
    ("name: q\nz: " + "[" * 5000 + "]" * 5000 + "\n", "nested hundreds deep"),
])
def test_hostile_yaml_is_one_line(tmp_path: Path, content, match):
    p = tmp_path / "r.yaml"
    p.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        load_recipe(p)
    assert len(e.value.lines) == 1


def test_aliases_and_merge_keys_still_work(tmp_path: Path):
    p = tmp_path / "r.yaml"
    p.write_text("name: q\nmodel: {heads: &h 4}\ntrain: {epochs: *h, lr: 0.1}\n"
                 "pipeline: {export: [&e {target: onnx}, {<<: *e, int8: ptq}]}\n")
    r = load_recipe(p)
    assert r.train.epochs == 4 and [(e.target, e.int8) for e in r.pipeline.export] == [("onnx", "none"), ("onnx", "ptq")]


def test_duplicate_key_names_the_key_and_its_lines(tmp_path: Path):
    p = tmp_path / "r.yaml"
    p.write_text("name: q\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.5\n")
    with pytest.raises(UserError, match=r"line 5: key 'train.lr' is given twice \(lines 3 and 5\)") as e:
        load_recipe(p)
    assert len(e.value.lines) == 1
    p.write_text("name: q\nseed: 1\nname: r\n")
    with pytest.raises(UserError, match="key 'name' is given twice"):
        load_recipe(p)


def test_the_old_name_of_the_mask_attention_model_still_loads(tmp_path: Path):
    """Run folders written before the rename store model.name resnet34_dynconv_pruned: they must still load,
    as the new name, so a resumed or re-exported old run builds the same model."""
    recipe = load_recipe(RECIPES / "quickstart_dynconv.yaml", ["model.name=resnet34_dynconv_pruned"])
    assert recipe.model.name == "resnet34_dynconv_mask"
    assert "model:\n  name: resnet34_dynconv_mask" in dump_recipe(recipe)
