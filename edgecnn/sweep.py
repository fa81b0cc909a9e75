"""``edgecnn sweep``: which recipe variant, precision and runtime is the most accurate one that fits a
latency budget, measured on the user's own device.

Read top to bottom:

1. **The grid.** ``--vary KEY=V1,V2`` words make the variants (their product); each variant times each
   precision times each target is a candidate. Every value is checked against the recipe schema before
   anything runs, and every error is reported at once.
2. **Latency first.** Latency does not depend on the weights, so each variant is written as a run folder
   with random weights (``SWEEP/latency/<variant>``), exported fp32 and PTQ INT8 for each target, and timed
   on the device with the usual ``edgecnn run`` stages (export, bench). A QAT artifact is the same INT8
   graph as the PTQ one of its backend (the same quantizer, with learned instead of calibrated ranges), so
   a QAT candidate's probe latency is its backend's PTQ probe. A candidate whose latency interval lies
   entirely above the budget is dropped; a variant with no candidate left is never trained.
3. **Training.** Each remaining variant is a normal ``edgecnn run`` folder (``SWEEP/<variant>``): train,
   QAT for the backends still needed, export only the candidates still in the race, bench them on the
   device. Run the same command again after an interruption: every stage resumes or is skipped.
4. **The answer.** ``SWEEP/sweep.json``: every candidate (accuracy through its runtime with a Wilson 95%
   interval, latency of the trained artifact with its interval), the Pareto front and the recommendation:
   the most accurate candidate whose latency interval's upper end is within budget; candidates whose
   accuracy intervals overlap the best one's count as tied, and the fastest of them wins.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from edgecnn.errors import UserError

SWEEP = "sweep.json"
PROBES = "latency"  # random-weight run folders, one per variant
REPORT = "report"
SWEEP_VERSION = 1
TARGETS = ("executorch", "openvino", "onnx")
PRECISIONS = ("fp32", "ptq", "qat")
METRICS = ("accuracy", "f1")
QAT_FOR_TARGET = {"executorch": "xnnpack", "openvino": "openvino"}  # config.schema.QAT_FOR_TARGET
PROBE_CALIB = 32  # calibration images for a probe's PTQ export: ranges of random weights, only timed
Z95 = 1.959963984540054


# -- the grid --------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str  # folder name inside the sweep folder
    overrides: dict[str, Any]  # the --vary values of this variant, in --vary order
    recipe: Any = None  # the validated Recipe (base + overrides + these)


@dataclass
class Grid:
    recipe_path: Path
    overrides: list[str]  # the plain dotted.key=value words given after the recipe
    vary: dict[str, list]  # key -> values, in --vary order
    variants: list[Variant]
    candidates: list[tuple[str, str]]  # (precision, target), in the order they are shown
    skipped: list[str] = field(default_factory=list)  # notes on combinations that cannot exist


def split_values(raw: str) -> list[str]:
    """``"a,b,[1,2]"`` -> ``["a", "b", "[1,2]"]``: commas inside brackets or braces do not split."""
    out, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "x"


def make_grid(recipe_path: Path, overrides: list[str], vary: list[str], targets: list[str],
              precisions: list[str]) -> Grid:
    """Parse and check the whole grid; every problem is collected before anything runs.

    Raises:
        UserError: one line per problem (a malformed or empty ``--vary``, a key given twice, an unknown key,
            a value the schema refuses, an unknown target or precision, no candidate left).
    """
    from edgecnn.config.load import _read_yaml, parse_overrides

    errors: list[str] = []
    candidates, skipped = _grid_candidates(targets, precisions, errors)
    base_over: dict[str, Any] = {}
    try:
        base_over = parse_overrides(list(overrides))
    except UserError as e:
        errors += e.lines
    grid = _grid_axes(vary, errors)
    try:
        base = _read_yaml(Path(recipe_path))
    except UserError as e:
        raise UserError(*e.lines, *errors) from None
    _check_values(base, base_over, grid, errors)
    if errors:
        raise UserError(*dict.fromkeys(errors))
    variants = _variants(base, base_over, grid, errors)
    if errors:
        raise UserError(*dict.fromkeys(errors))
    return Grid(Path(recipe_path), list(overrides), grid, variants, candidates, list(dict.fromkeys(skipped)))


def _grid_candidates(targets: list[str], precisions: list[str], errors: list[str]) -> tuple[list, list]:
    """The (precision, target) pairs to measure, and the ones skipped with why; problems go to ``errors``."""
    for name, given, allowed in (("--targets", targets, TARGETS), ("--precisions", precisions, PRECISIONS)):
        if not given:
            errors.append(f"{name}: empty; choose from {', '.join(allowed)}")
        for v in given:
            if v not in allowed:
                errors.append(f"{name} {v!r}: unknown; choose from {', '.join(allowed)}")
    candidates, skipped = [], []
    for p in precisions:
        for t in targets:
            if p == "qat" and t in TARGETS and t not in QAT_FOR_TARGET:
                skipped.append(f"{t} has no QAT backend: no {t} qat candidates (its INT8 is ptq)")
            elif p in PRECISIONS and t in TARGETS and (p, t) not in candidates:
                candidates.append((p, t))
    if not candidates and not errors:
        errors.append(f"--precisions {','.join(precisions)} x --targets {','.join(targets)}: no candidate "
                      "(QAT exists for executorch and openvino only)")
    return candidates, skipped


def _grid_axes(vary: list[str], errors: list[str]) -> dict[str, list]:
    """``--vary KEY=V1,V2`` words -> {key: values}; malformed, empty or repeated ones go to ``errors``."""
    grid: dict[str, list] = {}
    if not vary:
        errors.append("--vary: give at least one, e.g. --vary model.name=cnn_attn,cnn")
    for word in vary:
        key, sep, raw = word.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(f"--vary {word!r}: expected KEY=V1,V2,..., e.g. --vary data.image_size=32,48,64")
            continue
        values = [_parse_value(v.strip()) for v in split_values(raw) if v.strip()]
        if not values:
            errors.append(f"--vary {key}: no values; give one or more, comma-separated")
            continue
        if key in grid:
            errors.append(f"--vary {key}: given twice; list all its values in one --vary")
            continue
        if len(set(map(json.dumps, values))) != len(values):
            errors.append(f"--vary {key}: a value is listed twice")
        grid[key] = values
    return grid


def _check_values(base: dict, base_over: dict, grid: dict[str, list], errors: list[str]) -> None:
    """The recipe with the plain overrides, then each value alone, so an error names what causes it."""
    from edgecnn.config.load import validate_recipe

    common: list[str] = []
    try:
        validate_recipe(base, base_over)
    except UserError as e:
        common = e.lines
    errors += common
    for key, values in grid.items():  # a --vary key given as a plain override too: --vary wins
        for value in values:
            try:
                validate_recipe(base, {**base_over, key: value})
            except UserError as e:
                errors += [f"--vary {key}={_yaml_word(value)}: {line}" for line in e.lines if line not in common]


def _variants(base: dict, base_over: dict, grid: dict[str, list], errors: list[str]) -> list[Variant]:
    """One validated recipe per combination, named by its values (unique, never a reserved folder name)."""
    from edgecnn.config.load import validate_recipe

    variants, names = [], set()
    for combo in itertools.product(*grid.values()):
        over = dict(zip(grid, combo))
        try:
            recipe = validate_recipe(base, {**base_over, **over})
        except UserError as e:  # values fine alone, refused together
            errors += [f"--vary combination {_words(over)}: {line}" for line in e.lines]
            continue
        name = "-".join(_slug(v) for v in combo)
        while name in names or name in (PROBES, REPORT):
            name += "_"
        names.add(name)
        variants.append(Variant(name, over, recipe))
    return variants


def _words(over: dict[str, Any]) -> str:
    return " ".join(f"{k}={_yaml_word(v)}" for k, v in over.items())


def _yaml_word(v: Any) -> str:
    if isinstance(v, str):
        return v
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


# -- statistics ------------------------------------------------------------------------------------

def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` measured on ``n`` items (95% by default)."""
    if not n:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def latency_interval(row: dict) -> tuple[float, float, float, bool]:
    """``(p50, low, high, has_interval)`` of a bench row: the 95% interval of the median where the bench
    measured one (``latency_ms_p50_ci_low/high``), else the median itself at both ends."""
    p50 = row["latency_ms_p50"]
    lo, hi = row.get("latency_ms_p50_ci_low"), row.get("latency_ms_p50_ci_high")
    if lo is None or hi is None:
        return p50, p50, p50, False
    return p50, lo, hi, True


