"""Reflectance spectra of surface materials, and what a sensor's bands see of them.

The built-in data seen through a sensor (``edgecnn data synth --sensor NAME``) gives each class a
material. A material is a smooth reflectance curve from 350 to 2500 nm with the features that
tell real materials apart: vegetation's chlorophyll absorptions, green peak and red edge, its
NIR plateau and the leaf-water absorptions at 1450 and 1950 nm; water's fall to almost nothing
in the NIR; soil's rising slope; snow's bright visible and dark SWIR; and so on. The curves are
hand-made from sigmoids and Gaussians to the shapes of the USGS and ECOSTRESS spectral library
entries for these materials (levels within the ranges those libraries show, not fitted to one
sample).

A band sees the curve weighted by its spectral response: a Gaussian of the band's FWHM around its
centre, normalised to unit area. Integration is linear, so a mixture of materials is seen as the
same mixture of what the band sees of each: ``band_table`` is all a renderer needs.

NumPy only.
"""

from __future__ import annotations

import numpy as np

from edgecnn.core.sensors import Band

GRID = np.arange(350.0, 2501.0, 1.0)  # nm: the reflective range, where these curves are defined
DEFAULT_FWHM = 20.0  # a band given without a width is rendered as a narrow band


def _sig(centre: float, width: float) -> np.ndarray:
    """A smooth step up at ``centre`` (0 before, 1 after), ``width`` nm wide."""
    return 1 / (1 + np.exp(-(GRID - centre) / width))


def _gauss(centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((GRID - centre) / width) ** 2)


def _leaf_water(depth: float) -> np.ndarray:
    """Liquid water in leaves: weak dips at 970 and 1200 nm, deep ones at 1450 and 1950 (a multiplier)."""
    return 1 - depth * (0.06 * _gauss(970, 25) + 0.12 * _gauss(1200, 40) + 0.55 * _gauss(1450, 60)
                        + 0.75 * _gauss(1950, 80))


def _green_vegetation(nir: float, green: float, swir: float) -> np.ndarray:
    """A green canopy: chlorophyll keeps blue and red low with a green bump between; the red edge
    (about 700-750 nm) climbs to the NIR plateau, which falls in steps through the SWIR."""
    visible = 0.03 + green * _gauss(550, 30) - 0.01 * _gauss(670, 20)
    infrared = nir - (nir - swir) * _sig(1350, 50) - 0.45 * swir * _sig(2000, 70)
    edge = _sig(718, 13)
    return (visible * (1 - edge) + infrared * edge) * _leaf_water(1.0)


def vegetation() -> np.ndarray:
    return _green_vegetation(nir=0.46, green=0.075, swir=0.26)


def conifer() -> np.ndarray:
    # Darker than a broadleaf canopy everywhere (shadowed needles), the NIR most: a lower plateau.
    return _green_vegetation(nir=0.27, green=0.04, swir=0.14)


def dry_grass() -> np.ndarray:
    """Senescent grass: no chlorophyll, so no red trough and only a soft edge; cellulose and lignin dip
    at 2100 nm; less water than a green leaf, so a brighter SWIR."""
    r = 0.06 + 0.22 * _sig(610, 45) + 0.08 * _sig(760, 50) - 0.06 * _sig(1800, 200) - 0.07 * _gauss(2100, 45)
    return r * _leaf_water(0.45)


def water() -> np.ndarray:
    """Clear water: a little blue-green, then absorbed: almost nothing from the NIR on."""
    r = 0.004 + 0.065 * np.exp(-(GRID - 400) / 180) * (1 - _sig(720, 25))
    return r


def turbid_water() -> np.ndarray:
    """Sediment-laden water: brighter green to red (the scattering peak about 580-700 nm), still dark in the SWIR."""
    r = 0.01 + 0.055 * _gauss(620, 80) + 0.012 * _gauss(810, 25)
    return r * (1 - 0.8 * _sig(920, 40))


