from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def eval_run(
    run: Annotated[Path, typer.Argument(help="run folder written by edgecnn train")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="data.* settings to evaluate on instead of the run's, e.g. data.root=~/planet data.bands=planetscope: "
             "another sensor (a *_wave model regenerates its stem for it; any other model gets its bands matched "
             "into the run's slots by name or wavelength); the result goes to RUN/eval-<sensor>.json")] = None,
    norm: Annotated[Optional[str], typer.Option(
        help="another sensor's normalisation for a *_wave model: files (its own training split's band statistics "
             "and BatchNorm statistics, the default), stats (its band statistics only) or interpolate (the run's, "
             "interpolated by wavelength)")] = None,
    channels: Annotated[Optional[str], typer.Option(
        help="band subset to evaluate, e.g. RG (missing bands zero-filled), or 'all' for every subset")] = None,
    which: Annotated[str, typer.Option(help="checkpoint: best or last")] = "best",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Evaluate a run on its validation split (per band subset for band-robust runs, per source for a run over
    data.sources), or on another folder given as data.root=DIR data.bands=...; writes RUN/eval.json."""
    from rich.console import Console

    from edgecnn.config.load import parse_overrides
    from edgecnn.core.contracts import EVAL, eval_file
    from edgecnn.errors import UserError
    from edgecnn.quantize.qat import evaluate_any
    from edgecnn.train.evaluate import paper_table

    if which not in ("best", "last"):
        raise UserError(f"--which {which!r}: choose best or last")
    data = parse_overrides(overrides or [])
    result = evaluate_any(run, which, channels, data, norm)  # a QAT run: its fake-quantized model
    sensor = result.get("sensor") or {}  # none for a run over several sources (each is its own)
    for w in sensor.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    seen = "" if sensor.get("seen_in_training", True) else \
        f", sensor {sensor['name']} (trained on {sensor['trained_on']['name']})"
    console.print(paper_table([result], title=f"{run} ({result['images']} val images, epoch {result['epoch']}{seen})"))
    sources = result.get("sources") or {}
    if sources:  # a run over several sensors' folders: each with its own bands
        rows = [{"source": f"{name} ({len(m['bands'])} bands, {m['images']} images)", **m}
                for name, m in sources.items()]
        console.print(paper_table(rows, title="per source", first="source"))
        for name, m in sources.items():
            if m["subsets"]:
                rows = [{"bands": sub, **v} for sub, v in m["subsets"].items()]
                console.print(paper_table(rows, title=f"{name}: per band subset (missing bands zero-filled)",
                                          first="bands"))
    if result["subsets"]:
        rows = [{"bands": name, **m} for name, m in result["subsets"].items()]
        console.print(paper_table(rows, title="per band subset (missing bands zero-filled)", first="bands"))
    if result.get("file_subsets"):
        rows = [{"bands": f"{name} ({m['images']} images)", **m} for name, m in result["file_subsets"].items()]
        console.print(paper_table(rows, title="per band subset the files themselves carry (lost bands masked)",
                                  first="bands"))
    if "band_match" in sensor:  # a model without a wavelength stem on another sensor: its slots
        matched = ", ".join(f"{t}->{r or '-'}" for t, r in sensor["band_match"].items())
        console.print(f"on {sensor['folder']}: bands {matched}; zero-filled: "
                      f"{', '.join(sensor['zero_filled']) or 'none'}", markup=False, highlight=False)
    elif not sensor.get("seen_in_training", True):
        n = sensor["normalization"]
        bn = n.get("batchnorm") or {}
        console.print(f"normalisation: {n['source']}" + (f" ({n['folder']}, {n['images']} images)" if "folder" in n
                                                         else "")
                      + (f"; BatchNorm statistics re-estimated on {bn['images']} of them (AdaBN)"
                         if "images" in bn else ""), markup=False, highlight=False)
    written = run / (eval_file(sensor["name"]) if data else EVAL)
    console.print(f"written to {written}", markup=False, highlight=False)
    console.print("MACs are multiply-accumulates (the paper's 'FLOPs' column counts the same thing).")
    if result.get("skipped"):
        console.print(f"{result['skipped']['summary']} of the val split (listed in {run}/eval.json)",
                      markup=False, highlight=False)
