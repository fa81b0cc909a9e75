"""The one place that imports torchao, executorch and nncf (export and quantize both use it).

These packages move their public functions between releases (PT2E moved
from ``torch.ao`` to ``torchao``, ``XNNPACKQuantizer`` from torch into
executorch), so the paths used with the pinned versions live here and
nowhere else. Each accessor imports lazily, so importing ``edgecnn`` costs
nothing, and turns a missing package into the one-line install hint.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from types import SimpleNamespace

from edgecnn.errors import UserError

INSTALL_HINT = "pip install 'edgecnn[export]'"


def require(*packages: str, purpose: str = "export") -> None:
    """Fail with the install hint when any of ``packages`` (import names) is missing.

    Raises:
        UserError: a package is not installed.
    """
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(f"{purpose} needs {', '.join(missing)}, which is not installed; run {INSTALL_HINT}")


def version(distribution: str) -> str | None:
    """Installed version of a distribution (``None`` when absent), for sidecars."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def executorch() -> SimpleNamespace:
    """ExecuTorch lowering, runtime and delegation report (executorch 1.4)."""
    require("executorch", purpose="the executorch target")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    return SimpleNamespace(
        XnnpackPartitioner=XnnpackPartitioner,
        get_delegation_info=get_delegation_info,
        to_edge_transform_and_lower=to_edge_transform_and_lower,
        Runtime=Runtime,
    )


def pt2e_xnnpack(purpose: str = "int8 for the executorch target") -> SimpleNamespace:
    """PT2E quantization (torchao 0.18) with the XNNPACK quantizer (executorch 1.4): PTQ and QAT."""
    require("torchao", "executorch", purpose=purpose)
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import (
        disable_observer,
        enable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    _only_present_convs()
    return SimpleNamespace(
        XNNPACKQuantizer=XNNPACKQuantizer,
        get_symmetric_quantization_config=get_symmetric_quantization_config,
        prepare_pt2e=prepare_pt2e,
        prepare_qat_pt2e=prepare_qat_pt2e,
        convert_pt2e=convert_pt2e,
        move_exported_model_to_train=move_exported_model_to_train,
        move_exported_model_to_eval=move_exported_model_to_eval,
        enable_observer=enable_observer,
        disable_observer=disable_observer,
    )


def _only_present_convs() -> None:
    """Make torchao's QAT conv-BatchNorm fuse (prepare) and fold (convert) skip convolution kinds the graph lacks.

    Both try conv1d, conv2d, conv_transpose1d and conv_transpose2d on every graph, and each try exports its
    patterns with ``torch.export`` first (3 per kind at each prepare, 12 at convert), three quarters of them
    for kinds none of our models has: a one-epoch QAT run of the test-size quickstart and its export took
    42 s and now 27 s on a 2-core Zen 3 (docs/quantization.md; the same .pte, byte for byte). A
    kind with no node in the graph can match nothing, and the kinds that remain still normalise the
    dequantize nodes, so the graphs are the ones torchao would give (tests/test_qat.py compares them).
    """
    from torchao.quantization.pt2e import qat_utils

    for name in ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper"):
        helper = getattr(qat_utils, name, None)
        if helper is None or hasattr(helper, "original"):  # another torchao; or wrapped already
            continue

        def skipping(m, conv_fn, *args, _helper=helper, **kwargs):
            if not any(getattr(n.target, "_opname", None) == conv_fn.__name__ for n in m.graph.nodes):
                return m
            return _helper(m, conv_fn, *args, **kwargs)

        skipping.original = helper  # also marks it wrapped
        setattr(qat_utils, name, skipping)


def nncf():
    """The nncf package (3.4): ``nncf.quantize`` and ``nncf.Dataset``."""
    require("nncf", "openvino", purpose="int8 for the openvino target")
    import logging

    import nncf as _nncf

    # NNCF logs every ignored node at INFO (a page per export once layers are kept in float);
    # the sidecar records those layers, so only its warnings are shown.
    _nncf.set_log_level(logging.WARNING)
    return _nncf


def nncf_range_estimators():
    """nncf's ``RangeEstimatorParametersSet`` (the activation range presets; not re-exported by ``nncf``)."""
    nncf()
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return RangeEstimatorParametersSet


def nncf_torch() -> SimpleNamespace:
    """NNCF on PyTorch models (3.4): quantize, save/restore the inserted quantizers, strip them.

    NNCF's fake-quantize functions come from a C++ extension it compiles on
    first use (minutes, a compiler and ninja; on a busy 2-core machine the
    build outran NNCF's 60 s load timeout and left a lock file behind). Its
    pure-PyTorch reference functions compute the same forward and backward;
    they are installed in the extension's place, uncompiled (NNCF would wrap
    them in ``torch.compile``, which recompiles for every tensor shape).
    """
    require("nncf", "openvino", purpose="qat for openvino")
    import nncf as _nncf
    import nncf.torch as _nncf_torch
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization import extensions
    from nncf.torch.quantization.reference import torch_executor

    reference = SimpleNamespace(Quantize_forward=torch_executor.forward, Quantize_backward=torch_executor.backward)
    for namespace in (extensions.QuantizedFunctionsCPU, extensions.QuantizedFunctionsCUDA):
        if isinstance(namespace, extensions.ExtensionNamespace):  # without a GPU the CUDA one is a stub
            namespace._loaded_namespace = reference
    return SimpleNamespace(
        nncf=_nncf,
        get_config=_nncf_torch.get_config,
        load_from_config=_nncf_torch.load_from_config,
        strip=_nncf_torch.strip,
        get_hook_storage=get_hook_storage,
    )
