"""The band-robust models side by side on the same files: accuracy per band subset and per lost-band group,
params, MACs, INT8 size and INT8 latency.

    python tools/band_table.py [--recipe recipes/quickstart_multispectral.yaml] [--out runs/bands] [overrides...]

Trains (or reuses, resuming an interrupted one) one run per model on the recipe's data with the same
budget (``resnet34_dynconv_mask``, the paper's backbone, and ``cnn_attn_dynconv_mask``, the edge model),
evaluates each on every band subset and on each group of validation files that lost the same bands
themselves, exports each as one ExecuTorch INT8 artifact with the mask input (every subset), and
benches the two artifacts in one ``edgecnn bench`` run (ratios measured together mean something on a
shared machine). Prints a Markdown table stamped with the CPU, the commit and the versions. Uses only
the edgecnn CLI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from stamp import commit, cpu

MODELS = ("resnet34_dynconv_mask", "cnn_attn_dynconv_mask")


def edgecnn(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"edgecnn {' '.join(args)} failed:\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/quickstart_multispectral.yaml")
    ap.add_argument("--out", type=Path, default=Path("runs/bands"))
    ap.add_argument("--bench-budget", type=float, default=60.0, help="seconds for the bench of both artifacts")
    ap.add_argument("overrides", nargs="*", help="dotted.key=value applied to every run")
    args = ap.parse_args()

    rows = {}
    for model in MODELS:
        run = args.out / model
        if not (run / "eval.json").exists() or json.loads((run / "eval.json").read_text()).get("model") != model:
            resume = ["--resume"] if (run / "last.pt").exists() else []
            print(f"training {model} ...", flush=True)
            edgecnn("train", args.recipe, f"model.name={model}", *args.overrides, f"name={model}", "--out", str(run),
                    *resume)
            edgecnn("eval", str(run))
        artifact = run / "export" / f"{model}-executorch-int8.pte"
        side = Path(f"{artifact}.json")
        if not artifact.exists() or "changed" not in json.loads(side.read_text() if side.exists() else "{}").get(
                "parity", {}):  # an artifact from before parity's near-tie figures is made again
            print(f"exporting {model} (ExecuTorch INT8, mask input) ...", flush=True)
            edgecnn("export", str(run), "--target", "executorch", "--int8")
        info = json.loads(edgecnn("info", str(run), "--json"))
        rows[model] = {"eval": json.loads((run / "eval.json").read_text()), "info": info,
                       "sidecar": json.loads(Path(f"{artifact}.json").read_text()), "artifact": artifact}

    print("benching both INT8 artifacts in one run ...", flush=True)
    bench_json = args.out / "bench.json"
    edgecnn("bench", *(str(r["artifact"]) for r in rows.values()), "--threads", "2",
            "--time-budget", str(args.bench_budget), "--json", str(bench_json))
    bench = {Path(r["artifact"]).name: r for r in json.loads(bench_json.read_text())["rows"]}

    first = rows[MODELS[0]]["eval"]
    subsets = list(first["subsets"])
    groups = list(first.get("file_subsets", {}))
    size = first["input_size"]
    side = rows[MODELS[-1]]["sidecar"]
    versions = {"torch": side["source"]["torch"], **{side["runtime"].get("name", "runtime"): side["runtime"].get("version")}}
    print(f"\n{args.recipe} {' '.join(args.overrides)}; {first['bands']} at {size} px; "
          f"{cpu()}, commit {commit()}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + "\n")
    print("| model | params | MACs (model, per subset) | MACs (INT8 artifact, mask input) | INT8 .pte | INT8 p50 ms "
          "| floor ms | parity (worst subset) | changed answers (widest gap) | near ties |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model, r in rows.items():
        b = bench.get(r["artifact"].name, {})
        p = r["sidecar"]["parity"]
        c = p["changed"]
        print(f"| {model} | {r['info']['params'] / 1e6:.3f} M | {r['info']['macs'] / 1e6:.1f} M | "
              f"{r['sidecar']['macs'] / 1e6:.1f} M | "
              f"{r['artifact'].stat().st_size / 1e6:.2f} MB | {_ms(b.get('latency_ms_p50'))} | "
              f"{_ms(b.get('latency_ms_floor'))} | {p.get('min_subset_agreement', p['top1_agreement']):.1%} | "
              f"{c['answers']} of {c['pairs']} ({c['widest_margin']:.2f}) | {c['near_ties']:.1%} |")
    print(f"\nchanged answers: of every judged (image, subset) pair, those whose answer the INT8 artifact changed, and "
          f"the widest gap between PyTorch's top two logits among them; near ties: the pairs whose gap is under "
          f"{side['parity']['changed']['near_tie']:g} (an 8-bit grid flips those, whatever the quantizer)")
    print("\nAccuracy (%) per band subset (the subset's bands present, the rest zero-filled and masked):\n")
    print("| model | " + " | ".join(subsets) + " |")
    print("|---|" + "---:|" * len(subsets))
    for model, r in rows.items():
        print(f"| {model} | " + " | ".join(f"{100 * r['eval']['subsets'][s]['accuracy']:.1f}" for s in subsets) + " |")
    if groups:
        print("\nAccuracy (%) per lost-band group of the validation files (the bands each file carries; images):\n")
        print("| model | " + " | ".join(f"{g} ({first['file_subsets'][g]['images']})" for g in groups) + " |")
        print("|---|" + "---:|" * len(groups))
        for model, r in rows.items():
            fs = r["eval"]["file_subsets"]
            print(f"| {model} | " + " | ".join(f"{100 * fs[g]['accuracy']:.1f}" for g in groups) + " |")


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
