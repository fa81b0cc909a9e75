"""Benchmarks on remote devices: a Linux board over SSH, an Android phone over adb.

SSH: a real OpenSSH server on a loopback port (``tests/sshd.py``), real
``ssh``/``scp``, real runtimes on the "board" (this machine, logged in to
through sshd). ``edgecnn bench --device ssh://...`` runs end to end.

adb: there is NO phone here. The Android path is tested through a stand-in
``adb`` and a stand-in ``executor_runner`` (``tests/standins/``, Python
scripts running on this host that print what the real programs print). The
phone path itself is NOT exercised against a real device.

Every subprocess has a timeout: a hang fails the test instead of CI.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli, tiny_artifact
from sshd import keygen, free_port, sshd  # noqa: F401  (sshd is a fixture)

from edgecnn.errors import UserError

STANDINS = ROOT / "tests" / "standins"
TIMEOUT = 300  # any bench command below finishes in well under a minute on an idle machine


@pytest.fixture(scope="module")
def artifacts(tiny_run) -> dict[str, Path]:
    """The suite's tiny quickstart run (conftest.tiny_run): its ONNX and ExecuTorch fp32 artifacts."""
    return {t: tiny_artifact(tiny_run, t) for t in ("onnx", "executorch")}


@pytest.fixture
def ssh_env(sshd, monkeypatch):  # noqa: F811
    """Client settings for the test server: its key, its known_hosts; the board's Python is this one."""
    monkeypatch.setenv("EDGECNN_SSH_OPTS", sshd.opts())
    monkeypatch.setenv("EDGECNN_SSH_PYTHON", sys.executable)
    return sshd


def remote_folders() -> set[str]:
    """Working folders the SSH transport made on the 'board' (this machine's /tmp)."""
    return set(glob.glob("/tmp/edgecnn-remote-*"))


# -- SSH transport -------------------------------------------------------------------------------

def test_ssh_transport_copies_runs_and_cleans_up(ssh_env, tmp_path):
    from edgecnn.bench.ssh import SSH

    odd = tmp_path / "it's a $file; rm -rf x.txt"  # the name must reach the remote shell quoted
    odd.write_text("payload")
    before = remote_folders()
    with SSH(ssh_env.url, timeout=20) as t:
        assert t.device == ssh_env.url
        info = t.check()
        assert info["python"] == ".".join(map(str, sys.version_info[:3]))
        folder = t.put([odd])
        assert folder in remote_folders() - before
        assert (Path(folder) / odd.name).read_text() == "payload"
        proc = t.run(["cat", f"{folder}/{odd.name}"], timeout=20)
        assert proc.returncode == 0 and proc.stdout == "payload"
        # popen: a line in, a line out, over the SSH channel.
        p = t.popen([*t.python, "-c", "import sys; print(sys.stdin.readline().strip()[::-1])"])
        out, _ = p.communicate("a 'b' $c\n", timeout=30)
        assert p.returncode == 0 and out.strip() == "c$ 'b' a"
        assert t.missing(("json", "edgecnn_no_such_module")) == {
            "edgecnn_no_such_module": f"ssh -p {ssh_env.port} {ssh_env.user}@127.0.0.1 "
                                      f"{shlex.quote(sys.executable)} -m pip install edgecnn_no_such_module"}
    assert not Path(folder).exists()


def test_ssh_errors_are_one_line(ssh_env, tmp_path, monkeypatch):
    from edgecnn.bench.ssh import SSH

    port = free_port()  # nothing listens there
    with pytest.raises(UserError) as e:
        SSH(f"ssh://{ssh_env.user}@127.0.0.1:{port}", timeout=10).check()
    assert len(e.value.lines) == 1 and f"127.0.0.1 port {port}" in e.value.lines[0]
    assert "connection refused" in e.value.lines[0]

    monkeypatch.setenv("EDGECNN_SSH_OPTS", ssh_env.opts(key=keygen(tmp_path / "stranger")))
    with pytest.raises(UserError) as e:
        SSH(ssh_env.url, timeout=10).check()
    assert "login refused" in str(e.value) and f"ssh-copy-id -p {ssh_env.port}" in str(e.value)

    monkeypatch.setenv("EDGECNN_SSH_OPTS", ssh_env.opts())
    with pytest.raises(UserError) as e:
        SSH(ssh_env.url, timeout=10, python=["/nonexistent/python3"]).check()
    assert "/nonexistent/python3 is not installed on the board" in str(e.value)

    for bad in ("ssh://", "ssh://u:secret@host", "ssh://host:99999", "ssh://host/path", "sftp://host"):
        with pytest.raises(UserError):
            SSH(bad)


