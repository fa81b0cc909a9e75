"""Bands with wavelengths: sensor presets and what ``data.bands`` may say.

A band is a name, a centre wavelength and a width (full width at half maximum), both in nm.
The presets live in ``sensors.yaml`` next to this file, each sensor with its sources.
``resolve_bands`` turns any form ``data.bands`` accepts into a list of ``Band``:

- plain names, as before wavelengths: ``[R, G, B, NIR]`` (bands without a wavelength);
- a preset: ``sentinel2`` (its usual bands, in file order);
- a pick from a preset, in file order: ``sentinel2:B04,B03,B02,B08``, or ``{preset: sentinel2, pick: [B04, B03]}``;
- bands spelled out: ``[{name: red, center_nm: 665, fwhm_nm: 30}, ...]`` (plain names may be mixed in).

Torch-free and config-free: the schema validates recipes with it, and ``data synth`` renders through it.
Errors are ``BandError`` (a ``ValueError``, so the schema collects them as one line each).
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.safeyaml import safe_load

PRESETS_FILE = Path(__file__).with_name("sensors.yaml")

# Wavelengths a band may have: from the near ultraviolet to the end of the thermal infrared. A value
# below the range is most often micrometres typed where nanometres are meant.
MIN_NM, MAX_NM = 300.0, 15_000.0


class BandError(ValueError):
    """A band list that cannot be used; the message is one line and says what to write instead."""


@dataclass(frozen=True)
class Band:
    name: str
    center_nm: float | None = None  # None: a band known by name only (recipes written before wavelengths)
    fwhm_nm: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The recipe form of a band with a wavelength (what ``data.bands`` is written back as)."""
        out: dict[str, Any] = {"name": self.name, "center_nm": self.center_nm}
        if self.fwhm_nm is not None:
            out["fwhm_nm"] = self.fwhm_nm
        return out


@dataclass(frozen=True)
class Sensor:
    key: str
    title: str
    source: str
    bands: tuple[Band, ...]  # the full band table, in the agency's order
    approximate: tuple[str, ...] = ()
    note: str = ""

    def band(self, name: str) -> Band | None:
        """The band called ``name`` (any case), or None."""
        return next((b for b in self.bands if b.name.lower() == name.lower()), None)


@dataclass(frozen=True)
class Preset:
    name: str
    sensor: Sensor
    bands: tuple[Band, ...]  # the preset's default band list, in file order


@functools.cache
def presets() -> dict[str, Preset]:
    """Every preset in ``sensors.yaml``, by name (read once)."""
    tree = safe_load(PRESETS_FILE.read_text())
    sensors = {}
    for key, s in tree["sensors"].items():
        bands = tuple(Band(name, float(c), float(w)) for name, (c, w) in s["bands"].items())
        sensors[key] = Sensor(key, s["title"], " ".join(s["source"].split()), bands,
                              tuple(s.get("approximate", ())), " ".join(s.get("note", "").split()))
    out = {}
    for name, p in tree["presets"].items():
        sensor = sensors[p["sensor"]]
        picked = p.get("bands")
        bands = sensor.bands if picked is None else tuple(sensor.band(b) for b in picked)
        assert all(bands), f"{PRESETS_FILE}: preset {name} names a band its sensor lacks"  # a broken shipped file
        out[name] = Preset(name, sensor, bands)
    return out