# -- recipes of the two phases ---------------------------------------------------------------------

def _export_items(cands: list[tuple[str, str]], probe: bool) -> list[dict]:
    items = []
    for p, t in cands:
        int8 = {"fp32": "none", "ptq": "ptq", "qat": "ptq" if probe else "qat"}[p]
        item = {"target": t, "int8": int8}
        if item not in items:
            items.append(item)
    return items


def _with_pipeline(recipe, stages: list[str], qat: list[str], export: list[dict], device: str, calib: int,
                   data_changes: dict | None = None):
    """The variant's recipe with the pipeline the sweep needs (the recipe's bench settings kept, no eager row)."""
    from edgecnn.config.load import validate_recipe

    data = recipe.model_dump(mode="json")
    data["data"].update(data_changes or {})
    pipe = data["pipeline"]
    pipe.update(stages=stages, qat=qat, export=export, calib=calib)
    pipe["bench"].update(device=device, eager=False)
    return validate_recipe(data)


def _probe_label(p: str, t: str) -> str:
    return f"{t} {'fp32' if p == 'fp32' else 'int8 (PTQ)'}"


def _final_label(p: str, t: str) -> str:
    return f"{t} " + {"fp32": "fp32", "ptq": "int8 (PTQ)", "qat": "int8 (QAT)"}[p]


