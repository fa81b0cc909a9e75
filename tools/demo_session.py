#!/usr/bin/env python3
"""Rewrite the README's "A real session" block from a real `make demo`, stamped by this tool.

    python tools/demo_session.py                                       # `make demo` here, then the README
    git clone . /tmp/x && python tools/demo_session.py --run /tmp/x    # from a fresh clone: install included
    python tools/demo_session.py --log demo.log --seconds 292          # a saved log (stdout and stderr merged)
    python tools/demo_session.py --dry-run ...                         # print the block, README untouched

Why: the session is what a reader compares a first run with. Written by hand, its figures drifted from the
commit, machine and versions it named. Here the tool times the run itself (time.monotonic, install included),
notes its longest stretch without output (what a watching user sees as a hang),
abridges the log the same way every time (abridge()) and stamps the block with the run folder's commit, this
machine's CPU and cores, and the torch, executorch and openvino of the run folder's .venv. With --log, run
the tool on the machine that made the log, and give --run the folder it was made in.

The block lies between `<!-- demo-session:start -->` and `<!-- demo-session:end -->` in README.md; the rest
of the file stays byte for byte. No markers, a failing `make demo` or a log without the bench table: one
line on stderr, exit 2, README untouched. Standard library only (and tools/stamp.py); never imported by the
package.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

from atomic import write_atomic
from stamp import commit, cpu

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- demo-session:start -->", "<!-- demo-session:end -->"
RUN_CMD = re.compile(r"^\S*edgecnn run ")                   # the command line make echoes
RULE = re.compile(r"─{2,} (\[\d+/\d+\] .+?) ─{2,}$")        # a stage's rule: ──── [k/9] title ────
CHAIN = re.compile(r"^\[\d+/\d+\] (QAT for|export) ")      # stages whose consecutive rules fold into one
EPOCH = re.compile(r"^epoch +\d+/\d+ ")                    # training's epochs (QAT's say "qat epoch")
STEP = re.compile(r"^│ (\S.*?) +│ (\w*) +│ +([\d.]+) │$")  # a row of the chain's step table
PACKAGES = ("torch", "executorch", "openvino")


class Problem(Exception):
    """What went wrong and the fix, in one line (stderr, exit 2)."""


# -- the log ----------------------------------------------------------------------------------------

def abridge(lines: list[str]) -> list[str]:
    """The lines of a `make demo` log worth showing, in their order: the edgecnn command line, the stage rules
    (QAT and export rules in a row folded into one, the export results after it), training's last epoch, the
    export results (top-1 agreement), the last bench progress line, the bench table and the report's "wrote".
    Everything else (pip, library warnings and log lines, progress) is dropped."""
    kept: list[tuple[str, str]] = []  # (kind, text)
    in_table = False
    for line in (raw.rstrip() for raw in lines):
        if in_table:
            if line.strip() and set(line.strip()) == {"─"}:  # the rule under the table's header
                continue
            if line.startswith(" ") and line[1:2].strip():
                kept.append(("row", line))
                continue
            in_table = False
        if RUN_CMD.match(line):
            kept.append(("cmd", line))
        elif m := RULE.search(line):
            kept.append(("rule", re.sub(r" from \S+$", "", m[1])))  # the source folder: the title is enough
        elif EPOCH.match(line):
            kept.append(("epoch", line))
        elif "top-1 agreement" in line:
            kept.append(("export", line))
        elif line.startswith("bench: round "):
            kept.append(("progress", line))
        elif line.startswith(" name "):
            kept.append(("row", line))
            in_table = True
        elif line.startswith("wrote "):
            kept.append(("wrote", line))

    # only the last epoch and the last progress line
    last = {kind: i for i, (kind, _) in enumerate(kept)}
    n_progress = sum(kind == "progress" for kind, _ in kept)
    kept = [(k, t) for i, (k, t) in enumerate(kept) if k not in ("epoch", "progress") or i == last[k]]

    out, i = ["$ make demo"], 0
    while i < len(kept):
        kind, text = kept[i]
        if kind == "rule" and CHAIN.match(text):
            # QAT and export stages up to the next other stage: one rule line, then their results
            rules, rest = [], []
            while i < len(kept) and not (kept[i][0] == "rule" and not CHAIN.match(kept[i][1])):
                (rules if kept[i][0] == "rule" else rest).append(kept[i][1])
                i += 1
            folded = f" ... {rules[-1]} ────" if len(rules) > 1 else ""
            out.append(f"──── {rules[0]} ────{folded}")
            out += rest
            continue
        if kind == "rule":
            text = f"──── {text} ────"
        elif kind == "progress":
            text += f"      <- progress on stderr, the last of {n_progress}"
        out.append(text)
        i += 1
    return out


def step_seconds(lines: list[str]) -> list[tuple[str, float]]:
    """The chain's step table that `edgecnn run` prints at the end: (step, seconds), without the total."""
    rows = [(m[1], float(m[3])) for line in lines if (m := STEP.match(line.rstrip()))]
    return [(step, s) for step, s in rows if step != "total"]


def duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def timing(lines: list[str], seconds: float) -> str:
    """`4 min 52 s in all, install included (chain 246 s: train 67 s, QAT 73 s, ...; install and start-up 46 s)`"""
    installed = any("pip install" in line for line in lines)
    head = f"{duration(seconds)} in all, " + ("install included" if installed else "no install (it was done)")
    steps = step_seconds(lines)
    if not steps:
        return head
    groups: dict[str, float] = {}  # by the step's first word: qat xnnpack + qat openvino -> QAT
    for step, s in steps:
        word = step.split()[0]
        groups[word] = groups.get(word, 0.0) + s
    names = {"qat": "QAT", "export": "exports"}
    chain = sum(s for _, s in steps)
    parts = ", ".join(f"{names.get(w, w)} {s:.0f} s" for w, s in groups.items())
    rest = "install and start-up" if installed else "start-up"
    return f"{head} (chain {chain:.0f} s: {parts}; {rest} {max(0.0, seconds - chain):.0f} s)"


def quiet(silence: Silence | None) -> str:
    """`; at most 7 s without output (after `pip install ...`)`; nothing for a saved log (it has no times)."""
    if silence is None:
        return ""
    after = m[1] if (m := RULE.search(silence.after)) else silence.after  # a stage's rule: its title
    after = after if len(after) <= 60 else after[:57] + "..."
    after = after.replace("`", "'")
    return f"; at most {silence.seconds:.0f} s without output (after `{after}`)"


# -- where it ran -----------------------------------------------------------------------------------

def versions(run: Path) -> dict[str, str]:
    """torch, executorch and openvino as the run folder's .venv has them (else this interpreter)."""
    venv = run / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    code = ("import importlib.metadata as m\n"
            f"for p in {PACKAGES!r}:\n"
            "    try: print(p, m.version(p))\n"
            "    except m.PackageNotFoundError: print(p, 'not installed')\n")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {p: found.get(p, "unknown") for p in PACKAGES}


def stamp(run: Path, lines: list[str], seconds: float, when: dt.datetime, silence: Silence | None = None) -> str:
    fresh = any(re.search(r" -m venv ", line) for line in lines) and not any(
        line.startswith("skipped:") for line in lines)  # a new .venv and every stage run: a fresh clone
    v = versions(run)
    text = (f"`make demo`{' from a fresh clone' if fresh else ''} at commit {commit(cwd=run)} "
            f"({when:%Y-%m-%d %H:%M} UTC) on {cpu()}, {os.cpu_count()} cores, torch {v['torch']}, "
            f"executorch {v['executorch']}, openvino {v['openvino']}: {timing(lines, seconds)}"
            f"{quiet(silence)}. "
            "Written by `python tools/demo_session.py`; abridged:")
    # wrapped like the README's paragraphs, never inside a `code span`
    text = re.sub(r"`[^`]*`", lambda m: m[0].replace(" ", "\0"), text)
    return textwrap.fill(text, width=110, break_long_words=False, break_on_hyphens=False).replace("\0", " ")


