"""Datasets and batch transforms.

Two sources, chosen by ``data.source`` in a recipe:

- ``synth``: the built-in shapes-with-band-signatures dataset, generated in
  memory (``synth.py``); needs no download, so the demo and tests use it.
- ``folder``: an ImageNet-mini style tree ``<root>/{train,val}/<class>/<image>``
  (``folder.py``).

Both yield ``(uint8 [C, H, W], label)``; ``transforms.py`` turns those into
normalised, augmented float batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from edgecnn.data.folder import (IMAGE_EXTENSIONS, ImageFolder, list_classes, load_image, needs_raster, scan_files,
                                 skip_record, skip_summary, to_rgb)
from edgecnn.data.raster import RasterSpec
from edgecnn.data.synth import SHAPES, SynthDataset, class_signatures, synth_class_names, write_synth
from edgecnn.data.transforms import Augment, collate, combine_masks, file_mask, normalize
from edgecnn.errors import UserError

if TYPE_CHECKING:
    from edgecnn.config.schema import DataConfig

__all__ = [
    "IMAGE_EXTENSIONS",
    "SHAPES",
    "Augment",
    "ImageFolder",
    "SynthDataset",
    "build_datasets",
    "class_signatures",
    "collate",
    "combine_masks",
    "file_mask",
    "list_classes",
    "load_image",
    "normalize",
    "skip_record",
    "skip_summary",
    "synth_class_names",
    "to_rgb",
    "write_synth",
]


def build_datasets(data_cfg: DataConfig, seed: int, bands: int = 3,
                   cache: bool = True) -> tuple[Dataset, Dataset, list[str]]:
    """The train and val datasets a recipe's ``data`` section describes.

    Args:
        data_cfg: the recipe's ``data`` section.
        seed: the recipe seed; only the synthetic source uses it.
        bands: spectral bands (``len(data.bands)``).
        cache: serve folder splits from their decoded cache (``data.cache: disk``; see ``data/cache.py``).

    Returns:
        ``(train, val, class_names)``; label ``i`` is ``class_names[i]``.

    A run over several folders (``data.sources``) gives its first source's splits here: what stages that
    read one band list (export, prune, ``bench --check``) see, with ``data.bands/mean/std``, which mirror
    that source. Training and eval read every source (``data.sources.build_sources``).

    Raises:
        UserError: the folder layout is wrong (see ``list_classes`` and ``ImageFolder``),
            val lacks a training class, no file has the recipe's band count, rasterio is
            needed but missing, or ``data.cache_dir`` cannot be written.
    """
    if data_cfg.sources:
        first = data_cfg.source_configs()[0]
        return build_datasets(first, seed, len(first.bands), cache)
    if data_cfg.source == "synth":
        train = SynthDataset(data_cfg.num_classes, data_cfg.train_per_class, data_cfg.image_size, seed, "train", bands)
        val = SynthDataset(data_cfg.num_classes, data_cfg.val_per_class, data_cfg.image_size, seed, "val", bands)
        return train, val, train.classes

    root = Path(data_cfg.root).expanduser()
    classes = list_classes(root / "train", data_cfg.num_classes, data_cfg.classes)
    # Labels are indices into the training class list, so val must hold the
    # same folders; extra val folders are ignored.
    val_dir = root / "val"
    if not val_dir.is_dir():
        raise UserError(f"data.root: {val_dir} is not a folder; expected {root}/val/<class>/<image> as in ImageNet-mini")
    missing = [c for c in classes if not (val_dir / c).is_dir()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{val_dir} lacks class folders that train has: {shown}; val needs every training class")
    # One reader for both splits, decided by the training files: both must normalise alike.
    paths = [p for p, _ in scan_files(root / "train", classes)]
    names = tuple(data_cfg.bands) if len(data_cfg.bands) == bands else ()
    spec = RasterSpec(bands, data_cfg.image_size, data_cfg.nodata, data_cfg.max_pixels, names) \
        if needs_raster(paths, bands, data_cfg.nodata) else None
    train = ImageFolder(root / "train", classes, data_cfg.image_size, spec, data_cfg.max_pixels)
    val = ImageFolder(val_dir, classes, data_cfg.image_size, spec, data_cfg.max_pixels)
    if cache and data_cfg.cache == "disk":
        from edgecnn.data.cache import cached, default_dirs

        explicit = data_cfg.cache_dir is not None
        dirs = [Path(data_cfg.cache_dir)] if explicit else default_dirs(root)
        train = cached(train, "train", dirs, data_cfg.workers, explicit)
        val = cached(val, "val", dirs, data_cfg.workers, explicit)
    return train, val, classes
