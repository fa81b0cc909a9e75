"""The ``edgecnn`` command line.

Each command lives in its own thin module named after it (``train.py``, ``eval.py``,
``qat.py``, ``export.py``, ``bench.py``, ...; ``data.py`` is ``edgecnn data synth``):
it parses arguments, loads the recipe or run, and calls one stage function. Heavy libraries (torch, the
export backends) are imported inside the command bodies so ``edgecnn --help``
stays instant. A ``UserError`` anywhere becomes plain lines on stderr and exit 2.
"""

from __future__ import annotations

import sys

import typer

from edgecnn.cli import bench, bench_train, data, eval, export, info, predict, prune, qat, report, run, train, validate
from edgecnn.cli import recipes, sweep
from edgecnn.errors import UserError

app = typer.Typer(
    name="edgecnn",
    help="Train, quantize, export and profile small image classifiers for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The commands in the order `edgecnn --help` lists them.
for _name, _fn in [("train", train.train), ("eval", eval.eval_run), ("info", info.info),
                   ("validate", validate.validate), ("prune", prune.prune), ("export", export.export),
                   ("qat", qat.qat), ("predict", predict.predict), ("bench", bench.bench),
                   ("bench-train", bench_train.bench_train), ("report", report.report), ("run", run.run),
                   ("sweep", sweep.sweep)]:
    app.command(_name)(_fn)
app.add_typer(data.app, name="data")
app.add_typer(recipes.app, name="recipes")


def _quiet_libraries() -> None:
    """Hide the backends' deprecation chatter (pages of it per export); EDGECNN_WARNINGS=1 shows it."""
    import logging
    import os
    import warnings

    if os.environ.get("EDGECNN_WARNINGS"):
        return
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger("torchao").setLevel(logging.ERROR)  # "Failed to load ... _C_cutlass": CUDA kernels
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except UserError as e:
        for line in e.lines:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted_message(sys.argv[1:]), file=sys.stderr)
        sys.exit(130)


def interrupted_message(argv: list[str]) -> str:
    """What Ctrl-C says: how to continue, for the commands that can; nothing promised by the others."""
    command = next((a for a in argv if not a.startswith("-")), "")
    if command in ("train", "qat"):
        return "interrupted; finished epochs are saved, resume with --resume"
    if command in ("run", "sweep"):
        return "interrupted; finished stages and epochs are saved, run the same command again to continue"
    return "interrupted"