def _write_random_run(recipe, folder: Path) -> None:
    """A run folder whose checkpoint holds the model's initial (random) weights: what the probes export."""
    import torch

    from edgecnn.config import dump_recipe
    from edgecnn.data import build_datasets
    from edgecnn.files import atomic_write_text
    from edgecnn.train import run as R
    from edgecnn.train.checkpoint import save_checkpoint

    if (folder / R.LAST).is_file():
        return
    _, _, classes = build_datasets(recipe.data, recipe.seed, len(recipe.data.bands), cache=False)  # names only
    torch.manual_seed(recipe.seed)
    model = R.build_for_recipe(recipe, len(classes))
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / R.RECIPE, "# edgecnn sweep: random weights, exported only to time them\n"
                      + dump_recipe(recipe))
    save_checkpoint(folder / R.LAST, {"model": model.state_dict(), "classes": list(classes), "epoch": 0,
                                      "history": [], "bands": list(recipe.data.bands), "random_weights": True})


def _bench_rows(folder: Path) -> dict[str, dict]:
    """The rows of ``folder/bench.json`` by resolved artifact path."""
    path = folder / "bench.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {str(Path(r["artifact"]).resolve()): r for r in rows if r.get("artifact")}


def _exports(folder: Path) -> dict[str, str]:
    """label -> artifact path, from the folder's ``pipeline.json``."""
    path = folder / "pipeline.json"
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return {}
    return {label: e["path"] for label, e in state.get("exports", {}).items()}


def _quiet() -> Console:
    return Console(quiet=True)


# -- the sweep -------------------------------------------------------------------------------------

def sweep(grid: Grid, budget_ms: float, out: Path, device: str = "local", metric: str = "accuracy",
          latency_only: bool = False, console: Console | None = None, command: list[str] | None = None) -> dict:
    """Run the grid into ``out`` and write ``out/sweep.json``.

    Args:
        grid: from ``make_grid``.
        budget_ms: the latency budget (median latency, batch 1, ms).
        out: the sweep folder; an earlier sweep of the same grid there is resumed.
        device: where latency is measured: ``local`` or ``ssh://user@host[:port]`` (as ``edgecnn bench``).
        metric: ``accuracy`` or ``f1`` (through the artifact's runtime, on the validation split).
        latency_only: stop after the random-weight latency phase (what would be trained at this budget).
        command: the command line, recorded in ``sweep.json``.

    Returns:
        The ``sweep.json`` document.

    Raises:
        UserError: bad settings, or a sweep folder made from another recipe.
    """
    _check_settings(grid, budget_ms, device, metric)
    console = console or Console()
    out = Path(out)
    t0 = time.perf_counter()
    _check_same_grid(out, grid)
    _check_device(device, [t for _, t in grid.candidates])
    doc = _new_doc(grid, budget_ms, device, metric, command)
    doc["skipped_combinations"] = grid.skipped
    probes, alive = _latency_phase(grid, budget_ms, out, device, console, doc, t0)
    if not latency_only:
        _training_phase(grid, alive, out, device, console, doc, t0)
    _choose(doc, grid, probes, alive, out, budget_ms, metric, latency_only)
    _write(out, doc, t0)
    _print_candidates(console, doc)
    if not latency_only and any(c["trained"] for c in doc["candidates"]):
        _report(out, console)
    _print_outcome(console, doc, budget_ms, latency_only)
    return doc


