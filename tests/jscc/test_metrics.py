"""Metrics: exact PSNR values, SSIM settings, input checks, LPIPS plumbing offline, accumulation."""
import math
import os
import shutil

import lpips
import numpy as np
import pytest
import pytorch_msssim
import torch
import torchvision

from jscc import metrics
from jscc.metrics import (
    LPIPSUnavailableError,
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
from jscc.results import sha256_file


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


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder, offline; the previous hub folder is restored afterwards."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("JSCC_OFFLINE", "1")
    yield tmp_path / "hub"
    torch.hub.set_dir(old)
    shutil.rmtree(tmp_path / "hub", ignore_errors=True)  # the stand-in weights are 244 MB


def test_lpips_missing_weights_offline(hub_dir):
    folder = os.path.join(str(hub_dir), "checkpoints")
    with pytest.raises(LPIPSUnavailableError) as info:
        load_lpips()
    msg = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in msg
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg
    assert folder in msg
    assert not os.path.exists(os.path.join(folder, "alexnet-owt-7be5be79.pth"))


def test_lpips_plumbing_with_stand_in_backbone(hub_dir, monkeypatch):
    # A randomly initialised AlexNet stands in for the ImageNet weights, which cannot be
    # downloaded here. This tests the plumbing only: a random-backbone score is never
    # reported as LPIPS, and load_lpips itself refuses the file unless its SHA-256
    # matches the real weights (torch.hub checks hashes only when it downloads).
    folder = hub_dir / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    weights = folder / "alexnet-owt-7be5be79.pth"
    torch.save(state, weights)

    with pytest.raises(LPIPSUnavailableError, match="SHA-256 .* does not start with 7be5be79"):
        load_lpips()

    monkeypatch.setattr(metrics, "ALEXNET_SHA256_PREFIX", sha256_file(weights)[:8])
    model = load_lpips()
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    # the backbone is the file's weights, not a fresh random init
    torch.testing.assert_close(model.net.slice1[0].weight, state["features.0.weight"], rtol=0, atol=0)
    # the linear layers are the calibrated ones shipped in the lpips package
    lin = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/alex.pth"), map_location="cpu")
    torch.testing.assert_close(model.lin0.model[1].weight, lin["lin0.model.1.weight"], rtol=0, atol=0)

    x = _images(b=3, h=64, w=64)
    y = _noisy(x, sigma=0.2)
    with torch.no_grad():
        same = lpips_distance(model, x, x)
        diff = lpips_distance(model, y, x)
    assert same.shape == diff.shape == (3,)
    torch.testing.assert_close(same, torch.zeros(3), atol=1e-6, rtol=0)
    assert (diff > 1e-4).all()
    # normalize=True: [0, 1] inputs are mapped to [-1, 1] inside
    with torch.no_grad():
        torch.testing.assert_close(diff, model(2 * y - 1, 2 * x - 1).reshape(3))


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
