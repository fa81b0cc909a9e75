from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Datasets: write the built-in synthetic dataset as files; per-band statistics.",
                  no_args_is_help=True)


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(help="folder to create (must not exist or be empty)")],
    classes: Annotated[int, typer.Option(min=2, help="number of classes")] = 10,
    train_per_class: Annotated[int, typer.Option(min=1)] = 200,
    val_per_class: Annotated[int, typer.Option(min=1)] = 50,
    image_size: Annotated[int, typer.Option(min=8)] = 64,
    seed: Annotated[int, typer.Option()] = 0,
    format: Annotated[str, typer.Option(help="png: RGB PNGs; tiff: uint16 GeoTIFFs with nodata 0 and about one "
                                             "image in five with a lost band (needs edgecnn[geo])")] = "png",
    bands: Annotated[int, typer.Option(min=1, help="bands of the tiff form (R, G, B, NIR for 4)")] = 4,
) -> None:
    """Write the built-in dataset as OUT/train/<class>/* and OUT/val/<class>/* (PNG or GeoTIFF)."""
    from edgecnn.data import write_synth

    counts = write_synth(out, classes, train_per_class, val_per_class, image_size, seed, format,
                         bands if format == "tiff" else 3)
    print(f"wrote {out}: {counts}")


@app.command("stats")
def stats(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, or a shipped recipe's name")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value, e.g. data.root=PATH")] = None,
) -> None:
    """Per-band mean, std and nodata share of the recipe's training split (what training computes
    when the recipe gives no data.mean/std)."""
    from rich.console import Console
    from rich.table import Table

    from edgecnn.config import load_recipe
    from edgecnn.data import build_datasets
    from edgecnn.data.stats import band_stats

    r = load_recipe(recipe, overrides or [])
    cfg = r.data
    train = build_datasets(cfg, r.seed, len(cfg.bands))[0]
    s = band_stats(train, cfg.bands, cfg.workers)
    unit = "0..1 (8-bit photos)" if getattr(train, "dtype", "uint8") == "uint8" else "file values"
    table = Table(title=f"{r.name}: training split, {s.images} images, in {unit}")
    for col in ("band", "mean", "std", "nodata pixels", "images with the band lost"):
        table.add_column(col, justify="left" if col == "band" else "right")
    for i, band in enumerate(s.bands):
        table.add_row(band, f"{s.mean[i]:.6g}", f"{s.std[i]:.6g}", f"{s.nodata_share[i]:.2%}",
                      f"{s.lost_share[i]:.2%}")
    Console().print(table)
    skipped = getattr(train, "skipped", [])
    if skipped:
        from edgecnn.data import skip_summary

        reasons = getattr(train, "skip_reasons", {})
        print(f"{skip_summary(skipped, reasons, cfg.max_pixels)} (e.g. {skipped[0]}: {reasons.get(skipped[0], '?')})")
    print(f"data.mean={list(s.mean)} data.std={list(s.std)}".replace(" ", "").replace("data.std", " data.std"))
