"""The graph that gets exported, chosen by model kind and band subset.

Four cases, all exact (the artifact computes what ``edgecnn eval`` measures):

* **all bands, plain model** - the model as is: ``image [1, bands, S, S]``.
* **all bands, band-aware model** (``takes_mask``) - the model with its
  presence mask as a second input, ``mask [bands]``: one artifact serves every
  band subset at run time (zero-fill the missing bands, set their mask to 0).
  The stem's BatchNorm is folded into the DynamicConv2D kernel sets first
  (exact; INT8 for ExecuTorch needs it, see ``_fold_stem_batchnorm``).
* **a subset of a mask-attention DynamicConv2D model** (``resnet34_dynconv_mask``) -
  ``folded_model``: a plain ResNet whose stem convolves only the present bands,
  so the artifact costs less than the full model.
* **a subset of any other model** - the artifact takes only the present bands;
  a small wrapper (``ZeroFillBands``) puts them back into the full band tensor
  with zeros where bands are missing (zero after normalisation, which is what
  ``edgecnn eval --channels`` feeds), and a band-aware model also gets the
  subset's mask as a constant. The kernel is not folded, so it costs the full model.

Every case also knows how to turn a *full-band, normalised* image into the
artifact's inputs (``inputs_for``), and what the PyTorch reference is for that
image (``reference``): parity and calibration use both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from edgecnn.data.bands import all_subsets, parse_subset, presence_mask, subset_name
from edgecnn.models.dynamic_conv import BandResNet, DynamicConv2D, folded_model
from edgecnn.models.registry import takes_mask
from edgecnn.models.surgery import swap


def forward(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, band_aware: bool) -> torch.Tensor:
    """Run ``model`` with bands missing where ``mask`` is 0.

    Missing bands are zero-filled after normalisation (the dataset mean), which
    is what a plain model sees in deployment when a band drops; a band-aware
    model (``takes_mask``) also gets the mask itself.
    """
    if mask is None:
        return model(x)
    m = mask.to(x.device)
    x = x * (m[:, :, None, None] if m.dim() == 2 else m[None, :, None, None])
    return model(x, m) if band_aware else model(x)


class ZeroFillBands(nn.Module):
    """Takes the present bands ``[B, len(present), H, W]`` and runs ``model`` on all bands, missing ones zero.

    The full tensor is built with ``torch.cat`` of static slices and zero
    planes: plain ops every exporter and runtime supports (no scatter or
    index_put, which some lowerings reject).

    Args:
        model: the full-band model.
        slots: for each band of the full set, its index among the present bands, or ``None`` if missing.
        mask: the subset's presence mask, passed as a constant to a band-aware model; ``None`` for a plain one.
    """

    def __init__(self, model: nn.Module, slots: list[int | None], mask: Tensor | None):
        super().__init__()
        self.model = model
        self.slots = slots
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        zero = torch.zeros_like(x[:, :1])
        full = torch.cat([zero if j is None else x[:, j : j + 1] for j in self.slots], dim=1)
        return self.model(full) if self.mask is None else self.model(full, self.mask)


class _AddBias(nn.Module):
    """``x + bias`` per channel: what a BatchNorm leaves once its scale is folded into the conv before it."""

    def __init__(self, bias: Tensor):
        super().__init__()
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias[None, :, None, None]


@torch.no_grad()
def _fold_stem_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of a ``BandResNet`` whose stem BatchNorm (eval statistics) is folded into the DynamicConv2D kernel sets.

    Any other model is returned as it is.

    INT8 for ExecuTorch (PT2E) folds every BatchNorm into the convolution before
    it and needs that convolution's weight to be a stored tensor; the stem's
    kernel is mixed from the mask at run time, so PT2E stops with "Expected
    get_attr node". Folding here first is exact: the BatchNorm scales each output
    channel, and scaling every kernel set by it scales their mix by it.
    """
    if not isinstance(model, BandResNet):
        return model
    folded = copy.deepcopy(model).eval()
    bn = folded.bn1
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded.conv1.weight.mul_(scale[None, :, None, None, None])

    return swap(folded, lambda m, name: name == "bn1", lambda m, name: _AddBias(bn.bias - bn.running_mean * scale))