def _check_settings(grid: Grid, budget_ms: float, device: str, metric: str) -> None:
    """Refuse settings no sweep can run with, before anything is measured."""
    if not budget_ms > 0:
        raise UserError(f"--budget-ms {budget_ms}: must be a positive number of milliseconds")
    if metric not in METRICS:
        raise UserError(f"--metric {metric!r}: choose accuracy or f1")
    if device.startswith("adb://") and any(t != "executorch" for _, t in grid.candidates):
        raise UserError(f"--device {device}: a phone runs ExecuTorch .pte only; use --targets executorch")
    if device.startswith("cuda"):
        raise UserError("--device cuda times the PyTorch model, not an artifact; sweep on local, ssh:// or adb://")


def _latency_phase(grid: Grid, budget_ms: float, out: Path, device: str, console: Console, doc: dict,
                   t0: float) -> tuple[dict, dict]:
    """1. Latency of every variant from random weights; 2. which candidates stay in the race
    (a variant with none is never trained). Returns (probes, alive) by variant name."""
    probes: dict[str, dict] = {}
    for i, v in enumerate(grid.variants, 1):
        console.rule(f"[bold]latency {i}/{len(grid.variants)}: {v.name} ({_words(v.overrides)}), random weights")
        probes[v.name] = _probe(v, grid, out, device, console)
    alive: dict[str, list[tuple[str, str]]] = {}
    for v in grid.variants:
        alive[v.name] = [c for c in grid.candidates
                         if probes[v.name]["latency"].get(c) and probes[v.name]["latency"][c][1] <= budget_ms]
    _print_probes(console, grid, probes, alive, budget_ms)
    failed = [name for name, pr in probes.items() if pr["error"]]
    if failed and len(failed) == len(grid.variants):
        raise UserError(f"every latency probe failed; the first: {probes[failed[0]]['error']}")
    doc["variants"] = [_variant_entry(v, out, probes[v.name], alive[v.name], grid) for v in grid.variants]
    doc["trainings"] = _trainings(grid, alive, failed)
    _write(out, doc, t0)
    return probes, alive


def _training_phase(grid: Grid, alive: dict, out: Path, device: str, console: Console, doc: dict,
                    t0: float) -> None:
    """3. Train, fine-tune, export and time what is left, one variant at a time (a failure is recorded)."""
    for i, v in enumerate([v for v in grid.variants if alive[v.name]], 1):
        console.rule(f"[bold]variant {i}/{doc['trainings']['variants_trained']}: {v.name} "
                     f"({len(alive[v.name])} candidates within reach)")
        entry = next(e for e in doc["variants"] if e["name"] == v.name)
        t1 = time.perf_counter()
        try:
            _train_variant(v, grid, alive[v.name], out, device, console)
        except UserError as e:
            entry["error"] = " ".join(e.lines)
            console.print(f"[red]{v.name}: failed: {entry['error']}[/]")
        entry["seconds"] = round(time.perf_counter() - t1, 1)
        _write(out, doc, t0)


def _choose(doc: dict, grid: Grid, probes: dict, alive: dict, out: Path, budget_ms: float, metric: str,
            latency_only: bool) -> None:
    """4. Candidates, Pareto front, recommendation, into ``doc``."""
    doc["candidates"] = _candidates(grid, probes, alive, out, budget_ms, metric, latency_only)
    doc["emulated"] = any(c.get("emulated") for c in doc["candidates"])
    doc["pareto"] = _pareto(doc["candidates"])
    doc["recommendation"] = recommend(doc["candidates"])
    doc["recommendation_line"] = _recommendation_line(doc, latency_only)
    rec = doc["recommendation"]
    doc["recreate"] = _recreate(grid, rec, out) if rec else None
    doc["finished"] = not latency_only


def _report(out: Path, console: Console) -> None:
    """The HTML report with the sweep plot; a report that cannot be built is a warning, not a failed sweep."""
    try:
        from edgecnn.report import build

        build([out], out / REPORT)
        console.print(f"report with the sweep plot: {out / REPORT / 'report.html'}", highlight=False)
    except UserError as e:
        console.print(f"[yellow]no report: {' '.join(e.lines)}[/]")


def _print_outcome(console: Console, doc: dict, budget_ms: float, latency_only: bool) -> None:
    t = doc["trainings"]
    would, never = ("would be ", "would never be") if latency_only else ("", "never")
    console.print(f"trainings: {t['variants_trained']} of {t['variants']} variants {would}trained, "
                  f"{t['variants_saved']} {never} trained (latency above {budget_ms:g} ms for every precision "
                  f"and target); QAT fine-tunes {t['qat_runs']} of {t['qat_runs_full_grid']} ({t['saved']} of "
                  f"{t['trainings_full_grid']} trainings saved in all); wall {doc['wall_s']:.0f} s",
                  highlight=False, soft_wrap=True)
    console.print(doc["recommendation_line"], highlight=False, markup=False, soft_wrap=True)
    if doc["recreate"]:
        console.print(doc["recreate"], highlight=False, markup=False, soft_wrap=True)


