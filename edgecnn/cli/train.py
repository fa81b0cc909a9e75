from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. recipes/quickstart.yaml")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value, e.g. train.epochs=5")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder (default runs/<recipe name>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from its last checkpoint")] = False,
) -> None:
    """Train a model from a recipe into a run folder."""
    from edgecnn.config import load_recipe
    from edgecnn.train.loop import train as run_training

    r = load_recipe(recipe, overrides or [])
    run_training(r, out or Path("runs") / r.name, resume=resume)
