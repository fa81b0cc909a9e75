"""The graph that gets exported, chosen by model kind and band subset.

Four cases, all exact (the artifact computes what ``edgecnn eval`` measures):

* **all bands, plain model** - the model as is: ``image [1, bands, S, S]``.
* **all bands, band-aware model** (``takes_mask``; a QAT run's fake-quantized form too) - the model with its
  presence mask as a second input, ``mask [bands]``: one artifact serves every
  band subset at run time (zero-fill the missing bands, set their mask to 0).
  Its DynamicConv2D is exported in its static form (``dynamic_conv.StaticStem``):
  the kernel mixing moved onto the input, one convolution with a stored weight,
  so the whole graph runs inside the XNNPACK / OpenVINO delegate and INT8
  quantizes that convolution per channel like any other.
* **a subset of a mask-attention DynamicConv2D model** (``cnn_attn_dynconv_mask``,
  ``resnet34_dynconv_mask``) or of a wave model (``cnn_attn_wave``, for its current band list) - ``folded_model``: the plain backbone whose first
  convolution reads only the present bands: exactly the plain model's cost.
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

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from edgecnn.data.bands import judged_subsets, parse_subset, presence_mask, subset_name
from edgecnn.models.dynamic_conv import StemGains, band_stem, foldable, folded_model, static_model
from edgecnn.models.registry import takes_mask
from edgecnn.models.wave_conv import WaveGains, wave_stem


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
        """Module types INT8 leaves in float: a static stem's mixing gains (``StemGains``: a few
        hundred multiplies on the mask, and the one multiply that scales the input by them; a wave
        stem's ``WaveGains``, its per-band scale)."""
        return tuple(t for t in (StemGains, WaveGains) if any(isinstance(m, t) for m in self.module.modules()))

    @property
    def head(self) -> str | None:
        """Name in ``module`` of the classifier (the backbone's ``classifier`` layer), which INT8 PTQ leaves in float.

        Why: its output is the answer. Quantized, the logits share one 8-bit grid, and two classes closer than
        a step tie or swap; the backbone's INT8 error is small next to that on images near a decision boundary.
        Measured on a ``cnn_attn_dynconv_mask`` run (runs/bands, ExecuTorch PTQ, 300 validation images on each
        of 15 band subsets): the worst subset's agreement with PyTorch went from 98.0% to 99.3% with the head
        alone in float (ONNX 97.7% -> 99.0%), for 1.5 k of the model's 1.24 M weights.
        """
        for name, m in self.module.named_modules():  # outermost first: a wrapper's model, not a submodule's
            layer = getattr(m, "classifier", None)
            if isinstance(layer, str) and isinstance(getattr(m, layer, None), nn.Linear):
                return f"{name}.{layer}" if name else layer
        return None

    @property
    def float_modules(self) -> list[str]:
        """Names of the modules INT8 PTQ leaves in float (``keep_float``'s, with their submodules, and the
        ``head``), for exporters that exclude layers by name (OpenVINO's NNCF, onnxruntime)."""
        inside = [name for name, m in self.module.named_modules() if isinstance(m, self.keep_float or ())]
        return [name for name, _ in self.module.named_modules()
                if any(name == p or name.startswith(p + ".") for p in inside)] + ([self.head] if self.head else [])

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
            subsets = judged_subsets(self.bands)
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
        # A QAT model (``MaskRows``, a PT2E graph) is in its static form already: exported as it is.
        static = static_model(model) if band_stem(model) is not None or wave_stem(model) is not None else model
        return Deployable(
            module=static.eval(), input_names=["image", "mask"], example=(image, torch.ones(len(bands))),
            subset=None, input_bands=list(bands), mask_input=True, model=model, bands=bands,
            how="all bands; presence mask as second input (0 = band missing, zero-fill its plane)",
        )
    if channels is None:
        return Deployable(module=model, input_names=["image"], example=(image,), subset=None, input_bands=list(bands),
                          mask_input=False, how="all bands", model=model, bands=bands)

    present = parse_subset(channels, bands)
    name = subset_name(present, bands)
    mask = presence_mask(present, bands)
    if foldable(model):
        module = folded_model(model, mask).eval()
        kind = "WaveConv2D" if wave_stem(model) is not None else "DynamicConv2D"
        how = f"folded: {kind} stem folded for {name} into a plain conv over {len(present)} bands"
    else:
        slots = [present.index(b) if b in present else None for b in bands]
        module = ZeroFillBands(static_model(model) if band_aware else model, slots,
                               mask if band_aware else None).eval()
        missing = ",".join(b for b in bands if b not in present) or "no band"
        how = f"zero-fill: the graph inserts zero planes for {missing} and runs the full model"
    return Deployable(module=module, input_names=["image"], example=(image[:, : len(present)].clone(),),
                      subset=name, input_bands=present, mask_input=False, how=how, model=model, bands=bands)
