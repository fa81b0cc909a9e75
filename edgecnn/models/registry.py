"""Short model names used in recipes, mapped to builder functions.

Builders take flat keyword arguments (never a config object); ``build_model``
passes each builder only the recipe settings it declares.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from edgecnn.models.cnn_attn import CNNAttention
from edgecnn.models.dynamic_conv import band_stem, with_dynamic_stem
from edgecnn.models.wave_conv import wave_stem, with_wave_stem
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


# The first convolution of each plain backbone: where a band-robust model puts its DynamicConv2D.
STEMS = {"cnn_attn": "features.0.0", "cnn": "features.0.0", "resnet34": "conv1"}


def _band_robust(base: str, attention: str, doc: str) -> Callable[..., nn.Module]:
    """A builder for ``base`` with a DynamicConv2D first convolution (``attention``: "input" or "mask")."""

    def build(num_classes: int, in_chans: int = 3, num_kernels: int = 4, **settings: Any) -> nn.Module:
        return with_dynamic_stem(build_model(base, num_classes, in_chans, **settings), STEMS[base],
                                 num_kernels, attention)

    build.__doc__ = doc
    return build


# "input": the paper's attention, from the image and the mask. "mask": from the mask alone, so
# for one band subset the stem folds into a plain convolution (``--channels``): the plain model.
register("resnet34_dynconv")(_band_robust("resnet34", "input", "ResNet-34, DynamicConv2D stem (paper)"))
register("resnet34_dynconv_mask")(_band_robust("resnet34", "mask", "ResNet-34, mask-attention DynamicConv2D stem"))
register("cnn_attn_dynconv")(_band_robust("cnn_attn", "input", "CNN + Self-Attention, DynamicConv2D stem"))
register("cnn_attn_dynconv_mask")(_band_robust("cnn_attn", "mask",
                                               "CNN + Self-Attention, mask-attention DynamicConv2D stem: the edge model"))
register("cnn_dynconv_mask")(_band_robust("cnn", "mask", "the ablation (no attention block), mask-attention stem"))


def _wavelength_conditioned(base: str, doc: str) -> Callable[..., nn.Module]:
    """A builder for ``base`` with a WaveConv2D first convolution; its bands are set from the recipe's
    ``data.bands`` (``train.run.build_for_recipe``) or by ``wave_conv.set_bands``."""

    def build(num_classes: int, in_chans: int = 3, wave_context: bool = True, **settings: Any) -> nn.Module:
        return with_wave_stem(build_model(base, num_classes, in_chans, **settings), STEMS[base], context=wave_context)

    build.__doc__ = doc
    return build


# Any sensor with wavelengths: one model per band list, folded into the plain backbone for each.
register("cnn_attn_wave")(_wavelength_conditioned("cnn_attn", "CNN + Self-Attention, wavelength-conditioned stem"))
register("resnet34_wave")(_wavelength_conditioned("resnet34", "ResNet-34, wavelength-conditioned stem"))


def takes_mask(model: nn.Module) -> bool:
    """Band-aware models take a presence mask as a second input: ``model(x, mask)``.

    A DynamicConv2D stem makes a model band-aware; so does a true ``band_aware`` attribute, which
    the QAT forms of such a model carry (``dynamic_conv.MaskRows``, the PT2E graph wrapper
    ``quantize.qat_xnnpack.PT2EModel``): their stem is a ``StaticStem`` or a captured graph.
    """
    return bool(getattr(model, "band_aware", False)) or band_stem(model) is not None or wave_stem(model) is not None


def reads_wavelengths(model: nn.Module) -> bool:
    """The model generates its stem from the bands' wavelengths, so it can be pointed at another sensor."""
    return wave_stem(model) is not None


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
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):  # a band-robust builder passes them on
        settings = {k: v for k, v in settings.items() if k in accepted}
    return fn(num_classes=num_classes, in_chans=in_chans, **settings)
