"""The Python API (``edgecnn.api``): the quickstart chain driven from Python, typed results, UserError."""

from pathlib import Path

import pytest

from conftest import TINY


def test_bad_input_raises_user_error_not_exit(tmp_path: Path):
    from edgecnn import UserError
    from edgecnn import api as ec

    with pytest.raises(UserError) as e:
        ec.train("quickstart", ["train.epoch=1", "model.heads=abc"], out=tmp_path / "r")
    assert len(e.value.lines) == 2 and any("did you mean 'train.epochs'" in line for line in e.value.lines)
    with pytest.raises(UserError, match="did you mean 'quickstart'"):
        ec.run("quickstar", out=tmp_path / "r")
    with pytest.raises(UserError, match="not a run folder"):
        ec.export(tmp_path, target="onnx")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_quickstart_chain_from_python(tmp_path: Path):
    from edgecnn import api as ec
    from edgecnn.config import load_recipe

    run = ec.train("quickstart", [*TINY, "train.epochs=1"], out=tmp_path / "q", quiet=True)
    assert isinstance(run, ec.TrainResult) and run.path == tmp_path / "q" and run.epochs == 1
    assert (run.path / "best.pt").is_file() and 0 <= run.best_accuracy <= 1
    # A Recipe object works too, and a finished run is not silently retrained.
    recipe = load_recipe("recipes/quickstart.yaml", TINY)
    with pytest.raises(ec.UserError, match="already holds a run"):
        ec.train(recipe, {"train.epochs": 1}, out=run.path)

    art = ec.export(run.path, target="onnx")
    assert isinstance(art, ec.ExportResult) and art.path.suffix == ".onnx" and art.path.is_file()
    assert art.sidecar_path.is_file() and art.sidecar["target"] == "onnx" and 0 <= art.accuracy <= 1

    b = ec.bench([art.path], threads=1, warmup=1, iters=3, rounds=1, json_path=tmp_path / "bench.json")
    assert isinstance(b, ec.BenchResult) and b.path == tmp_path / "bench.json" and b.path.is_file()
    assert [r["error"] for r in b.rows] == [None] and b.rows[0]["latency_ms_p50"] > 0

    rep = ec.report([run.path, art.path, b.path], out=tmp_path / "report")
    assert isinstance(rep, ec.ReportResult) and (rep.path / "report.html").is_file()
    assert any(r.get("latency_ms_p50") for r in rep.rows)
