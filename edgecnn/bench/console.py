"""What ``edgecnn bench`` (and the bench stage of ``edgecnn run``) prints: the table and its notes.

Printers live with their stage, not in ``cli/``, so the pipeline can use them without importing the CLI.
"""

from __future__ import annotations

from rich import box
from rich.table import Table

from edgecnn.bench.api import reference
from edgecnn.bench.check import note as check_note
from edgecnn.core.stats import half_width_pct


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _pm(value: float | None, low: float | None, high: float | None, ratio: bool = False) -> str:
    """``0.64 ±0.02``: a figure and the half-width of its 95% interval (the larger side, to be safe),
    both with the figure's decimals."""
    if value is None:
        return "-"
    digits = 3 if ratio or value < 1 else 2 if value < 100 else 0
    text = f"{value:.{digits}f}"
    if low is None or high is None:
        return text
    return f"{text} ±{max(high - value, value - low):.{digits}f}"


# Which figure is which: the table shows two, and only one of them is the one to compare across runs on a
# shared machine.
FLOOR_LEGEND = ("p50: the median of every timed call ± its 95% interval (what this run saw); floor: the fastest "
                "call, the figure the host's noise moves least: compare runs with it "
                "(docs/precision.md); GMAC/s with its share of the peak below")


def print_rows(console, rows: list[dict]) -> None:
    """The table (fits 100 columns), then the device, the notes and the instrument's own figures.

    Two latencies: the median of every call with its interval and the floor (``FLOOR_LEGEND``); ``x ref`` is the
    ratio to the reference row with its interval, marked ``≈`` where the two
    medians' intervals overlap (the rows cannot be told apart).
    """
    ref = reference(rows)
    ran = [r for r in rows if r["latency_ms_p50"] is not None]
    console.print(_latency_table(rows))
    if ran:
        console.print(FLOOR_LEGEND, highlight=False)
    for desc in sorted({r["device_desc"] for r in rows if r["device_desc"]}):
        console.print(f"device: {desc}", highlight=False)
    if ref:
        console.print(f"x ref: the median over {ref['name']}'s; ≈ where the two cannot be told apart", highlight=False)
    for r in rows:
        parts = [f"{r['runtime'] or '-'} {r['runtime_version'] or ''}".strip(), r["runtime_note"]]
        console.print(f"{r['name']}: {'; '.join(p for p in parts if p)}", highlight=False)
        for note in filter(None, [r["error"] and f"[red]error: {r['error']}[/red]",
                                  r["warning"] and f"warning: {r['warning']}", _stop_note(r),
                                  *(r.get("stat_notes") or []),
                                  check_note(r)]):
            console.print(f"  {note}", highlight=False)
    pairs = sorted({tuple(sorted((r["name"], o))) for r in ran for o in (r.get("indistinguishable_from") or [])})
    if pairs:
        console.print("not distinguishable (95% intervals of the medians overlap): "
                      + ", ".join(f"{a} ≈ {b}" for a, b in pairs), highlight=False)
    methods = sorted({r["ci_method"] for r in ran if r.get("ci_method")})
    if methods:
        console.print(f"intervals: {', '.join(methods)}", highlight=False)
    peaks = sorted({(r["peak_isa"], r["peak_gmacs_per_s"]) for r in ran if r.get("peak_isa")})
    if peaks:
        clock = "cpufreq maximum" if any(r.get("max_freq_mhz") for r in ran) else \
            "the clock /proc/cpuinfo reports (a VM's nominal clock: boost can pass 100%)"
        console.print("peak: " + ", ".join(f"{isa} {g:.0f} GMAC/s" for isa, g in peaks) + f", at {clock}",
                      highlight=False)
    if ran:
        console.print(_instrument_line(ran), highlight=False)


def _latency_table(rows: list[dict]):
    """One line per row: the medians with their intervals, the ratio to the reference, memory and size.

    The title says how the first row was timed (every row of one bench is timed alike).
    """
    devices = sorted({r["device"] for r in rows if r["device"]})
    first = rows[0]
    if first.get("iters") is not None:
        how = f"{first['iters']} calls in {first['rounds'] or '?'} rounds"
    elif first.get("precision_target_pct"):
        counts = sorted({r["rounds"] for r in rows if r.get("rounds")})
        span = f"{counts[0]}-{counts[-1]}" if len(counts) > 1 else f"{counts[0] if counts else '?'}"
        how = f"{span} rounds of ≥{first['min_time_s'] or '?'} s to ±{first['precision_target_pct']:g}%"
    else:
        how = f"{first['rounds'] or '?'} rounds of ≥{first['min_time_s'] or '?'} s"
    table = Table(title=f"latency on {', '.join(devices)}: {_threads(first['threads'])}, batch {first['batch']}, "
                        f"{how}", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
                  collapse_padding=True)
    for col, just in (("name", "left"), ("p50 ms", "right"), ("floor ms", "right"), ("p99 ms", "right"), ("x ref", "right"),
                      ("GMAC/s", "right"), ("RSS MB", "right"), ("size MB", "right"),
                      ("", "left")):
        table.add_column(col, justify=just, no_wrap=True, overflow="ellipsis", min_width=len(col),
                         max_width=24 if col == "name" else None)
    for r in rows:
        same = r.get("distinguishable_from_ref") is False
        table.add_row(
            r["name"], _pm(r["latency_ms_p50"], r.get("latency_ms_p50_ci_low"), r.get("latency_ms_p50_ci_high")),
            _ms(r.get("latency_ms_floor")),
            _ms(r["latency_ms_p99"]),
            _pm(r["ratio_vs_ref"], r.get("ratio_ci_low"), r.get("ratio_ci_high"), ratio=True) + (" ≈" if same else ""),
            # GMAC/s with its share of the CPU's peak (the line under the table says which peak): one column, so
            # the two latencies and their intervals fit 100 columns.
            f"{r['gmacs_per_s']:.1f}" + (f" {r['peak_fraction']:.0%}" if r.get("peak_fraction") is not None else "")
            if r.get("gmacs_per_s") else "-",
            f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-",
            f"{r['size_mb']:.2f}" if r["size_mb"] is not None else "-",
            "[red]error[/red]" if r["error"] else ("[yellow]![/yellow]" if r["warning"] else ""),
        )
    return table


