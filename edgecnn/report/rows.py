"""Join runs, sidecars and bench rows into flat result rows: one per model x target x precision x device.

Three roles, kept apart in every table:

* ``gpu-reference``: the PyTorch model run eagerly on a CUDA GPU (a bench row
  with ``kind: eager`` and ``device: cuda``);
* ``reference``: the PyTorch model anywhere else, or not benched at all (one
  row per run given, so every run shows even without bench rows);
* ``edge``: an exported artifact, one row per device it was benched on (or one
  row with no device when it was never benched).

Accuracy, precision, recall and F1 of an edge row are the artifact's own,
measured by its runtime at export (the sidecar's parity record); those of a
reference row come from the run's ``eval.json``. MACs and params always come
from the source run's ``eval.json``. Anything missing stays ``None``.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.report.collect import Run, Sources, key
from edgecnn.core.stats import wilson

# Column order of results.csv; results.json rows carry the same keys.
COLUMNS = [
    "name", "role", "model", "target", "precision", "variant", "channels", "device", "device_desc",
    "runtime", "runtime_version", "runtime_note",
    "accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_precision", "macro_recall", "macro_f1",
    "metrics_source", "eval_images",
    "top1_agreement", "max_abs_logit_diff",
    "macs", "params", "input_size",
    "latency_ms_p50", "latency_ms_p50_ci_low", "latency_ms_p50_ci_high",
    "latency_ms_floor", "latency_ms_p90", "latency_ms_p99",
    "latency_ms_mean", "cv", "throughput_ips", "gmacs_per_s", "peak_fraction",
    "peak_rss_mb", "size_bytes", "size_mb", "ratio_vs_ref", "ratio_ci_low", "ratio_ci_high", "threads", "batch",
    "warning", "error",
    "machine", "emulated", "check_n", "check_top1_agreement", "check_max_abs_logit_diff", "check_accuracy",
    "check_reference_accuracy", "check_reference", "check_error",
    "run", "artifact", "sidecar", "bench_file", "bench_timestamp",
]
ROLES = ("gpu-reference", "reference", "edge")
BENCH_FIELDS = ("device_desc", "runtime", "runtime_version", "runtime_note", "latency_ms_p50", "latency_ms_p50_ci_low",
                "latency_ms_p50_ci_high", "latency_ms_floor",
                "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "cv",
                "throughput_ips", "gmacs_per_s", "peak_fraction", "peak_rss_mb", "ratio_vs_ref", "ratio_ci_low",
                "ratio_ci_high", "threads", "batch", "warning", "error",
                # the device's own account (bench --check: accuracy measured where the artifact ran)
                "machine", "emulated", "check_n", "check_top1_agreement", "check_max_abs_logit_diff",
                "check_accuracy", "check_reference_accuracy", "check_reference", "check_error")


def build_rows(sources: Sources) -> list[dict]:
    """The joined rows, sorted by role, device, model, target, precision.

    Bench rows measured twice for the same source, device, threads and batch
    (several bench files, or one re-run) keep the latest by timestamp; a note says so.
    """
    benched = _latest_bench_rows(sources)
    rows = []
    for art, sidecar in sources.artifacts.items():
        mine = [b for b in benched if b.get("kind") == "artifact" and b.get("artifact") and key(b["artifact"]) == art]
        rows += [_edge_row(art, sidecar, b, sources) for b in mine] or [_edge_row(art, sidecar, None, sources)]
    for b in benched:  # an artifact benched but neither given nor still on disk with its sidecar
        if b.get("kind") == "artifact" and not (b.get("artifact") and key(b["artifact"]) in sources.artifacts):
            rows.append(_edge_row(b.get("artifact"), {}, b, sources))
    for run_key, run in sources.runs.items():
        mine = [b for b in benched if b.get("kind") == "eager" and b.get("run") and key(b["run"]) == run_key]
        if mine:
            rows += [_reference_row(run, b, sources) for b in mine]
        elif run.given:
            rows.append(_reference_row(run, None, sources))
    for b in benched:  # eager rows whose run folder is gone
        if b.get("kind") == "eager" and not (b.get("run") and key(b["run"]) in sources.runs):
            rows.append(_reference_row(None, b, sources))
    _unique_names(rows)
    for row in rows:
        _accuracy_interval(row)
    rows.sort(key=lambda r: (ROLES.index(r["role"]), r["device"] or "~", r["model"] or "", r["target"] or "",
                             r["precision"] or "", r["name"]))
    return rows


def _accuracy_interval(row: dict) -> None:
    """The Wilson 95% interval of an accuracy measured on ``eval_images`` images (None where unknown):
    500 validation images at 96% leave about ±1.7 points, so two rows 0.4 points apart are not different."""
    if row["accuracy"] is not None and row["eval_images"]:
        n = int(row["eval_images"])
        row["accuracy_ci_low"], row["accuracy_ci_high"] = wilson(round(row["accuracy"] * n), n)


def _latest_bench_rows(sources: Sources) -> list[dict]:
    latest: dict[tuple, dict] = {}
    for b in sources.bench:
        source = key(b["artifact"]) if b.get("artifact") else key(b["run"]) if b.get("run") else b.get("name")
        k = (b.get("kind"), source, b.get("precision"), b.get("device"), b.get("threads"), b.get("batch"))
        old = latest.get(k)
        if old is not None:
            newer, older = (b, old) if str(b.get("timestamp") or "") >= str(old.get("timestamp") or "") else (old, b)
            sources.notes.append(f"{b.get('name')} on {b.get('device')}: measured more than once; "
                                 f"kept {newer['_file']} ({newer.get('timestamp')}), "
                                 f"not {older['_file']} ({older.get('timestamp')})")
            b = newer
        latest[k] = b
    return list(latest.values())


def _empty() -> dict:
    return dict.fromkeys(COLUMNS)


def _apply_bench(row: dict, b: dict | None) -> None:
    if b is None:
        return
    for f in BENCH_FIELDS:
        if b.get(f) is not None:  # a blank in the bench row keeps what the sidecar said (runtime version)
            row[f] = b[f]
    row["device"] = b.get("device")
    row["bench_file"] = b["_file"]
    row["bench_timestamp"] = b.get("timestamp")
    if row["size_mb"] is None:
        row["size_mb"] = b.get("size_mb")


def _cost(row: dict, run: Run | None) -> None:
    if run is not None and run.cost:
        row["macs"], row["params"], row["input_size"] = run.cost["macs"], run.cost["params"], run.cost["input_size"]


def _edge_row(art: str | None, sidecar: dict, b: dict | None, sources: Sources) -> dict:
    row = _empty()
    b_ = b or {}
    run_path = (sidecar.get("source") or {}).get("run") or b_.get("run")
    run = sources.runs.get(key(run_path)) if run_path else None
    row.update(role="edge", run=run_path, artifact=art, sidecar=f"{art}.json" if sidecar and art else b_.get("sidecar"))
    for f in ("model", "target", "precision", "channels"):
        row[f] = sidecar.get(f, b_.get(f))
    parity = sidecar.get("parity") or {}
    measured = parity.get("artifact") or {}
    if measured:
        row.update(accuracy=measured.get("accuracy"), macro_precision=measured.get("precision"),
                   macro_recall=measured.get("recall"), macro_f1=measured.get("f1"),
                   eval_images=parity.get("images"), top1_agreement=parity.get("top1_agreement"),
                   max_abs_logit_diff=parity.get("max_abs_logit_diff"))
        runtime = sidecar.get("runtime") or {}
        row["metrics_source"] = f"sidecar parity ({runtime.get('name', 'runtime')}, {parity.get('images')} images)"
    if sidecar.get("size_bytes") is not None:
        row["size_bytes"] = sidecar["size_bytes"]
        row["size_mb"] = sidecar["size_bytes"] / 1e6
    rt = sidecar.get("runtime") or {}
    row["runtime"], row["runtime_version"] = rt.get("name"), rt.get("version")
    _cost(row, run)
    row["variant"] = _variant(row["precision"], sidecar, run)
    _apply_bench(row, b)
    tail = f"-{row['channels'].replace(',', '+')}" if row["channels"] else ""
    qat = "-qat" if row["variant"] == "QAT" else ""
    row["name"] = (f"{row['model']}-{row['target']}-{row['precision']}{tail}{qat}" if row["model"]
                   else b_.get("name") or Path(art or "unknown").stem)
    return row


def _variant(precision: str | None, sidecar: dict, run: Run | None) -> str | None:
    """fp32/bf16 as is; INT8 from quantization-aware training (QAT) or post-training (PTQ)."""
    if precision != "int8":
        return precision
    qat = (run is not None and run.qat is not None) or "QAT" in str((sidecar.get("parity") or {}).get("reference"))
    return "QAT" if qat else "PTQ"


def _reference_row(run: Run | None, b: dict | None, sources: Sources) -> dict:
    row = _empty()
    b_ = b or {}
    ev = (run.eval if run else None) or {}
    row.update(role="gpu-reference" if str(b_.get("device") or "").startswith("cuda") else "reference",
               run=run.path if run else b_.get("run"), target="eager",
               model=ev.get("model") or (run.model if run else None) or b_.get("model"),
               precision=b_.get("precision") or "fp32")
    if ev.get("accuracy") is not None:
        row.update(accuracy=ev["accuracy"], macro_precision=ev.get("precision"), macro_recall=ev.get("recall"),
                   macro_f1=ev.get("f1"), eval_images=ev.get("images"),
                   metrics_source=f"eval.json ({'fake-quantized, ' if ev.get('fake_quantized') else ''}"
                                  f"{ev.get('images')} images on {ev.get('device')})")
    elif run is not None and run.best_epoch:
        e = run.best_epoch  # no eval.json yet: the best epoch's validation figures
        row.update(accuracy=float(e["val_accuracy"]), macro_precision=_num(e.get("val_precision")),
                   macro_recall=_num(e.get("val_recall")), macro_f1=_num(e.get("val_f1")),
                   metrics_source=f"metrics.csv (epoch {e.get('epoch')}; run edgecnn eval for eval.json)")
    if run is not None and row["model"] is None:
        row["model"] = Path(run.path).name
    _cost(row, run)
    row["variant"] = "QAT" if run is not None and run.qat else row["precision"]
    _apply_bench(row, b)
    row["runtime"] = row["runtime"] or "torch"
    if row["variant"] == "QAT":  # the fake-quantized PyTorch model of a QAT run, not an fp32 one
        row["name"] = f"{row['model']}-qat-{run.qat.get('target', '?')}-fakequant"
    else:
        row["name"] = f"{row['model']}-eager-{row['precision']}"
    return row


def _num(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _unique_names(rows: list[dict]) -> None:
    """Two runs of one model give one name; add the run folder's name where that happens."""
    sources: dict[str, set] = {}
    for r in rows:
        sources.setdefault(r["name"], set()).add(r["artifact"] or r["run"])
    for r in rows:
        if len(sources[r["name"]]) > 1 and r["run"]:
            r["name"] = f"{r['name']} ({run_label(r['run'])})"


def run_label(path: str) -> str:
    """``quickstart`` for runs/quickstart, ``quickstart/qat-xnnpack`` for a QAT run inside it."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name.startswith("qat-") else p.name
