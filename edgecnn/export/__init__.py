"""Export a trained run for an edge runtime: ExecuTorch, OpenVINO or ONNX.

One file per target (``executorch.py``, ``openvino.py``, ``onnx.py``), each
with ``export`` (write the artifact) and ``load`` (run it with the real
runtime); ``artifact.py`` holds what they share (names, atomic writes, the
sidecar); ``runtimes.py`` maps targets to those files and loads an artifact by
its suffix; ``parity.py`` measures an artifact against PyTorch; ``predict.py``
classifies images with an artifact (``edgecnn predict``); ``api.py`` chains
them in ``export_run`` (``models/deployable.py`` picks the graph for a band
subset). Backends, and torch, are imported only inside functions.

    from edgecnn.export import export_run, load_artifact
    record = export_run(Path("runs/quickstart"), "executorch", int8=True)
    run, sidecar = load_artifact(record["path"])
"""

from edgecnn.export.api import export_run
from edgecnn.export.runtimes import TARGETS, load_artifact

__all__ = ["TARGETS", "export_run", "load_artifact"]
