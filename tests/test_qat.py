"""Quantization-aware training for both backends, its run folder, resume, and the export of what it learned.

One tiny cnn_attn float run at 32 px (so the attention mixes 4 positions) is
trained once through the CLI; QAT and exports run in-process, so the heavy
backends import once.
"""

import csv
import json
from pathlib import Path

import pytest
import torch

from edgecnn.errors import UserError
from conftest import DYN_TINY, TINY, cli

torch.set_num_threads(1)  # two cores, shared

QAT_TINY = [*(o for o in TINY if not o.startswith("data.image_size")), "data.image_size=32"]
RUN_FILES = ("recipe.yaml", "env.json", "metrics.csv", "last.pt", "best.pt", "train.log", "qat.json")


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def float_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("qat") / "float"
    cli("train", "recipes/quickstart.yaml", *QAT_TINY, "--out", str(run), check=True)
    return run


def quiet():
    from rich.console import Console

    return Console(quiet=True)


def test_xnnpack_qat_run_folder_and_export_uses_learned_ranges(float_run: Path, monkeypatch):
    from edgecnn.export import executorch, export_run, load_artifact
    from edgecnn.quantize.qat import qat_run
    from edgecnn.train.checkpoint import load_checkpoint
    from edgecnn.train.run import read_run_recipe

    out = float_run / "qat-xnnpack"
    history = qat_run(float_run, "xnnpack", epochs=1, console=quiet())
    assert len(history) == 1 and rows(out)[0]["epoch"] == "1"
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert {"val_accuracy", "val_precision", "val_recall", "val_f1"} <= set(history[0])
    recipe, float_recipe = read_run_recipe(out), read_run_recipe(float_run)
    assert recipe.train.lr == pytest.approx(float_recipe.train.lr * 0.1) and recipe.train.epochs == 1
    info = json.loads((out / "qat.json").read_text())
    assert info["target"] == "xnnpack" and info["export_target"] == "executorch"
    assert "is_qat=True" in info["quantizer"] and info["float_run"] == str(float_run.resolve())
    state = load_checkpoint(out / "last.pt")
    assert {"model", "qat", "optimizer", "scheduler", "generator", "torch_rng", "history"} <= set(state)
    learned = {round(float(v), 6) for k, v in state["model"].items() if k.endswith(".scale") and v.numel() == 1}
    assert learned, "no activation scales in the checkpoint"

    given = {}
    real_export = executorch.export

    def spy(graph, path, int8, calibration, quantized=None):
        given["module"] = quantized[0] if quantized else None
        return real_export(graph, path, int8, calibration, quantized=quantized)

    monkeypatch.setattr(executorch, "export", spy)
    r = export_run(out, "executorch", int8=True)
    assert Path(r["path"]).parent == out / "export"
    assert r["quantization"]["qat_run"] == str(out) and "prepare_qat_pt2e" in r["quantization"]["method"]
    assert r["delegation"]["ops_outside"] == {}, r["delegation"]
    parity = r["parity"]
    assert "fake-quantized" in parity["reference"]
    assert parity["top1_agreement"] >= 0.8 and parity["max_abs_logit_diff"] < 1.0, parity
    # The model restored from the checkpoint is the one training validated.
    assert parity["pytorch"]["accuracy"] == pytest.approx(float(rows(out)[0]["val_accuracy"]), abs=1e-6)
    run, side = load_artifact(r["path"])
    assert side["precision"] == "int8" and run([torch.zeros(1, 3, 32, 32).numpy()]).shape == (1, 3)

    # The INT8 graph given to the exporter carries the ranges QAT learned: every
    # activation scale in it is one of the checkpoint's observer scales.
    used = {round(float(n.args[1]), 6) for n in given["module"].graph.nodes
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and isinstance(n.args[1], float)}
    assert used and used <= learned, used - learned


def test_openvino_qat_and_export(float_run: Path):
    from edgecnn.export import export_run
    from edgecnn.quantize.qat import qat_run
    from edgecnn.train.checkpoint import load_checkpoint

    out = float_run / "qat-openvino"
    qat_run(float_run, "openvino", epochs=1, console=quiet())
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    state = load_checkpoint(out / "best.pt")
    assert "nncf_config" in state["qat"]
    assert any("__nncf_hooks" in k and k.endswith(".scale") for k in state["model"])

    r = export_run(out, "openvino", int8=True)
    assert "NNCF quantization-aware" in r["quantization"]["method"]
    parity = r["parity"]
    assert parity["top1_agreement"] >= 0.8 and parity["max_abs_logit_diff"] < 1.0, parity
    assert parity["pytorch"]["accuracy"] == pytest.approx(float(rows(out)[0]["val_accuracy"]), abs=1e-6)
    assert (out / "export" / "cnn_attn-openvino-int8.bin").is_file()


