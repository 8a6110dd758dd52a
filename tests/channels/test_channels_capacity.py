"""Capacity and outage references against closed forms and Monte Carlo."""

import math

import numpy as np
import pytest
import torch

from channels import awgn_capacity, make_generator, rayleigh, rayleigh_ergodic_capacity, rayleigh_outage_probability

N = 200_000  # Monte-Carlo draws of h ~ CN(0, 1)


def _sampled_h(seed=0):
    """|h|^2 of N fast-fading draws taken from the channel itself."""
    z = torch.ones(1, N, dtype=torch.complex64)
    return rayleigh(z, 0.0, block_length=1, generator=make_generator(seed))[1].abs().square().double()


def test_awgn_capacity_closed_form():
    assert awgn_capacity(0) == 1.0  # log2(1 + 1), exactly
    assert awgn_capacity(10.0) == pytest.approx(math.log2(11), rel=1e-15)
    t = awgn_capacity(torch.tensor([0.0, 10.0, 20.0], dtype=torch.float64))
    torch.testing.assert_close(t, torch.tensor([1.0, math.log2(11), math.log2(101)], dtype=torch.float64))
    np.testing.assert_allclose(awgn_capacity(np.array([0.0, 30.0])), [1.0, math.log2(1001)], rtol=1e-15)


def test_outage_closed_form():
    assert rayleigh_outage_probability(1.0, 0.0) == pytest.approx(1 - math.exp(-1), rel=1e-15)
    assert rayleigh_outage_probability(0.0, 5.0) == 0.0
    assert rayleigh_outage_probability(2.0, 10.0) == pytest.approx(1 - math.exp(-0.3), rel=1e-12)
    t = rayleigh_outage_probability(torch.tensor([1.0, 2.0]), 10.0)
    torch.testing.assert_close(t, torch.tensor([1 - math.exp(-0.1), 1 - math.exp(-0.3)]))
    a = rayleigh_outage_probability(1.0, np.array([0.0, 10.0]))
    np.testing.assert_allclose(a, [1 - math.exp(-1), 1 - math.exp(-0.1)], rtol=1e-12)


@pytest.mark.parametrize("rate, snr_db", [(1.0, 10.0), (2.0, 5.0), (0.5, 0.0)])
def test_outage_matches_monte_carlo(rate, snr_db):
    g2 = _sampled_h()
    snr = 10 ** (snr_db / 10)
    p_mc = (torch.log2(1 + g2 * snr) < rate).double().mean().item()
    p = rayleigh_outage_probability(rate, snr_db)
    # binomial std sqrt(p(1-p)/N) <= 0.0011; tolerance 0.006 absolute (> 5 sigma)
    assert p_mc == pytest.approx(p, abs=0.006)


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0, 20.0])
def test_ergodic_capacity_matches_monte_carlo(snr_db):
    g2 = _sampled_h(seed=1)
    c_mc = torch.log2(1 + g2 * 10 ** (snr_db / 10))
    # standard error of the mean is std/sqrt(N); allow 5 of them
    tol = 5 * c_mc.std().item() / math.sqrt(N)
    assert rayleigh_ergodic_capacity(snr_db) == pytest.approx(c_mc.mean().item(), abs=tol)
    assert rayleigh_ergodic_capacity(snr_db) < awgn_capacity(snr_db)  # Jensen


def test_ergodic_capacity_kinds_and_low_snr():
    t = rayleigh_ergodic_capacity(torch.tensor([0.0, 10.0]))
    assert t.dtype == torch.float32
    torch.testing.assert_close(t, torch.tensor([rayleigh_ergodic_capacity(0.0), rayleigh_ergodic_capacity(10.0)]))
    a = rayleigh_ergodic_capacity(np.array([0.0, 10.0]))
    np.testing.assert_allclose(a, t.numpy(), rtol=1e-6)
    # low SNR, where exp(1/snr) overflows and the asymptotic branch is used:
    # C = log2(e) * (snr - snr^2 + 2 snr^3 - ...), relative error ~ 6 snr^3
    for snr_db in (-30.0, -40.0, -60.0):
        snr = 10 ** (snr_db / 10)
        expected = math.log2(math.e) * (snr - snr**2 + 2 * snr**3)
        assert rayleigh_ergodic_capacity(snr_db) == pytest.approx(expected, rel=1e-8)
    # continuous across the switch to the series at 1/snr = 50 (relative 1e-12)
    edge = -10 * math.log10(50)
    lo, hi = rayleigh_ergodic_capacity(edge - 1e-9), rayleigh_ergodic_capacity(edge + 1e-9)
    assert lo == pytest.approx(hi, rel=1e-8)


def test_errors():
    with pytest.raises(ValueError, match="snr_db must be finite"):
        awgn_capacity(math.inf)
    with pytest.raises(ValueError, match="snr_db must be finite"):
        rayleigh_ergodic_capacity(torch.tensor([math.nan]))
    with pytest.raises(ValueError, match="rate must be finite and >= 0"):
        rayleigh_outage_probability(-1.0, 10.0)
    with pytest.raises(ValueError, match="rate must be finite and >= 0"):
        rayleigh_outage_probability(torch.tensor([1.0, math.nan]), 10.0)
    with pytest.raises(TypeError, match="rate must be a real number"):
        rayleigh_outage_probability("1", 10.0)
