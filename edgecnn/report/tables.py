"""The report's tables: the paper's columns (Accuracy, Precision, Recall, F1-score,
FLOPs as MACs, Params) plus latency, size and device, as plain cells.

A table here is ``(columns, rows of str cells)``; ``markdown`` and the HTML
writer render the same cells, so the two files always say the same thing.
A missing figure is ``GAP``; a bench row that failed shows its error instead
of latency.
"""

from __future__ import annotations

from edgecnn.report.rows import run_label

GAP = "—"

SECTIONS = {  # role -> heading
    "gpu-reference": "GPU reference (PyTorch eager on CUDA)",
    "reference": "PyTorch reference (eager)",
    "edge": "Edge targets (exported artifacts)",
}


def pct(x: float | None) -> str:
    """0.9617 -> ``96.17%`` (the paper's precision)."""
    return GAP if x is None else f"{x:.2%}"


def count(n: float | None) -> str:
    """MACs and params: ``2.470 G``, ``12.50 M``, ``975.2 K``."""
    if n is None:
        return GAP
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:g}"


def num(x: float | None, digits: int = 2) -> str:
    return GAP if x is None else f"{x:.{digits}f}"


def ratio(x: float | None) -> str:
    return GAP if x is None else f"{x:.2f}×"


def note(row: dict) -> str:
    """What a reader must know about a row: its error, or a bench warning."""
    if row.get("error"):
        return f"error: {row['error']}"
    from edgecnn.bench.check import note as check_note

    return "; ".join(filter(None, [row.get("warning"), check_note(row)]))


# Throughput, p99, RSS and the rest are in results.csv/json; the tables keep to what fits a screen.
ROW_COLUMNS = ["Model", "Accuracy", "Precision", "Recall", "F1-score", "FLOPs (MACs)", "Params",
               "p50 (ms)", "Floor (ms)", "p90 (ms)", "Size (MB)", "vs ref", "Device", "Runtime", "Note"]


def row_cells(r: dict) -> list[str]:
    runtime = " ".join(x for x in (r.get("runtime"), r.get("runtime_version")) if x) or GAP
    failed = bool(r.get("error"))
    return [
        r["name"], pct(r["accuracy"]), pct(r["macro_precision"]), pct(r["macro_recall"]), pct(r["macro_f1"]),
        count(r["macs"]), count(r["params"]),
        GAP if failed else num(r["latency_ms_p50"]), GAP if failed else num(r.get("latency_ms_floor")),
        GAP if failed else num(r["latency_ms_p90"]), num(r["size_mb"]),
        GAP if failed else ratio(r["ratio_vs_ref"]), r["device"] or GAP, runtime, note(r),
    ]


def section_tables(rows: list[dict]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """``(id, heading, columns, cells)`` per role that has rows, in ``SECTIONS`` order."""
    out = []
    for role, heading in SECTIONS.items():
        mine = [r for r in rows if r["role"] == role]
        if mine:
            out.append((role, heading, ROW_COLUMNS, [row_cells(r) for r in mine]))
    return out


DEVICE_COLUMNS = ["Device", "Description", "Runtime", "Settings"]


def device_table(rows: list[dict]) -> tuple[str, str, list[str], list[list[str]]] | None:
    """What each device string stands for (CPU, board, frequency), and how each runtime ran there."""
    seen: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["device"]:
            runtime = " ".join(x for x in (r["runtime"], r["runtime_version"]) if x) or GAP
            seen.setdefault((r["device"], runtime), []).append(r)
    if not seen:
        return None
    cells = []
    for (device, runtime), mine in seen.items():
        desc = next((r["device_desc"] for r in mine if r["device_desc"]), GAP)
        notes = "; ".join(dict.fromkeys(r["runtime_note"] for r in mine if r["runtime_note"])) or GAP
        cells.append([device, desc, runtime, notes])
    return "devices", "Devices and runtimes", DEVICE_COLUMNS, cells


SUBSET_COLUMNS = ["Bands", "Accuracy", "Precision", "Recall", "F1-score", "Images"]


def subset_tables(runs) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The paper's Table 2 per band-robust run: every band subset, missing bands zero-filled."""
    out = []
    for run in runs:
        subsets = ((run.eval or {}).get("subsets") or {}) if run.given else {}
        if subsets:
            cells = [[name, pct(m.get("accuracy")), pct(m.get("precision")), pct(m.get("recall")), pct(m.get("f1")),
                      str(m.get("images", GAP))] for name, m in subsets.items()]
            label = run_label(run.path)
            out.append((f"bands-{label}", f"{label}: accuracy per band subset", SUBSET_COLUMNS, cells))
    return out


HEADLINE_COLUMNS = ["Model", "Role", "Device", "Accuracy", "F1-score", "p50 (ms)", "Floor (ms)", "Size (MB)",
                    "vs ref"]
# What the two latency columns are (a note of every report with a floor): only one survives host noise.
FLOOR_NOTE = ("p50: the median of every timed call ± its 95% interval; Floor: the fastest call, "
              "the figure the host's noise moves least: compare runs on a shared machine with it "
              "(docs/precision.md)")
SHORT_ROLES = {"gpu-reference": "GPU ref", "reference": "ref", "edge": "edge"}  # fits an 80-column terminal


def headline(rows: list[dict]) -> dict:
    """The short table a terminal prints after ``edgecnn report`` / ``make demo``."""
    cells = []
    for r in rows:
        failed = bool(r.get("error"))
        cells.append([r["name"], SHORT_ROLES[r["role"]], r["device"] or GAP,
                      _pm(pct(r["accuracy"]), r["accuracy"], r.get("accuracy_ci_low"), r.get("accuracy_ci_high"), 100),
                      pct(r["macro_f1"]),
                      "error" if failed else _pm(num(r["latency_ms_p50"]), r["latency_ms_p50"],
                                                 r.get("latency_ms_p50_ci_low"), r.get("latency_ms_p50_ci_high")),
                      GAP if failed else num(r.get("latency_ms_floor")), num(r["size_mb"]), GAP if failed else ratio(r["ratio_vs_ref"])])
    return {"columns": HEADLINE_COLUMNS, "rows": cells}


def _pm(text: str, value: float | None, low: float | None, high: float | None, scale: float = 1.0) -> str:
    """``96.4 ±1.6``: the cell and the larger side of its 95% interval, with the cell's decimals."""
    if value is None or low is None or high is None:
        return text
    bare = text.rstrip("%×")
    digits = len(bare.split(".")[1]) if "." in bare else 0
    return f"{text} ±{max(high - value, value - low) * scale:.{digits}f}"


def markdown(columns: list[str], cells: list[list[str]]) -> str:
    """A GitHub-style pipe table; text columns left, figures right."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    right = [i > 0 and all(_numeric(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    return cell == GAP or cell[:1].isdigit() or cell[:1] == "-"
