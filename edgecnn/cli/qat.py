from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def qat(
    run: Annotated[Path, typer.Argument(help="float run folder written by edgecnn train")],
    target: Annotated[str, typer.Option(help="backend to fine-tune for: xnnpack (then edgecnn export "
                                             "--target executorch --int8) or openvino")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="dotted.key=value for the QAT recipe, e.g. train.lr=0.001 (default: the run's recipe, lr x0.1)")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="fine-tuning epochs (default 3)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="QAT run folder (default RUN/qat-<target>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted QAT run from its last checkpoint")] = False,
) -> None:
    """Quantization-aware fine-tuning of a trained run into a new run folder; export it with --int8."""
    from edgecnn.quantize.qat import qat_run

    qat_run(run, target, epochs=epochs, out=out, resume=resume, overrides=overrides or [])
