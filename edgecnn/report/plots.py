"""The report's plots, drawn with matplotlib's object API (no pyplot state, Agg renderer).

Each plot function returns ``(png bytes, meta)``. ``meta`` describes what the
figure shows: its title, axis labels and, per series, the points *read back
from the drawn artists* (not from the input rows), so a test of ``meta`` is a
test of the picture. ``y`` is accuracy in percent, as plotted.
"""

from __future__ import annotations

import io
import re

from edgecnn.errors import UserError
from edgecnn.report.rows import run_label

MARKERS = {"fp32": "o", "bf16": "^", "PTQ": "s", "QAT": "D"}
COLORS = {"eager": "#555555", "executorch": "#1f77b4", "openvino": "#d62728", "onnx": "#2ca02c"}
OTHER_COLOR = "#9467bd"


def _figure():
    """A new figure; matplotlib is imported here so ``edgecnn report`` fails with the fix when it is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("edgecnn report draws its plots with matplotlib, which is not installed: "
                        "pip install 'edgecnn[report]'") from None
    fig = Figure(figsize=(6.4, 4.2), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # a Figure without pyplot renders with Agg
    return buf.getvalue()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points no other point beats on both latency (lower) and accuracy (higher),
    in order of latency."""
    front, best = [], float("-inf")
    for name, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
        if y > best:
            front.append(name)
            best = y
    return front


def _series_key(r: dict) -> str:
    return f"{r['target'] or '?'} {r['variant'] or r['precision'] or '?'}"


