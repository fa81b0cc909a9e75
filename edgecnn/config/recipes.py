"""The recipes shipped with the package, found by name (as torchtune's ``tune ls`` / ``tune cp`` do).

They are package data (``edgecnn/recipes/*.yaml``; in the repository that folder
links to ``recipes/``), so a plain ``pip install`` carries them. Anywhere a
recipe path is accepted, a shipped recipe's name works too: ``quickstart``,
``quickstart.yaml`` or ``recipes/quickstart.yaml`` from any folder. A file that
exists at the given path always wins.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from edgecnn.errors import UserError

SHIPPED = Path(__file__).resolve().parent.parent / "recipes"


def shipped() -> dict[str, Path]:
    """Shipped recipe names (the file stem) and their files, sorted by name."""
    if not SHIPPED.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def first_comment(path: Path) -> str:
    """A recipe's first comment line (the command that runs it), without the ``#``."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip().startswith("#"):
                    return line.strip().lstrip("#").strip()
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def _name(arg: str) -> str | None:
    """The shipped name ``arg`` may mean: ``NAME``, ``NAME.yaml`` or ``recipes/NAME.yaml``; else None."""
    p = Path(arg)
    if len(p.parts) == 2 and p.parts[0] == "recipes" or len(p.parts) == 1:
        return p.name.removesuffix(".yaml").removesuffix(".yml")
    return None


def resolve(arg: str | Path) -> Path:
    """The recipe file ``arg`` names: the path when a file is there, else the shipped recipe of that name.

    Raises:
        UserError: neither a file nor a shipped recipe's name (with the names shipped and a "did you mean").
    """
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    name = _name(str(arg))
    recipes = shipped()
    if name in recipes:
        return recipes[name]
    if path.is_dir():
        raise UserError(f"recipe {arg}: a folder, not a recipe file; pass a YAML file or a shipped recipe's name "
                        "(edgecnn recipes lists them)")
    hint = difflib.get_close_matches(name or path.stem, list(recipes), n=1)
    did = f"did you mean '{hint[0]}'? " if hint else ""
    raise UserError(f"recipe {arg}: no such file, and no shipped recipe of that name; {did}"
                    f"shipped: {', '.join(recipes) or 'none'} (edgecnn recipes lists them)")


def copy(name: str, dest: Path, force: bool = False) -> Path:
    """Copy the shipped recipe ``name`` to ``dest`` (a file, or a folder to put ``NAME.yaml`` in) to edit.

    Returns:
        The file written.

    Raises:
        UserError: no shipped recipe of that name, or ``dest`` exists (without ``force``).
    """
    from edgecnn.files import atomic_write_bytes

    recipes = shipped()
    key = name.removesuffix(".yaml").removesuffix(".yml")
    if key not in recipes:
        hint = difflib.get_close_matches(key, list(recipes), n=1)
        did = f"did you mean '{hint[0]}'? " if hint else ""
        raise UserError(f"recipes cp {name}: no shipped recipe of that name; {did}"
                        f"shipped: {', '.join(recipes)}")
    dest = Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / f"{key}.yaml"
    if dest.exists() and not force:
        raise UserError(f"recipes cp: {dest} exists; pass another path, or --force to overwrite it")
    atomic_write_bytes(dest, recipes[key].read_bytes())
    return dest
