"""The wavelength-conditioned stem (issue 29): WaveConv2D, its fold and static form, and models of it.

Fast: tiny inputs, models built in-process. The CLI's handling of another sensor (eval, export
--bands, predict, bench --check) is in test_wave_sensor.py.
"""

from __future__ import annotations

import pytest
import torch

from edgecnn.core.sensors import Band, resolve_bands
from edgecnn.data.bands import presence_mask
from edgecnn.errors import UserError
from edgecnn.models.deployable import deployable
from edgecnn.models.dynamic_conv import folded_model, static_model
from edgecnn.models.registry import build_model, reads_wavelengths, takes_mask
from edgecnn.models.stats import measure_cost
from edgecnn.models.wave_conv import StaticWave, WaveConv2D, WaveGains, band_shares, band_weights, set_bands, wave_stem

SENSORS = ["sentinel2", "planetscope", "landsat8", "rgb", "sentinel2_13"]


def _model(name: str, sensor: str) -> torch.nn.Module:
    bands = resolve_bands(sensor)
    m = build_model(name, num_classes=3, in_chans=len(bands), heads=2, layers=(1, 1, 1, 1))
    return set_bands(m, bands).eval()


def _masks(n: int) -> list[torch.Tensor]:
    """Every band; the first lost; only the last; every other band."""
    out = [torch.ones(n), torch.cat([torch.zeros(1), torch.ones(n - 1)]), torch.eye(n)[-1],
           torch.tensor([float(i % 2 == 0) for i in range(n)])]
    return [m for m in out if m.sum() >= 1]


def test_shapes_gradients_and_a_lost_band_that_holds_nan():
    bands = resolve_bands("sentinel2")
    stem = WaveConv2D(bands, out_channels=8, kernel_size=3)
    x = torch.randn(2, len(bands), 12, 12, requires_grad=True)
    y = stem(x)
    assert y.shape == (2, 8, 12, 12)
    y.square().mean().backward()
    # Every generator weight learns; the stem holds no weight per input band (any band list fits it).
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())
    assert not any(len(bands) in p.shape for p in stem.parameters())

    mask = presence_mask(["B02", "B03", "B04"], [b.name for b in bands])
    lost = x.detach().clone()
    lost[:, mask == 0] = float("nan")
    out = stem(lost, mask)
    assert torch.isfinite(out).all()
    zeroed = torch.where(mask[None, :, None, None] > 0, x.detach(), torch.zeros(()))
    # renormalised over the present bands' shares of the spectrum, as DynamicConv2D rescales by bands / present
    plain = torch.nn.functional.conv2d(zeroed, stem.kernel(), None, 1, 1) / stem.shares[mask > 0].sum()
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    # one mask per image: each image gets its own subset's rescale
    rows = torch.stack([mask, torch.ones(len(bands))])
    both = stem(x.detach(), rows)
    torch.testing.assert_close(both[0], stem(x.detach()[:1], mask)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], stem(x.detach()[1:])[0], atol=1e-5, rtol=1e-5)


def test_a_band_without_wavelength_is_one_line_naming_the_fix():
    with pytest.raises(UserError) as e:
        WaveConv2D([Band("R"), Band("G", 560.0)], out_channels=4)
    assert "\n" not in str(e.value) and "band R has no wavelength" in str(e.value) and "sensor preset" in str(e.value)
    plain = build_model("cnn_attn", num_classes=3, in_chans=3, heads=2)
    assert set_bands(plain, [Band("R")]) is plain  # a no-op for a model without a wave stem


def test_kernels_depend_on_the_band_list_only_with_context():
    """With context a band's kernel also depends on the rest of the sensor's list; without, on itself alone.
    Either way a fixed list gives one constant kernel, whatever the mask."""
    s2 = resolve_bands("sentinel2:B04,B03,B02")
    other = resolve_bands("sentinel2:B04,B11,B12")
    for context in (True, False):
        torch.manual_seed(0)
        stem = WaveConv2D(s2, out_channels=4, kernel_size=3, context=context)
        if context:  # zero at initialisation; as if trained
            torch.nn.init.normal_(stem.mix, std=0.1)
        red = stem.kernel()[:, 0] / stem.shares[0]  # undo the band's share of the spectrum
        stem.set_bands(other)
        again = stem.kernel()[:, 0] / stem.shares[0]
        assert torch.allclose(red, again, atol=1e-6) is (not context)


