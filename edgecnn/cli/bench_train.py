from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def bench_train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, or a shipped recipe's name")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value, e.g. train.amp=true")] = None,
    steps: Annotated[int, typer.Option(min=1, help="timed steps per mode")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="untimed steps first")] = 3,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="append the rows to this JSON file")] = None,
    loader: Annotated[bool, typer.Option("--loader", help="time the data loader alone (folder recipes): "
                                                          "the decoding epoch and the cached epochs")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="--loader: cached epochs timed")] = 3,
) -> None:
    """Training and evaluation images/second of a recipe's model on this machine (CPU or GPU)."""
    from rich.console import Console
    from rich.table import Table

    from edgecnn.config import load_recipe
    from edgecnn.bench.training import bench_train as run_bench
    from edgecnn.train.checkpoint import atomic_write_text

    r = load_recipe(recipe, overrides or [])
    old = _read_rows(json_path) if json_path else []  # a bad file fails before minutes of timing
    if loader:
        from edgecnn.bench.training import bench_loader

        rows = bench_loader(r, epochs)
        _print_loader(rows)
        if json_path:
            atomic_write_text(json_path, json.dumps(old + rows, indent=2))
        return
    rows = run_bench(r, steps, warmup)
    table = Table(title=f"{r.model.name} at {r.data.image_size}px, batch {r.train.batch_size} on {rows[0]['device']}")
    for col in ("mode", "images/s (95% CI)", "step ms p50", "cv", "amp", "channels_last", "compile", "threads"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for row in rows:
        low, high = row["images_per_s_ci"]
        table.add_row(row["mode"], f"{row['images_per_s']:.1f} ({low:.1f}-{high:.1f})", f"{row['step_ms_p50']:.1f}",
                      f"{row['step_ms_cv']:.1%}",
                      str(row["amp"]), str(row["channels_last"]), str(row["compile"]), str(row["threads"]))
    Console().print(table)
    if json_path:
        atomic_write_text(json_path, json.dumps(old + rows, indent=2))


def _print_loader(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = rows[0]
    table = Table(title=f"loader of {first['recipe']}: {first['images']} {first['dtype']} images, {first['bands']} "
                        f"bands at {first['image_size']}px, {first['workers']} workers, on {first['device']}")
    for col in ("mode", "images/s", "seconds per epoch", "epochs", "cache MB"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for row in rows:
        table.add_row(row["mode"], f"{row['images_per_s']:.0f}", f"{row['seconds']:.3f}", str(row["epochs"]),
                      f"{row['cache_mb']:.1f}")
    Console().print(table)
    if len(rows) > 1:
        print(f"cached epochs: {rows[1]['speedup_vs_decode']:.1f}x the decoding epoch")


def _read_rows(path: Path) -> list:
    """The rows already in ``path`` (``[]`` when it does not exist).

    Raises:
        UserError: the file is unreadable, not JSON, or not a list of rows.
    """
    from edgecnn.errors import UserError

    if not path.exists():
        return []
    fix = "pass another --json file, or move this one away"
    try:
        rows = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--json {path}: cannot read it ({e.strerror or type(e).__name__}); {fix}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"--json {path}: damaged, not JSON (line {e.lineno}: {e.msg}); {fix}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"--json {path}: not a list of rows written by edgecnn bench-train; {fix}")
    return rows