RUNTIME_MODULES = {"executorch": "executorch", "openvino": "openvino", "onnx": "onnxruntime"}


def _check_device(device: str, targets: list[str]) -> None:
    """Reach a remote device, and find each target's runtime on it, before minutes of exports.

    Raises:
        UserError: a malformed address, an unreachable board, no Python there, or a missing runtime
            (with the pip command that installs it).
    """
    if device in ("local", "localhost", ""):
        return
    from edgecnn.bench.transport import open_transport

    transport = open_transport(device, timeout=30)
    try:
        if hasattr(transport, "missing"):
            modules = ("numpy", *dict.fromkeys(RUNTIME_MODULES[t] for t in targets))
            missing = transport.missing(modules)
            if missing:
                raise UserError(*(f"{device}: {m} is missing on the device: {fix}" for m, fix in missing.items()))
    finally:
        transport.close()


def _new_doc(grid: Grid, budget_ms: float, device: str, metric: str, command) -> dict:
    return {
        "edgecnn_sweep": SWEEP_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command or []),
        "recipe": str(grid.recipe_path), "overrides": grid.overrides, "vary": grid.vary,
        "budget_ms": budget_ms, "device": device, "metric": metric,
        "targets": list(dict.fromkeys(t for _, t in grid.candidates)),
        "precisions": list(dict.fromkeys(p for p, _ in grid.candidates)),
        "method": {
            "latency": "median latency at batch 1 with its 95% interval where edgecnn bench reports one "
                       "(latency_ms_p50_ci_low/high), else the median alone; a candidate fits when the "
                       "interval's upper end is within the budget",
            "probe": "each variant exported with random weights (fp32, and PTQ INT8 calibrated on "
                     f"{PROBE_CALIB} images; the built-in dataset shrunk to what calibration needs) and timed "
                     "before training; a candidate whose interval lies entirely above the budget is not exported, "
                     "and a variant with none left is not trained",
            "qat_latency": "a QAT candidate is pruned on its backend's PTQ probe (the same INT8 graph with "
                           "other ranges); once trained, its own artifact is timed",
            "accuracy": "the metric measured by the artifact's own runtime on the validation split, with a "
                        "Wilson 95% interval over its images" + (" (F1 treated as a proportion: approximate)"
                                                                 if metric == "f1" else ""),
            "recommendation": "the most accurate candidate that fits; candidates whose accuracy intervals "
                              "overlap its interval are tied, and the one with the lowest median latency wins",
        },
    }


def _check_same_grid(out: Path, grid: Grid) -> None:
    """A sweep folder resumes only the recipe it was made from (variants are folders named by their values)."""
    old = out / SWEEP
    if not old.is_file():
        return
    try:
        prev = json.loads(old.read_text())
    except ValueError:
        return
    if prev.get("recipe") is not None and (Path(prev["recipe"]).name != grid.recipe_path.name
                                           or prev.get("overrides") != grid.overrides):
        raise UserError(f"{out}: holds a sweep of {prev['recipe']} {' '.join(prev.get('overrides') or [])}; "
                        "pass the same recipe and overrides to resume it (--vary, --budget-ms, --targets and "
                        "--precisions may change), or --out a new folder")


def _write(out: Path, doc: dict, t0: float) -> None:
    from edgecnn.files import atomic_write_text

    doc["wall_s"] = round(time.perf_counter() - t0, 1)  # this invocation (a resumed sweep counts anew)
    atomic_write_text(out / SWEEP, json.dumps({k: v for k, v in doc.items() if not k.startswith("_")},
                                              indent=2) + "\n")


