"""Atomic writes and safe loading for checkpoints and run files.

Every file is written to a temporary sibling, flushed to disk, then renamed
over the target: a run killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from edgecnn.core.contracts import CKPT_MODEL
from edgecnn.errors import UserError
from edgecnn.files import atomic_write_bytes, atomic_write_text  # noqa: F401  (run files are written through here)


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
    if not isinstance(state, dict) or CKPT_MODEL not in state:
        raise UserError(f"checkpoint {path}: not an edgecnn checkpoint (no '{CKPT_MODEL}' entry)")
    return state
