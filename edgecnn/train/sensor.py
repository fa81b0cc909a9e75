"""A trained run pointed at another sensor: the band list, its files and their normalisation.

``edgecnn eval RUN data.root=~/planet data.bands=planetscope`` and ``edgecnn export RUN --bands
planetscope --data-root ~/planet`` both come here. Only a wavelength-conditioned model
(``cnn_attn_wave``, ``resnet34_wave``) can read a band list it was not trained on: its stem is
regenerated for the new wavelengths (``wave_conv.set_bands``). Every other model reads bands by
position, so a different list is refused: feeding it Landsat's bands would put its red kernel on
whatever band sits in the red slot.

Normalisation of a new sensor:

* ``files`` (the default): the per-band mean and std of the sensor's own training split, computed as
  training computes them (``loop.resolve_norm``; labels unused), and every BatchNorm's statistics
  re-estimated on the same images (AdaBN, Li et al. 2016: ``adapt_batchnorm``). Files of another
  sensor may be stored in another unit or with another offset, and only their own statistics know
  that; and a stem regenerated for other bands gives the layers after it activations of somewhat
  other statistics (measured on the cross-sensor scenes, a Sentinel-2 run: Landsat-8 79.0% -> 83.7%,
  PlanetScope 51.7% -> 58.7%; docs/multispectral.md).
* ``stats``: the per-band mean and std of its files only; the BatchNorms keep the run's statistics.
* ``interpolate``: the training bands' statistics, interpolated by wavelength
  (``core.sensors.interpolate_stats``): for when the sensor's files are too few to measure, and
  only right when both sensors' files share one unit (reflectance x 10,000, say).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgecnn.config import Recipe
from edgecnn.config.load import validate_recipe
from edgecnn.core import catalog
from edgecnn.core.sensors import Band, BandError, bands_text, coverage_gaps, interpolate_stats, preset_name, resolve_bands
from edgecnn.errors import UserError
from edgecnn.models.registry import reads_wavelengths, takes_mask
from edgecnn.models.wave_conv import set_bands

NORMS = ("files", "stats", "interpolate")
# The sidecar's normalization.batchnorm.source when AdaBN ran; from_record redoes it when it reads this.
ADABN = "files (AdaBN)"


def same_bands(a: list[Band], b: list[Band]) -> bool:
    return [(x.name, x.center_nm, x.fwhm_nm) for x in a] == [(x.name, x.center_nm, x.fwhm_nm) for x in b]


def sensor_name(bands: list[Band]) -> str:
    """The preset's name for a preset's band list, else the band names joined by ``+`` (for file names)."""
    return preset_name(bands) or "+".join(b.name for b in bands)


def own_sensor(recipe: Recipe) -> dict:
    """The ``sensor`` record of a run measured on its own bands and normalisation."""
    bands = recipe.data.band_specs
    return sensor_record(bands, bands, recipe.data.root, {"source": "run", "mean": list(recipe.data.mean or []),
                                                    "std": list(recipe.data.std or [])})


def for_sensor(recipe: Recipe, model: nn.Module, overrides: dict[str, Any],
               norm: str | None = None) -> tuple[Recipe, dict]:
    """The run's recipe with ``data.*`` overrides applied, and ``model`` pointed at its bands (in place).

    Args:
        recipe: the run's recipe.
        model: the run's model; a wave model's stem is set to the new bands.
        overrides: dotted ``data.*`` keys (``data.bands``, ``data.root``, ``data.mean``/``std``, ...).
        norm: for a new band list: ``files`` (default: its own training split's statistics) or
            ``interpolate`` (the run's, interpolated by wavelength); ignored for the run's own bands.

    Returns:
        ``(recipe, sensor record)``: the record says the bands with wavelengths, the preset, the
        folder, the normalisation and where it came from, and warnings about uncovered wavelengths.

    Raises:
        UserError: an override outside ``data``; a band list that does not resolve, has no wavelength, or
            differs from the run's for a model that is not wavelength-conditioned; a new band list
            without ``data.root``; an unknown ``norm``.
    """
    _data_only(overrides)
    if norm is not None and norm not in NORMS:
        raise UserError(f"--norm {norm}: choose {' or '.join(NORMS)}")
    trained = recipe.data.band_specs
    bands = trained
    if "data.bands" in overrides:
        try:
            bands = resolve_bands(overrides["data.bands"])
        except BandError as e:
            raise UserError(f"data.bands={overrides['data.bands']}: {e}") from None
    new = not same_bands(bands, trained)
    tree = recipe.model_dump(mode="json")
    if "data.root" in overrides and "data.source" not in overrides:
        tree["data"]["source"] = "folder"  # a folder given to a run trained on the built-in data
    if new:
        _check_can_change(recipe, model, trained, bands)
        if "data.root" not in overrides:
            raise UserError(f"data.bands={sensor_name(bands)} is not the sensor {recipe.name} was trained on "
                            f"({sensor_name(trained)}); give that sensor's files: data.root=FOLDER (train/ and val/ "
                            "per class, e.g. from edgecnn data synth --format tiff --sensor NAME)")
        tree["data"].update(source="folder", mean=None, std=None)
    cfg = validate_recipe(tree, overrides)
    given = "data.mean" in overrides
    train_ds = None  # the sensor's training split, once read for its statistics
    if new and not given:
        cfg, normalization, train_ds = _normalise(cfg, recipe, bands, norm or "files")
    else:
        normalization = {"source": "given (data.mean, data.std)" if given else "run",
                         "mean": list(cfg.data.mean), "std": list(cfg.data.std)}
    set_bands(model, bands)
    if new and (norm or "files") == "files":
        normalization["batchnorm"] = adapt_batchnorm(model, cfg, train_ds)
    return cfg, sensor_record(bands, trained, cfg.data.root, normalization)


def adapt_batchnorm(model: nn.Module, cfg: Recipe, train_ds=None) -> dict:
    """Re-estimate every BatchNorm's running statistics on the sensor's training split (AdaBN), in place.

    Labels unused, no augmentation, files in their listed order (so ``bench --check`` gets the same model
    again from the record); lost bands masked as evaluation masks them. Only the BatchNorms run in
    training mode (dropout stays off); each keeps the average over the pass's batches. ``train_ds``: the
    split already built for the band statistics (``None``: built here).
    """
    import torch

    from edgecnn.data import build_datasets, file_mask
    from edgecnn.train.loop import forward, make_loader, prepare

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return {"source": "run (the model has no BatchNorm)"}
    if train_ds is None:
        train_ds = build_datasets(cfg.data, cfg.seed, len(cfg.data.bands))[0]
    device = next(model.parameters()).device
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the pass
        m.train()
    order = list(range(len(train_ds)))
    batch = cfg.train.batch_size
    images = 0
    with torch.no_grad():
        for x, _ in make_loader(train_ds, [order[i:i + batch] for i in range(0, len(order), batch)],
                                cfg.data.workers, device):
            if len(x) < 2:  # one image has no batch statistics
                continue
            own = file_mask(x)
            forward(model, prepare(x, device, cfg.data.mean, cfg.data.std), own, takes_mask(model))
            images += len(x)
    model.eval()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    if images == 0:
        raise UserError(f"{cfg.data.root}/train has too few readable images to re-estimate the BatchNorm "
                        "statistics; give more files, or --norm stats to keep the run's")
    return {"source": ADABN, "images": images, "layers": len(norms),
            "why": "the stem regenerated for other bands feeds the layers after it activations of other "
                   "statistics; re-estimated on the sensor's own training split, labels unused"}


def matched_sensor(recipe: Recipe, model: nn.Module, overrides: dict[str, Any]) -> bool:
    """Whether ``overrides`` give another sensor's bands to a model that reads bands by position: ``eval``
    then matches them into the run's slots (``train.evaluate``) rather than refusing them (as export does).

    Raises:
        UserError: ``data.bands`` does not resolve.
    """
    _data_only(overrides)
    if "data.bands" not in overrides or reads_wavelengths(model) or catalog.reads_wavelengths(recipe.model.name):
        return False
    try:
        bands = resolve_bands(overrides["data.bands"])
    except BandError as e:
        raise UserError(f"data.bands={overrides['data.bands']}: {e}") from None
    return not same_bands(bands, recipe.data.source_configs()[0].band_specs)


def _data_only(overrides: dict[str, Any]) -> None:
    outside = [k for k in overrides if not k.startswith("data.")]
    if outside:
        raise UserError(f"{outside[0]}: only data.* settings can change for a trained run (data.root, data.bands, "
                        f"data.mean, data.std, ...); the rest is fixed by its recipe")


def _check_can_change(recipe: Recipe, model: nn.Module, trained: list[Band], bands: list[Band]) -> None:
    if reads_wavelengths(model):
        return
    if catalog.reads_wavelengths(recipe.model.name):  # the QAT form: its stem is frozen to the run's bands
        raise UserError(f"this {recipe.model.name} run is fine-tuned (QAT) for its own bands ({sensor_name(trained)}); "
                        f"evaluate or export the float run it came from for {sensor_name(bands)}")
    how = "another band count" if len(bands) != len(trained) else "other bands"
    raise UserError(f"{recipe.model.name} reads its {len(trained)} bands by position ({bands_text(trained)}), so it "
                    f"cannot read {how} ({sensor_name(bands)}: {len(bands)} bands); only a wavelength-conditioned "
                    f"model (cnn_attn_wave, resnet34_wave) changes sensor; use the run's data.bands or train one")


def _normalise(cfg: Recipe, trained_recipe: Recipe, bands: list[Band], norm: str) -> tuple[Recipe, dict, Any]:
    """``cfg`` with the new sensor's mean and std, how they were found, and the training split read for them
    (``None`` when interpolated)."""
    train_ds = None
    if norm == "interpolate":
        run = trained_recipe.data
        mean, std, notes = interpolate_stats(run.band_specs, list(run.mean), list(run.std), bands)
        record = {"source": "interpolated", "from_bands": [b.name for b in run.band_specs],
                  "why": "the training bands' statistics, interpolated linearly in wavelength (the nearest "
                         "band's beyond their range); right only when both sensors' files share one unit",
                  "notes": notes}
    else:
        from edgecnn.data import build_datasets
        from edgecnn.train.loop import resolve_norm

        train_ds = build_datasets(cfg.data, cfg.seed, len(bands))[0]
        resolved, stats = resolve_norm(cfg, train_ds)
        mean, std = resolved.data.mean, resolved.data.std
        record = {"source": "files" if stats else "photo default",
                  "folder": str(Path(cfg.data.root) / "train"),
                  "images": stats["images"] if stats else len(train_ds),
                  "why": "the sensor's own training split (labels unused), as training computes it: another "
                         "sensor's files may hold another unit or offset"}
    data = cfg.data.model_copy(update={"mean": [float(v) for v in mean], "std": [float(v) for v in std]})
    return (cfg.model_copy(update={"data": data}), {**record, "mean": list(data.mean), "std": list(data.std)},
            train_ds)


def sensor_record(bands: list[Band], trained: list[Band], root, normalization: dict) -> dict:
    return {
        "name": sensor_name(bands),
        "preset": preset_name(bands),
        "bands": [b.as_dict() if b.center_nm is not None else {"name": b.name} for b in bands],
        "seen_in_training": same_bands(bands, trained),
        "trained_on": {"name": sensor_name(trained), "preset": preset_name(trained),
                       "bands": [b.as_dict() if b.center_nm is not None else {"name": b.name} for b in trained]},
        "folder": None if root is None else str(root),
        "normalization": normalization,
        "warnings": coverage_gaps(trained, bands),
    }


def from_record(recipe: Recipe, model: nn.Module, record: dict) -> Recipe:
    """The recipe and model of a run set again to a sensor recorded in a sidecar (``bench --check``): the
    bands, folder and normalisation the artifact was made with, nothing recomputed.

    Raises:
        UserError: the record's folder is gone, or the model cannot take its bands.
    """
    bands = resolve_bands([{k: v for k, v in b.items()} for b in record["bands"]])
    if same_bands(bands, recipe.data.band_specs):
        return recipe
    _check_can_change(recipe, model, recipe.data.band_specs, bands)
    folder = record.get("folder")
    if not folder or not Path(folder).is_dir():
        raise UserError(f"the artifact was made for {record['name']} with files in {folder}, which is gone; "
                        "restore that folder or export again with --data-root")
    norm = record["normalization"]
    tree = recipe.model_dump(mode="json")
    tree["data"].update(source="folder", root=folder, bands=record["bands"], mean=norm["mean"], std=norm["std"])
    set_bands(model, bands)
    cfg = validate_recipe(tree)
    if (norm.get("batchnorm") or {}).get("source") == ADABN:
        adapt_batchnorm(model, cfg)  # as the export did: same files, same order
    return cfg
