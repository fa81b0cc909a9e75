"""WaveConv2D: a first convolution whose kernel for each band is generated from the band's wavelength.

A band-robust stem (``DynamicConv2D``) knows bands by their position, so a model trained on
Sentinel-2 cannot read a Landsat or PlanetScope file. DOFA's idea, at the size of a CNN stem: the
stem holds a *spectral kernel*, one ``[out, k, k]`` kernel at each of ``KNOTS`` wavelengths spaced
evenly in log-wavelength (6.4% apart: 45 nm at 700 nm, closer than Sentinel-2's red-edge bands),
and a band's kernel slice is what that spectral kernel looks like through the band's response:
the knots weighted by a Gaussian of the band's centre and width (``band_weights``, the band's
embedding), normalised to sum 1. A sensor samples a scene's spectrum through its bands, and the
stem samples its kernel through the same bands, so two sensors that see one scene alike get alike
kernels, and an unseen band between two trained ones gets a blend of their kernels. The stem holds
no weight per input channel, so any band list can be fed: ``set_bands(model, bands)`` switches
the sensor.

Why a linear generator and not DOFA's MLP: an MLP fed smooth wavelength features starts out
giving every band nearly the same kernel (88% of the kernels' energy common to all bands at
initialisation, measured), so the stem begins as a panchromatic filter and SGD is slow to learn the
band contrasts that spectral classes need (49.7% after 10 epochs on the built-in spectral scenes,
where a plain convolution reaches 85%). Knots far apart start independent, as a plain
convolution's input channels do, and the kernel is linear in its weights, so it trains like one.

With ``context`` on, each band's weights also get a learned term from the mean weights of the
sensor's whole band list (a DeepSets term, zero at initialisation), so a band's kernel can depend
on what its neighbours cover. It depends on the band *list*, never on the presence mask: for a
fixed sensor every weight is a constant, which is what lets the stem fold.

The bands are summed as a quadrature of the spectrum, not averaged: each band's slice is weighted
by its *share* of the sensor's spectrum (``band_shares``: the stretch of log-wavelength closer to it
than to any other band), so the stem computes the same integral, kernel times spectrum, whatever the
sensor's sampling. A plain mean would weight Sentinel-2's five red-edge and NIR bands five times
what a PlanetScope file gives the same stretch, and a kernel trained on one would not fit the other
(measured: Landsat-8 read zero-shot by a Sentinel-2 run, 50.7% with the mean, 79.3% with the
shares). A presence mask renormalises over the present bands' shares (``1 / sum of present shares``,
1 with every band there): the BatchNorm after the stem sees activations of one scale.

For one band list the generated kernel is a constant, so:

* ``fold(mask)`` is a plain ``nn.Conv2d`` over the present bands (exact; the plain model's MACs);
* ``StaticWave`` is the mask-input artifact's form: ``x * (mask / present shares)`` then one
  convolution with the stored kernel, which XNNPACK and OpenVINO take whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgecnn.core.sensors import MAX_NM, MIN_NM, Band
from edgecnn.errors import UserError

# The spectral kernel's knots: evenly spaced in log-wavelength over MIN_NM..MAX_NM.
KNOTS = 64
_LOG_KNOTS = torch.linspace(math.log(MIN_NM), math.log(MAX_NM), KNOTS)
_SPACING = math.log(MAX_NM / MIN_NM) / (KNOTS - 1)
# A Gaussian's standard deviation from its full width at half maximum.
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def band_weights(wavelengths: Tensor) -> Tensor:
    """``[bands, 2]`` (centre, fwhm in nm; fwhm 0 = unknown) -> ``[bands, KNOTS]``, each row summing to 1.

    The band's response as a Gaussian in log-wavelength (its width from the fwhm), smoothed by one
    knot spacing so that a narrow band still blends its nearest knots (its kernel then moves smoothly
    with its centre instead of jumping from knot to knot).
    """
    center, fwhm = wavelengths[:, 0:1], wavelengths[:, 1:2]
    width = fwhm.clamp(min=0.0) * _FWHM_TO_SIGMA / center  # in log-wavelength
    var = _SPACING ** 2 + width ** 2
    w = torch.exp(-(torch.log(center) - _LOG_KNOTS.to(wavelengths)) ** 2 / (2.0 * var))
    return w / w.sum(dim=1, keepdim=True)


def band_shares(wavelengths: Tensor) -> Tensor:
    """``[bands, 2]`` -> ``[bands]``: each band's share of the sensor's spectrum, summing to 1.

    A band's share is its cell in log-wavelength: half the gap to each neighbour (a band at an end
    counts its one gap twice), at least one knot spacing (so bands at one centre share, not vanish).
    """
    logc = torch.log(wavelengths[:, 0])
    if len(logc) == 1:
        return torch.ones(1, dtype=wavelengths.dtype, device=wavelengths.device)
    order = logc.argsort()
    gaps = logc[order].diff()
    cells = ((torch.cat([gaps[:1], gaps]) + torch.cat([gaps, gaps[-1:]])) / 2).clamp(min=_SPACING)
    shares = torch.empty_like(cells)
    shares[order] = cells
    return shares / shares.sum()


def wavelength_table(bands: Sequence[Band], model: str = "this wavelength-conditioned model") -> Tensor:
    """``[bands, 2]``: each band's centre and width in nm (0 for an unknown width).

    Raises:
        UserError: a band has no centre wavelength, or the list is empty.
    """
    if not bands:
        raise UserError(f"{model} got no bands; name at least one, e.g. data.bands=sentinel2")
    missing = [b.name for b in bands if b.center_nm is None]
    if missing:
        raise UserError(f"band {missing[0]} has no wavelength, but {model} generates each band's kernel from it; "
                        f"give data.bands as a sensor preset (sentinel2) or {{name, center_nm, fwhm_nm}} items")
    return torch.tensor([[b.center_nm, b.fwhm_nm or 0.0] for b in bands], dtype=torch.float32)


class WaveConv2D(nn.Module):
    """A convolution over any band list, each band's kernel slice generated from its wavelength and width.

    Args:
        bands: the band list to start with (``Band`` with ``center_nm``), or a band count, in which
            case ``set_bands`` must be called before the first forward.
        out_channels, kernel_size, stride, padding, bias: the geometry of the convolution it replaces.
        context: each band's knot weights also get a learned term from the whole band list's.

    Raises:
        UserError: a band without a wavelength, or a size below 1.
    """

    def __init__(self, bands: Sequence[Band] | int, out_channels: int = 64, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, bias: bool = False, context: bool = True):
        super().__init__()
        if min(out_channels, kernel_size) < 1:
            raise UserError(f"WaveConv2D sizes must be at least 1 (out_channels={out_channels}, "
                            f"kernel_size={kernel_size})")
        self.out_channels, self.kernel_size, self.stride = out_channels, kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.context = context
        # nn.Conv2d's own initialisation, for a 10-band convolution (a multispectral sensor's count): the
        # BatchNorm after the stem makes its scale irrelevant to the output, but not to how fast SGD moves it.
        bound = 1.0 / math.sqrt(10 * kernel_size * kernel_size)
        self.spectral = nn.Parameter(torch.empty(KNOTS, out_channels, kernel_size, kernel_size).uniform_(-bound, bound))
        # Zero at first: the context term starts as nothing and grows only where it helps.
        self.mix = nn.Parameter(torch.zeros(KNOTS, KNOTS)) if context else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # The sensor's bands: not a weight (any list may be set) and not in checkpoints (the recipe has them).
        count = bands if isinstance(bands, int) else len(bands)
        self.register_buffer("wavelengths", torch.zeros(count, 2), persistent=False)
        self.register_buffer("shares", torch.full((count,), 1.0 / count), persistent=False)
        self.band_names: list[str] = []
        if not isinstance(bands, int):
            self.set_bands(bands)

    @property
    def bands(self) -> int:
        return self.wavelengths.shape[0]

    def extra_repr(self) -> str:
        names = ",".join(self.band_names) or "unset"
        return (f"bands={self.bands} ({names}), out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, knots={KNOTS}, "
                f"context={self.context}")

    def set_bands(self, bands: Sequence[Band]) -> None:
        """Switch to another band list (another sensor); the weights stay.

        Raises:
            UserError: a band without a wavelength, or no band.
        """
        table = wavelength_table(bands)
        self.wavelengths = table.to(self.spectral.device)
        self.shares = band_shares(self.wavelengths)
        self.band_names = [b.name for b in bands]

    def kernel(self) -> Tensor:
        """The convolution's weight for the current band list, ``[out, bands, k, k]``: each band's slice is the
        spectral kernel seen through the band, times the band's share of the spectrum."""
        if not self.band_names:
            raise UserError("WaveConv2D has no bands yet; call edgecnn.models.wave_conv.set_bands(model, bands)")
        weights = band_weights(self.wavelengths)  # [bands, KNOTS]
        if self.mix is not None:
            weights = weights + weights.mean(dim=0, keepdim=True) @ self.mix
        return torch.einsum("bn,nokl->obkl", weights * self.shares[:, None], self.spectral)

    def _rows(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        if x.dim() != 4 or x.shape[1] != self.bands:
            raise UserError(f"WaveConv2D is set for {self.bands} bands ({', '.join(self.band_names)}) but got images "
                            f"{list(x.shape)}; set_bands(model, bands) for the sensor the images come from")
        if mask is None:
            return None
        if mask.dim() not in (1, 2) or mask.shape[-1] != self.bands or (mask.dim() == 2 and mask.shape[0] != x.shape[0]):
            raise UserError(f"presence mask must be [{self.bands}] or [batch, {self.bands}] but got "
                            f"{list(mask.shape)}; build it with edgecnn.data.bands.presence_mask")
        return mask.to(x)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Convolve the present bands of ``x`` (``[B, bands, H, W]``; ``mask`` ``[bands]`` or ``[B, bands]``)."""
        mask = self._rows(x, mask)
        w = self.kernel()
        if mask is None:
            return F.conv2d(x, w, self.bias, self.stride, self.padding)
        # torch.where, not x * mask: a lost band may hold NaN, and 0 * NaN is NaN.
        x = torch.where(mask[..., None, None] > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
        # Renormalised over the present bands' shares (as DynamicConv2D's bands / present). clamp: no band
        # gives 0, not NaN.
        scale = 1.0 / (mask.reshape(-1, self.bands) @ self.shares).clamp(min=1e-6)
        out = F.conv2d(x, w, None, self.stride, self.padding) * scale.reshape(-1, 1, 1, 1)
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)

    @torch.no_grad()
    def fold(self, mask: Tensor | Sequence[float] | None = None) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` over the present bands, equal to this module for the current band list.

        Args:
            mask: presence mask ``[bands]`` of 0/1 with at least one 1; ``None``: every band.

        Raises:
            UserError: the mask is not ``bands`` values of 0/1 with at least one 1.
        """
        w = self.kernel()
        mask = torch.ones(self.bands) if mask is None else torch.as_tensor(mask, dtype=w.dtype)
        mask = mask.to(w.device, w.dtype)
        if mask.shape != (self.bands,) or not bool(((mask == 0) | (mask == 1)).all()) or mask.sum() < 1:
            raise UserError(f"fold: the presence mask must be {self.bands} values of 0 or 1 with at least one 1 "
                            f"(bands {', '.join(self.band_names)}), got {mask.tolist()}; a model cannot fold "
                            "with every band lost")
        present = mask.nonzero().flatten()
        conv = nn.Conv2d(len(present), self.out_channels, self.kernel_size, self.stride, self.padding,
                         bias=self.bias is not None).to(w.device, w.dtype)
        conv.weight.copy_(w[:, present] / self.shares[present].sum())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv


class WaveGains(nn.Module):
    """The float half of ``StaticWave``: ``x * (mask / present shares)``, one gain per band.

    Only ops the XNNPACK delegate takes: a matrix product sums the present bands' shares (it has no
    sum), and 1 is a tensor so that 1 / shares is a division (it has no reciprocal).
    """

    def __init__(self, shares: Tensor):
        super().__init__()
        self.bands = len(shares)
        self.register_buffer("shares", shares.detach().reshape(-1, 1).clone(), persistent=False)
        self.register_buffer("one", torch.ones(1, 1), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return x
        rows = mask.reshape(-1, self.bands)
        gains = rows * (self.one / torch.clamp(rows @ self.shares, min=1e-6))
        return x * gains.reshape(-1, self.bands, 1, 1)


class StaticWave(nn.Module):
    """A ``WaveConv2D`` for its current band list as gains and one convolution with a stored weight.

    What a mask-input artifact of a wave model runs: every weight is a constant, so the whole stem
    is delegated and INT8 quantizes the convolution per channel like any other. Missing bands must
    arrive zero-filled (as the artifact's contract says); exact in float.
    """

    def __init__(self, wave: WaveConv2D):
        super().__init__()
        self.gains = WaveGains(wave.shares)
        self.conv = wave.fold()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.conv(self.gains(x, mask))


# -- the stem on a model -----------------------------------------------------------------------------


def wave_stem(model: nn.Module) -> WaveConv2D | None:
    """The model's WaveConv2D, or ``None``."""
    return next((m for m in model.modules() if isinstance(m, WaveConv2D)), None)


def set_bands(model: nn.Module, bands: Sequence[Band]) -> nn.Module:
    """Point a wave model at a sensor's bands (in file order); a no-op for any other model.

    Raises:
        UserError: a band without a wavelength, or no band (wave models only).
    """
    stem = wave_stem(model)
    if stem is not None:
        stem.set_bands(bands)
    return model


def square_conv(backbone: nn.Module, path: str, kind: str) -> nn.Conv2d:
    """The ``nn.Conv2d`` at ``path`` that a stem of ``kind`` replaces.

    Raises:
        UserError: ``path`` is not a plain square ``nn.Conv2d``.
    """
    conv = backbone.get_submodule(path)
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and len(set(conv.kernel_size)) == 1
            and len(set(conv.stride)) == 1 and len(set(conv.padding)) == 1):
        raise UserError(f"{path} of {type(backbone).__name__} is not a plain square nn.Conv2d; "
                        f"{kind} replaces only such a first convolution")
    return conv


def replace_stem(backbone: nn.Module, path: str, kind: str, make: Callable[[nn.Conv2d], nn.Module]) -> nn.Module:
    """Put ``make(conv)`` in place of ``backbone``'s first convolution at ``path``, under the same name.

    The one mechanism behind every band-aware stem: the state-dict keys stay the backbone's, and the
    backbone's ``forward(x, mask=None)`` hands ``mask`` to the new module.
    """
    backbone.set_submodule(path, make(square_conv(backbone, path, kind)))
    return backbone


def with_wave_stem(backbone: nn.Module, path: str, context: bool = True) -> nn.Module:
    """Replace ``backbone``'s convolution at ``path`` by a ``WaveConv2D`` of the same geometry, in place."""
    return replace_stem(backbone, path, "WaveConv2D", lambda c: WaveConv2D(
        c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0], bias=c.bias is not None,
        context=context))
