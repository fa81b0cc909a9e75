"""`edgecnn run`: the whole chain (train -> QAT -> export -> bench -> report) on the built-in dataset.

This is the end-to-end test of the toolkit: every stage is the real one (real
training, NNCF QAT, the ONNX Runtime, OpenVINO and ExecuTorch exporters with
their runtimes' parity checks, runner processes timing the artifacts, the
report files), on a tiny recipe so it fits CI's two cores.
"""

import json
from pathlib import Path

import pytest

from conftest import TINY, cli

PIPELINE = [
    "pipeline.stages=[train, qat, export, bench, report]", "pipeline.qat=[openvino]", "pipeline.qat_epochs=1",
    "pipeline.export=[{target: onnx}, {target: executorch, int8: ptq}, {target: openvino, int8: qat}]",
    "pipeline.calib=16", "pipeline.bench.iters=6", "pipeline.bench.warmup=1", "pipeline.bench.rounds=2",
    "pipeline.bench.threads=1",
]
ARTIFACTS = ["export/cnn_attn-onnx-fp32.onnx", "export/cnn_attn-executorch-int8.pte",
             "qat-openvino/export/cnn_attn-openvino-int8.xml"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("pipeline") / "quick"
    proc = cli("run", "recipes/quickstart.yaml", *TINY, *PIPELINE, "--out", str(out), check=True)
    return out, proc.stdout


def test_every_stage_writes_its_files(chain):
    out, stdout = chain
    for name in ("last.pt", "eval.json", "qat-openvino/last.pt", "qat-openvino/eval.json", "bench.json",
                 "report/report.html", "report/results.json", "pipeline.json", *ARTIFACTS):
        assert (out / name).is_file(), name
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [r["name"] for r in rows][0] == "cnn_attn-eager-fp32"  # the reference first
    timed = {Path(r["artifact"]).resolve() for r in rows if r["kind"] == "artifact"}
    assert timed == {(out / a).resolve() for a in ARTIFACTS}
    assert all(r["error"] is None and r["latency_ms_p50"] > 0 for r in rows), [r["error"] for r in rows]
    # The headline table and the report's path end the output; every step is in the summary.
    assert "accuracy vs cost" in stdout and str(out / "report" / "report.html") in stdout
    for step in ("train", "qat openvino", "export onnx fp32", "export executorch int8 (PTQ)",
                 "export openvino int8 (QAT)", "bench", "report"):
        assert step in stdout, step


def test_report_joins_the_chain(chain):
    out, _ = chain
    report = json.loads((out / "report" / "results.json").read_text())
    by_artifact = {Path(r["artifact"]).resolve(): r for r in report["rows"] if r.get("artifact")}
    for a in ARTIFACTS:
        row = by_artifact[(out / a).resolve()]
        sidecar = json.loads((out / (a + ".json")).read_text())
        assert row["accuracy"] == pytest.approx(sidecar["parity"]["artifact"]["accuracy"])
        assert row["latency_ms_p50"] is not None and row["macs"] is not None


def test_second_run_skips_finished_stages_and_redoes_a_missing_artifact(chain):
    out, _ = chain
    stamps = {a: (out / a).stat().st_mtime_ns for a in ARTIFACTS}
    bench_before = (out / "bench.json").read_text()
    proc = cli("run", "recipes/quickstart.yaml", *TINY, *PIPELINE, "--out", str(out), check=True)
    assert proc.stdout.count("skipped") >= 6, proc.stdout
    assert {a: (out / a).stat().st_mtime_ns for a in ARTIFACTS} == stamps
    assert (out / "bench.json").read_text() == bench_before

    # An artifact lost (or damaged) since: only it is exported again, and the bench re-times the set.
    (out / ARTIFACTS[0]).unlink()
    proc = cli("run", "recipes/quickstart.yaml", *TINY, *PIPELINE, "--out", str(out), check=True)
    assert (out / ARTIFACTS[0]).is_file()
    assert all((out / a).stat().st_mtime_ns == stamps[a] for a in ARTIFACTS[1:])
    assert (out / "bench.json").read_text() != bench_before


def test_bad_pipeline_is_one_line(tmp_path: Path):
    proc = cli("run", "recipes/quickstart.yaml", *TINY, "pipeline.export=[{target: onnx, int8: qat}]",
               "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "onnx has no QAT backend" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("run", "recipes/quickstart.yaml", *TINY, "pipeline.stages=[export]", "--out", str(tmp_path / "y"))
    assert proc.returncode == 2 and "no trained run" in proc.stderr
