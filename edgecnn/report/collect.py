"""Find and read the files a report is built from: run folders, artifact sidecars, bench JSON.

Only files other stages wrote are read, and nothing heavier than the standard
library is imported here: a report must work on a machine with just the core
package and matplotlib (no torch import, no runtime).

What counts as ours:

* a **run folder**: a folder with ``recipe.yaml`` (``edgecnn train`` / ``qat``);
  ``eval.json``, ``metrics.csv``, ``env.json`` and ``qat.json`` are read from it;
* an **artifact**: ``*.pte`` / ``*.xml`` / ``*.onnx`` with its sidecar
  ``<artifact>.json`` (``edgecnn export``), or the sidecar itself;
* a **bench file**: JSON with ``"edgecnn_bench": 1`` and ``rows``
  (``edgecnn bench --json``; see docs/contracts.md);
* a folder holding any of these, walked recursively (hidden entries skipped;
  other JSON files are opened to see whether they are bench files, so a damaged
  one is reported by name like any other).

Files named inside those (a sidecar's ``source.run``, a bench row's
``artifact``/``sidecar``/``run``) are read too when they exist, so a bench file
alone is enough for a report; when they are gone the figures they would have
given are left blank and a note says so.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgecnn.core.safeyaml import safe_load
from edgecnn.core.contracts import ARTIFACT_SUFFIXES, ENV, EVAL, METRICS, QAT, RECIPE  # torch-free
from edgecnn.errors import UserError

SIDECAR_KEYS = ("artifact", "model", "target", "precision")
BENCH_VERSION = 1


@dataclass
class Run:
    """One run folder as the report sees it (every part optional but the path)."""

    path: str
    given: bool = True  # named on the command line (or found in a folder), not only referred to
    model: str | None = None  # the recipe's model.name
    eval: dict | None = None
    best_epoch: dict | None = None  # metrics.csv row of the best validation accuracy
    env: dict | None = None
    qat: dict | None = None
    cost: dict | None = None  # macs, params, input_size and the file they came from


@dataclass
class Sources:
    """Everything read: runs and artifacts by resolved path, bench rows in file order."""

    runs: dict[str, Run] = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=dict)  # artifact path -> sidecar
    bench: list[dict] = field(default_factory=list)  # rows, each with "_file" added
    files: list[str] = field(default_factory=list)  # every file read, for the report's input list
    notes: list[str] = field(default_factory=list)


def key(path: str | Path) -> str:
    """The form paths are joined on: absolute and resolved (sidecars and bench rows store absolute paths)."""
    return str(Path(path).expanduser().resolve())


def read_json(path: Path, sources: Sources | None = None):
    """Parse a JSON file.

    Raises:
        UserError: the file is not valid JSON (named, with the fix).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: damaged (not valid JSON); re-create it with the edgecnn command that wrote it "
                        "or leave it out") from None
    if sources is not None:
        sources.files.append(str(path))
    return data


def is_sidecar(data) -> bool:
    return isinstance(data, dict) and all(k in data for k in SIDECAR_KEYS)


def is_bench(data) -> bool:
    return isinstance(data, dict) and "edgecnn_bench" in data


def collect(paths: list[Path]) -> Sources:
    """Read every input path, then whatever the sidecars and bench rows point at.

    Args:
        paths: run folders, artifacts, sidecars, bench JSON files, or folders holding them.

    Returns:
        The sources, joined on resolved paths.

    Raises:
        UserError: a path does not exist, a file is not one of ours, a folder holds
            nothing of ours, a JSON file is damaged, or a bench file has a newer format.
    """
    if not paths:
        raise UserError("nothing to report: pass run folders, artifacts or bench JSON files "
                        "(e.g. edgecnn report runs/quickstart --out reports/quickstart)")
    sources = Sources()
    for path in paths:
        path = Path(path).expanduser()
        if not path.exists():
            raise UserError(f"{path}: no such file or folder; pass a run folder, an artifact, or a bench JSON file")
        if path.is_dir():
            if not _walk(path, sources):
                raise UserError(f"{path}: holds no run folder, exported artifact or bench JSON; "
                                "pass a folder written by edgecnn train/export/bench")
        elif not _add_file(path, sources):
            raise UserError(f"{path}: not a file edgecnn writes (expected a run folder, an artifact "
                            f"{'/'.join(ARTIFACT_SUFFIXES)} with its .json sidecar, or an edgecnn bench --json file)")
    _follow_references(sources)
    return sources


def _walk(folder: Path, sources: Sources) -> bool:
    found = False
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # temporaries of atomic writes are hidden
        here = Path(root)
        if (here / RECIPE).is_file():
            add_run(here, sources)
            found = True
        for name in sorted(files):
            if name.startswith("."):
                continue
            f = here / name
            if f.suffix in ARTIFACT_SUFFIXES and (f.parent / (f.name + ".json")).is_file():
                found |= _add_file(f, sources)
            elif f.suffix == ".json" and not _is_run_file(f):
                # A sidecar is picked up with its artifact; other JSON may be a bench file or someone else's.
                if not (f.with_suffix("").suffix in ARTIFACT_SUFFIXES and f.with_suffix("").is_file()):
                    data = read_json(f)
                    if is_bench(data):
                        _add_bench(f, data, sources)
                        found = True
                    elif is_sidecar(data):  # a sidecar whose artifact is gone
                        found |= _add_file(f, sources)
    return found