def resolve_bands(value: Any) -> list[Band]:
    """The bands ``data.bands`` describes, in file order.

    Args:
        value: a preset name or ``preset:pick`` string, a ``{preset, pick}`` mapping, or a list whose
            items are band names or ``{name, center_nm[, fwhm_nm]}`` mappings.

    Raises:
        BandError: an unknown preset or band (with "did you mean"), a wavelength outside
            ``MIN_NM``..``MAX_NM`` nm, a width that is not positive, two bands with one name, an empty list.
    """
    if isinstance(value, str):
        preset, sep, pick = value.partition(":")
        bands = _pick(preset.strip(), pick.split(",") if sep else None)
    elif isinstance(value, dict):
        unknown = set(value) - {"preset", "pick"}
        if unknown or "preset" not in value:
            raise BandError(f"a mapping in data.bands takes preset and pick, e.g. {{preset: sentinel2, pick: "
                            f"[B04, B03, B02]}}; for one band write a list: [{{name: red, center_nm: 665}}]")
        pick = value.get("pick")
        bands = _pick(str(value["preset"]), pick.split(",") if isinstance(pick, str) else pick)
    elif isinstance(value, (list, tuple)):
        for item in value:
            # [sentinel2] is a one-band list to YAML, but a preset to whoever wrote it.
            if isinstance(item, str) and item.partition(":")[0].strip() in presets():
                raise BandError(f"'{item}' in a list is read as a band name; for the preset write it without "
                                f"brackets (data.bands: {item}), or name the band otherwise")
        bands = [_one_band(item, i) for i, item in enumerate(value)]
    else:
        raise BandError(f"expected band names, a sensor preset ({_preset_list()}) or {{name, center_nm, fwhm_nm}} "
                        f"items, got {type(value).__name__}")
    if not bands:
        raise BandError("no bands: name at least one, or a sensor preset such as sentinel2")
    seen: dict[str, str] = {}  # names compare without case, as --channels reads them
    for b in bands:
        first = seen.get(b.name.lower())
        if first is not None:
            both = f"'{b.name}'" if first == b.name else f"'{first}' and '{b.name}'"
            raise BandError(f"two bands are named {both}: names must be unique (without regard to case); "
                            f"rename one, or pick each band once")
        seen[b.name.lower()] = b.name
    return bands


def _preset_list() -> str:
    return ", ".join(presets())


def _pick(preset: str, pick: list | None) -> list[Band]:
    table = presets()
    if preset not in table:
        close = sorted(difflib.get_close_matches(preset.lower(), list(table), n=3, cutoff=0.6))
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise BandError(f"unknown sensor preset '{preset}'; {hint}presets: {_preset_list()} "
                        f"(or give band names, or {{name, center_nm, fwhm_nm}} items)")
    p = table[preset]
    if pick is None:
        return list(p.bands)
    out = []
    for item in pick:
        name = str(item).strip()
        band = p.sensor.band(name)
        if band is None:
            names = {b.name.upper(): b.name for b in p.sensor.bands}  # matched without case, as band() matches
            close = difflib.get_close_matches(name.upper(), list(names), n=1, cutoff=0.5)
            hint = f"did you mean '{names[close[0]]}'? " if close else ""
            raise BandError(f"{preset} has no band '{name}'; {hint}its bands: {', '.join(names.values())}")
        out.append(band)
    return out


def _one_band(item: Any, i: int) -> Band:
    if isinstance(item, str):
        return Band(_name(item, i))
    if not isinstance(item, dict):
        raise BandError(f"band {i + 1}: expected a name or {{name, center_nm, fwhm_nm}}, got {item!r}")
    unknown = set(item) - {"name", "center_nm", "fwhm_nm"}
    if unknown or "name" not in item:
        raise BandError(f"band {i + 1} {item!r}: a band has name, center_nm and optionally fwhm_nm, in nm, "
                        f"e.g. {{name: red, center_nm: 665, fwhm_nm: 30}}")
    name = _name(item["name"], i)
    center, fwhm = item.get("center_nm"), item.get("fwhm_nm")
    if center is None:
        if fwhm is not None:
            raise BandError(f"band '{name}': fwhm_nm without center_nm; give its centre wavelength too")
        return Band(name)
    center = _number(center, name, "center_nm")
    if not MIN_NM <= center <= MAX_NM:
        hint = f" (in micrometres? {center} um is {center * 1000:g} nm)" if MIN_NM <= center * 1000 <= MAX_NM else ""
        raise BandError(f"band '{name}': center_nm {center:g} is outside {MIN_NM:,.0f}-{MAX_NM:,.0f} nm{hint}; "
                        f"give the centre wavelength in nanometres, e.g. 665 for red")
    if fwhm is not None:
        fwhm = _number(fwhm, name, "fwhm_nm")
        if fwhm <= 0:
            raise BandError(f"band '{name}': fwhm_nm {fwhm:g} must be above 0 nm (or leave it out)")
    return Band(name, center, fwhm)


