"""DynamicConv2D (the paper's Task A): a band-robust input convolution, and ResNet-34 with it as the stem.

Sensors drop spectral bands. ``DynamicConv2D`` keeps ``K`` kernel sets of
shape ``[out, bands, k, k]`` and takes a presence mask next to the image
(1 = band present, 0 = missing). Missing bands are zeroed, the ``K`` sets are
mixed into *one* kernel by attention weights, and that kernel is applied with
a single convolution. Mixing the weights before the convolution (as in
CondConv and Dynamic Convolution) is what keeps the cost at that of one plain
convolution; the paper runs far more work in its stem (3.9x the baseline's FLOPs).

Two attention modes:

* ``"input"`` (paper-faithful): the weights come from the image (per-band
  means of the masked input) and the mask, so every image gets its own
  kernel. The batch is then convolved as one grouped convolution, one group
  per image.
* ``"mask"`` (deployment variant): the weights come from the mask alone. For a
  fixed band subset the mixed kernel is a constant, so ``fold`` turns the
  module into a plain ``nn.Conv2d`` over just the present bands, and
  ``folded_model`` turns the whole network into a plain ResNet-34 that costs
  no more than the baseline (less, with fewer bands).

Missing bands are compensated by scaling the mixed kernel by
``bands / present``, as inverted dropout does: the stem's output keeps its
scale when bands are dropped, so the BatchNorm after it (whose running
statistics all subsets share) sees the range it was trained on. For strongly
correlated bands such as RGB the stem's response grows linearly with the
number of bands, which this factor undoes exactly; it is a constant per
subset, so it folds into the kernel for free.

Everything in ``forward`` is tensor arithmetic (no branches on mask values),
so ``torch.export.export(model, (x, mask))`` keeps the mask as a graph input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgecnn.data.bands import all_subsets, presence_mask, subset_name
from edgecnn.errors import UserError
from edgecnn.models.resnet import ResNet

ATTENTION_MODES = ("input", "mask")


class DynamicConv2D(nn.Module):
    """A convolution over a variable set of input bands, with ``num_kernels`` attention-mixed kernel sets.

    Args:
        bands: input bands of the full set (3 for RGB).
        out_channels: output channels.
        kernel_size: square kernel side.
        stride: convolution stride (zero padding is ``kernel_size // 2``: ResNet's stem, 7 x 7 stride 2 pad 3).
        num_kernels: kernel sets ``K`` mixed by the attention.
        attention: ``"input"`` (weights from the image and mask, per sample) or
            ``"mask"`` (weights from the mask only; foldable).
        reduction: the attention MLP's hidden width is ``out_channels // reduction``
            (at least ``num_kernels``). The stem has too few input bands to
            reduce, unlike the SE-style blocks ``reduction`` comes from.
        temperature: softmax temperature of the attention. Dynamic Convolution
            trains with a high value early (near-uniform mixing, every set
            learns) and anneals it to 1; it is a plain attribute a training
            loop may change.

    Raises:
        UserError: ``attention`` is not one of ``ATTENTION_MODES``, or a size is below 1.
    """

    def __init__(
        self,
        bands: int,
        out_channels: int = 64,
        kernel_size: int = 7,
        stride: int = 2,
        num_kernels: int = 4,
        attention: str = "input",
        reduction: int = 4,
        temperature: float = 1.0,
    ):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise UserError(f"attention='{attention}' is not a DynamicConv2D mode; use one of {', '.join(ATTENTION_MODES)}")
        if min(bands, out_channels, kernel_size, num_kernels, reduction) < 1:
            raise UserError(
                f"DynamicConv2D sizes must be at least 1 (bands={bands}, out_channels={out_channels}, "
                f"kernel_size={kernel_size}, num_kernels={num_kernels}, reduction={reduction})"
            )
        self.bands = bands
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.attention_mode = attention
        self.temperature = temperature

        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels, bands, kernel_size, kernel_size))
        for k in range(num_kernels):
            # Same init as ResNet's plain stem, so each set alone is a normal conv1.
            nn.init.kaiming_normal_(self.weight.data[k], mode="fan_out", nonlinearity="relu")

        # "input" sees per-band means of the masked image plus the mask; "mask" sees only the mask.
        features = 2 * bands if attention == "input" else bands
        hidden = max(num_kernels, out_channels // reduction)
        self.attention = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_kernels))

        # forward(x) without a mask means every band is present. A buffer (not a
        # Python constant) so the module moves with .to(device) and export sees
        # it; not persistent, so checkpoints stay free of it.
        self.register_buffer("all_bands", torch.ones(bands), persistent=False)

    @property
    def num_kernels(self) -> int:
        return self.weight.shape[0]

    def extra_repr(self) -> str:
        return (
            f"bands={self.bands}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, num_kernels={self.num_kernels}, "
            f"attention={self.attention_mode!r}, temperature={self.temperature}"
        )

    # -- forward ---------------------------------------------------------------------------

    def _check_shapes(self, x: Tensor, mask: Tensor) -> None:
        # Shapes are static under torch.export, so these checks are not data-dependent control flow.
        if x.dim() != 4 or x.shape[1] != self.bands:
            raise UserError(
                f"DynamicConv2D expects images [batch, {self.bands}, H, W] (every band, missing ones "
                f"zero-filled) but got {list(x.shape)}; pass the full band set and a presence mask"
            )
        if mask.dim() not in (1, 2) or mask.shape[-1] != self.bands or (mask.dim() == 2 and mask.shape[0] != x.shape[0]):
            raise UserError(
                f"presence mask must be [{self.bands}] or [batch, {self.bands}] but got {list(mask.shape)}; "
                "build it with edgecnn.data.bands.presence_mask"
            )

    def _mask_input(self, x: Tensor, mask: Tensor) -> Tensor:
        # torch.where rather than x * mask: a missing band may hold NaN or inf
        # (a dropped transmission), and 0 * NaN is still NaN.
        return torch.where(mask[..., None, None] > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))

    def _attention(self, x: Tensor | None, mask: Tensor) -> Tensor:
        """Softmax weights over the kernel sets: ``[B, K]`` (``[1, K]`` in "mask" mode with a ``[bands]`` mask).

        ``x`` (the masked images) is read only in "input" mode.
        """
        if self.attention_mode == "input":
            batch_mask = mask.expand(x.shape[0], self.bands)
            features = torch.cat([x.mean(dim=(2, 3)), batch_mask], dim=1)
        else:
            features = mask.reshape(-1, self.bands)
        return torch.softmax(self.attention(features) / self.temperature, dim=-1)

    def _mixed_kernels(self, attn: Tensor, mask: Tensor) -> Tensor:
        """One kernel per attention row, scaled for missing bands: ``[rows, out, bands, k, k]``."""
        # Rescale so the stem's output keeps its scale with fewer bands (see the module
        # docstring). clamp: an all-zero mask gives a zero output, not a division by zero.
        scale = self.bands / mask.reshape(-1, self.bands).sum(dim=1).clamp(min=1.0)
        mixed = (attn @ self.weight.flatten(1)) * scale[:, None]
        return mixed.reshape(-1, *self.weight.shape[1:])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Convolve the present bands of ``x``.

        Args:
            x: ``[B, bands, H, W]``; missing bands may hold anything (they are zeroed here).
            mask: float presence mask, ``[bands]`` (one subset for the batch) or
                ``[B, bands]`` (one per image); ``None`` means every band is present.

        Returns:
            ``[B, out_channels, H', W']``.

        Raises:
            UserError: ``x`` or ``mask`` has the wrong shape.
        """
        mask = self.all_bands if mask is None else mask.to(x)
        self._check_shapes(x, mask)
        x = self._mask_input(x, mask)
        kernels = self._mixed_kernels(self._attention(x, mask), mask)

        if self.attention_mode == "mask" and mask.dim() == 1:
            # One subset for the whole batch and weights from the mask only: one kernel, one
            # plain convolution. (A branch on static facts, never on mask values.)
            return F.conv2d(x, kernels[0], None, self.stride, self.padding)
        # One kernel per image: fold the batch into the channel axis and convolve once with
        # groups=B, so each image meets only its own kernel (never K separate convolutions).
        batch, _, height, width = x.shape
        out = F.conv2d(
            x.reshape(1, batch * self.bands, height, width),
            kernels.reshape(batch * self.out_channels, self.bands, self.kernel_size, self.kernel_size),
            None, self.stride, self.padding, groups=batch,
        )
        return out.reshape(batch, self.out_channels, out.shape[-2], out.shape[-1])

    # -- measuring, pruning and folding -------------------------------------------------

    @torch.no_grad()
    def attention_weights(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The attention over kernel sets for each image, ``[B, K]`` (rows sum to 1).

        Cheap: it needs only per-band means of ``x``, never the convolution.

        Raises:
            UserError: ``x`` or ``mask`` has the wrong shape.
        """
        mask = self.all_bands if mask is None else mask.to(x)
        self._check_shapes(x, mask)
        return self._attention(self._mask_input(x, mask), mask).expand(x.shape[0], -1)

    @torch.no_grad()
    def prune(self, keep: Sequence[int]) -> None:
        """Keep only the kernel sets ``keep`` (in place); see ``kernels_to_keep``.

        The softmax over the kept sets is the old attention renormalised over
        them, so dropping sets whose attention is near zero barely changes the
        output. Rebuild the optimizer afterwards (the parameters are new), and
        build later copies with ``num_kernels=len(keep)`` to load the state dict.

        Raises:
            UserError: ``keep`` is empty, repeats a set, or names one that does not exist.
        """
        keep = list(keep)
        if not keep or len(set(keep)) != len(keep) or not all(0 <= k < self.num_kernels for k in keep):
            raise UserError(
                f"prune(keep={keep}): keep must list distinct kernel sets in 0..{self.num_kernels - 1}, at least one"
            )
        index = torch.tensor(keep)
        self.weight = nn.Parameter(self.weight[index].clone())
        last = self.attention[-1]
        pruned = nn.Linear(last.in_features, len(keep)).to(last.weight.device, last.weight.dtype)
        pruned.weight.copy_(last.weight[index])
        pruned.bias.copy_(last.bias[index])
        self.attention[-1] = pruned

    @torch.no_grad()
    def fold(self, mask: Tensor | Sequence[float], attention_weights: Tensor | None = None) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` over only the present bands, equal to this module for that subset.

        For ``attention="mask"`` the result is exact: its output on the present
        bands equals ``self(x_full, mask)`` up to float rounding.

        For ``attention="input"`` the mixing weights depend on each image, so no
        single convolution is exact. Pass ``attention_weights`` (``[K]``, e.g. the
        subset's mean from ``kernel_usage``) to get an approximation that uses
        those fixed weights for every image; without it this raises.

        Args:
            mask: presence mask ``[bands]`` of 0/1 values (``edgecnn.data.bands.presence_mask``).
            attention_weights: fixed mixing weights ``[K]``; only for ``attention="input"``.

        Returns:
            ``nn.Conv2d(present, out_channels, kernel_size, stride, padding, bias=False)``.

        Raises:
            UserError: the mask is not ``bands`` values of 0/1 with at least one 1; or
                the module is "input" mode and ``attention_weights`` is missing; or
                ``attention_weights`` is given to a "mask"-mode module or has the wrong size.
        """
        mask = torch.as_tensor(mask, dtype=self.weight.dtype, device=self.weight.device)
        if mask.shape != (self.bands,) or not bool(((mask == 0) | (mask == 1)).all()) or mask.sum() < 1:
            raise UserError(
                f"fold: the presence mask must be {self.bands} values of 0 or 1 with at least one 1, "
                f"got {mask.tolist()}; build it with edgecnn.data.bands.presence_mask"
            )
        if self.attention_mode == "input":
            if attention_weights is None:
                raise UserError(
                    "this DynamicConv2D picks its kernels from each image (attention='input'), so no plain "
                    "convolution reproduces it exactly; export it unfolded with the mask as an input, pass "
                    "attention_weights (e.g. from kernel_usage) for an approximate fold, or train the "
                    "attention='mask' variant (resnet34_dynconv_mask)"
                )
            attn = torch.as_tensor(attention_weights, dtype=self.weight.dtype, device=self.weight.device)
            if attn.shape != (self.num_kernels,):
                raise UserError(f"fold: attention_weights must have {self.num_kernels} values, got {list(attn.shape)}")
            attn = attn[None]
        else:
            if attention_weights is not None:
                raise UserError("fold: attention_weights is only for attention='input'; a 'mask' module computes its own")
            attn = self._attention(None, mask)

        present = mask.nonzero().flatten()
        kernel = self._mixed_kernels(attn, mask)[0][:, present]
        conv = nn.Conv2d(len(present), self.out_channels, self.kernel_size, self.stride, self.padding, bias=False)
        conv = conv.to(kernel.device, kernel.dtype)
        conv.weight.copy_(kernel)
        return conv


@torch.no_grad()
def kernel_usage(stem: DynamicConv2D, x: Tensor, bands: list[str]) -> dict[str, Tensor]:
    """Mean attention per kernel set, for every band subset: ``{subset name: [K]}``.

    Only the attention runs (per-band means and a small MLP), so large batches
    are cheap. For "mask" mode ``x`` only supplies the batch size: the weights
    are the same for every image. Average the results of several batches for a
    dataset-wide figure.

    Args:
        stem: the module (``model.conv1`` of a ``BandResNet``).
        x: images ``[B, bands, H, W]``, normalised as the model sees them.
        bands: band names, in order (``len(bands) == stem.bands``).

    Raises:
        UserError: ``bands`` does not match the stem, or ``x`` has the wrong shape.
    """
    if len(bands) != stem.bands:
        raise UserError(f"kernel_usage: the stem has {stem.bands} bands but bands lists {len(bands)} ({', '.join(bands)})")
    return {
        subset_name(subset, bands): stem.attention_weights(x, presence_mask(subset, bands).to(x)).mean(dim=0)
        for subset in all_subsets(bands)
    }


def kernels_to_keep(usage: dict[str, Tensor], min_share: float = 0.05) -> list[int]:
    """Kernel sets whose mean attention reaches ``min_share`` for at least one subset.

    A set that only one subset relies on (say the set that serves single-band
    inputs) survives; sets that no subset uses are dropped. Pass the result to
    ``DynamicConv2D.prune``. At least the most used set is always kept.

    Args:
        usage: ``kernel_usage``'s result.
        min_share: least mean attention (0..1) to keep a set.
    """
    table = torch.stack(list(usage.values()))  # [subsets, K]
    best = table.max(dim=0).values
    keep = [k for k in range(table.shape[1]) if best[k] >= min_share]
    return keep or [int(best.argmax())]


class BandResNet(nn.Module):
    """ResNet with a ``DynamicConv2D`` stem: ``forward(x, mask=None)``.

    It reuses a ``ResNet``'s layers under the same names (``conv1`` is the
    dynamic stem; ``bn1``, ``layer1``..``layer4``, ``fc`` are ResNet's), so
    ``folded_model`` copies everything but the stem into a plain ``ResNet``
    by state-dict keys.

    Args:
        num_classes: size of the head.
        bands: input bands of the full set.
        num_kernels: kernel sets in the stem.
        attention: ``"input"`` or ``"mask"`` (see ``DynamicConv2D``).
        layers: blocks per stage ((3, 4, 6, 3) is ResNet-34).

    Raises:
        UserError: see ``DynamicConv2D``.
    """

    def __init__(
        self,
        num_classes: int,
        bands: int = 3,
        num_kernels: int = 4,
        attention: str = "input",
        layers: tuple[int, ...] = (3, 4, 6, 3),
    ):
        super().__init__()
        self.layers = tuple(layers)
        stem = DynamicConv2D(bands, 64, 7, 2, num_kernels=num_kernels, attention=attention)
        net = ResNet(self.layers, num_classes, bands, stem_conv=stem)
        self.conv1 = stem
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool, self.fc = net.avgpool, net.fc

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, num_classes]``.

        Args:
            x: ``[B, bands, H, W]``, missing bands zero-filled (or anything: they are zeroed).
            mask: presence mask ``[bands]`` or ``[B, bands]``; ``None``: every band present.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x, mask))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@torch.no_grad()
