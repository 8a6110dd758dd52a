"""DeepJSCC-l (three architectures) and DeepJSCC-f: layers, power, masking, feedback, variable length."""
from __future__ import annotations

import pytest
import torch

from channels import AWGN, Rayleigh
from jscc.data import ImageSet
from jscc.evaluate import evaluate, sweep_results
from jscc.models import DeepJSCC, DeepJSCCFeedback, LayeredMasked, LayeredMultiDecoder, LayeredRefinement
from jscc.models.deepjscc import GDN
from jscc.registry import build_model
from jscc.results import validate_results
from jscc.system import JSCCSystem

NAMES = ["deepjscc-l-multi", "deepjscc-l-masked", "deepjscc-l-residual", "deepjscc-f"]


def _model(name, **kw):
    torch.manual_seed(0)
    return build_model(name, **{"c": 4, "layers": 3, **kw})


def _x(b=2, size=16):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(1))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_channel_uses_and_layer_info(name):
    m = _model(name)
    out = JSCCSystem(m, AWGN())(_x(), 10.0, generator=_gen())
    k_l = 4 * 16 * 16 // 32  # c*H*W/32 = 32 complex uses per layer
    assert m.layer_channel_uses(16, 16) == k_l and m.channel_uses(16, 16) == 3 * k_l
    assert out["z"].shape == out["y"].shape == (2, 3, k_l) and out["z"].dtype == torch.complex64
    assert out["x_hat_prefix"].shape == (2, 3, 3, 16, 16)
    assert torch.equal(out["x_hat"], out["x_hat_prefix"][:, -1])
    assert out["layers_sent"].tolist() == [3, 3]
    info = m.layer_info(16, 16)
    assert [layer["k"] for layer in info] == [k_l] * 3
    assert info[-1]["cumulative_bandwidth_ratio"] == pytest.approx(3 * k_l / (3 * 16 * 16))
    assert m.bandwidth_ratio(16, 16) == sum(layer["k"] for layer in info) / (3 * 16 * 16)


def test_from_bandwidth_ratio_splits_the_total_over_the_layers():
    m = LayeredRefinement.from_bandwidth_ratio("1/6", layers=2)
    assert m.c == 8 and m.channel_uses(32, 32) == 512 == DeepJSCC(c=16).channel_uses(32, 32)
    with pytest.raises(ValueError, match="not a positive integer"):
        LayeredRefinement.from_bandwidth_ratio("1/12", layers=5)


