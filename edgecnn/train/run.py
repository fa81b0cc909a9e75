"""The run folder: what a training run writes, and how later stages read it back.

A run folder holds ``recipe.yaml`` (resolved), ``env.json``, ``metrics.csv``,
``last.pt`` and ``best.pt`` (checkpoints), ``train.log`` and, after
``edgecnn eval``, ``eval.json``. Later stages (eval, export, bench, report)
read only these files.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from edgecnn.config import Recipe
from edgecnn.config.load import safe_load, validate_recipe
from edgecnn.errors import UserError
from edgecnn.train.checkpoint import load_checkpoint

from edgecnn.core.contracts import CKPT_CLASSES, CKPT_MODEL, CKPT_MODEL_NAME
from edgecnn.core.contracts import BEST, ENV, EVAL, LAST, LOG, METRICS, RECIPE, is_run  # noqa: F401 (re-exported)
from edgecnn.models import build_model


def read_run_recipe(run: Path) -> Recipe:
    """The resolved recipe stored in a run folder.

    Raises:
        UserError: not a run folder, or its recipe no longer validates.
    """
    run = Path(run)
    if not is_run(run):
        raise UserError(f"{run}: not a run folder (no {RECIPE}); pass a folder written by edgecnn train")
    try:
        data = safe_load((run / RECIPE).read_text()) or {}  # with the recipe limits: run folders travel
    except yaml.YAMLError as e:
        why = getattr(e, "problem", None) or "not valid YAML"
        raise UserError(f"{run / RECIPE}: damaged ({why}); restore it from the original recipe") from None
    return validate_recipe(data)


def build_for_recipe(recipe: Recipe, num_classes: int) -> nn.Module:
    """The recipe's model, untrained; a wavelength-conditioned stem is set to the recipe's bands.

    Raises:
        UserError: a wave model whose bands have no wavelengths (the schema refuses such a recipe first).
    """
    from edgecnn.models.wave_conv import set_bands

    settings = recipe.model.model_dump(exclude={"name"})
    model = build_model(recipe.model.name, num_classes, len(recipe.data.bands), **settings)
    return set_bands(model, recipe.data.band_specs)


def load_trained(run: Path, which: str = "best") -> tuple[Recipe, nn.Module, list[str], dict]:
    """Rebuild a run's model with its trained weights, in eval mode on the CPU.

    Args:
        run: the run folder.
        which: ``"best"`` (highest validation accuracy) or ``"last"``.

    Returns:
        (recipe, model, class names, checkpoint dict)

    Raises:
        UserError: not a run, no checkpoint yet, or a damaged checkpoint.
    """
    run = Path(run)
    recipe = read_run_recipe(run)
    path = run / (BEST if which == "best" else LAST)
    if which == "best" and not path.exists():
        path = run / LAST
    state = load_checkpoint(path)
    classes = list(state[CKPT_CLASSES])
    model = build_for_recipe(recipe, len(classes))
    load_weights(model, state, path, recipe.model.name, run / RECIPE)
    model.eval()
    return recipe, model, classes, state


def load_weights(model: nn.Module, state: dict, path: Path, name: str, recipe_path: Path) -> None:
    """``model.load_state_dict`` of a checkpoint, refused in one line that names both models when they differ.

    Raises:
        UserError: the checkpoint was trained as another model, or its weights do not fit.
    """
    trained_as = state.get(CKPT_MODEL_NAME)
    if trained_as is not None and trained_as != name:
        raise UserError(f"{path} holds a {trained_as} but {recipe_path} builds a {name}; point at the run "
                        f"folder the checkpoint came from, or set model.name: {trained_as}")
    try:
        model.load_state_dict(state[CKPT_MODEL])
    except RuntimeError:
        have, want = set(state[CKPT_MODEL]), set(model.state_dict())
        missing, unexpected = sorted(want - have), sorted(have - want)
        what = "; ".join(part for part in (
            f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} not in the model (e.g. {unexpected[0]})" if unexpected else "",
        ) if part) or "tensor shapes differ (another band count, class count or model size)"
        raise UserError(f"{path}: weights do not fit the {name} that {recipe_path} builds ({what}); "
                        "it holds another model's checkpoint: point at the run folder it came from") from None


def pick_device(name: str) -> torch.device:
    """``auto`` takes a GPU when one is present."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA GPU is visible; use train.device=auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
