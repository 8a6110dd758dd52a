"""JSCCSystem: model + power normalisation + channel wired as the README's Conventions say."""
from __future__ import annotations

import math

import pytest
import torch

from channels import AWGN, Rayleigh, build_channel
from jscc.models import DeepJSCC
from jscc.system import JSCCSystem

K = 256  # c=8 on 32x32


def _system(channel, csi_side_input=False, seed=0):
    torch.manual_seed(seed)
    return JSCCSystem(DeepJSCC(c=8, csi_side_input=csi_side_input), channel)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x(smooth_images):
    return smooth_images(4, 32, 32, seed=3)


def test_output_keys_awgn(x):
    out = _system(AWGN(10.0))(x, generator=_gen())
    assert set(out) == {"x_hat", "z", "y"}
    assert out["x_hat"].shape == x.shape and out["x_hat"].dtype == torch.float32
    assert out["z"].shape == (4, K) and out["z"].dtype == torch.complex64
    assert out["y"].shape == (4, K) and out["y"].dtype == torch.complex64
    assert 0 <= out["x_hat"].min() and out["x_hat"].max() <= 1


@pytest.mark.parametrize("kwargs", [{}, {"csi": "receiver", "equalization": "zf"}, {"block_length": 1}])
def test_output_keys_rayleigh(x, kwargs):
    out = _system(Rayleigh(10.0, **kwargs))(x, generator=_gen())
    assert set(out) == {"x_hat", "z", "y", "h"}
    expected_h = (4, K) if kwargs.get("block_length") == 1 else (4, 1)
    assert out["h"].shape == expected_h and out["h"].is_complex()


@pytest.mark.parametrize("power", [1.0, 2.5])
def test_z_has_nominal_average_power_per_example(x, power):
    out = _system(AWGN(10.0, power=power))(x, generator=_gen())
    per_example = out["z"].abs().square().mean(dim=-1)
    # float32 rounding only: 1e-5 relative
    torch.testing.assert_close(per_example, torch.full((4,), power), rtol=1e-5, atol=0)


def test_z_does_not_depend_on_the_batch(x):
    system = _system(AWGN(10.0)).eval()
    with torch.no_grad():
        z_batch = system.encode(x)
        z_alone = system.encode(x[2:3])
        # scaling another image in the batch must not change this one's symbols (per-example power)
        x_other = x.clone()
        x_other[0] *= 0.1
        z_batch2 = system.encode(x_other)
    # identical up to float32 rounding of possibly different conv kernels (atol 1e-6 on unit-power symbols)
    torch.testing.assert_close(z_alone[0], z_batch[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(z_batch2[1:], z_batch[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "channel, side",
    [
        (lambda: AWGN(10.0), False),
        (lambda: Rayleigh(10.0), False),
        (lambda: Rayleigh(10.0, block_length=1), False),
        (lambda: Rayleigh(10.0, csi="receiver", equalization="zf"), False),
        (lambda: Rayleigh(10.0, csi="receiver", equalization="mmse"), False),
        (lambda: Rayleigh(10.0, csi="receiver", equalization="side"), True),
    ],
    ids=["awgn", "rayleigh-none", "rayleigh-fast", "rayleigh-zf", "rayleigh-mmse", "rayleigh-side"],
)
def test_gradients_reach_first_encoder_conv(x, channel, side):
    system = _system(channel(), csi_side_input=side)
    assert system.decoder_gets_h == side
    out = system(x, generator=_gen(1))
    loss = torch.nn.functional.mse_loss(out["x_hat"], x)
    loss.backward()
    grad = system.model.encoder[0].weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    if side:  # the h half of the decoder input gets gradient too, i.e. h really reaches the decoder
        assert system.model.decoder[0].weight.grad[8:].abs().sum() > 0


def test_side_model_with_csi_none_channel_fails_clearly(x):
    system = _system(Rayleigh(10.0), csi_side_input=True)
    assert not system.decoder_gets_h
    with pytest.raises(ValueError, match="needs h"):
        system(x, generator=_gen())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), torch.tensor([1.0, float("nan"), 2.0, 3.0])])
def test_non_finite_snr_is_value_error(x, bad):
    with pytest.raises(ValueError, match="finite"):
        _system(AWGN())(x, bad)


def test_non_finite_snr_in_channel_constructor():
    with pytest.raises(ValueError):
        AWGN(float("nan"))


