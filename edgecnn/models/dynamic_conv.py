"""DynamicConv2D (the paper's Task A): a band-robust input convolution, and the stem swap that puts it on any backbone.

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
  ``folded_model`` turns the whole network into the plain backbone over those
  bands (a plain ``cnn_attn`` or ResNet-34), which costs no more than the baseline.

One mechanism for every backbone (``with_dynamic_stem``): the backbone's first
``nn.Conv2d`` is replaced, in place and under its own name, by a DynamicConv2D of the
same geometry, and the backbone's ``forward(x, mask=None)`` hands the mask to it. The
state-dict keys stay the backbone's own (``conv1.*`` for ResNet, ``features.0.0.*`` for
``cnn_attn``), so a folded model is the plain model, keys and all.

For runtimes the stem has a second, static form (``StaticStem``, see there): the
kernel mixing moves onto the input, so the one convolution has a stored weight that
XNNPACK and OpenVINO delegate and INT8 quantizes per channel.

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

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgecnn.data.bands import judged_subsets, presence_mask, subset_name
from edgecnn.errors import UserError
from edgecnn.models.surgery import swap
from edgecnn.models.wave_conv import StaticWave, WaveConv2D, replace_stem, wave_stem

ATTENTION_MODES = ("input", "mask")


class DynamicConv2D(nn.Module):
    """A convolution over a variable set of input bands, with ``num_kernels`` attention-mixed kernel sets.

    Args:
        bands: input bands of the full set (3 for RGB).
        out_channels: output channels.
        kernel_size: square kernel side.
        stride: convolution stride.
        padding: zero padding (default ``kernel_size // 2``: ResNet's stem 7 x 7 pad 3, cnn_attn's 3 x 3 pad 1).
        bias: a bias after the convolution (one per output channel, not mixed), as the conv it replaces has.
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
        padding: int | None = None,
        bias: bool = False,
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
        self.padding = kernel_size // 2 if padding is None else padding
        self.attention_mode = attention
        self.temperature = temperature

        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels, bands, kernel_size, kernel_size))
        for k in range(num_kernels):
            # Same init as ResNet's plain stem, so each set alone is a normal conv1.
            nn.init.kaiming_normal_(self.weight.data[k], mode="fan_out", nonlinearity="relu")

        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

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
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, num_kernels={self.num_kernels}, "
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
            return F.conv2d(x, kernels[0], self.bias, self.stride, self.padding)
        # One kernel per image: fold the batch into the channel axis and convolve once with
        # groups=B, so each image meets only its own kernel (never K separate convolutions).
        batch, _, height, width = x.shape
        out = F.conv2d(
            x.reshape(1, batch * self.bands, height, width),
            kernels.reshape(batch * self.out_channels, self.bands, self.kernel_size, self.kernel_size),
            None, self.stride, self.padding, groups=batch,
        )
        out = out.reshape(batch, self.out_channels, out.shape[-2], out.shape[-1])
        return out if self.bias is None else out + self.bias[:, None, None]

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
                    "attention='mask' variant (cnn_attn_dynconv_mask, resnet34_dynconv_mask)"
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
        conv = nn.Conv2d(len(present), self.out_channels, self.kernel_size, self.stride, self.padding,
                         bias=self.bias is not None)
        conv = conv.to(kernel.device, kernel.dtype)
        conv.weight.copy_(kernel)
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv


