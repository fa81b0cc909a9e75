from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer


def train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, or a shipped recipe's name, e.g. quickstart")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value, e.g. train.epochs=5")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder (default runs/<recipe name>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from its last checkpoint")] = False,
    nproc: Annotated[int, typer.Option(min=1, help="data-parallel processes on this machine (launches torchrun)")] = 1,
) -> None:
    """Train a model from a recipe into a run folder.

    Several GPUs or CPU processes: `--nproc N`, or call torchrun yourself
    (`torchrun --nproc_per_node N -m edgecnn train RECIPE ...`, with --nnodes and
    --rdzv-endpoint for several machines). train.batch_size is the global batch.
    """
    from edgecnn.config import load_recipe
    from edgecnn.train.loop import check_run_folder
    from edgecnn.train.loop import train as run_training

    r = load_recipe(recipe, overrides or [])
    out = out or Path("runs") / r.name
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        check_run_folder(out, r, resume)  # a clean error here, not one per rank
        if r.train.batch_size % nproc:
            from edgecnn.errors import UserError

            raise UserError(f"train.batch_size={r.train.batch_size} is the global batch; make it a multiple of --nproc {nproc}")
        from edgecnn.train.dist import relaunch

        argv = ["train", str(recipe), *(overrides or []), "--out", str(out), *(["--resume"] if resume else [])]
        raise typer.Exit(relaunch(nproc, argv))
    run_training(r, out, resume=resume)
