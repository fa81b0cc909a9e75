"""What every export target shares: the artifact record, its file names, atomic writes, the sidecar.

An artifact is one model file a runtime opens (``.pte``, ``.xml``, ``.onnx``),
plus any companion files (OpenVINO's ``.bin``), plus a JSON sidecar
``<artifact>.json`` that says everything a later stage needs to feed it:
input shapes and names, band subset, normalisation, class names, and a parity
record measured with the real runtime. ``predict`` and ``bench`` read only
these files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgecnn.core import contracts as C
from edgecnn.errors import UserError
from edgecnn.files import atomic_write_text

# A loaded artifact: float32 arrays in the sidecar's input order (batch 1) -> logits [1, classes].
Runner = Callable[[Sequence[np.ndarray]], np.ndarray]


class Target(Protocol):
    """What each target module (``executorch``, ``openvino``, ``onnx``) provides.

    ``export`` writes the artifact atomically to ``path`` (and its companions)
    and returns the target-specific part of the sidecar (``quantized``: a model
    quantized already by QAT, exported as it is); ``load`` opens an
    artifact with the target's runtime and returns a ``Runner``; ``runtime``
    names the runtime, its version and the settings ``load`` uses by default.
    """

    NAME: str
    SUFFIX: str
    REQUIRES: tuple[str, ...]  # import names the target needs
    REQUIRES_INT8: tuple[str, ...]  # and what --int8 adds

    def companions(self, path: Path) -> list[Path]: ...

    def export(self, graph: "Deployable", path: Path, int8: bool, calibration: list,  # noqa: F821
               quantized: tuple | None = None) -> dict: ...

    def load(self, path: Path, config: dict | None = None) -> Runner: ...

    def runtime(self) -> dict: ...


@dataclass
class Artifact:
    """An exported model on disk and its sidecar record.

    Attributes:
        path: the file a runtime opens.
        files: every file the artifact consists of (``path`` first).
        sidecar: the record written to ``sidecar_path``.
    """

    path: Path
    files: list[Path] = field(default_factory=list)
    sidecar: dict = field(default_factory=dict)

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.path)

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def artifact_name(model: str, target: str, precision: str, subset: str | None, suffix: str,
                  max_drop: float | None = None) -> str:
    """``cnn_attn-executorch-int8.pte``; ``...-RG.onnx`` for a band subset; ``...-maxdrop1.0.pte`` with an
    accuracy budget (``--max-drop 1``).

    Commas (``R,G,NIR``) become ``+`` so the name stays one shell word. The budget is
    written exactly (Python's shortest repr of the float: ``0.5``, ``1.0``, ``1e-05``), so a
    budgeted artifact never takes the plain PTQ one's name, nor that of another budget.
    """
    tail = f"-{subset.replace(',', '+')}" if subset else ""
    budget = f"-maxdrop{float(max_drop)!r}" if max_drop is not None else ""
    return f"{model}-{target}-{precision}{tail}{budget}{suffix}"


def sidecar_path(path: Path) -> Path:
    return C.sidecar_path(path)  # the one rule, torch-free


def read_sidecar(path: Path) -> dict:
    """The sidecar of an artifact (pass the artifact or the ``.json``).

    Raises:
        UserError: no sidecar, or not JSON.
    """
    path = Path(path)
    side = path if path.suffix == ".json" else sidecar_path(path)
    if not side.is_file():
        raise UserError(f"{path}: no sidecar {side.name} next to it; export it with edgecnn export")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{side}: damaged (not valid JSON); export the artifact again") from None


def max_drop_of(path: Path) -> float | None:
    """The accuracy budget (``--max-drop`` points) an artifact was exported with, from its sidecar; None for none.

    Raises:
        UserError: no sidecar, or not JSON.
    """
    return (read_sidecar(path).get("accuracy_budget") or {}).get("max_drop_points")


# What predict and bench read from a sidecar; a file without them was not written by edgecnn export.
REQUIRED_KEYS = ("artifact", "files", "inputs", "bands", "input_bands", "image_size", "normalization", "classes")


def check_sidecar(path: Path, sidecar: dict) -> None:
    """Make sure ``sidecar`` describes the artifact at ``path`` as it is on disk now.

    Raises:
        UserError: keys missing, the sidecar names another file, or a file's size
            differs from the one recorded at export (overwritten or truncated since).
    """
    path = Path(path)
    side = sidecar_path(path)
    missing = [k for k in REQUIRED_KEYS if k not in sidecar] if isinstance(sidecar, dict) else list(REQUIRED_KEYS)
    if missing:
        raise UserError(f"{side}: damaged (no {', '.join(missing)}); export the artifact again")
    if sidecar["artifact"] != path.name:
        raise UserError(f"{side} describes {sidecar['artifact']}, not {path.name}; "
                        "keep each artifact with its own sidecar, or export again")
    for name, size in sidecar["files"].items():
        f = path.parent / name
        if not f.is_file():
            raise UserError(f"{path}: its file {name} is missing; export the artifact again")
        if f.stat().st_size != size:
            raise UserError(f"{f} is {f.stat().st_size} bytes but its sidecar says {size}: the file changed "
                            "after export; export it again so the sidecar matches")


@contextmanager
def temp_names(final: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary siblings for ``final`` paths, sharing one stem; renamed over ``final`` on success.

    Exporters write to the temporary names; when the block ends without an
    error the files are renamed in the given order with ``os.replace`` (atomic
    on one file system), so a killed export never leaves a half-written
    artifact under its real name. List companions first (OpenVINO: ``.bin``
    before ``.xml``): the file a runtime opens then appears last, when
    everything it refers to is in place. On error the temporaries are removed.

    The shared stem matters for OpenVINO, which finds the ``.bin`` by the ``.xml``'s stem.
    """
    folder = Path(final[0]).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, stem = tempfile.mkstemp(dir=folder, prefix=f".{Path(final[0]).stem}.", suffix=".tmp")
    os.close(fd)
    temps = [Path(f"{stem}{Path(f).suffix}") for f in final]
    try:
        yield temps
        for tmp, dst in zip(temps, final):
            with open(tmp, "rb+") as f:  # on disk before the rename makes it visible
                os.fsync(f.fileno())
            os.replace(tmp, dst)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        Path(stem).unlink(missing_ok=True)


def write_sidecar(artifact: Artifact) -> None:
    atomic_write_text(artifact.sidecar_path, json.dumps(artifact.sidecar, indent=2) + "\n")


from edgecnn.errors import export_failed  # noqa: E402 (the one-line failure of any exporter)


def torch_export(module, example: tuple) -> "torch.export.ExportedProgram":  # noqa: F821
    """``torch.export.export`` with its failures turned into one-line ``UserError`` s.

    Raises:
        UserError: the model cannot be captured as a graph.
    """
    import torch

    try:
        return torch.export.export(module, example)
    except Exception as e:  # torch raises many types here; all mean "this model does not export"
        raise export_failed("export", "capturing the model graph (torch.export)", e,
                            fix="every target starts from torch.export; change the model code it names") from None
