from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, or a shipped recipe's name (edgecnn recipes)")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value")] = None,
    show: Annotated[bool, typer.Option(help="print the resolved recipe")] = False,
) -> None:
    """Check a recipe (and overrides) against the schema without running anything."""
    from edgecnn.config import dump_recipe, load_recipe

    r = load_recipe(recipe, overrides or [])
    if show:
        print(dump_recipe(r), end="")
    print(f"ok: {recipe} is a valid recipe (model {r.model.name}, {r.data.source} data, {r.train.epochs} epochs)")
