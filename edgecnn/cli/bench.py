from __future__ import annotations

import os
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
    warmup: Annotated[Optional[int], typer.Option(
        help="untimed calls per runtime first [default: until the latency settles, at most 5 s]")] = None,
    iters: Annotated[Optional[int], typer.Option(
        help="timed calls per runtime, split over the rounds [default: rounds by duration, see --min-time]")] = None,
    rounds: Annotated[Optional[int], typer.Option(
        help="exactly N rounds per runtime, interleaved [default: adaptive, until --precision]")] = None,
    precision: Annotated[float, typer.Option(
        help="adaptive rounds: time each row until its median's interval is within ±P% (a sequential "
             "interval: docs/precision.md)", metavar="P")] = 3.0,
    max_time: Annotated[float, typer.Option(help="adaptive rounds: stop every row after this many seconds")] = 300.0,
    max_rounds: Annotated[int, typer.Option(help="adaptive rounds: stop a row after this many rounds")] = 60,
    time_budget: Annotated[Optional[float], typer.Option(
        help="adaptive rounds: seconds for the whole bench, loading to finish (the rounds get what loading and "
             "warm-up leave)", metavar="S")] = None,
    min_time: Annotated[float, typer.Option(help="seconds each round measures at least (without --iters)")] = 1.0,
    cooldown: Annotated[float, typer.Option(help="seconds of pause before each round (lets a board cool)")] = 0.0,
    batch: Annotated[int, typer.Option(help="batch size (artifacts exported for batch 1 take only 1)")] = 1,
    profile: Annotated[bool, typer.Option("--profile", help="per-operator profile of each runtime")] = False,
    wait_cool: Annotated[Optional[float], typer.Option(
        help="before measuring, wait (up to 5 min) until the CPU is below this many degrees C")] = None,
    runner: Annotated[Optional[Path], typer.Option(
        help="executor_runner built for the device (adb://, or ssh:// boards without torch)")] = None,
    check: Annotated[Optional[int], typer.Option(
        help="also send N validation images of each artifact's run through it on the device and compare "
             "with PyTorch here (top-1 agreement, max logit diff, accuracy)", metavar="N")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to connect to a device and for each short command")] = 30,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write the rows to this JSON file")] = None,
) -> None:
    """Latency of exported artifacts, each in its own runtime and process, against a PyTorch reference."""
    # Every option but these two is a field of the request, under the same name.
    settings = {k: v for k, v in locals().items() if k not in ("artifacts", "json_path")}
    from rich.console import Console

    from edgecnn.bench.api import BenchRequest, save
    from edgecnn.bench.api import bench as run_bench
    from edgecnn.bench.console import print_profiles, print_rows

    rows = run_bench(BenchRequest(tuple(artifacts or []), **settings))
    # Piped to a file or a log, rich would assume 80 columns and cut the table; it is made for 100.
    console = Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=100)
    print_rows(console, rows)
    if profile:
        print_profiles(console, rows)
    if json_path:
        save(json_path, rows, ["edgecnn", *sys.argv[1:]])
        console.print(f"wrote {len(rows)} rows to {json_path}")