def test_export_refuses_other_targets_and_fp32(float_run: Path):
    from edgecnn.export import export_run
    from edgecnn.quantize.qat import qat_recipe
    from edgecnn.train.run import read_run_recipe

    out = float_run / "qat-xnnpack"
    if not (out / "qat.json").exists():
        pytest.skip("needs the xnnpack QAT run")
    with pytest.raises(UserError, match="fine-tuned for xnnpack .*--target executorch --int8"):
        export_run(out, "openvino", int8=True)
    with pytest.raises(UserError, match="add --int8"):
        export_run(out, "executorch")
    with pytest.raises(UserError, match="--channels"):
        export_run(out, "executorch", int8=True, channels="RG")
    with pytest.raises(UserError, match="disagree"):
        qat_recipe(read_run_recipe(float_run), "xnnpack", 2, ["train.epochs=3"])


def test_qat_recipe_turns_off_the_gpu_fast_path_of_the_float_run():
    """A float run trained with amp/compile (tools/gpu_check.sh does) fine-tunes without them;
    asking for them explicitly is refused, since fake quantization supports neither."""
    from edgecnn.config.load import load_recipe
    from edgecnn.quantize.qat import qat_recipe

    fast = load_recipe("recipes/quickstart.yaml", ["train.amp=true", "train.compile=true", "train.lr=0.1"])
    recipe = qat_recipe(fast, "openvino", None, [])
    assert (recipe.train.amp, recipe.train.compile) == (False, False)
    assert recipe.train.lr == pytest.approx(0.01) and recipe.name.endswith("-qat-openvino")
    with pytest.raises(UserError, match="drop those overrides"):
        qat_recipe(fast, "openvino", None, ["train.amp=true"])