def block(run: Path, lines: list[str], seconds: float, when: dt.datetime, source: str,
          silence: Silence | None = None) -> str:
    short = abridge(lines)
    if not any(line.startswith(" name ") for line in short):
        raise Problem(f"{source}: no bench table in the log (the run stopped before the bench, or skipped it in a "
                      "folder benched before): run `make demo` to the end in a fresh clone, then this again")
    return stamp(run, lines, seconds, when, silence) + "\n\n```\n" + "\n".join(short) + "\n```"


# -- running it and the README ----------------------------------------------------------------------

class Silence(NamedTuple):
    """The longest stretch without a line of output, and the line it followed."""
    seconds: float
    after: str


def run_demo(folder: Path) -> tuple[list[str], float, Silence]:
    """`make demo` in ``folder``: its output (stdout and stderr merged) echoed live and kept, its wall time and
    its longest silence (a user watching the screen sees nothing move for that long)."""
    env = dict(os.environ)
    env.setdefault("COLUMNS", "140")        # rich's width off a terminal: rules and tables the same every time
    env.setdefault("PYTHONUNBUFFERED", "1")  # stdout and stderr in the order they were written
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(["make", "demo"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env)
    except OSError as e:
        raise Problem(f"cannot run make in {folder} ({e}): install make, or give --log a saved log") from None
    lines, last, silence = [], t0, Silence(0.0, "the start")
    for raw in proc.stdout:
        now = time.monotonic()
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        if now - last > silence.seconds:
            silence = Silence(now - last, lines[-1].strip() if lines else "the start")
        last = now
        lines.append(raw.decode("utf-8", "replace"))
    rc = proc.wait()
    seconds = time.monotonic() - t0
    if seconds - (last - t0) > silence.seconds:
        silence = Silence(seconds - (last - t0), lines[-1].strip() if lines else "the start")
    if rc != 0:
        raise Problem(f"`make demo` failed in {folder} (exit {rc}): fix what its output above says, "
                      "then run this again")
    return lines, seconds, silence


def replace_block(text: str, new: str) -> str:
    """``text`` with what lies between the markers replaced by ``new``; everything else kept as it is."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(END) < text.index(START):
        raise Problem(f"README has no single {START} ... {END} pair: put the two markers, each on its own "
                      "line, around the session paragraph and its code block")
    i, j = text.index(START) + len(START), text.index(END)
    return text[:i] + "\n" + new.rstrip("\n") + "\n" + text[j:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT, metavar="DIR",
                    help="run `make demo` in DIR (default: this repository); with --log, the folder the log "
                         "was made in (its commit and .venv)")
    ap.add_argument("--log", type=Path, metavar="FILE", help="a saved `make demo` log instead of a run")
    ap.add_argument("--seconds", type=float, metavar="S", help="with --log: the run's measured wall time")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the file to write (default: ours)")
    ap.add_argument("--dry-run", action="store_true", help="print the block, leave the README as it is")
    args = ap.parse_args(argv)
    try:
        try:
            text = args.readme.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise Problem(f"cannot read {args.readme} ({e}): give --readme the README to write") from None
        replace_block(text, "")  # the markers, before a run of minutes
        if not args.run.is_dir():
            raise Problem(f"{args.run}: no such folder: give --run the clone to run `make demo` in")
        if args.log is not None:
            if args.seconds is None:
                raise Problem("--log needs --seconds S, the run's wall time (a log has none): time the run")
            try:
                lines = args.log.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as e:
                raise Problem(f"cannot read {args.log} ({e}): give --log a saved `make demo` log") from None
            seconds, source, silence = args.seconds, str(args.log), None
            when = dt.datetime.fromtimestamp(args.log.stat().st_mtime, dt.timezone.utc)
        else:
            lines, seconds, silence = run_demo(args.run)
            source, when = f"`make demo` in {args.run}", dt.datetime.now(dt.timezone.utc)
        new = block(args.run.resolve(), lines, seconds, when, source, silence)
        result = replace_block(text, new)
    except Problem as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(new)
    else:
        write_atomic(args.readme, result)
        print(f"wrote the session into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
