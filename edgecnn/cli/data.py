from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Datasets: write the built-in synthetic dataset as an image folder.", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(help="folder to create (must not exist or be empty)")],
    classes: Annotated[int, typer.Option(min=2, help="number of classes")] = 10,
    train_per_class: Annotated[int, typer.Option(min=1)] = 200,
    val_per_class: Annotated[int, typer.Option(min=1)] = 50,
    image_size: Annotated[int, typer.Option(min=8)] = 64,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write the built-in dataset as OUT/train/<class>/*.png and OUT/val/<class>/*.png."""
    from edgecnn.data import write_synth

    counts = write_synth(out, classes, train_per_class, val_per_class, image_size, seed)
    print(f"wrote {out}: {counts}")
