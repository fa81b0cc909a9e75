"""What a printed table is stamped with: the CPU and the commit (shared by the tools that print tables).

The tools run as scripts (``python tools/x.py``), so their own folder is on ``sys.path``: ``from stamp import cpu``.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def cpu() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and the vector units that decide INT8 speed, e.g.
    ``AMD EPYC (AVX2, no AVX-512)``; what ``platform`` says where there is no ``/proc/cpuinfo``.

    A VM often names only the vendor: the units tell a Zen 3 (AVX2) from a Zen 4 or 5 (AVX-512 VNNI) and a
    Sapphire Rapids (AMX, which OpenVINO INT8 uses), and those change which runtime is fastest.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    if "amx_int8" in flags:
        units = "AVX-512 VNNI, AMX"
    elif "avx512_vnni" in flags:
        units = "AVX-512 VNNI"
    elif "avx512f" in flags:
        units = "AVX-512, no VNNI"
    elif "avx2" in flags:
        units = "AVX2, no AVX-512"
    else:
        units = "no AVX2"
    return f"{fields.get('model name', 'unknown CPU')} ({units})"


def commit(cwd: str | Path | None = None) -> str:
    """The short commit of the working tree (of ``cwd``, default the current folder), ``+dirty`` when tracked
    files differ from it."""
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=cwd)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=cwd)
    return (proc.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")
