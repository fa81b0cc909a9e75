"""Open any artifact with its own runtime: the entry point ``predict`` and ``bench`` share.

Each target module has a ``load(path, config) -> Runner``; this module picks
the module from the artifact's suffix and passes the runtime settings its
sidecar recorded (OpenVINO's precision hint), so an artifact runs as it did
when its parity was measured.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.core.contracts import TARGET_SUFFIX, TARGETS
from edgecnn.errors import UserError
from edgecnn.export.artifact import check_sidecar, read_sidecar

if TYPE_CHECKING:
    from edgecnn.export.artifact import Target

SUFFIXES = {suffix: target for target, suffix in TARGET_SUFFIX.items()}


def target_module(target: str) -> Target:
    """The module that exports and loads ``target`` (``edgecnn.export.<target>``).

    Raises:
        UserError: not a known target.
    """
    if target not in TARGETS:
        close = difflib.get_close_matches(target, TARGETS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown target '{target}'; {hint}choose one of: {', '.join(TARGETS)}")
    return importlib.import_module(f"edgecnn.export.{target}")


def target_of(path: Path) -> str:
    """The target an artifact file belongs to, from its suffix.

    Raises:
        UserError: not an artifact suffix.
    """
    target = SUFFIXES.get(Path(path).suffix.lower())
    if target is None:
        raise UserError(f"{path}: not an exported model (expected {', '.join(SUFFIXES)}); "
                        "pass a file written by edgecnn export")
    return target


def load_artifact(path: Path, config: dict | None = None):
    """Open an artifact with its runtime.

    Args:
        path: a ``.pte``, ``.xml`` or ``.onnx`` written by ``edgecnn export``.
        config: runtime settings overriding the sidecar's (see each target's ``load``).

    Returns:
        (runner, sidecar): ``runner(inputs)`` takes float32 arrays in
        ``sidecar["inputs"]`` order and returns logits ``[1, classes]``.

    Raises:
        UserError: missing file or sidecar, a sidecar that does not match the file,
            unknown suffix, or the runtime is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; export one with edgecnn export RUN --target ...")
    module = target_module(target_of(path))
    sidecar = read_sidecar(path)
    check_sidecar(path, sidecar)
    if config is None:
        config = sidecar.get("runtime", {}).get("config")
    return module.load(path, config), sidecar