def _threads(n: int | None) -> str:
    """``2 threads``; a row that never said how many (an executor_runner log without it) says so, not "None"."""
    return f"{n} threads" if n is not None else "threads as the runtime chose"


def _stop_note(r: dict) -> str | None:
    """Adaptive rounds: why the row stopped, after how many rounds, at what precision."""
    if not r.get("stopped_by") or r.get("precision_pct") is None:
        return None
    return f"{r['rounds']} rounds, stopped by {r['stopped_by']} at ±{r['precision_pct']:.1f}% (look {r['look']})"


def _overhead_part(ran: list[dict]) -> str | None:
    """The harness overhead with its interval; judged against 1% only where the interval is narrow enough."""
    rows = [r for r in ran if r["harness_overhead_pct"] is not None]
    # A time budget that could not hold the check's passes (all of them, or the ones it still needed).
    budget = any(r.get("harness_overhead_stopped_by") == "time budget" for r in ran)
    if not rows:
        return "harness overhead vs a plain loop: not judged: no time left in the budget" if budget else None
    worst = max(rows, key=lambda r: r["harness_overhead_pct"])
    if worst.get("harness_overhead_ci_low") is None:  # a single pass (a short bench, an older runner or file)
        text = f"harness overhead vs a plain loop: at most {worst['harness_overhead_pct']:+.2f}%"
        if budget:
            return text + " (one pass: not judged: no time left in the budget)"
        # judged False: this bench's rounds were shorter than a second pass (None: an older file, never judged)
        return text + (" (one pass: not judged)" if worst.get("harness_overhead_judged") is False
                       else " (target ≤ 1%)")
    half = (worst["harness_overhead_ci_high"] - worst["harness_overhead_ci_low"]) / 2
    text = f"harness overhead vs a plain loop: at most {worst['harness_overhead_pct']:+.2f}% ±{half:.2f}"
    if budget:
        return text + " (not judged: no time left in the budget)"
    if not all(r.get("harness_overhead_judged") for r in rows):
        return text + " (not judged: too noisy or too short to tell)"
    return text + (" (target ≤ 1%: met)" if worst["harness_overhead_ci_high"] <= 1 else " (target ≤ 1%)")


def _instrument_line(ran: list[dict]) -> str:
    """How far to trust the figures: harness overhead, interval widths, round spread, heat."""
    parts = []
    overhead = _overhead_part(ran)
    if overhead:
        parts.append(overhead)
    half = [h for h in (half_width_pct(r) for r in ran) if h is not None]
    if half:
        target = ran[0].get("precision_target_pct") or 3
        parts.append(f"median ±{max(half):.1f}% at worst (target ≤ {target:g}%)")
    spread = [r["round_p50_spread_pct"] for r in ran if r.get("round_p50_spread_pct") is not None]
    if spread:
        parts.append(f"round medians spread up to {max(spread):.0f}%")
    temps = [t for r in ran for t in (r.get("round_temp_c") or []) if t is not None]
    parts.append(f"CPU {min(temps):.0f}-{max(temps):.0f} C" if temps else "no CPU temperature readable")
    throttled = [r["rounds_throttled"] for r in ran if r.get("rounds_throttled") is not None]
    if throttled:
        parts.append(f"{sum(throttled)} rounds throttled")
    return "; ".join(parts)


def print_profiles(console, rows: list[dict]) -> None:
    """Per row: the slowest ops with their time per call and share, and the delegated share."""
    for r in rows:
        prof = r.get("profile")
        if not prof:
            continue
        head = f"{r['name']} ({prof.get('source')})"
        if prof.get("delegated_share") is not None:
            head += f": {prof['delegated_share']:.1%} of op time inside the delegate"
        console.print(f"[bold]{head}[/bold]")
        if not prof.get("top_ops"):
            console.print(f"  no per-op times: {prof.get('note', 'the profiler recorded nothing')}", highlight=False)
            continue
        for op in prof["top_ops"][:5]:
            count = f" x{op['count']}" if op.get("count", 1) > 1 else ""
            console.print(f"  {op['ms']:9.3f} ms {op['share']:6.1%}  {op['op']}{count}", highlight=False)
