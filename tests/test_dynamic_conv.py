"""Band subsets (edgecnn.data.bands) and the band-robust DynamicConv2D stem (edgecnn.models.dynamic_conv)."""

import pytest
import torch

from edgecnn.data.bands import (
    all_subsets, parse_subset, presence_mask, sample_subset_mask, sample_subset_masks, subset_name,
)
from edgecnn.errors import UserError
from edgecnn.models import build_model
from edgecnn.models.cnn_attn import CNNAttention
from edgecnn.models.dynamic_conv import (
    DynamicConv2D, StaticStem, band_stem, folded_model, kernel_usage, kernels_to_keep, static_model,
)
from edgecnn.models.registry import takes_mask
from edgecnn.models.resnet import ResNet
from edgecnn.models.stats import measure_cost

RGB = ["R", "G", "B"]
RGBN = ["R", "G", "B", "NIR"]
BAND_SETS = pytest.mark.parametrize("bands", [RGB, RGBN], ids=["rgb", "rgbn"])


def resnet34_dynconv(num_classes, in_chans=3, **kw):
    return build_model("resnet34_dynconv", num_classes, in_chans, **kw)


def resnet34_dynconv_mask(num_classes, in_chans=3, **kw):
    return build_model("resnet34_dynconv_mask", num_classes, in_chans, **kw)


def band_resnet10(num_classes, bands, attention, **kw):
    name = "resnet34_dynconv_mask" if attention == "mask" else "resnet34_dynconv"
    return build_model(name, num_classes, bands, layers=[1, 1, 1, 1], **kw)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The CI machine is shared and these batches are tiny: extra threads only spin and wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _masks(bands):
    return [(subset_name(s, bands), presence_mask(s, bands)) for s in all_subsets(bands)]


def _randomize_norms(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affines, so eval-mode comparisons exercise every layer
    (fresh ResNets zero each residual branch's last BN)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


# -- parsing and naming subsets ------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("RG", ["R", "G"]), ("GR", ["R", "G"]), ("rgb", RGB), ("B", ["B"]), ("R,B", ["R", "B"]), (" G , R ", ["R", "G"]),
])
def test_parse_subset_single_letter_bands(text, expected):
    assert parse_subset(text, RGB) == expected


@pytest.mark.parametrize("text, expected", [
    ("R,G,NIR", ["R", "G", "NIR"]), ("NIR,R", ["R", "NIR"]), ("NIR", ["NIR"]), ("nir,b", ["B", "NIR"]),
])
def test_parse_subset_multi_letter_bands_need_commas(text, expected):
    assert parse_subset(text, RGBN) == expected


@pytest.mark.parametrize("bands, text, problem", [
    (RGB, "RX", "unknown band 'X'"),
    (RGB, "", "missing"),
    (RGB, "R,,G", "missing"),
    (RGB, "RR", "'R' is repeated"),
    (RGB, "R,G,r", "'R' is repeated"),
    (RGBN, "RG", "unknown band 'RG'"),  # ambiguous with a multi-letter band: must be "R,G"
    (RGBN, "R,G,NIRR", "unknown band 'NIRR'"),
])
def test_parse_subset_rejects_bad_subsets(bands, text, problem):
    with pytest.raises(UserError) as err:
        parse_subset(text, bands)
    message = str(err.value)
    assert problem in message
    assert "valid bands are " + ", ".join(bands) in message
    assert "e.g." in message and "\n" not in message


def test_all_subsets_follow_the_papers_table_order():
    assert [subset_name(s, RGB) for s in all_subsets(RGB)] == ["RGB", "RG", "RB", "GB", "R", "G", "B"]
    four = all_subsets(RGBN)
    assert len(four) == 15 and four[0] == RGBN and four[-1] == ["NIR"]
    assert [len(s) for s in four] == sorted((len(s) for s in four), reverse=True)


@BAND_SETS
def test_subset_names_and_masks_round_trip(bands):
    for subset in all_subsets(bands):
        name = subset_name(subset, bands)
        assert parse_subset(name, bands) == subset
        mask = presence_mask(subset, bands)
        assert mask.dtype == torch.float32 and mask.shape == (len(bands),)
        assert [b for b, m in zip(bands, mask.tolist()) if m == 1.0] == subset
    assert subset_name(["NIR", "R"], RGBN) == "R,NIR"
    with pytest.raises(UserError):
        presence_mask(["X"], RGB)


