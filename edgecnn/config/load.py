"""Load a recipe from YAML, apply ``dotted.key=value`` overrides, validate.

All problems are collected and raised together as one ``UserError`` with a
line per problem, so a user fixes a recipe in one pass.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgecnn.config.schema import Recipe
from edgecnn.core.safeyaml import MAX_BYTES, MAX_NODES, _RecipeError, safe_load  # noqa: F401 (the limits)
from edgecnn.errors import UserError


def parse_overrides(words: list[str]) -> dict[str, Any]:
    """Turn ``["train.epochs=3", "data.mean=[0.5,0.5,0.5]"]`` into a dotted-key dict.

    Values are parsed as YAML, so numbers, lists, ``null`` and ``true`` work.

    Raises:
        UserError: a word is not ``key=value``.
    """
    out: dict[str, Any] = {}
    bad = []
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or not key.strip():
            bad.append(f"override {word!r}: expected dotted.key=value, e.g. train.epochs=5")
            continue
        try:
            out[key.strip()] = safe_load(raw) if raw.strip() else None
        except _RecipeError as e:
            bad.append(f"override {word!r}: {e.problem}")
        except yaml.YAMLError:
            out[key.strip()] = raw  # a plain string the schema will judge
    if bad:
        raise UserError(*bad)
    return out


def _apply(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise UserError(f"override {dotted}={value!r}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    """The recipe's top-level mapping; ``path`` may also be a shipped recipe's name (``recipes.resolve``)."""
    from edgecnn.config.recipes import resolve

    path = resolve(path)
    try:
        data = safe_load(path.read_text())
    except _RecipeError as e:
        raise UserError(f"recipe {path}: line {e.line}: {e.problem}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"recipe {path}: cannot read it ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"recipe {path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def _section_for(loc: tuple) -> type[BaseModel] | None:
    """The schema class that owns the key at ``loc`` (for 'did you mean')."""
    cls: Any = Recipe
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        cls = field.annotation
    return cls


def _format(err: dict[str, Any], overridden: set[str]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "(recipe)"
    source = " (from override)" if key in overridden else ""
    if err["type"] == "extra_forbidden":
        section = _section_for(loc[:-1])
        allowed = list(section.model_fields) if section else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        msg = f"{key}: unknown key{source}"
        if hint:
            msg += f"; did you mean '{'.'.join([*map(str, loc[:-1]), hint[0]])}'?"
        if allowed:
            msg += f" (allowed here: {', '.join(allowed)})"
        return msg
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    if "input" in err and not isinstance(err["input"], dict):
        return f"{key} = {err['input']!r}{source}: {msg}"
    return f"{key}{source}: {msg}"


def validate_recipe(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> Recipe:
    """Validate a recipe dict (plus overrides) against the schema.

    Raises:
        UserError: one line per problem found.
    """
    tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        _apply(tree, dotted, value)
    try:
        return Recipe.model_validate(tree)
    except ValidationError as e:
        raise UserError(*[_format(err, set(overrides or {})) for err in e.errors()]) from None


def load_recipe(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe, apply overrides, validate.

    Args:
        path: the recipe file, or a shipped recipe's name (``quickstart``); a file at the path wins.
        overrides: ``dotted.key=value`` words, or an already parsed dict.

    Raises:
        UserError: missing/unreadable file, bad YAML, or schema errors (all of them).
    """
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    return validate_recipe(_read_yaml(Path(path)), overrides)


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, as stored in a run folder."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
