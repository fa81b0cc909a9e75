"""`edgecnn sweep`: latency from random weights first, training only for variants that can fit.

The end-to-end test sweeps two models x two input sizes (16 and 128 pixels: about 60x apart in MACs)
on the built-in dataset, ONNX fp32 only. The budget is not a guess about this machine: the test first
runs the sweep's own latency phase (``--latency-only``), puts the budget between the two sizes' measured
intervals, then runs the sweep in the same folder, which reuses those very measurements.
"""

import json
import math
from pathlib import Path

import pytest

from conftest import TINY, cli
from sshd import sshd  # noqa: F401  (a fixture)

SETTINGS = [*TINY, "train.epochs=1", "pipeline.bench.threads=1", "pipeline.bench.iters=20",
            "pipeline.bench.warmup=2", "pipeline.bench.rounds=2"]
GRID = ["--vary", "model.name=cnn_attn,cnn", "--vary", "data.image_size=16,128", "--targets", "onnx",
        "--precisions", "fp32"]
SMALL, LARGE = ["cnn_attn-16", "cnn-16"], ["cnn_attn-128", "cnn-128"]


def test_bad_grid_fails_before_anything_runs(tmp_path: Path):
    out = tmp_path / "sweep"
    proc = cli("sweep", "recipes/quickstart.yaml", "train.epohcs=1", "--vary", "model.name=cnn_atn,cnn",
               "--vary", "data.image_size=4,32", "--vary", "data.mean=", "--vary", "model.nme=cnn",
               "--targets", "onnx,tflite", "--budget-ms", "5", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    for expected in ("train.epohcs: unknown key", "--vary model.name=cnn_atn", "did you mean 'cnn_attn'",
                     "--vary data.image_size=4", "--vary data.mean: no values", "--vary model.nme=cnn",
                     "did you mean 'model.name'", "--targets 'tflite'"):
        assert any(expected in line for line in lines), (expected, lines)
    assert not out.exists()


@pytest.mark.slow
def test_sweep_never_trains_what_cannot_fit_and_recommends_the_most_accurate_fit(tmp_path: Path):
    out = tmp_path / "sweep"
    base = ["sweep", "recipes/quickstart.yaml", *SETTINGS, *GRID, "--out", str(out)]

    # The latency phase alone: every variant timed from random weights, nothing trained.
    cli(*base, "--budget-ms", "1000", "--latency-only", check=True)
    probe = json.loads((out / "sweep.json").read_text())
    assert not any((out / v / "last.pt").exists() for v in SMALL + LARGE)
    hi = {c["variant"]: c["latency_ms_ci"][1] for c in probe["candidates"]}
    lo = {c["variant"]: c["latency_ms_ci"][0] for c in probe["candidates"]}
    fast, slow = max(hi[v] for v in SMALL), min(lo[v] for v in LARGE)
    assert fast < slow, f"16 px and 128 px latencies overlap on this machine: {probe['candidates']}"
    budget = round(math.sqrt(fast * slow), 4)  # between the two groups, on a log scale

    proc = cli(*base, "--budget-ms", str(budget), check=True)
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["budget_ms"] == budget
    # The probes were reused, not measured again.
    assert {c["variant"]: c["probe_latency_ms_ci"][1] for c in doc["candidates"]} == hi

    # The variants above the budget were never trained; the others are complete edgecnn run folders.
    for v in LARGE:
        assert not (out / v).exists(), v
        assert (out / "latency" / v / "bench.json").is_file()
    for v in SMALL:
        assert (out / v / "last.pt").is_file() and (out / v / "bench.json").is_file()
    t = doc["trainings"]
    assert (t["variants"], t["variants_trained"], t["variants_saved"], t["saved"]) == (4, 2, 2, 2)
    assert sorted(t["never_trained"]) == sorted(LARGE)
    by_id = {c["id"]: c for c in doc["candidates"]}
    assert all(not by_id[f"{v} onnx fp32"]["trained"] for v in LARGE)

    # The recommendation: the most accurate candidate whose latency interval ends within budget;
    # any candidate whose accuracy interval overlaps the best one's and is faster would have won.
    fitting = [c for c in doc["candidates"] if c["fits"]]
    assert fitting and all(c["latency_ms_ci"][1] <= budget and c["trained"] for c in fitting)
    rec = doc["recommendation"]
    best = max(c["accuracy"] for c in fitting)
    best_lo = max(c["accuracy_ci"][0] for c in fitting if c["accuracy"] == best)
    assert rec["id"] in {c["id"] for c in fitting}
    assert rec["accuracy_ci"][1] >= best_lo
    assert all(c["latency_ms_p50"] >= rec["latency_ms_p50"] for c in fitting if c["accuracy_ci"][1] >= best_lo)
    lo_acc, hi_acc = rec["accuracy_ci"]
    assert lo_acc <= rec["accuracy"] <= hi_acc and rec["images"] == 12  # 3 classes x 4 val images

    # The terminal ends with the recommendation and the command that re-creates its artifact.
    last = proc.stdout.strip().splitlines()[-2:]
    assert last[0].startswith("recommendation: ") and rec["variant"] in last[0], last
    assert last[1].startswith("edgecnn run recipes/quickstart.yaml") and "pipeline.export=[{target: onnx}]" in last[1]
    assert doc["recreate"] == last[1]

    # The report of the sweep folder: the sweep plot with the budget and the recommendation, trained variants only.
    plots = json.loads((out / "report" / "plots.json").read_text())
    sweep_plot = next(p for p in plots if p["kind"] == "sweep")
    assert sweep_plot["budget_ms"] == pytest.approx(budget)
    assert sweep_plot["recommended"]["name"] == rec["id"]
    never = next(s for s in sweep_plot["series"] if s["label"].startswith("never trained"))
    assert sorted(p["name"] for p in never["points"]) == sorted(f"{v} onnx fp32" for v in LARGE)
    rows = json.loads((out / "report" / "results.json").read_text())["rows"]
    assert rows and all("/latency/" not in (r.get("artifact") or "") for r in rows)

    # Run again: nothing is trained, exported or timed again.
    stamps = {v: (out / v / "last.pt").stat().st_mtime_ns for v in SMALL}
    cli(*base, "--budget-ms", str(budget), check=True)
    assert {v: (out / v / "last.pt").stat().st_mtime_ns for v in SMALL} == stamps


def _cand(name: str, acc: float, lat: float, n: int = 100, fits: bool = True, emulated=None) -> dict:
    from edgecnn.core.stats import wilson

    return {"id": name, "variant": name, "overrides": {"model.name": name}, "precision": "fp32", "target": "onnx",
            "accuracy": acc, "accuracy_ci": list(wilson(acc * n, n)), "latency_ms_p50": lat,
            "latency_ms_ci": [lat * 0.9, lat * 1.1], "size_mb": 1.0, "fits": fits, "trained": True,
            "emulated": emulated}


def test_recommendation_rule():
    from edgecnn.core.stats import wilson
    from edgecnn.sweep import recommend

    lo, hi = wilson(90, 100)
    assert lo < 0.9 < hi and (round(lo, 3), round(hi, 3)) == (0.826, 0.945)  # Wilson 95% for 90/100
    # The most accurate fit wins when its interval stands apart; one that does not fit never wins.
    cands = [_cand("a", 0.95, 5.0, n=2000), _cand("b", 0.80, 1.0, n=2000), _cand("c", 0.99, 0.5, n=2000, fits=False)]
    assert recommend(cands)["id"] == "a"
    # Overlapping accuracy intervals are a tie: the fastest of the tied wins.
    cands = [_cand("a", 0.92, 5.0, n=50), _cand("b", 0.90, 1.0, n=50)]
    rec = recommend(cands)
    assert rec["id"] == "b" and rec["tied_with"] == ["a"] and rec["most_accurate"] == "a"
    assert recommend([_cand("a", 0.9, 9.0, fits=False)]) is None


def test_emulated_timings_are_said():
    from edgecnn.sweep import _recommendation_line, recommend

    cands = [_cand("a", 0.9, 5.0, emulated=True)]
    doc = {"budget_ms": 10.0, "device": "ssh://pi@board", "metric": "accuracy", "candidates": cands,
           "recommendation": recommend(cands), "emulated": True}
    line = _recommendation_line(doc, latency_only=False)
    assert line.startswith("recommendation: a ") and "rests on emulated timings" in line


@pytest.mark.slow
def test_sweep_times_on_a_board_over_ssh(tmp_path: Path, sshd, monkeypatch):  # noqa: F811
    """The latency phase over ssh:// (this machine through a real sshd, as in test_bench_remote)."""
    import sys

    monkeypatch.setenv("EDGECNN_SSH_OPTS", sshd.opts())
    monkeypatch.setenv("EDGECNN_SSH_PYTHON", sys.executable)
    out = tmp_path / "sweep"
    proc = cli("sweep", "recipes/quickstart.yaml", *SETTINGS, "--vary", "model.name=cnn", "--targets", "onnx",
               "--precisions", "fp32", "--budget-ms", "1000", "--device", sshd.url, "--latency-only",
               "--out", str(out), check=True)
    doc = json.loads((out / "sweep.json").read_text())
    (c,) = doc["candidates"]
    assert c["device"].startswith("ssh://") and c["latency_ms_p50"] > 0 and c["status"].startswith("within reach")
    assert doc["device"] == sshd.url and "latency only: 1 candidates within reach" in proc.stdout


@pytest.mark.slow
def test_band_robust_models_are_sweep_candidates(tmp_path: Path):
    """The edge model and its ablation take part in a sweep with no special case: their mask-input
    artifacts are exported from random weights and timed like any other (latency phase only)."""
    out = tmp_path / "sweep"
    bands = ["data.bands=[R,G,B,NIR]", "data.mean=[0.5,0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25,0.25]",
             "train.band_subsets=per_sample"]
    proc = cli("sweep", "recipes/quickstart.yaml", *SETTINGS, *bands, "--vary",
               "model.name=cnn_attn_dynconv_mask,cnn_dynconv_mask", "--targets", "onnx", "--precisions", "fp32",
               "--budget-ms", "1000", "--latency-only", "--out", str(out), check=True)
    doc = json.loads((out / "sweep.json").read_text())
    assert {c["variant"] for c in doc["candidates"]} == {"cnn_attn_dynconv_mask", "cnn_dynconv_mask"}
    for c in doc["candidates"]:
        assert c["latency_ms_p50"] > 0 and c["status"].startswith("within reach"), c
        (sidecar,) = (out / "latency" / c["variant"] / "export").glob("*.onnx.json")
        assert json.loads(sidecar.read_text())["inputs"][1]["name"] == "mask"  # one artifact, every subset
    assert "latency only: 2 candidates within reach" in proc.stdout
