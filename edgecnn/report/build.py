"""``build``: read the inputs, join the rows, draw, and write every report file to one folder."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path

from edgecnn.report import html, plots, tables
from edgecnn.report.collect import collect
from edgecnn.files import atomic_write_bytes
from edgecnn.report.rows import COLUMNS, build_rows, run_label
from edgecnn.report import sweep

REPORT_VERSION = 1


def build(paths: list[Path], out: Path) -> dict:
    """Write ``report.md``, ``report.html``, ``results.csv``, ``results.json``, ``plots.json`` and the PNG plots.

    Args:
        paths: run folders, artifacts (or their sidecars), ``edgecnn bench --json`` files, or folders holding them.
        out: the report folder (created; files of an earlier report there are replaced).

    Returns:
        ``{"out", "files", "rows", "headline", "plots", "notes"}``: the files written, the joined
        rows (as in results.json), the short table for a terminal (``{"columns", "rows"}`` of str
        cells), the plots' series as drawn, and the notes about missing pieces.

    Raises:
        UserError: a path does not exist or is not one of ours, a damaged JSON file,
            or matplotlib is missing.
    """
    paths, sweeps = sweep.expand(list(paths))  # a sweep folder: its trained variants, plus the sweep plot
    sources = collect(paths)
    rows = build_rows(sources)
    notes = sweep.notes(sweeps) + sources.notes + _gap_notes(rows, sources)
    if any(r.get("latency_ms_floor") is not None for r in rows):
        notes.append(tables.FLOOR_NOTE)
    drawn = [sweep.plot(folder, doc) for folder, doc in sweeps] + plots.draw_all(rows, list(sources.runs.values()))
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sections = tables.section_tables(rows)
    devices = tables.device_table(rows)
    more = tables.subset_tables(sources.runs.values()) + ([devices] if devices else [])
    head = tables.headline(rows)
    given = [run_label(r.path) for r in sources.runs.values() if r.given]
    title = "edgecnn report" + (f": {', '.join(given)}" if given else "")
    inputs = list(dict.fromkeys(sources.files))
    metas = [meta for _, meta in drawn]

    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "report.md": _markdown(title, created, sections, more, metas, notes, inputs).encode(),
        "report.html": html.page(title, created, sections, more, drawn, notes, inputs).encode(),
        "results.csv": _csv(rows).encode(),
        "results.json": (json.dumps({"edgecnn_report": REPORT_VERSION, "created": created, "inputs": inputs,
                                     "columns": COLUMNS, "rows": rows, "headline": head, "plots": metas,
                                     "notes": notes}, indent=2) + "\n").encode(),
        "plots.json": (json.dumps(metas, indent=2) + "\n").encode(),
        **{meta["file"]: png for png, meta in drawn},
    }
    _remove_stale_plots(out, set(files))
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    return {"out": str(out), "files": [str(out / n) for n in files], "rows": rows, "headline": head,
            "plots": metas, "notes": notes}


def _gap_notes(rows: list[dict], sources) -> list[str]:
    """Say what to run for each blank: a reader should know a gap is 'not measured', not 'zero'."""
    notes = []
    unbenched = [r["name"] for r in rows if r["role"] == "edge" and r["device"] is None]
    if unbenched:
        notes.append(f"never benched (latency blank): {', '.join(unbenched)}; run edgecnn bench on the artifacts")
    for run in sources.runs.values():
        if run.given and run.eval is None:
            notes.append(f"{run.path}: no eval.json ({'accuracy from metrics.csv, ' if run.best_epoch else ''}"
                         f"MACs and params blank unless its float run has them); run edgecnn eval {run.path}")
    for r in rows:
        if r.get("error"):
            notes.append(f"{r['name']} on {r['device']}: failed: {r['error']}")
    return notes


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    return buf.getvalue()


def _markdown(title, created, sections, more, metas, notes, inputs) -> str:
    lines = [f"# {title}", "", f"Written {created} by `edgecnn report` from {len(inputs)} files. "
             "Accuracy, precision, recall and F1 are measured on the validation split (edge rows: by the "
             "artifact's own runtime at export). MACs are multiply-accumulates (the paper's \"FLOPs\"). "
             "— means not measured.", ""]
    for _, heading, columns, cells in [*sections, *more]:
        lines += [f"## {heading}", "", tables.markdown(columns, cells), ""]
    if metas:
        lines += ["## Plots", ""] + [f"![{m['title']}]({m['file']})" for m in metas] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Inputs", ""] + [f"- `{f}`" for f in inputs] + [""]
    return "\n".join(lines)


def _remove_stale_plots(out: Path, keep: set[str]) -> None:
    """Plots an earlier report wrote into ``out`` that this one does not (a device no longer benched)."""
    old = out / "plots.json"
    try:
        names = [m["file"] for m in json.loads(old.read_text())]
    except (OSError, ValueError, TypeError, KeyError):
        return
    for name in names:
        if name not in keep and Path(name).name == name and name.endswith(".png"):
            (out / name).unlink(missing_ok=True)
