"""A sweep folder in a report: its trained variants as runs, plus the sweep plot.

``edgecnn sweep`` writes ``SWEEP/sweep.json``, one ``edgecnn run`` folder per trained variant, and
random-weight run folders under ``SWEEP/latency/`` that exist only to be timed. A report of the sweep
folder reads the trained variants (never the random-weight ones) and draws every candidate's accuracy
against its latency, with both 95% intervals, the budget as a vertical line, the candidates that were
never trained at their probe latency along the bottom, and the recommendation starred.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import UserError
from edgecnn.report import plots
from edgecnn.report.collect import read_json

SWEEP = "sweep.json"  # edgecnn.sweep.SWEEP (that module imports rich and yaml; a report needs neither)
BUDGET_COLOR = "#444444"


def is_sweep(path: Path) -> bool:
    return (path.is_dir() and (path / SWEEP).is_file()) or (path.is_file() and path.name == SWEEP)


def expand(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, dict]]]:
    """Replace each sweep folder (or its ``sweep.json``) among ``paths`` by its trained variant folders.

    Returns:
        (the paths to collect, ``[(sweep folder, sweep.json document)]``).

    Raises:
        UserError: a damaged ``sweep.json``, or a sweep that has trained nothing yet.
    """
    keep, found = [], []
    for p in map(lambda x: Path(x).expanduser(), paths):
        if not is_sweep(p):
            keep.append(p)
            continue
        folder = p if p.is_dir() else p.parent
        doc = read_json(folder / SWEEP)
        if not isinstance(doc, dict) or "edgecnn_sweep" not in doc:
            raise UserError(f"{folder / SWEEP}: not written by edgecnn sweep; leave it out")
        trained = [folder / v["name"] for v in doc.get("variants", [])
                   if v.get("trained") and (folder / v["name"] / "recipe.yaml").is_file()]
        if not trained:
            raise UserError(f"{folder}: the sweep has trained no variant yet (--latency-only, or every variant "
                            "above the budget); run edgecnn sweep again without --latency-only or with a larger "
                            "--budget-ms")
        keep += trained
        found.append((folder, doc))
    return keep, found


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def plot(folder: Path, doc: dict) -> tuple[bytes, dict]:
    """Accuracy (the sweep's metric) against median latency for every candidate of one sweep.

    The meta's ``series`` are read back from the drawn artists, as in ``plots``; ``budget_ms`` is read
    back from the budget line and ``recommended`` from the star.
    """
    fig, ax = plots._figure()
    cands = doc.get("candidates") or []
    metric = doc.get("metric", "accuracy")
    measured = [c for c in cands if c.get("trained") and c.get("accuracy") is not None
                and c.get("latency_ms_p50") is not None]
    names = _draw_measured(ax, measured)
    excluded = [c for c in cands if not c.get("trained") and c.get("latency_ms_p50") is not None]
    names |= _draw_excluded(ax, excluded, bool(measured))
    budget = doc["budget_ms"]
    ax.axvline(budget, color=BUDGET_COLOR, linestyle="--", linewidth=1.2, zorder=1, label=f"budget {budget:g} ms")
    rec = doc.get("recommendation")
    names |= _draw_recommended(ax, rec)
    device = doc.get("device", "?")
    title = f"Sweep on {device}: {metric} vs latency" + (" (emulated timings)" if doc.get("emulated") else "")
    xlabel = "latency p50 (ms, batch 1), 95% intervals"
    xs_all = [c["latency_ms_p50"] for c in measured + excluded] + [budget]
    plots._finish(ax, xlabel, title, xs_all)
    ax.set_ylabel(f"{metric} (%)")
    budget_line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("budget"))
    star = next((c for c in ax.collections if c.get_label() == "recommended"), None)
    file = f"sweep_{plots.slug(folder.name)}.png"
    meta = plots._meta(ax, names, file, "sweep", title, xlabel, ylabel=f"{metric} (%)", sweep=str(folder),
                       budget_ms=float(budget_line.get_xdata()[0]),
                       recommended=({"name": rec["id"], "x": float(star.get_offsets()[0][0]),
                                     "y": float(star.get_offsets()[0][1])} if star is not None else None),
                       emulated=bool(doc.get("emulated")))
    return plots._png(fig), meta


def _draw_measured(ax, measured: list[dict]) -> dict[str, list[str]]:
    """Trained candidates, one series per target and precision, with both intervals; their ids by label."""
    names: dict[str, list[str]] = {}
    groups: dict[str, list[dict]] = {}
    for c in measured:
        groups.setdefault(f"{c['target']} {c['precision'].upper() if c['precision'] != 'fp32' else 'fp32'}",
                          []).append(c)
    for label, mine in sorted(groups.items()):
        xs = [c["latency_ms_p50"] for c in mine]
        ys = [c["accuracy"] * 100 for c in mine]
        xerr = [[x - c["latency_ms_ci"][0] for x, c in zip(xs, mine)],
                [c["latency_ms_ci"][1] - x for x, c in zip(xs, mine)]]
        yerr = [[y - c["accuracy_ci"][0] * 100 for y, c in zip(ys, mine)],
                [c["accuracy_ci"][1] * 100 - y for y, c in zip(ys, mine)]]
        color = plots.COLORS.get(mine[0]["target"], plots.OTHER_COLOR)
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, alpha=0.45, elinewidth=1, zorder=2)
        marker = plots.MARKERS.get({"ptq": "PTQ", "qat": "QAT"}.get(mine[0]["precision"], "fp32"), "o")
        ax.scatter(xs, ys, label=label, s=46, zorder=3, color=color, marker=marker, edgecolors="white", linewidths=0.6)
        names[label] = [c["id"] for c in mine]
    return names


def _draw_excluded(ax, excluded: list[dict], any_measured: bool) -> dict[str, list[str]]:
    """Never trained: their probe latency, on the bottom edge (they have no accuracy)."""
    if not excluded:
        return {}
    label = "never trained (probe latency)"
    ax.scatter([c["latency_ms_p50"] for c in excluded], [0.02] * len(excluded), marker="x", color="#999999",
               s=30, zorder=3, label=label, transform=ax.get_xaxis_transform(), clip_on=False)
    # Drawn in axes coordinates vertically, so autoscaling ignores them: widen the x range by hand.
    y_mid = sum(ax.get_ylim()) / 2 if any_measured else 50.0
    ax.update_datalim([(c["latency_ms_p50"], y_mid) for c in excluded])
    ax.autoscale_view()
    return {label: [c["id"] for c in excluded]}


def _draw_recommended(ax, rec: dict | None) -> dict[str, list[str]]:
    """The recommendation as a hollow star, annotated with its id."""
    if not rec or rec.get("accuracy") is None:
        return {}
    ax.scatter([rec["latency_ms_p50"]], [rec["accuracy"] * 100], marker="*", s=320, facecolors="none",
               edgecolors="#ff7f0e", linewidths=1.8, zorder=4, label="recommended")
    ax.annotate(rec["id"], (rec["latency_ms_p50"], rec["accuracy"] * 100), textcoords="offset points",
                xytext=(8, 8), fontsize=7, color="#333333")
    return {"recommended": [rec["id"]]}


def notes(found: list[tuple[Path, dict]]) -> list[str]:
    """One note per sweep: its recommendation (or why there is none) and the trainings the latency phase saved."""
    out = []
    for folder, doc in found:
        t = doc.get("trainings") or {}
        line = doc.get("recommendation_line") or f"{folder}: no recommendation recorded"
        out.append(f"sweep {folder}: {line}; {t.get('variants_trained', '?')} of {t.get('variants', '?')} variants "
                   f"trained, {t.get('saved', '?')} trainings saved by timing random weights first")
    return out