def soil() -> np.ndarray:
    """Bare soil: reflectance rising with wavelength (iron oxides dim the blue), shallow water and
    hydroxyl dips at 1400 and 1900 nm, a clay dip at 2200."""
    r = 0.07 + 0.28 * (1 - np.exp(-(GRID - 350) / 500)) - 0.015 * _gauss(880, 80)
    return r * (1 - 0.12 * _gauss(1420, 40) - 0.18 * _gauss(1930, 50) - 0.08 * _gauss(2210, 30))


def sand() -> np.ndarray:
    """Bright quartz sand: high and rising to a SWIR plateau, few features."""
    r = 0.16 + 0.36 * (1 - np.exp(-(GRID - 350) / 380))
    return r * (1 - 0.05 * _gauss(1420, 40) - 0.08 * _gauss(1930, 50))


def snow() -> np.ndarray:
    """Fresh snow: near-white in the visible, falling through the NIR (ice absorption at 1030), dark
    in the SWIR with small bumps at 1800 and 2250 nm."""
    r = (0.96 - 0.08 * _sig(750, 80) - 0.35 * _sig(1050, 60) - 0.50 * _sig(1400, 40) - 0.06 * _gauss(1030, 30)
         + 0.14 * _gauss(1790, 90) + 0.06 * _gauss(2240, 90))
    return np.clip(r, 0.01, None)


def concrete() -> np.ndarray:
    """Concrete and roofs: moderate and almost flat, a slight rise into the NIR."""
    return 0.20 + 0.06 * _sig(600, 150) + 0.04 * (GRID - 400) / 2100 - 0.02 * _gauss(2330, 60)


def asphalt() -> np.ndarray:
    """Asphalt: dark, rising slowly with wavelength."""
    return 0.05 + 0.07 * (GRID - 350) / 2150


# The materials, in class order: the first six are the multispectral quickstart's classes.
MATERIALS = {
    "vegetation": vegetation, "water": water, "soil": soil, "snow": snow, "concrete": concrete,
    "dry_grass": dry_grass, "sand": sand, "asphalt": asphalt, "conifer": conifer, "turbid_water": turbid_water,
}


def curves() -> np.ndarray:
    """Every material's reflectance on ``GRID``: float64 ``[materials, len(GRID)]``, in ``MATERIALS`` order."""
    return np.stack([f() for f in MATERIALS.values()])


def responses(bands: list[Band]) -> np.ndarray:
    """Each band's spectral response on ``GRID``, unit area: ``[bands, len(GRID)]``.

    Raises:
        ValueError: a band has no wavelength, or lies outside the curves' 350-2500 nm (a thermal band).
    """
    out = []
    for b in bands:
        if b.center_nm is None:
            raise ValueError(f"band '{b.name}' has no wavelength; the spectra need a centre (a sensor preset "
                             f"or {{name, center_nm, fwhm_nm}})")
        if not GRID[0] <= b.center_nm <= GRID[-1]:
            raise ValueError(f"band '{b.name}' at {b.center_nm:g} nm is outside the reflective range "
                             f"{GRID[0]:.0f}-{GRID[-1]:.0f} nm the material spectra cover (thermal bands emit "
                             f"rather than reflect); pick the reflective bands, e.g. landsat8:B2,B3,B4,B5")
        sigma = (b.fwhm_nm or DEFAULT_FWHM) / (2 * np.sqrt(2 * np.log(2)))
        w = np.exp(-0.5 * ((GRID - b.center_nm) / sigma) ** 2)
        out.append(w / w.sum())  # a band near the grid's end is normalised over what the grid holds
    return np.stack(out)


def band_table(bands: list[Band], spectra: np.ndarray | None = None) -> np.ndarray:
    """What each band sees of each material: ``[materials, bands]`` reflectance (``spectra`` default: ``curves()``)."""
    return (curves() if spectra is None else spectra) @ responses(bands).T


def tilt_table(bands: list[Band]) -> np.ndarray:
    """What each band sees of the unit spectral tilt ``(wavelength - 1000 nm) / 1000 nm``: ``[bands]``.

    A scene perturbs each object's curve by a random multiple of this tilt (within-class variety that
    every sensor sees consistently, because it too is a spectrum).
    """
    return responses(bands) @ ((GRID - 1000) / 1000)
