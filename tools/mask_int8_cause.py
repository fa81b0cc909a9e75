"""Why mask-input INT8 artifacts lost agreement: the same trained run, quantized four ways, parity per band subset.

    python tools/mask_int8_cause.py RUN [--target openvino|onnx] [--calib 64]

RUN is a trained mask-attention DynamicConv2D run (``cnn_attn_dynconv_mask``, ``resnet34_dynconv_mask``).
Each variant is exported with the target's real PTQ and measured with the real runtime on every band
subset of the validation split (``edgecnn.export.parity``):

1. ``in-graph mixing``: the model as trained; the K kernel sets are mixed by the mask's attention inside
   the graph (a MatMul whose output is the convolution's weight), as the first mask-input artifacts were
   (OpenVINO and ONNX quantize that MatMul's output, the kernel, per tensor; ExecuTorch's PT2E cannot
   quantize a computed weight and left the whole stem in float outside the delegate, so it is not a target here).
2. ``static stem, gains INT8``: the mixing moved onto the input (``StaticStem``) but the mixing gains
   quantized per tensor like every other activation.
3. ``static stem, full-band calibration``: gains in float, calibrated on full-band images only.
4. ``static stem (shipped)``: gains in float, calibration cycling through every subset.

Prints one row per variant: the worst subset's and the mean agreement, and the all-bands agreement.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgecnn.data import build_datasets
from edgecnn.export.parity import measure
from edgecnn.export.runtimes import target_module
from edgecnn.models.deployable import Deployable, deployable
from edgecnn.quantize.calibration import calibration_samples
from edgecnn.train import run as R


class _GainsQuantized(Deployable):
    keep_float = property(lambda self: ())


class _FullBandCalibration(Deployable):
    def calibration_inputs(self, x, i):
        return self.inputs_for(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--target", default="openvino", choices=["openvino", "onnx"])
    ap.add_argument("--calib", type=int, default=64)
    args = ap.parse_args()

    recipe, model, classes, _ = R.load_trained(args.run)
    cfg = recipe.data
    train_ds, val_ds, _ = build_datasets(cfg, recipe.seed, len(cfg.bands))
    shipped = deployable(model, cfg.bands, cfg.image_size, None)
    fields = {k: getattr(shipped, k) for k in shipped.__dataclass_fields__}
    variants = {
        "in-graph mixing": Deployable(**{**fields, "module": model.eval()}),
        "static stem, gains INT8": _GainsQuantized(**fields),
        "static stem, full-band calibration": _FullBandCalibration(**fields),
        "static stem (shipped)": shipped,
    }
    module = target_module(args.target)
    print(f"{args.run} ({recipe.model.name}), {args.target} INT8 PTQ, {args.calib} calibration images; "
          f"parity on {len(val_ds)} validation images per band subset\n")
    print("| variant | worst subset | agreement there | mean over subsets | all bands |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="edgecnn-cause-") as work:
        for i, (name, graph) in enumerate(variants.items()):
            calibration = calibration_samples(graph, train_ds, cfg.mean, cfg.std, args.calib, recipe.seed, 0)
            path = Path(work) / f"v{i}{module.SUFFIX}"
            module.export(graph, path, True, calibration)
            p = measure(module.load(path), graph, val_ds, cfg.mean, cfg.std, len(classes), 0)
            per = p["per_subset"]
            worst = min(per, key=lambda k: per[k]["top1_agreement"])
            mean = sum(v["top1_agreement"] for v in per.values()) / len(per)
            print(f"| {name} | {worst} | {per[worst]['top1_agreement']:.1%} | {mean:.1%} | "
                  f"{p['top1_agreement']:.1%} |", flush=True)


if __name__ == "__main__":
    main()
