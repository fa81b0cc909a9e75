"""The stages as Python functions, for notebooks and scripts: ``from edgecnn import api as ec``.

Each function is what its command does, without the command line: it returns a
typed result instead of printing one, and raises ``edgecnn.UserError`` (one
line per problem in ``.lines``) where the command would exit with status 2.

    from edgecnn import api as ec

    run = ec.train("quickstart", overrides=["train.epochs=3"], out="runs/q")
    art = ec.export(run.path, target="executorch", int8=True)
    rows = ec.bench([art.path], eager=run.path).rows
    rep = ec.report([run.path], out="runs/q/report")

(``edgecnn.train`` and friends are the stage packages' names, so the functions live here.)
Heavy libraries load on first use, as in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from edgecnn.errors import UserError
from edgecnn.config import Recipe, load_recipe
from edgecnn.config.load import parse_overrides, validate_recipe

__all__ = ["TrainResult", "ExportResult", "BenchResult", "ReportResult", "RunResult", "UserError",
           "train", "export", "bench", "report", "run"]


@dataclass(frozen=True)
class TrainResult:
    """A run folder after training: ``path`` holds recipe.yaml, metrics.csv, last.pt, best.pt, ...

    Attributes:
        metrics: one row per epoch, as in ``metrics.csv``.
    """

    path: Path
    metrics: list[dict] = field(repr=False)

    @property
    def epochs(self) -> int:
        return len(self.metrics)

    @property
    def best_accuracy(self) -> float | None:
        scores = [r.get("val_accuracy_subset_mean", r.get("val_accuracy")) for r in self.metrics]
        return max((s for s in scores if s is not None), default=None)


@dataclass(frozen=True)
class ExportResult:
    """An exported artifact, its sidecar file and the sidecar's record (parity, size, inputs, ...)."""

    path: Path
    sidecar_path: Path
    sidecar: dict = field(repr=False)

    @property
    def accuracy(self) -> float:
        """Validation accuracy measured through the artifact's own runtime."""
        return self.sidecar["parity"]["artifact"]["accuracy"]


@dataclass(frozen=True)
class BenchResult:
    """Bench rows (``docs/contracts.md``), and the JSON file they were saved to, if any."""

    rows: list[dict]
    path: Path | None = None


@dataclass(frozen=True)
class ReportResult:
    """A written report: its folder, files and result rows."""

    path: Path
    files: list[Path]
    rows: list[dict] = field(repr=False)


@dataclass(frozen=True)
class RunResult:
    """What ``edgecnn run`` made in ``path``: each step's status and time, the artifacts, bench file, report."""

    path: Path
    stages: list[dict]
    artifacts: list[Path]
    bench: Path | None
    report: ReportResult | None


def _recipe(recipe: Any, overrides: Sequence[str] | dict | None):
    """A validated Recipe from a path, a shipped recipe's name, or a Recipe (overrides applied)."""
    parsed = dict(overrides) if isinstance(overrides, dict) else parse_overrides(list(overrides or []))
    if isinstance(recipe, Recipe):
        return validate_recipe(recipe.model_dump(mode="json"), parsed) if parsed else recipe
    return load_recipe(recipe, parsed)


def _console(quiet: bool):
    return Console(quiet=quiet)


def train(recipe: Any, overrides: Sequence[str] | dict | None = None, out: str | Path | None = None,
          resume: bool = False, quiet: bool = False) -> TrainResult:
    """Train a recipe into a run folder (``edgecnn train``).

    Args:
        recipe: a recipe file, a shipped recipe's name (``"quickstart"``) or a ``Recipe``.
        overrides: ``["train.epochs=3", ...]`` or ``{"train.epochs": 3}``.
        out: the run folder (default ``runs/<recipe name>``).
        resume: continue an interrupted run from its last checkpoint.
        quiet: no progress output.

    Raises:
        UserError: a bad recipe or override, a folder that already holds a run (without ``resume``),
            a recipe that differs from the one being resumed, or a data problem.
    """
    from edgecnn.train.loop import train as run_training

    r = _recipe(recipe, overrides)
    path = Path(out) if out is not None else Path("runs") / r.name
    history = run_training(r, path, resume=resume, console=_console(quiet))
    return TrainResult(path, list(history))


