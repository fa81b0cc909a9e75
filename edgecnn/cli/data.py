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
    bands: Annotated[Optional[int], typer.Option(min=1, help="bands of the tiff form (R, G, B, NIR for 4, the "
                                                              "default)")] = None,
    sensor: Annotated[Optional[str], typer.Option(
        help="tiff: material scenes (vegetation, water, soil, snow, ...) seen through a sensor's bands, the same "
             "scenes for every sensor at one seed: a preset (sentinel2, landsat8, planetscope, ...) or a pick "
             "(sentinel2:B04,B03,B02,B08); see docs/multispectral.md")] = None,
) -> None:
    """Write the built-in dataset as OUT/train/<class>/* and OUT/val/<class>/* (PNG or GeoTIFF)."""
    from edgecnn.data import write_synth
    from edgecnn.errors import UserError

    if sensor is not None and bands is not None:
        raise UserError(f"--bands {bands} and --sensor {sensor}: the sensor's bands are the files' bands; "
                        f"drop --bands, or pick bands with --sensor {sensor.partition(':')[0]}:NAME,NAME")
    counts = write_synth(out, classes, train_per_class, val_per_class, image_size, seed, format,
                         (bands or 4) if format == "tiff" else 3, sensor)
    print(f"wrote {out}: {counts}")
    if sensor is not None:
        print(f"read it with data.root={out} data.bands={sensor} (reflectance x 10,000, nodata 0)")


@app.command("stats")
def stats(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML or a shipped recipe's name (its training split); "
                                                "or a folder of multi-band files in any layout, with --bands")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value, e.g. data.root=PATH")] = None,
    bands: Annotated[Optional[str], typer.Option(help="a folder's bands, in file order, as data.bands takes them: "
                                                      "a preset (landsat8), a pick (sentinel2:B04,B03) or names "
                                                      "(R,G,B,NIR)")] = None,
    image_size: Annotated[int, typer.Option(min=8, help="a folder: the side files are resized to, as training "
                                                       "would (data.image_size)")] = 64,
    nodata: Annotated[Optional[float], typer.Option(help="a folder: a value that means nodata in every band")] = None,
) -> None:
    """Per-band mean, std and nodata share of the recipe's training split (what training computes
    when the recipe gives no data.mean/std), or of every multi-band file under a folder (no labels needed)."""
    from edgecnn.data.stats import band_stats
    from edgecnn.errors import UserError

    if recipe.is_dir():
        if overrides:
            raise UserError(f"{recipe} is a folder: overrides belong to a recipe; give --bands, --image-size, --nodata")
        if bands is None:
            raise UserError(f"{recipe} is a folder: name its bands in file order, e.g. --bands landsat8 or "
                            f"--bands R,G,B,NIR")
        from edgecnn.core.sensors import BandError, resolve_bands
        from edgecnn.data.raster import RasterSpec
        from edgecnn.data.stats import UnlabelledFiles

        # "R,G,B,NIR" is a list of names; without a comma, or with a colon, it is a preset or a pick from one.
        spec = bands if ":" in bands or "," not in bands else [b for b in bands.split(",") if b.strip()]
        try:
            names = [b.name for b in resolve_bands(spec)]
        except BandError as e:
            raise UserError(f"--bands {bands}: {e}") from None
        train = UnlabelledFiles(recipe, RasterSpec(len(names), image_size, nodata, names=tuple(names)))
        s = band_stats(train, names)
        _print_stats(s, f"{recipe}: {s.images} files, in file values", train, None)
    else:
        if bands is not None:
            raise UserError("--bands is for a folder; a recipe names its bands in data.bands (an override: "
                            "data.bands=landsat8)")
        from edgecnn.config import load_recipe
        from edgecnn.data import build_datasets

        r = load_recipe(recipe, overrides or [])
        names = [s.name for s in r.data.sources] if r.data.sources else [None]
        for name, cfg in zip(names, r.data.source_configs()):  # data.sources: each folder with its own bands
            train = build_datasets(cfg, r.seed, len(cfg.bands))[0]
            s = band_stats(train, cfg.bands, cfg.workers)
            unit = "0..1 (8-bit photos)" if getattr(train, "dtype", "uint8") == "uint8" else "file values"
            where = f"source {name}, " if name else ""
            _print_stats(s, f"{r.name}: {where}training split, {s.images} images, in {unit}", train, cfg.max_pixels)


def _print_stats(s, title: str, train, max_pixels: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
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
        print(f"{skip_summary(skipped, reasons, max_pixels)} (e.g. {skipped[0]}: {reasons.get(skipped[0], '?')})")
    print(f"data.mean={list(s.mean)} data.std={list(s.std)}".replace(" ", "").replace("data.std", " data.std"))