def _probe(v: Variant, grid: Grid, out: Path, device: str, console: Console) -> dict:
    """Export the variant with random weights, fp32 and PTQ per target, and time the artifacts on the device.

    Returns ``{"folder", "latency": {(precision, target): (p50, lo, hi, has_ci)}, "rows", "error"}``.
    """
    from edgecnn.pipeline import run as run_pipeline

    folder = out / PROBES / v.name
    needed = [(p, t) for p, t in grid.candidates]
    calib = min(v.recipe.pipeline.calib, PROBE_CALIB)
    small = {}
    if v.recipe.data.source == "synth":
        # An export measures parity on the validation split: with random weights that is time spent on
        # nothing, so the built-in dataset of a probe is just big enough to calibrate PTQ.
        small = {"val_per_class": 1, "train_per_class": math.ceil(calib / v.recipe.data.num_classes)}
    recipe = _with_pipeline(v.recipe, ["export", "bench"], [], _export_items(needed, probe=True), device, calib,
                            small)
    result = {"folder": str(folder), "latency": {}, "rows": {}, "error": None}
    t0 = time.perf_counter()
    try:
        _write_random_run(recipe, folder)
        run_pipeline(recipe, folder, console=_quiet())
    except UserError as e:
        result["error"] = " ".join(e.lines)
        console.print(f"[red]{v.name}: latency probe failed: {result['error']}[/]")
        return result
    result["seconds"] = round(time.perf_counter() - t0, 1)
    exports, rows = _exports(folder), _bench_rows(folder)
    for p, t in needed:
        path = exports.get(_probe_label(p, t))
        row = rows.get(str(Path(path).resolve())) if path else None
        if row is None or row.get("error") or row.get("latency_ms_p50") is None:
            result["rows"][(p, t)] = row
            continue
        result["latency"][(p, t)] = latency_interval(row)
        result["rows"][(p, t)] = row
    return result


def _train_variant(v: Variant, grid: Grid, cands: list[tuple[str, str]], out: Path, device: str,
                   console: Console) -> None:
    from edgecnn.pipeline import run as run_pipeline

    recipe = _final_recipe(v.recipe, cands, device)
    run_pipeline(recipe, out / v.name, console=console)


def _final_recipe(recipe, cands: list[tuple[str, str]], device: str):
    qat = list(dict.fromkeys(QAT_FOR_TARGET[t] for p, t in cands if p == "qat"))
    stages = ["train", *(["qat"] if qat else []), "export", "bench"]
    return _with_pipeline(recipe, stages, qat, _export_items(cands, probe=False), device, recipe.pipeline.calib)


def _variant_entry(v: Variant, out: Path, probe: dict, alive: list, grid: Grid) -> dict:
    return {"name": v.name, "overrides": v.overrides, "folder": str(out / v.name), "probe": probe["folder"],
            "probe_seconds": probe.get("seconds"), "probe_error": probe["error"],
            "trained": bool(alive), "candidates_within_reach": len(alive), "error": None, "seconds": None}


def _trainings(grid: Grid, alive: dict[str, list], failed: list[str]) -> dict:
    """What training the latency phase saved: whole variants, and QAT fine-tunes of the variants trained."""
    qat_backends = list(dict.fromkeys(QAT_FOR_TARGET[t] for p, t in grid.candidates if p == "qat"))
    n = len(grid.variants) - len(failed)  # a variant whose probe failed was not judged: not a saving
    trained = [name for name, c in alive.items() if c]
    qat_runs = sum(len({QAT_FOR_TARGET[t] for p, t in alive[name] if p == "qat"}) for name in trained)
    full = n * (1 + len(qat_backends))
    done = len(trained) + qat_runs
    return {"variants": n, "variants_trained": len(trained), "variants_saved": n - len(trained),
            "qat_runs": qat_runs, "qat_runs_full_grid": n * len(qat_backends),
            "trainings_full_grid": full, "trainings_run": done, "saved": full - done,
            "never_trained": [name for name, c in alive.items() if not c and name not in failed],
            "probe_failed": failed}


def _candidates(grid: Grid, probes: dict, alive: dict, out: Path, budget_ms: float, metric: str,
                latency_only: bool) -> list[dict]:
    """One row per variant x (precision, target): settled by the latency probe, or by the trained artifact."""
    rows = []
    for v in grid.variants:
        folder = out / v.name
        exports, bench_rows = _exports(folder), _bench_rows(folder)
        eval_json = _read_json(folder / "eval.json") or {}
        for p, t in grid.candidates:
            c = _blank_candidate(v, p, t, folder, eval_json)
            if not _settled_by_probe(c, probes[v.name], (p, t) in alive[v.name], latency_only):
                _from_artifact(c, exports.get(_final_label(p, t)), bench_rows, metric, budget_ms)
            rows.append(c)
    return rows


def _blank_candidate(v, p: str, t: str, folder: Path, eval_json: dict) -> dict:
    return {"id": f"{v.name} {_final_label(p, t)}", "variant": v.name, "overrides": v.overrides,
            "model": v.recipe.model.name, "image_size": v.recipe.data.image_size, "target": t,
            "precision": p, "run": str(folder), "artifact": None, "trained": False, "status": None,
            "accuracy": None, "accuracy_ci": None, "images": None, "latency_ms_p50": None,
            "latency_ms_ci": None, "latency_has_ci": None, "latency_source": None, "probe_latency_ms_p50": None,
            "probe_latency_ms_ci": None, "size_mb": None, "macs": eval_json.get("macs"),
            "params": eval_json.get("params"), "fits": False, "emulated": None, "device": None, "error": None}


