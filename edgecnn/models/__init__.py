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

__all__ = ["build_model", "model_names"]