def test_sampled_subset_sizes_are_uniform():
    masks = sample_subset_masks(6000, 4, torch.Generator().manual_seed(0))
    assert masks.shape == (6000, 4) and set(masks.unique().tolist()) == {0.0, 1.0}
    sizes = masks.sum(1)
    assert sizes.min() >= 1
    for size in range(1, 5):
        assert (sizes == size).float().mean().item() == pytest.approx(0.25, abs=0.03)
    # Within a size, every subset equally likely: each band present in half the 2-band draws.
    assert masks[sizes == 2].mean(0).tolist() == pytest.approx([0.5] * 4, abs=0.05)
    one = sample_subset_mask(3, torch.Generator().manual_seed(5))
    assert one.shape == (3,) and one.sum() >= 1
    assert torch.equal(one, sample_subset_mask(3, torch.Generator().manual_seed(5)))


# -- the stem ------------------------------------------------------------------------------


@BAND_SETS
def test_folded_stem_equals_the_module_for_every_subset(bands):
    torch.manual_seed(0)
    stem = DynamicConv2D(len(bands), attention="mask").eval()
    x = torch.randn(2, len(bands), 24, 24)
    for name, mask in _masks(bands):
        conv = stem.fold(mask)
        assert isinstance(conv, torch.nn.Conv2d) and conv.in_channels == int(mask.sum()) and conv.bias is None
        assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (3, 3))
        torch.testing.assert_close(conv(x[:, mask.bool()]), stem(x, mask), atol=1e-5, rtol=1e-5, msg=name)


def test_input_attention_folds_only_with_given_weights():
    torch.manual_seed(0)
    stem = DynamicConv2D(3, attention="input").eval()
    mask = presence_mask(["R", "B"], RGB)
    with pytest.raises(UserError, match="attention_weights"):
        stem.fold(mask)
    # With one image's own attention the approximate fold is exact for that image.
    x = torch.randn(1, 3, 24, 24)
    conv = stem.fold(mask, attention_weights=stem.attention_weights(x, mask)[0])
    torch.testing.assert_close(conv(x[:, mask.bool()]), stem(x, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [[1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
def test_fold_rejects_bad_masks(bad):
    with pytest.raises(UserError, match="presence mask"):
        DynamicConv2D(3, attention="mask").fold(bad)


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="attention='spatial'"):
        DynamicConv2D(3, attention="spatial")
    stem = DynamicConv2D(3)
    with pytest.raises(UserError, match=r"\[batch, 3, H, W\]"):
        stem(torch.randn(1, 2, 16, 16))
    with pytest.raises(UserError, match="presence mask"):
        stem(torch.randn(1, 3, 16, 16), torch.ones(4))
    with pytest.raises(UserError, match="presence mask"):
        stem(torch.randn(2, 3, 16, 16), torch.ones(3, 3))


@pytest.mark.parametrize("attention", ["input", "mask"])
def test_missing_bands_are_ignored_even_if_garbage(attention):
    torch.manual_seed(0)
    stem = DynamicConv2D(4, attention=attention).eval()
    x = torch.randn(3, 4, 20, 20)
    masks = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1], [1, 0, 0, 0]])
    garbage = x.clone()
    garbage[0, 1], garbage[0, 3], garbage[1, 0] = 1e4, float("nan"), torch.randn(20, 20) * 50
    garbage[2, 1:] = float("inf")
    torch.testing.assert_close(stem(garbage, masks), stem(x, masks))
    torch.testing.assert_close(stem(garbage[:1], masks[0]), stem(x[:1], masks[0]))


