"""Export to ExecuTorch, OpenVINO and ONNX, checked with each real runtime.

One tiny cnn_attn run and one tiny resnet34_dynconv_mask run are trained
once for the module; every export below reads them. Exports run in-process
(the backends import once); the CLI is exercised for a band subset and for errors.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn.errors import UserError
from conftest import DYN_TINY, ROOT, TINY, cli, copy_run

torch.set_num_threads(1)  # two cores, shared

TARGETS = ("executorch", "openvino", "onnx")
SIDECAR_KEYS = {
    "artifact", "files", "size_bytes", "model", "target", "precision", "runtime", "inputs", "outputs", "bands",
    "channels", "input_bands", "band_handling", "image_size", "normalization", "classes", "export",
    "quantization", "parity", "source",
}

def export_cli(*args: str) -> subprocess.CompletedProcess:
    return cli("export", *args)


@pytest.fixture(scope="module")
def attn_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the suite's tiny run (conftest.tiny_run) without its artifacts: these tests export into it."""
    return copy_run(tiny_run, tmp_path_factory.mktemp("export") / "attn")


@pytest.fixture(scope="module")
def dynconv_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("export") / "dynconv"
    cli("train", "recipes/quickstart_dynconv.yaml", *DYN_TINY, "model.name=resnet34_dynconv_mask",
        "--out", str(run), check=True)
    return run


def val_images(run: Path) -> list[torch.Tensor]:
    """The run's validation images, normalised as the exporter feeds them: [1, bands, S, S] each."""
    from edgecnn.data import build_datasets
    from edgecnn.train.loop import prepare
    from edgecnn.train.run import read_run_recipe

    recipe = read_run_recipe(run)
    _, val, _ = build_datasets(recipe.data, recipe.seed, len(recipe.data.bands))
    return [prepare(val[i][0][None], torch.device("cpu"), recipe.data.mean, recipe.data.std) for i in range(len(val))]


