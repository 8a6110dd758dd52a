"""rayleigh / Rayleigh / equalize: statistics of h, coherence, CSI modes, gradients, errors."""

import math

import pytest
import torch

from channels import Rayleigh, awgn, build_channel, equalize, make_generator, power_normalize, rayleigh

# Statistical tolerances: N = 2e5 draws of h ~ CN(0, 1). |h|^2 ~ Exp(1), so the mean of
# |h|^2 has relative std 1/sqrt(N) = 0.22 %; |mean h| and |mean h^2| have std about
# 1/sqrt(N) = 0.0022. The bounds below are > 6 standard deviations (seeds are fixed).
N = 200_000
TOL_POWER = 0.015  # relative, E|h|^2 vs 1
TOL_MEAN = 0.015  # absolute, |E h| and |E h^2| vs 0


def _unit_symbols(*shape, seed=0):
    return power_normalize(torch.randn(*shape, dtype=torch.complex64, generator=make_generator(seed)))


def _noise(z, snr_db, seed, power=1.0):
    """The AWGN draw that a channel call with ``make_generator(seed)`` and an injected h adds."""
    return awgn(z, snr_db, power=power, generator=make_generator(seed)) - z


def _n_distinct(h):
    return len(torch.unique(torch.view_as_real(h).reshape(-1, 2), dim=0))


def _h(z, block_length, seed=0):
    return rayleigh(z, 10.0, block_length=block_length, generator=make_generator(seed))[1]