@torch.no_grad()
def kernel_usage(stem: DynamicConv2D, x: Tensor, bands: list[str]) -> dict[str, Tensor]:
    """Mean attention per kernel set, for every band subset: ``{subset name: [K]}``.

    Only the attention runs (per-band means and a small MLP), so large batches
    are cheap. For "mask" mode ``x`` only supplies the batch size: the weights
    are the same for every image. Average the results of several batches for a
    dataset-wide figure.

    Args:
        stem: the model's DynamicConv2D (``band_stem(model)``).
        x: images ``[B, bands, H, W]``, normalised as the model sees them.
        bands: band names, in order (``len(bands) == stem.bands``).

    Raises:
        UserError: ``bands`` does not match the stem, or ``x`` has the wrong shape.
    """
    if len(bands) != stem.bands:
        raise UserError(f"kernel_usage: the stem has {stem.bands} bands but bands lists {len(bands)} ({', '.join(bands)})")
    return {
        subset_name(subset, bands): stem.attention_weights(x, presence_mask(subset, bands).to(x)).mean(dim=0)
        for subset in judged_subsets(bands)
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


class StemGains(nn.Module):
    """The float half of ``StaticStem``: the input repeated once per kernel set and scaled by its mixing weight.

    Returns ``[B, K * bands, H, W]`` where channel ``k * bands + b`` is band ``b``
    times ``a_k * mask_b * bands / present`` (``a`` the attention over the kernel
    sets). Everything here is a few hundred multiplies on the mask plus K
    multiplies of the (few-band) input, so it stays in float: quantized per
    tensor to 8 bits, the mixing gains cost about a point of agreement on the
    worst band subsets (``tools/mask_int8_cause.py``, ``docs/quantization.md``).
    Only ops the XNNPACK delegate takes (linear, mm, clamp, div, softmax, cat,
    mul, mean).
    """

    def __init__(self, dyn: DynamicConv2D):
        super().__init__()
        self.bands, self.kernels, self.mode = dyn.bands, dyn.num_kernels, dyn.attention_mode
        self.temperature = dyn.temperature
        self.attention = copy.deepcopy(dyn.attention)
        # mask @ ones counts the present bands as a matrix product (XNNPACK has no sum); the band
        # count is a tensor so that count / present is a division, not a reciprocal (no XNNPACK op).
        self.register_buffer("ones", torch.ones(dyn.bands, 1), persistent=False)
        self.register_buffer("count", torch.full((1, 1), float(dyn.bands)), persistent=False)
        self.register_buffer("all_bands", torch.ones(dyn.bands), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        n, bands, height, width = x.shape
        rows = (self.all_bands if mask is None else mask).reshape(-1, bands)  # [1 or B, bands]
        if self.mode == "input":
            # XNNPACK's mean is a 4-D mean over the last two dims with keepdim, and it has no expand:
            # an artifact's one mask row meets its one image without one (a branch on shapes only).
            means = x.mean(dim=(2, 3), keepdim=True).reshape(n, bands)
            features = torch.cat([means * rows, rows if rows.shape[0] == n else rows.expand(n, bands)], dim=1)
        else:
            features = rows
        attn = torch.softmax(self.attention(features) / self.temperature, dim=-1)  # [R, K]
        scale = self.count / torch.clamp(rows @ self.ones, min=1.0)  # [R, 1]
        # Reshapes, not indexing with None: unsqueeze_copy has no XNNPACK op.
        # The rescale goes on the mask row, not on the attention: OpenVINO 2026.4's CPU plugin crashes
        # compiling softmax(...) * scale with static shapes, fp32 weights and one thread (a segfault in a
        # graph rewrite pass; found by bisecting the stem's ops).
        gains = attn.reshape(-1, self.kernels, 1) * (rows * scale).reshape(-1, 1, bands)  # [R, K, bands]
        # K scaled copies, one 4-D multiply each, then one cat of K distinct tensors (not cat([x] * K) *
        # gains: XNNPACK's partitioner counts distinct cat inputs, 2 to 5).
        gains = gains.reshape(-1, self.kernels * bands, 1, 1)
        copies = [x * gains[:, k * bands : (k + 1) * bands] for k in range(self.kernels)]
        while len(copies) > 5:  # XNNPACK concatenates at most 5 tensors at once
            copies = [torch.cat(copies[i : i + 5], dim=1) if len(copies[i : i + 5]) > 1 else copies[i]
                      for i in range(0, len(copies), 5)]
        return torch.cat(copies, dim=1) if len(copies) > 1 else copies[0]


class StaticStem(nn.Module):
    """A ``DynamicConv2D`` as one convolution with a stored weight: what the mask-input artifacts run.

    A convolution is linear in its kernel and in its input, so mixing the K
    kernel sets by weights ``a_k`` equals convolving the K copies of the input,
    each scaled by ``a_k``, with the K sets side by side:
    ``conv(x, sum_k a_k W_k) = conv(cat_k(a_k x), cat_k(W_k))``. The mixing moves
    onto the input (``StemGains``: ``K x bands`` channels, a few at full
    resolution) and the convolution gets a stored ``[out, K * bands, k, k]``
    weight, which the XNNPACK and OpenVINO delegates take and INT8 quantizes per
    channel like any other. Mixing the outputs instead would cost K full-width
    convolution outputs; mixing the kernel in the graph (``DynamicConv2D``'s
    own forward) leaves the convolution outside the delegate. It costs K times
    the stem's MACs; ``edgecnn prune`` lowers K. Exact in float (up to rounding).
    """

    def __init__(self, dyn: DynamicConv2D):
        super().__init__()
        self.gains = StemGains(dyn)
        k, out, bands, ks = dyn.weight.shape[0], dyn.out_channels, dyn.bands, dyn.kernel_size
        self.conv = nn.Conv2d(k * bands, out, ks, dyn.stride, dyn.padding, bias=dyn.bias is not None)
        with torch.no_grad():
            # [K, out, bands, k, k] -> [out, K * bands, k, k]: input channel k * bands + b is set k's band b.
            self.conv.weight.copy_(dyn.weight.transpose(0, 1).reshape(out, k * bands, ks, ks))
            if dyn.bias is not None:
                self.conv.bias.copy_(dyn.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.conv(self.gains(x, mask))


# -- the stem on any backbone ----------------------------------------------------------------


def with_dynamic_stem(backbone: nn.Module, path: str, num_kernels: int = 4, attention: str = "input") -> nn.Module:
    """Replace ``backbone``'s convolution at ``path`` by a ``DynamicConv2D`` of the same geometry, in place.

    The backbone's ``forward(x, mask=None)`` must hand ``mask`` to that module
    (``ResNet`` and ``CNNAttention`` do). The new stem keeps the name, so the
    state-dict keys are the backbone's. Each kernel set starts as ResNet's stem would (Kaiming).

    Raises:
        UserError: ``path`` is not an ``nn.Conv2d`` with square kernel, stride and padding.
    """
    return replace_stem(backbone, path, "DynamicConv2D", lambda c: DynamicConv2D(
        c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], num_kernels=num_kernels, attention=attention,
        padding=c.padding[0], bias=c.bias is not None))


def band_stem(model: nn.Module) -> DynamicConv2D | None:
    """The model's DynamicConv2D stem, or ``None`` for a plain model."""
    return next((m for m in model.modules() if isinstance(m, DynamicConv2D)), None)


def _stem_path(model: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if isinstance(m, (DynamicConv2D, WaveConv2D)))


def foldable(model: nn.Module) -> bool:
    """Whether ``folded_model`` is exact for ``model``: a mask-attention DynamicConv2D or a WaveConv2D stem."""
    return getattr(band_stem(model), "attention_mode", None) == "mask" or wave_stem(model) is not None


@torch.no_grad()
def folded_model(model: nn.Module, mask: Tensor | Sequence[float], attention_weights: Tensor | None = None) -> nn.Module:
    """The plain backbone over only the present bands, equal to ``model`` for that subset.

    ``folded_model(model, mask)(x[:, present])`` equals ``model(x, mask)`` in
    eval mode (exactly, up to float rounding, for ``attention="mask"``): a copy
    of the model whose stem is the folded ``nn.Conv2d``, so a band-robust
    ``cnn_attn`` folds into a plain ``cnn_attn`` over ``mask.sum()`` bands (same
    class, same keys, the plain model's MACs), in the canonical band order.

    A WaveConv2D stem folds for its current band list (``wave_conv.set_bands``) the same way.

    Args:
        model: a model with a DynamicConv2D stem (``band_stem``) or a WaveConv2D stem.
        mask: presence mask ``[bands]`` (``edgecnn.data.bands.presence_mask``).
        attention_weights: see ``DynamicConv2D.fold`` (approximate fold of "input" mode).

    Raises:
        UserError: no DynamicConv2D or WaveConv2D stem; see ``DynamicConv2D.fold``, ``WaveConv2D.fold``.
    """
    wave = wave_stem(model)
    stem = band_stem(model)
    if stem is None and wave is None:
        raise UserError(f"{type(model).__name__} has no DynamicConv2D stem (nor a WaveConv2D) to fold")
    if wave is not None:
        if attention_weights is not None:
            raise UserError("fold: attention_weights is for a DynamicConv2D stem; a WaveConv2D's kernel is fixed by "
                            "its band list")
        conv = wave.fold(mask)
    else:
        conv = stem.fold(mask, attention_weights)
    plain = copy.deepcopy(model)
    plain.set_submodule(_stem_path(plain), conv)
    return plain.train(model.training)


@torch.no_grad()
def static_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose DynamicConv2D stem is its ``StaticStem`` (a WaveConv2D its ``StaticWave``, for
    its current band list): same outputs, every weight stored."""
    out = copy.deepcopy(model)
    static = {DynamicConv2D: StaticStem, WaveConv2D: StaticWave}
    return swap(out, lambda m, name: type(m) in static, lambda m, name: static[type(m)](m).train(m.training))


def mask_rows(x: Tensor, mask: Tensor | None) -> Tensor:
    """The presence mask as one row per image, ``[B, bands]``, from ``None`` (every band), ``[bands]``
    or ``[B, bands]``.

    Branches only on shapes (static under ``torch.export``); a ``[bands]`` mask with a batch of
    one is only reshaped, so an export at batch 1 holds no ``expand`` (which XNNPACK does not take).

    Raises:
        UserError: ``mask`` is not ``[bands]`` or ``[B, bands]`` for ``x [B, bands, H, W]``.
    """
    batch, bands = x.shape[0], x.shape[1]
    if mask is None:
        return torch.ones(batch, bands, dtype=x.dtype, device=x.device)
    if mask.dim() not in (1, 2) or mask.shape[-1] != bands or (mask.dim() == 2 and mask.shape[0] != batch):
        raise UserError(f"presence mask must be [{bands}] or [batch, {bands}] but got {list(mask.shape)}; "
                        "build it with edgecnn.data.bands.presence_mask")
    mask = mask.to(x)
    if mask.dim() == 2:
        return mask
    mask = mask.reshape(1, bands)
    return mask if batch == 1 else mask.expand(batch, bands)


class MaskRows(nn.Module):
    """``net(x, mask_rows(x, mask))``: a band-aware model whose graph always sees a ``[B, bands]`` mask.

    QAT captures ``static_model(model)`` once, with a per-image mask and a dynamic
    batch (PT2E), or hooks it op by op (NNCF); training then feeds it per-batch
    (``[bands]``) or per-image masks, evaluation none, and the artifact a ``[bands]``
    mask. Normalising here keeps the captured graph, and NNCF's op names, one and the same.
    ``band_aware`` tells ``registry.takes_mask`` it takes a mask (its stem is a ``StaticStem``).
    """

    band_aware = True

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.net(x, mask_rows(x, mask))
