"""Recipes: a pydantic schema plus a YAML loader with ``dotted.key=value`` overrides."""

from edgecnn.config.load import dump_recipe, load_recipe, parse_overrides
from edgecnn.config.schema import Recipe

__all__ = ["Recipe", "load_recipe", "parse_overrides", "dump_recipe"]
