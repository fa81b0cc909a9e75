"""What a printed table is stamped with: the CPU and the commit (shared by the tools that print tables).

The tools run as scripts (``python tools/x.py``), so their own folder is on ``sys.path``: ``from stamp import cpu``.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def cpu() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def commit(cwd: str | Path | None = None) -> str:
    """The short commit of the working tree (of ``cwd``, default the current folder), ``+dirty`` when tracked
    files differ from it."""
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=cwd)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=cwd)
    return (proc.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")
