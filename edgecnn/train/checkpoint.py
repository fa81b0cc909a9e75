"""Atomic writes and safe loading for checkpoints and run files.

Every file is written to a temporary sibling, flushed to disk, then renamed
over the target: a run killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgecnn.errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code runs from the file).

    Raises:
        UserError: the file is missing, truncated or not an edgecnn checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file; train the run first (edgecnn train RECIPE)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for a damaged zip/pickle
        raise UserError(
            f"checkpoint {path}: cannot be read ({type(e).__name__}); it is damaged, retrain or restore it"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path}: not an edgecnn checkpoint (no 'model' entry)")
    return state
