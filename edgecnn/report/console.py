"""What ``edgecnn report`` (and the report stage of ``edgecnn run``) prints: the headline and its notes."""

from __future__ import annotations

from pathlib import Path
from rich import box
from rich.table import Table


def print_result(console, result: dict) -> None:
    """The report's headline table, its notes about missing pieces, and where its files are (also `edgecnn run`)."""
    head = result["headline"]
    table = Table(title=f"accuracy vs cost: {len(head['rows'])} results", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    short = {"Accuracy": "Acc", "F1-score": "F1", "p50 (ms)": "p50 ms", "Floor (ms)": "floor",
             "Size (MB)": "MB"}  # 80 columns
    for col in head["columns"]:
        # Names and figures are never folded; a long device URL gives way.
        table.add_column(short.get(col, col), justify="left" if col in ("Model", "Role", "Device") else "right",
                         no_wrap=col != "Device", overflow="fold", min_width=6 if col == "Device" else None)
    for cells in head["rows"]:
        table.add_row(*cells)
    console.print(table)
    for note in result["notes"]:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)
    console.print(f"wrote {Path(result['out']) / 'report.html'} and {len(result['files']) - 1} more files "
                  f"in {result['out']}", markup=False, highlight=False)
