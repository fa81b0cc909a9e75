from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def prune(
    run: Annotated[Path, typer.Argument(help="a trained resnet34_dynconv* run folder")],
    out: Annotated[Optional[Path], typer.Option(help="new run folder (default <RUN>_pruned)")] = None,
    min_share: Annotated[float, typer.Option(help="least mean attention a kernel set needs for some band subset")] = 0.05,
    images: Annotated[int, typer.Option(min=1, help="training images used to measure the attention")] = 512,
) -> None:
    """Drop DynamicConv2D kernel sets that carry little attention; writes a new run with prune.json."""
    from rich.console import Console
    from rich.table import Table

    from edgecnn.prune.api import prune_run

    r = prune_run(run, out, min_share, images)
    console = Console()
    table = Table(title=f"kept kernel sets {r['kept']} of {r['kernel_sets_before']} (min share {r['min_share']})")
    for col in ("bands", "attention per set", "acc before", "acc after", "change (points)"):
        table.add_column(col, justify="left" if col == "bands" else "right")
    for name, usage in r["usage"].items():
        table.add_row(name, " ".join(f"{u:.2f}" for u in usage), f"{r['accuracy_before'][name]:.2%}",
                      f"{r['accuracy_after'][name]:.2%}", f"{r['accuracy_change_points'][name]:+.2f}")
    console.print(table)
    console.print(f"params {r['params_before']:,} -> {r['params_after']:,}; written to {out or Path(f'{run}_pruned')}")