@pytest.mark.parametrize("block_length", [None, 1])
def test_h_is_unit_power_circular_gaussian(block_length):
    # slow: one h per example -> N examples; fast: one h per symbol -> N symbols
    z = _unit_symbols(N, 1) if block_length is None else _unit_symbols(2, N // 2)
    h = _h(z, block_length).flatten()
    assert h.dtype == torch.complex64 and h.numel() == N
    assert h.abs().square().mean().item() == pytest.approx(1.0, rel=TOL_POWER)
    assert h.mean().abs().item() < TOL_MEAN
    assert (h * h).mean().abs().item() < TOL_MEAN  # circular symmetry: E[h^2] = 0
    assert h.real.var().item() == pytest.approx(0.5, rel=0.02)  # rel std 0.32 %
    assert h.imag.var().item() == pytest.approx(0.5, rel=0.02)


def test_slow_fading_one_h_per_example_shared_by_layers():
    z = _unit_symbols(5, 3, 16)  # (B, L, k)
    y, h = rayleigh(z, 10.0, generator=make_generator(0))
    assert h.shape == (5, 1, 1) and y.shape == z.shape
    assert _n_distinct(h) == 5  # distinct per example
    h2 = _h(_unit_symbols(5, 16), None)
    assert h2.shape == (5, 1)


def test_fast_fading_varies_per_symbol():
    z = _unit_symbols(4, 2, 32)
    h = _h(z, 1)
    assert h.shape == z.shape
    assert _n_distinct(h) == h.numel()


@pytest.mark.parametrize("block_length", [2, 3, 8, 100])
def test_block_fading_constant_within_blocks(block_length):
    k = 10
    z = _unit_symbols(3, 2, k)
    h = _h(z, block_length)
    assert h.shape == z.shape
    starts = list(range(0, k, block_length))
    for s in starts:  # constant within a block (the last one may be partial)
        block = h[..., s : s + block_length]
        assert torch.equal(block, block[..., :1].expand_as(block))
    firsts = h[..., starts]  # one value per block; all blocks and rows differ
    assert _n_distinct(firsts) == firsts.numel()


def test_average_received_snr_equals_snr_db():
    snr_db = 7.0
    z = _unit_symbols(N, 8)
    y, h = rayleigh(z, snr_db, generator=make_generator(3))
    n0 = 10 ** (-snr_db / 10)
    # E|hz|^2 / N0 over N draws of h: relative std 0.22 % = 0.01 dB; tolerance 0.1 dB
    measured_db = 10 * math.log10((h * z).abs().square().mean().item() / n0)
    assert measured_db == pytest.approx(snr_db, abs=0.1)
    # and the additive noise is the AWGN of the same SNR
    assert (y - h * z).abs().square().mean().item() == pytest.approx(n0, rel=TOL_POWER)


def test_injected_h_is_used():
    z = _unit_symbols(2, 6)
    h = torch.tensor([[1 + 1j], [-2j]], dtype=torch.complex64)
    y, h_out = rayleigh(z, 20.0, generator=make_generator(0), h=h)
    assert torch.equal(h_out, h)
    n = _noise(z, 20.0, seed=0)
    torch.testing.assert_close(y, h * z + n)


def test_zf_and_mmse_against_hand_computation():
    z = _unit_symbols(2, 6)
    h = torch.tensor([[0.5 - 0.5j], [2 + 1j]], dtype=torch.complex64)
    snr_db, power = 10.0, 2.0
    n0 = power / 10.0
    y_raw = h * z + _noise(z, snr_db, seed=1, power=power)
    for eq, expected in (
        ("zf", y_raw / h),
        ("mmse", h.conj() * y_raw / (h.abs() ** 2 + n0 / power)),
    ):
        ch = Rayleigh(snr_db, csi="receiver", equalization=eq, power=power)
        out = ch(z, generator=make_generator(1), h=h)
        torch.testing.assert_close(out["y"], expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(out["h"], h)
        assert out["noise_var"].item() == pytest.approx(n0, rel=1e-6)
        torch.testing.assert_close(equalize(y_raw, h, n0, eq, power), expected, rtol=1e-5, atol=1e-6)
    # equalize on a hand example: y = 2, h = 1j, N0/P = 1 -> zf -2j, mmse (-1j)(2)/(1 + 1) = -1j
    y1, h1 = torch.tensor([2 + 0j]), torch.tensor([1j])
    assert equalize(y1, h1, 2.0, "zf", power=2.0).item() == -2j
    assert equalize(y1, h1, 2.0, "mmse", power=2.0).item() == -1j


@pytest.mark.parametrize("csi, equalization", [("none", None), ("receiver", "side")])
def test_unequalised_modes_return_raw_y(csi, equalization):
    z = _unit_symbols(3, 12)
    out = Rayleigh(5.0, csi=csi, equalization=equalization)(z, generator=make_generator(2))
    y, h = rayleigh(z, 5.0, generator=make_generator(2))
    assert set(out) == {"y", "h", "noise_var"}
    assert torch.equal(out["y"], y) and torch.equal(out["h"], h)


def test_module_equals_function_and_call_time_override():
    z = _unit_symbols(3, 12)
    for bl in (None, 1, 4):
        out = Rayleigh(snr_db=0.0, block_length=bl)(z, snr_db=torch.tensor([1.0, 2.0, 3.0]), generator=make_generator(5))
        y, h = rayleigh(z, torch.tensor([1.0, 2.0, 3.0]), block_length=bl, generator=make_generator(5))
        assert torch.equal(out["y"], y) and torch.equal(out["h"], h)
        torch.testing.assert_close(out["noise_var"][:, 0], 10 ** (-torch.tensor([1.0, 2.0, 3.0]) / 10))


def test_same_seed_same_output():
    z = _unit_symbols(3, 12)
    y1, h1 = rayleigh(z, 5.0, block_length=3, generator=make_generator(9))
    y2, h2 = rayleigh(z, 5.0, block_length=3, generator=make_generator(9))
    assert torch.equal(y1, y2) and torch.equal(h1, h2)
    assert not torch.equal(y1, rayleigh(z, 5.0, block_length=3, generator=make_generator(10))[0])


@pytest.mark.parametrize(
    "csi, equalization", [("none", None), ("receiver", "side"), ("receiver", "zf"), ("receiver", "mmse")]
)
@pytest.mark.parametrize("block_length", [None, 1, 3])
def test_gradient_reaches_z(csi, equalization, block_length):
    z = _unit_symbols(2, 2, 6).requires_grad_()
    ch = Rayleigh(10.0, block_length=block_length, csi=csi, equalization=equalization)
    out = ch(z, generator=make_generator(0))
    out["y"].real.sum().backward()
    h, n0 = out["h"].detach(), out["noise_var"]
    # d sum Re(y) / dz for y = a z + const: conj(a) (conjugate-Wirtinger convention)
    a = {"zf": torch.ones_like(h), "mmse": h.abs() ** 2 / (h.abs() ** 2 + n0)}.get(equalization, h)
    torch.testing.assert_close(z.grad, a.conj().expand_as(z).to(z.dtype), rtol=1e-5, atol=1e-6)


def test_attributes_config_and_factory():
    ch = build_channel("rayleigh", snr_db=5.0, block_length=4, csi="receiver")
    assert isinstance(ch, Rayleigh) and ch.name == "rayleigh"
    assert (ch.csi, ch.equalization, ch.block_length) == ("receiver", "mmse", 4)  # mmse by default
    assert ch.channel_config() == {"name": "rayleigh", "csi": "receiver", "block_length": 4, "equalization": "mmse"}
    assert Rayleigh().channel_config() == {"name": "rayleigh", "csi": "none", "block_length": None, "equalization": None}
    assert "csi='receiver'" in repr(ch) and "equalization='mmse'" in repr(ch)


def test_errors():
    z = _unit_symbols(2, 8)
    with pytest.raises(TypeError, match="z must be a complex tensor"):
        rayleigh(z.real, 10.0)
    with pytest.raises(ValueError, match="snr_db must be finite"):
        rayleigh(z, math.nan)
    with pytest.raises(ValueError, match="snr_db of shape .* is not broadcastable"):
        rayleigh(z, torch.zeros(3))
    for bad in (0, -2):
        with pytest.raises(ValueError, match="block_length must be None or >= 1"):
            rayleigh(z, 10.0, block_length=bad)
        with pytest.raises(ValueError, match="block_length must be None or >= 1"):
            Rayleigh(block_length=bad)
    with pytest.raises(TypeError, match="block_length must be None or an int"):
        rayleigh(z, 10.0, block_length=2.5)
    with pytest.raises(ValueError, match=r"csi must be one of \('none', 'receiver'\), got 'transmitter'"):
        Rayleigh(csi="transmitter")
    with pytest.raises(ValueError, match=r"equalization must be one of \(None, 'zf', 'mmse', 'side'\)"):
        Rayleigh(csi="receiver", equalization="lmmse")
    with pytest.raises(ValueError, match="needs csi='receiver'"):
        Rayleigh(csi="none", equalization="zf")
    with pytest.raises(ValueError, match=r"method must be one of \('zf', 'mmse'\)"):
        equalize(z, torch.ones(2, 1, dtype=torch.complex64), 0.1, "side")
    with pytest.raises(ValueError, match="h of shape .* does not broadcast"):
        rayleigh(z, 10.0, h=torch.ones(2, 1, 1, dtype=torch.complex64))
    with pytest.raises(TypeError, match="h must be a complex tensor"):
        rayleigh(z, 10.0, h=torch.ones(2, 1))
    with pytest.raises(ValueError, match="snr_db must be given"):
        Rayleigh()(z)
