"""``edgecnn bench`` on this machine: real runtimes in real runner processes, the eager reference beside them.

The suite's tiny cnn_attn run (trained and exported once, conftest.tiny_run) is read here (fp32 and
INT8 for ExecuTorch, OpenVINO and ONNX); one ``edgecnn bench`` invocation with
``--eager`` and ``--profile`` then times all six artifacts and the PyTorch
model, and most tests read its rows. Timings are never compared with a
constant (this machine is shared): only their shape (positive, ordered
percentiles, the reference's ratio of 1) is checked.

One stand-in, said where it is used: ExecuTorch's pip wheel records no ETDump
events, so ETDump parsing is checked on an ETDump written with ExecuTorch's own
serializer, not by a runtime.
"""

import ast
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli, tiny_artifact

TARGETS = ("executorch", "openvino", "onnx")
RUNNER = ROOT / "edgecnn" / "bench" / "runner.py"
# The row contract (docs/contracts.md).
FIELDS = {
    "name", "kind", "artifact", "sidecar", "run", "model", "target", "precision", "runtime", "runtime_version",
    "runtime_note", "device", "device_desc", "cpu_model", "cores", "governor", "freq_mhz", "temp_c", "board",
    "throttled", "threads", "batch", "warmup", "iters", "input_shape", "latency_ms_p50", "latency_ms_p90",
    "latency_ms_p99", "latency_ms_mean", "latency_ms_min", "latency_ms_std", "cv", "throughput_ips", "peak_rss_mb",
    "size_mb", "ratio_vs_ref", "harness_overhead_pct", "warning", "error", "profile", "timestamp", "edgecnn_version",
}


@pytest.fixture(scope="module")
def run(tiny_run) -> Path:
    """The suite's tiny quickstart run (conftest.tiny_run): six artifacts in run/export, three targets, fp32
    and INT8. Read only."""
    assert {p for p in (tiny_run / "export").iterdir() if p.suffix in (".pte", ".xml", ".onnx")} == \
        {tiny_artifact(tiny_run, t, int8) for t in TARGETS for int8 in (False, True)}
    return tiny_run


