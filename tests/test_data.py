"""Tests for edgecnn.data: the synthetic set, image folders, batch transforms."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgecnn.config.schema import DataConfig
from edgecnn.data import (
    SHAPES,
    Augment,
    ImageFolder,
    SynthDataset,
    build_datasets,
    class_signatures,
    collate,
    list_classes,
    normalize,
    synth_class_names,
    write_synth,
)
from edgecnn.errors import UserError
from conftest import cli

# --- synthetic dataset -------------------------------------------------------


def small_synth(seed: int = 0, split: str = "train", **kw) -> SynthDataset:
    args = {"num_classes": 4, "per_class": 5, "image_size": 32, "bands": 3} | kw
    return SynthDataset(seed=seed, split=split, **args)


def test_synth_is_deterministic_per_seed_and_split():
    a, b = small_synth(seed=1), small_synth(seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, small_synth(seed=2).images)
    assert not torch.equal(a.images, small_synth(seed=1, split="val").images)


def test_synth_shapes_dtypes_and_balanced_labels():
    ds = small_synth(num_classes=7, per_class=3, image_size=40)
    assert ds.images.shape == (21, 3, 40, 40) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert torch.bincount(ds.labels).tolist() == [3] * 7
    image, label = ds[5]
    assert image.shape == (3, 40, 40) and image.dtype == torch.uint8 and isinstance(label, int)
    assert len(ds) == 21 and ds.classes == synth_class_names(7)


def test_synth_four_bands():
    ds = small_synth(bands=4)
    assert ds.images.shape == (20, 4, 32, 32)
    assert class_signatures(4, bands=4).shape == (4, 4)


def test_synth_rejects_unknown_split():
    with pytest.raises(UserError, match="split"):
        small_synth(split="test")


def test_class_names_sort_in_index_order():
    names = synth_class_names(12)
    assert names[0] == "00_circle_a" and names[len(SHAPES)] == "06_circle_b"
    assert sorted(names) == names
    assert synth_class_names(120)[7] == "007_square_b"


def test_class_table_is_stable_and_siblings_differ():
    table = class_signatures(40)
    assert torch.equal(table[:10], class_signatures(10)), "first N classes must not depend on the total"
    for shape in range(len(SHAPES)):
        siblings = table[shape :: len(SHAPES)]
        for i in range(len(siblings)):
            for j in range(i):
                assert (siblings[i] - siblings[j]).abs().max() > 0.2
    # The first two siblings differ in exactly one band: dropping it confuses them.
    diff = (table[len(SHAPES)] - table[0]).abs()
    assert (diff > 0.3).sum() == 1 and (diff < 1e-6).sum() == 2


def test_spectral_signature_shows_in_the_images():
    # Classes 0 and 6 are both circles; backgrounds and geometry come from the
    # same distribution, so the class-mean difference is the signature's.
    ds = SynthDataset(num_classes=7, per_class=40, image_size=32, seed=0, split="train")
    mean = ds.images.float().div(255).mean(dim=(2, 3))  # [N, bands]
    diff = mean[ds.labels == 6].mean(0) - mean[ds.labels == 0].mean(0)
    band = int((class_signatures(7)[6] - class_signatures(7)[0]).abs().argmax())
    assert diff[band].abs() > 0.04
    others = [b for b in range(3) if b != band]
    assert diff[others].abs().max() < diff[band].abs() / 2


def test_write_synth_reads_back_identically(tmp_path):
    out = tmp_path / "synth"
    counts = write_synth(out, num_classes=3, train_per_class=4, val_per_class=2, image_size=24, seed=5)
    assert counts == {"train": 12, "val": 6, "classes": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["synth"], "no temporary folder left behind"
    classes = list_classes(out / "train", None, None)
    assert classes == synth_class_names(3)
    train = ImageFolder(out / "train", classes, 24)
    assert len(train) == 12 and len(ImageFolder(out / "val", classes, 24)) == 6
    reference = SynthDataset(3, 4, 24, 5, "train")
    for i in (0, 5, 11):
        image, label = train[i]
        assert label == int(reference.labels[i]) and torch.equal(image, reference.images[i])


def test_write_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_synth(tmp_path / "out", 2, 1, 1, 16, 0)
    (tmp_path / "empty").mkdir()
    assert write_synth(tmp_path / "empty", 2, 1, 1, 16, 0)["train"] == 2


# --- image folders -----------------------------------------------------------


def save(path: Path, image: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


def noise_rgb(size=(40, 30), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def make_tree(root: Path, classes: list[str], splits=("train", "val"), per_class: int = 2) -> Path:
    for split in splits:
        for c in classes:
            for i in range(per_class):
                save(root / split / c / f"{i}.png", noise_rgb(seed=i))
    return root


def test_every_pillow_mode_loads_as_rgb_uint8(tmp_path):
    d = tmp_path / "train" / "a"
    save(d / "gray.png", Image.new("L", (20, 30), 128))
    save(d / "bilevel.bmp", Image.new("1", (20, 20), 1))
    save(d / "rgba.png", Image.new("RGBA", (20, 20), (255, 0, 0, 0)))  # fully transparent red
    save(d / "la.png", Image.new("LA", (20, 20), (0, 255)))
    save(d / "cmyk.jpg", Image.new("CMYK", (20, 20), (0, 255, 255, 0)), quality=95)  # red
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    palette.paste(0, (0, 0, 10, 20))
    save(d / "palette.png", palette, transparency=0)  # left half transparent
    save(d / "deep.png", Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)))  # 16-bit white
    save(d / "float.tif", Image.fromarray(np.full((20, 20), 0.5, dtype=np.float32), "F"))
    save(d / "GIF_UPPER.GIF", Image.new("P", (20, 20), 0))
    save(d / "photo.webp", noise_rgb())

    ds = ImageFolder(tmp_path / "train", ["a"], 16)
    assert len(ds) == 10 and ds.skipped == []
    loaded = {path.name: ds[i][0] for i, (path, _) in enumerate(ds.samples)}
    for name, image in loaded.items():
        assert image.shape == (3, 16, 16) and image.dtype == torch.uint8, name
    pixel = {name: image[:, 8, 8].tolist() for name, image in loaded.items()}
    assert pixel["gray.png"] == [128, 128, 128]
    assert pixel["rgba.png"] == [255, 255, 255], "transparent pixels composite over white"
    assert pixel["deep.png"] == [255, 255, 255], "16-bit scales to 8-bit, not clipped"
    assert pixel["float.tif"] == [128, 128, 128], "float 0..1 scales to 0..255"
    r, g, b = pixel["cmyk.jpg"]
    assert r > 200 and g < 60 and b < 60, "CMYK JPEG keeps its colour"
    assert loaded["palette.png"][:, 8, 2].tolist() == [255, 255, 255]
    assert loaded["palette.png"][:, 8, 13].tolist() == [0, 255, 0]


def test_resize_keeps_the_centre_square(tmp_path):
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 255  # a white centre square between black margins
    save(tmp_path / "train" / "a" / "wide.png", Image.fromarray(wide))
    image, _ = ImageFolder(tmp_path / "train", ["a"], 10)[0]
    assert image.shape == (3, 10, 10)
    # Only the edge columns may blend in a little of the cropped-away margin.
    assert image[:, :, 1:-1].min() == 255 and image.min() > 200


def test_garbage_file_with_image_extension_is_skipped(tmp_path):
    make_tree(tmp_path, ["a"], splits=("train",))
    junk = tmp_path / "train" / "a" / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg" * 10)
    (tmp_path / "train" / "a" / "notes.txt").write_text("ignored, not an image extension")
    ds = ImageFolder(tmp_path / "train", ["a"], 8)
    assert len(ds) == 2 and ds.skipped == [junk]


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_image_yields_none_and_collate_drops_it(tmp_path, fmt):
    make_tree(tmp_path, ["a"], splits=("train",), per_class=1)
    buffer = io.BytesIO()
    noise_rgb((64, 64), seed=3).save(buffer, format="PNG" if fmt == "png" else "JPEG")
    broken = tmp_path / "train" / "a" / f"broken.{fmt}"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # header intact, data cut

    ds = ImageFolder(tmp_path / "train", ["a"], 8)
    assert len(ds) == 2 and ds.skipped == [], "the header reads fine at scan time"
    index = [p for p, _ in ds.samples].index(broken)
    assert ds[index] is None
    images, labels = collate([ds[i] for i in range(len(ds))])
    assert images.shape == (1, 3, 8, 8) and labels.tolist() == [0]


def test_split_with_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="no readable images"):
        ImageFolder(tmp_path / "train", ["a"], 8)


def test_missing_root_is_an_error_naming_the_path(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(UserError, match="does not exist") as err:
        list_classes(root / "train", None, None)
    assert str(root) in str(err.value) and "ImageNet-mini" in str(err.value)
    assert "data.root" in str(err.value)  # the key to fix, not only the folder


def test_cli_missing_data_folder_names_the_key(tmp_path):
    proc = cli("train", "recipes/quickstart.yaml", "data.source=folder", f"data.root={tmp_path / 'nowhere'}",
               "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: data.root: folder ") and "data.root=PATH" in proc.stderr, proc.stderr


def test_root_without_train_folder_is_an_error(tmp_path):
    with pytest.raises(UserError, match="train") as err:
        list_classes(tmp_path / "train", None, None)
    assert f"{tmp_path}/train/<class>/<image>" in str(err.value)


def test_train_without_class_folders_is_an_error(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "loose.png").write_bytes(b"")
    (tmp_path / "train" / ".hidden").mkdir()
    with pytest.raises(UserError, match="no class folders") as err:
        list_classes(tmp_path / "train", None, None)
    assert str(tmp_path / "train") in str(err.value)


def test_too_few_classes_for_num_classes(tmp_path):
    make_tree(tmp_path, ["a", "b"])
    with pytest.raises(UserError, match="has 2 class folders but data.num_classes is 5") as err:
        list_classes(tmp_path / "train", 5, None)
    assert str(tmp_path / "train") in str(err.value)


def test_num_classes_takes_the_first_n_sorted(tmp_path):
    wnids = ["n01443537", "n01440764", "n01530575", "n01484850"]
    make_tree(tmp_path, wnids, splits=("train",), per_class=1)
    assert list_classes(tmp_path / "train", 2, None) == ["n01440764", "n01443537"]
    assert list_classes(tmp_path / "train", None, None) == sorted(wnids)


def test_explicit_classes_keep_their_order_and_missing_ones_are_named(tmp_path):
    make_tree(tmp_path, ["cat", "dog", "emu"], splits=("train",), per_class=1)
    assert list_classes(tmp_path / "train", 10, ["emu", "cat"]) == ["emu", "cat"]
    ds = ImageFolder(tmp_path / "train", ["emu", "cat"], 8)
    assert [label for _, label in ds.samples] == [0, 1] and ds.samples[0][0].parent.name == "emu"
    with pytest.raises(UserError, match="yak") as err:
        list_classes(tmp_path / "train", None, ["cat", "yak"])
    assert str(tmp_path / "train") in str(err.value)


def test_build_datasets_from_folder(tmp_path):
    make_tree(tmp_path, ["b", "a", "c"])
    cfg = DataConfig(source="folder", root=tmp_path, num_classes=2, image_size=12)
    train, val, classes = build_datasets(cfg, seed=0)
    assert classes == ["a", "b"] and len(train) == 4 and len(val) == 4
    assert train[0][0].shape == (3, 12, 12)


def test_build_datasets_needs_every_training_class_in_val(tmp_path):
    make_tree(tmp_path, ["a", "b"], splits=("train",))
    make_tree(tmp_path, ["a"], splits=("val",))
    cfg = DataConfig(source="folder", root=tmp_path, num_classes=None)
    with pytest.raises(UserError, match="lacks class folders that train has: b") as err:
        build_datasets(cfg, seed=0)
    assert str(tmp_path / "val") in str(err.value)


def test_build_datasets_synth():
    cfg = DataConfig(num_classes=3, train_per_class=4, val_per_class=2, image_size=16)
    train, val, classes = build_datasets(cfg, seed=0, bands=4)
    assert len(train) == 12 and len(val) == 6 and classes == synth_class_names(3)
    assert train[0][0].shape == (4, 16, 16)


# --- batch transforms --------------------------------------------------------


def test_collate_drops_none_and_handles_an_all_none_batch():
    item = (torch.zeros(3, 4, 4, dtype=torch.uint8), 2)
    images, labels = collate([None, item, item])
    assert images.shape == (2, 3, 4, 4) and labels.dtype == torch.int64 and labels.tolist() == [2, 2]
    images, labels = collate([None, None])
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape[0] == 0 and labels.shape == (0,)


def test_normalize_per_band_and_checks_band_count():
    x = torch.ones(2, 3, 4, 4)
    y = normalize(x, [0.5, 0.0, 1.0], [0.5, 1.0, 2.0])
    assert y[:, 0].eq(1).all() and y[:, 1].eq(1).all() and y[:, 2].eq(0).all()
    with pytest.raises(UserError, match="4 bands"):
        normalize(torch.ones(1, 4, 2, 2), [0.5] * 3, [0.25] * 3)


def batch(seed=0, shape=(4, 3, 24, 24)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_augment_disabled_is_identity_and_draws_nothing():
    aug = Augment(0, 0, 0, 0)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    x = batch()
    assert not aug.enabled and aug(x, gen) is x
    assert torch.equal(gen.get_state(), state)


def test_augment_is_deterministic_for_a_generator_state():
    aug = Augment(hflip=0.5, vflip=0.5, rotation=30, distortion=0.5)
    assert aug.enabled
    x = batch()
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    first = aug(x, gen)
    gen.set_state(state)
    assert torch.equal(first, aug(x, gen))
    assert not torch.equal(first, aug(x, gen)), "the generator advanced, so the next draw differs"
    assert first.shape == x.shape and first.min() >= 0 and first.max() <= 1


def test_augment_flips_exactly():
    x = batch()
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(Augment(hflip=1.0)(x, gen), x.flip(-1))
    torch.testing.assert_close(Augment(vflip=1.0)(x, gen), x.flip(-2))
    torch.testing.assert_close(Augment(hflip=1.0, vflip=1.0)(x, gen), x.flip(-1, -2))


def test_augment_handles_non_square_batches():
    x = batch(shape=(2, 4, 16, 24))
    out = Augment(rotation=90, distortion=1.0)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def _sideways_photo(path: Path) -> None:
    """A square JPEG whose stored top half is red and bottom half blue, tagged Orientation 6:
    a viewer turns it 90 degrees clockwise, so it shows blue on the left and red on the right."""
    a = np.zeros((32, 32, 3), dtype=np.uint8)
    a[:16, :, 0] = 255
    a[16:, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, exif=exif, quality=95)


def test_load_image_applies_the_exif_orientation(tmp_path):
    from edgecnn.data import load_image

    _sideways_photo(tmp_path / "phone.jpg")
    x = load_image(tmp_path / "phone.jpg", 16)
    left, right = x[:, :, :6].float().mean((1, 2)), x[:, :, -6:].float().mean((1, 2))
    assert left[2] > 200 and left[0] < 50, left  # blue
    assert right[0] > 200 and right[2] < 50, right  # red
    # Without the tag, the pixels as stored: red on top.
    Image.open(tmp_path / "phone.jpg").save(tmp_path / "plain.png")
    y = load_image(tmp_path / "plain.png", 16)
    assert y[0, :6].float().mean() > 200 and y[2, -6:].float().mean() > 200


def test_predict_inputs_follow_the_exif_orientation(tmp_path):
    """What predict feeds an artifact (from its sidecar alone): the photo as a viewer shows it."""
    from edgecnn.export.predict import _inputs

    _sideways_photo(tmp_path / "phone.jpg")
    with Image.open(tmp_path / "phone.jpg") as im:
        im.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.png")  # turned by hand
    sidecar = {"bands": ["R", "G", "B"], "input_bands": ["R", "G", "B"], "inputs": [{"name": "image"}],
               "image_size": 16, "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    sideways = _inputs(tmp_path / "phone.jpg", sidecar, tmp_path / "m.onnx")[0]
    upright = _inputs(tmp_path / "upright.png", sidecar, tmp_path / "m.onnx")[0]
    with Image.open(tmp_path / "phone.jpg") as im:
        im.save(tmp_path / "as_stored.png")
    stored = _inputs(tmp_path / "as_stored.png", sidecar, tmp_path / "m.onnx")[0]
    assert np.abs(sideways - upright).mean() < 0.1  # decoding noise at the colour edge only
    assert np.abs(stored - upright).mean() > 1  # the photo as stored is another picture (R and B swap halves)
