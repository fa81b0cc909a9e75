"""``--device ssh://... --runner PATH``: executor_runner on a Linux board, through the adb path's rounds and parser.

Real: OpenSSH on a loopback port (``tests/sshd.py``), ssh/scp, the rows.
STAND-IN: ``tests/standins/executor_runner`` is a Python script that prints
what ExecuTorch's C++ ``executor_runner`` prints; it is NOT the C++ runner.
Here it is copied with its first line pointing at this Python (the "board" is
this machine), which has executorch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli, tiny_artifact
from sshd import sshd  # noqa: F401  (a fixture)

STANDIN = ROOT / "tests" / "standins" / "executor_runner"


@pytest.fixture(scope="module")
def pte(tiny_run) -> Path:
    """The suite's tiny run's ExecuTorch fp32 artifact (conftest.tiny_run)."""
    return tiny_artifact(tiny_run, "executorch")


def test_ssh_runner_standin_rows_and_check_says_why(sshd, pte, tmp_path, monkeypatch):  # noqa: F811
    runner = tmp_path / "executor_runner"
    lines = STANDIN.read_text().splitlines()
    runner.write_text("\n".join([f"#!{sys.executable}", *lines[1:]]) + "\n")
    runner.chmod(0o755)
    out = tmp_path / "rows.json"
    env = {"EDGECNN_SSH_OPTS": sshd.opts(), "EDGECNN_SSH_PYTHON": sys.executable}
    proc = cli("bench", str(pte), "--device", sshd.url, "--runner", str(runner), "--iters", "6", "--warmup", "1",
               "--rounds", "2", "--check", "4", "--json", str(out), env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["error"] is None, row["error"]
    assert row["device"] == sshd.url and row["runtime"] == "executorch"
    assert "executor_runner on a Linux board" in row["runtime_note"]
    assert row["latency_ms_p50"] > 0 and row["rounds"] == 2
    assert row["check_n"] == 4 and "executor_runner" in row["check_error"]  # no logits come back from it


def test_check_bad_value_is_one_line(pte):
    proc = cli("bench", str(pte), "--check", "0")
    assert proc.returncode == 2 and "--check 0" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