def _settled_by_probe(c: dict, probe: dict, alive: bool, latency_only: bool) -> bool:
    """Fill ``c`` from the random-weight latency probe; True when that settles it (failed, excluded,
    or not trained because of --latency-only)."""
    p, t = c["precision"], c["target"]
    lat, prow = probe["latency"].get((p, t)), probe["rows"].get((p, t))
    if lat:
        c.update(probe_latency_ms_p50=lat[0], probe_latency_ms_ci=[lat[1], lat[2]])
    if prow:
        c.update(emulated=prow.get("emulated"), device=prow.get("device"))
    if probe["error"] or not lat:
        c["status"] = "latency probe failed"
        c["error"] = probe["error"] or (prow or {}).get("error") or "no latency measured"
        return True
    from_probe = dict(latency_ms_p50=lat[0], latency_ms_ci=[lat[1], lat[2]], latency_has_ci=lat[3],
                      size_mb=prow.get("size_mb") if p == "fp32" else None)
    if not alive:
        c.update(status="excluded: latency interval above the budget", **from_probe,
                 latency_source="random-weight probe" + (" (its backend's PTQ artifact)" if p == "qat" else ""))
        return True
    if latency_only:
        c.update(status="within reach (not trained: --latency-only)", **from_probe,
                 latency_source="random-weight probe")
        return True
    return False


def _from_artifact(c: dict, path: str | None, bench_rows: dict, metric: str, budget_ms: float) -> None:
    """Fill ``c`` from its trained artifact: accuracy from the sidecar's parity, latency from bench.json."""
    if not path or not Path(path).is_file():
        c.update(status="failed", error="not exported (see the variant's output)")
        return
    c.update(artifact=path, trained=True)
    side = _read_json(Path(path).with_name(Path(path).name + ".json")) or {}
    parity = side.get("parity") or {}
    value = (parity.get("artifact") or {}).get(metric)
    n = parity.get("images")
    if value is not None and n:
        lo, hi = wilson(value, n)
        c.update(accuracy=value, accuracy_ci=[lo, hi], images=n)
    c["size_mb"] = side.get("size_bytes", 0) / 1e6 if side.get("size_bytes") else None
    row = bench_rows.get(str(Path(path).resolve()))
    if row is None or row.get("error") or row.get("latency_ms_p50") is None:
        c.update(status="failed", error=(row or {}).get("error") or "not benched")
        return
    p50, lo, hi, has = latency_interval(row)
    c.update(latency_ms_p50=p50, latency_ms_ci=[lo, hi], latency_has_ci=has, latency_source="trained artifact",
             emulated=row.get("emulated"), device=row.get("device"), size_mb=row.get("size_mb") or c["size_mb"])
    c["fits"] = hi <= budget_ms and c["accuracy"] is not None
    c["status"] = "fits" if hi <= budget_ms else "measured above the budget"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _pareto(cands: list[dict]) -> list[str]:
    """Ids of the measured candidates no other one beats on both median latency and accuracy."""
    from edgecnn.report.plots import pareto_front

    return pareto_front([(c["id"], c["latency_ms_p50"], c["accuracy"]) for c in cands
                         if c["trained"] and c["accuracy"] is not None and c["latency_ms_p50"] is not None])


def recommend(cands: list[dict]) -> dict | None:
    """The most accurate candidate that fits; those whose accuracy intervals overlap its interval are tied,
    and the tie goes to the lowest median latency (then the smaller artifact)."""
    fitting = [c for c in cands if c["fits"]]
    if not fitting:
        return None
    best = max(fitting, key=lambda c: (c["accuracy"], -c["latency_ms_p50"]))
    tied = [c for c in fitting if c["accuracy_ci"][1] >= best["accuracy_ci"][0]]
    pick = min(tied, key=lambda c: (c["latency_ms_p50"], c["size_mb"] or 0.0))
    return {**pick, "tied_with": [c["id"] for c in tied if c is not pick], "most_accurate": best["id"]}


