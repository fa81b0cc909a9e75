from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def eval_run(
    run: Annotated[Path, typer.Argument(help="run folder written by edgecnn train")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="data.root=DIR data.bands=BANDS (optionally data.nodata=V): evaluate on another folder with the same class "
             "folders, e.g. another sensor's files (bands matched by name or wavelength, docs/multispectral.md)"),
    ] = None,
    channels: Annotated[Optional[str], typer.Option(
        help="band subset to evaluate, e.g. RG (missing bands zero-filled), or 'all' for every subset")] = None,
    which: Annotated[str, typer.Option(help="checkpoint: best or last")] = "best",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Evaluate a run on its validation split (per band subset for band-robust runs, per source for a run over
    data.sources), or on another folder given as data.root=DIR data.bands=...; writes RUN/eval.json."""
    from rich.console import Console

    from edgecnn.errors import UserError
    from edgecnn.quantize.qat import evaluate_any
    from edgecnn.train.evaluate import paper_table

    if which not in ("best", "last"):
        raise UserError(f"--which {which!r}: choose best or last")
    sensor = _sensor(overrides or [])
    if sensor is not None and channels is not None:
        raise UserError("--channels with data.root: the other folder's bands are matched to the run's; drop one")
    result = evaluate_any(run, which, channels, sensor)  # a QAT run: its fake-quantized model
    if json_out:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(paper_table([result], title=f"{run} ({result['images']} val images, epoch {result['epoch']})"))
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
    if result.get("sensor"):
        matched = ", ".join(f"{t}->{r or '-'}" for t, r in result["sensor"]["band_match"].items())
        console.print(f"on {result['sensor']['root']}: bands {matched}; zero-filled: "
                      f"{', '.join(result['sensor']['zero_filled']) or 'none'}", markup=False, highlight=False)
    console.print("MACs are multiply-accumulates (the paper's 'FLOPs' column counts the same thing).")
    if result.get("skipped"):
        console.print(f"{result['skipped']['summary']} of the val split (listed in {run}/eval.json)",
                      markup=False, highlight=False)


def _sensor(words: list[str]) -> dict | None:
    """``data.root=DIR data.bands=...`` words as ``evaluate_run``'s ``sensor`` (None without words)."""
    from edgecnn.config.load import parse_overrides
    from edgecnn.errors import UserError

    if not words:
        return None
    given = parse_overrides(words)
    allowed = {"data.root", "data.bands", "data.nodata"}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise UserError(f"eval takes {', '.join(sorted(allowed))}, not {unknown[0]}; the rest is the run's recipe")
    if "data.root" not in given or "data.bands" not in given:
        raise UserError("evaluating on another folder needs data.root=DIR and data.bands=... (its files' bands)")
    return {"root": given["data.root"], "bands": given["data.bands"], "nodata": given.get("data.nodata")}