def test_a_band_kernel_is_the_spectral_kernel_seen_through_the_band():
    """Far bands start independent (as a plain convolution's input channels do), near bands alike, and an
    unseen band between two others gets a kernel between theirs."""
    bands = [Band("blue", 490.0, 65.0), Band("blue2", 500.0, 65.0), Band("swir", 2190.0, 180.0),
             Band("between", 1300.0, 30.0)]
    torch.manual_seed(0)
    w = WaveConv2D(bands, out_channels=64, kernel_size=3, context=False).kernel().transpose(0, 1).flatten(1)
    cos = torch.nn.functional.cosine_similarity
    assert cos(w[0], w[1], dim=0) > 0.9
    assert abs(cos(w[0], w[2], dim=0)) < 0.3
    weights = band_weights(torch.tensor([[b.center_nm, b.fwhm_nm] for b in bands]))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    assert weights[3].argmax() > weights[0].argmax() and weights[3].argmax() < weights[2].argmax()


def test_bands_are_weighted_by_their_share_of_the_spectrum():
    """A sensor that samples one stretch of the spectrum densely does not weight it more: the shares are
    cells in log-wavelength, so a smooth spectral kernel over a flat spectrum sums alike for any sampling."""
    dense = torch.tensor([[500.0, 0], [550, 0], [600, 0], [650, 0], [700, 0], [1600, 0]])
    shares = band_shares(dense)
    torch.testing.assert_close(shares.sum(), torch.tensor(1.0))
    assert shares[-1] > 2 * shares[2] and band_shares(dense[:1]).tolist() == [1.0]
    # file order does not matter
    torch.testing.assert_close(band_shares(dense.flip(0)), shares.flip(0))
    # two bands at one centre share a cell rather than vanish
    assert (band_shares(torch.tensor([[560.0, 0], [560, 0], [665, 0]])) > 0).all()


@pytest.mark.parametrize("sensor", SENSORS)
def test_folds_exactly_for_any_band_list_and_mask(sensor):
    model = _model("cnn_attn_wave", sensor)
    n = len(resolve_bands(sensor))
    x = torch.randn(2, n, 16, 16)
    with torch.no_grad():
        for mask in _masks(n):
            present = mask.bool()
            plain = folded_model(model, mask)
            assert wave_stem(plain) is None and isinstance(plain.features[0][0], torch.nn.Conv2d)
            torch.testing.assert_close(plain(x[:, present]), model(x, mask), atol=1e-4, rtol=1e-4)
            # the static form (what a mask-input artifact runs): missing bands zero-filled, as its contract says
            static = static_model(model)
            assert isinstance(static.features[0][0], StaticWave)
            torch.testing.assert_close(static(x * mask[None, :, None, None], mask), model(x, mask),
                                       atol=1e-4, rtol=1e-4)


def test_resnet34_wave_folds_too():
    model = _model("resnet34_wave", "landsat8")
    x = torch.randn(1, 7, 32, 32)
    mask = torch.tensor([1.0, 1, 1, 0, 1, 1, 0])
    with torch.no_grad():
        torch.testing.assert_close(folded_model(model, mask)(x[:, mask.bool()]), model(x, mask), atol=1e-4, rtol=1e-4)


def test_nothing_folds_with_every_band_lost():
    model = _model("cnn_attn_wave", "planetscope")
    with pytest.raises(UserError) as e:
        folded_model(model, torch.zeros(4))
    assert "\n" not in str(e.value) and "every band lost" in str(e.value)


