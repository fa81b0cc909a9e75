"""What a sweep prints: the probe table, the candidates, the outcome and the recommendation line."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from edgecnn.sweep.grid import QAT_FOR_TARGET, Grid, _final_label, _words, _yaml_word


def _print_outcome(console: Console, doc: dict, budget_ms: float, latency_only: bool) -> None:
    t = doc["trainings"]
    phase = _phase_line(doc.get("latency_phase"))
    if phase:
        console.print(phase, highlight=False, soft_wrap=True)
    would, never = ("would be ", "would never be") if latency_only else ("", "never")
    console.print(f"trainings: {t['variants_trained']} of {t['variants']} variants {would}trained, "
                  f"{t['variants_saved']} {never} trained (latency above {budget_ms:g} ms for every precision "
                  f"and target); QAT fine-tunes {t['qat_runs']} of {t['qat_runs_full_grid']} ({t['saved']} of "
                  f"{t['trainings_full_grid']} trainings saved in all); wall {doc['wall_s']:.0f} s",
                  highlight=False, soft_wrap=True)
    console.print(doc["recommendation_line"], highlight=False, markup=False, soft_wrap=True)
    if doc["recreate"]:
        console.print(doc["recreate"], highlight=False, markup=False, soft_wrap=True)


def _fmt_ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _recommendation_line(doc: dict, latency_only: bool) -> str:
    budget = doc["budget_ms"]
    rec = doc["recommendation"]
    emulated = " (rests on emulated timings: the board was emulated, not real)" if doc["emulated"] else ""
    if latency_only:
        within = [c for c in doc["candidates"] if c["status"].startswith("within reach")]
        return (f"latency only: {len(within)} candidates within reach of {budget:g} ms on {doc['device']}; "
                f"run without --latency-only to train them{emulated}")
    if rec is None:
        return (f"recommendation: none: no candidate's latency interval is within {budget:g} ms on {doc['device']}"
                f"{emulated}; raise --budget-ms or vary smaller settings")
    acc_lo, acc_hi = rec["accuracy_ci"]
    lat_lo, lat_hi = rec["latency_ms_ci"]
    n_tied = len(rec["tied_with"])
    tie = f", tied on {doc['metric']} (overlapping intervals) with {n_tied} slower" if n_tied else ""
    what = f"{rec['variant']} ({_words(rec['overrides'])}) {_final_label(rec['precision'], rec['target'])}"
    return (f"recommendation: {what}: {doc['metric']} {rec['accuracy']:.1%} [{acc_lo:.1%}, {acc_hi:.1%}], "
            f"p50 {_fmt_ms(rec['latency_ms_p50'])} ms [{_fmt_ms(lat_lo)}, {_fmt_ms(lat_hi)}] within {budget:g} ms "
            f"on {doc['device']}{tie}{emulated}")


def _recreate(grid: Grid, rec: dict, out: Path) -> str:
    """The ``edgecnn run`` command that trains the recommended variant and writes its artifact alone."""
    p, t = rec["precision"], rec["target"]
    words = ["edgecnn", "run", str(grid.recipe_path), *grid.overrides,
             *(f"{k}={_yaml_word(v)}" for k, v in rec["overrides"].items())]
    stages = ["train", "qat", "export"] if p == "qat" else ["train", "export"]
    words.append(f"pipeline.stages=[{', '.join(stages)}]")
    if p == "qat":
        words.append(f"pipeline.qat=[{QAT_FOR_TARGET[t]}]")
    int8 = {"fp32": "", "ptq": ", int8: ptq", "qat": ", int8: qat"}[p]
    words.append(f"pipeline.export=[{{target: {t}{int8}}}]")
    name = f"{Path(grid.recipe_path).stem}-{rec['variant']}"
    words += ["--out", f"runs/{name}"]
    return " ".join(shlex.quote(w) for w in words)


def _print_probes(console: Console, grid: Grid, probes: dict, alive: dict, budget: float) -> None:
    table = Table(title=f"latency from random weights (median [95% interval], ms; rounds timed) against {budget:g} ms",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("variant")
    for p, t in grid.candidates:
        table.add_column(_final_label(p, t).replace("int8 ", ""), justify="right", no_wrap=True)
    table.add_column("train?")
    for v in grid.variants:
        cells = []
        for c in grid.candidates:
            lat, row = probes[v.name]["latency"].get(c), probes[v.name]["rows"].get(c) or {}
            mark = "" if c in alive[v.name] else " ✗"
            rounds = f" {row['rounds']}r" if row.get("rounds") else ""
            cells.append("failed" if lat is None else
                         f"{_fmt_ms(lat[0])} [{_fmt_ms(lat[1])}, {_fmt_ms(lat[2])}]{rounds}{mark}")
        table.add_row(v.name, *cells, "yes" if alive[v.name] else "never")
    console.print(table)


def _phase_line(phase: dict | None) -> str | None:
    """``latency phase: 24 artifacts in 312 s, 5-19 rounds each (14 above budget, ...)``."""
    if not phase or not phase.get("rounds"):
        return None
    r = phase["rounds"]
    span = f"{r[0]}-{r[-1]}" if r[0] != r[-1] else f"{r[0]}"
    why = ", ".join(f"{n} {k}" for k, n in phase["stopped_by"].items() if n)
    return f"latency phase: {phase['artifacts']} artifacts in {phase['seconds']:.0f} s, {span} rounds each ({why})"


def _print_candidates(console: Console, doc: dict) -> None:
    table = Table(title=f"sweep: {len(doc['candidates'])} candidates, budget {doc['budget_ms']:g} ms on "
                        f"{doc['device']} ({doc['metric']} [95% interval], p50 [95% interval])",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in (("candidate", "left"), (doc["metric"], "right"), ("p50 ms", "right"), ("MB", "right"),
                      ("", "left")):
        table.add_column(col, justify=just, no_wrap=True)
    rec = (doc.get("recommendation") or {}).get("id")
    front = set(doc.get("pareto") or [])
    for c in doc["candidates"]:
        acc = "—" if c["accuracy"] is None else \
            f"{c['accuracy']:.1%} [{c['accuracy_ci'][0]:.1%}, {c['accuracy_ci'][1]:.1%}]"
        lat = "—" if c["latency_ms_p50"] is None else \
            f"{_fmt_ms(c['latency_ms_p50'])} [{_fmt_ms(c['latency_ms_ci'][0])}, {_fmt_ms(c['latency_ms_ci'][1])}]"
        if c["latency_source"] and c["latency_source"] != "trained artifact" and c["latency_ms_p50"] is not None:
            lat += " (probe)"
        size = "—" if c["size_mb"] is None else f"{c['size_mb']:.2f}"
        status = "over budget (probe)" if (c["status"] or "").startswith("excluded") else c["status"] or ""
        note = ("★ recommended" if c["id"] == rec else status) + (" · Pareto" if c["id"] in front else "")
        table.add_row(c["id"], acc, lat, size, note)
    console.print(table)