def folded_model(model: BandResNet, mask: Tensor | Sequence[float], attention_weights: Tensor | None = None) -> ResNet:
    """A plain ``ResNet`` over only the present bands, equal to ``model`` for that subset.

    ``folded_model(model, mask)(x[:, present])`` equals ``model(x, mask)`` in
    eval mode (exactly, up to float rounding, for ``attention="mask"``). The
    result is a standalone copy in ``model``'s train/eval mode; its input has
    ``mask.sum()`` bands in the canonical order.

    Args:
        model: the band-robust network.
        mask: presence mask ``[bands]`` (``edgecnn.data.bands.presence_mask``).
        attention_weights: see ``DynamicConv2D.fold`` (approximate fold of "input" mode).

    Raises:
        UserError: see ``DynamicConv2D.fold``.
    """
    stem = model.conv1.fold(mask, attention_weights)
    # ResNet's default stem is exactly the folded conv's shape (present -> 64, 7x7, stride 2,
    # pad 3, no bias). Passing the folded conv as stem_conv would not do: ResNet re-initialises
    # every Conv2d it holds. Built on the meta device it allocates and initialises nothing;
    # loading by state-dict keys (strict) then fills every tensor and proves the names match.
    with torch.device("meta"):
        plain = ResNet(model.layers, model.fc.out_features, in_chans=stem.in_channels)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("conv1.")}
    plain.load_state_dict({**state, "conv1.weight": stem.weight}, strict=True, assign=True)
    return plain.train(model.training)


def resnet34_dynconv(num_classes: int, in_chans: int = 3, num_kernels: int = 4,
                     layers: tuple[int, ...] = (3, 4, 6, 3)) -> nn.Module:
    """ResNet-34 with the paper's DynamicConv2D stem: attention from each image and the band mask."""
    return BandResNet(num_classes, in_chans, num_kernels, attention="input", layers=tuple(layers))


def resnet34_dynconv_mask(num_classes: int, in_chans: int = 3, num_kernels: int = 4,
                          layers: tuple[int, ...] = (3, 4, 6, 3)) -> nn.Module:
    """ResNet-34 with a mask-attention DynamicConv2D stem: folds into a plain ResNet-34 per band subset."""
    return BandResNet(num_classes, in_chans, num_kernels, attention="mask", layers=tuple(layers))