def test_every_target_in_both_precisions(attn_run: Path):
    from edgecnn.export import export_run, load_artifact

    records = {}
    for target in TARGETS:
        for int8 in (False, True):
            r = export_run(attn_run, target, int8=int8, calib=16)
            precision = "int8" if int8 else "fp32"
            records[target, precision] = r
            path = Path(r["path"])
            assert path.parent == attn_run / "export"
            assert path.name.startswith(f"cnn_attn-{target}-{precision}.")
            assert SIDECAR_KEYS <= set(r), SIDECAR_KEYS - set(r)
            side = json.loads(Path(r["sidecar"]).read_text())
            assert side["artifact"] == path.name and side["precision"] == precision
            assert side["inputs"] == [{"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32"}]
            assert side["classes"] == r["classes"] and len(side["classes"]) == 3
            assert side["normalization"]["mean"] == [0.5, 0.5, 0.5] and side["image_size"] == 16
            assert side["runtime"]["version"]
            assert side["size_bytes"] == sum(f.stat().st_size for f in path.parent.glob(path.stem + ".*")
                                             if f.suffix != ".json")
            parity = side["parity"]
            assert parity["images"] == 3 * 4
            for k in ("accuracy", "precision", "recall", "f1"):
                assert 0 <= parity["artifact"][k] <= 1
            # One input per image: every changed answer is one of the images that disagree, and a gap
            # between PyTorch's top two can only be crossed by moving the two logits that much between them.
            c = parity["changed"]
            assert c["pairs"] == parity["images"]
            assert c["answers"] == round((1 - parity["top1_agreement"]) * parity["images"])
            assert c["widest_margin"] <= 2 * parity["max_abs_logit_diff"] + 1e-6
            assert 0 <= c["near_ties"] <= 1
            if int8:
                assert side["quantization"]["calibration_images"] == 16
                assert parity["top1_agreement"] >= 0.5 and parity["max_abs_logit_diff"] < 2.0  # sane, not exact
            else:
                assert side["quantization"] is None
                assert parity["top1_agreement"] >= 0.9 and parity["max_abs_logit_diff"] < 1e-3
            if target == "executorch":
                d = side["delegation"]
                assert d["delegated_subgraphs"] >= 1 and isinstance(d["ops_outside"], dict)
            # The runner later stages use gives the logits parity measured.
            run, _ = load_artifact(path)
            assert run([np.zeros((1, 3, 16, 16), np.float32)]).shape == (1, 3)

    assert (attn_run / "export" / "cnn_attn-openvino-fp32.bin").is_file()
    assert records["openvino", "fp32"]["runtime"]["config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    # No temporaries left behind by the atomic writes.
    assert not [f for f in (attn_run / "export").iterdir() if f.name.startswith(".")]
    # cnn_attn's 1.2 M weights dominate every file even at 16 px, so INT8 must be about 4x smaller.
    for target in TARGETS:
        fp32, int8 = records[target, "fp32"]["size_bytes"], records[target, "int8"]["size_bytes"]
        assert int8 < 0.35 * fp32, (target, fp32, int8)


def test_band_subset_folds_dynconv_via_cli(dynconv_run: Path):
    """--channels RG on a mask-attention model: a plain ResNet over 2 bands, equal to the full model with B zero."""
    from edgecnn.export import load_artifact
    from edgecnn.train.run import load_trained

    proc = export_cli(str(dynconv_run), "--target", "onnx", "--channels", "gr")
    assert proc.returncode == 0, proc.stderr
    path = dynconv_run / "export" / "resnet34_dynconv_mask-onnx-fp32-RG.onnx"
    assert str(path) in proc.stdout and "top-1 agreement" in proc.stdout
    run, side = load_artifact(path)
    assert side["channels"] == "RG" and side["input_bands"] == ["R", "G"]
    assert side["inputs"] == [{"name": "image", "shape": [1, 2, 16, 16], "dtype": "float32"}]
    assert side["band_handling"].startswith("folded")
    assert side["parity"]["max_abs_logit_diff"] < 1e-4

    _, model, _, _ = load_trained(dynconv_run)
    mask = torch.tensor([1.0, 1.0, 0.0])
    for x in val_images(dynconv_run)[:4]:
        expected = model(x * mask[None, :, None, None], mask)
        got = torch.from_numpy(run([x[:, :2].numpy()]))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_band_aware_model_takes_the_mask_as_input(dynconv_run: Path):
    """Without --channels one artifact serves every subset: image plus presence mask."""
    from edgecnn.export import export_run, load_artifact
    from edgecnn.train.run import load_trained

    r = export_run(dynconv_run, "openvino")
    assert [i["name"] for i in r["inputs"]] == ["image", "mask"] and r["inputs"][1]["shape"] == [3]
    p = r["parity"]
    assert p["max_abs_logit_diff"] < 1e-3
    # Every image on all bands, every stride-th one on each other subset too: the pairs "changed" counts.
    assert p["changed"]["pairs"] == p["images"] + p["per_subset_images"] * (len(p["per_subset"]) - 1)
    assert p["changed"]["widest_margin"] < 0.01  # fp32 could flip an exact tie, nothing more
    run, _ = load_artifact(r["path"])
    _, model, _, _ = load_trained(dynconv_run)
    x = val_images(dynconv_run)[0]
    for mask in ([0.0, 1.0, 1.0], [1.0, 0.0, 0.0]):  # bands dropping at run time
        mask = torch.tensor(mask)
        masked = x * mask[None, :, None, None]
        got = torch.from_numpy(run([masked.numpy(), mask.numpy()]))
        torch.testing.assert_close(got, model(masked, mask), rtol=0, atol=1e-3)


def test_errors_exit_2_without_traceback(attn_run: Path):
    for args, message in [
        (("--target", "tflite"), "unknown target 'tflite'; choose one of: executorch, openvino, onnx"),
        (("--target", "onnxx"), "did you mean 'onnx'?"),
        (("--target", "onnx", "--channels", "RX"), "unknown band 'X'"),
    ]:
        proc = export_cli(str(attn_run), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_checkpoint_of_another_model_is_one_line(attn_run: Path, tmp_path: Path):
    """A run folder whose recipe names another model than the one its checkpoint holds: both named, exit 2."""
    run = copy_run(attn_run, tmp_path / "other")
    recipe = (run / "recipe.yaml").read_text()
    (run / "recipe.yaml").write_text(recipe.replace("name: cnn_attn\n", "name: cnn_attn_dynconv_mask\n", 1))
    for proc in (export_cli(str(run), "--target", "onnx"), cli("eval", str(run))):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "holds a cnn_attn but" in proc.stderr and "builds a cnn_attn_dynconv_mask" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (run / "export").exists()  # nothing written half


def test_missing_backend_names_the_extra():
    from edgecnn import backends

    with pytest.raises(UserError, match=r"pip install 'edgecnn\[export\]'"):
        backends.require("surely_not_installed_backend", purpose="the test target")


def test_export_failure_is_one_line():
    from edgecnn.export.artifact import torch_export

    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.nonzero()[: int(x.sum())]  # output size depends on the values

    with pytest.raises(UserError) as err:
        torch_export(DataDependent(), (torch.ones(2, 2),))
    message = str(err.value)
    assert len(err.value.lines) == 1 and "capturing the model graph" in message
    assert "test_export.py:" in message and "(forward)" in message  # where in the model it failed


# Ops that may stay outside the XNNPACK delegate: they only reshape or copy memory
# (``getitem``, which unpacks a delegate's outputs, is not counted at all).
GLUE = {"aten_view_copy_default", "aten_squeeze_copy_dims", "aten_unsqueeze_copy_default", "aten_alias_copy_default",
        "dim_order_ops__clone_dim_order_default", "dim_order_ops__to_dim_order_copy_default"}


def test_delegable_layernorm_is_nn_layernorm():
    from edgecnn.quantize.delegable import DelegableLayerNorm, for_xnnpack
    from edgecnn.models import build_model

    torch.manual_seed(0)
    ln = torch.nn.LayerNorm(256)
    torch.nn.init.normal_(ln.weight)
    torch.nn.init.normal_(ln.bias)
    swapped = for_xnnpack(torch.nn.Sequential(ln))[0]
    assert isinstance(swapped, DelegableLayerNorm) and type(ln) is torch.nn.LayerNorm  # a copy, the original kept
    assert swapped.state_dict().keys() == ln.state_dict().keys()
    x = torch.randn(2, 49, 256) * 3 + 1
    torch.testing.assert_close(swapped(x), ln(x), atol=1e-5, rtol=1e-5)

    model = build_model("cnn_attn", 50)
    ready = for_xnnpack(model)
    assert isinstance(ready.attention.norm, DelegableLayerNorm)
    assert ready.state_dict().keys() == model.state_dict().keys()
    assert sum(p.numel() for p in ready.parameters()) == 1_238_834


def test_cnn_attn_runs_entirely_inside_xnnpack(tmp_path: Path):
    """fp32 and INT8: one delegated subgraph and no compute op on portable kernels.

    At 32 px (4 attention positions): the graph's structure does not depend on
    the size (checked by hand at 224: the same single subgraph, nothing outside).
    """
    from edgecnn.export import executorch
    from edgecnn.models.deployable import deployable
    from edgecnn.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn_attn", 10).eval()
    graph = deployable(model, ["R", "G", "B"], 32, None)
    calibration = [(torch.randn(1, 3, 32, 32),) for _ in range(4)]
    x = torch.randn(1, 3, 32, 32)
    for int8 in (False, True):
        path = tmp_path / f"attn-{int8}.pte"
        d = executorch.export(graph, path, int8, calibration)["delegation"]
        assert d["delegated_subgraphs"] == 1 and set(d["ops_outside"]) <= GLUE, d
        got = torch.from_numpy(executorch.load(path)([x.numpy()]))
        torch.testing.assert_close(got, model(x), atol=0.5 if int8 else 1e-4, rtol=0)


def test_out_may_name_the_artifact_file(attn_run: Path, tmp_path: Path):
    """--out model.onnx writes that file (not a folder named model.onnx); another target's suffix is refused."""
    proc = export_cli(str(attn_run), "--target", "onnx", "--out", str(tmp_path / "model.onnx"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.onnx.json").is_file()
    assert json.loads((tmp_path / "model.onnx.json").read_text())["artifact"] == "model.onnx"
    proc = export_cli(str(attn_run), "--target", "onnx", "--out", str(tmp_path / "model.pte"))
    assert proc.returncode == 2 and not (tmp_path / "model.pte").exists()
    assert proc.stderr.startswith("error: --out ") and ".onnx" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_onnx_preprocessing_failure_keeps_its_reason(tmp_path: Path, monkeypatch):
    import onnxruntime.quantization.shape_inference as si

    from edgecnn.quantize import ptq

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(tmp_path / "m.onnx"), dynamo=False,
                      input_names=["image"], output_names=["logits"])

    def broken(*args, **kwargs):
        raise RuntimeError("shape inference exploded\nsecond line")

    monkeypatch.setattr(si, "quant_pre_process", broken)
    settings = ptq.onnxruntime_static(tmp_path / "m.onnx", tmp_path / "q.onnx", ["image"],
                                      [(torch.randn(1, 3, 8, 8),)] * 2, tmp_path)
    assert settings["pre_processed"] is False
    assert settings["pre_process_error"] == "RuntimeError: shape inference exploded"
    assert (tmp_path / "q.onnx").is_file()


def test_int8_ptq_leaves_the_head_and_the_stem_gains_float_on_every_target(tmp_path: Path):
    """The classifier (``Deployable.head``) and a static stem's gains stay float in every PTQ artifact.

    ONNX reads them by module scope, which onnxruntime's pre-processing strips from the graph it
    quantizes: before this test both were silently quantized in the ONNX artifact (worst band subset
    96.3% agreement on the quickstart run instead of 99.0%).
    """
    import onnx

    from edgecnn.export import executorch, onnx as onnx_target, openvino
    from edgecnn.models import build_model
    from edgecnn.models.deployable import deployable

    torch.manual_seed(0)
    model = build_model("cnn_attn_dynconv_mask", 5, in_chans=4).eval()
    graph = deployable(model, ["R", "G", "B", "NIR"], 16, None)
    assert graph.head == "head" and "head" in graph.float_modules
    assert any(n.endswith("gains") for n in graph.float_modules)
    calibration = [graph.calibration_inputs(torch.randn(1, 4, 16, 16), i) for i in range(8)]

    sections = executorch.export(graph, tmp_path / "m.pte", True, calibration)
    assert "head" in sections["quantization"]["float_layers"], sections["quantization"]
    sections = openvino.export(graph, tmp_path / "m.xml", True, calibration)
    assert "head" in sections["quantization"]["float_layers"], sections["quantization"]

    onnx_target.export(graph, tmp_path / "m.onnx", True, calibration)
    nodes = onnx.load(str(tmp_path / "m.onnx")).graph.node
    made_by = {out: n for n in nodes for out in n.output}
    last = made_by[onnx.load(str(tmp_path / "m.onnx")).graph.output[0].name]
    assert last.op_type in ("Gemm", "MatMul", "Add"), last.op_type  # float logits, not a DequantizeLinear
    head_inputs = [made_by[i].op_type for i in last.input if i in made_by]
    assert "DequantizeLinear" not in head_inputs[1:], head_inputs  # the weight is float
    gains = next(n for n in nodes if n.op_type == "Softmax")  # the stem's, first: its attention over kernel sets
    assert made_by[gains.input[0]].op_type != "DequantizeLinear", made_by[gains.input[0]]
