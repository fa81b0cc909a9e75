from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    paths: Annotated[list[Path], typer.Argument(
        help="run folders, artifacts (or sidecars), edgecnn bench --json files, or folders holding them")],
    out: Annotated[Path, typer.Option("--out", help="report folder (report.html, report.md, results.csv/json, PNGs)")],
) -> None:
    """Accuracy-versus-cost report: tables in the paper's columns plus latency and size, plots, HTML and Markdown."""
    from rich.console import Console

    from edgecnn.report import build
    from edgecnn.report.console import print_result

    print_result(Console(), build(paths, out))
