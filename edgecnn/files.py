"""Atomic file writes, without torch: every stage (train, export, bench, report) writes through these.

A file is written to a hidden temporary sibling, flushed to disk, then renamed
over the target (``os.replace``, atomic on one file system): a process killed
mid-write leaves the previous file intact, never half of a new one.

The file gets the mode ``open()`` would give it (0666 less the umask), not
``mkstemp``'s private 0600: a report or checkpoint others in the group may
read stays readable to them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it is read by setting it, and put back at
    once (a file another thread creates in between would get 022)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def native_stderr_to(log: Path):
    """Send what native code writes to file descriptor 2 into ``log`` (appended) while the block runs.

    ExecuTorch's cpuinfo writes lines such as "Failed to open midr file" from C++ straight to fd 2 when a
    method loads; they mean nothing to the user, so they go to a log file beside the artifact, not the
    terminal. Python's own ``sys.stderr`` is flushed first, so our lines keep their order. Where the log
    cannot be opened (a read-only folder), the lines go to the null device.
    """
    sys.stderr.flush()
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        with contextlib.suppress(OSError):  # cpuinfo speaks once per process: no empty logs left behind
            if log.stat().st_size == 0:
                log.unlink()
