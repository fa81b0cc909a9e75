from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def bench_train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value, e.g. train.amp=true")] = None,
    steps: Annotated[int, typer.Option(min=1, help="timed steps per mode")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="untimed steps first")] = 3,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="append the rows to this JSON file")] = None,
) -> None:
    """Training and evaluation images/second of a recipe's model on this machine (CPU or GPU)."""
    from rich.console import Console
    from rich.table import Table

    from edgecnn.config import load_recipe
    from edgecnn.train.bench import bench_train as run_bench
    from edgecnn.train.checkpoint import atomic_write_text

    r = load_recipe(recipe, overrides or [])
    rows = run_bench(r, steps, warmup)
    table = Table(title=f"{r.model.name} at {r.data.image_size}px, batch {r.train.batch_size} on {rows[0]['device']}")
    for col in ("mode", "images/s", "step ms p50", "cv", "amp", "channels_last", "compile", "threads"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for row in rows:
        table.add_row(row["mode"], f"{row['images_per_s']:.1f}", f"{row['step_ms_p50']:.1f}", f"{row['step_ms_cv']:.1%}",
                      str(row["amp"]), str(row["channels_last"]), str(row["compile"]), str(row["threads"]))
    Console().print(table)
    if json_path:
        old = json.loads(json_path.read_text()) if json_path.exists() else []
        atomic_write_text(json_path, json.dumps(old + rows, indent=2))
