"""``edgecnn predict``: artifacts of every target on real image files, checked against the PyTorch model.

A tiny cnn_attn run is trained once through the CLI and exported (fp32, so the
artifact and PyTorch must agree) to ExecuTorch, OpenVINO and ONNX in-process.
The images are written here with Pillow: PNG and JPEG, colour and greyscale,
not square and not at the model's size, so decoding, resizing and cropping are
exercised as in training.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgecnn.errors import UserError
from conftest import cli, tiny_artifact

torch.set_num_threads(1)  # two cores, shared

TARGETS = ("executorch", "openvino", "onnx")


@pytest.fixture(scope="module")
def exported(tiny_run) -> tuple[Path, dict[str, Path]]:
    """The suite's tiny run (conftest.tiny_run) and its fp32 artifacts."""
    return tiny_run, {t: tiny_artifact(tiny_run, t) for t in TARGETS}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Five photos: RGB PNG, RGB JPEG, greyscale PNG, RGBA PNG, palette GIF; various sizes."""
    from edgecnn.data.synth import SynthDataset

    folder = tmp_path_factory.mktemp("images")
    ds = SynthDataset(3, 2, 48, 0, "val", 3)  # shapes the tiny model has seen, at another size
    pictures = [Image.fromarray(ds[i][0].permute(1, 2, 0).numpy()) for i in range(len(ds))]
    paths = []
    for i, (mode, ext, size) in enumerate([("RGB", "png", (48, 40)), ("RGB", "jpg", (64, 64)), ("L", "png", (40, 52)),
                                          ("RGBA", "png", (33, 33)), ("P", "gif", (48, 48))]):
        im = pictures[i % len(pictures)].resize(size).convert(mode)
        path = folder / f"photo{i}.{ext}"
        im.save(path)
        paths.append(path)
    return paths


def torch_logits(run: Path, image: Path) -> torch.Tensor:
    """The run's PyTorch model's logits for ``image``, decoded and normalised as in training."""
    from edgecnn.data import load_image
    from edgecnn.train.loop import prepare
    from edgecnn.train.run import load_trained

    recipe, model, _, _ = load_trained(run)
    x = prepare(load_image(image, recipe.data.image_size)[None], torch.device("cpu"), recipe.data.mean, recipe.data.std)
    with torch.no_grad():
        return model(x)[0]


def test_every_target_predicts_what_pytorch_predicts(exported, images):
    from edgecnn.export.predict import predict

    run, artifacts = exported
    logits = [torch_logits(run, p) for p in images]
    expected = [int(t.argmax()) for t in logits]
    # fp32 artifacts differ from PyTorch by ~1e-6: a near tie could flip either way, and is not compared.
    clear = [float(t.topk(2).values[0] - t.topk(2).values[1]) > 1e-3 for t in logits]
    assert sum(clear) >= 3
    classes = json.loads(Path(str(artifacts["onnx"]) + ".json").read_text())["classes"]
    for target, artifact in artifacts.items():
        results = predict(artifact, images, top_k=2)
        assert [r["image"] for r in results] == [str(p) for p in images]
        for r, want, compare in zip(results, expected, clear):
            if compare:
                assert r["top"][0]["index"] == want and r["class"] == classes[want], (target, r["image"])
            assert len(r["top"]) == 2
            assert r["top"][0]["probability"] >= r["top"][1]["probability"]
            probs = np.exp(np.array(r["logits"]) - max(r["logits"]))
            assert r["probability"] == pytest.approx(probs.max() / probs.sum(), rel=1e-6)


def test_cli_text_and_json(exported, images):
    _, artifacts = exported
    proc = cli("predict", str(artifacts["openvino"]), *map(str, images[:2]), "--json", check=True)
    results = json.loads(proc.stdout)
    assert len(results) == 2 and len(results[0]["top"]) == 3  # top-k capped at the 3 classes
    assert sum(t["probability"] for t in results[0]["top"]) == pytest.approx(1.0, abs=1e-6)
    text = cli("predict", str(artifacts["executorch"]), str(images[2]), "--top-k", "1", check=True).stdout
    assert text.splitlines()[0] == str(images[2]) and "%" in text.splitlines()[1] and len(text.splitlines()) == 2


def test_errors_are_one_line(exported, images, tmp_path):
    from edgecnn.export.predict import predict

    _, artifacts = exported
    onnx = artifacts["onnx"]
    alone = tmp_path / "alone" / onnx.name
    alone.parent.mkdir()
    shutil.copy(onnx, alone)  # no sidecar beside it
    corrupt = tmp_path / "corrupt" / onnx.name
    corrupt.parent.mkdir()
    shutil.copy(onnx, corrupt)
    Path(str(corrupt) + ".json").write_text("{not json")
    grown = tmp_path / "grown" / onnx.name
    grown.parent.mkdir()
    shutil.copy(onnx, grown)
    shutil.copy(str(onnx) + ".json", str(grown) + ".json")
    with open(grown, "ab") as f:
        f.write(b"\0")  # the file changed after export
    swapped = tmp_path / "swapped" / "other.onnx"
    swapped.parent.mkdir()
    shutil.copy(onnx, swapped)
    shutil.copy(str(onnx) + ".json", str(swapped) + ".json")  # a sidecar for another file name
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a JPEG")

    cases = [
        (tmp_path / "missing.onnx", images[:1], "no such file"),
        (alone, images[:1], "no sidecar"),
        (corrupt, images[:1], "damaged"),
        (grown, images[:1], "changed after export"),
        (swapped, images[:1], "describes cnn_attn-onnx-fp32.onnx, not other.onnx"),
        (onnx, [not_image], "not a readable image"),
        (onnx, [tmp_path / "nope.png"], "no such image file"),
    ]
    for artifact, files, message in cases:
        with pytest.raises(UserError, match=message) as err:
            predict(artifact, files)
        assert len(err.value.lines) == 1
    proc = cli("predict", str(onnx), str(not_image))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
