"""``predict``: run an exported artifact on image files with its own runtime.

Everything comes from the artifact's sidecar: the image size, the bands and
their normalisation, the inputs the graph takes, the class names. Photos are
decoded by ``edgecnn.data.load_image``, the function training decodes image
folders with, and normalised by the function training normalises with, so an
image gets the same input here as in ``edgecnn eval``.

Photos carry the bands R, G and B. A band-aware artifact (with a presence
mask input) gets its other bands (e.g. NIR) zero-filled and marked missing in
the mask; any other artifact must take only bands among R, G, B.

An artifact trained on multi-band files (sidecar ``normalization.reader:
raster``) reads GeoTIFF/JPEG2000/``.npy`` files with every band of the run,
through the reader training used; a band that is nodata in the whole file is
zero-filled and, for a mask-input artifact, 0 in the mask: the mask comes from
the file.

A file with nothing to classify (every band nodata in every pixel), or one
that would decode more pixels than the run's ``data.max_pixels`` (recorded in
the sidecar; Pillow's own guard for photos), is one line and exit 2, as any
bad input: reading it decimated is what training did, and a class for it
would mean nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgecnn.core.contracts import MAX_PIXELS
from edgecnn.errors import UserError
from edgecnn.export.runtimes import load_artifact

PHOTO_BANDS = ("R", "G", "B")  # what load_image returns, in order


def _inputs(path: Path, sidecar: dict, artifact: Path) -> list[np.ndarray]:
    """The artifact's input arrays (batch 1) for the image file ``path``.

    Raises:
        UserError: the file is missing or not a decodable image, or the artifact needs bands photos lack.
    """
    import torch

    from PIL import Image

    from edgecnn.data import load_image, normalize
    from edgecnn.data.folder import _DECODE_ERRORS
    from edgecnn.data.raster import first_line

    bands = list(sidecar["bands"])
    names = [i["name"] for i in sidecar["inputs"]]
    if sidecar["normalization"].get("reader") == "raster":
        return _raster_inputs(Path(path), sidecar, names)
    present = [b for b in bands if b.upper() in PHOTO_BANDS]
    if "mask" in names and not present:
        raise UserError(f"{artifact} takes bands {','.join(bands)}, none of which an image file carries (R, G, B)")
    lacking = [b for b in sidecar["input_bands"] if b.upper() not in PHOTO_BANDS]
    if "mask" not in names and lacking:
        raise UserError(f"{artifact} takes band(s) {','.join(lacking)}, which image files do not carry (R, G, B); "
                        "export with --channels naming bands among R, G, B")

    if not Path(path).is_file():
        raise UserError(f"{path}: no such image file")
    size = int(sidecar["image_size"])
    limit = int(sidecar["normalization"].get("max_pixels") or MAX_PIXELS)
    try:
        with Image.open(path) as im:  # the header: training skips a photo over the limit before decoding it
            w, h = im.size
        if w * h > limit:
            raise UserError(f"{path}: over the pixel limit ({w}x{h}: {w * h:,} pixels; the run's data.max_pixels "
                            f"is {limit:,}); pass a smaller image")
        rgb = load_image(Path(path), size)  # uint8 [3, S, S], as training decodes
    except Image.DecompressionBombError as e:
        raise UserError(f"{path}: over the pixel limit (Pillow's decompression-bomb guard: {first_line(e)}); "
                        "pass a smaller image") from None
    except _DECODE_ERRORS as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable image ({reason}); pass a JPEG, PNG or another format Pillow reads") \
            from None

    # Every band of the run, normalised as in training; bands a photo lacks are 0 after it.
    planes = [rgb[PHOTO_BANDS.index(b.upper())] if b in present else torch.zeros(size, size, dtype=torch.uint8)
              for b in bands]
    x = torch.stack(planes)[None].float().div_(255)
    norm = sidecar["normalization"]
    x = normalize(x, norm["mean"], norm["std"])
    mask = torch.tensor([1.0 if b in present else 0.0 for b in bands])
    x = x * mask[None, :, None, None]
    if "mask" in names:
        return [x.numpy(), mask.numpy()]
    return [x[:, [bands.index(b) for b in sidecar["input_bands"]]].contiguous().numpy()]


def _raster_inputs(path: Path, sidecar: dict, names: list[str]) -> list[np.ndarray]:
    """A multi-band file's inputs: decoded, normalised and masked by the functions eval uses.

    Raises:
        UserError: missing or unreadable file, or a band count other than the run's.
    """
    import torch

    from edgecnn.data import file_mask
    from edgecnn.data import raster as RA
    from edgecnn.train.loop import prepare

    bands, norm = list(sidecar["bands"]), sidecar["normalization"]
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    spec = RA.RasterSpec(len(bands), int(sidecar["image_size"]), norm.get("nodata"),
                         int(norm.get("max_pixels") or MAX_PIXELS))
    try:
        raw = torch.from_numpy(RA.read(path, spec))[None]
    except RA.OverPixelLimit as e:
        fix = "add overviews (gdaladdo -r average FILE), or export from a run with a larger data.max_pixels" \
            if path.suffix.lower() in RA.GEO_EXTENSIONS else "pass a smaller file"
        raise UserError(f"{path}: {e}; {fix}") from None
    except RA.AllNodata as e:
        raise UserError(f"{path}: {e}: nothing to classify; pass a file with data") from None
    except RA.ReadError as e:
        fix = f"the artifact takes {len(bands)} bands ({','.join(bands)})" if "bands" in str(e) else \
            "pass a GeoTIFF, JPEG2000 or .npy file"
        raise UserError(f"{path}: {e}; {fix}") from None
    own = file_mask(raw)
    mask = torch.ones(len(bands)) if own is None else own[0]
    x = prepare(raw, torch.device("cpu"), norm["mean"], norm["std"]) * mask[None, :, None, None]
    if "mask" in names:
        return [x.numpy(), mask.numpy()]
    return [x[:, [bands.index(b) for b in sidecar["input_bands"]]].contiguous().numpy()]


def _user_mask(mask: str | None, sidecar: dict, artifact: Path) -> np.ndarray | None:
    """``--mask 1,1,0,1`` as floats, checked against the artifact (a band marked 0 is treated as lost).

    Raises:
        UserError: not 0/1 values, the wrong count, or an artifact without a mask input.
    """
    if mask is None:
        return None
    bands = list(sidecar["bands"])
    if "mask" not in [i["name"] for i in sidecar["inputs"]]:
        raise UserError(f"--mask: {artifact} takes fixed bands ({','.join(sidecar['input_bands'])}), no presence "
                        "mask; use an artifact exported without --channels (a band-aware model's mask input)")
    values = [v.strip() for v in mask.split(",")]
    if len(values) != len(bands) or any(v not in ("0", "1") for v in values):
        raise UserError(f"--mask {mask}: give {len(bands)} values of 0 or 1, one per band of the artifact "
                        f"({','.join(bands)}), e.g. --mask {','.join(['1'] * (len(bands) - 1) + ['0'])}")
    if not any(v == "1" for v in values):
        raise UserError(f"--mask {mask}: at least one band must be present")
    return np.array([float(v) for v in values], dtype=np.float32)


def _check_sensor(bands: str | None, sidecar: dict, artifact: Path) -> None:
    """``--bands``: the images' sensor must be the one the artifact was made for, band for band.

    An artifact is fixed to one band list (a wave model is folded or frozen for it at export), so this
    only checks; the files of another sensor need another export (``edgecnn export RUN --bands ...``).

    Raises:
        UserError: the sidecar has no wavelengths, the bands do not resolve, or they are another list.
    """
    from edgecnn.core.sensors import BandError, bands_text, resolve_bands

    if bands is None:
        return
    specs = sidecar.get("band_specs") or []
    if not specs or any(b.get("center_nm") is None for b in specs):
        raise UserError(f"--bands {bands}: {artifact.name}'s sidecar records no wavelengths for its bands "
                        f"({', '.join(sidecar['bands'])}), so they cannot be matched; drop --bands, or export a "
                        "*_wave run trained with a sensor preset")
    spec = bands if ":" in bands or "," not in bands else [b.strip() for b in bands.split(",") if b.strip()]
    try:
        given = resolve_bands(spec)
    except BandError as e:
        raise UserError(f"--bands {bands}: {e}") from None
    made = resolve_bands(specs)
    key = lambda bs: [(b.name, b.center_nm, b.fwhm_nm) for b in bs]  # noqa: E731
    if key(given) != key(made):
        name = (sidecar.get("sensor") or {}).get("name", "its bands")
        raise UserError(f"--bands {bands}: {artifact.name} was made for {name} ({bands_text(made)}); export one "
                        f"for these bands: edgecnn export RUN --bands {bands} --data-root FOLDER")


def predict(artifact: Path, images: list[Path], top_k: int = 5, mask: str | None = None,
            bands: str | None = None) -> list[dict]:
    """Classify image files with an exported artifact, through the artifact's runtime.

    Args:
        artifact: a ``.pte``, ``.xml`` or ``.onnx`` written by ``edgecnn export``, with its sidecar.
        images: image files (any format and mode Pillow reads).
        top_k: classes reported per image, most probable first.
        mask: for a mask-input artifact, ``"1,1,0,1"``: bands marked 0 are treated as lost (zeroed,
            0 in the mask) on top of the bands each file lost itself.
        bands: the images' bands (a preset, a pick or names): checked against the artifact's.

    Returns:
        One record per image: ``image``, ``class`` and ``probability`` of the top class,
        ``top`` (``top_k`` entries of ``class``, ``index``, ``probability``), and ``logits``.

    Raises:
        UserError: missing artifact, missing/damaged sidecar or one that does not match
            the artifact, an unreadable image, or bands the images cannot provide.
    """
    if top_k < 1:
        raise UserError(f"--top-k {top_k}: give 1 or more")
    if not images:
        raise UserError("no image files given; pass one or more after the artifact")
    run, sidecar = load_artifact(artifact)
    _check_sensor(bands, sidecar, Path(artifact))
    user = _user_mask(mask, sidecar, Path(artifact))
    for w in (sidecar.get("sensor") or {}).get("warnings", []):  # a sensor whose bands training never covered
        print(f"warning: {w}", file=sys.stderr)
    classes = list(sidecar["classes"])
    # Decode every image before running any: a bad file fails the command at once.
    inputs = [(Path(p), _inputs(Path(p), sidecar, Path(artifact))) for p in images]
    results = []
    for path, feed in inputs:
        if user is not None:  # never brings back a band the file lost: the masks multiply
            feed = [feed[0] * user[None, :, None, None], feed[1] * user]
        logits = np.asarray(run(feed), dtype=np.float64).reshape(-1)
        if logits.shape[0] != len(classes):
            raise UserError(f"{artifact} gives {logits.shape[0]} outputs but its sidecar lists {len(classes)} "
                            "classes; export the artifact again")
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")[:top_k]
        top = [{"class": classes[i], "index": int(i), "probability": float(probs[i])} for i in order]
        results.append({"image": str(path), "class": top[0]["class"], "probability": top[0]["probability"],
                        "top": top, "logits": [float(v) for v in logits]})
    return results