# -- edgecnn bench --device ssh:// ---------------------------------------------------------------

def bench_cli(*args: str) -> "subprocess.CompletedProcess":
    return cli("bench", *args, "--iters", "5", "--warmup", "1", "--rounds", "2", "--threads", "1",
               "--timeout", "20", timeout=TIMEOUT)


def test_bench_over_ssh_end_to_end(ssh_env, artifacts, tmp_path):
    """Artifacts, sidecars and runner.py go through scp; the runners run behind sshd; rows come back."""
    before = remote_folders()
    out = tmp_path / "rows.json"
    proc = bench_cli(str(artifacts["onnx"]), str(artifacts["executorch"]), "--device", ssh_env.url,
                     "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {r["runtime"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"onnxruntime", "executorch"}
    for row in rows.values():
        assert row["error"] is None, row["error"]
        assert row["device"] == ssh_env.url and row["iters"] == 5 and row["threads"] == 1
        assert row["device_desc"] and row["cores"] >= 1
        assert 0 < row["latency_ms_min"] <= row["latency_ms_p50"] <= row["latency_ms_p99"]
        assert row["peak_rss_mb"] > 0 and row["runtime_version"]
        # The same statistics as local rows: intervals, their method, the ISA for the peak, heat per round.
        assert row["latency_ms_p50_ci_low"] <= row["latency_ms_p50"] <= row["latency_ms_p50_ci_high"]
        assert row["ci_method"].startswith("order statistics") and row["calls"] == 5
        assert row["ratio_ci_low"] <= row["ratio_vs_ref"] <= row["ratio_ci_high"]
        assert isinstance(row["isa"], list) and len(row["round_temp_c"]) == 2
    assert ssh_env.url in proc.stdout
    assert remote_folders() == before  # every working folder on the board was removed


def test_bench_over_ssh_errors_exit_2(ssh_env, artifacts, tmp_path, monkeypatch):
    art = str(artifacts["onnx"])
    port = free_port()
    proc = bench_cli(art, "--device", f"ssh://{ssh_env.user}@127.0.0.1:{port}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"127.0.0.1 port {port}" in lines[0], lines

    monkeypatch.setenv("EDGECNN_SSH_OPTS", ssh_env.opts(key=keygen(tmp_path / "stranger")))
    proc = bench_cli(art, "--device", ssh_env.url)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "login refused" in lines[0] and "ssh-copy-id" in lines[0], lines


def test_bench_over_ssh_never_hangs_on_a_silent_port(ssh_env, artifacts):
    """A port that accepts TCP but never speaks SSH: ssh's ConnectTimeout ends it, one line, exit 2."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        proc = cli("bench", str(artifacts["onnx"]), "--device", f"ssh://{ssh_env.user}@127.0.0.1:{port}",
                   "--timeout", "3", "--iters", "1", "--warmup", "0", timeout=120)
    assert proc.returncode == 2
    assert "no SSH server answered within 3 s" in proc.stderr and f"127.0.0.1 port {port}" in proc.stderr


def test_bench_over_ssh_without_the_runtime_names_the_pip_command(ssh_env, artifacts, tmp_path, monkeypatch):
    """A board whose Python has numpy but not onnxruntime: this Python with -S (no site-packages)
    and only numpy on PYTHONPATH. The row says which pip command fixes it; nothing crashes."""
    import numpy

    only_numpy = tmp_path / "only-numpy"
    only_numpy.mkdir()
    site = Path(numpy.__file__).parents[1]
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (only_numpy / name).symlink_to(site / name)
    monkeypatch.setenv("EDGECNN_SSH_PYTHON", shlex.join(["env", f"PYTHONPATH={only_numpy}", sys.executable, "-S"]))
    before = remote_folders()
    out = tmp_path / "rows.json"
    proc = bench_cli(str(artifacts["onnx"]), "--device", ssh_env.url, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert "onnxruntime is not installed" in row["error"] and "pip install onnxruntime" in row["error"]
    assert row["latency_ms_p50"] is None
    assert remote_folders() == before


# -- adb: output parsing against the real runner's format ----------------------------------------

# Lines as ExecuTorch v1.4.1's executor_runner logs them (posix PAL, stderr), and what older runners log.
V14_LOG = """\
I 00:00:00.000101 executorch:executor_runner.cpp:340] Resetting threadpool with num threads = 4
I 00:00:00.004321 executorch:executor_runner.cpp:476] Model file /data/local/tmp/edgecnn-1/m.pte is loaded.
I 00:00:00.004400 executorch:executor_runner.cpp:486] Using method forward
I 00:00:00.009000 executorch:executor_runner.cpp:624] Model loaded in 4.600000 ms.
I 00:00:00.019000 executorch:executor_runner.cpp:779] Iteration 1 of 3: 10.000000 ms
I 00:00:00.027000 executorch:executor_runner.cpp:779] Iteration 2 of 3: 8.000000 ms
I 00:00:00.033000 executorch:executor_runner.cpp:779] Iteration 3 of 3: 6.000000 ms
I 00:00:00.033100 executorch:executor_runner.cpp:789] Model executed successfully 3 time(s) in 24.000000 ms.
I 00:00:00.033200 executorch:executor_runner.cpp:798] 1 outputs: 
OutputX 0: tensor(sizes=[1, 3], [0.1, -0.2, 0.3])
"""


def test_runner_output_parsing():
    from edgecnn.bench.adb import parse_runner_output

    p = parse_runner_output(V14_LOG, warmup=1)
    assert p["latencies_ms"] == [8.0, 6.0] and p["threads"] == 4 and p["executions"] == 3 and not p["errors"]
    old = "\n".join(ln for ln in V14_LOG.splitlines() if "Iteration" not in ln)  # ExecuTorch < 1.3
    p = parse_runner_output(old, warmup=1)
    assert p["latencies_ms"] == [] and p["mean_only_ms"] == pytest.approx(8.0)
    p = parse_runner_output("E 00:00:00.000200 executorch:executor_runner.cpp:473] Failed to parse model file x.pte\n",
                            warmup=0)
    assert p["errors"] == ["Failed to parse model file x.pte"] and p["mean_only_ms"] is None


class FakePhone:
    """A transport that answers every executor_runner run with a canned log: no device, no runner runs.

    ``log``: the log text, or ``log(executions) -> text``.
    """

    device, python, where = "adb://FAKE", [], "Android"

    def __init__(self, log, code: int = 0):
        self.log, self.code, self.runs, self.closed = log, code, [], False

    def device_info(self) -> dict:
        return {"device_desc": "fake phone", "temp_c": 40.0, "freq_mhz": 2000, "abi": "arm64-v8a"}

    def put(self, files) -> str:
        return "/data/local/tmp/edgecnn-fake"

    def run(self, argv, timeout=None):
        self.runs.append(argv)
        if argv[0] == "chmod":
            return subprocess.CompletedProcess(argv, 0, "", "")
        n = int(next(a for a in argv if a.startswith("--num_executions="))[len("--num_executions="):])
        return subprocess.CompletedProcess(argv, self.code, "", self.log(n) if callable(self.log) else self.log)

    def close(self) -> None:
        self.closed = True


def bench_on(phone: FakePhone, monkeypatch, pte: Path, **settings) -> dict:
    """One row of ``bench --device adb://FAKE`` with ``phone`` as the transport (the one driver, api.bench)."""
    from edgecnn.bench import native
    from edgecnn.bench.api import BenchRequest, bench

    monkeypatch.setattr(native, "native_transport", lambda device, timeout: phone)
    (row,) = bench(BenchRequest((pte,), device="adb://FAKE", runner=STANDINS / "executor_runner", **settings))
    assert phone.closed
    return row


