"""One way to replace submodules: ``swap``, after torchao's ``_replace_with_custom_fn_if_matches_filter``.

Every rewrite that trades one module for another goes through it: the
XNNPACK LayerNorm (``quantize.delegable``), the stem BatchNorm fold
(``models.deployable``), NNCF's fake-quantizers frozen for export
(``quantize.qat``) and the per-layer fake quantization that ranks layers for
the accuracy budget (``quantize.budget``). It walks the tree once, parent
before children, and does not descend into a module it replaced.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def swap(model: nn.Module, matches: Callable[[nn.Module, str], bool],
         replace: Callable[[nn.Module, str], nn.Module]) -> nn.Module:
    """Replace, in place, every submodule ``m`` named ``name`` with ``replace(m, name)`` where ``matches(m, name)``.

    Args:
        model: the root; it is itself replaced (and the replacement returned) when it matches under the name ``""``.
        matches: ``(module, dotted name)`` -> whether to replace it.
        replace: ``(module, dotted name)`` -> the module to put in its place.

    Returns:
        ``model``, or its replacement.
    """
    return _swap(model, matches, replace, "")


def _swap(module: nn.Module, matches, replace, name: str) -> nn.Module:
    if matches(module, name):
        return replace(module, name)
    for child_name, child in list(module.named_children()):
        new = _swap(child, matches, replace, f"{name}.{child_name}" if name else child_name)
        if new is not child:
            setattr(module, child_name, new)
    return module
