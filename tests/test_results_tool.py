"""tools/results.py: docs/results.md from bench/eval JSON, each table stamped with where it was measured."""
import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import results  # noqa: E402


def _row(name, runtime, version, p50, **kw):
    row = {"cpu_vendor": "AuthenticAMD", "cpu_family": 26, "name": name, "kind": "artifact", "runtime": runtime, "runtime_version": version, "threads": 2,
           "cpu_model": "AMD EPYC 9R45", "cores": 2, "isa": ["avx2", "fma", "avx512f", "avx512_vnni"],
           "latency_ms_p50": p50, "latency_ms_p50_ci_low": p50 * 0.99, "latency_ms_p50_ci_high": p50 * 1.01,
           "latency_ms_p99": p50 * 1.5, "ratio_vs_ref": p50 / 1.66, "size_mb": 1.27, "gmacs_per_s": 660.5,
           "timestamp": "2026-12-02T14:00:00Z", "edgecnn_version": "0.1.0"}
    return {**row, **kw}


def test_results_stamps_every_section_and_keeps_earlier(tmp_path):
    run = tmp_path / "qs"
    (run / "qat-xnnpack").mkdir(parents=True)
    rows = [_row("cnn_attn-eager-fp32", "torch", "2.13.0+cpu", 1.66, kind="eager"),
            _row("cnn_attn-executorch-int8", "executorch", "1.4.1", 0.170)]
    (run / "bench.json").write_text(json.dumps({"edgecnn_bench": 1, "rows": rows}))
    (run / "env.json").write_text(json.dumps({"cpu": "AMD EPYC 9R45", "cores": 2, "packages": {"torch": "2.13.0"}}))
    (run / "eval.json").write_text(json.dumps({"model": "cnn_attn", "epoch": 6, "accuracy": 0.968, "f1": 0.9679,
                                               "images": 500, "params": 1228938, "macs": 113000000}))
    (run / "qat-xnnpack" / "eval.json").write_text(json.dumps({"model": "cnn_attn", "accuracy": 0.96}))
    (run / "pipeline.json").write_text(json.dumps({"stages": [{"stage": "train", "status": "done", "seconds": 37.4}]}))
    other = tmp_path / "pi.json"
    other.write_text(json.dumps({"rows": [_row("cnn_attn-onnx-int8", "onnxruntime", "1.32.0", 28.0,
                                               cpu_model="Cortex-A76", cores=4, cpu_vendor=None, cpu_family=None, isa=["asimd", "asimddp"])]}))
    out = tmp_path / "results.md"
    out.write_text("old\n" + results.MARKER + "\n## Earlier: Zen 3 at abc1234\n\n| x | 1.36 ms |\n")

    assert results.main([str(run), str(other), "--out", str(out), "--commit", "abc1234-dirty",
                         "--note", "load average 3.07"]) == 0
    text = out.read_text()
    head = text.split(results.MARKER)[0]
    assert "old" not in head
    assert head.count("- commit: abc1234-dirty") == 2
    assert "AMD EPYC 9R45 (family 26, Zen 5), 2 cores; ISA flags: avx2, fma, avx512f, avx512_vnni" in head
    assert "Cortex-A76, 4 cores; ISA flags: asimd, asimddp" in head
    assert "torch 2.13.0; runtimes: executorch 1.4.1" in head
    assert "onnxruntime 1.32.0" in head and "load average 3.07" in head and "- date: " in head
    assert "| 0.17 [0.168, 0.172] |" in head            # a figure with its interval
    assert "| . | cnn_attn | 6 | 96.8% |" in head and "| qat-xnnpack |" in head
    assert "| train | done | 37.4 |" in head
    assert text.endswith("## Earlier: Zen 3 at abc1234\n\n| x | 1.36 ms |\n")   # kept, not regenerated


def test_dirty_mark_comes_from_git(tmp_path):
    assert results.git_commit(tmp_path) == "unknown"      # not a repository
    commit = results.git_commit()
    assert commit == "unknown" or len(commit.split("-")[0]) >= 7


def test_stage_timings_from_the_run_log():
    log = "│ step │ status │ seconds │\n│ train                        │ done   │    37.4 │\n│ total │  │  196.0 │\n"
    assert results.stages_from_log(log) == [{"stage": "train", "status": "done", "seconds": 37.4}]
