"""The answer of a sweep: each candidate from its probe or trained artifact, the Pareto front, the pick."""

from __future__ import annotations

import json
from pathlib import Path

from edgecnn.core.stats import wilson
from edgecnn.report.plots import pareto_front
from edgecnn.sweep.grid import Grid, _final_label


def latency_interval(row: dict) -> tuple[float, float, float, bool]:
    """``(p50, low, high, has_interval)`` of a bench row: the 95% interval of the median where the bench
    measured one (``latency_ms_p50_ci_low/high``), else the median itself at both ends."""
    p50 = row["latency_ms_p50"]
    lo, hi = row.get("latency_ms_p50_ci_low"), row.get("latency_ms_p50_ci_high")
    if lo is None or hi is None:
        return p50, p50, p50, False
    return p50, lo, hi, True


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
            "probe_latency_ms_ci": None, "probe_rounds": None, "probe_stopped_by": None, "size_mb": None, "macs": eval_json.get("macs"),
            "params": eval_json.get("params"), "fits": False, "emulated": None, "device": None, "error": None}


def _settled_by_probe(c: dict, probe: dict, alive: bool, latency_only: bool) -> bool:
    """Fill ``c`` from the random-weight latency probe; True when that settles it (failed, excluded,
    or not trained because of --latency-only)."""
    p, t = c["precision"], c["target"]
    lat, prow = probe["latency"].get((p, t)), probe["rows"].get((p, t))
    if lat:
        c.update(probe_latency_ms_p50=lat[0], probe_latency_ms_ci=[lat[1], lat[2]])
    if prow:
        c.update(emulated=prow.get("emulated"), device=prow.get("device"), probe_rounds=prow.get("rounds"),
                 probe_stopped_by=prow.get("stopped_by"))
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
        lo, hi = wilson(value * n, n)
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
