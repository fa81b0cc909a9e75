#!/usr/bin/env python3
"""Write docs/results.md from measured files, every table stamped with where it was measured.

    python tools/results.py runs/quickstart [more run folders or bench.json files] --out docs/results.md \
        --note "load average 3.1 on 2 cores, shared"

Each input is a set: a run folder (its bench.json, eval.json, env.json, pipeline.json and those of the
run folders inside it, e.g. qat-*/) or a bench JSON file (``edgecnn bench --json``; docs/contracts.md).
Each set becomes one section whose stamp gives the date, the commit (``git rev-parse --short HEAD`` of
this repository, "-dirty" when tracked files under edgecnn/ have changes; or ``--commit``), the CPU model
and ISA flags, the core count, torch and runtime versions.

Everything below the line ``<!-- earlier measurements: kept by tools/results.py -->`` in the existing
output file is kept as it is: figures measured earlier, each under a heading naming its machine and commit.

Standard library only; never imported by the package.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

from atomic import write_atomic

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- earlier measurements: kept by tools/results.py -->"
# AMD's CPU families by microarchitecture (cpu_family in a bench row, as /proc/cpuinfo gives it).
# Family 25 holds both Zen 3 and Zen 4: only Zen 4 has AVX-512, which the row's ISA flags tell.
AMD_FAMILIES = {23: "Zen / Zen 2", 25: "Zen 3 / Zen 4", 26: "Zen 5"}
# ISA flags worth naming for int8 / fp32 kernels, in the order they are printed.
ISA_SHOWN = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16",
             "neon", "asimd", "asimddp", "i8mm", "sve")


def git_commit(repo: Path = ROOT) -> str:
    """Short HEAD of ``repo``, "-dirty" when tracked files under edgecnn/ differ from it; "unknown" off git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
                                 "--", "edgecnn"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if status.strip() else "")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(src: Path) -> dict:
    """The measured files of one input set: bench rows, eval records, env records, pipeline stages."""
    got = {"bench": [], "evals": [], "envs": [], "stages": []}
    if src.is_file():
        doc = _load(src)
        if doc is None:
            raise SystemExit(f"error: {src}: not a JSON file")
        got["bench"] = doc.get("rows", []) if isinstance(doc, dict) else list(doc)
        return got
    if not src.is_dir():
        raise SystemExit(f"error: {src}: no such file or folder")
    for run in [src, *sorted(p for p in src.iterdir() if p.is_dir() and (p / "eval.json").exists())]:
        ev, env = _load(run / "eval.json"), _load(run / "env.json")
        if ev:
            got["evals"].append((run.relative_to(src).as_posix() or ".", ev))
        if env:
            got["envs"].append(env)
    bench = _load(src / "bench.json")
    if bench:
        got["bench"] = bench.get("rows", [])
    pipe = _load(src / "pipeline.json")
    if isinstance(pipe, dict) and isinstance(pipe.get("stages"), list):
        got["stages"] = [s for s in pipe["stages"] if isinstance(s, dict)]
    return got


def _first(rows: list[dict], key: str):
    return next((r[key] for r in rows if r.get(key) not in (None, "", [])), None)