def iteration_log(times_ms) -> str:
    """An executor_runner v1.4 log with these execution times."""
    n = len(times_ms)
    lines = [f"I 00:00:00.000001 executorch:executor_runner.cpp:779] Iteration {i + 1} of {n}: {t:f} ms"
             for i, t in enumerate(times_ms)]
    lines.insert(0, "I 00:00:00.000000 executorch:executor_runner.cpp:340] Resetting threadpool with num threads = 2")
    return "\n".join(lines) + "\n"


def test_adb_rows_from_old_and_failing_runners(artifacts, monkeypatch):
    """The driver's rounds and rows for runners the stand-ins do not imitate: one older than ExecuTorch 1.3
    without a thread pool (a total per run only), and one that fails."""
    pte = artifacts["executorch"]
    old = "\n".join(ln for ln in V14_LOG.splitlines() if "Iteration" not in ln and "threadpool" not in ln)
    phone = FakePhone(old)
    row = bench_on(phone, monkeypatch, pte, threads=2, warmup=1, iters=4, rounds=2)
    assert row["error"] is None and row["rounds"] == 2 and row["temp_c"] == 40.0
    assert row["latency_ms_mean"] == pytest.approx(8.0) and row["throughput_ips"] == pytest.approx(125.0)
    assert row["latency_ms_p50"] is None  # no percentiles from one mean per run
    assert "logged only a total" in row["warning"] and "no thread pool" in row["warning"]
    model = f"--model_path=/data/local/tmp/edgecnn-fake/{pte.name}"
    # chmod; the warm-up (--warmup 1: one round of 1 after the run's own dropped 1); 2 rounds of 1 + 2
    assert [r[1:] for r in phone.runs[1:]] == [[model, "--num_executions=2", "--cpu_threads=2"],
                                               *[[model, "--num_executions=3", "--cpu_threads=2"]] * 2]
    phone = FakePhone("E 00:00:00.000200 executorch:executor_runner.cpp:473] Failed to parse model file\n", code=1)
    row = bench_on(phone, monkeypatch, pte, warmup=1, iters=4, rounds=2)
    assert row["error"] == "executor_runner failed (exit 1): Failed to parse model file"
    assert row["latency_ms_mean"] is None and len(phone.runs) == 2  # chmod, the warm-up: it sits out the rounds


