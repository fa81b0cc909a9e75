from __future__ import annotations

import os
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
    nproc: Annotated[int, typer.Option(min=1, help="data-parallel processes on this machine (launches torchrun)")] = 1,
    channels: Annotated[Optional[str], typer.Option(
        help="*_dynconv_mask runs: fine-tune the plain model folded for this band subset, e.g. RGB "
             "(without it a band-aware run is fine-tuned with its mask input, for every subset)")] = None,
) -> None:
    """Quantization-aware fine-tuning of a trained run into a new run folder; export it with --int8.

    A band-aware run (DynamicConv2D stem) is fine-tuned as its mask-input model on the recipe's random
    band subsets: one QAT run, and one artifact taking (image, mask), for every subset.
    Data-parallel like training: `--nproc N`, or `torchrun --nproc_per_node N -m edgecnn qat RUN ...`.
    """
    from edgecnn.quantize.qat import qat_run

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from edgecnn.quantize.qat import backend
        from edgecnn.train.dist import relaunch

        backend(target)  # a clean error here, not one per rank
        argv = ["qat", str(run), "--target", target, *(overrides or []), *(["--epochs", str(epochs)] if epochs else []),
                *(["--out", str(out)] if out else []), *(["--resume"] if resume else []),
                *(["--channels", channels] if channels else [])]
        raise typer.Exit(relaunch(nproc, argv))
    qat_run(run, target, epochs=epochs, out=out, resume=resume, overrides=overrides or [], channels=channels)
