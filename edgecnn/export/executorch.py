"""ExecuTorch target: a ``.pte`` program with the XNNPACK delegate.

``torch.export`` -> (INT8: PT2E with ``XNNPACKQuantizer``, then export again)
-> ``to_edge_transform_and_lower`` with ``XnnpackPartitioner`` -> ``to_executorch``.
Ops XNNPACK cannot take stay on ExecuTorch's portable kernels; the sidecar
records which (``delegation``), because each one is a slow spot on a device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.export.artifact import Runner, export_failed, temp_names, torch_export
from edgecnn import backends
from edgecnn.core.progress import say
from edgecnn.files import native_stderr_to

NAME = "executorch"
SUFFIX = ".pte"
REQUIRES = ("executorch",)  # import names
REQUIRES_INT8 = ("torchao",)


def runtime() -> dict:
    return {"name": "executorch", "version": backends.version("executorch")}


def companions(path: Path) -> list[Path]:
    """None: the artifact is one file."""
    return []


def delegation_summary(graph_module) -> dict:
    """What XNNPACK took and what it left on portable kernels, from ``get_delegation_info``.

    ``getitem`` nodes are left out of the counts: they only unpack the tuples a
    delegate call (or LayerNorm) returns and compute nothing.
    """
    info = backends.executorch().get_delegation_info(graph_module)
    ops = {op: b for op, b in sorted(info.delegation_by_operator.items()) if op != "getitem"}
    outside = {op: b.non_delegated for op, b in ops.items() if b.non_delegated}
    return {
        "backend": "XnnpackBackend",
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "delegated_nodes": sum(b.delegated for b in ops.values()),
        "nodes_outside": sum(outside.values()),
        "ops_outside": outside,
    }


def export(graph, path: Path, int8: bool, calibration: list, quantized: tuple | None = None,
           float_layers: tuple[str, ...] = ()) -> dict:
    """Write ``graph`` (a ``Deployable``) to ``path`` as a ``.pte``.

    LayerNorms are rewritten with ops XNNPACK takes (``delegable.for_xnnpack``)
    and kept in float by INT8, so the whole model runs inside the delegate.

    Args:
        quantized: ``(module, quantization section)`` of a model quantized already
            (QAT: ``convert_pt2e`` with the learned scales); exported as it is.
        float_layers: names of ``graph.module``'s layers INT8 leaves in float (the accuracy budget).

    Returns:
        The target's sidecar sections: ``export``, ``quantization`` (``None`` for fp32), ``delegation``.

    Raises:
        UserError: executorch or torchao missing, or the model does not export or lower.
    """
    from edgecnn.quantize.delegable import KEEP_FLOAT, for_xnnpack
    from edgecnn.quantize import ptq

    et = backends.executorch()
    sections: dict = {
        "export": {"exporter": "torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch"},
        "quantization": None,
    }
    if quantized is not None:  # QAT: converted already, with the scales it learned
        module, sections["quantization"] = quantized
    else:
        module = for_xnnpack(graph.module)
        if int8:
            say(f"quantizing (PT2E, calibrating on {len(calibration)} images)")
            try:
                head = (graph.head,) if graph.head else ()  # the classifier stays float (Deployable.head)
                module, sections["quantization"] = ptq.pt2e_xnnpack(module, graph.example, calibration,
                                                                    (*graph.keep_float, *KEEP_FLOAT),
                                                                    (*head, *float_layers))
            except Exception as e:
                raise export_failed("executorch int8", "quantizing with PT2E (XNNPACKQuantizer)", e) from None
    say("torch.export")
    program = torch_export(module, graph.example)
    try:
        say("lowering to XNNPACK")
        edge = et.to_edge_transform_and_lower(program, partitioner=[et.XnnpackPartitioner()])
        sections["delegation"] = delegation_summary(edge.exported_program().graph_module)
        say("writing the ExecuTorch program")
        buffer = edge.to_executorch().buffer
    except Exception as e:
        raise export_failed("executorch export", "lowering to XNNPACK", e) from None
    with temp_names([path]) as (tmp,):
        tmp.write_bytes(buffer)
    return sections


def load(path: Path, config: dict | None = None) -> Runner:
    """Open a ``.pte`` with the ExecuTorch runtime (``executorch.runtime.Runtime``).

    Args:
        config: unused; ExecuTorch's Python runtime has no per-program settings.
    """
    import torch

    # cpuinfo's native lines ("Failed to open midr file", ...) go to a log beside the artifact, not the terminal.
    with native_stderr_to(Path(path).with_name(Path(path).name + ".log")):
        method = backends.executorch().Runtime.get().load_program(Path(path)).load_method("forward")

    def run(inputs):
        outputs = method.execute([torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in inputs])
        # The output tensor is the method's own buffer, overwritten by the next call: copy it.
        return outputs[0].numpy().copy()

    return run
