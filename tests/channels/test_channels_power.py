"""power_normalize / PowerNormalize and the SNR conversions."""

import math

import numpy as np
import pytest
import torch

from channels import PowerNormalize, power_normalize, snr_db_to_lin, snr_db_to_noise_var


def _symbols(*shape, seed=0, dtype=torch.complex64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _power(z):
    return z.abs().square().mean(dim=-1)


def test_unit_power_per_example():
    z = _symbols(8, 64) * torch.linspace(0.01, 100, 8)[:, None]  # very different scales per row
    out = power_normalize(z)
    assert out.shape == z.shape and out.dtype == torch.complex64
    # float32 rounding only: 1e-5 relative
    torch.testing.assert_close(_power(out), torch.ones(8), rtol=1e-5, atol=0)


@pytest.mark.parametrize("power", [0.5, 2.0, 10.0])
def test_power_argument_respected(power):
    out = power_normalize(_symbols(4, 3, 32), power=power)
    torch.testing.assert_close(_power(out), torch.full((4, 3), power), rtol=1e-5, atol=0)


def test_independent_of_batch_size():
    z = _symbols(16, 100)
    batched = power_normalize(z)
    for i in (0, 7, 15):
        assert torch.equal(power_normalize(z[i : i + 1]), batched[i : i + 1])  # bit-exact


def test_extra_leading_dims_reduce_over_last_dim_only():
    out = power_normalize(_symbols(2, 3, 10))
    torch.testing.assert_close(_power(out), torch.ones(2, 3), rtol=1e-5, atol=0)


@pytest.mark.parametrize("as_float", [False, True])
def test_mask_counts_only_sent_symbols(as_float):
    z = _symbols(3, 12)
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, :4] = True
    mask[1, :12] = True
    mask[2, ::3] = True
    out = power_normalize(z, power=2.0, mask=mask.float() if as_float else mask)
    assert torch.all(out[~mask] == 0)  # exactly zero, not just small
    for i in range(3):
        sent = out[i][mask[i]]
        torch.testing.assert_close(sent.abs().square().mean(), torch.tensor(2.0), rtol=1e-5, atol=0)
    # a sent symbol's value does not depend on what was in the masked-out slots
    z2 = z.clone()
    z2[~mask] = 1e3
    assert torch.equal(power_normalize(z2, power=2.0, mask=mask), out)


def test_mask_broadcasts_over_batch():
    mask = torch.tensor([1, 1, 0, 0, 1])  # (k,), same for every example
    out = power_normalize(_symbols(4, 5), mask=mask)
    assert torch.all(out[:, 2:4] == 0)
    torch.testing.assert_close(out[:, [0, 1, 4]].abs().square().mean(-1), torch.ones(4), rtol=1e-5, atol=0)


def test_zero_and_fully_masked_examples_are_zero_not_nan():
    z = torch.zeros(2, 8, dtype=torch.complex64)
    assert torch.equal(power_normalize(z), z)
    assert torch.equal(power_normalize(_symbols(2, 8), mask=torch.zeros(8, dtype=torch.bool)), z)


def test_module_equals_function():
    z = _symbols(4, 16)
    mask = torch.rand(4, 16, generator=torch.Generator().manual_seed(1)) > 0.3
    assert torch.equal(PowerNormalize(3.0)(z), power_normalize(z, 3.0))
    assert torch.equal(PowerNormalize(3.0)(z, mask), power_normalize(z, 3.0, mask))
    assert "power=3.0" in repr(PowerNormalize(3.0))


def test_keeps_input_dtype():
    assert power_normalize(_symbols(2, 4, dtype=torch.complex128)).dtype == torch.complex128


def test_gradcheck():
    z = _symbols(2, 5, dtype=torch.complex128).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 0, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x: power_normalize(x, power=2.0), (z,))
    assert torch.autograd.gradcheck(lambda x: power_normalize(x, mask=mask), (z,))


def test_snr_conversions():
    assert snr_db_to_lin(10) == pytest.approx(10.0, rel=1e-15)
    assert isinstance(snr_db_to_lin(3.0), float)
    assert snr_db_to_noise_var(0.0) == 1.0
    assert snr_db_to_noise_var(20.0, power=2.0) == pytest.approx(0.02, rel=1e-12)
    t = snr_db_to_noise_var(torch.tensor([0.0, 10.0, 20.0]))
    assert isinstance(t, torch.Tensor)
    torch.testing.assert_close(t, torch.tensor([1.0, 0.1, 0.01]))
    np.testing.assert_allclose(snr_db_to_lin(np.array([0.0, 30.0])), [1.0, 1000.0], rtol=1e-12)


def test_errors():
    z = _symbols(2, 4)
    with pytest.raises(TypeError, match="z must be a complex tensor"):
        power_normalize(z.real)
    with pytest.raises(TypeError, match="z must be a complex tensor"):
        power_normalize([1.0, 2.0])
    with pytest.raises(ValueError, match="power must be a positive"):
        power_normalize(z, power=0.0)
    with pytest.raises(ValueError, match="power must be a positive"):
        PowerNormalize(power=math.inf)
    with pytest.raises(ValueError, match="mask of shape"):
        power_normalize(z, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be bool or contain only 0 and 1"):
        power_normalize(z, mask=torch.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="snr_db must be finite"):
        snr_db_to_noise_var(math.nan)
    with pytest.raises(ValueError, match="snr_db must be finite"):
        snr_db_to_lin(torch.tensor([1.0, math.inf]))
    with pytest.raises(TypeError, match="snr_db must be a real number"):
        snr_db_to_lin("10")


def _reference(z, power=1.0, eps=1e-12):
    """The normalisation before huge inputs were handled: ordinary inputs must still match it bit for bit."""
    return z * ((z.shape[-1] * power) ** 0.5 / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(eps))


def test_huge_symbols_are_normalised_not_zeroed():
    """|z| ~ 1e19 overflows the float32 sum of squares: those examples are rescaled first, not sent as zeros."""
    z = _symbols(3, 64)
    z[1] *= 1e19
    z[2] *= 3e37
    out = power_normalize(z, power=2.0)
    assert torch.isfinite(torch.view_as_real(out)).all()
    torch.testing.assert_close(_power(out), torch.full((3,), 2.0), rtol=1e-5, atol=0)
    assert torch.equal(out[0], _reference(z[:1], 2.0)[0])  # the ordinary example of the batch: unchanged


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 1e3, 1e17])
def test_ordinary_symbols_and_gradients_unchanged_bit_for_bit(scale):
    z = (_symbols(4, 3, 40, seed=3) * scale).requires_grad_(True)
    z_ref = z.detach().clone().requires_grad_(True)
    out, ref = power_normalize(z), _reference(z_ref)
    assert torch.equal(out, ref)
    weights = _symbols(4, 3, 40, seed=4)
    (out * weights.conj()).real.sum().backward()
    (ref * weights.conj()).real.sum().backward()
    assert torch.equal(z.grad, z_ref.grad)