@pytest.mark.parametrize("attention", ["input", "mask"])
def test_per_image_masks_equal_one_image_at_a_time(attention):
    """The grouped convolution gives each image its own mixed kernel and nothing else."""
    torch.manual_seed(0)
    stem = DynamicConv2D(3, attention=attention).eval()
    x = torch.randn(4, 3, 20, 20)
    masks = torch.tensor([[1.0, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]])
    together = stem(x, masks)
    for i in range(4):
        torch.testing.assert_close(together[i:i + 1], stem(x[i:i + 1], masks[i]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stem(x), stem(x, torch.ones(3)))


def test_rescaling_keeps_the_scale_of_correlated_bands():
    """With identical bands and band-independent kernels, every subset gives the full set's output."""
    stem = DynamicConv2D(3, num_kernels=1, attention="mask").eval()
    with torch.no_grad():
        stem.weight.copy_(stem.weight[:, :, :1].expand_as(stem.weight))
    x = torch.randn(2, 1, 20, 20).expand(2, 3, 20, 20)
    full = stem(x)
    for name, mask in _masks(RGB):
        torch.testing.assert_close(stem(x, mask), full, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("attention", ["input", "mask"])
def test_gradients_reach_the_attention_and_every_kernel_set(attention):
    torch.manual_seed(0)
    model = band_resnet10(5, 4, attention, num_kernels=4).train()
    x, y = torch.randn(4, 4, 32, 32), torch.tensor([0, 1, 2, 3])
    mask = sample_subset_masks(4, 4, torch.Generator().manual_seed(0))
    torch.nn.functional.cross_entropy(model(x, mask), y).backward()
    stem = model.conv1
    for name, p in stem.attention.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    per_set = stem.weight.grad.flatten(1).abs().sum(1)
    assert per_set.shape == (4,) and (per_set > 0).all()


def test_kernel_usage_and_pruning():
    torch.manual_seed(0)
    stem = DynamicConv2D(3, num_kernels=4, attention="input").eval()
    x = torch.randn(8, 3, 16, 16)
    usage = kernel_usage(stem, x, RGB)
    assert list(usage) == ["RGB", "RG", "RB", "GB", "R", "G", "B"]
    for share in usage.values():
        assert share.shape == (4,) and share.sum().item() == pytest.approx(1.0)

    # A set no subset uses is dropped; the remaining attention is the old one renormalised.
    assert kernels_to_keep({"RGB": torch.tensor([0.5, 0.01, 0.49, 0.0]), "R": torch.tensor([0.0, 0.02, 0.1, 0.88])}) == [0, 2, 3]
    mask = presence_mask(["G", "B"], RGB)
    before = stem.attention_weights(x, mask)
    stem.prune([0, 2, 3])
    assert stem.num_kernels == 3 and stem.weight.shape[0] == 3 and stem.attention[-1].out_features == 3
    kept = before[:, [0, 2, 3]]
    torch.testing.assert_close(stem.attention_weights(x, mask), kept / kept.sum(1, keepdim=True))
    assert stem(x, mask).shape == (8, 64, 8, 8)
    with pytest.raises(UserError, match="distinct kernel sets"):
        stem.prune([0, 0])
    with pytest.raises(UserError, match="distinct kernel sets"):
        stem.prune([5])


# -- the whole network ---------------------------------------------------------------------


@BAND_SETS
def test_folded_resnet34_equals_the_band_model_for_every_subset(bands):
    torch.manual_seed(0)
    model = resnet34_dynconv_mask(6, in_chans=len(bands)).eval()
    _randomize_norms(model)
    x = torch.randn(2, len(bands), 32, 32)
    for name, mask in _masks(bands):
        plain = folded_model(model, mask)
        assert type(plain) is ResNet and not plain.training
        expected = model(x * mask[:, None, None], mask)  # zero-filled missing bands
        torch.testing.assert_close(plain(x[:, mask.bool()]), expected, atol=1e-5, rtol=1e-5, msg=name)


def test_recipe_layers_give_a_smaller_resnet_that_still_folds():
    """model.layers (the tests' ResNet-10) reaches every resnet34* builder, and folding keeps the depth."""
    from edgecnn.models import build_model

    for name in ("resnet34", "resnet34_dynconv", "resnet34_dynconv_mask"):
        model = build_model(name, 4, 3, layers=[1, 1, 1, 1])
        assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1], name
    small = build_model("resnet34_dynconv_mask", 4, 3, layers=[1, 1, 1, 1]).eval()
    assert sum(p.numel() for p in small.parameters()) < 0.25 * sum(
        p.numel() for p in build_model("resnet34_dynconv_mask", 4, 3).parameters())
    mask = presence_mask(["R", "B"], RGB)
    plain = folded_model(small, mask)
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(plain(x[:, mask.bool()]), small(x * mask[:, None, None], mask), atol=1e-5, rtol=1e-5)


def test_export_keeps_the_mask_as_an_input():
    torch.manual_seed(0)
    model = band_resnet10(5, 4, "input").eval()
    x, masks = torch.randn(2, 4, 32, 32), sample_subset_masks(2, 4, torch.Generator().manual_seed(3))
    program = torch.export.export(model, (x, masks)).module()
    torch.testing.assert_close(program(x, masks), model(x, masks))
    other = torch.tensor([[0.0, 0, 1, 1], [1, 1, 1, 0]])  # a mask export never saw
    torch.testing.assert_close(program(x, other), model(x, other))
    without_mask = torch.export.export(model, (x,)).module()
    torch.testing.assert_close(without_mask(x), model(x))


def test_export_of_the_mask_variant_and_its_fold():
    torch.manual_seed(0)
    model = resnet34_dynconv_mask(5, in_chans=3).eval()
    x, mask = torch.randn(1, 3, 32, 32), presence_mask(["R", "B"], RGB)
    program = torch.export.export(model, (x, mask)).module()
    torch.testing.assert_close(program(x, mask), model(x, mask))
    plain = folded_model(model, mask)
    folded_program = torch.export.export(plain, (x[:, mask.bool()],)).module()
    torch.testing.assert_close(folded_program(x[:, mask.bool()]), model(x, mask), atol=1e-5, rtol=1e-5)


def test_costs_at_96px():
    """Folded: never above plain ResNet-34 (fewer bands, fewer stem MACs). Unfolded: a negligible extra."""
    plain = measure_cost(ResNet((3, 4, 6, 3), 50), 96).macs
    assert plain == pytest.approx(0.6729e9, rel=1e-3)
    stem_per_band = 64 * 49 * 48 * 48  # MACs of one input band in the 7x7 stride-2 stem at 96 px
    pruned = resnet34_dynconv_mask(50)
    for name, mask in _masks(RGB):
        macs = measure_cost(folded_model(pruned, mask), 96, int(mask.sum())).macs
        assert macs <= 1.01 * plain, name
        assert macs == plain - (3 - int(mask.sum())) * stem_per_band, name
    faithful = measure_cost(resnet34_dynconv(50), 96, 3, presence_mask(["R", "G"], RGB)).macs
    assert plain < faithful < 1.001 * plain


# -- one stem mechanism for every backbone ------------------------------------------------


def test_resnet_band_models_keep_their_checkpoint_keys():
    """The ResNet-34 band models moved onto with_dynamic_stem: their state-dict keys are those of the
    BandResNet checkpoints written before (ResNet's, with the stem's kernel sets and attention at conv1)."""
    plain = set(ResNet((1, 1, 1, 1), 5, 4).state_dict()) - {"conv1.weight"}
    stem = {"conv1.weight", "conv1.attention.0.weight", "conv1.attention.0.bias",
            "conv1.attention.2.weight", "conv1.attention.2.bias"}
    for attention in ("input", "mask"):
        model = band_resnet10(5, 4, attention)
        assert set(model.state_dict()) == plain | stem
        assert model.conv1.weight.shape == (4, 64, 4, 7, 7) and model.conv1.bias is None


@pytest.mark.parametrize("name", ["cnn_attn_dynconv", "cnn_attn_dynconv_mask", "cnn_dynconv_mask"])
def test_cnn_band_models_are_the_plain_model_plus_the_stem(name):
    model = build_model(name, 50, 4)
    base = build_model(name.split("_dynconv")[0], 50, 4)
    stem = band_stem(model)
    assert takes_mask(model) and not takes_mask(base) and model.features[0][0] is stem
    assert stem.kernel_size == 3 and stem.padding == 1 and stem.bias is not None  # the conv it replaced
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
    # K-1 more kernel sets (the first replaces the plain kernel) and the attention MLP.
    assert extra == 3 * 64 * 4 * 9 + sum(p.numel() for p in stem.attention.parameters())
    assert set(model.state_dict()) - set(base.state_dict()) == {f"features.0.0.attention.{i}.{w}" for i in (0, 2)
                                                                for w in ("weight", "bias")}


@BAND_SETS
def test_cnn_attn_folds_into_the_plain_cnn_attn_for_every_subset(bands):
    torch.manual_seed(0)
    model = build_model("cnn_attn_dynconv_mask", 6, len(bands)).eval()
    _randomize_norms(model)
    x = torch.randn(2, len(bands), 32, 32)
    plain_macs = {}
    for name, mask in _masks(bands):
        plain = folded_model(model, mask)
        assert type(plain) is CNNAttention and not takes_mask(plain)
        expected = model(x * mask[:, None, None], mask)
        torch.testing.assert_close(plain(x[:, mask.bool()]), expected, atol=1e-5, rtol=1e-5, msg=name)
        k = int(mask.sum())
        plain_macs.setdefault(k, measure_cost(build_model("cnn_attn", 6, k), 64, k).macs)
        assert measure_cost(plain, 64, k).macs == plain_macs[k], name  # exactly the plain model's cost


@pytest.mark.parametrize("name", ["cnn_attn_dynconv", "cnn_attn_dynconv_mask", "resnet34_dynconv_mask"])
def test_the_static_stem_computes_what_the_dynamic_one_does(name):
    """StaticStem (the kernel mixing moved onto the input, one stored-weight convolution) is exact, for
    one mask per batch, one per image, and no mask."""
    torch.manual_seed(0)
    model = build_model(name, 5, 4, **({"layers": [1, 1, 1, 1]} if "resnet" in name else {})).eval()
    _randomize_norms(model)
    static = static_model(model).eval()
    assert band_stem(static) is None and any(isinstance(m, StaticStem) for m in static.modules())
    x = torch.randn(3, 4, 32, 32)
    per_image = torch.tensor([[1.0, 1, 1, 1], [0, 1, 0, 1], [1, 0, 0, 0]])
    for mask in (presence_mask(["R", "NIR"], RGBN), per_image, None):
        xin = x if mask is None else x * (mask[:, :, None, None] if mask.dim() == 2 else mask[:, None, None])
        args = (xin,) if mask is None else (xin, mask)
        torch.testing.assert_close(static(*args), model(*args), atol=1e-5, rtol=1e-5)


def test_folding_an_input_attention_model_needs_weights():
    """The paper's attention picks kernels per image: no plain model equals it, so a fold without
    fixed attention weights is a one-line UserError that names the foldable variant."""
    model = build_model("cnn_attn_dynconv", 5, 4).eval()
    with pytest.raises(UserError, match="cnn_attn_dynconv_mask") as e:
        folded_model(model, presence_mask(["R", "G"], RGBN))
    assert "\n" not in str(e.value)
    approx = folded_model(model, presence_mask(["R", "G"], RGBN), attention_weights=torch.full((4,), 0.25))
    assert type(approx) is CNNAttention and approx.features[0][0].in_channels == 2
    with pytest.raises(UserError, match="no DynamicConv2D stem"):
        folded_model(build_model("cnn_attn", 5, 4), presence_mask(["R"], RGBN))


def test_judged_subsets_cap_the_count_beyond_four_bands():
    from edgecnn.data.bands import judged_subsets

    assert judged_subsets(RGBN) == all_subsets(RGBN)  # 15: every one
    ten = [f"B{i}" for i in range(10)]
    judged = judged_subsets(ten)
    assert len(judged) == 21 and judged[0] == ten  # all, each lost alone, each alone
    assert all(len(s) == 9 for s in judged[1:11]) and all(len(s) == 1 for s in judged[11:])


@pytest.mark.parametrize("name", ["cnn_attn_dynconv_mask", "cnn_attn_dynconv"])
def test_openvino_compiles_the_static_stem_on_one_thread(name, tmp_path):
    """OpenVINO 2026.4's CPU plugin segfaulted compiling softmax(...) * scale of the stem's gains with
    static shapes, fp32 weights and INFERENCE_NUM_THREADS=1 (every mask-input artifact, fp32 and INT8,
    in a one-thread bench). StemGains puts the rescale on the mask row instead; compiled in a child
    process, so a regression fails this test instead of killing the suite."""
    import subprocess
    import sys

    ov = pytest.importorskip("openvino")
    torch.manual_seed(1)
    x, mask = torch.randn(1, 4, 32, 32), torch.ones(4)
    model = ov.convert_model(torch.export.export(static_model(build_model(name, 6, 4)).eval(), (x, mask)))
    model.reshape({p: list(t.shape) for p, t in zip(model.inputs, (x, mask))})
    ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=False)
    code = ("import openvino as ov, sys; ov.Core().compile_model(sys.argv[1], 'CPU', "
            "{'INFERENCE_NUM_THREADS': 1}); print('compiled')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.xml")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "compiled" in proc.stdout, (proc.returncode, proc.stderr[-500:])
