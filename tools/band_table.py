"""Reproduce the band-robustness comparison (issue: DynamicConv2D) with one command.

    python tools/band_table.py [--out runs/bands] [overrides...]

Trains, on the same data and budget (recipes/quickstart_dynconv.yaml plus any
overrides you give):

1. plain ResNet-34 on full RGB, evaluated with missing bands zero-filled;
2. plain ResNet-34 trained on random band subsets, zero-filled;
3. the paper-faithful DynamicConv2D (attention from image and mask);
4. the deployment DynamicConv2D (attention from the mask only: foldable);
5. that model after `edgecnn prune`.

then prints one table with MACs and parameters at 96x96 (the paper's Task A
size) and the accuracy on every band subset. Runs that already exist are
reused, so an interrupted table resumes. Uses only the edgecnn CLI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RECIPE = "recipes/quickstart_dynconv.yaml"
ROWS = [
    # (run name, label, overrides)
    ("resnet34_rgb", "ResNet-34, trained on RGB, zero-fill", ["model.name=resnet34", "train.band_subsets=none"]),
    ("resnet34_subsets", "ResNet-34, band-subset training, zero-fill", ["model.name=resnet34"]),
    ("dynconv", "DynamicConv2D (paper: input attention)", ["model.name=resnet34_dynconv"]),
    ("dynconv_mask", "DynamicConv2D (mask attention, foldable)", ["model.name=resnet34_dynconv_mask"]),
]


def edgecnn(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"edgecnn {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bands"))
    ap.add_argument("overrides", nargs="*", help="dotted.key=value applied to every run")
    args = ap.parse_args()
    table = []
    for name, label, overrides in ROWS + [("dynconv_mask_pruned", "  ... pruned (edgecnn prune --min-share 0.15)", None)]:
        run = args.out / name
        if overrides is not None:  # --resume finishes an interrupted run and is a no-op on a finished one
            resume = ["--resume"] if (run / "last.pt").exists() else []
            print(f"training {name} ...", flush=True)
            edgecnn("train", RECIPE, *overrides, *args.overrides, f"name={name}", "--out", str(run), *resume)
        elif not (run / "prune.json").exists():
            print("pruning ...", flush=True)
            # 0.15: drops the sets that no subset gives more than 15% of its attention
            # (the default 0.05 keeps every set of this model); prune.json has the shares.
            edgecnn("prune", str(args.out / "dynconv_mask"), "--out", str(run), "--min-share", "0.15")
        ev = json.loads(edgecnn("eval", str(run), "--channels", "all", "--json"))
        info = json.loads(edgecnn("info", str(run), "--input-size", "96", "--json"))
        subsets = info["per_subset"]
        if subsets:  # band-aware: the deployed cost per subset (folded where exact)
            macs = [s.get("macs_folded", s["macs"]) for s in subsets.values()]
        else:
            macs = [info["macs"]]
        table.append((label, info["params"], min(macs), max(macs), ev["subsets"]))

    base = table[0][3]
    names = list(table[0][4])
    print(f"\nBuilt-in dataset, {RECIPE} {' '.join(args.overrides)}; MACs at 96x96 (range over subsets as deployed)\n")
    print("| model | params | MACs @96 | vs ResNet-34 | " + " | ".join(names) + " | mean |")
    print("|---|---:|---:|---:|" + "---:|" * (len(names) + 1))
    for label, params, lo, hi, subs in table:
        accs = [subs[n]["accuracy"] for n in names]
        macs = f"{lo / 1e9:.4f} G" if lo == hi else f"{lo / 1e9:.4f}-{hi / 1e9:.4f} G"
        print(f"| {label} | {params / 1e6:.3f} M | {macs} | {100 * (hi / base - 1):+.3f}% | "
              + " | ".join(f"{100 * a:.1f}" for a in accs) + f" | {100 * sum(accs) / len(accs):.1f} |")


if __name__ == "__main__":
    main()