def _local_flags(cpu: str) -> set[str]:
    """This machine's ISA flags, only when its /proc/cpuinfo names the same CPU as the input's env.json."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    name = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", info, re.M)
    if not name or not flags or name.group(1).strip() != str(cpu).strip():
        return set()
    return set(flags.group(1).split())


def stamp(got: dict, commit: str, date: str, note: str | None) -> list[str]:
    rows, env = got["bench"], (got["envs"][0] if got["envs"] else {})
    pk = env.get("packages") or {}
    cpu = _first(rows, "cpu_model") or env.get("cpu") or "unknown"
    cores = _first(rows, "cores") or env.get("cores") or "unknown"
    isa = _first(rows, "isa") or []
    shown = [f for f in ISA_SHOWN if f in set(isa)]
    if not shown and not rows:
        local = _local_flags(cpu)
        shown = [f for f in ISA_SHOWN if f in local] + (["(read from this machine's /proc/cpuinfo: no bench rows)"]
                                                        if local else [])
    shown = shown or ["unknown"]
    torch_v = pk.get("torch") or next((r.get("runtime_version") for r in rows if r.get("runtime") == "torch"),
                                      None) or "unknown"
    runtimes = sorted({f"{r['runtime']} {r.get('runtime_version') or '?'}" for r in rows
                       if r.get("runtime") and r.get("runtime") != "torch"})
    if not runtimes:
        runtimes = [f"{k} {v}" for k, v in sorted(pk.items()) if v and k in ("executorch", "openvino", "onnxruntime")]
    measured = _first(rows, "timestamp")
    version = _first(rows, "edgecnn_version")
    family, vendor = _first(rows, "cpu_family"), str(_first(rows, "cpu_vendor") or "")
    if family is not None:
        zen = AMD_FAMILIES.get(int(family)) if "AMD" in vendor.upper() or "AMD" in str(cpu).upper() else None
        if zen and int(family) == 25 and isa:
            zen = "Zen 4" if "avx512f" in isa else "Zen 3"
        cpu = f"{cpu} (family {family}{', ' + zen if zen else ''})"
    lines = [f"- date: {date}" + (f" (bench rows timestamped {measured})" if measured else ""),
             f"- commit: {commit}" + (f" (edgecnn {version})" if version else ""),
             f"- CPU: {cpu}, {cores} cores; ISA flags: {', '.join(shown)}",
             f"- torch {torch_v}; runtimes: {', '.join(runtimes) or 'none recorded'}"]
    if note:
        lines.append(f"- note: {note}")
    return lines


def _ms(r: dict, key: str = "latency_ms_p50") -> str:
    v, lo, hi = r.get(key), r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
    if v is None:
        return "—"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else f"{v:.3g}"


def _num(v, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def section(name: str, got: dict, commit: str, date: str, note: str | None) -> list[str]:
    out = [f"## {name}", "", *stamp(got, commit, date, note), ""]
    if got["bench"]:
        out += ["Latency, batch 1 (p50 ms with its 95% interval; floor: the fastest call (bench files "
                "before commit 3c69070: the lower quartile of the round medians, with its interval; "
                "from 3c69070 to c053ed4: the lowest round median), "
                "the figure host noise moves least; x ref: median over the reference row's):", "",
                "| name | runtime | threads | p50 ms [95% CI] | floor ms | p99 ms | x ref | GMAC/s | size MB | note |",
                "|---|---|---:|---|---|---:|---:|---:|---:|---|"]
        for r in got["bench"]:
            ratio = r.get("ratio_vs_ref")
            note_ = r.get("error") or r.get("warning") or ""
            out.append(f"| {r.get('name')} | {r.get('runtime')} {r.get('runtime_version') or ''} | "
                       f"{r.get('threads') or '—'} | {_ms(r)} | {_ms(r, 'latency_ms_floor')} | "
                       f"{_num(r.get('latency_ms_p99'), '.3g')} | "
                       f"{_num(ratio, '.3f')} | {_num(r.get('gmacs_per_s'), '.1f')} | "
                       f"{_num(r.get('size_mb'), '.2f')} | {str(note_).replace('|', '/')[:80]} |")
        out.append("")
    if got["evals"]:
        out += ["Accuracy on the validation split (`eval.json`):", "",
                "| run | model | epoch | accuracy | F1 | images | params | GMACs |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for where, e in got["evals"]:
            pct = lambda k: _num(None if e.get(k) is None else 100 * e[k], ".1f") + ("%" if e.get(k) is not None else "")
            out.append(f"| {where} | {e.get('model')} | {e.get('epoch', '—')} | {pct('accuracy')} | {pct('f1')} | "
                       f"{e.get('images', '—')} | {_num(e.get('params'), ',')} | "
                       f"{_num(None if e.get('macs') is None else e['macs'] / 1e9, '.3f')} |")
        out.append("")
    if got["stages"]:
        out += ["Stage timings of `edgecnn run` (`pipeline.json`, seconds; a skipped stage took no time):", "",
                "| stage | status | seconds |", "|---|---|---:|"]
        out += [f"| {s.get('stage')} | {s.get('status')} | {_num(s.get('seconds'), '.1f')} |" for s in got["stages"]]
        total = sum(s.get("seconds") or 0 for s in got["stages"])
        out += [f"| total | | {total:.1f} |", ""]
    return out


def stages_from_log(text: str) -> list[dict]:
    """The rows of `edgecnn run`'s step summary (``│ train │ done │ 37.4 │``), total excluded."""
    rows = []
    for m in re.finditer(r"^[│|]\s*(.+?)\s*[│|]\s*(\w+)\s*[│|]\s*([0-9.]+)\s*[│|]\s*$", text, re.M):
        rows.append({"stage": m.group(1), "status": m.group(2), "seconds": float(m.group(3))})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="run folders or bench JSON files; one section each")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--commit", action="append", default=[],
                    help="the commit to stamp, one per input in order, the last one for the rest "
                         "(default: git HEAD of this repository, -dirty marked)")
    ap.add_argument("--note", help="a line stamped on every section, e.g. the machine's load (uptime)")
    ap.add_argument("--name", action="append", default=[], help="a section title per input, in order")
    ap.add_argument("--run-log", type=Path, help="the terminal output of `edgecnn run` for the first input: its "
                    "step summary gives the stage timings (pipeline.json does not record them)")
    a = ap.parse_args(argv)
    commits = a.commit or [git_commit()]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = ["# Results", "",
            "Written by `python tools/results.py` from measured files; do not edit above the marker line.", ""]
    for i, src in enumerate(a.inputs):
        name = a.name[i] if i < len(a.name) else f"`{src}`"
        got = collect(src)
        if i == 0 and a.run_log and not got["stages"]:
            got["stages"] = stages_from_log(a.run_log.read_text(errors="replace"))
        commit = commits[min(i, len(commits) - 1)]  # inputs measured at different commits say so
        text += section(name, got, commit, date, a.note)
    kept = ""
    if a.out.exists():
        old = a.out.read_text()
        if MARKER in old:
            kept = old.split(MARKER, 1)[1]
    write_atomic(a.out, "\n".join(text).rstrip() + "\n\n" + MARKER + (kept if kept else "\n"))
    print(f"wrote {a.out}: {len(a.inputs)} section(s), commit {', '.join(commits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