def _is_run_file(f: Path) -> bool:
    return f.name in (EVAL, ENV, QAT) and (f.parent / RECIPE).is_file()


def _add_file(path: Path, sources: Sources) -> bool:
    """Add one explicit file; False when it is not one of ours."""
    if path.name in (RECIPE, EVAL, METRICS, ENV, QAT) and (path.parent / RECIPE).is_file():
        add_run(path.parent, sources)  # a file of a run folder stands for its run
        return True
    if path.suffix in ARTIFACT_SUFFIXES:
        side = path.with_name(path.name + ".json")
        if not side.is_file():
            raise UserError(f"{path}: no sidecar {side.name} next to it; export it with edgecnn export")
        data = read_json(side, sources)
        if not is_sidecar(data):
            raise UserError(f"{side}: not an edgecnn sidecar (no {', '.join(SIDECAR_KEYS)}); export the artifact again")
        sources.artifacts[key(path)] = data
        return True
    if path.suffix != ".json":
        return False
    data = read_json(path)
    if is_bench(data):
        _add_bench(path, data, sources)
        return True
    if is_sidecar(data):
        sources.files.append(str(path))
        sources.artifacts[key(path.with_name(data["artifact"]))] = data
        return True
    return False


def _add_bench(path: Path, data: dict, sources: Sources) -> None:
    if data["edgecnn_bench"] != BENCH_VERSION:
        raise UserError(f"{path}: bench format {data['edgecnn_bench']!r} is not the one this edgecnn reads "
                        f"({BENCH_VERSION}); re-run edgecnn bench with this version")
    if not isinstance(data.get("rows"), list):
        raise UserError(f"{path}: damaged bench file (no list of rows); re-run edgecnn bench --json")
    sources.files.append(str(path))
    for row in data["rows"]:
        if isinstance(row, dict):
            sources.bench.append({**row, "_file": str(path)})


def add_run(path: Path, sources: Sources, given: bool = True) -> Run:
    """Read a run folder's result files into ``sources`` (once per folder)."""
    k = key(path)
    if k in sources.runs:
        sources.runs[k].given |= given
        return sources.runs[k]
    path = Path(k)
    run = Run(path=k, given=given)
    run.model = _recipe_model(path / RECIPE)
    sources.files.append(str(path / RECIPE))
    for name, attr in ((EVAL, "eval"), (ENV, "env"), (QAT, "qat")):
        if (path / name).is_file():
            data = read_json(path / name, sources)
            setattr(run, attr, data if isinstance(data, dict) else None)
    if (path / METRICS).is_file():
        run.best_epoch = _best_epoch(path / METRICS)
        sources.files.append(str(path / METRICS))
    run.cost = _cost(run, sources)
    sources.runs[k] = run
    return run


def _recipe_model(path: Path) -> str | None:
    """``model.name`` of a run's resolved recipe (all a report needs from it)."""
    try:
        recipe = safe_load(path.read_text())  # with the recipe limits: run folders travel
    except (yaml.YAMLError, UnicodeDecodeError):
        raise UserError(f"{path}: damaged (not valid YAML); restore it from the original recipe") from None
    model = (recipe or {}).get("model") if isinstance(recipe, dict) else None
    return model.get("name") if isinstance(model, dict) else None


def _cost(run: Run, sources: Sources) -> dict | None:
    """MACs and params from the run's eval.json; a QAT run without them takes its float run's
    (fake quantization adds no weights a device stores)."""
    candidates = [Path(run.path) / EVAL]
    if run.qat and run.qat.get("float_run"):
        candidates.append(Path(run.qat["float_run"]) / EVAL)
    for path in candidates:
        ev = run.eval if path == candidates[0] else (read_json(path, sources) if path.is_file() else None)
        if isinstance(ev, dict) and ev.get("macs") is not None:
            return {"macs": ev["macs"], "params": ev.get("params"), "input_size": ev.get("input_size"),
                    "from": str(path)}
    return None


def _best_epoch(path: Path) -> dict | None:
    """The epoch with the highest validation accuracy (what ``best.pt`` holds for a plain run)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return max(rows, key=lambda r: float(r["val_accuracy"]), default=None)
    except (KeyError, ValueError, TypeError, csv.Error):
        raise UserError(f"{path}: damaged (no readable val_accuracy column); it is rewritten by "
                        "edgecnn train --resume, or leave the run out") from None


def _follow_references(sources: Sources) -> None:
    """Read the sidecars and runs that bench rows and sidecars name, where they still exist."""
    for row in sources.bench:
        art = row.get("artifact")
        if art and key(art) not in sources.artifacts:
            side = Path(row.get("sidecar") or f"{art}.json")
            data = read_json(side, sources) if side.is_file() else None
            if is_sidecar(data):
                sources.artifacts[key(art)] = data
            else:
                sources.notes.append(f"{row.get('name') or art}: sidecar {side} not found; its accuracy is left blank")
    wanted = [(s.get("source") or {}).get("run") for s in sources.artifacts.values()]
    wanted += [r.get("run") for r in sources.bench]
    missing = set()
    for run in wanted:
        if not run or key(run) in sources.runs or key(run) in missing:
            continue
        if (Path(run) / RECIPE).is_file():
            add_run(Path(run), sources, given=False)
        else:
            missing.add(key(run))
            sources.notes.append(f"run {run} not found: its MACs, params and reference accuracy are left blank")
