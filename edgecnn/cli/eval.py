from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def eval_run(
    run: Annotated[Path, typer.Argument(help="run folder written by edgecnn train")],
    which: Annotated[str, typer.Option(help="checkpoint: best or last")] = "best",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Evaluate a run on its validation split; writes RUN/eval.json."""
    from rich.console import Console

    from edgecnn.errors import UserError
    from edgecnn.train.evaluate import evaluate_run, paper_table

    if which not in ("best", "last"):
        raise UserError(f"--which {which!r}: choose best or last")
    result = evaluate_run(run, which)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(paper_table([result], title=f"{run} ({result['images']} val images, epoch {result['epoch']})"))
    console.print("MACs are multiply-accumulates (the paper's 'FLOPs' column counts the same thing).")