@pytest.mark.parametrize("name,plain", [("cnn_attn_wave", "cnn_attn"), ("resnet34_wave", "resnet34")])
@pytest.mark.parametrize("sensor", ["planetscope", "sentinel2"])
def test_folded_model_costs_the_plain_model_of_that_band_count(name, plain, sensor):
    model = _model(name, sensor)
    n = len(resolve_bands(sensor))
    base = build_model(plain, num_classes=3, in_chans=n, heads=2, layers=(1, 1, 1, 1))
    folded = folded_model(model, torch.ones(n))
    assert measure_cost(folded, 32, n).macs == measure_cost(base, 32, n).macs
    assert measure_cost(folded, 32, n).params == measure_cost(base, 32, n).params


def test_registry_and_catalog_know_the_wave_models():
    from edgecnn.core import catalog

    for name in ("cnn_attn_wave", "resnet34_wave"):
        model = _model(name, "planetscope")
        assert takes_mask(model) and reads_wavelengths(model)
        assert catalog.reads_wavelengths(name) and catalog.takes_mask(name)
    assert not reads_wavelengths(build_model("cnn_attn_dynconv_mask", num_classes=3, in_chans=3, heads=2))
    # The spectral kernel is a few tens of thousands of weights at cnn_attn's 3 x 3 stem.
    assert sum(p.numel() for p in wave_stem(_model("cnn_attn_wave", "rgb")).parameters()) < 100_000


def test_one_stem_per_sensor_set_in_place_keeps_the_weights():
    model = _model("cnn_attn_wave", "sentinel2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_bands(model, resolve_bands("planetscope"))
    assert model(torch.randn(1, 4, 16, 16)).shape == (1, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "wavelengths" not in "".join(before)  # the band list is the recipe's, never a checkpoint's
    with pytest.raises(UserError, match="set for 4 bands"):
        model(torch.randn(1, 10, 16, 16))


def test_the_mask_input_artifact_graph_is_the_static_form_with_float_gains():
    model = _model("cnn_attn_wave", "planetscope")
    graph = deployable(model, [b.name for b in resolve_bands("planetscope")], 16, None)
    assert graph.mask_input and graph.input_names == ["image", "mask"]
    assert WaveGains in graph.keep_float and any(n.endswith("gains") for n in graph.float_modules)
    folded = deployable(model, ["blue", "green", "red", "nir"], 16, "blue,red,nir")
    assert not folded.mask_input and folded.how.startswith("folded: WaveConv2D")
    x = torch.randn(1, 4, 16, 16)
    mask = torch.tensor([1.0, 0, 1, 1])
    with torch.no_grad():
        torch.testing.assert_close(folded.module(*folded.inputs_for(x)), folded.reference(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(graph.module(*graph.inputs_for(x, mask)), graph.reference(x, mask),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_executorch_int8_of_a_wave_model_runs_inside_xnnpack(tmp_path):
    """INT8 (PT2E) of the mask-input form and of the fold for an unseen sensor: nothing on portable kernels.

    32 px: at 16 px cnn_attn's attention sees one token, and even the plain model leaves a copy outside."""
    pytest.importorskip("executorch")
    from edgecnn.export import executorch as ET

    model = _model("cnn_attn_wave", "sentinel2")
    set_bands(model, resolve_bands("planetscope"))  # a sensor it was never set to before
    names = ["blue", "green", "red", "nir"]
    gen = torch.Generator().manual_seed(0)
    images = [torch.randn(1, 4, 32, 32, generator=gen) for _ in range(4)]
    for channels in (None, "blue,green,red,nir"):
        graph = deployable(model, names, 32, channels)
        calibration = [graph.calibration_inputs(x, i) for i, x in enumerate(images)]
        for int8 in (False, True):
            path = tmp_path / f"{channels is None}-{int8}.pte"
            sections = ET.export(graph, path, int8, calibration)
            assert sections["delegation"]["ops_outside"] == {}, sections["delegation"]
            run = ET.load(path)
            for x in images[:2]:
                got = torch.as_tensor(run([t.numpy() for t in graph.inputs_for(x)]))
                assert got.shape == (1, 3) and torch.isfinite(got).all()
                if not int8:  # fp32 computes what PyTorch does
                    torch.testing.assert_close(got, graph.reference(x), atol=1e-3, rtol=1e-3)
