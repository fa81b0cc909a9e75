import json

import pytest
import torch

from edgecnn.models import build_model, model_names
from edgecnn.models.stats import count_params, measure_cost
from conftest import ROOT, cli


def test_registry_names():
    assert {"cnn_attn", "cnn", "resnet34"} <= set(model_names())


def test_cnn_attn_is_exactly_the_papers_size():
    model = build_model("cnn_attn", 50)
    assert count_params(model) == 1_238_834
    # The same weights as nn.MultiheadAttention: packed qkv + output projection.
    mha = torch.nn.MultiheadAttention(256, 8)
    attn = model.attention
    assert count_params(attn.qkv) + count_params(attn.proj) == count_params(mha)


def test_paper_costs():
    attn = measure_cost(build_model("cnn_attn", 50), 224)
    # 2.399 G in the ConvBlocks + 0.071 G in attention (the paper, via a counter
    # that skips the attention matmuls, says 2.42 G).
    assert attn.macs == pytest.approx(2.47e9, rel=0.01)
    assert attn.per_module["features"]["macs"] == pytest.approx(2.399e9, rel=0.001)
    r224 = measure_cost(build_model("resnet34", 50), 224)
    assert r224.params == pytest.approx(21.31e6, rel=0.001)
    assert r224.macs == pytest.approx(3.66e9, rel=0.005)
    assert measure_cost(build_model("resnet34", 50), 96).macs == pytest.approx(0.673e9, rel=0.005)
    ablation = measure_cost(build_model("cnn", 50), 224)
    assert ablation.params == 1_238_834 - 263_168 - 512  # minus attention and its LayerNorm


@pytest.mark.parametrize("name", ["cnn_attn", "cnn", "resnet34"])
@pytest.mark.parametrize("in_chans", [1, 3, 4])
def test_forward_shapes_any_band_count(name, in_chans):
    model = build_model(name, 7, in_chans).eval()
    assert model(torch.randn(2, in_chans, 64, 64)).shape == (2, 7)


def test_attention_exports_as_a_plain_graph():
    """torch.export must see matmul/softmax, never a fused attention op, so the
    export backends can lower and quantize every piece."""
    model = build_model("cnn_attn", 10).eval()
    ep = torch.export.export(model, (torch.randn(1, 3, 64, 64),))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("attention" in t or "multi_head" in t for t in targets), targets
    assert any("softmax" in t for t in targets)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(ep.module()(x), model(x))


def test_attention_matches_nn_multihead_attention():
    """The hand-written block computes what nn.MultiheadAttention computes with the same weights."""
    torch.manual_seed(0)
    model = build_model("cnn_attn", 10).eval()
    attn = model.attention
    mha = torch.nn.MultiheadAttention(256, 8, batch_first=True).eval()
    mha.in_proj_weight.data.copy_(attn.qkv.weight)
    mha.in_proj_bias.data.copy_(attn.qkv.bias)
    mha.out_proj.weight.data.copy_(attn.proj.weight)
    mha.out_proj.bias.data.copy_(attn.proj.bias)
    x = torch.randn(2, 256, 4, 4)
    t = x.flatten(2).transpose(1, 2)
    ref = attn.norm(t + mha(t, t, t, need_weights=False)[0]).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-5)


def test_cli_info_json():
    proc = cli("info", "recipes/cnn_attn.yaml", "--json", check=True)
    info = json.loads(proc.stdout)
    assert info["model"] == "cnn_attn" and info["params"] == 1_238_834 and info["input_size"] == 224
    assert info["macs"] == pytest.approx(2.47e9, rel=0.01)
    proc = cli("info", "recipes/resnet34.yaml", "--input-size", "96", "--json", check=True)
    assert json.loads(proc.stdout)["macs"] == pytest.approx(0.673e9, rel=0.005)
    table = cli("info", "recipes/quickstart.yaml", check=True).stdout
    assert "attention" in table and "FLOPs" in table


def test_catalog_matches_the_registry():
    """The torch-free catalog the recipe schema reads lists exactly the models the registry builds,
    with the same band-mask capability."""
    from edgecnn.core import catalog
    from edgecnn.models.registry import build_model, model_names, reads_wavelengths, takes_mask

    assert catalog.model_names() == model_names()
    for name in model_names():
        model = build_model(name, num_classes=3, in_chans=3)
        assert catalog.takes_mask(name) is takes_mask(model), name
        assert catalog.reads_wavelengths(name) is reads_wavelengths(model), name


def test_validating_a_recipe_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from edgecnn.config import load_recipe; load_recipe('recipes/quickstart.yaml', []); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