def test_per_example_snr_tensor(x):
    system = _system(AWGN()).eval()
    snr = torch.tensor([100.0, 0.0, -10.0, 100.0])
    with torch.no_grad():
        out = system(x, snr, generator=_gen(2))
    noise = (out["y"] - out["z"]).abs().square().mean(dim=-1)
    # N0 = 10^(-snr/10); 256 complex samples -> relative std of the estimate 1/16: allow 35 %
    assert noise[0] < 1e-8 and noise[3] < 1e-8
    assert noise[1].item() == pytest.approx(1.0, rel=0.35)
    assert noise[2].item() == pytest.approx(10.0, rel=0.35)


def test_per_example_snr_of_shape_b1(x):
    out = _system(AWGN())(x, torch.full((4, 1), 100.0), generator=_gen())
    assert (out["y"] - out["z"]).abs().max() < 1e-3


def test_snr_tensor_of_shape_1_broadcasts(x):
    out = _system(AWGN())(x, torch.tensor([100.0]), generator=_gen())
    assert out["y"].shape == (4, K)
    assert (out["y"] - out["z"]).abs().max() < 1e-3


def test_call_time_snr_overrides_channel_default(x):
    system = _system(AWGN(0.0)).eval()
    with torch.no_grad():
        default = system(x, generator=_gen(3))
        high = system(x, 100.0, generator=_gen(3))
        low = system(x, -10.0, generator=_gen(3))
    n_default = (default["y"] - default["z"]).abs().square().mean().item()
    n_high = (high["y"] - high["z"]).abs().square().mean().item()
    n_low = (low["y"] - low["z"]).abs().square().mean().item()
    # 4*256 complex samples: relative std ~3 %, tolerance 15 %
    assert n_default == pytest.approx(1.0, rel=0.15)
    assert n_low == pytest.approx(10.0, rel=0.15)
    assert n_high < 1e-9
    torch.testing.assert_close(high["y"], high["z"], rtol=0, atol=1e-4)


def test_rayleigh_received_signal_is_h_times_z(x):
    system = _system(Rayleigh()).eval()
    with torch.no_grad():
        out = system(x, 100.0, generator=_gen(4))
    torch.testing.assert_close(out["y"], out["h"] * out["z"], rtol=0, atol=1e-3)
    assert not torch.allclose(out["y"], out["z"], atol=1e-2)  # not equalised with csi none


@pytest.mark.parametrize("eq", ["zf", "mmse"])
def test_rayleigh_receiver_equalisation_recovers_z_at_high_snr(x, eq):
    system = _system(Rayleigh(csi="receiver", equalization=eq)).eval()
    with torch.no_grad():
        out = system(x, 100.0, generator=_gen(5))
    # |h| is rarely tiny; zf error ~ |n|/|h| ~ 1e-5/|h|: atol 1e-2 leaves a wide margin
    torch.testing.assert_close(out["y"], out["z"], rtol=0, atol=1e-2)


def test_same_generator_seed_same_output(x):
    system = _system(Rayleigh(5.0)).eval()
    with torch.no_grad():
        a = system(x, generator=_gen(7))
        b = system(x, generator=_gen(7))
        c = system(x, generator=_gen(8))
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["h"], b["h"])
    assert not torch.equal(a["y"], c["y"])


def test_missing_snr_is_clear_error(x):
    with pytest.raises(ValueError, match="no SNR"):
        _system(AWGN())(x)
    with pytest.raises(ValueError, match="no SNR"):
        _system(Rayleigh())(x)


def test_encode_without_snr_is_fine_for_non_adaptive_model(x):
    z = _system(AWGN()).encode(x)
    assert z.shape == (4, K)


def test_unknown_channel_name():
    with pytest.raises(ValueError, match="unknown channel 'nope'") as err:
        build_channel("nope")
    assert "awgn" in str(err.value) and "rayleigh" in str(err.value)


def test_build_channel_known_names():
    assert isinstance(build_channel("awgn", snr_db=3.0), AWGN)
    ch = build_channel("rayleigh", csi="receiver", equalization="side")
    assert isinstance(ch, Rayleigh) and ch.equalization == "side"


def test_channel_uses_delegates_to_model():
    system = _system(AWGN())
    assert system.channel_uses(32, 32) == K
    assert system.channel_uses(64, 48) == 8 * 64 * 48 // 32
    assert math.isclose(system.channel_uses(32, 32) / (3 * 32 * 32), 1 / 12)