@pytest.mark.parametrize("name", NAMES)
def test_power_is_normalised_per_layer(name):
    out = JSCCSystem(_model(name), AWGN(power=2.0))(_x(), 10.0, generator=_gen())
    power = out["z"].abs().square().mean(dim=-1)  # (B, L)
    torch.testing.assert_close(power, torch.full_like(power, 2.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_prefix_output_ignores_later_layers(name):
    """Changing only the later layers' channel (their SNR) leaves the earlier prefixes unchanged."""
    system = JSCCSystem(_model(name).eval(), AWGN())
    x = _x()
    a = system(x, torch.tensor([[10.0, 10.0, 10.0]]), generator=_gen(3))
    b = system(x, torch.tensor([[10.0, -5.0, 30.0]]), generator=_gen(3))
    torch.testing.assert_close(a["x_hat_prefix"][:, 0], b["x_hat_prefix"][:, 0], rtol=0, atol=0)
    assert not torch.allclose(a["x_hat_prefix"][:, 1], b["x_hat_prefix"][:, 1])


def test_masked_decoder_ignores_masked_layers_and_decodes_any_subset():
    m = _model("deepjscc-l-masked").eval()
    y = torch.randn(2, 3, 32, dtype=torch.complex64)
    y2 = y.clone()
    y2[:, 1] = torch.randn(2, 32, dtype=torch.complex64) * 5
    mask = torch.tensor([True, False, True])
    torch.testing.assert_close(m.decode_subset(y, mask, (16, 16)), m.decode_subset(y2, mask, (16, 16)))
    assert not torch.allclose(m.decode_subset(y, torch.ones(3, dtype=torch.bool), (16, 16)),
                              m.decode_subset(y2, torch.ones(3, dtype=torch.bool), (16, 16)))


def test_slow_fading_uses_one_h_for_all_layers_even_when_sent_one_by_one():
    for name in ("deepjscc-l-masked", "deepjscc-f"):
        out = JSCCSystem(_model(name), Rayleigh())(_x(), 200.0, generator=_gen())  # noise negligible: y = h z
        ratio = out["y"] / out["z"]
        assert out["h"].shape == (2, 1, 1)
        torch.testing.assert_close(ratio, out["h"].expand_as(ratio), rtol=1e-4, atol=1e-4)


def test_noiseless_feedback_gives_the_transmitter_the_receivers_reconstruction():
    m = _model("deepjscc-f").eval()
    system = JSCCSystem(m, AWGN())
    x = _x()
    out = system(x, 5.0, generator=_gen())
    # layer 2 was coded from exactly the receiver's reconstruction after layer 1
    z2 = system.power_norm(m.encode_layer(x, 1, out["x_hat_prefix"][:, 0]))
    torch.testing.assert_close(out["z"][:, 1:2], z2)
    link = system.layer_link(5.0, 2, x.device, generator=_gen())
    y1 = out["y"][:, :1]
    assert m.transmitter_view(out["z"][:, :1], y1, link, 0) is y1


def test_noisy_feedback_has_the_stated_snr():
    m = _model("deepjscc-f", feedback_snr_db=13.0)
    assert m.config["feedback_snr_db"] == 13.0 and not m.estimate_is_receivers
    system = JSCCSystem(m, AWGN(power=2.0))
    link = system.layer_link(10.0, 4, "cpu", generator=_gen())
    y = torch.zeros(4, 1, 100_000, dtype=torch.complex64)
    noise = m.transmitter_view(y, y, link, 0) - y
    expected = 2.0 / 10 ** 1.3  # P / 10^(fb/10)
    assert noise.abs().square().mean().item() == pytest.approx(expected, rel=0.02)  # 400k samples: ~0.2% sd
    assert noise.real.var().item() == pytest.approx(expected / 2, rel=0.02)


@pytest.mark.parametrize("estimate_channel", ["noiseless", "simulated"])
def test_residual_layers_do_not_depend_on_the_noise_that_occurred(estimate_channel):
    m = _model("deepjscc-l-residual", estimate_channel=estimate_channel).eval()
    system = JSCCSystem(m, AWGN())
    x = _x()
    outs = [m.transmit(x, system.layer_link(5.0, 2, x.device, generator=_gen(seed), tx_generator=_gen(99)))
            for seed in (1, 2)]
    assert not torch.allclose(outs[0]["y"], outs[1]["y"])  # the channel noise differs ...
    torch.testing.assert_close(outs[0]["z"], outs[1]["z"], rtol=0, atol=0)  # ... the symbols do not


def test_feedback_layers_do_depend_on_the_noise_that_occurred():
    m = _model("deepjscc-f").eval()
    system = JSCCSystem(m, AWGN())
    a, b = (system(_x(), 5.0, generator=_gen(seed)) for seed in (1, 2))
    torch.testing.assert_close(a["z"][:, 0], b["z"][:, 0])
    assert not torch.allclose(a["z"][:, 1], b["z"][:, 1])


@pytest.mark.parametrize("name", ["deepjscc-f", "deepjscc-l-residual"])
def test_variable_length_stops_early_and_never_exceeds_l_layers(name):
    system = JSCCSystem(_model(name).eval(), AWGN())
    x = _x(4)
    never = system(x, 10.0, generator=_gen(), stop_psnr_db=200.0)
    assert never["layers_sent"].tolist() == [3] * 4 and not never["target_reached"].any()
    always = system(x, 10.0, generator=_gen(), stop_psnr_db=-50.0)
    assert always["layers_sent"].tolist() == [1] * 4 and always["target_reached"].all()
    assert (always["z"][:, 1:] == 0).all()  # unsent layers carry nothing
    torch.testing.assert_close(always["x_hat"], always["x_hat_prefix"][:, 0])
    torch.testing.assert_close(always["x_hat_prefix"][:, 2], always["x_hat_prefix"][:, 0])
    # a target between the two: layers_sent in 1..L, and the estimate of the stopping layer reached it
    mid = system(x, 10.0, generator=_gen(), stop_psnr_db=0.0)
    assert ((mid["layers_sent"] >= 1) & (mid["layers_sent"] <= 3)).all()


def test_variable_length_is_refused_for_models_sending_all_layers_at_once():
    system = JSCCSystem(_model("deepjscc-l-masked"), AWGN())
    with pytest.raises(ValueError, match="variable-length"):
        system(_x(), 10.0, stop_psnr_db=20.0)
    with pytest.raises(ValueError, match="variable-length"):
        JSCCSystem(DeepJSCC(c=4), AWGN())(_x(), 10.0, stop_psnr_db=20.0)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_layer(name):
    m = _model(name)
    x = _x()
    m.loss(JSCCSystem(m, AWGN())(x, 10.0, generator=_gen()), x).backward()
    # every parameter gets a gradient (a PReLU slope may get exactly 0 when no input is negative)
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    zero = [n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0 and p.ndim > 1]
    assert not missing and not zero


def test_layer_by_layer_training_freezes_earlier_layers():
    m = _model("deepjscc-f")
    m.set_train_layer(2)
    assert not any(p.requires_grad for p in m.encoders[0].parameters())
    assert not any(p.requires_grad for p in m.decoders[0].parameters())
    assert all(p.requires_grad for p in m.encoders[1].parameters())
    x = _x()
    out = JSCCSystem(m, AWGN())(x, 10.0, generator=_gen())
    torch.testing.assert_close(m.loss(out, x), (out["x_hat_prefix"][:, 1] - x).square().mean())
    m.set_train_layer(None)
    assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError, match="1..3"):
        m.set_train_layer(4)
    with pytest.raises(ValueError, match="jointly"):
        _model("deepjscc-l-multi").set_train_layer(1)


def test_loss_weights_are_normalised():
    m = _model("deepjscc-l-multi", loss_weights=[1, 0, 3])
    x = _x()
    out = JSCCSystem(m, AWGN())(x, 10.0, generator=_gen())
    per = (out["x_hat_prefix"] - x.unsqueeze(1)).square().mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(m.loss(out, x), 0.25 * per[0] + 0.75 * per[2])


@pytest.mark.parametrize("kwargs, match", [
    ({"layers": 0}, "layers must be an integer >= 1"),
    ({"layers": 2.5}, "layers must be an integer >= 1"),
    ({"c": 0}, "c \\(filters per layer\\)"),
    ({"loss_weights": [1, 1]}, "loss_weights must be 3"),
    ({"loss_weights": [1, -1, 1]}, "loss_weights must be 3"),
])
def test_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model("deepjscc-l-multi", **kwargs)


def test_bad_inputs_give_clear_errors():
    m = _model("deepjscc-l-multi")
    with pytest.raises(ValueError, match="expected layer symbols"):
        m.decode_prefix(torch.zeros(2, 1, 31, dtype=torch.complex64), (16, 16))  # inconsistent layer size
    system = JSCCSystem(m, AWGN())
    with pytest.raises(ValueError, match="per-layer snr_db"):
        system(_x(), torch.zeros(2, 2))  # 2 SNRs for 3 layers
    with pytest.raises(ValueError, match="h side input"):
        JSCCSystem(m, Rayleigh(csi="receiver", equalization="side"))(_x(), 10.0)
    with pytest.raises(ValueError, match="estimate_channel"):
        _model("deepjscc-l-residual", estimate_channel="oracle")
    with pytest.raises(ValueError, match="feedback_snr_db"):
        _model("deepjscc-f", feedback_snr_db=float("inf"))


@pytest.mark.parametrize("name, base_c", [("deepjscc-l-residual", 4), ("deepjscc-f", 4), ("deepjscc-l-multi", 12),
                                          ("deepjscc-l-masked", 12)])
def test_warm_start_from_a_single_layer_model(name, base_c):
    torch.manual_seed(0)
    base = DeepJSCC(c=base_c).eval()
    ckpt = {"model": "deepjscc", "config": base.config, "state_dict": base.state_dict()}
    m = _model(name).eval()
    m.warm_start(ckpt)
    x = _x()
    out = JSCCSystem(m, AWGN())(x, 40.0, generator=_gen())
    if base_c == 4:  # the layer-1 encoder/decoder are the backbone; later prefixes start as copies of prefix 1
        torch.testing.assert_close(out["z"][:, 0], JSCCSystem(base, AWGN()).encode(x))
        torch.testing.assert_close(out["x_hat_prefix"][:, 1], out["x_hat_prefix"][:, 0])
    else:  # one encoder emitting all layers = the c = L*c backbone; the full prefix decodes like it
        torch.testing.assert_close(m.encode(x).reshape(2, -1), base.encode(x))
    with pytest.raises(ValueError, match="warm-start"):
        m.warm_start({"model": "deepjscc", "config": DeepJSCC(c=8).config, "state_dict": DeepJSCC(c=8).state_dict()})


def test_evaluate_reports_every_prefix_and_the_channel_uses():
    torch.manual_seed(0)
    system = JSCCSystem(_model("deepjscc-f"), AWGN())
    images = ImageSet(torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8), "rand")
    results = sweep_results(system, images, [0.0, 10.0], name="f", n_channel_draws=2, command="test")
    validate_results(results)
    assert len(results["metrics_per_prefix"]) == 3 and results["k"] == 96
    assert results["layers"][1]["cumulative_bandwidth_ratio"] == pytest.approx(64 / 768)
    assert results["metrics"]["channel_uses"] == [96.0, 96.0]
    assert results["metrics"]["psnr"] == results["metrics_per_prefix"][-1]["psnr"]
    assert results["feedback_snr_db"] is None
    assert results["feedback_channel_uses"] == 64  # 3 layers of 32: the first two are fed back, outside k
    short = evaluate(system, images, [10.0], n_channel_draws=2, stop_psnr_db=-50.0)
    assert short["channel_uses"] == [32.0] and short["target_reached"] == [1.0]
    bad = {**results, "metrics_per_prefix": results["metrics_per_prefix"][:2]}
    with pytest.raises(Exception, match="metrics_per_prefix"):
        validate_results(bad)


