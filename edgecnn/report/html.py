"""``report.html``: one self-contained page (inline CSS, plots as base64 PNG data URIs,
no scripts, nothing fetched), built with plain strings and ``html.escape``."""

from __future__ import annotations

import base64
from html import escape

from edgecnn.report.tables import GAP

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d2430;
       margin: 0; background: #f6f7f9; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d8dde5; }
p.meta { color: #5b6575; margin: 0 0 8px; }
.scroll { overflow-x: auto; max-width: 100%; width: fit-content; background: #fff; border: 1px solid #d8dde5;
          border-radius: 6px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 5px 6px; border-bottom: 1px solid #e6e9ee; white-space: nowrap; text-align: right;
         vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
th.text, td.text { text-align: left; }
td.wrap { white-space: normal; overflow-wrap: break-word; max-width: 22em; }
td.note { text-align: left; white-space: normal; color: #8a5a00; padding: 0 8px 6px 24px; }
tr.error td.note { color: #b42318; }
tr.failed td { border-bottom: none; }
tr.failed td:first-child { color: #b42318; }
td.gap { color: #a0a8b4; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #d8dde5; border-radius: 6px; padding: 8px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { color: #5b6575; font-size: 12px; margin-top: 4px; }
ul.notes li { margin: 2px 0; }
code { font-size: 12px; background: #eef1f5; padding: 1px 4px; border-radius: 3px; }
.legend { color: #5b6575; font-size: 12px; margin: 6px 0 0; }
"""

TEXT_COLUMNS = {"Model", "Device", "Runtime", "Bands", "Role", "Description", "Settings"}
WRAP_COLUMNS = {"Device", "Description", "Settings"}  # long device URLs, CPU names, runtime settings


def table(table_id: str, columns: list[str], cells: list[list[str]]) -> str:
    """A table; a ``Note`` column becomes a full-width line under its row (an error text is long)."""
    noted = bool(columns) and columns[-1] == "Note"
    shown = columns[:-1] if noted else columns
    head = "".join(f'<th class="text">{escape(c)}</th>' if c in TEXT_COLUMNS else f"<th>{escape(c)}</th>"
                   for c in shown)
    body = []
    for row in cells:
        note = row[-1] if noted else ""
        failed = note.startswith("error: ")
        tds = []
        for col, cell in zip(shown, row):
            cls = " ".join(c for c, on in (("text", col in TEXT_COLUMNS), ("wrap", col in WRAP_COLUMNS),
                                           ("gap", cell == GAP)) if on)
            tds.append(f'<td class="{cls}">{escape(cell)}</td>' if cls else f"<td>{escape(cell)}</td>")
        body.append(f'<tr{" class=failed" if failed else ""}>' + "".join(tds) + "</tr>")
        if note:
            body.append(f'<tr class="note{" error" if failed else ""}"><td class="note" colspan="{len(shown)}">'
                        f"{escape(note)}</td></tr>")
    return (f'<div class="scroll"><table id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def figure(png: bytes, meta: dict) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(meta["title"])}">'
            f'<figcaption>{escape(meta["title"])} ({escape(meta["file"])})</figcaption></figure>')


def page(title: str, created: str, sections: list[tuple[str, str, list[str], list[list[str]]]],
         more: list[tuple[str, str, list[str], list[list[str]]]], plots: list[tuple[bytes, dict]],
         notes: list[str], inputs: list[str]) -> str:
    """The whole page: result tables by role, then ``more`` tables (band subsets, devices), plots, notes, inputs."""
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="meta">written {escape(created)} by <code>edgecnn report</code> from {len(inputs)} files; '
             "accuracy, precision, recall and F1 are measured on the validation split (edge rows: by the "
             "artifact's own runtime at export). MACs are multiply-accumulates, the paper's "
             "&ldquo;FLOPs&rdquo; column. Latency is per image at the bench's batch size.</p>"]
    for table_id, heading, columns, cells in sections:
        parts.append(f"<section><h2>{escape(heading)}</h2>{table(table_id, columns, cells)}</section>")
    if not sections:
        parts.append("<p>No results.</p>")
    parts.append('<p class="legend">— : not measured (run <code>edgecnn bench</code> or '
                 "<code>edgecnn eval</code> for it). vs ref: latency p50 over the reference row's in the same bench.</p>")
    for table_id, heading, columns, cells in more:
        legend = ('<p class="legend">Missing bands are zero-filled, as in the paper\'s Table 2.</p>'
                  if table_id.startswith("bands-") else "")
        parts.append(f"<section><h2>{escape(heading)}</h2>{table(table_id, columns, cells)}{legend}</section>")
    if plots:
        figs = "".join(figure(png, meta) for png, meta in plots)
        parts.append(f'<section><h2>Plots</h2><div class="figures">{figs}</div></section>')
    if notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in notes)
        parts.append(f'<section><h2>Notes</h2><ul class="notes">{items}</ul></section>')
    items = "".join(f"<li><code>{escape(f)}</code></li>" for f in inputs)
    parts.append(f"<section><h2>Inputs</h2><ul>{items}</ul></section>")
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
