"""YAML with limits, for every file a user or another machine hands us (recipes, run folders).

``yaml.safe_load`` builds no objects, but it still expands aliases and accepts
duplicate keys silently; this loader refuses both before anything is built.
Torch-free and config-free, so every stage can read a recipe this way.
"""

from __future__ import annotations

import yaml

# A recipe is a few dozen keys. Aliases are fine, but the tree they expand to is what
# validation walks: "billion laughs" (nine aliases deep) would take it hours.
MAX_NODES = 100_000
MAX_BYTES = 1_000_000


class RecipeYAMLError(yaml.YAMLError):
    """A well-formed YAML document that is still refused as a recipe (one line, with its own line number)."""

    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


def _check_tree(root: yaml.Node) -> None:
    """Refuse duplicate keys and alias trees that expand past ``MAX_NODES``, before anything is built.

    Raises:
        RecipeYAMLError: a key given twice in one mapping (named with both lines), a recursive
            alias, or an expansion past the limit.
    """
    sizes: dict[int, int] = {}  # expanded size of each node already walked: an alias costs a lookup
    walking: set[int] = set()

    def size(node: yaml.Node, path: str) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in walking:
            raise RecipeYAMLError(node.start_mark.line + 1, "an alias refers to itself (a recursive structure); "
                                                         "write the value out")
        walking.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and key.tag != "tag:yaml.org,2002:merge":
                    dotted = f"{path}.{name}" if path else str(name)
                    line = key.start_mark.line + 1
                    if name in seen:
                        raise RecipeYAMLError(line, f"key '{dotted}' is given twice (lines {seen[name]} and {line}); "
                                                 "keep one")
                    seen[name] = line
                total += size(key, path) + size(value, f"{path}.{name}" if path else str(name))
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                total += size(item, f"{path}[{i}]")
                if total > MAX_NODES:
                    break
        walking.discard(id(node))
        if total > MAX_NODES:
            raise RecipeYAMLError(node.start_mark.line + 1, f"its aliases expand to more than {MAX_NODES:,} values "
                                                         "(a \"billion laughs\" document); write the values out")
        sizes[id(node)] = total
        return total

    size(root, "")


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that checks the node tree (``_check_tree``) before constructing it."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_tree(node)
        return self.construct_document(node)


def safe_load(text: str):
    """``yaml.safe_load`` with limits: size, alias expansion, no duplicate keys.

    Raises:
        yaml.YAMLError: bad YAML, or a document refused by the limits (``problem`` and
            ``problem_mark``/``line`` say where).
    """
    if len(text) > MAX_BYTES:
        raise RecipeYAMLError(1, f"{len(text):,} bytes; a recipe is at most {MAX_BYTES:,}")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)
    except RecursionError:  # PyYAML composes nested collections recursively
        raise RecipeYAMLError(1, "collections nested hundreds deep; a recipe needs a few levels") from None


_RecipeError = RecipeYAMLError  # the name config/load.py uses
