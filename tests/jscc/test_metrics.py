"""Metrics: exact PSNR values, SSIM settings, input checks, LPIPS plumbing offline, accumulation."""
import math
import os

import lpips
import numpy as np
import pytest
import pytorch_msssim
import torch

from jscc.metrics import (
    MetricAccumulator,
    check_images,
    load_lpips,
    lpips_distance,
    ms_ssim,
    ms_ssim_supported,
    mse,
    psnr,
    ssim,
)


def _images(b=2, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


def _noisy(x, sigma=0.1, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


# --------------------------------------------------------------------------- PSNR / MSE


def test_psnr_constant_error_exact():
    x = torch.full((1, 3, 8, 8), 0.5)
    for err, expected_db in [(0.1, 20.0), (0.01, 40.0), (0.5, 20 * math.log10(2))]:
        out = psnr(x + err, x)
        assert out.shape == (1,) and out.dtype == torch.float32
        assert out.item() == pytest.approx(expected_db, abs=1e-4)
    assert mse(x + 0.1, x).item() == pytest.approx(0.01, rel=1e-5)


def test_psnr_is_per_image_and_independent():
    x = torch.full((3, 3, 16, 16), 0.5)
    err = torch.tensor([0.1, 0.01, 0.001]).view(3, 1, 1, 1)
    out = psnr(x + err, x)
    torch.testing.assert_close(out, torch.tensor([20.0, 40.0, 60.0]), atol=1e-3, rtol=0)
    # image 0 alone gives the same value as within the batch
    assert psnr(x[:1] + err[:1], x[:1]).item() == pytest.approx(out[0].item(), abs=1e-6)
    # per-image, not per-batch: mean PSNR != PSNR of the batch MSE
    batch_psnr = -10 * math.log10(((x + err - x) ** 2).mean().item())
    assert out.mean().item() == pytest.approx(40.0, abs=1e-3)
    assert abs(batch_psnr - 40.0) > 10


def test_psnr_identical_is_inf():
    x = _images()
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        psnr(_images(h=32), _images(h=16))


# --------------------------------------------------------------------------- SSIM / MS-SSIM


def test_ssim_uses_data_range_one():
    x = _images()
    y = _noisy(x)
    out = ssim(y, x)
    assert out.shape == (2,)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    torch.testing.assert_close(out, pytorch_msssim.ssim(y, x, data_range=1.0, size_average=False))
    # pytorch-msssim's default data_range=255 makes [0, 1] images look nearly identical
    assert (out < 0.96).all()
    assert (pytorch_msssim.ssim(y, x, size_average=False) > 0.999).all()


def test_ms_ssim_size_limit():
    assert not ms_ssim_supported(32, 32)
    assert not ms_ssim_supported(160, 512)
    assert ms_ssim_supported(161, 161)
    with pytest.raises(ValueError, match="too small.*report SSIM"):
        ms_ssim(_images(), _images(seed=1))


def test_ms_ssim_uses_data_range_one():
    x = _images(b=2, h=192, w=192)
    y = _noisy(x)
    out = ms_ssim(y, x)
    assert out.shape == (2,)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(2))
    torch.testing.assert_close(out, pytorch_msssim.ms_ssim(y, x, data_range=1.0, size_average=False))
    assert (pytorch_msssim.ms_ssim(y, x, size_average=False) - out).min() > 0.01


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.rand(3, 8, 8), ValueError, "4 dims"),
        (torch.rand(1, 1, 3, 8, 8), ValueError, "4 dims"),
        (torch.randint(0, 255, (1, 3, 8, 8)), TypeError, "floating"),
        (torch.rand(1, 2, 8, 8), ValueError, "1 or 3 channels"),
        (torch.full((1, 3, 8, 8), 255.0), ValueError, r"\[0, 1\].*max 255"),
        (torch.full((1, 3, 8, 8), -0.5), ValueError, r"min -0\.5"),
        (torch.full((1, 3, 8, 8), float("nan")), ValueError, "NaN"),
        (np.zeros((1, 3, 8, 8), np.float32), TypeError, "torch.Tensor"),
    ],
)
def test_check_images_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        check_images(bad, "x_hat")
    with pytest.raises(exc, match=match):
        psnr(bad, bad)


def test_check_images_accepts_valid_and_slack():
    check_images(torch.rand(2, 3, 4, 4))
    check_images(torch.rand(2, 1, 4, 4, dtype=torch.float64))
    check_images(torch.full((1, 3, 4, 4), 1 + 1e-7))
    with pytest.raises(ValueError, match="x_hat must have values in"):
        check_images(torch.full((1, 3, 4, 4), 1.01), "x_hat")


# --------------------------------------------------------------------------- LPIPS


