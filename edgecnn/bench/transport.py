"""Where a benchmark runs: this machine, a board over SSH, a phone over adb.

A transport copies files to the device and starts programs there; ``api``
uses it to put ``runner.py`` with an artifact and its sidecar on the device
and talk to the runner over its stdin/stdout. ``open_transport`` picks one
from the ``--device`` string:

    local                      Local (below): this machine, a temporary folder
    ssh://user@host[:port]     edgecnn.bench.ssh.SSH: system ssh/scp
    adb://SERIAL               edgecnn.bench.adb.ADB: adb; no Python on a phone, so
                               ``api`` benches there with executor_runner (adb.ExecutorRunner)
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Protocol

from edgecnn.errors import UserError

SCHEMES = ("local", "ssh://user@host[:port]", "adb://SERIAL")


class Transport(Protocol):
    """What ``api`` needs from a device (contract agreed with ``ssh.py`` and ``adb.py``).

    Attributes:
        device: the canonical device string rows carry (``local``, ``ssh://pi@host:22``, ``adb://SERIAL``).
        python: the interpreter argv on the device (local: ``[sys.executable]``; adb: empty).
    """

    device: str
    python: list[str]

    def put(self, files: list[Path]) -> str:
        """Copy ``files`` into one working folder on the device (base names kept); return its path there."""
        ...

    def popen(self, argv: list[str]) -> subprocess.Popen:
        """Start ``argv`` on the device with text-mode stdin/stdout/stderr pipes."""
        ...

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run ``argv`` on the device and capture its output (text); a non-zero exit is returned."""
        ...

    def close(self) -> None:
        """Remove the working folder on the device."""
        ...


def checked_files(files: list[Path], device: str) -> list[Path]:
    """``files`` resolved, after checking that each exists and that their base names differ.

    Raises:
        UserError: a file is missing, or two files share a name (the device's working folder keeps base names only).
    """
    files = [Path(f).resolve() for f in files]
    for f in files:
        if not f.is_file():
            raise UserError(f"{f}: no such file to copy to {device}")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise UserError(f"two files to copy to {device} share a name ({', '.join(sorted(names))}); "
                        "the working folder there keeps base names only")
    return files


class Local:
    """This machine: a temporary working folder holding the files, as a device would.

    Small files (the runner, sidecars) are copied; big ones (weights) are
    linked, since an artifact can be hundreds of MB and the runner only reads
    it. The runner must be a copy: Python puts the directory of a script's
    *resolved* path on ``sys.path``, so a linked ``runner.py`` would run with
    the package folder importable. OpenVINO finds its ``.bin`` beside the
    ``.xml`` by name, which both keep.
    """

    LINK_ABOVE = 1_000_000  # bytes

    def __init__(self, timeout: float = 30):
        self.device = "local"
        self.python = [sys.executable]
        self.timeout = float(timeout)
        self.folder: str | None = None

    def put(self, files: list[Path]) -> str:
        """Copy or link ``files`` into the working folder (made on the first call); returns its path.

        Raises:
            UserError: a file is missing, or two files share a name.
        """
        files = checked_files(files, "this machine")
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="edgecnn-bench-")
        for f in files:
            link = Path(self.folder) / f.name
            if link.is_symlink() or link.exists():
                link.unlink()
            if f.stat().st_size > self.LINK_ABOVE:
                link.symlink_to(f)
            else:
                shutil.copyfile(f, link)
        return self.folder

    def popen(self, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1)

    def run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` here, output captured.

        Raises:
            UserError: it did not finish within ``timeout`` seconds.
        """
        timeout = self.timeout if timeout is None else timeout
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UserError(f"`{' '.join(argv)[:80]}` did not finish within {timeout:.0f} s") from None

    def close(self) -> None:
        folder, self.folder = self.folder, None
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> "Local":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remote_class(module: str, name: str, device: str):
    """``edgecnn.bench.<module>.<name>``, imported only when that kind of device is asked for.

    Raises:
        UserError: the module is missing from this installation.
    """
    try:
        return getattr(importlib.import_module(f"edgecnn.bench.{module}"), name)
    except ImportError as e:
        raise UserError(f"--device {device}: this edgecnn has no {module} transport ({e}); "
                        "reinstall edgecnn, or bench with --device local") from None


def open_transport(device: str = "local", timeout: float = 30) -> Transport:
    """The transport for a ``--device`` string.

    Args:
        device: ``local``, ``ssh://user@host[:port]`` or ``adb://SERIAL``.
        timeout: seconds for connecting and for each short command on the device.

    Raises:
        UserError: an unknown scheme or a malformed address (and, for adb, a missing
            adb or device: ``ADB`` checks the device when it opens).
    """
    if device in ("local", "localhost", ""):
        return Local(timeout)
    if device.startswith("ssh://"):
        return _remote_class("ssh", "SSH", device)(device, timeout=timeout)
    if device.startswith("adb://"):
        return _remote_class("adb", "ADB", device)(device, timeout=timeout)
    raise UserError(f"--device {device}: unknown device; use one of: {', '.join(SCHEMES)}")