def _fmt_ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _recommendation_line(doc: dict, latency_only: bool) -> str:
    budget = doc["budget_ms"]
    rec = doc["recommendation"]
    emulated = " (rests on emulated timings: the board was emulated, not real)" if doc["emulated"] else ""
    if latency_only:
        within = [c for c in doc["candidates"] if c["status"].startswith("within reach")]
        return (f"latency only: {len(within)} candidates within reach of {budget:g} ms on {doc['device']}; "
                f"run without --latency-only to train them{emulated}")
    if rec is None:
        return (f"recommendation: none: no candidate's latency interval is within {budget:g} ms on {doc['device']}"
                f"{emulated}; raise --budget-ms or vary smaller settings")
    acc_lo, acc_hi = rec["accuracy_ci"]
    lat_lo, lat_hi = rec["latency_ms_ci"]
    n_tied = len(rec["tied_with"])
    tie = f", tied on {doc['metric']} (overlapping intervals) with {n_tied} slower" if n_tied else ""
    what = f"{rec['variant']} ({_words(rec['overrides'])}) {_final_label(rec['precision'], rec['target'])}"
    return (f"recommendation: {what}: {doc['metric']} {rec['accuracy']:.1%} [{acc_lo:.1%}, {acc_hi:.1%}], "
            f"p50 {_fmt_ms(rec['latency_ms_p50'])} ms [{_fmt_ms(lat_lo)}, {_fmt_ms(lat_hi)}] within {budget:g} ms "
            f"on {doc['device']}{tie}{emulated}")


def _recreate(grid: Grid, rec: dict, out: Path) -> str:
    """The ``edgecnn run`` command that trains the recommended variant and writes its artifact alone."""
    p, t = rec["precision"], rec["target"]
    words = ["edgecnn", "run", str(grid.recipe_path), *grid.overrides,
             *(f"{k}={_yaml_word(v)}" for k, v in rec["overrides"].items())]
    stages = ["train", "qat", "export"] if p == "qat" else ["train", "export"]
    words.append(f"pipeline.stages=[{', '.join(stages)}]")
    if p == "qat":
        words.append(f"pipeline.qat=[{QAT_FOR_TARGET[t]}]")
    int8 = {"fp32": "", "ptq": ", int8: ptq", "qat": ", int8: qat"}[p]
    words.append(f"pipeline.export=[{{target: {t}{int8}}}]")
    name = f"{Path(grid.recipe_path).stem}-{rec['variant']}"
    words += ["--out", f"runs/{name}"]
    return " ".join(shlex.quote(w) for w in words)


def _print_probes(console: Console, grid: Grid, probes: dict, alive: dict, budget: float) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"latency from random weights (median [95% interval], ms) against {budget:g} ms",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("variant")
    for p, t in grid.candidates:
        table.add_column(_final_label(p, t).replace("int8 ", ""), justify="right", no_wrap=True)
    table.add_column("train?")
    for v in grid.variants:
        cells = []
        for c in grid.candidates:
            lat = probes[v.name]["latency"].get(c)
            mark = "" if c in alive[v.name] else " ✗"
            cells.append("failed" if lat is None else f"{_fmt_ms(lat[0])} [{_fmt_ms(lat[1])}, {_fmt_ms(lat[2])}]{mark}")
        table.add_row(v.name, *cells, "yes" if alive[v.name] else "never")
    console.print(table)


def _print_candidates(console: Console, doc: dict) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"sweep: {len(doc['candidates'])} candidates, budget {doc['budget_ms']:g} ms on "
                        f"{doc['device']} ({doc['metric']} [95% interval], p50 [95% interval])",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in (("candidate", "left"), (doc["metric"], "right"), ("p50 ms", "right"), ("MB", "right"),
                      ("", "left")):
        table.add_column(col, justify=just, no_wrap=True)
    rec = (doc.get("recommendation") or {}).get("id")
    front = set(doc.get("pareto") or [])
    for c in doc["candidates"]:
        acc = "—" if c["accuracy"] is None else \
            f"{c['accuracy']:.1%} [{c['accuracy_ci'][0]:.1%}, {c['accuracy_ci'][1]:.1%}]"
        lat = "—" if c["latency_ms_p50"] is None else \
            f"{_fmt_ms(c['latency_ms_p50'])} [{_fmt_ms(c['latency_ms_ci'][0])}, {_fmt_ms(c['latency_ms_ci'][1])}]"
        if c["latency_source"] and c["latency_source"] != "trained artifact" and c["latency_ms_p50"] is not None:
            lat += " (probe)"
        size = "—" if c["size_mb"] is None else f"{c['size_mb']:.2f}"
        status = "over budget (probe)" if (c["status"] or "").startswith("excluded") else c["status"] or ""
        note = ("★ recommended" if c["id"] == rec else status) + (" · Pareto" if c["id"] in front else "")
        table.add_row(c["id"], acc, lat, size, note)
    console.print(table)
