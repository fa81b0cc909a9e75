"""The sweep's phases: latency from random weights, training what can fit, then the choice (``sweep``)."""

from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

from rich.console import Console

from edgecnn.bench.transport import open_transport
from edgecnn.config.load import validate_recipe
from edgecnn.core.contracts import TARGET_MODULE
from edgecnn.core.progress import Progress
from edgecnn.errors import UserError
from edgecnn.files import atomic_write_text
from edgecnn.pipeline import run as run_pipeline
from edgecnn.sweep.choice import _bench_rows, _candidates, _exports, _pareto, latency_interval, recommend
from edgecnn.sweep.grid import PROBES, QAT_FOR_TARGET, REPORT, SWEEP, Grid, Variant, _probe_label, _words
from edgecnn.sweep.printing import (
    _print_candidates, _print_outcome, _print_probes, _recommendation_line, _recreate,
)

SWEEP_VERSION = 1
METRICS = ("accuracy", "f1")
# A candidate straddling the budget on a noisy machine would otherwise take every round up to --max-rounds (60)
# and still straddle it: twice the old fixed ten rounds is where more rounds stop paying in a sweep.
SWEEP_MAX_ROUNDS = 20
# Rounds of a quarter second, not the bench's one second: a sweep asks which side of the budget a row lies on,
# and the interval's width comes from how rounds differ, not from how long each is. Five short rounds decide a
# row far from the budget in about a second; ten one-second rounds (the fixed count) took ten.
SWEEP_MIN_TIME_S = 0.25
# Calibration images for a probe's PTQ export. Its ranges are those of random weights and only its timing is
# used: INT8 kernels run at the same speed whatever the scales. Calibrating ExecuTorch's PT2E graph costs about a
# tenth of a second an image on the 2-core Zen 3 (the observers run op by op in Python): 32 images were a large
# share of a probe's export there, and 8 still give every observer real activations.
PROBE_CALIB = 8


def _export_items(cands: list[tuple[str, str]], probe: bool) -> list[dict]:
    items = []
    for p, t in cands:
        int8 = {"fp32": "none", "ptq": "ptq", "qat": "ptq" if probe else "qat"}[p]
        item = {"target": t, "int8": int8}
        if item not in items:
            items.append(item)
    return items


def _with_pipeline(recipe, stages: list[str], qat: list[str], export: list[dict], bench: dict, calib: int,
                   data_changes: dict | None = None):
    """The variant's recipe with the pipeline the sweep needs (the recipe's bench settings kept, no eager row)."""
    data = recipe.model_dump(mode="json")
    data["data"].update(data_changes or {})
    pipe = data["pipeline"]
    pipe.update(stages=stages, qat=qat, export=export, calib=calib)
    pipe["bench"].update(eager=False, **bench)
    return validate_recipe(data)


def _write_random_run(recipe, folder: Path) -> None:
    """A run folder whose checkpoint holds the model's initial (random) weights: what the probes export."""
    import torch

    from edgecnn.config import dump_recipe
    from edgecnn.data import build_datasets
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


def _quiet() -> Console:
    return Console(quiet=True)


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
    # With adaptive rounds (the recipe sets no bench.rounds), a row stops once its interval decides it; one the
    # budget cannot decide in SWEEP_MAX_ROUNDS stays in the race, as it would have with fixed rounds.
    first = grid.variants[0].recipe.pipeline.bench if grid.variants else None
    bench = {"device": device, "budget_ms": budget_ms,
             "max_rounds": min(first.max_rounds, SWEEP_MAX_ROUNDS) if first else SWEEP_MAX_ROUNDS}
    if first and first.rounds is None and first.iters is None and "min_time" not in first.model_fields_set:
        bench["min_time"] = SWEEP_MIN_TIME_S  # adaptive, and the recipe chose no round length
    probes, alive = _latency_phase(grid, budget_ms, out, bench, console, doc, t0)
    if not latency_only:
        _training_phase(grid, alive, out, bench, console, doc, t0)
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


def _latency_phase(grid: Grid, budget_ms: float, out: Path, bench: dict, console: Console, doc: dict,
                   t0: float) -> tuple[dict, dict]:
    """1. Latency of every variant from random weights; 2. which candidates stay in the race
    (a variant with none is never trained). Returns (probes, alive) by variant name."""
    probes: dict[str, dict] = {}
    t1 = time.perf_counter()
    for i, v in enumerate(grid.variants, 1):
        console.rule(f"[bold]latency {i}/{len(grid.variants)}: {v.name} ({_words(v.overrides)}), random weights")
        probes[v.name] = _probe(v, grid, out, bench, console)
    doc["latency_phase"] = _phase_record(probes, time.perf_counter() - t1)
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


