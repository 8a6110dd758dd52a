"""awgn / AWGN: noise statistics, SNR handling, gradients, reproducibility, errors."""

import math

import pytest
import torch

from channels import AWGN, awgn, build_channel, make_generator, power_normalize

# Statistical tolerances. For N complex CN(0, N0) samples the estimate of E|n|^2 has
# relative std 1/sqrt(N), that of the variance of one real part sqrt(2/N). With N = 2e5
# (0.22 % and 0.32 %) the tolerances below are > 6 standard deviations; seeds are fixed,
# so the tests are deterministic anyway.
N = 200_000
TOL_N0 = 0.015  # relative, E|n|^2 vs N0
TOL_PART = 0.02  # relative, var(Re n), var(Im n) vs N0/2


def _unit_symbols(*shape, seed=0):
    return power_normalize(torch.randn(*shape, dtype=torch.complex64, generator=make_generator(seed)))


@pytest.mark.parametrize("snr_db", [-5.0, 0, 10.0, 25.0])
def test_noise_power_float_snr(snr_db):
    z = _unit_symbols(2, N // 2)
    n = awgn(z, snr_db, generator=make_generator(1)) - z
    n0 = 10 ** (-snr_db / 10)
    assert n.dtype == torch.complex64 and n.shape == z.shape
    assert n.abs().square().mean().item() == pytest.approx(n0, rel=TOL_N0)
    assert n.real.var().item() == pytest.approx(n0 / 2, rel=TOL_PART)
    assert n.imag.var().item() == pytest.approx(n0 / 2, rel=TOL_PART)
    # zero mean, real/imag uncorrelated: |mean| has std sqrt(N0/N) -> 5 sigma bound
    assert n.mean().abs().item() < 5 * math.sqrt(n0 / n.numel())
    assert abs((n.real * n.imag).mean().item()) < 5 * (n0 / 2) / math.sqrt(n.numel())


def test_noise_power_per_example_snr_tensor():
    snr_db = torch.tensor([0.0, 5.0, 10.0, 20.0])
    z = _unit_symbols(4, N)
    n = awgn(z, snr_db, generator=make_generator(2)) - z
    n0 = 10 ** (-snr_db / 10)
    # each row against its own N0
    torch.testing.assert_close(n.abs().square().mean(-1), n0, rtol=TOL_N0, atol=0)
    torch.testing.assert_close(n.real.var(-1), n0 / 2, rtol=TOL_PART, atol=0)
    torch.testing.assert_close(n.imag.var(-1), n0 / 2, rtol=TOL_PART, atol=0)


def test_snr_tensor_with_layers_and_power():
    # (B,) SNR against (B, L, k) symbols; SNR relative to the nominal power P = 4
    z = _unit_symbols(2, 3, N // 3) * 2
    snr_db = torch.tensor([0.0, 10.0])
    n = awgn(z, snr_db, power=4.0, generator=make_generator(3)) - z
    torch.testing.assert_close(n.abs().square().mean((1, 2)), 4.0 * 10 ** (-snr_db / 10), rtol=TOL_N0, atol=0)


def test_noise_independent_of_signal():
    z1, z2 = _unit_symbols(4, N // 4, seed=1), 7 * _unit_symbols(4, N // 4, seed=2)
    n1 = awgn(z1, 3.0, generator=make_generator(5)) - z1
    n2 = awgn(z2, 3.0, generator=make_generator(5)) - z2
    # same draw whatever the signal (float32 rounding of y - z only)
    torch.testing.assert_close(n1, n2, rtol=0, atol=1e-5)
    # and uncorrelated with it: |E[n conj(z)]| has std sqrt(N0 / N) for unit-power z -> 5 sigma
    n0 = 10 ** (-0.3)
    assert (n1 * z1.conj()).mean().abs().item() < 5 * math.sqrt(n0 / N)


def test_same_seed_same_output_different_seed_different():
    z = _unit_symbols(3, 50)
    y1 = awgn(z, 5.0, generator=make_generator(7))
    assert torch.equal(y1, awgn(z, 5.0, generator=make_generator(7)))
    assert not torch.equal(y1, awgn(z, 5.0, generator=make_generator(8)))


def test_module_equals_function_and_returns_noise_var():
    z = _unit_symbols(3, 50)
    out = AWGN(snr_db=5.0)(z, generator=make_generator(4))
    assert set(out) == {"y", "noise_var"}
    assert torch.equal(out["y"], awgn(z, 5.0, generator=make_generator(4)))
    assert out["noise_var"].item() == pytest.approx(10**-0.5, rel=1e-6)
    per_example = AWGN()(z, torch.tensor([0.0, 10.0, 20.0]), generator=make_generator(4))
    assert per_example["noise_var"].shape == (3, 1)  # broadcastable to y
    torch.testing.assert_close(per_example["noise_var"][:, 0], torch.tensor([1.0, 0.1, 0.01]))


def test_call_time_snr_overrides_constructor():
    z = _unit_symbols(2, 20)
    out = AWGN(snr_db=5.0)(z, snr_db=20.0, generator=make_generator(0))
    assert torch.equal(out["y"], awgn(z, 20.0, generator=make_generator(0)))
    assert out["noise_var"].item() == pytest.approx(0.01, rel=1e-6)


def test_gradient_reaches_z():
    z = _unit_symbols(2, 8).requires_grad_()
    w = torch.randn(2, 8, dtype=torch.complex64, generator=make_generator(1))
    y = awgn(z, 10.0, generator=make_generator(0))
    (y * w.conj()).real.sum().backward()
    # y = z + n, n constant: d Re<w, y> / d z = w (PyTorch's conjugate-Wirtinger convention)
    torch.testing.assert_close(z.grad, w)


def test_channel_config_and_factory():
    ch = build_channel("awgn", snr_db=3.0)
    assert isinstance(ch, AWGN) and ch.name == "awgn" and ch.snr_db == 3.0
    assert ch.channel_config() == {"name": "awgn", "csi": "none", "block_length": None}
    assert "snr_db=3.0" in repr(ch)
    with pytest.raises(ValueError, match=r"unknown channel 'bsc'; known channels: \['awgn', 'mimo', 'ofdm', 'rayleigh'\]"):
        build_channel("bsc")


def test_errors():
    z = _unit_symbols(4, 8)
    with pytest.raises(TypeError, match="z must be a complex tensor"):
        awgn(z.real, 10.0)
    with pytest.raises(ValueError, match=r"z must have at least 2 dims"):
        awgn(z[0], 10.0)
    for bad in (math.nan, math.inf, -math.inf, torch.tensor([1.0, math.nan, 2.0, 3.0])):
        with pytest.raises(ValueError, match="snr_db must be finite"):
            awgn(z, bad)
    for shape in ((3,), (4, 2), (2, 4, 8)):
        with pytest.raises(ValueError, match="snr_db of shape .* is not broadcastable to the batch"):
            awgn(z, torch.zeros(shape))
    with pytest.raises(ValueError, match="snr_db must be given"):
        AWGN()(z)
    with pytest.raises(ValueError, match="snr_db must be finite"):
        AWGN(snr_db=math.nan)
    with pytest.raises(ValueError, match="power must be a positive"):
        awgn(z, 10.0, power=-1.0)