def test_lpips_plumbing(monkeypatch):
    """The shipped trunk is loaded strictly, frozen, with the lpips package's calibrated heads."""
    model = load_lpips()
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    from jscc.lpips_backbones import backbone_state_dict

    state, _ = backbone_state_dict("alex")
    torch.testing.assert_close(model.net.slice1[0].weight, state["features.0.weight"], rtol=0, atol=0)
    lin = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/alex.pth"), map_location="cpu")
    torch.testing.assert_close(model.lin0.model[1].weight, lin["lin0.model.1.weight"], rtol=0, atol=0)

    x = _images(b=3, h=64, w=64)
    y = _noisy(x, sigma=0.2)
    with torch.no_grad():
        same = lpips_distance(model, x, x)
        diff = lpips_distance(model, y, x)
    assert same.shape == diff.shape == (3,)
    torch.testing.assert_close(same, torch.zeros(3), atol=1e-6, rtol=0)
    assert (diff > 1e-3).all()
    # normalize=True: [0, 1] inputs are mapped to [-1, 1] inside
    with torch.no_grad():
        torch.testing.assert_close(diff, model(2 * y - 1, 2 * x - 1).reshape(3))
    with pytest.raises(ValueError, match="smaller side must be >= 31 px"):
        lpips_distance(model, x[..., :30, :], x[..., :30, :])
    with pytest.raises(ValueError, match="RGB"):
        lpips_distance(model, x[:, :1], x[:, :1])


# --------------------------------------------------------------------------- accumulation


def test_accumulator_matches_numpy():
    rng = np.random.default_rng(0)
    acc = MetricAccumulator()
    data = {}
    for key in [2, 0, 1]:  # insertion order, not sorted order
        batches = [rng.normal(25 + key, 3, size=n) for n in (7, 1, 16, 5)]
        mses = [rng.uniform(1e-3, 1e-2, size=len(b)) for b in batches]
        for b, m in zip(batches, mses):
            acc.add(key, "psnr", torch.from_numpy(b).float())
            acc.add(key, "mse", torch.from_numpy(m))
        data[key] = (np.concatenate(batches).astype(np.float32), np.concatenate(mses))
    assert acc.keys() == [2, 0, 1]
    assert acc.count(0, "psnr") == 29
    out = acc.summary()
    assert list(out) == ["psnr", "psnr_std", "psnr_of_mean_mse"]
    np.testing.assert_allclose(out["psnr"], [data[k][0].astype(np.float64).mean() for k in [2, 0, 1]], rtol=1e-12)
    np.testing.assert_allclose(out["psnr_std"], [data[k][0].astype(np.float64).std() for k in [2, 0, 1]], rtol=1e-9)
    np.testing.assert_allclose(out["psnr_of_mean_mse"], [-10 * np.log10(data[k][1].mean()) for k in [2, 0, 1]])
    assert all(type(v) is float for v in out["psnr"])
    np.testing.assert_allclose(acc.summary(keys=[0, 1, 2])["psnr"], [out["psnr"][i] for i in (1, 2, 0)])


def test_accumulator_errors():
    acc = MetricAccumulator()
    acc.add(0, "psnr", torch.tensor([20.0]))
    acc.add(1, "psnr", torch.tensor([21.0]))
    acc.add(1, "ssim", torch.tensor([0.9]))
    with pytest.raises(ValueError, match="'ssim' has no values at keys \\[0\\]"):
        acc.summary()
    with pytest.raises(ValueError, match="no values were added"):
        acc.summary(keys=[0, 5])
    with pytest.raises(ValueError, match="non-finite"):
        acc.add(0, "psnr", torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match="no values"):
        acc.add(0, "psnr", torch.tensor([]))


def test_lpips_reference_cache_is_exact_and_safe():
    """Cached reference features give lpips' own values; a changed or new reference is recomputed."""
    model = load_lpips()
    x = _images(b=3, h=40, w=48)
    with torch.no_grad():
        for seed in (1, 2):
            y = _noisy(x, sigma=0.1, seed=seed)
            torch.testing.assert_close(lpips_distance(model, y, x), model(y, x, normalize=True).reshape(3),
                                       rtol=0, atol=0)
        x.mul_(0.5)  # in place: the cache must notice
        torch.testing.assert_close(lpips_distance(model, y, x), model(y, x, normalize=True).reshape(3), rtol=0, atol=0)
        for seed in (3, 4):  # a fresh reference each time (same shape)
            z = _images(b=3, h=40, w=48, seed=seed)
            torch.testing.assert_close(lpips_distance(model, y, z), model(y, z, normalize=True).reshape(3),
                                       rtol=0, atol=0)
    y = y.clone().requires_grad_(True)
    lpips_distance(model, y, x).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
