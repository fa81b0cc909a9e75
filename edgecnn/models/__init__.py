"""Model definitions, the registry of short names, and cost counting.

- ``cnn_attn.py``: the CNN + self-attention model and its ablation;
- ``resnet.py``: ResNet-34 (torchvision's layout, without torchvision);
- ``dynamic_conv.py``: DynamicConv2D, the stem swap for any backbone, folding per band subset;
- ``wave_conv.py``: WaveConv2D, a stem generated from each band's wavelength (any sensor), folding per band list;
- ``deployable.py``: the graph that gets exported, per model kind and band subset;
- ``registry.py``: recipe names -> builders (``build_model``) and capabilities;
- ``surgery.py``: ``swap``, the one way submodules are replaced;
- ``stats.py``: parameter and MAC counts.
"""

from edgecnn.models.registry import build_model, model_names
from edgecnn.models.wave_conv import set_bands  # a no-op for a model without a wavelength stem

__all__ = ["build_model", "model_names", "set_bands"]