def _training_phase(grid: Grid, alive: dict, out: Path, bench: dict, console: Console, doc: dict,
                    t0: float) -> None:
    """3. Train, fine-tune, export and time what is left, one variant at a time (a failure is recorded)."""
    for i, v in enumerate([v for v in grid.variants if alive[v.name]], 1):
        console.rule(f"[bold]variant {i}/{doc['trainings']['variants_trained']}: {v.name} "
                     f"({len(alive[v.name])} candidates within reach)")
        entry = next(e for e in doc["variants"] if e["name"] == v.name)
        t1 = time.perf_counter()
        try:
            _train_variant(v, grid, alive[v.name], out, bench, console)
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


def _check_device(device: str, targets: list[str]) -> None:
    """Reach a remote device, and find each target's runtime on it, before minutes of exports.

    Raises:
        UserError: a malformed address, an unreachable board, no Python there, or a missing runtime
            (with the pip command that installs it).
    """
    if device in ("local", "localhost", ""):
        return
    transport = open_transport(device, timeout=30)
    try:
        if hasattr(transport, "missing"):
            modules = ("numpy", *dict.fromkeys(TARGET_MODULE[t] for t in targets))
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
            "rounds": "adaptive rounds (edgecnn bench --precision, unless the recipe sets pipeline.bench.rounds): "
                      "a candidate stops being timed once its sequential 95% interval lies entirely above the "
                      "budget, or entirely below it within the precision; latency_phase records the rounds",
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
    doc["wall_s"] = round(time.perf_counter() - t0, 1)  # this invocation (a resumed sweep counts anew)
    atomic_write_text(out / SWEEP, json.dumps({k: v for k, v in doc.items() if not k.startswith("_")},
                                              indent=2) + "\n")


def _probe(v: Variant, grid: Grid, out: Path, bench: dict, console: Console) -> dict:
    """Export the variant with random weights, fp32 and PTQ per target, and time the artifacts on the device.

    Returns ``{"folder", "latency": {(precision, target): (p50, lo, hi, has_ci)}, "rows", "error"}``.
    """
    folder = out / PROBES / v.name
    needed = [(p, t) for p, t in grid.candidates]
    calib = min(v.recipe.pipeline.calib, PROBE_CALIB)
    small = {}
    if v.recipe.data.source == "synth":
        # An export measures parity on the validation split: with random weights that is time spent on
        # nothing, so the built-in dataset of a probe is just big enough to calibrate PTQ.
        small = {"val_per_class": 1, "train_per_class": math.ceil(calib / v.recipe.data.num_classes)}
    recipe = _with_pipeline(v.recipe, ["export", "bench"], [], _export_items(needed, probe=True), bench, calib,
                            small)
    result = {"folder": str(folder), "latency": {}, "rows": {}, "error": None}
    t0 = time.perf_counter()
    try:
        _write_random_run(recipe, folder)
        # The probe's own output is quiet; its exports' and bench's progress show on this line instead.
        with Progress(f"latency probe {v.name}") as progress:
            progress.update(f"{len(needed)} candidates: export, then bench")
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


def _train_variant(v: Variant, grid: Grid, cands: list[tuple[str, str]], out: Path, bench: dict,
                   console: Console) -> None:
    recipe = _final_recipe(v.recipe, cands, bench)
    run_pipeline(recipe, out / v.name, console=console)


def _final_recipe(recipe, cands: list[tuple[str, str]], bench: dict):
    qat = list(dict.fromkeys(QAT_FOR_TARGET[t] for p, t in cands if p == "qat"))
    stages = ["train", *(["qat"] if qat else []), "export", "bench"]
    return _with_pipeline(recipe, stages, qat, _export_items(cands, probe=False), bench, recipe.pipeline.calib)


def _phase_record(probes: dict, seconds: float) -> dict:
    """The latency phase's cost: its wall time, and the rounds each probe row took (and why it stopped)."""
    rows = [r for pr in probes.values() for r in pr["rows"].values() if r and r.get("rounds")]
    return {"seconds": round(seconds, 1), "artifacts": len(rows),
            "rounds": sorted(r["rounds"] for r in rows),
            "stopped_by": {k: sum((r.get("stopped_by") or "fixed rounds") == k for r in rows)
                           for k in sorted({r.get("stopped_by") or "fixed rounds" for r in rows})}}


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
