from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

NOTE = "MACs = multiply-accumulates from torch.utils.flop_counter; the paper's 'FLOPs' column counts the same thing"


def _num_classes(recipe, run: Path | None) -> int:
    """Head size: the trained run's classes, else what the recipe implies."""
    from edgecnn.errors import UserError

    if run is not None:
        from edgecnn.core.contracts import CKPT_CLASSES, checkpoint
        from edgecnn.train.checkpoint import load_checkpoint

        if checkpoint(run).exists():
            return len(load_checkpoint(checkpoint(run))[CKPT_CLASSES])
    d = recipe.data
    if d.classes:
        return len(d.classes)
    if d.num_classes:
        return d.num_classes
    if d.root and (d.root / "train").is_dir():
        from edgecnn.data import list_classes

        return len(list_classes(d.root / "train", None, None))
    raise UserError("cannot tell the number of classes: set data.num_classes (or data.classes) in the recipe")


def _subset_costs(model, bands: list[str], size: int) -> dict:
    """MACs per band subset for band-aware models: with the mask as input, and
    folded into a plain convolution over the present bands where that is exact."""
    from edgecnn.data.bands import judged_subsets, presence_mask, subset_name
    from edgecnn.models.dynamic_conv import band_stem, folded_model
    from edgecnn.models.stats import measure_cost

    if band_stem(model) is None:
        return {}
    out = {}
    for s in judged_subsets(bands):
        mask = presence_mask(s, bands)
        entry = {"macs": measure_cost(model, size, len(bands), mask).macs}
        if band_stem(model).attention_mode == "mask":
            entry["macs_folded"] = measure_cost(folded_model(model, mask), size, len(s)).macs
        out[subset_name(s, bands)] = entry
    return out


def info(
    target: Annotated[Path, typer.Argument(help="recipe YAML or run folder")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted.key=value (recipes only)")] = None,
    input_size: Annotated[Optional[int], typer.Option(min=8, help="image side in pixels (default: the recipe's)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Parameters and MACs of a recipe's or run's model, total and per top-level module."""
    from rich.console import Console
    from rich.table import Table

    from edgecnn.config import load_recipe
    from edgecnn.data.bands import presence_mask
    from edgecnn.models.stats import measure_cost
    from edgecnn.train import run as R

    run = target if R.is_run(target) else None
    recipe = R.read_run_recipe(target) if run else load_recipe(target, overrides or [])
    size = input_size or recipe.data.image_size
    n_classes = _num_classes(recipe, run)
    model = R.build_for_recipe(recipe, n_classes)
    bands = recipe.data.bands
    per_subset = _subset_costs(model, bands, size)
    full = (presence_mask(bands, bands),) if per_subset else ()
    cost = measure_cost(model, size, len(bands), *full)
    result = {
        "model": recipe.model.name, "params": cost.params, "macs": cost.macs, "input_size": size,
        "in_chans": cost.in_chans, "bands": bands, "num_classes": n_classes, "per_module": cost.per_module,
        "per_subset": per_subset, "note": NOTE,
    }
    if json_out:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{recipe.model.name} at {size}x{size}, {n_classes} classes")
    for col in ("module", "params", "MACs"):
        table.add_column(col, justify="left" if col == "module" else "right")
    for name, c in cost.per_module.items():
        table.add_row(name, f"{c['params']:,}", f"{c['macs']:,}")
    table.add_row("[bold]total[/]", f"[bold]{cost.params:,}[/]", f"[bold]{cost.macs:,}[/]")
    console = Console()
    console.print(table)
    if per_subset:
        sub = Table(title="MACs per band subset")
        for col in ("bands", "MACs (mask input)", "MACs folded (plain conv stem)"):
            sub.add_column(col, justify="left" if col == "bands" else "right")
        for name, c in per_subset.items():
            folded = c.get("macs_folded")
            sub.add_row(name, f"{c['macs']:,}", f"{folded:,}" if folded is not None else "n/a (input attention)")
        console.print(sub)
    console.print(f"{cost.params / 1e6:.3f} M parameters, {cost.macs / 1e9:.3f} GMACs. {NOTE}.")
