"""The Raspberry Pi path on real ARM runtimes: the emulated arm64 board of ``make board``, over real ssh.

Nothing is a stand-in here: a Debian bookworm arm64 root run by qemu-user
(binfmt_misc), its own arm64 sshd on a loopback port, the aarch64 wheels of
onnxruntime 1.32.0 and of torch 2.9.1 + executorch 1.0.1 from PyPI
(``tools/board.py``). The quickstart's INT8 artifacts are benched there through
``ssh://`` with ``--check``: the logits come from the ARM kernels and are
compared with PyTorch on this machine.

The board needs root, qemu-user-static, binfmt_misc and debootstrap. Where they
are missing the test skips with the reason; under CI (``CI`` set) it fails
with it, since ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, cli, tiny_artifact

BOARD = ROOT / "tools" / "board.py"
EMULATED = "emulated: not the latency of real hardware"
BOARD_VERSIONS = {"onnxruntime": "1.32.0", "executorch": "1.0.1"}

pytestmark = pytest.mark.slow


def _board(cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BOARD), cmd], capture_output=True, text=True, timeout=timeout)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the emulated board cannot run under CI: {reason}")
    pytest.skip(f"the emulated board cannot run here: {reason}")


@pytest.fixture(scope="module")
def board() -> dict:
    """``make board`` (cold or cached), its exports as a dict; stopped afterwards if this test started it."""
    if os.geteuid() != 0:
        _unavailable("it needs root (chroot, bind mounts)")
    running = _board("env", timeout=60).returncode == 0
    t0 = time.monotonic()
    proc = _board("start")
    if proc.returncode == 2:
        _unavailable(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    env = dict(line[len("export "):].split("=", 1) for line in proc.stdout.splitlines() if line.startswith("export "))
    env = {k: shlex.split(v)[0] for k, v in env.items()}
    assert set(env) == {"EDGECNN_BOARD", "EDGECNN_SSH_OPTS", "EDGECNN_SSH_PYTHON"}, proc.stdout
    print(f"board ready in {time.monotonic() - t0:.0f} s")
    try:
        yield env
    finally:
        if not running:
            _board("stop", timeout=120)


@pytest.fixture(scope="module")
def int8_artifacts(tiny_run) -> list[Path]:
    """The suite's tiny quickstart run's ONNX Runtime and ExecuTorch INT8 artifacts (conftest.tiny_run)."""
    return [tiny_artifact(tiny_run, t, int8=True) for t in ("onnx", "executorch")]


def test_board_runs_the_int8_artifacts_on_arm_with_check(board, int8_artifacts, tmp_path):
    out = tmp_path / "bench.json"
    proc = cli("bench", *map(str, int8_artifacts), "--device", board["EDGECNN_BOARD"], "--check", "12",
               "--rounds", "2", "--min-time", "0.2", "--json", str(out), env=board, timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert EMULATED in proc.stdout.replace("\n", " ")
    rows = json.loads(out.read_text())["rows"]
    assert {r["runtime"] for r in rows} == {"onnxruntime", "executorch"}, rows
    for row in rows:
        if row["error"]:  # a runtime that cannot run there: one line naming the fix, never a crash
            assert "\n" not in row["error"] and len(row["error"]) < 400, row["error"]
            pytest.fail(f"{row['name']} did not run on the board: {row['error']}")
        assert row["machine"] == "aarch64", row
        assert row["emulated"] is True and "qemu" in row["emulation"], row
        assert EMULATED in row["warning"], row["warning"]
        assert row["runtime_version"] == BOARD_VERSIONS[row["runtime"]], row
        assert row["check_error"] is None, row["check_error"]
        assert row["check_n"] == 12
        assert row["check_top1_agreement"] >= 0.99, row
        assert row["peak_rss_mb"] and row["latency_ms_p50"], row


def test_board_stop_then_bad_input(board):
    """Bad input is one line and exit 2; the board's own commands answer in one line too."""
    proc = cli("bench", "no/such/file.onnx", "--device", board["EDGECNN_BOARD"], "--check", "0", env=board)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    proc = _board("nonsense", timeout=30)
    assert proc.returncode == 2
