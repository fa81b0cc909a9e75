from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def export(
    run: Annotated[Path, typer.Argument(help="run folder written by edgecnn train")],
    target: Annotated[str, typer.Option(help="runtime to export for: executorch, openvino or onnx")],
    int8: Annotated[bool, typer.Option("--int8", help="post-training INT8, calibrated on training images")] = False,
    channels: Annotated[Optional[str], typer.Option(
        help="band subset the artifact takes, e.g. RG (folded for resnet34_dynconv_mask, zero-filled "
             "inside the graph otherwise); default all bands")] = None,
    bands: Annotated[Optional[str], typer.Option(
        help="*_wave models: another sensor's bands, as data.bands takes them (planetscope, sentinel2:B04,B03,B02, "
             "R,G,B); the stem is generated for them and folded into a plain model over them")] = None,
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="with --bands: that sensor's folder (train/ and val/ per class) for calibration, parity "
                            "and, by default, its normalisation; needed when the sensor is not the run's")] = None,
    norm: Annotated[Optional[str], typer.Option(
        help="with --bands: files (the sensor's own training split's band and BatchNorm statistics, the "
             "default), stats (its band statistics only) or interpolate (the run's statistics, interpolated by "
             "wavelength)")] = None,
    mask_input: Annotated[bool, typer.Option(
        "--mask-input", help="with --bands: the unfolded artifact for that sensor (image and presence mask, one "
                             "artifact for every subset of its bands) instead of the fold")] = False,
    calib: Annotated[int, typer.Option(min=1, help="calibration images for --int8")] = 256,
    out: Annotated[Optional[Path], typer.Option(
        help="folder for the artifact (default RUN/export), or its path ending in the target's suffix")] = None,
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", min=0, help="with --int8: accuracy budget in points; layers that cost most are kept in float "
                                  "until held-out training images lose at most this much and agree with "
                                  "the float model on 98% of top-1 answers")] = None,
) -> None:
    """Export a run for an edge runtime and check it with that runtime; writes the artifact and a JSON sidecar."""
    from edgecnn.export import export_run

    r = export_run(run, target, int8=int8, channels=channels, calib=calib, out=out, max_drop=max_drop, bands=bands,
                   data_root=data_root, norm=norm, mask_input=mask_input)
    sensor = r.get("sensor") or {}
    for w in sensor.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    p, a, t = r["parity"], r["parity"]["artifact"], r["parity"]["pytorch"]
    runtime = f"{r['runtime']['name']} {r['runtime']['version']}"
    print(f"wrote {r['path']} ({r['size_bytes'] / 1e6:.2f} MB) and {Path(r['sidecar']).name}")
    inputs = ", ".join(f"{i['name']} {i['shape']}" for i in r["inputs"])
    print(f"inputs: {inputs}; bands: {r['band_handling']}")
    if sensor and not sensor["seen_in_training"]:
        n = sensor["normalization"]
        print(f"sensor {sensor['name']} (trained on {sensor['trained_on']['name']}); normalisation: {n['source']}"
              + (f" ({n['folder']}, {n['images']} images)" if "folder" in n else ""))
    print(f"parity ({runtime}, {p['images']} val images): top-1 agreement {p['top1_agreement']:.1%}, "
          f"max |logit diff| {p['max_abs_logit_diff']:.2g}; "
          f"accuracy {a['accuracy']:.1%} (PyTorch {t['accuracy']:.1%}), F1 {a['f1']:.1%} (PyTorch {t['f1']:.1%})")
    if p.get("per_subset"):
        worst = min(p["per_subset"], key=lambda k: p["per_subset"][k]["top1_agreement"])
        print(f"per band subset ({len(p['per_subset'])}): top-1 agreement {p['min_subset_agreement']:.1%} at the "
              f"worst ({worst}); every subset's in the sidecar's parity.per_subset")
    c = p.get("changed") or {}
    if c.get("answers"):
        print(f"changed answers: {c['answers']} of {c['pairs']} judged, the widest PyTorch's top two "
              f"{c['widest_margin']:.2g} logits apart; {c['near_ties']:.1%} of the judged are near ties "
              f"(top two within {c['near_tie']:g})")
    groups = p.get("per_file_group") or {}
    if len(groups) > 1:
        print("per lost-band group of the files: " + "; ".join(
            f"{k} ({g['images']}): {g['top1_agreement']:.1%}" for k, g in groups.items()))
    d = r.get("delegation")
    if d:
        outside = ", ".join(f"{op} x{n}" for op, n in d["ops_outside"].items()) or "nothing"
        print(f"XNNPACK: {d['delegated_subgraphs']} delegated subgraphs; left on portable kernels: {outside}")
    q = r.get("quantization") or {}
    if q.get("pre_process_error"):
        print(f"warning: onnxruntime pre-processing failed, quantized the plain graph: {q['pre_process_error']}")
    b = r.get("accuracy_budget")
    if b:
        kept = ", ".join(b["float_layers"]) or "none"
        print(f"accuracy budget {b['max_drop_points']:g} points: PTQ lost {b['before']['drop_points']:.2f} on "
              f"held-out training images; kept in float: {kept} "
              f"({b['float_params_fraction']:.1%} of weights) -> {b['after']['drop_points']:.2f} "
              f"({b['after']['top1_agreement']:.1%} agreement); validation drop {b['val_drop_points']:.2f} "
              f"({len(b['probes'])} exports, {b['seconds']:.0f} s)")
        if not b["met"]:
            print(f"warning: {b['note']}")
        elif not b["val_within_budget"]:
            print(f"warning: on the validation split the drop ({b['val_drop_points']:.2f} points) or the top-1 "
                  f"agreement ({p['top1_agreement']:.1%}) misses the budget met on held-out training images; "
                  "try edgecnn qat for this target")