def _scatter(ax, rows: list[dict], x_field: str, scale: float = 1.0, by_model: bool = False) -> list[tuple]:
    """One scatter series per target x variant, each point labelled with its row's name
    (``by_model``: one label per model, for costs all of a model's targets share)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_series_key(r), []).append(r)
    points, labels = [], []
    for label, mine in sorted(groups.items()):
        xs = [r[x_field] / scale for r in mine]
        ys = [r["accuracy"] * 100 for r in mine]
        first = mine[0]
        color = COLORS.get(first["target"], OTHER_COLOR)
        # 95% intervals as error bars: the median latency's (bench) and the accuracy's (Wilson, over the
        # validation images). A point without an interval gets a bar of zero length.
        xerr = [[x - _or(r.get(f"{x_field}_ci_low"), x * scale) / scale for r, x in zip(mine, xs)],
                [_or(r.get(f"{x_field}_ci_high"), x * scale) / scale - x for r, x in zip(mine, xs)]]
        yerr = [[y - 100 * _or(r.get("accuracy_ci_low"), y / 100) for r, y in zip(mine, ys)],
                [100 * _or(r.get("accuracy_ci_high"), y / 100) - y for r, y in zip(mine, ys)]]
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, elinewidth=0.8, capsize=2,
                    alpha=0.55, zorder=2, label=f"_err {label}")
        ax.scatter(xs, ys, label=label, s=46, zorder=3, color=color,
                   marker=MARKERS.get(first["variant"] or first["precision"], "o"), edgecolors="white", linewidths=0.6)
        points += [(r["name"], x, y) for r, x, y in zip(mine, xs, ys)]
        labels += [(r["model"] or r["name"] if by_model else r["name"], x, y) for r, x, y in zip(mine, xs, ys)]
    _label(ax, labels, by_model)
    return points


def _or(value, default):
    return default if value is None else value


def _label(ax, labels: list[tuple[str, float, float]], by_model: bool) -> None:
    """Texts beside their points. Points on top of each other share one label, a name a line;
    ``by_model``: one label per model at its most accurate point. Neighbours alternate above and
    below; points in the right part of the plot are labelled on their left, inside the axes."""
    at: dict[tuple[float, float], list[str]] = {}
    if by_model:
        for text in dict.fromkeys(t for t, _, _ in labels):
            x, y = max(((x, y) for t, x, y in labels if t == text), key=lambda p: p[1])
            at.setdefault((x, y), []).append(text)
    else:
        for text, x, y in labels:
            at.setdefault((x, y), []).append(text)
    xs = [x for x, _ in at]
    lo, hi = min(xs, default=0), max(xs, default=0)
    for i, ((x, y), texts) in enumerate(sorted(at.items())):
        above, left = i % 2 == 0, hi > lo and (x - lo) / (hi - lo) > 0.6
        ax.annotate("\n".join(texts), (x, y), textcoords="offset points", xytext=(-7 if left else 7, 4 if above else -4),
                    ha="right" if left else "left", va="bottom" if above else "top", fontsize=7, color="#333333")


def _finish(ax, xlabel: str, title: str, xs: list[float]) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=11)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 30:
        ax.set_xscale("log")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.grid(True, alpha=0.3, zorder=0)
    ax.margins(x=0.15, y=0.12)
    ax.legend(fontsize=8, loc="best")


def _meta(ax, names: dict[str, list[str]], file: str, kind: str, title: str, xlabel: str, **extra) -> dict:
    """Series as drawn: each labelled scatter's offsets, named in drawing order, with the error bars'
    ends (``x_err``, ``y_err``: [low, high]) read back from the drawn bar segments."""
    bars = {}
    for container in ax.containers:  # errorbar(): lines = (data line, caps, (x bars, y bars))
        if container.get_label().startswith("_err "):
            x_bars, y_bars = container.lines[2]
            bars[container.get_label()[5:]] = (x_bars.get_segments(), y_bars.get_segments())
    series = []
    for coll in ax.collections:
        label = coll.get_label()
        if label.startswith("_"):
            continue
        pts = coll.get_offsets().tolist()
        xb, yb = bars.get(label, ([], []))
        points = []
        for i, (n, (x, y)) in enumerate(zip(names.get(label, []), pts)):
            point = {"name": n, "x": float(x), "y": float(y)}
            if i < len(xb):
                point["x_err"] = sorted(float(v) for v in (xb[i][0][0], xb[i][1][0]))
                point["y_err"] = sorted(float(v) for v in (yb[i][0][1], yb[i][1][1]))
            points.append(point)
        series.append({"label": label, "points": points})
    return {"file": file, "kind": kind, "title": title, "xlabel": xlabel, "ylabel": "accuracy (%)",
            "series": series, **extra}


def _names_by_series(rows: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(_series_key(r), []).append(r["name"])
    return out


def accuracy_vs_latency(rows: list[dict], device: str) -> tuple[bytes, dict]:
    """Accuracy against median latency for the rows benched on one device, Pareto front marked."""
    fig, ax = _figure()
    mine = [r for r in rows if r["device"] == device]
    points = _scatter(ax, mine, "latency_ms_p50")
    front = pareto_front(points)
    at = {n: (x, y) for n, x, y in points}
    fx, fy = [at[n][0] for n in front], [at[n][1] for n in front]
    # The front as a staircase: from each front point, nothing faster is more accurate.
    ax.step(fx, fy, where="post", color="#ff7f0e", linewidth=1.4, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=170, facecolors="none", edgecolors="#ff7f0e", linewidths=1.6, zorder=4,
               label="_front")
    title = f"Accuracy vs latency on {device}"
    xlabel = "latency p50 (ms, batch 1)"
    _finish(ax, xlabel, title, [p[1] for p in points])
    file = f"accuracy_vs_latency_{slug(device)}.png"
    meta = _meta(ax, _names_by_series(mine), file, "accuracy_vs_latency", title, xlabel, device=device,
                 pareto=front)
    return _png(fig), meta


def accuracy_vs(rows: list[dict], field: str, xlabel: str, scale: float, kind: str) -> tuple[bytes, dict]:
    """Accuracy against a cost that does not depend on the device: one point per model/artifact."""
    fig, ax = _figure()
    seen, mine = set(), []
    for r in rows:
        if r["name"] not in seen:
            seen.add(r["name"])
            mine.append(r)
    points = _scatter(ax, mine, field, scale, by_model=field != "size_mb")
    title = f"Accuracy vs {xlabel.split(' (')[0]}"
    _finish(ax, xlabel, title, [p[1] for p in points])
    file = f"{kind}.png"
    return _png(fig), _meta(ax, _names_by_series(mine), file, kind, title, xlabel)


def band_bars(run) -> tuple[bytes, dict]:
    """Accuracy and F1 per band subset of one band-robust run (the paper's Table 2 as bars)."""
    fig, ax = _figure()
    subsets = run.eval["subsets"]
    names = list(subsets)
    xs = list(range(len(names)))
    series = []
    for i, (metric, label, color) in enumerate((("accuracy", "Accuracy", "#1f77b4"), ("f1", "F1-score", "#ff7f0e"))):
        ys = [subsets[n][metric] * 100 for n in names]
        bars = ax.bar([x + (i - 0.5) * 0.38 for x in xs], ys, width=0.38, label=label, color=color, zorder=3)
        # Read back from the drawn bars, as for the scatter plots.
        series.append({"label": label, "points": [{"name": n, "x": float(b.get_x() + b.get_width() / 2),
                                                   "y": float(b.get_height())} for n, b in zip(names, bars)]})
    ax.set_xticks(xs, names)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_xlabel("bands present (the rest zero-filled)")
    label = run_label(run.path)
    title = f"{label}: per band subset"
    ax.set_title(title, fontsize=11)
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    ax.legend(fontsize=8)
    file = f"bands_{slug(label)}.png"
    return _png(fig), {"file": file, "kind": "bands", "title": title, "xlabel": "bands", "ylabel": "%",
                       "run": run.path, "series": series}


def _unit(largest: float) -> tuple[str, float]:
    """G for the paper's models, M or K for the tiny test ones, so tick labels stay short."""
    return next(((u, s) for u, s in (("G", 1e9), ("M", 1e6), ("K", 1e3)) if largest >= s), ("", 1.0))


def draw_all(rows: list[dict], runs) -> list[tuple[bytes, dict]]:
    """Every plot the rows allow; a plot with no points is left out (the notes say why)."""
    ok = [r for r in rows if r["accuracy"] is not None and not r.get("error")]
    out = []
    devices = sorted({r["device"] for r in ok if r["device"] and r["latency_ms_p50"] is not None})
    for device in devices:
        out.append(accuracy_vs_latency([r for r in ok if r["latency_ms_p50"] is not None], device))
    for field, what, kind in (("macs", "MACs", "accuracy_vs_macs"), ("params", "parameters", "accuracy_vs_params"),
                              ("size_mb", "artifact size", "accuracy_vs_size")):
        mine = [r for r in ok if r[field] is not None]
        # MACs and parameters belong to an architecture: with one architecture such a plot is one column.
        if mine and (field == "size_mb" or len({r["model"] for r in mine}) > 1):
            unit, scale = ("MB", 1.0) if field == "size_mb" else _unit(max(r[field] for r in mine))
            out.append(accuracy_vs(mine, field, f"{what} ({unit})", scale, kind))
    for run in runs:
        if run.given and (run.eval or {}).get("subsets"):
            out.append(band_bars(run))
    return out
