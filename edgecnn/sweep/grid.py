"""The sweep's grid: ``--vary`` words checked against the recipe schema, variants and candidates."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgecnn.config.schema import QAT_FOR_TARGET
from edgecnn.config.load import _read_yaml, parse_overrides, validate_recipe
from edgecnn.core.contracts import TARGETS
from edgecnn.errors import UserError

SWEEP = "sweep.json"
PROBES = "latency"  # random-weight run folders, one per variant
REPORT = "report"
PRECISIONS = ("fp32", "ptq", "qat")


@dataclass
class Variant:
    name: str  # folder name inside the sweep folder
    overrides: dict[str, Any]  # the --vary values of this variant, in --vary order
    recipe: Any = None  # the validated Recipe (base + overrides + these)


@dataclass
class Grid:
    recipe_path: Path
    overrides: list[str]  # the plain dotted.key=value words given after the recipe
    vary: dict[str, list]  # key -> values, in --vary order
    variants: list[Variant]
    candidates: list[tuple[str, str]]  # (precision, target), in the order they are shown
    skipped: list[str] = field(default_factory=list)  # notes on combinations that cannot exist


def split_values(raw: str) -> list[str]:
    """``"a,b,[1,2]"`` -> ``["a", "b", "[1,2]"]``: commas inside brackets or braces do not split."""
    out, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "x"


def make_grid(recipe_path: Path, overrides: list[str], vary: list[str], targets: list[str],
              precisions: list[str]) -> Grid:
    """Parse and check the whole grid; every problem is collected before anything runs.

    Raises:
        UserError: one line per problem (a malformed or empty ``--vary``, a key given twice, an unknown key,
            a value the schema refuses, an unknown target or precision, no candidate left).
    """
    errors: list[str] = []
    candidates, skipped = _grid_candidates(targets, precisions, errors)
    base_over: dict[str, Any] = {}
    try:
        base_over = parse_overrides(list(overrides))
    except UserError as e:
        errors += e.lines
    grid = _grid_axes(vary, errors)
    try:
        base = _read_yaml(Path(recipe_path))
    except UserError as e:
        raise UserError(*e.lines, *errors) from None
    _check_values(base, base_over, grid, errors)
    if errors:
        raise UserError(*dict.fromkeys(errors))
    variants = _variants(base, base_over, grid, errors)
    if errors:
        raise UserError(*dict.fromkeys(errors))
    return Grid(Path(recipe_path), list(overrides), grid, variants, candidates, list(dict.fromkeys(skipped)))


def _grid_candidates(targets: list[str], precisions: list[str], errors: list[str]) -> tuple[list, list]:
    """The (precision, target) pairs to measure, and the ones skipped with why; problems go to ``errors``."""
    for name, given, allowed in (("--targets", targets, TARGETS), ("--precisions", precisions, PRECISIONS)):
        if not given:
            errors.append(f"{name}: empty; choose from {', '.join(allowed)}")
        for v in given:
            if v not in allowed:
                errors.append(f"{name} {v!r}: unknown; choose from {', '.join(allowed)}")
    candidates, skipped = [], []
    for p in precisions:
        for t in targets:
            if p == "qat" and t in TARGETS and t not in QAT_FOR_TARGET:
                skipped.append(f"{t} has no QAT backend: no {t} qat candidates (its INT8 is ptq)")
            elif p in PRECISIONS and t in TARGETS and (p, t) not in candidates:
                candidates.append((p, t))
    if not candidates and not errors:
        errors.append(f"--precisions {','.join(precisions)} x --targets {','.join(targets)}: no candidate "
                      "(QAT exists for executorch and openvino only)")
    return candidates, skipped


def _grid_axes(vary: list[str], errors: list[str]) -> dict[str, list]:
    """``--vary KEY=V1,V2`` words -> {key: values}; malformed, empty or repeated ones go to ``errors``."""
    grid: dict[str, list] = {}
    if not vary:
        errors.append("--vary: give at least one, e.g. --vary model.name=cnn_attn,cnn")
    for word in vary:
        key, sep, raw = word.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(f"--vary {word!r}: expected KEY=V1,V2,..., e.g. --vary data.image_size=32,48,64")
            continue
        values = [_parse_value(v.strip()) for v in split_values(raw) if v.strip()]
        if not values:
            errors.append(f"--vary {key}: no values; give one or more, comma-separated")
            continue
        if key in grid:
            errors.append(f"--vary {key}: given twice; list all its values in one --vary")
            continue
        if len(set(map(json.dumps, values))) != len(values):
            errors.append(f"--vary {key}: a value is listed twice")
        grid[key] = values
    return grid


def _check_values(base: dict, base_over: dict, grid: dict[str, list], errors: list[str]) -> None:
    """The recipe with the plain overrides, then each value alone, so an error names what causes it."""
    common: list[str] = []
    try:
        validate_recipe(base, base_over)
    except UserError as e:
        common = e.lines
    errors += common
    for key, values in grid.items():  # a --vary key given as a plain override too: --vary wins
        for value in values:
            try:
                validate_recipe(base, {**base_over, key: value})
            except UserError as e:
                errors += [f"--vary {key}={_yaml_word(value)}: {line}" for line in e.lines if line not in common]


def _variants(base: dict, base_over: dict, grid: dict[str, list], errors: list[str]) -> list[Variant]:
    """One validated recipe per combination, named by its values (unique, never a reserved folder name)."""
    variants, names = [], set()
    for combo in itertools.product(*grid.values()):
        over = dict(zip(grid, combo))
        try:
            recipe = validate_recipe(base, {**base_over, **over})
        except UserError as e:  # values fine alone, refused together
            errors += [f"--vary combination {_words(over)}: {line}" for line in e.lines]
            continue
        name = "-".join(_slug(v) for v in combo)
        while name in names or name in (PROBES, REPORT):
            name += "_"
        names.add(name)
        variants.append(Variant(name, over, recipe))
    return variants


def _words(over: dict[str, Any]) -> str:
    return " ".join(f"{k}={_yaml_word(v)}" for k, v in over.items())


def _yaml_word(v: Any) -> str:
    if isinstance(v, str):
        return v
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _probe_label(p: str, t: str) -> str:
    return f"{t} {'fp32' if p == 'fp32' else 'int8 (PTQ)'}"


def _final_label(p: str, t: str) -> str:
    return f"{t} " + {"fp32": "fp32", "ptq": "int8 (PTQ)", "qat": "int8 (QAT)"}[p]
