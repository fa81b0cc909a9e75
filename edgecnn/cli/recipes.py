from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The recipes shipped with edgecnn: list them, copy one to edit. "
                       "Any command that takes a recipe file also takes a shipped recipe's name.",
                  invoke_without_command=True)


@app.callback()
def recipes(ctx: typer.Context) -> None:
    """List the shipped recipes, each with its first comment line (the command that runs it)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgecnn.config.recipes import first_comment, shipped

    found = shipped()
    width = max(map(len, found), default=0)
    for name, path in found.items():
        print(f"{name:<{width}}  {first_comment(path)}")
    print(f"\n{len(found)} recipes in {next(iter(found.values())).parent if found else '(none installed)'}; "
          "pass a name wherever a recipe file goes (edgecnn validate quickstart), "
          "or copy one to edit: edgecnn recipes cp NAME PATH")


@app.command("cp")
def cp(
    name: Annotated[str, typer.Argument(help="a shipped recipe's name, e.g. quickstart")],
    path: Annotated[Path, typer.Argument(help="file to write, or a folder to put NAME.yaml in")],
    force: Annotated[bool, typer.Option(help="overwrite PATH if it exists")] = False,
) -> None:
    """Copy a shipped recipe to PATH, to edit and run (a file there wins over the shipped name)."""
    from edgecnn.config.recipes import copy

    print(f"wrote {copy(name, path, force)}")
