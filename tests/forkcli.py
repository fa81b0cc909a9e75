"""Run ``python -m edgecnn ARGS`` in a forked child of a process that has already imported torch.

Each ``edgecnn`` subprocess of the suite spent 2 to 6 seconds importing torch, executorch and torchao
before doing a second of work (measured on the 2-core Zen 3: ``import torch`` 1.8 s, with
``executorch.exir`` 6.3 s). A zygote imports them once per pytest worker and forks a child per
command. The child is a separate process, as before: its own exit code, stdout, stderr, working
folder and environment, and the same entry point (``runpy`` runs ``edgecnn.__main__`` as ``-m``
does). What it shares with its siblings is only the import work, done before any computation (no
thread pool exists yet: forking after torch computed would be unsafe, so the zygote never computes).

``conftest.cli`` uses it unless the call changes an environment variable read at import time
(``fresh_env``), or ``EDGECNN_TEST_FRESH=1`` asks for a new interpreter per command. Tests of the
interpreter start itself (``--help`` imports no torch, an installed wheel) run their own subprocess.

Protocol, one JSON line each way per command: request ``{argv, cwd, env, out, err}``; the zygote
answers ``{"pid"}`` as soon as it forked, then ``{"rc"}`` when the child ended.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

# Modules whose import cost is paid once. Nothing here may start threads that hold locks or compute:
# openvino and nncf start threads on import, so children import those themselves (about 0.5 s).
PRELOAD = ("torch", "numpy", "edgecnn.cli", "edgecnn.train.run", "edgecnn.train.loop", "executorch.exir",
           "executorch.backends.xnnpack.partition.xnnpack_partitioner", "torchao")
# Variables read when a library is imported (thread counts, device lists, library paths): a call that
# changes one of them gets a new interpreter, where they take effect as they would for a user.
IMPORT_TIME_PREFIXES = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "TORCH", "PYTORCH_", "CUDA", "LD_", "OV_",
                        "NNCF", "ONNX")
# Variables a library sets in the pytest worker itself, lazily and to its default: torch writes its inductor
# cache folder the first time it asks for it (an in-process torch.export does). Not read at import, and a
# child gets the caller's value anyway; counting it sent every later command of that worker to a new
# interpreter (docs/testing.md).
SET_BY_LIBRARIES = ("TORCHINDUCTOR_CACHE_DIR",)


def fresh_env(base: dict, env: dict) -> bool:
    """Whether ``env`` differs from the zygote's ``base`` in a variable read at import time."""
    keys = {k for k in set(base) | set(env) if base.get(k) != env.get(k)} - set(SET_BY_LIBRARIES)
    return any(k.startswith(IMPORT_TIME_PREFIXES) for k in keys)


class Zygote:
    """The parent side: one zygote process, started on first use, one command at a time."""

    def __init__(self, env: dict):
        self.env = dict(env)
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL,  # import-time library noise; children have their own
                                     env=self.env, text=True, bufsize=1)
        self._buf = b""
        if json.loads(self._read(300)).get("ready") is not True:
            raise RuntimeError("the test zygote did not start")

    def _read(self, timeout: float) -> str:
        """One line from the zygote (its own buffer: a fast child's two answers can arrive in one read)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired("zygote", timeout)
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the test zygote died (exit {self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def run(self, argv: list[str], cwd: str, env: dict, out: str, err: str, timeout: float) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env, "out": out, "err": err}) + "\n")
        pid = json.loads(self._read(60))["pid"]
        try:
            return json.loads(self._read(timeout))["rc"]
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self._read(60)  # the zygote reaps it and answers
            raise subprocess.TimeoutExpired(["edgecnn", *argv], timeout) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)


def _child(req: dict) -> None:
    """In the forked child: become ``python -m edgecnn ARGV`` and exit with its code (never returns)."""
    import atexit
    import runpy
    import threading

    import numpy as np

    code = 1
    try:
        fd_in = os.open(os.devnull, os.O_RDONLY)
        fd_out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((fd_in, 0), (fd_out, 1), (fd_err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(os.devnull)  # not the zygote's request pipe
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        np.random.seed()  # a new process draws fresh entropy; a fork would inherit the zygote's state
        sys.path[0] = req["cwd"]  # as `python -m` puts the working folder first
        sys.argv = ["edgecnn", *req["argv"]]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            runpy.run_module("edgecnn", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if e.code is not None and not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
        except BaseException:  # an uncaught exception: the traceback a real interpreter prints
            import traceback

            traceback.print_exc()
            code = 1
        # What interpreter shutdown does: wait for non-daemon threads, run atexit, flush.
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _serve() -> None:
    import importlib
    import warnings

    warnings.simplefilter("ignore")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional backend that is not installed: children fail as a user's would
            pass
    reply = sys.stdout
    reply.write(json.dumps({"ready": True}) + "\n")
    reply.flush()
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        reply.write(json.dumps({"rc": rc}) + "\n")
        reply.flush()


if __name__ == "__main__":
    _serve()
