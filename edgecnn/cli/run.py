from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML with a pipeline: section, or a shipped recipe's name, e.g. quickstart")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="dotted.key=value, e.g. pipeline.qat_epochs=1 or pipeline.bench.iters=20")] = None,
    out: Annotated[Optional[Path], typer.Option(help="folder for the run and everything made from it "
                                                     "(default runs/<recipe name>)")] = None,
) -> None:
    """Every stage the recipe's pipeline lists (train, qat, export, bench, report), in one folder.

    Run it again after an interruption: finished stages are skipped, training and QAT resume.
    """
    from rich.console import Console

    from edgecnn.config import load_recipe
    from edgecnn.pipeline import run as run_pipeline

    r = load_recipe(recipe, overrides or [])
    # Under make or a pipe rich assumes 80 columns, and the tables wrap every name.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    run_pipeline(r, out or Path("runs") / r.name, console=console)
