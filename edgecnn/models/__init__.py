"""Model definitions, the registry of short names, and cost counting."""

from edgecnn.models.registry import build_model, model_names

__all__ = ["build_model", "model_names"]