@pytest.fixture(scope="module")
def benched(run, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    """``edgecnn bench RUN/export --eager RUN --profile --json ...``: (the process, the JSON document)."""
    out = tmp_path_factory.mktemp("bench-out") / "rows.json"
    proc = cli("bench", str(run / "export"), "--eager", str(run), "--iters", "6", "--warmup", "1", "--rounds", "2",
               "--threads", "1", "--profile", "--json", str(out), check=True)
    return proc, json.loads(out.read_text())


def rows_by_name(doc: dict) -> dict[str, dict]:
    return {r["name"]: r for r in doc["rows"]}


def test_one_row_per_artifact_and_the_reference(benched, run):
    proc, doc = benched
    assert doc["edgecnn_bench"] == 1 and doc["created"] and doc["command"][:2] == ["edgecnn", "bench"]
    rows = rows_by_name(doc)
    expected = {f"cnn_attn-{t}-{p}" for t in TARGETS for p in ("fp32", "int8")} | {"cnn_attn-eager-fp32"}
    assert set(rows) == expected
    assert doc["rows"][0]["name"] == "cnn_attn-eager-fp32"  # the reference comes first
    for row in doc["rows"]:
        assert FIELDS <= set(row), (row["name"], FIELDS - set(row))
        assert row["error"] is None, (row["name"], row["error"])
        assert row["threads"] == 1 and row["batch"] == 1 and row["iters"] == 6 and row["warmup"] == 1
        assert row["input_shape"] == [1, 3, 16, 16]
        assert row["device"] == "local" and row["device_desc"] and row["cores"] >= 1
        assert row["runtime_version"] and row["edgecnn_version"] and row["timestamp"]
        assert row["rounds"] == 2
    for t in TARGETS:
        for p in ("fp32", "int8"):
            row = rows[f"cnn_attn-{t}-{p}"]
            assert row["kind"] == "artifact" and row["target"] == t and row["precision"] == p
            assert row["runtime"] == {"onnx": "onnxruntime"}.get(t, t)
            assert Path(row["artifact"]).is_file() and row["sidecar"] == row["artifact"] + ".json"
            assert row["run"] == str(run) and row["model"] == "cnn_attn"
    eager = rows["cnn_attn-eager-fp32"]
    assert eager["kind"] == "eager" and eager["runtime"] == "torch" and eager["artifact"] is None
    assert eager["size_mb"] is None and eager["run"] == str(run.resolve())
    # OpenVINO says which precision it ran: the sidecar's f32 hint.
    assert "INFERENCE_PRECISION_HINT=f32" in rows["cnn_attn-openvino-fp32"]["runtime_note"]
    assert "threadpool 1 threads" in rows["cnn_attn-executorch-int8"]["runtime_note"]


def test_latency_figures_are_consistent(benched):
    _, doc = benched
    for row in doc["rows"]:
        name = row["name"]
        assert 0 < row["latency_ms_min"] <= row["latency_ms_p50"] <= row["latency_ms_p90"] <= row["latency_ms_p99"], name
        assert row["latency_ms_min"] <= row["latency_ms_mean"] and row["latency_ms_std"] >= 0
        assert row["cv"] == pytest.approx(row["latency_ms_std"] / row["latency_ms_mean"])
        assert row["throughput_ips"] == pytest.approx(1000 / row["latency_ms_mean"])
        assert row["peak_rss_mb"] > 10 and row["import_rss_mb"] <= row["peak_rss_mb"]
        assert isinstance(row["harness_overhead_pct"], float)
        assert row["round_p50_spread_pct"] >= 0
        # Every percentile carries its 95% interval; with 2 rounds it is the order-statistic one.
        for q in ("p50", "p90", "p99"):
            assert row[f"latency_ms_{q}_ci_low"] <= row[f"latency_ms_{q}"] <= row[f"latency_ms_{q}_ci_high"], name
        assert row["ci_method"].startswith("order statistics") and row["calls"] == 6 and row["calls_per_sample"] == 1
        assert any("p99 rests on 6 samples" in n for n in row["stat_notes"]), row["stat_notes"]
        assert row["macs"] > 0 and row["gmacs_per_s"] == pytest.approx(row["macs"] / row["latency_ms_p50"] / 1e6)


def test_ratios_are_against_the_eager_row(benched):
    _, doc = benched
    rows = rows_by_name(doc)
    ref = rows["cnn_attn-eager-fp32"]
    assert ref["ratio_vs_ref"] == 1.0 and ref["distinguishable_from_ref"] is None
    for row in doc["rows"]:
        assert row["ratio_vs_ref"] == pytest.approx(row["latency_ms_p50"] / ref["latency_ms_p50"])
        assert row["ratio_ci_low"] <= row["ratio_vs_ref"] <= row["ratio_ci_high"]
        if row is not ref:  # not distinguishable exactly when the two medians' intervals overlap
            apart = row["latency_ms_p50_ci_low"] > ref["latency_ms_p50_ci_high"] or \
                row["latency_ms_p50_ci_high"] < ref["latency_ms_p50_ci_low"]
            assert row["distinguishable_from_ref"] is apart
            assert (ref["name"] in row["indistinguishable_from"]) is (not apart)


def test_size_is_the_artifact_files(benched):
    _, doc = benched
    for row in doc["rows"]:
        if row["kind"] != "artifact":
            continue
        side = json.loads(Path(row["sidecar"]).read_text())
        files = [Path(row["artifact"]).parent / name for name in side["files"]]
        assert row["size_mb"] == pytest.approx(sum(f.stat().st_size for f in files) / 1e6)
        if row["target"] == "openvino":
            assert len(files) == 2  # .xml and .bin


def test_table_and_summary_on_the_terminal(benched):
    proc, doc = benched
    out = proc.stdout
    for row in doc["rows"]:
        assert row["name"] in out
    assert "x ref: the median over cnn_attn-eager-fp32's" in out and "1.000 ±0.000" in out
    assert "harness overhead vs a plain loop" in out and "round medians spread" in out
    assert "intervals: order statistics over calls" in out
    assert f"wrote {len(doc['rows'])} rows to" in out


def test_default_bench_times_by_duration(run, tmp_path):
    """Without --iters: warm-up until the latency settles, rounds by duration, short calls timed in batches,
    the median's interval from the rounds, heat per round, and a table that fits 100 columns."""
    out = tmp_path / "rows.json"
    env_cols = {"COLUMNS": "100"}
    proc = cli("bench", str(run / "export" / "cnn_attn-onnx-int8.onnx"), str(run / "export" / "cnn_attn-executorch-int8.pte"),
               "--min-time", "0.2", "--rounds", "3", "--threads", "1", "--json", str(out), check=True, env=env_cols)
    rows = json.loads(out.read_text())["rows"]
    for row in rows:
        assert row["error"] is None and row["iters"] is None and row["min_time_s"] == 0.2 and row["rounds"] == 3
        assert row["warmup_calls"] > 0 and row["warmup_settled"] in (True, False)
        assert row["ci_method"] == "two-stage bootstrap over 3 rounds"
        assert row["latency_ms_p50_ci_low"] <= row["latency_ms_p50"] <= row["latency_ms_p50_ci_high"]
        # Each round lasted at least 0.2 s: calls x latency (the batch means add up to the time measured).
        assert row["calls"] * row["latency_ms_mean"] >= 3 * 0.2 * 1000 * 0.99
        if row["latency_ms_p50"] < 1.0:  # a 16x16 model: calls well under a millisecond are batched
            assert row["calls_per_sample"] > 1 and row["calls"] == row["samples"] * row["calls_per_sample"]
            assert row["percentile_basis"] == f"means of {row['calls_per_sample']} consecutive calls"
        assert len(row["round_temp_c"]) == len(row["round_freq_mhz"]) == 3
        assert row["isa"] is not None and row["macs"] > 0 and row["gmacs_per_s"] > 0
    for line in proc.stdout.splitlines():
        assert len(line) <= 100, line
    for row in rows:
        assert row["name"] in proc.stdout  # names are not wrapped


def test_profiles_of_every_runtime(benched):
    """OpenVINO, ONNX Runtime and torch give top ops; ExecuTorch's wheel gives a note saying how to get them."""
    proc, doc = benched
    for row in doc["rows"]:
        prof = row["profile"]
        assert prof is not None, row["name"]
        if row["runtime"] == "executorch" and not prof["top_ops"]:
            # The pip wheel is built without the event tracer: nothing to read, and the row says why.
            assert prof["source"] == "etdump" and "EXECUTORCH_ENABLE_EVENT_TRACER" in prof["note"]
            continue
        ops = prof["top_ops"]
        assert ops, row["name"]
        assert all(op["ms"] >= 0 and 0 <= op["share"] <= 1 for op in ops)
        assert [op["ms"] for op in ops] == sorted((op["ms"] for op in ops), reverse=True)
        assert sum(op["share"] for op in ops) <= 1.001  # each share rounded to 4 places
        assert prof["source"] == {"openvino": "openvino perf counters", "onnxruntime": "onnxruntime profiler",
                                  "torch": "torch profiler", "executorch": "etdump"}[row["runtime"]]
    ops = {r["runtime"]: {op["op"] for op in r["profile"]["top_ops"]} for r in doc["rows"] if r["precision"] == "fp32"}
    assert "Convolution" in ops["openvino"] and "Conv" in ops["onnxruntime"]
    assert "cnn_attn-onnx-int8 (onnxruntime profiler)" in proc.stdout


def test_a_failing_runtime_gives_an_error_row(run, tmp_path):
    """A damaged .onnx (its sidecar matching it) fails in its own row; the others, same file names included, run."""
    good = run / "export" / "cnn_attn-onnx-int8.onnx"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model" * 100)
    side = json.loads(Path(f"{good}.json").read_text())
    side.update(artifact=broken.name, files={broken.name: broken.stat().st_size})
    Path(f"{broken}.json").write_text(json.dumps(side))
    twin = tmp_path / "twin" / good.name  # same base name as `good`: each runner has its own folder
    twin.parent.mkdir()
    shutil.copy(good, twin)
    shutil.copy(f"{good}.json", f"{twin}.json")

    out = tmp_path / "rows.json"
    proc = cli("bench", str(good), str(broken), str(twin), "--iters", "3", "--warmup", "0", "--threads", "1",
               "--wait-cool", "1000", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3 and len({r["name"] for r in rows}) == 3  # same-named artifacts told apart
    ok, bad, twin_row = rows
    assert bad["error"].startswith("onnxruntime could not load broken.onnx"), bad["error"]
    assert bad["latency_ms_p50"] is None and bad["ratio_vs_ref"] is None and bad["size_mb"] > 0
    for row in (ok, twin_row):
        assert row["error"] is None and row["latency_ms_p50"] > 0
    assert ok["ratio_vs_ref"] == 1.0  # no eager row: the first row that ran is the reference
    assert "onnxruntime could not load broken.onnx" in proc.stdout


def test_batch_above_the_exported_one(run, tmp_path):
    """A batch-1 artifact refuses --batch 2 in its row; the eager model takes it."""
    out = tmp_path / "rows.json"
    proc = cli("bench", str(run / "export" / "cnn_attn-onnx-fp32.onnx"), "--eager", str(run), "--batch", "2",
               "--iters", "2", "--warmup", "0", "--threads", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    eager, onnx = json.loads(out.read_text())["rows"]
    assert "batch is fixed to 1" in onnx["error"] and "--batch 1" in onnx["error"]
    assert eager["error"] is None and eager["input_shape"] == [2, 3, 16, 16]
    assert eager["throughput_ips"] == pytest.approx(2 * 1000 / eager["latency_ms_mean"])


def test_eager_on_cuda_without_a_gpu(run, tmp_path):
    """--device cuda: artifacts here, the eager model on the GPU; with no GPU (this machine) its row says so.

    The CUDA path itself (synchronize after each call) is not exercised here: there is no GPU.
    """
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this checks the message for its absence")
    out = tmp_path / "rows.json"
    proc = cli("bench", str(run / "export" / "cnn_attn-onnx-int8.onnx"), "--eager", str(run), "--device", "cuda",
               "--iters", "2", "--warmup", "0", "--threads", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    eager, onnx = json.loads(out.read_text())["rows"]
    assert eager["name"] == "cnn_attn-eager-fp32-cuda" and eager["device"] == "cuda"
    assert "no CUDA GPU is visible" in eager["error"] and eager["ratio_vs_ref"] is None
    assert onnx["device"] == "local" and onnx["error"] is None and onnx["ratio_vs_ref"] == 1.0


def test_bad_input_is_one_line_exit_2(run, tmp_path):
    lone = tmp_path / "lone.onnx"  # an artifact without its sidecar
    shutil.copy(run / "export" / "cnn_attn-onnx-fp32.onnx", lone)
    pte = str(run / "export" / "cnn_attn-executorch-int8.pte")
    for args, message in [
        ((str(lone),), "no sidecar lone.onnx.json next to it"),
        ((str(tmp_path / "nope.pte"),), "no such file or folder"),
        ((str(run / "recipe.yaml"),), "not an exported model"),
        ((str(tmp_path),), "no exported artifacts in it"),
        ((pte, "--device", "ftp://board"), "unknown device"),
        ((pte, "--device", "ssh://pi@board:99999"), "--device ssh://pi@board:99999"),
        ((pte, "--eager", str(tmp_path)), "not a run folder"),
        ((pte, "--eager", str(run), "--device", "ssh://pi@board"), "--eager runs the PyTorch model on this machine"),
        ((pte, "--runner", pte), "--runner is an executor_runner for adb:// and ssh:// devices"),
        ((pte, "--iters", "0"), "--iters 0: must be at least 1"),
        ((pte, "--min-time", "0"), "--min-time 0.0: must be at least 0.001"),
        ((pte, "--cooldown", "-1"), "--cooldown -1.0: must be at least 0"),
        ((), "nothing to bench"),
    ]:
        proc = cli("bench", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_folders_expand_to_their_artifacts(run):
    from edgecnn.bench.api import find_artifacts

    export = run / "export"
    names = [p.name for p in find_artifacts([export])]
    assert names == sorted(f"cnn_attn-{t}-{p}{s}" for t, s in (("executorch", ".pte"), ("openvino", ".xml"),
                                                                ("onnx", ".onnx")) for p in ("fp32", "int8"))
    assert find_artifacts([run]) == find_artifacts([export])  # a run folder stands for its export/
    one = export / "cnn_attn-onnx-int8.onnx"
    assert find_artifacts([one, export]).count(one) == 1  # named twice, benched once


# -- the device runner on its own -------------------------------------------------------------------

def test_runner_copy_of_the_target_table():
    """bench/runner.py ships alone to a device, so it keeps a copy of core/contracts' target table."""
    from edgecnn.bench.runner import RUNTIMES
    from edgecnn.core.contracts import TARGET_MODULE, TARGET_SUFFIX

    assert RUNTIMES == {TARGET_SUFFIX[t]: TARGET_MODULE[t] for t in TARGET_SUFFIX}


def test_runner_imports_nothing_but_stdlib_numpy_and_runtimes():
    allowed = set(sys.stdlib_module_names) | {"numpy", "torch", "executorch", "openvino", "onnxruntime"}
    tree = ast.parse(RUNNER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= allowed, imported - allowed


def run_copied_runner(folder: Path, args: list[str], commands: list[dict], block: tuple[str, ...] = ()) -> list[dict]:
    """Copy runner.py into ``folder`` and run it isolated (``python -I``), with ``edgecnn`` (and ``block``)
    unimportable, as on a board where only the runtime is installed; returns its JSON answers."""
    shutil.copy(RUNNER, folder / "runner.py")
    boot = ("import runpy, sys\n"
            f"for name in {('edgecnn', *block)!r}:\n"
            "    sys.modules[name] = None  # any import of it raises ImportError\n"
            "sys.argv = ['runner.py', *sys.argv[1:]]\n"
            "runpy.run_path('runner.py', run_name='__main__')\n")
    stdin = "".join(json.dumps(c) + "\n" for c in commands)
    proc = subprocess.run([sys.executable, "-I", "-c", boot, *args], cwd=folder, input=stdin, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nowhere"})
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert answers, proc.stderr
    return answers


def test_runner_runs_standalone_on_a_copy(run, tmp_path):
    for name in ("cnn_attn-onnx-int8.onnx", "cnn_attn-onnx-int8.onnx.json"):
        shutil.copy(run / "export" / name, tmp_path / name)
    ready, first, finish = run_copied_runner(
        tmp_path, ["--artifact", "cnn_attn-onnx-int8.onnx", "--threads", "1", "--wait-cool", "1000"],
        [{"cmd": "round", "iters": 3}, {"cmd": "finish", "overhead_iters": 8}])
    assert ready["ok"] and ready["runtime"] == "onnxruntime" and ready["input_shapes"] == [[1, 3, 16, 16]]
    assert ready["cool"]["cooled"] in (None, True) and ready["cool"]["waited_s"] < 5  # 1000 C: nothing to wait for
    device = ready["device"]
    assert device["cores"] >= 1 and device["device_desc"] and device["cpu_model"]
    assert first["ok"] and len(first["latencies_ms"]) == 3 and min(first["latencies_ms"]) > 0
    assert finish["ok"] and finish["peak_rss_mb"] > 0 and isinstance(finish["overhead_pct"], float)
    assert finish["profile"] is None  # no --profile


def test_runner_names_the_pip_command_for_a_missing_runtime(run, tmp_path):
    for name in ("cnn_attn-openvino-fp32.xml", "cnn_attn-openvino-fp32.bin", "cnn_attn-openvino-fp32.xml.json"):
        shutil.copy(run / "export" / name, tmp_path / name)
    (answer,) = run_copied_runner(tmp_path, ["--artifact", "cnn_attn-openvino-fp32.xml"], [], block=("openvino",))
    assert answer["ok"] is False and answer["error"].startswith("openvino is not installed on this device")
    assert answer["error"].endswith("pip install openvino")


def test_etdump_summary_on_a_serialized_etdump(tmp_path):
    """Stand-in: an ETDump written with ExecuTorch's own serializer, shaped like an XNNPACK-profiled run
    (the pip runtime records no events to read). Checks the op times, shares and delegated share."""
    pytest.importorskip("executorch.devtools")
    import executorch.devtools.etdump.schema_flatcc as fc
    from executorch.devtools.etdump.serialize import serialize_to_etdump_flatcc

    from edgecnn.bench.runner import summarize_etdump

    def event(name, instruction, start_ns, end_ns, delegate=""):
        profile = fc.ProfileEvent(name, 0, instruction, -1, delegate, None, start_time=start_ns, end_time=end_ns)
        return fc.Event(profile_event=profile, allocation_event=None, debug_event=None)

    runs = [fc.RunData(name="forward", bundled_input_index=-1, allocators=[], events=[
        event("Method::execute", -1, 0, 1_000_000),
        event("DELEGATE_CALL", 1, 0, 800_000),  # contains the two XNNPACK ops below
        event("", 1, 0, 500_000, "Convolution (NHWC, QC8)"),
        event("", 1, 500_000, 800_000, "Fully Connected (NC, QD8, F32, QC8W)"),
        event("native_call_as_strided_copy.out", 2, 800_000, 1_000_000),
    ]) for _ in range(3)]
    data = serialize_to_etdump_flatcc(fc.ETDumpFlatCC(version=0, run_data=runs))
    path = tmp_path / "profile.etdp"
    path.write_bytes(struct.pack("<I", len(data)) + data)  # the runtime writes it size-prefixed
    prof = summarize_etdump(path)
    assert [(op["op"], op["ms"], op["share"]) for op in prof["top_ops"]] == [
        ("Convolution (NHWC, QC8)", 0.5, 0.5), ("Fully Connected (NC, QD8, F32, QC8W)", 0.3, 0.3),
        ("native_call_as_strided_copy.out", 0.2, 0.2)]
    assert prof["delegated_share"] == pytest.approx(0.8) and prof["source"] == "etdump"


# -- transports -------------------------------------------------------------------------------------

def test_local_transport_and_device_urls(tmp_path):
    from edgecnn.bench.ssh import SSH
    from edgecnn.bench.transport import Local, open_transport
    from edgecnn.errors import UserError

    small, big = tmp_path / "model.onnx.json", tmp_path / "model.onnx"
    small.write_text("x")
    big.write_bytes(b"w" * (Local.LINK_ABOVE + 1))
    t = open_transport("local")
    assert isinstance(t, Local) and t.device == "local" and t.python == [sys.executable]
    folder = Path(t.put([RUNNER, small, big]))
    # Small files copied (a linked runner.py would see edgecnn/bench on sys.path), weights linked.
    assert not (folder / "runner.py").is_symlink() and (folder / "runner.py").read_text() == RUNNER.read_text()
    assert (folder / "model.onnx").is_symlink() and (folder / "model.onnx.json").read_text() == "x"
    proc = t.run([sys.executable, str(folder / "runner.py"), "--help"], timeout=60)
    assert proc.returncode == 0 and "--artifact" in proc.stdout
    t.close()
    assert not folder.exists() and big.exists() and small.exists()  # the folder went, the originals stay
    assert isinstance(open_transport("ssh://pi@board:2222"), SSH)  # no connection until used
    with pytest.raises(UserError, match="unknown device"):
        open_transport("telnet://board")


def test_native_stderr_goes_to_the_log_not_the_terminal(tmp_path, capfd):
    """ExecuTorch's cpuinfo lines ("Failed to open midr file ...") are written by C++ to fd 2 on loading a
    method: inside native_stderr_to they land in the artifact's log, and an empty log is not left behind."""
    import os

    from edgecnn.files import native_stderr_to

    log = tmp_path / "a.pte.log"
    with native_stderr_to(log):
        os.write(2, b"[cpuinfo_utils.cpp:109] Failed to open midr file\n")
    os.write(2, b"ours\n")
    assert "midr" not in capfd.readouterr().err and "midr" in log.read_text()
    with native_stderr_to(tmp_path / "quiet.log"):
        pass
    assert not (tmp_path / "quiet.log").exists()


def test_install_hint_per_architecture():
    """A board without a runtime is told the install that works there (the README's boards section)."""
    from edgecnn.bench.runner import install_hint

    assert install_hint("onnxruntime", "x86_64") == "pip install onnxruntime"
    hint = install_hint("executorch", "aarch64")
    assert hint == ("pip install torch==2.9.1 && pip install --no-deps executorch==1.0.1 && "
                    "pip install ruamel.yaml tabulate flatbuffers")
    assert install_hint("openvino", "arm64") == "pip install openvino==2025.2.0"