def _name(name: Any, i: int) -> str:
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise BandError(f"band {i + 1}: name {name!r} must be non-empty text without ','")
    return name.strip()


def _number(value: Any, name: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BandError(f"band '{name}': {key} {value!r} is not a number of nm")
    return float(value)


def bands_text(bands: list[Band]) -> str:
    """``B04 664.6 nm, B08 832.8 nm`` (names alone for bands without a wavelength), for messages."""
    return ", ".join(b.name if b.center_nm is None else f"{b.name} {b.center_nm:g} nm" for b in bands)


def interpolate_stats(known: list[Band], mean: list[float], std: list[float],
                      wanted: list[Band]) -> tuple[list[float], list[float], list[str]]:
    """Per-band mean and std for ``wanted`` bands from those of ``known`` bands, by wavelength.

    For normalising a sensor the run never saw, when its own files cannot be measured. Between two
    known centres the values are interpolated linearly in wavelength; beyond the known range they
    are the nearest known band's, and the band is named in the notes with its distance in nm. Only
    meaningful when both sensors' files are in one unit (e.g. reflectance x 10,000): a sensor stored
    otherwise needs its own statistics (``edgecnn data stats``).

    Returns:
        ``(mean, std, notes)``: one mean and std per wanted band, and one line per wanted band
        that lies outside the known range.

    Raises:
        BandError: a band on either side has no wavelength, or ``mean``/``std`` do not match ``known``.
    """
    import numpy as np

    if len(mean) != len(known) or len(std) != len(known):
        raise BandError(f"{len(known)} known bands but {len(mean)} means and {len(std)} stds; give one per band")
    for side, bands in (("known", known), ("wanted", wanted)):
        missing = [b.name for b in bands if b.center_nm is None]
        if missing:
            raise BandError(f"{side} band {missing[0]} has no wavelength; interpolating by wavelength needs a "
                            f"centre for every band (a sensor preset or {{name, center_nm}} items)")
    order = np.argsort([b.center_nm for b in known], kind="stable")
    x = np.array([known[i].center_nm for i in order])
    at = np.array([b.center_nm for b in wanted])
    m = np.interp(at, x, np.asarray(mean, dtype=float)[order])
    s = np.interp(at, x, np.asarray(std, dtype=float)[order])
    notes = []
    for b in wanted:
        gap = max(x[0] - b.center_nm, b.center_nm - x[-1])
        if gap > 0:
            edge = known[order[0]] if b.center_nm < x[0] else known[order[-1]]
            notes.append(f"{b.name} at {b.center_nm:g} nm is {round(gap, 1):g} nm outside the known bands "
                         f"({x[0]:g}-{x[-1]:g} nm): given {edge.name}'s statistics")
    return [float(v) for v in m], [float(v) for v in s], notes


def preset_name(bands: list[Band]) -> str | None:
    """The preset whose band list is exactly ``bands`` (names and wavelengths, in order), or None."""
    key = [(b.name, b.center_nm, b.fwhm_nm) for b in bands]
    return next((name for name, p in presets().items()
                 if [(b.name, b.center_nm, b.fwhm_nm) for b in p.bands] == key), None)


def coverage_gaps(trained: list[Band], wanted: list[Band]) -> list[str]:
    """One line per wanted band whose response overlaps no trained band's, naming the gap in nm.

    A band spans its centre +- fwhm / 2 (its centre alone without a width). A wanted band that
    overlaps none of the trained spans gets a kernel the generator never made for that part of the
    spectrum: interpolated between the nearest trained bands, or extrapolated beyond the trained
    range. Bands without a wavelength are left out (a wave model never has them).
    """
    def span(b: Band) -> tuple[float, float]:
        return b.center_nm - (b.fwhm_nm or 0) / 2, b.center_nm + (b.fwhm_nm or 0) / 2

    known = [(b, *span(b)) for b in trained if b.center_nm is not None]
    if not known:
        return []
    low, high = min(k[1] for k in known), max(k[2] for k in known)
    out = []
    for b in wanted:
        if b.center_nm is None:
            continue
        lo, hi = span(b)
        gap, near = min(((max(k_lo - hi, lo - k_hi, 0.0), k) for k, k_lo, k_hi in known), key=lambda g: g[0])
        if gap > 0:
            how = "interpolated" if low <= b.center_nm <= high else "extrapolated"
            out.append(f"band {b.name} at {b.center_nm:g} nm overlaps no training band: {gap:.0f} nm from the "
                       f"nearest ({near.name} {near.center_nm:g} nm; trained {low:.0f}-{high:.0f} nm), so its "
                       f"kernel is {how}; expect lower accuracy")
    return out


# How far apart two centres may lie for one band to stand in for the other, without wavelength conditioning:
# about a visible band's width. Landsat-8's coastal band (443 nm) is 49 nm from Sentinel-2's blue, but
# Landsat's own blue (482 nm) is nearer and takes that slot first.
MATCH_GAP_NM = 50.0


def match_bands(target: list[Band], trained: list[Band], max_gap_nm: float = MATCH_GAP_NM) -> list[int | None]:
    """Which trained band's slot each target band fills, for a model that knows bands by position only.

    A band goes to the trained band of the same name (without regard to case) unless their wavelengths
    say otherwise, else to the trained band with the nearest centre if the two are close: centres within
    ``max_gap_nm``, or half-maximum windows that overlap (MODIS's 2130 nm band in Sentinel-2's 2202 nm
    slot, 175 nm wide). Each slot takes one band, the nearest first (ties: the first in file order).
    What is left over goes nowhere: a target band without a slot is dropped, a slot without a band is
    zero-filled (and masked, for a model that takes a band mask). This is the "without wavelengths"
    baseline for a sensor the run never saw.

    Returns:
        one entry per target band: the index in ``trained`` of its slot, or None.
    """
    out: list[int | None] = [None] * len(target)
    taken: set[int] = set()

    def gap(a: Band, b: Band) -> float | None:
        """The centres' distance, or None when the two are too far apart to stand in for each other."""
        d = abs(a.center_nm - b.center_nm)
        return d if d <= max(max_gap_nm, ((a.fwhm_nm or 0) + (b.fwhm_nm or 0)) / 2) else None

    def known(a: Band, b: Band) -> bool:
        return a.center_nm is not None and b.center_nm is not None

    for i, t in enumerate(target):  # the same name, unless the wavelengths disagree (MODIS B1 is not Landsat B1)
        j = next((j for j, b in enumerate(trained) if j not in taken and b.name.lower() == t.name.lower()), None)
        if j is not None and (not known(t, trained[j]) or gap(t, trained[j]) is not None):
            out[i] = j
            taken.add(j)
    pairs = sorted((d, i, j) for i, t in enumerate(target) for j, b in enumerate(trained)
                   if out[i] is None and j not in taken and known(t, b) and (d := gap(t, b)) is not None)
    for _, i, j in pairs:  # nearest first: a slot goes to the closest band that has none yet
        if out[i] is None and j not in taken:
            out[i] = j
            taken.add(j)
    return out


def sub_sensor_layouts(sensors: list[str], trained: list[Band]) -> list[list[int]]:
    """``train.sub_sensors``: which of the trained bands each named sensor's bands would fill (``match_bands``),
    as sorted index lists, one per distinct layout that fills some but not all of them (``all``: every preset).

    Why: a sub-sensor drawn at random rarely is the one a model meets (four bands out of ten, the blue,
    green, red and NIR of nearly every satellite: about 1 draw in 950). Drawing the layouts of the sensors
    the user names trains the model on their bands as the run's own files render them; it never sees
    those sensors' files.

    Raises:
        BandError: an unknown preset (with "did you mean").
    """
    names = list(presets()) if "all" in sensors else sensors
    out: list[list[int]] = []
    for name in names:
        keep = sorted({j for j in match_bands(resolve_bands(name), trained) if j is not None})
        if 0 < len(keep) < len(trained) and keep not in out:
            out.append(keep)
    return out
