"""The models a recipe can name, and what each can do, without importing torch.

``edgecnn validate`` and the recipe schema read this; ``models/registry.py``
builds the modules, and a test checks that the two list the same names and
capabilities. A new model is added in both places.
"""

from __future__ import annotations

# name -> (takes a band-presence mask as a second input, what it is)
MODELS: dict[str, tuple[bool, str]] = {
    "cnn_attn": (False, "the paper's CNN + Self-Attention model"),
    "cnn": (False, "the paper's ablation: the same ConvBlocks without the attention block"),
    "resnet34": (False, "the paper's baseline ResNet-34"),
    "resnet34_dynconv": (True, "ResNet-34 with a DynamicConv2D stem, kernel attention from the image"),
    "resnet34_dynconv_mask": (True, "ResNet-34 with a DynamicConv2D stem, kernel attention from the band mask "
                                    "(foldable into a plain ResNet-34 for one band subset)"),
    "cnn_attn_dynconv": (True, "CNN + Self-Attention with a DynamicConv2D stem, kernel attention from the image"),
    "cnn_attn_dynconv_mask": (True, "CNN + Self-Attention with a DynamicConv2D stem, kernel attention from the band "
                                    "mask: the band-robust edge model (folds into a plain cnn_attn per band subset)"),
    "cnn_dynconv_mask": (True, "the ablation (ConvBlocks, no attention) with a mask-attention DynamicConv2D stem"),
}


# Old names still accepted in recipes (run folders written before the rename store them).
# The mask-attention model was called "pruned" because `edgecnn prune` is meant for it, but
# it is not pruned until that runs.
ALIASES: dict[str, str] = {"resnet34_dynconv_pruned": "resnet34_dynconv_mask"}


def model_names() -> list[str]:
    return sorted(MODELS)


# The models whose first convolution is generated from each band's wavelength (models/wave_conv.py): the only
# ones that read sources with different band counts in one run.
WAVELENGTH_MODELS = ("cnn_attn_wave", "resnet34_wave")


def takes_wavelengths(name: str) -> bool:
    """Whether the named model's stem is conditioned on band wavelengths (any band list, one set of weights)."""
    return name in WAVELENGTH_MODELS


def takes_mask(name: str) -> bool:
    """Whether the named model is band-aware (``model(x, mask)``)."""
    return MODELS[name][0]
