from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def predict(
    artifact: Annotated[Path, typer.Argument(help="a .pte, .xml or .onnx written by edgecnn export")],
    images: Annotated[list[Path], typer.Argument(help="image files (JPEG, PNG, any mode; GeoTIFF, JPEG2000 or .npy for an artifact trained on multi-band files)")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="classes shown per image")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="print a JSON list, one object per image")] = False,
    mask: Annotated[Optional[str], typer.Option(help="mask-input artifacts: one 0/1 per band, e.g. 1,1,0,1; "
                                                "bands marked 0 are treated as lost")] = None,
    bands: Annotated[Optional[str], typer.Option(help="the images' bands (a preset such as planetscope, a pick or "
                                                      "names), checked against the bands the artifact was made for")] = None,
) -> None:
    """Classify image files with an exported model, run by its own runtime (preprocessing from its sidecar)."""
    from edgecnn.export.predict import predict as run_predict

    results = run_predict(artifact, images, top_k, mask, bands)
    if json_out:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['probability']:7.2%}  {t['class']}")
