"""Short model names used in recipes, mapped to builder functions.

Builders take flat keyword arguments (never a config object); ``build_model``
passes each builder only the recipe settings it declares.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from edgecnn.models import dynamic_conv
from edgecnn.models.cnn_attn import CNNAttention
from edgecnn.models.resnet import ResNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def model_names() -> list[str]:
    return sorted(_REGISTRY)


@register("cnn_attn")
def cnn_attn(num_classes: int, in_chans: int = 3, heads: int = 8, dropout: float = 0.0) -> nn.Module:
    """The paper's CNN + Self-Attention model."""
    return CNNAttention(num_classes, in_chans, heads=heads, dropout=dropout)


@register("cnn")
def cnn(num_classes: int, in_chans: int = 3, dropout: float = 0.0) -> nn.Module:
    """The paper's ablation: the same ConvBlocks without the attention block."""
    return CNNAttention(num_classes, in_chans, heads=0, dropout=dropout)


@register("resnet34")
def resnet34(num_classes: int, in_chans: int = 3, layers: tuple[int, ...] = (3, 4, 6, 3)) -> nn.Module:
    """The paper's baseline (``layers``: blocks per stage; other counts give a smaller or deeper ResNet)."""
    return ResNet(tuple(layers), num_classes, in_chans)


register("resnet34_dynconv")(dynamic_conv.resnet34_dynconv)  # paper-faithful: attention from the image
register("resnet34_dynconv_mask")(dynamic_conv.resnet34_dynconv_mask)  # attention from the mask: foldable


def takes_mask(model: nn.Module) -> bool:
    """Band-aware models take a presence mask as a second input: ``model(x, mask)``."""
    return "mask" in inspect.signature(model.forward).parameters


def build_model(name: str, num_classes: int, in_chans: int = 3, **settings: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (``model_names()``).
        num_classes: head size.
        in_chans: input bands.
        **settings: recipe ``model`` settings; those the builder does not take are ignored
            (``heads`` means nothing to ResNet-34).

    Raises:
        KeyError: unknown name (the recipe schema rejects it before this).
    """
    fn = _REGISTRY[name]
    accepted = inspect.signature(fn).parameters
    return fn(num_classes=num_classes, in_chans=in_chans, **{k: v for k, v in settings.items() if k in accepted})
