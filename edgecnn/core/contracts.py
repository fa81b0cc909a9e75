"""The files stages hand each other, in one torch-free place (docs/contracts.md says what each holds).

Every stage reads and writes through these names: a report, a bench or an
export finds a run's parts here without importing the code that wrote them.
"""

from __future__ import annotations

from pathlib import Path

# -- the run folder (edgecnn train, edgecnn qat) -----------------------------------------------------
RECIPE = "recipe.yaml"  # the resolved recipe
ENV = "env.json"  # versions and the machine
METRICS = "metrics.csv"  # one row per finished epoch
LAST = "last.pt"  # the checkpoint after the last finished epoch (resumable)
BEST = "best.pt"  # the checkpoint of the best validation epoch
LOG = "train.log"
EVAL = "eval.json"  # edgecnn eval
QAT = "qat.json"  # only in a QAT run folder
EXPORT_DIR = "export"  # edgecnn export's default folder inside a run
PIPELINE = "pipeline.json"  # edgecnn run: what each stage did, from which inputs
BENCH = "bench.json"  # edgecnn run's bench stage
DATA_STATS = "data_stats.json"  # per-band mean/std/nodata share of the training split, when training computed them
SKIPPED = "skipped.json"  # the data files training left out and why (run folder), or a cache build (its folder)

# -- data folders --------------------------------------------------------------------------------------
CACHE_DIR = ".edgecnn-cache"  # decoded-image caches, inside data.root (edgecnn/data/cache.py)
STATS_KEYS = ("bands", "mean", "std", "nodata_share", "lost_share", "images", "source")  # DATA_STATS's keys
# data.max_pixels' default: width x height a reader may decode from one file (of the level it reads: an
# overview when the file has one near the training size). Pillow's own guard refuses twice its
# Image.MAX_IMAGE_PIXELS (89,478,485), this same figure: one limit for photos and rasters. About 13377^2:
# a Sentinel-2 tile (10980^2, 120.6 M) still reads at full resolution; a 60000^2 file without overviews does not.
MAX_PIXELS = 178_956_970

# -- checkpoint keys (torch.save of a dict; loaded with weights_only=True) ---------------------------
CKPT_MODEL = "model"
CKPT_OPTIMIZER = "optimizer"
CKPT_SCHEDULER = "scheduler"
CKPT_GENERATOR = "generator"
CKPT_TORCH_RNG = "torch_rng"
CKPT_EPOCH = "epoch"
CKPT_HISTORY = "history"
CKPT_CLASSES = "classes"
CKPT_BEST_ACCURACY = "best_accuracy"
CKPT_BANDS = "bands"
CKPT_QAT = "qat"
CKPT_MODEL_NAME = "model_name"  # the registry name the weights were trained as (since the band edge model)
CKPT_PRUNED_FROM = "pruned_from"  # only in a pruned run's best.pt (edgecnn prune)

# -- artifacts (edgecnn export) ---------------------------------------------------------------------
# The one target table: each export target's file suffix and the Python module of its runtime. export/runtimes,
# the sweep and the bench read it; bench/runner.py (one file shipped to a device, no edgecnn imports) keeps
# its own copy, RUNTIMES, and tests/test_bench.py asserts the two agree.
TARGET_SUFFIX = {"executorch": ".pte", "openvino": ".xml", "onnx": ".onnx"}
TARGET_MODULE = {"executorch": "executorch", "openvino": "openvino", "onnx": "onnxruntime"}
TARGETS = tuple(TARGET_SUFFIX)
ARTIFACT_SUFFIXES = tuple(TARGET_SUFFIX.values())
SIDECAR_SUFFIX = ".json"  # model.pte -> model.pte.json
# Sidecar field: every folder the run trained on, as a list of {name, root, bands, mean, std, nodata}, each band
# {name, center_nm, fwhm_nm} (wavelengths null where the recipe named the band only): one entry for a data.root
# run, one per data.sources item in order. The per-source normalisation a sensor the run never saw can be
# interpolated from by wavelength (core.sensors.interpolate_stats); "normalization" stays the artifact's own.
SIDECAR_TRAINING_SOURCES = "training_sources"


def is_run(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / RECIPE).is_file()


def is_qat_run(run: Path) -> bool:
    """A QAT run folder (``edgecnn qat``) has a ``qat.json`` beside its recipe."""
    return (Path(run) / QAT).is_file()


def checkpoint(run: Path, which: str = "best") -> Path:
    """The checkpoint later stages read: ``best.pt`` where it exists (and ``which`` is "best"), else ``last.pt``."""
    run = Path(run)
    return run / BEST if which == "best" and (run / BEST).is_file() else run / LAST


