"""Decode once: a split's decoded images at training resolution, in one memory-mapped file.

A folder split is decoded the first time a run needs it (the "decoding epoch",
with the recipe's DataLoader workers) into ``images.npy`` (``[N, C, S, S]``,
uint8 for photos, float32 with NaN at nodata for multi-band data) and
``valid.npy`` (False where a file failed to decode, with the reason in
``skipped.json``: truncated, every band nodata, ...). Every later epoch, and
every later run on the same files, reads batches as slices of it: one copy
per batch, no decoding. Augmentation still runs per batch after the loader.

The key is a hash of every file's path, size and mtime, the image size, the
band count, the nodata value, the pixel limit, the output dtype and the reader version: any
change gives a new key, so a stale cache is never read. A cache is built in a
temporary folder, fsynced, then renamed into place; a kill -9 mid-build
leaves only a ``.tmp-*`` folder, which is never read (and is removed by the
next build of the same key).

Where: ``<data.root>/.edgecnn-cache/`` (``data.cache_dir`` overrides), falling
back to ``$XDG_CACHE_HOME/edgecnn`` (``~/.cache/edgecnn``) when the data folder
is read-only. ``data.cache: off`` decodes every epoch, as before.

The build reports its progress in files per second on stderr (``core.progress``: a line that rewrites
itself on a terminal, plain lines at most every 5 s otherwise, on the outer step's line inside one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from edgecnn.core import contracts as C
from edgecnn.core.progress import Progress
from edgecnn.errors import UserError

# Bump when a reader's output changes, so old caches are not reused.
# 2: large rasters read decimated (GDAL's average, nodata left out of averages); all-nodata files skipped.
READER_VERSION = 2


@dataclass(frozen=True)
class Stacked:
    """A whole batch read as one slice: ``collate`` passes it through."""

    images: Tensor
    labels: Tensor


def cache_key(ds, split: str) -> str:
    """The hash that names a split's cache (see the module docstring)."""
    h = hashlib.sha256()
    spec = ds.raster
    head = {"split": split, "size": ds.image_size, "dtype": ds.dtype, "reader": READER_VERSION,
            "bands": spec.bands if spec else 3, "nodata": spec.nodata if spec else None,
            "max_pixels": getattr(ds, "max_pixels", None)}
    h.update(json.dumps(head, sort_keys=True).encode())
    for path, label in ds.samples:
        st = path.stat()
        h.update(f"\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{label}".encode())
    return h.hexdigest()[:24]


def default_dirs(root: Path) -> list[Path]:
    """Where a cache may live, first choice first."""
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn"
    return [Path(root) / C.CACHE_DIR, user]


class CachedFolder(Dataset):
    """An ``ImageFolder`` served from its decoded cache; same ``samples`` and ``classes``.

    ``skipped`` and ``skip_reasons`` are the folder's (found at scan) plus the files the build could not
    decode (``skipped.json``): those stay in ``samples``, marked invalid, and no batch holds them.

    Args:
        ds: the folder split.
        folder: the cache folder of this split (``<dir>/<key>``), complete.
    """

    def __init__(self, ds, folder: Path):
        self.base = ds
        self.folder = Path(folder)
        self.classes, self.samples = ds.classes, ds.samples
        decoded = json.loads((self.folder / C.SKIPPED).read_text())["files"] if \
            (self.folder / C.SKIPPED).is_file() else {}
        at_decode = {Path(p): why for p, why in decoded.items()}
        self.skipped = list(ds.skipped) + list(at_decode)
        self.skip_reasons = {**getattr(ds, "skip_reasons", {}), **at_decode}
        self.image_size, self.raster, self.dtype = ds.image_size, ds.raster, ds.dtype
        self.max_pixels = getattr(ds, "max_pixels", None)
        self.labels = torch.tensor([label for _, label in ds.samples], dtype=torch.int64)
        self.valid = np.load(self.folder / "valid.npy")
        self._images = None  # opened per process: DataLoader workers each map the file themselves

    @property
    def images_file(self) -> Path:
        return self.folder / "images.npy"

    def _mm(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.images_file, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        if not self.valid[i]:
            return None
        return torch.from_numpy(np.array(self._mm()[i])), int(self.labels[i])

    def __getitems__(self, indices: list[int]) -> Stacked:
        idx = np.asarray(indices, dtype=np.int64)
        idx = idx[self.valid[idx]]
        images = self._mm()[idx]  # fancy indexing on the map: one copy per batch
        return Stacked(torch.from_numpy(images), self.labels[torch.from_numpy(idx)])


def cached(ds, split: str, dirs: list[Path], workers: int, explicit: bool) -> Dataset:
    """``ds`` served from its cache, built now when there is none; ``ds`` itself when no folder is writable.

    Args:
        ds: an ``ImageFolder``.
        split: "train" or "val" (part of the key).
        dirs: candidate cache folders, first choice first (``default_dirs``).
        workers: DataLoader workers for the decoding pass.
        explicit: ``dirs`` is the user's ``data.cache_dir``: an unwritable one is an error, not a fallback.

    Raises:
        UserError: ``explicit`` and the folder cannot be written.
    """
    key = f"{split}-{cache_key(ds, split)}"
    for d in dirs:
        if (d / key / "valid.npy").is_file():
            return CachedFolder(ds, d / key)
    for d in dirs:
        try:
            return CachedFolder(ds, build(ds, d, key, workers))
        except OSError as e:
            reason = f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else "")
            if explicit:
                raise UserError(f"data.cache_dir {d}: cannot write the decoded cache ({reason}); "
                                "point data.cache_dir at a writable folder or set data.cache=off") from None
            print(f"note: decoded cache not written in {d} ({reason})", file=sys.stderr)
    print("note: no writable cache folder; decoding every epoch (data.cache=off silences this)", file=sys.stderr)
    return ds