def test_adb_default_timing_is_the_local_drivers(artifacts, monkeypatch):
    """Without --warmup and --iters, adb is timed as local is: warm-up until the latency settles, rounds by
    duration, in the driver's rounds with the heat after each; but never batched (the runner times each call)."""
    from edgecnn.bench.runner import settle_point

    cold = [10.0, 10.0, 10.0]  # a fresh process: its first executions are slow

    phone = FakePhone(lambda n: iteration_log((cold + [0.5] * n)[:n]))
    row = bench_on(phone, monkeypatch, artifacts["executorch"], min_time=0.05, rounds=3)
    settled = settle_point((cold + [0.5] * 10_000)[:10_000])
    assert settled[:2] == (743, True)  # 343 calls fill the first 0.2 s window (3 slow ones), 400 the next
    runs = [int(r[2].split("=")[1]) for r in phone.runs[1:]]
    # probe of 10; then 5 s of calls at the probe's median; then 3 rounds of 0.05 s at 0.5 ms, each after
    # dropping the 743 executions the warm-up took to settle
    assert runs == [10, 10_000, 743 + 100, 743 + 100, 743 + 100]
    assert row["error"] is None and row["warmup"] is None and row["warmup_calls"] == 743 and row["warmup_settled"]
    assert row["calls_per_sample"] == 1 and row["calls"] == 300 and row["rounds"] == 3  # 0.5 ms: not batched
    assert row["latency_ms_p50"] == pytest.approx(0.5) and row["ci_method"].startswith("two-stage bootstrap")
    assert row["round_temp_c"] == [40.0] * 3 and row["round_freq_mhz"] == [2000] * 3
    assert row["threads"] == 2 and row["harness_overhead_pct"] is None and row["peak_rss_mb"] is None
    assert "no harness overhead check" in row["runtime_note"]


# -- adb through the stand-ins ------------------------------------------------------------------

@pytest.fixture
def adb_env(tmp_path, monkeypatch):
    """The stand-in adb (NOT a phone) with one device, emulator-5554, and one unauthorized one."""
    monkeypatch.setenv("ADB", str(STANDINS / "adb"))
    monkeypatch.setenv("EDGECNN_STANDIN_ADB_ROOT", str(tmp_path / "phones"))
    monkeypatch.setenv("EDGECNN_STANDIN_ADB_DEVICES", "emulator-5554,R58M12345=unauthorized")
    # The stand-ins are Python scripts (#!/usr/bin/env python3); the runner one needs this Python's executorch.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return tmp_path / "phones" / "emulator-5554" / "data" / "local" / "tmp"