def eval_file(sensor: str) -> str:
    """``eval-<sensor>.json``: ``edgecnn eval`` with data overrides (another folder or sensor), beside the run's
    own ``eval.json``, which stays what the run measured on its own data (the report reads it)."""
    safe = "".join(c if c.isalnum() or c in "+._-" else "_" for c in sensor)
    return f"eval-{safe}.json"


def sidecar_path(artifact: Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def run_recipe_data(run: Path) -> dict | None:
    """A run's recipe as plain data, without validating it or importing torch (None if unreadable).

    For readers that need a field or two (the model's name); stages that
    build a model validate it with ``edgecnn.config``.
    """
    import yaml

    from edgecnn.core.safeyaml import safe_load

    try:
        data = safe_load((Path(run) / RECIPE).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def run_model_name(run: Path) -> str | None:
    """The model a run folder trained, from its recipe (None where it cannot be read)."""
    model = (run_recipe_data(run) or {}).get("model")
    name = model.get("name") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


# -- bench rows (edgecnn bench --json; every driver fills the same fields) ---------------------------
# Every row has these keys, in this order (null when unknown); see docs/contracts.md.
ROW_FIELDS = (
    "name", "kind", "artifact", "sidecar", "run", "model", "target", "precision", "runtime", "runtime_version",
    "runtime_note", "device", "device_desc", "cpu_model", "cores", "governor", "freq_mhz", "temp_c", "board",
    "throttled", "threads", "batch", "warmup", "iters", "input_shape", "latency_ms_p50", "latency_ms_p90",
    "latency_ms_p99", "latency_ms_mean", "latency_ms_min", "latency_ms_std", "cv", "throughput_ips", "peak_rss_mb",
    "size_mb", "ratio_vs_ref", "harness_overhead_pct", "warning", "error", "profile", "timestamp", "edgecnn_version",
)
# Added to the contract's fields: the import's share of peak RSS, and how far apart the rounds' medians are.
# The board's own account of itself (runner.emulation) and the accuracy measured on it (bench/check.py, --check).
BOARD_FIELDS = ("machine", "emulated", "emulation", "check_n", "check_top1_agreement", "check_max_abs_logit_diff",
                "check_mean_abs_logit_diff", "check_accuracy", "check_reference_accuracy", "check_reference",
                "check_error")
EXTRA_FIELDS = ("import_rss_mb", "rounds", "round_medians_ms", "round_p50_spread_pct", *BOARD_FIELDS)
# The instrument's fields (edgecnn/core/stats.py, bench/peak.py): intervals, how they were obtained, the
# heat of each round, and how much of the CPU's arithmetic peak the row reached.
STAT_FIELDS = (
    "latency_ms_p50_ci_low", "latency_ms_p50_ci_high",
    # The floor: the fastest sample (call) of the run, the figure the host's noise moves least (stats.py).
    "latency_ms_floor", "latency_ms_p90_ci_low", "latency_ms_p90_ci_high",
    "latency_ms_p99_ci_low", "latency_ms_p99_ci_high", "ratio_ci_low", "ratio_ci_high", "distinguishable_from_ref",
    "indistinguishable_from", "calls", "samples", "calls_per_sample", "ci_method", "percentile_basis", "stat_notes",
    "warmup_calls", "warmup_s", "warmup_settled", "min_time_s", "cooldown_s", "round_temp_c", "round_freq_mhz",
    "rounds_throttled", "macs", "gmacs_per_s", "peak_gmacs_per_s", "peak_fraction", "peak_isa", "isa",
    "cpu_vendor", "cpu_family", "max_freq_mhz",
    # Adaptive rounds (--precision): the target, the half-width reached, the look it stopped at and why.
    "precision_target_pct", "precision_pct", "look", "stopped_by", "budget_ms",
    # A time budget for the whole bench (pipeline.bench.time_budget_s, --time-budget): its seconds and use.
    "time_budget_s", "bench_seconds",
    # The harness-overhead check with its own interval; judged only when that interval is narrow enough; why its
    # passes stopped: judged, max passes, rounds' time, time budget (null: the host ran no passes).
    "harness_overhead_ci_low", "harness_overhead_ci_high", "harness_overhead_judged", "harness_overhead_stopped_by",
)
DEVICE_FIELDS = ("device_desc", "cpu_model", "cores", "governor", "freq_mhz", "temp_c", "board", "throttled",
                 "machine", "emulated", "emulation",
                 "isa", "cpu_vendor", "cpu_family", "max_freq_mhz")
BENCH_FIELDS = (*ROW_FIELDS, *EXTRA_FIELDS, *STAT_FIELDS)


def blank_bench_row(**values) -> dict:
    """A bench row with every field, null where unknown, then ``values``."""
    row = dict.fromkeys(BENCH_FIELDS)
    row.update(values)
    return row
