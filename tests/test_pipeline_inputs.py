"""`edgecnn run` never reuses a stale result: a changed input re-runs its stage or is refused by key.

One small chain (train -> PTQ ONNX export -> bench) re-run with one input changed at a time.
"""

import json
from pathlib import Path

import pytest

from conftest import TINY, cli

BASE = [*TINY, "pipeline.stages=[train, export, bench]", "pipeline.export=[{target: onnx, int8: ptq}]",
        "pipeline.calib=8", "pipeline.bench.eager=false", "pipeline.bench.threads=1", "pipeline.bench.warmup=0",
        "pipeline.bench.iters=3", "pipeline.bench.rounds=1"]
ARTIFACT = "export/cnn_attn-onnx-int8.onnx"


def run(out: Path, *extra: str, check: bool = True):
    return cli("run", "recipes/quickstart.yaml", *BASE, *extra, "--out", str(out), check=check)


def mtimes(out: Path) -> tuple[int, int]:
    return (out / ARTIFACT).stat().st_mtime_ns, (out / "bench.json").stat().st_mtime_ns


@pytest.mark.slow
def test_changed_inputs_rerun_their_stage_or_are_refused(tmp_path: Path):
    out = tmp_path / "quick"
    run(out)
    first = mtimes(out)
    assert json.loads((out / ARTIFACT).with_suffix(".onnx.json").read_text())["quantization"]

    # Nothing changed: every stage skipped, nothing rewritten.
    proc = run(out)
    assert proc.stdout.count("skipped: ") == 3, proc.stdout
    assert mtimes(out) == first

    # A changed calibration count re-exports (and so re-times) the PTQ artifact.
    proc = run(out, "pipeline.calib=16")
    assert "pipeline.calib changed (8 -> 16)" in proc.stdout, proc.stdout
    second = mtimes(out)
    assert second[0] != first[0] and second[1] != first[1]

    # A changed bench setting re-times the same artifact.
    proc = run(out, "pipeline.calib=16", "pipeline.bench.iters=4")
    assert "bench settings changed (pipeline.bench.iters)" in proc.stdout, proc.stdout
    third = mtimes(out)
    assert third[0] == second[0] and third[1] != second[1]
    proc = run(out, "pipeline.calib=16", "pipeline.bench.iters=4")
    assert mtimes(out) == third and proc.stdout.count("skipped: ") == 3

    # A changed training input on a finished run is refused, naming the key; nothing is touched.
    proc = run(out, "pipeline.calib=16", "pipeline.bench.iters=4", "train.lr=0.5", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and "differs at: train.lr;" in errors[0] and "--out NEW_DIR" in errors[0], proc.stderr
    assert mtimes(out) == third


def test_finished_folders_are_checked_against_the_recipe(tmp_path: Path):
    """The checks alone, without training (in the fast tier)."""
    from edgecnn.config import dump_recipe, load_recipe
    from edgecnn.errors import UserError
    from edgecnn.pipeline import _same_qat_epochs, _same_recipe

    recipe = load_recipe("recipes/quickstart.yaml", TINY)
    (tmp_path / "recipe.yaml").write_text(dump_recipe(recipe))
    _same_recipe(tmp_path, load_recipe("recipes/quickstart.yaml", [*TINY, "pipeline.calib=3"]))  # pipeline: free
    with pytest.raises(UserError, match=r"differs at: train.lr, model.heads;|differs at: model.heads, train.lr;"):
        _same_recipe(tmp_path, load_recipe("recipes/quickstart.yaml", [*TINY, "train.lr=0.5", "model.heads=2"]))
    _same_qat_epochs(tmp_path / "absent", 3)
    with pytest.raises(UserError, match=r"pipeline.qat_epochs=3 but .* fine-tuned for 2 epochs"):
        _same_qat_epochs(tmp_path, 3)
    _same_qat_epochs(tmp_path, 2)
