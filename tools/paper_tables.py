"""Regenerate the paper's Tables 1-4 with our MACs and latency columns, the paper's figures beside ours.

    python tools/paper_tables.py --data ~/data/imagenet-mini [--out runs/paper] [overrides...]
    python tools/paper_tables.py --smoke                     # built-in dataset, minutes on a laptop

Each model is one shipped recipe, run with ``edgecnn run`` (train, eval,
export ExecuTorch INT8, bench on this machine; a finished stage is skipped, so
an interrupted table resumes):

    Table 1  ResNet-34 vs DynamicConv2D, RGB, 96x96     recipes/resnet34_96.yaml, recipes/resnet34_dynconv.yaml,
                                                        recipes/resnet34_dynconv_mask.yaml (ours: folded stem)
    Table 2  DynamicConv2D per band subset              the same DynamicConv2D runs' eval.json
    Table 3  ResNet-34 vs CNN + Self-Attention, 224     recipes/resnet34.yaml, recipes/cnn_attn.yaml
    Table 4  with vs without attention, 224             recipes/cnn_attn.yaml, recipes/cnn.yaml

``--data`` points every recipe at an ImageNet-mini folder (train/<class>/,
val/<class>/). ``--smoke`` trains on the built-in synthetic dataset at a small
size for one epoch instead: it checks the whole procedure, and its accuracies
mean nothing next to the paper's. The tables go to the terminal and to
``OUT/tables.md``. Uses only the edgecnn CLI and the files its stages write.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# (run name, label, recipe, export items) per model; recipes are the shipped ones.
INT8_ET = "[{target: executorch, int8: ptq}]"
MODELS = {
    "resnet34_96": ("ResNet-34 (baseline)", "recipes/resnet34_96.yaml", INT8_ET),
    "dynconv_96": ("DynamicConv2D (paper: image attention)", "recipes/resnet34_dynconv.yaml", INT8_ET),
    "dynconv_mask_96": ("DynamicConv2D (ours: mask attention, folded for RGB)",
                          "recipes/resnet34_dynconv_mask.yaml", "[{target: executorch, int8: ptq, channels: RGB}]"),
    "resnet34_224": ("ResNet-34", "recipes/resnet34.yaml", INT8_ET),
    "cnn_attn_224": ("CNN + Self-Attention", "recipes/cnn_attn.yaml", INT8_ET),
    "cnn_224": ("CNN (no attention)", "recipes/cnn.yaml", INT8_ET),
}
TABLES = [
    ("Table 1: ResNet-34 vs DynamicConv2D, RGB input, 96x96", ["resnet34_96", "dynconv_96", "dynconv_mask_96"]),
    ("Table 3: ResNet-34 vs CNN + Self-Attention, 224x224", ["resnet34_224", "cnn_attn_224"]),
    ("Table 4: ablation, with vs without self-attention, 224x224", ["cnn_attn_224", "cnn_224"]),
]
# The paper's own figures (accuracy, precision, recall, F1 in %, FLOPs as printed = MACs, params).
PAPER = {
    "resnet34_96": (20.44, 26.80, 20.44, 18.75, "673,554,432", "21.8M"),
    "dynconv_96": (25.56, 31.06, 25.56, 24.19, "2,623,360,963", ""),
    "resnet34_224": (74.00, 74.55, 74.00, 73.54, "3.67 G", "21.8M"),
    "cnn_attn_224": (71.33, 73.07, 71.33, 70.74, "2.42 G", "1.24M"),
    "cnn_224": (65.78, 66.72, 65.78, 64.80, "", ""),
}
PAPER_TABLE2 = {  # DynamicConv2D per band subset
    "RGB": (25.56, 31.06, 25.56, 24.19), "RG": (23.11, 27.84, 23.11, 21.24), "RB": (20.67, 25.55, 20.67, 18.77),
    "GB": (20.89, 23.13, 20.89, 18.55), "R": (9.78, 14.04, 9.78, 8.10), "G": (11.56, 21.01, 11.56, 9.91),
    "B": (8.44, 10.54, 8.44, 7.06),
}
# --smoke: the built-in dataset, small images, one epoch, a short bench.
SMOKE = ["data.source=synth", "data.root=null", "data.num_classes=5", "data.classes=null", "data.train_per_class=16",
         "data.val_per_class=8", "data.workers=0", "train.epochs=1", "train.batch_size=16",
         "pipeline.bench.iters=5", "pipeline.bench.warmup=1", "pipeline.bench.rounds=1", "pipeline.calib=16"]
SMOKE_SIZE = {"96": 32, "224": 64}


def edgecnn(*args: str) -> None:
    env = dict(os.environ, COLUMNS="160")
    proc = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"edgecnn {' '.join(args)} failed:\n{proc.stderr.strip()}")


def run_model(name: str, out: Path, data: Path | None, smoke: bool, overrides: list[str]) -> Path:
    label, recipe, export = MODELS[name]
    more = [f"data.root={data}"] if data else []
    if smoke:
        more = [*SMOKE, f"data.image_size={SMOKE_SIZE[name.rsplit('_', 1)[1]]}"]
    run = out / name
    print(f"{name}: edgecnn run {recipe} -> {run}", flush=True)
    edgecnn("run", recipe, *more, "pipeline.stages=[train, export, bench]", f"pipeline.export={export}",
            *overrides, "--out", str(run))
    return run


def read(run: Path) -> tuple[dict, dict | None]:
    """eval.json, and the ExecuTorch artifact's bench row."""
    ev = json.loads((run / "eval.json").read_text())
    bench = run / "bench.json"
    rows = json.loads(bench.read_text())["rows"] if bench.is_file() else []
    row = next((r for r in rows if r["kind"] == "artifact" and r["latency_ms_p50"]), None)
    return ev, row


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def model_table(title: str, names: list[str], results: dict) -> str:
    head = ("| model | Accuracy | Precision | Recall | F1-score | MACs | Params | ET INT8 p50 (ms) | eager fp32 p50 (ms) "
            "| paper: Accuracy | Precision | Recall | F1-score | FLOPs | Params |")
    lines = [f"### {title}", "", head, "|" + "---|" * 15]
    for name in names:
        ev, row, eager = results[name]
        paper = PAPER.get(name)
        theirs = [f"{v:.2f}%" for v in paper[:4]] + [paper[4] or "—", paper[5] or "—"] if paper else ["—"] * 6
        lines.append("| " + " | ".join([
            MODELS[name][0], pct(ev["accuracy"]), pct(ev["precision"]), pct(ev["recall"]), pct(ev["f1"]),
            f"{ev['macs']:,}", f"{ev['params'] / 1e6:.3f}M",
            f"{row['latency_ms_p50']:.2f}" if row else "—", f"{eager['latency_ms_p50']:.2f}" if eager else "—",
            *theirs]) + " |")
    return "\n".join(lines)


