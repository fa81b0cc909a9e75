"""Model definitions, the registry of short names, and cost counting.

- ``cnn_attn.py``: the CNN + self-attention model and its ablation;
- ``resnet.py``: ResNet-34 (torchvision's layout, without torchvision);
- ``dynamic_conv.py``: DynamicConv2D and the band-robust ResNet-34 around it, folding per band subset;
- ``deployable.py``: the graph that gets exported, per model kind and band subset;
- ``registry.py``: recipe names -> builders (``build_model``) and capabilities;
- ``surgery.py``: ``swap``, the one way submodules are replaced;
- ``stats.py``: parameter and MAC counts.
"""

from edgecnn.models.registry import build_model, model_names

__all__ = ["build_model", "model_names", "set_bands"]


def set_bands(model, bands) -> None:
    """Tell a wavelength-conditioned model which bands (``core.sensors.Band``, in input order) its next inputs
    carry; a no-op for a model without a wavelength stem.

    A stand-in until ``models/wave_conv.py`` (the wavelength stem) is on this branch: it forwards to that
    module's ``set_bands`` where it exists. At the merge, import that function here instead.
    """
    import importlib

    try:
        impl = getattr(importlib.import_module("edgecnn.models.wave_conv"), "set_bands", None)
    except ImportError:
        return
    if impl is not None:
        impl(model, bands)