def test_adb_bench_through_standins(adb_env, artifacts, tmp_path):
    """`edgecnn bench --device adb://` with the stand-in adb and executor_runner on this host:
    the command flow and the parsing of the runner's log, NOT a real phone. Its row has the fields and
    statistics of a local row of the same artifact (one driver, one statistics helper)."""
    from edgecnn.bench.api import BenchRequest, bench
    from edgecnn.core.stats import summarize

    out = tmp_path / "rows.json"
    proc = cli("bench", str(artifacts["executorch"]), str(artifacts["onnx"]), "--device", "adb://emulator-5554",
               "--runner", str(STANDINS / "executor_runner"), "--iters", "6", "--warmup", "1", "--rounds", "2",
               "--threads", "1", "--profile", "--json", str(out), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    pte, onnx = json.loads(out.read_text())["rows"]
    assert pte["warning"].startswith("no per-operator profile on adb://")
    assert pte["error"] is None, pte["error"]
    assert pte["device"] == "adb://emulator-5554" and pte["runtime"] == "executorch"
    assert pte["threads"] == 1 and pte["iters"] == 6 and pte["rounds"] == 2 and pte["input_shape"] == [1, 3, 16, 16]
    assert 0 < pte["latency_ms_min"] <= pte["latency_ms_p50"] <= pte["latency_ms_p99"]
    assert pte["throughput_ips"] == pytest.approx(1000 / pte["latency_ms_mean"])
    assert pte["ratio_vs_ref"] == 1.0
    # The adb rows go through the same statistics helper: intervals and their method, and every row field.
    assert pte["latency_ms_p50_ci_low"] <= pte["latency_ms_p50"] <= pte["latency_ms_p50_ci_high"]
    assert pte["ci_method"].startswith("order statistics") and pte["calls"] == 6
    assert set(pte) == set(onnx) and "latency_ms_p99_ci_high" in pte and "peak_fraction" in pte
    assert "stand-in phone" in pte["device_desc"] and pte["board"] == "edgecnn stand-in phone (host CPU)"
    assert onnx["error"] == "Android path runs ExecuTorch .pte only; cnn_attn-onnx-fp32.onnx needs its own runtime"
    assert onnx["latency_ms_p50"] is None
    assert list(adb_env.iterdir()) == []  # the working folder on the 'phone' is gone
    (local,) = bench(BenchRequest((artifacts["executorch"],), iters=6, warmup=1, rounds=2, threads=1))
    assert list(pte) == list(local)  # the same fields, in the same order
    stats = set(summarize([[1.0, 2.0], [3.0]]))  # every field the statistics helper fills
    for row in (pte, local):
        assert all(row[k] is not None for k in stats - {"stat_notes"}), sorted(k for k in stats if row[k] is None)
    same = ("ci_method", "percentile_basis", "calls", "samples", "calls_per_sample", "rounds", "warmup", "iters",
            "warmup_calls", "threads", "batch", "input_shape", "kind", "precision", "target", "size_mb", "macs")
    assert {k: pte[k] for k in same} == {k: local[k] for k in same}
    assert len(pte["round_temp_c"]) == len(local["round_temp_c"]) == 2  # heat after each round, both drivers
    # Only what a phone cannot tell (peak memory, harness overhead, runtime version, the CPU's identity and
    # so its peak rate, emulation; clock and temperature where the host has no such files) is missing.
    missing = {k for k in local if local[k] is not None and pte[k] is None}
    assert missing <= {"peak_rss_mb", "harness_overhead_pct", "harness_overhead_ci_low", "harness_overhead_ci_high",
                       "harness_overhead_judged", "harness_overhead_stopped_by", "import_rss_mb", "runtime_version", "isa",
                       "cpu_vendor", "cpu_family", "max_freq_mhz", "machine", "peak_gmacs_per_s", "peak_fraction",
                       "peak_isa", "governor", "freq_mhz", "round_freq_mhz", "temp_c", "emulated",
                       "emulation"}, missing


def test_adb_errors(adb_env, artifacts, monkeypatch):
    from edgecnn.bench.api import BenchRequest, bench

    def bench_adb(paths, device, runner):
        return bench(BenchRequest(tuple(paths), device=device, runner=runner, iters=2, warmup=0, rounds=1))

    runner = STANDINS / "executor_runner"
    proc = cli("bench", str(artifacts["executorch"]), "--device", "adb://nope", "--runner", str(runner), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: adb://nope: no device with serial 'nope' (adb devices lists: emulator-5554, R58M12345 (unauthorized)); "
        "connect the phone with USB debugging on, or fix the serial"]
    with pytest.raises(UserError, match=r"no device with serial 'nope' \(adb devices lists: emulator-5554, "
                                        r"R58M12345 \(unauthorized\)\)"):
        bench_adb([artifacts["executorch"]], "adb://nope", runner)
    with pytest.raises(UserError, match="Allow USB debugging"):
        bench_adb([artifacts["executorch"]], "adb://R58M12345", runner)
    with pytest.raises(UserError, match="--runner PATH"):
        bench_adb([artifacts["executorch"]], "adb://emulator-5554", None)
    monkeypatch.setenv("ADB", str(adb_env / "no-adb-here"))
    with pytest.raises(UserError, match="adb not found"):
        bench_adb([artifacts["executorch"]], "adb://emulator-5554", runner)