def subset_table(name: str, ev: dict) -> str:
    lines = [f"### Table 2: {MODELS[name][0]} per band subset (missing bands zero-filled)", "",
             "| bands | Accuracy | Precision | Recall | F1-score | paper: Accuracy | Precision | Recall | F1-score |",
             "|" + "---|" * 9]
    for subset, m in ev.get("subsets", {}).items():
        paper = PAPER_TABLE2.get(subset)
        theirs = [f"{v:.2f}%" for v in paper] if paper else ["—"] * 4
        lines.append("| " + " | ".join([subset, pct(m["accuracy"]), pct(m["precision"]), pct(m["recall"]),
                                         pct(m["f1"]), *theirs]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="ImageNet-mini folder (train/<class>/, val/<class>/)")
    ap.add_argument("--smoke", action="store_true", help="the built-in dataset, small and short: checks the procedure")
    ap.add_argument("--out", type=Path, default=Path("runs/paper"))
    ap.add_argument("--models", help=f"comma-separated subset of {','.join(MODELS)} (default all)")
    ap.add_argument("overrides", nargs="*", help="dotted.key=value applied to every run")
    args = ap.parse_args()
    if not args.smoke and args.data is None:
        ap.error("give --data ~/data/imagenet-mini, or --smoke for the built-in dataset")
    if args.data is not None and not (args.data.expanduser() / "train").is_dir():
        ap.error(f"--data {args.data}: no train/ folder inside; point it at the ImageNet-mini root")

    names = args.models.split(",") if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    results = {}
    for name in names:
        run = run_model(name, args.out, args.data, args.smoke, args.overrides)
        ev, row = read(run)
        bench = json.loads((run / "bench.json").read_text())["rows"]
        eager = next((r for r in bench if r["kind"] == "eager" and r["latency_ms_p50"]), None)
        results[name] = (ev, row, eager)

    parts = ["# The paper's tables, regenerated" + (" (smoke: built-in dataset, 1 epoch; accuracies are not "
                                                    "comparable with the paper's)" if args.smoke else ""),
             "", "MACs are multiply-accumulates (the paper's FLOPs column counts MACs); latency: batch 1, "
             "this machine, 2 threads, `edgecnn bench` (the run's bench.json)."]
    for title, table_names in TABLES:
        if all(n in results for n in table_names):
            parts += ["", model_table(title, table_names, results)]
    for name in ("dynconv_96", "dynconv_mask_96"):
        if name in results:
            parts += ["", subset_table(name, results[name][0])]
    text = "\n".join(parts) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".tables.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, args.out / "tables.md")
    print(text)
    print(f"wrote {args.out / 'tables.md'}")


if __name__ == "__main__":
    main()
