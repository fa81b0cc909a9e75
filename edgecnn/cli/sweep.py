from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def _list(text: str) -> list[str]:
    return [w.strip().lower() for w in text.split(",") if w.strip()]


def sweep(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. recipes/quickstart.yaml")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="dotted.key=value applied to every variant, e.g. train.epochs=3")] = None,
    vary: Annotated[Optional[list[str]], typer.Option(
        "--vary", help="KEY=V1,V2,...: a recipe key and its values; several --vary make a grid "
                       "(e.g. --vary model.name=cnn_attn,cnn --vary data.image_size=32,48,64)")] = None,
    budget_ms: Annotated[float, typer.Option(
        "--budget-ms",
        help="latency budget in ms: a candidate fits when its median's 95% interval ends within it")] = ...,
    device: Annotated[str, typer.Option(help="where latency is measured: local or ssh://user@host[:port]")] = "local",
    targets: Annotated[str, typer.Option(help="runtimes, comma-separated: executorch, openvino, onnx")]
    = "executorch,openvino",
    precisions: Annotated[str, typer.Option(
        help="comma-separated: fp32, ptq (INT8 calibrated), qat (INT8 fine-tuned; one more training per backend)")]
    = "fp32,ptq",
    metric: Annotated[str, typer.Option(help="accuracy or f1 (through each artifact's runtime, validation split)")]
    = "accuracy",
    out: Annotated[Optional[Path], typer.Option(help="sweep folder (default runs/sweep-<recipe name>)")] = None,
    latency_only: Annotated[bool, typer.Option(
        "--latency-only", help="stop after timing random-weight exports: which variants a training would be spent on")]
    = False,
) -> None:
    """The most accurate variant x precision x runtime within a latency budget, timed on your device.

    Every variant is timed from random weights first; variants that cannot fit are never trained.
    Each trained variant is an `edgecnn run` folder in the sweep folder; run the same command again to resume.
    """
    from rich.console import Console

    from edgecnn.config.load import _read_yaml
    from edgecnn.sweep import make_grid
    from edgecnn.sweep import sweep as run_sweep

    grid = make_grid(recipe, overrides or [], vary or [], _list(targets), _list(precisions))
    name = (_read_yaml(recipe).get("name") or recipe.stem)
    console = Console() if sys.stdout.isatty() else Console(width=140)
    run_sweep(grid, budget_ms, out or Path("runs") / f"sweep-{name}", device=device, metric=metric.strip().lower(),
              latency_only=latency_only, console=console, command=["edgecnn", *sys.argv[1:]])
