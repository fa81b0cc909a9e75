"""What the one bench driver (``api._measure``) talks to: a worker, and how a worker fails.

A worker is one row's runtime on the device. The driver sends it messages
(dicts) and reads answers (dicts with ``"ok": true``):

    receive(timeout, doing)        the "ready" answer, once, first (runtime, device facts, cooling)
    ask({"cmd": "warmup", ...})    warm up until the latency settles
    ask({"cmd": "round", ...})     one timed round: ``latencies_ms`` and the CPU's heat after it
    ask({"cmd": "finish", ...})    memory, device state at the end, harness overhead, profile
    stop()                         end it; never raises

Any failure raises ``RunnerFailed``; its message becomes the row's ``error``.
Two kinds exist: ``api.Worker`` (``runner.py`` or ``eager.py``, a process that
answers in JSON lines; the message format is in ``runner.py``) and
``adb.ExecutorRunner`` (ExecuTorch's ``executor_runner`` on a device without
Python, one fresh process per warm-up or round).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

RUNNER = Path(__file__).with_name("runner.py")  # the Python worker's program, copied to the device


class RunnerFailed(Exception):
    """A runner failed (cannot load, crashed, timed out); the message is the row's ``error``."""


class WorkerLike(Protocol):
    """The interface ``api._measure`` drives (see the module docstring)."""

    def receive(self, timeout: float, doing: str) -> dict: ...

    def ask(self, message: dict, timeout: float, doing: str) -> dict: ...

    def stop(self) -> None: ...
