"""Spectral band subsets: parse them, name them, list them, turn them into masks.

Sensors drop bands, so the band-robust models take a float *presence mask*
(1 = band present, 0 = missing) next to the image. This module is the one
place that maps between what a user types (``--channels RG``, or
``--channels R,G,NIR`` when a band name is longer than one letter) and those
masks, and that samples the random subsets training uses.

A subset is always a list of band names in the canonical order of ``bands``
(the dataset's band list), whatever order the user typed them in.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from edgecnn.errors import UserError


def _single_letters(bands: list[str]) -> bool:
    # Only then is "RG" unambiguous; with a band called "NIR" it could mean N+I+R.
    return all(len(b) == 1 for b in bands)


def _example(bands: list[str]) -> str:
    """A valid subset string for error messages, e.g. 'RG' or 'R,G'."""
    first_two = bands[:2]
    if _single_letters(bands):
        return f"'{''.join(first_two)}' or '{','.join(first_two)}'"
    return f"'{','.join(first_two)}'"


def _bad_subset(text: str, problem: str, bands: list[str]) -> UserError:
    return UserError(
        f"channel subset '{text}': {problem}; valid bands are {', '.join(bands)}; "
        f"write e.g. {_example(bands)}"
    )


def parse_subset(text: str, bands: list[str]) -> list[str]:
    """Parse a band subset typed by a user.

    ``"RG"`` is accepted when every band name is a single character;
    comma-separated names (``"R,G,NIR"``) are always accepted. Names match
    case-insensitively. Spaces are ignored.

    Args:
        text: the subset as typed.
        bands: the dataset's band names, in canonical order.

    Returns:
        The subset's band names in the order of ``bands``.

    Raises:
        UserError: the subset is empty, names an unknown band, or repeats a band.
    """
    by_lower = {b.lower(): b for b in bands}
    compact = "".join(text.split())
    if "," in compact or not _single_letters(bands):
        tokens = compact.split(",")
    else:
        tokens = list(compact)
    if not compact or any(t == "" for t in tokens):
        raise _bad_subset(text, "a band name is missing (the subset is empty or has an empty item)", bands)

    names = []
    for token in tokens:
        name = by_lower.get(token.lower())
        if name is None:
            raise _bad_subset(text, f"unknown band '{token}'", bands)
        if name in names:
            raise _bad_subset(text, f"band '{name}' is repeated", bands)
        names.append(name)
    return [b for b in bands if b in names]


def all_subsets(bands: list[str]) -> list[list[str]]:
    """Every non-empty subset of ``bands``, largest first, then in band order.

    For RGB: RGB, RG, RB, GB, R, G, B (the paper's Table 2 order).
    """
    return [list(c) for size in range(len(bands), 0, -1) for c in itertools.combinations(bands, size)]


# Up to 4 bands every subset is judged (15 of them); beyond, 2^n - 1 subsets (1023 for Sentinel-2's
# 10) cost too much per epoch and per artifact, so the judged ones are the telling cases.
EVERY_SUBSET_UP_TO = 4


def judged_subsets(bands: list[str]) -> list[list[str]]:
    """The subsets that training, eval and parity report: every one up to ``EVERY_SUBSET_UP_TO``
    bands; beyond, all bands, each band lost alone, and each band alone (``2n + 1``)."""
    if len(bands) <= EVERY_SUBSET_UP_TO:
        return all_subsets(bands)
    return [list(bands)] + [[b for b in bands if b != lost] for lost in bands] + [[b] for b in bands]


def subset_name(subset: list[str], bands: list[str]) -> str:
    """The name ``parse_subset`` reads back: ``"RG"``, or ``"R,G,NIR"`` when a band name is longer than one letter.

    Raises:
        UserError: ``subset`` names a band not in ``bands``.
    """
    _check_known(subset, bands)
    ordered = [b for b in bands if b in subset]
    return ("" if _single_letters(bands) else ",").join(ordered)


def presence_mask(subset: list[str], bands: list[str]) -> Tensor:
    """Float ``[len(bands)]`` mask: 1 for each band in ``subset``, 0 for the others.

    Raises:
        UserError: ``subset`` names a band not in ``bands``.
    """
    _check_known(subset, bands)
    return torch.tensor([1.0 if b in subset else 0.0 for b in bands])


def _check_known(subset: list[str], bands: list[str]) -> None:
    unknown = [s for s in subset if s not in bands]
    if unknown:
        raise _bad_subset(",".join(subset), f"unknown band '{unknown[0]}'", bands)


def sample_subset_masks(batch: int, n_bands: int, generator: torch.Generator | None = None) -> Tensor:
    """Random presence masks, one per sample: float ``[batch, n_bands]``.

    The subset *size* is drawn uniformly from 1..n_bands, then a subset of that
    size uniformly. Drawing subsets uniformly instead would make the full set
    rare (1 in 7 for RGB, 1 in 15 for four bands) and over-train the middle sizes;
    this way every size, including the full set used most at deployment, gets
    an equal share.

    Args:
        batch: number of masks.
        n_bands: bands in the full set.
        generator: random source (``None``: torch's global one).
    """
    size = torch.randint(1, n_bands + 1, (batch, 1), generator=generator)
    # The rank of a uniform random score is a uniform random permutation; keeping
    # the ``size`` lowest ranks picks a uniform subset of that size.
    rank = torch.rand(batch, n_bands, generator=generator).argsort(dim=1).argsort(dim=1)
    return (rank < size).float()


def sample_subset_mask(n_bands: int, generator: torch.Generator | None = None) -> Tensor:
    """One random presence mask, float ``[n_bands]``, drawn as in ``sample_subset_masks``.

    Training draws one subset per batch: a ``[n_bands]`` mask lets the
    mask-attention model run one plain convolution for the whole batch.
    """
    return sample_subset_masks(1, n_bands, generator)[0]


class MatchedBands(torch.utils.data.Dataset):
    """Another sensor's images laid into a run's band slots: slot ``j`` holds the image's band ``slots[j]``,
    or nodata (NaN) where ``slots[j]`` is None, so the loop zero-fills it after normalising and masks it for
    a model that takes a band mask, as a band lost in a file is (``core.sensors.match_bands`` picks the slots).

    Photos (uint8) are scaled to 0..1 first, as ``prepare`` would scale them.
    """

    def __init__(self, ds: torch.utils.data.Dataset, slots: list[int | None]):
        self.ds, self.slots = ds, list(slots)
        self.skipped, self.skip_reasons = getattr(ds, "skipped", []), getattr(ds, "skip_reasons", {})
        self.dtype = "float32"

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        item = self.ds[i]
        if item is None:
            return None
        x, label = item
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        out = torch.full((len(self.slots), *x.shape[1:]), float("nan"))
        for j, k in enumerate(self.slots):
            if k is not None:
                out[j] = x[k]
        return out, label