def build(ds, parent: Path, key: str, workers: int) -> Path:
    """Decode every sample of ``ds`` into ``parent/key`` (atomically); returns that folder.

    Raises:
        OSError: the folder cannot be created or written (read-only, full disk).
    """
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / key
    for stale in parent.glob(f".tmp-{key}-*"):  # earlier builds of this key that died mid-way
        shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".tmp-{key}-{os.getpid()}"
    os.mkdir(tmp)  # plain mkdir: the folder follows the umask (mkdtemp's is 0700)
    try:
        _fill(ds, tmp, workers, f"decoding {key.split('-')[0]} into the cache")
        _fsync(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "valid.npy").is_file():  # not another process finishing the same key first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


class _Decoding(Dataset):
    """``ds`` item by item as ``(item, None)`` or ``(None, why)``: the build records why a file was left out."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        if hasattr(self.ds, "try_decode"):
            return self.ds.try_decode(i)
        item = self.ds[i]
        return item, None if item is not None else "could not be decoded"


def _fill(ds, tmp: Path, workers: int, what: str = "decoding") -> None:
    """The decoding pass: ``images.npy``, ``skipped.json`` and ``valid.npy`` in ``tmp``, flushed to disk."""
    bands = ds.raster.bands if ds.raster else 3
    shape = (len(ds), bands, ds.image_size, ds.image_size)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=ds.dtype, shape=shape)
    valid = np.zeros(len(ds), dtype=bool)
    reasons: dict[str, str] = {}
    # Small batches: progress moves per file even when one file takes seconds (a Sentinel-2 tile);
    # in this process one at a time, through workers a few (each batch is one message back).
    loader = DataLoader(_Decoding(ds), batch_size=1 if workers == 0 else 4, num_workers=workers, collate_fn=list)
    i = 0
    with Progress(what, final=True) as progress:
        progress.count(0, len(ds))
        for batch in loader:
            for item, why in batch:
                if item is not None:
                    images[i] = item[0].numpy()
                    valid[i] = True
                else:
                    reasons[str(ds.samples[i][0]) if hasattr(ds, "samples") else str(i)] = why
                i += 1
            progress.count(i, len(ds))
    images.flush()
    del images
    _fsync(tmp / "images.npy")
    with open(tmp / C.SKIPPED, "w") as f:
        json.dump({"files": reasons}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    with open(tmp / "valid.npy", "wb") as f:  # written last: its presence marks a complete cache
        np.save(f, valid)
        f.flush()
        os.fsync(f.fileno())


def cache_bytes(ds) -> int:
    """The size of a split's cache: samples x bands x size^2 x 1 (photos) or 4 (multi-band) bytes."""
    bands = ds.raster.bands if ds.raster else 3
    return len(ds) * bands * ds.image_size ** 2 * (1 if ds.dtype == "uint8" else 4)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder too: the rename must survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