def export(run: str | Path, target: str, int8: bool = False, channels: str | None = None, calib: int = 256,
           out: str | Path | None = None, max_drop: float | None = None) -> ExportResult:
    """Export a trained run for one runtime and measure the artifact with it (``edgecnn export``).

    Args:
        run: a run folder (a QAT run exports its INT8 model with ``int8=True``).
        target: ``"executorch"``, ``"openvino"`` or ``"onnx"``.
        int8: post-training INT8, calibrated on ``calib`` training images.
        channels: a band subset such as ``"RG"`` folded into the artifact.
        out: folder for the artifact (default ``RUN/export``) or a file path with the target's suffix.
        max_drop: INT8 accuracy budget in points (see ``edgecnn export --max-drop``).

    Raises:
        UserError: unknown target, missing backend, bad band subset, run or data problems, a failed export.
    """
    from edgecnn.export.api import export_run

    kw: dict[str, Any] = {"int8": int8, "channels": channels, "calib": calib}
    if out is not None:
        kw["out"] = Path(out)
    if max_drop is not None:
        kw["max_drop"] = max_drop
    r = export_run(Path(run), target, **kw)
    sidecar = {k: v for k, v in r.items() if k not in ("path", "sidecar")}
    return ExportResult(Path(r["path"]), Path(r["sidecar"]), sidecar)


def bench(artifacts: Sequence[str | Path], eager: str | Path | None = None, device: str = "local",
          json_path: str | Path | None = None, **settings: Any) -> BenchResult:
    """Time artifacts (and a run's PyTorch model with ``eager``), one row each (``edgecnn bench``).

    Args:
        artifacts: artifact files, or folders of them (a run folder: its ``export/``).
        eager: a run folder whose fp32 PyTorch model becomes the reference row.
        device: ``"local"``, ``"ssh://user@host"`` or ``"adb://SERIAL"``.
        json_path: also save the rows there, as ``edgecnn bench --json`` does.
        **settings: ``threads``, ``iters``, ``warmup``, ``rounds``, ``precision``, ... the fields of
            ``edgecnn.bench.api.BenchRequest``.

    Raises:
        UserError: no artifacts, a bad sidecar, an unreachable device, bad settings.
    """
    from edgecnn.bench.api import BenchRequest, save
    from edgecnn.bench.api import bench as run_bench

    rows = run_bench(BenchRequest(tuple(Path(a) for a in artifacts), eager=Path(eager) if eager is not None else None,
                                  device=device, **settings))
    path = None
    if json_path is not None:
        path = Path(json_path)
        save(path, rows, ["python", "edgecnn.api.bench"])
    return BenchResult(rows, path)


def report(paths: Sequence[str | Path], out: str | Path) -> ReportResult:
    """Join run folders, artifacts and bench files into tables, plots and HTML (``edgecnn report``).

    Raises:
        UserError: nothing to report, or damaged inputs.
    """
    from edgecnn.report import build

    r = build([Path(p) for p in paths], Path(out))
    return _report_result(r)


def _report_result(r: dict) -> ReportResult:
    return ReportResult(Path(r["out"]), [Path(f) for f in r["files"]], list(r["rows"]))


def run(recipe: Any, overrides: Sequence[str] | dict | None = None, out: str | Path | None = None,
        quiet: bool = False) -> RunResult:
    """Every stage the recipe's ``pipeline:`` lists, in one folder (``edgecnn run``); re-running resumes.

    Raises:
        UserError: from any stage, or a recipe that differs from the finished run in ``out``.
    """
    from edgecnn.pipeline import run as run_pipeline

    r = _recipe(recipe, overrides)
    path = Path(out) if out is not None else Path("runs") / r.name
    res = run_pipeline(r, path, console=_console(quiet))
    return RunResult(path, list(res["stages"]), [Path(a) for a in res["artifacts"]],
                     Path(res["bench"]) if res["bench"] else None,
                     _report_result(res["report"]) if res["report"] is not None else None)