@dataclass
class Deployable:
    """A module ready for export and what it means.

    Attributes:
        module: what gets exported (eval mode).
        input_names: graph input names, in order (``image``, and ``mask`` for band-aware models).
        example: one example input tuple, batch 1.
        subset: the subset's name (``"RG"``), ``None`` for all bands.
        input_bands: the bands the ``image`` input carries, in order.
        mask_input: the artifact takes a presence mask as its second input.
        how: how bands are handled, in words, for the sidecar.
        model: the original (full-band) model, the parity reference.
        bands: the run's full band list.
    """

    module: nn.Module
    input_names: list[str]
    example: tuple[Tensor, ...]
    subset: str | None
    input_bands: list[str]
    mask_input: bool
    how: str
    model: nn.Module
    bands: list[str]

    @property
    def keep_float(self) -> tuple[type, ...]:
        """Module types INT8 must leave in float: a ``DynamicConv2D`` that is not
        folded mixes its kernel at run time (see ``ptq.pt2e_xnnpack``)."""
        return (DynamicConv2D,) if any(isinstance(m, DynamicConv2D) for m in self.module.modules()) else ()

    def inputs_for(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, ...]:
        """The artifact's inputs for a normalised full-band image ``x [1, bands, S, S]``.

        Args:
            mask: for a mask-input artifact, the subset to present (default: all bands);
                missing bands are zero-filled as a deployed sensor would send them.
        """
        if self.mask_input:
            mask = torch.ones(len(self.bands)) if mask is None else mask
            return (x * mask[None, :, None, None], mask)
        present = [self.bands.index(b) for b in self.input_bands]
        return (x[:, present].contiguous(),)

    @torch.no_grad()
    def reference(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """What the PyTorch model gives for ``x``: the subset's bands only, the rest zero-filled (as in eval)."""
        if self.mask_input:
            mask = torch.ones(len(self.bands)) if mask is None else mask
        elif self.subset is not None:
            mask = presence_mask(self.input_bands, self.bands)
        return forward(self.model, x, mask, takes_mask(self.model))

    def calibration_inputs(self, x: Tensor, i: int) -> tuple[Tensor, ...]:
        """Inputs for the ``i``-th calibration image.

        A mask-input artifact meets every subset at run time, so calibration
        cycles through them: scales fitted on full-band images alone would clip
        the activations of other subsets (the stem rescales by bands/present).
        """
        if self.mask_input:
            subsets = all_subsets(self.bands)
            return self.inputs_for(x, presence_mask(subsets[i % len(subsets)], self.bands))
        return self.inputs_for(x)


def deployable(model: nn.Module, bands: list[str], image_size: int, channels: str | None) -> Deployable:
    """The graph to export for ``channels`` (``None``: all bands).

    Raises:
        UserError: ``channels`` is not a valid subset of ``bands`` (see ``parse_subset``).
    """
    band_aware = takes_mask(model)
    image = torch.zeros(1, len(bands), image_size, image_size)
    if channels is None and band_aware:
        return Deployable(
            module=_fold_stem_batchnorm(model), input_names=["image", "mask"], example=(image, torch.ones(len(bands))),
            subset=None, input_bands=list(bands), mask_input=True, model=model, bands=bands,
            how="all bands; presence mask as second input (0 = band missing, zero-fill its plane)",
        )
    if channels is None:
        return Deployable(module=model, input_names=["image"], example=(image,), subset=None, input_bands=list(bands),
                          mask_input=False, how="all bands", model=model, bands=bands)

    present = parse_subset(channels, bands)
    name = subset_name(present, bands)
    mask = presence_mask(present, bands)
    if isinstance(model, BandResNet) and model.conv1.attention_mode == "mask":
        module = folded_model(model, mask).eval()
        how = f"folded: DynamicConv2D stem folded for {name} into a plain conv over {len(present)} bands"
    else:
        slots = [present.index(b) if b in present else None for b in bands]
        module = ZeroFillBands(_fold_stem_batchnorm(model), slots, mask if band_aware else None).eval()
        missing = ",".join(b for b in bands if b not in present) or "no band"
        how = f"zero-fill: the graph inserts zero planes for {missing} and runs the full model"
    return Deployable(module=module, input_names=["image"], example=(image[:, : len(present)].clone(),),
                      subset=name, input_bands=present, mask_input=False, how=how, model=model, bands=bands)
