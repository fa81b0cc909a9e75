from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def bench(
    artifacts: Annotated[Optional[list[Path]], typer.Argument(
        help="artifacts (.pte, .xml, .onnx) or folders of them (a run folder: its export/)")] = None,
    eager: Annotated[Optional[Path], typer.Option(
        help="run folder: its PyTorch fp32 model is the reference row (runs on this machine)")] = None,
    device: Annotated[str, typer.Option(
        help="local, ssh://user@host[:port], adb://SERIAL, or cuda (the eager reference on the GPU)")] = "local",
    threads: Annotated[int, typer.Option(help="threads of every runtime")] = 2,
    warmup: Annotated[int, typer.Option(help="untimed calls per runtime first")] = 10,
    iters: Annotated[int, typer.Option(help="timed calls per runtime")] = 100,
    rounds: Annotated[int, typer.Option(help="rounds the timed calls are split into, interleaved across runtimes")] = 5,
    batch: Annotated[int, typer.Option(help="batch size (artifacts exported for batch 1 take only 1)")] = 1,
    profile: Annotated[bool, typer.Option("--profile", help="per-operator profile of each runtime")] = False,
    wait_cool: Annotated[Optional[float], typer.Option(
        help="before measuring, wait (up to 5 min) until the CPU is below this many degrees C")] = None,
    runner: Annotated[Optional[Path], typer.Option(
        help="executor_runner built for Android (adb:// devices only)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to connect to a device and for each short command")] = 30,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write the rows to this JSON file")] = None,
) -> None:
    """Latency of exported artifacts, each in its own runtime and process, against a PyTorch reference."""
    from rich.console import Console

    from edgecnn.bench.api import bench as run_bench
    from edgecnn.bench.api import save

    rows = run_bench(artifacts or [], eager=eager, device=device, threads=threads, warmup=warmup, iters=iters,
                     batch=batch, profile=profile, rounds=rounds, wait_cool=wait_cool, runner=runner, timeout=timeout)
    console = Console()
    print_rows(console, rows)
    if profile:
        print_profiles(console, rows)
    if json_path:
        save(json_path, rows, ["edgecnn", *sys.argv[1:]])
        console.print(f"wrote {len(rows)} rows to {json_path}")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def print_rows(console, rows: list[dict]) -> None:
    """The table, then the device, the reference and the harness figures in a few lines."""
    from rich.table import Table

    from edgecnn.bench.api import reference

    ref = reference(rows)
    devices = sorted({r["device"] for r in rows if r["device"]})
    ran = [r for r in rows if r["latency_ms_p50"] is not None]
    threads, batch = rows[0]["threads"], rows[0]["batch"]
    table = Table(title=f"latency on {', '.join(devices)}: {threads} threads, batch {batch}, "
                        f"{rows[0]['iters']} calls each (ms)")
    for col in ("name", "runtime", "precision", "p50", "p90", "p99", "±cv", "img/s", "RSS MB", "size MB",
                f"vs {ref['name'] if ref else 'ref'}", "error / warning"):
        table.add_column(col, justify="left" if col in ("name", "runtime", "precision", "error / warning") else "right",
                         overflow="fold")
    for r in rows:
        version = f" {r['runtime_version']}" if r["runtime_version"] else ""
        note = r["error"] or r["warning"] or ""
        table.add_row(
            r["name"], f"{r['runtime'] or '-'}{version}", r["precision"] or "-",
            _ms(r["latency_ms_p50"]), _ms(r["latency_ms_p90"]), _ms(r["latency_ms_p99"]),
            f"{r['cv']:.1%}" if r["cv"] is not None else "-",
            f"{r['throughput_ips']:.1f}" if r["throughput_ips"] else "-",
            f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-",
            f"{r['size_mb']:.2f}" if r["size_mb"] is not None else "-",
            f"{r['ratio_vs_ref']:.3f}x" if r["ratio_vs_ref"] is not None else "-",
            f"[red]{note}[/red]" if r["error"] else note,
        )
    console.print(table)
    for desc in sorted({r["device_desc"] for r in rows if r["device_desc"]}):
        console.print(f"device: {desc}")
    for r in ran:
        if r["runtime_note"]:
            console.print(f"{r['name']}: {r['runtime_note']}", highlight=False)
    if ran:
        overhead = [r["harness_overhead_pct"] for r in ran if r["harness_overhead_pct"] is not None]
        spread = [r["round_p50_spread_pct"] for r in ran if r.get("round_p50_spread_pct") is not None]
        parts = []
        if overhead:
            parts.append(f"harness overhead vs a plain loop: at most {max(overhead):+.2f}% (target < 2%)")
        if spread:
            parts.append(f"round-to-round median spread: at most {max(spread):.1f}% (target < 10%)")
        if parts:
            console.print("; ".join(parts), highlight=False)


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
