"""Recipes: a pydantic schema plus a YAML loader with ``dotted.key=value`` overrides; no torch.

- ``schema.py``: the recipe schema (unknown keys are errors);
- ``load.py``: YAML + overrides -> a validated ``Recipe``, every error at once;
- ``recipes.py``: the recipes shipped with the package, found by name.
"""

from edgecnn.config.load import dump_recipe, load_recipe, parse_overrides
from edgecnn.config.schema import Recipe

__all__ = ["Recipe", "load_recipe", "parse_overrides", "dump_recipe"]
