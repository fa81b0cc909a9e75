"""The one exception type a user is meant to see.

Anything raised as ``UserError`` is printed by the CLI as plain lines (no
traceback) and the process exits with status 2. Every message names the
problem and, where one exists, the fix.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input (recipe, files, flags), not a bug.

    Args:
        *lines: one line per problem; they are printed in order.
    """

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


# -- failures ------------------------------------------------------------------------------

_OURS = Path(__file__).resolve().parent  # edgecnn/


def _model_frame(exc: BaseException) -> str | None:
    """``edgecnn/models/cnn_attn.py:50 (forward)``: the deepest frame of model code the failure passed through.

    Non-strict ``torch.export`` runs the model's Python, so its frames are in the
    traceback, and torch quotes them as ``File "...", line N, in fn``. Model code
    is any file outside the Python installation and outside this package's
    export and quantize code.
    """
    frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(exc.__traceback__)]
    frames += [(m[0], int(m[1]), m[2]) for m in re.findall(r'File "([^"]+)", line (\d+), in (\w+)', str(exc))]
    installed = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    skipped = [*installed, _OURS / "export", _OURS / "quantize"]

    def is_model_code(file: str) -> bool:
        path = Path(file).resolve()
        return not file.startswith("<") and "site-packages" not in path.parts \
            and not any(path.is_relative_to(p) for p in skipped)

    mine = [f for f in frames if is_model_code(f[0])]
    if not mine:
        return None
    file, line, fn = mine[-1]
    path = Path(file).resolve()
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return f"{shown}:{line} ({fn})"


_FIX = "try another --target, or leave out --int8 to see whether quantization causes it"


def export_failed(what: str, stage: str, exc: BaseException, fix: str = _FIX) -> UserError:
    """One line for an exporter's exception: the stage, its first line, the op and model code it names.

    Exporter messages run to pages; the first line names the problem, and the
    op (``aten.xxx``) and the model source line are what a user can act on.
    """
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(first) > 300:
        first = first[:297] + "..."
    parts = [f"{what} failed while {stage}: {first}"]
    op = re.search(r"\b(?:aten|torch\.ops\.aten)[.:]+\w+(?:\.\w+)?", text)
    if op and op.group(0) not in first:
        parts.append(f"op {op.group(0)}")
    where = _model_frame(exc)
    if where:
        parts.append(f"at {where}")
    return UserError("; ".join([*parts, fix]))