def test_registered_classes():
    assert isinstance(_model("deepjscc-l-multi"), LayeredMultiDecoder)
    assert isinstance(_model("deepjscc-l-masked"), LayeredMasked)
    assert isinstance(_model("deepjscc-f"), DeepJSCCFeedback)
    assert isinstance(_model("deepjscc-f"), LayeredRefinement)


@pytest.mark.parametrize("name, base_c", [("deepjscc-l-residual", 4), ("deepjscc-f", 4), ("deepjscc-l-multi", 12),
                                          ("deepjscc-l-masked", 12)])
def test_gdn_backbone_is_a_configuration_of_every_layered_model(name, base_c):
    """norm="gdn" (the official DeepJSCC-f network with hidden=[256]*4; small widths here) reaches every
    encoder and decoder, warm-starts only from a GDN backbone, and transmits like the default."""
    torch.manual_seed(0)
    m = _model(name, hidden=[8, 8, 8, 8], norm="gdn").eval()
    assert m.config["norm"] == "gdn" and build_model(name, **m.config).config == m.config
    assert sum(isinstance(mod, GDN) for mod in m.modules()) == 4 * (len(m.encoders) if hasattr(m, "encoders") else 1) \
        + 4 * (len(m.decoders) if hasattr(m, "decoders") else 1)
    base = DeepJSCC(c=base_c, hidden=[8, 8, 8, 8], norm="gdn")
    m.warm_start({"model": "deepjscc", "config": base.config, "state_dict": base.state_dict()})
    out = JSCCSystem(m, AWGN())(_x(), 10.0, generator=_gen())
    assert out["x_hat_prefix"].shape == (2, 3, 3, 16, 16)
    plain = DeepJSCC(c=base_c, hidden=[8, 8, 8, 8])
    with pytest.raises(ValueError, match="warm-start"):
        m.warm_start({"model": "deepjscc", "config": plain.config, "state_dict": plain.state_dict()})