def test_refuses_overwrite_and_resume_of_finished_run_is_a_no_op(float_run: Path):
    from edgecnn.quantize.qat import qat_run

    out = float_run / "qat-xnnpack"
    if not (out / "qat.json").exists():
        pytest.skip("needs the xnnpack QAT run")
    before = (out / "last.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a run; add --resume"):
        qat_run(float_run, "xnnpack", epochs=1, console=quiet())
    assert len(qat_run(float_run, "xnnpack", epochs=1, resume=True, console=quiet())) == 1  # finished: nothing to do
    assert (out / "last.pt").read_bytes() == before
    for kwargs, message in [
        (dict(target="executorch"), "QAT with --target xnnpack"),
        (dict(target="xnnpack", epochs=2, resume=True), "recipe differs .* train.epochs"),
        (dict(target="openvino", out=out, resume=True), "is a QAT run for --target xnnpack"),
        (dict(target="xnnpack", overrides=["train.lr=-1"]), "train.lr"),
    ]:
        with pytest.raises(UserError, match=message):
            qat_run(float_run, console=quiet(), **kwargs)
    with pytest.raises(UserError, match="is a QAT run already"):
        qat_run(out, "xnnpack", console=quiet())
    # Through the CLI: exit 2 and one line, no traceback.
    proc = cli("qat", str(float_run), "--target", "xnnpack", "--epochs", "1")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_after_interrupt_mid_epoch_matches_uninterrupted(float_run: Path, tmp_path: Path, monkeypatch):
    """Stop a QAT run inside epoch 2, after its steps but before the checkpoint (the
    latest a kill can land), resume it, and compare with a run that never stopped.

    With the openvino backend, whose setup takes seconds; xnnpack's (PT2E) takes
    half a minute per run here, and its restore is what export uses, checked above.
    """
    import edgecnn.train.loop as loop
    from edgecnn.quantize.qat import qat_run
    from edgecnn.train.checkpoint import load_checkpoint

    full, killed = tmp_path / "full", tmp_path / "killed"
    qat_run(float_run, "openvino", epochs=2, out=full, console=quiet())

    real = loop._train_epoch
    calls = []

    def dies_in_second_epoch(*args, **kwargs):
        stats = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the weights moved; no checkpoint for this epoch
        return stats

    monkeypatch.setattr(loop, "_train_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        qat_run(float_run, "openvino", epochs=2, out=killed, console=quiet())
    monkeypatch.setattr(loop, "_train_epoch", real)
    assert len(rows(killed)) == 1

    qat_run(float_run, "openvino", epochs=2, out=killed, resume=True, console=quiet())
    assert rows(killed) == rows(full)
    a, b = load_checkpoint(killed / "last.pt"), load_checkpoint(full / "last.pt")
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert "resumed at epoch 1" in (killed / "train.log").read_text()


def test_eval_of_a_qat_run_measures_the_fake_quantized_model(float_run: Path):
    out = float_run / "qat-xnnpack"
    if not (out / "qat.json").exists():
        pytest.skip("needs the xnnpack QAT run")
    proc = cli("eval", str(out), "--json", check=True)
    result = json.loads((out / "eval.json").read_text())
    assert result["fake_quantized"] is True and '"fake_quantized": true' in proc.stdout
    # The same model training validated, and the float architecture's cost.
    best = max(float(r["val_accuracy"]) for r in rows(out))
    assert result["accuracy"] == pytest.approx(best, abs=1e-6)
    float_eval = json.loads(cli("eval", str(float_run), "--json", check=True).stdout)
    assert (result["params"], result["macs"]) == (float_eval["params"], float_eval["macs"])


def test_qat_under_two_process_ddp(float_run: Path, tmp_path: Path):
    """`edgecnn qat --nproc 2`: torchrun, two gloo ranks, rank 0 writes a QAT run folder that exports."""
    out = tmp_path / "qat-ddp"
    proc = cli("qat", str(float_run), "--target", "openvino", "--epochs", "1", "--nproc", "2", "--out", str(out),
               check=True)
    assert "x 2 processes" in proc.stdout
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    assert json.loads((out / "qat.json").read_text())["calibration_images"] > 0
    assert len(rows(out)) == 1
    exported = cli("export", str(out), "--target", "openvino", "--int8", check=True)
    assert "int8" in exported.stdout


@pytest.fixture(scope="module")
def band_run(tmp_path_factory) -> Path:
    """A tiny mask-attention band model, trained once for both QAT backends (qat writes into its own --out)."""
    run = tmp_path_factory.mktemp("qat") / "dynconv"
    cli("train", "recipes/quickstart_dynconv.yaml", *DYN_TINY, "model.name=resnet34_dynconv_mask",
        "--out", str(run), check=True)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("target, export_target", [("xnnpack", "executorch"), ("openvino", "openvino")])
def test_band_model_qat_for_a_subset_exports_and_runs(band_run: Path, tmp_path: Path, target: str,
                                                      export_target: str):
    """qat --channels on resnet34_dynconv_mask fine-tunes the folded plain ResNet; its export runs."""
    import numpy as np

    from edgecnn.export import export_run, load_artifact

    proc = cli("qat", str(band_run), "--target", target, "--channels", "rg", "--epochs", "1",
               "--out", str(tmp_path / "qat"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "qat" / "qat.json").read_text())
    assert info["channels"] == "rg"
    r = export_run(tmp_path / "qat", export_target, int8=True)
    assert r["channels"] == "RG" and r["band_handling"].startswith("folded") and "QAT" in r["band_handling"]
    assert Path(r["path"]).name.endswith(f"-int8-RG{Path(r['path']).suffix}")
    assert r["parity"]["top1_agreement"] >= 0.7, r["parity"]
    runner, _ = load_artifact(r["path"])
    assert runner([np.zeros((1, 3, 16, 16), np.float32)]).shape == (1, 3)


@pytest.mark.slow
def test_skipping_absent_conv_kinds_gives_torchao_s_own_graphs(monkeypatch):
    """backends._only_present_convs: prepare and convert of a conv-BN-ReLU model give the same graph, and the
    same outputs, as torchao's helpers that try every convolution kind (the originals, put back here)."""
    from torch import nn
    from torchao.quantization.pt2e import qat_utils

    from edgecnn import backends

    api = backends.pt2e_xnnpack("test")
    names = ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper")
    assert all(hasattr(getattr(qat_utils, n), "original") for n in names)  # wrapped

    def convert() -> torch.fx.GraphModule:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
        quantizer = api.XNNPACKQuantizer()
        quantizer.set_global(api.get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
        x = torch.randn(2, 3, 6, 6)
        graph = api.prepare_qat_pt2e(torch.export.export(model, (x,)).module(), quantizer)
        graph(x)  # one training-mode pass: observers and BatchNorm statistics move
        api.move_exported_model_to_eval(graph)
        return api.convert_pt2e(graph)

    skipped = convert()
    for n in names:
        monkeypatch.setattr(qat_utils, n, getattr(qat_utils, n).original)
    every = convert()  # most of this test's time: torchao's own helpers export 60 patterns
    assert skipped.code == every.code
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(skipped(x), every(x))


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory) -> Path:
    """A tiny cnn_attn_dynconv_mask run at 32 px (at 16 px the last pooling is over 1 x 1, an as_strided copy
    XNNPACK leaves outside), trained on per-image band subsets: the mask-input model both QAT backends tune."""
    run = tmp_path_factory.mktemp("qat") / "mask"
    cli("train", "recipes/quickstart_dynconv.yaml", *QAT_TINY, "train.epochs=1", "model.name=cnn_attn_dynconv_mask",
        "train.band_subsets=per_sample", "--out", str(run), check=True)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("target, export_target", [("xnnpack", "executorch"), ("openvino", "openvino")])
def test_mask_input_model_qat_serves_every_subset(mask_run: Path, tmp_path: Path, target: str, export_target: str):
    """QAT of the mask-input model itself (no --channels): trained on random band subsets, restored with the
    same graph, exported as one artifact taking (image, mask) whose parity is measured on every subset."""
    import numpy as np

    from edgecnn.data.bands import all_subsets, presence_mask, subset_name
    from edgecnn.export import export_run, load_artifact
    from edgecnn.models.registry import takes_mask
    from edgecnn.quantize.qat import load_qat, qat_run

    out = tmp_path / "qat"
    qat_run(mask_run, target, epochs=1, out=out, console=quiet())
    info = json.loads((out / "qat.json").read_text())
    assert info["band_subsets"] == "per_sample" and "mask" in info["inputs"] and "StemGains" in info["stem"]
    # Validated on every subset each epoch, as band-robust training is.
    assert "val_accuracy_subset_mean" in rows(out)[0]

    # The restored model takes the mask in every form training and export give it, and uses it.
    _, model, _, _, _ = load_qat(out)
    assert takes_mask(model)
    bands = ["R", "G", "B"]
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    rg = presence_mask(["R", "G"], bands)
    with torch.no_grad():
        full = model(x)
        torch.testing.assert_close(model(x, torch.ones(3)), full)
        torch.testing.assert_close(model(x, torch.ones(3, 3)), full)
        per_image = torch.stack([torch.ones(3), rg, presence_mask(["B"], bands)])
        mixed, alone = model(x, per_image), model(x[1:2], rg)
        # Not exact: the gains (3/2 here) round differently in a batch of 3 and of 1, by ~1e-7, which can move
        # an activation across an INT8 rounding boundary (one step of the stem's input, 0.03 in the logits).
        torch.testing.assert_close(mixed[1:2], alone, atol=0.1, rtol=0)
        assert (mixed[1] - alone[0]).abs().max() < (mixed[1] - full[1]).abs().max()  # the row's own mask was used

    r = export_run(out, export_target, int8=True)
    assert [i["name"] for i in r["inputs"]] == ["image", "mask"] and r["inputs"][1]["shape"] == [3]
    parity = r["parity"]
    assert set(parity["per_subset"]) == {subset_name(s, bands) for s in all_subsets(bands)}
    assert parity["min_subset_agreement"] == min(v["top1_agreement"] for v in parity["per_subset"].values())
    # A one-epoch model on 12 validation images: one disagreement is 8 points. (The figures at a useful
    # size are in docs/quantization.md.)
    assert parity["top1_agreement"] >= 0.9 and parity["min_subset_agreement"] >= 0.75, parity["per_subset"]
    assert parity["pytorch"]["accuracy"] == pytest.approx(float(rows(out)[0]["val_accuracy"]), abs=1e-6)
    if export_target == "executorch":
        assert r["delegation"]["delegated_subgraphs"] == 1 and r["delegation"]["ops_outside"] == {}, r["delegation"]
        assert r["quantization"]["kept_float"] == ["DelegableLayerNorm", "StemGains"]
    runner, _ = load_artifact(r["path"])
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert runner([image, np.ones(3, np.float32)]).shape == (1, 3)
