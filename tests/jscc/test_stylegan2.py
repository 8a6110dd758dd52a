"""StyleGAN2 prior: shapes, latent space, noise, gradients, discriminator, and the two public checkpoint
loaders (rosinality ``g_ema`` state dicts; stylegan2-ada ``.pkl`` through a restricted unpickler).

Checkpoint fixtures are built here, tiny and random: a state dict with exactly rosinality's key names
and shapes, and a pickle that mimics stylegan2-ada's persistent-class structure with classes that are
not importable at load time. Rosinality numerics are checked against a functional re-statement of
their forward pass (fused grouped conv, ``upfirdn2d_native``) that shares no code with the module.
"""
from __future__ import annotations

import argparse
import collections
import io
import math
import os
import pickle
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jscc.models.stylegan2 import (
    Discriminator,
    Generator,
    ObjectStub,
    PersistentStub,
    UnsafePickleError,
    from_unit_range,
    minibatch_stddev,
    module_tensors,
    restricted_load,
    to_unit_range,
)

TINY = dict(w_dim=16, n_mapping=2, channel_base=256, channel_max=32)  # widths 32 up to 8x8, then 16, 8


def _randomise(gen: Generator, seed: int = 0) -> Generator:
    """Give every parameter / buffer non-trivial values (noise strengths and biases start at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in gen.state_dict().items():
            if name.endswith(("noise_strength", ".bias")) or name == "w_avg":
                t.copy_(0.3 * torch.randn(t.shape, generator=g))
            if name.endswith("affine.bias"):
                t.add_(1.0)
    return gen.eval()


@pytest.fixture(scope="module")
def gen16():
    torch.manual_seed(0)
    return _randomise(Generator(16, **TINY))


# --------------------------------------------------------------------------- shapes and sizes


@pytest.mark.parametrize("resolution, base, cmax", [(4, 64, 16), (8, 128, 16), (16, 256, 32), (32, 1024, 64)])
def test_output_shapes_and_num_ws(resolution, base, cmax):
    gen = Generator(resolution, w_dim=8, n_mapping=1, channel_base=base, channel_max=cmax)
    n = int(math.log2(resolution))
    assert gen.num_ws == 2 * n - 2 and gen.num_noise == 2 * n - 3
    assert gen.widths == {2**i: min(base // 2**i, cmax) for i in range(2, n + 1)}
    z = torch.randn(3, 8)
    x = gen(z)
    assert x.shape == (3, 3, resolution, resolution) and x.dtype == torch.float32
    assert gen.ws_from_z(z).shape == (3, gen.num_ws, 8)
    assert gen.synthesis(torch.randn(2, gen.num_ws, 8), noise="const").shape == (2, 3, resolution, resolution)


def test_noise_layout_and_explicit_widths():
    gen = Generator(32, w_dim=8, n_mapping=1, channels={4: 8, 8: 6, 16: 4, 32: 2})
    assert gen.num_ws == 8
    assert gen.noise_resolutions == [4, 8, 8, 16, 16, 32, 32]
    assert [n.shape for n in gen.make_noise(2)] == [(2, 1, r, r) for r in gen.noise_resolutions]
    assert gen.blocks[3].conv0.weight.shape == (2, 4, 3, 3)
    assert gen(torch.randn(1, 8)).shape == (1, 3, 32, 32)
    gen64 = Generator(64, w_dim=8, n_mapping=1, channel_base=256, channel_max=8, z_dim=5)
    assert gen64(torch.randn(2, 5)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("resolution", [0, 2, 3, 12, 48, -4, 16.0, True, "16"])
def test_bad_resolution(resolution):
    with pytest.raises(ValueError, match="power of two"):
        Generator(resolution, **TINY)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(resolution, 256, 32)


def test_bad_sizes():
    with pytest.raises(ValueError, match=">= 1 channel"):
        Generator(64, w_dim=8, channel_base=32, channel_max=8)  # 32 // 64 = 0 channels at 64x64
    with pytest.raises(ValueError, match="each resolution"):
        Generator(16, w_dim=8, channels={4: 8, 16: 8})
    with pytest.raises(ValueError, match="w_dim"):
        Generator(16, w_dim=0)


def test_wrong_ws_z_and_noise_inputs(gen16):
    good = torch.randn(2, gen16.num_ws, 16)
    for ws in (good[:, 1:], good[:, 0], torch.randn(2, gen16.num_ws, 15), good.long(), good.numpy()):
        with pytest.raises(ValueError, match=r"ws must be .*num_ws=6, w_dim=16"):
            gen16.synthesis(ws)
    for z in (torch.randn(2, 15), torch.randn(16), torch.ones(2, 16, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"z must be .*\(B, 16\)"):
            gen16(z)
    noise = gen16.make_noise(2)
    with pytest.raises(ValueError, match="hold 5 tensors"):
        gen16.synthesis(good, noise=noise[:-1])
    with pytest.raises(ValueError, match=r"noise\[2\] must have shape \(8,8\)"):
        gen16.synthesis(good, noise=noise[:2] + [torch.randn(2, 1, 4, 4)] + noise[3:])
    with pytest.raises(ValueError, match=r"noise\[0\]"):
        gen16.synthesis(good, noise=[torch.randn(3, 1, 4, 4)] + noise[1:])  # batch 3 vs 2
    with pytest.raises(ValueError, match="'const'"):
        gen16.synthesis(good, noise="constant")


# --------------------------------------------------------------------------- latent space and noise


def test_truncation_psi_zero_gives_w_avg_image_for_every_z(gen16):
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    x = gen16(z, truncation_psi=0.0, noise="const")
    ref = gen16.synthesis(gen16.w_avg.expand(1, gen16.num_ws, -1), noise="const")
    torch.testing.assert_close(x, ref.expand(4, -1, -1, -1), rtol=1e-5, atol=1e-5)  # batch-size rounding only
    assert not torch.allclose(gen16(z, noise="const")[0], gen16(z, noise="const")[1])  # psi=1: z matters


def test_truncation_cutoff(gen16):
    ws = torch.randn(2, gen16.num_ws, 16)
    out = gen16.truncate(ws, 0.5, truncation_cutoff=2)
    torch.testing.assert_close(out[:, :2], gen16.w_avg + 0.5 * (ws[:, :2] - gen16.w_avg))
    assert torch.equal(out[:, 2:], ws[:, 2:])
    torch.testing.assert_close(gen16.truncate(ws, 0.5), gen16.w_avg + 0.5 * (ws - gen16.w_avg))
    assert gen16.truncate(ws, 1.0) is ws


def test_pixel_norm_makes_mapping_scale_invariant(gen16):
    z = torch.randn(3, 16)
    torch.testing.assert_close(gen16.mapping(z), gen16.mapping(7.0 * z), rtol=1e-5, atol=1e-6)


def test_w_avg_tracking_and_mean_w():
    gen = _randomise(Generator(8, **TINY))
    z = torch.randn(5, 16)
    old = gen.w_avg.clone()
    w = gen.mapping(z, update_w_avg=True)
    torch.testing.assert_close(gen.w_avg, 0.995 * old + 0.005 * w.detach().mean(0))
    gen.mapping(z)  # no update by default
    torch.testing.assert_close(gen.w_avg, 0.995 * old + 0.005 * w.detach().mean(0))
    est = gen.mean_w(50, generator=torch.Generator().manual_seed(3), batch_size=16)
    g = torch.Generator().manual_seed(3)  # the same draws: batches of 16, 16, 16, 2
    ref = gen.mapping(torch.cat([torch.randn(m, 16, generator=g) for m in (16, 16, 16, 2)])).mean(0)
    assert est.shape == (16,)
    torch.testing.assert_close(est, ref.detach(), rtol=1e-5, atol=1e-6)


def test_noise_modes(gen16):
    ws = torch.randn(2, gen16.num_ws, 16)
    const = gen16.synthesis(ws, noise="const")
    assert torch.equal(const, gen16.synthesis(ws, noise="const"))  # deterministic
    assert torch.equal(const, gen16.synthesis(ws, noise=[c.noise_const for c in gen16.styled_convs()]))
    none = gen16.synthesis(ws, noise="none")
    assert torch.equal(none, gen16.synthesis(ws, noise=[torch.zeros(1, 1, r, r) for r in gen16.noise_resolutions]))
    a = gen16.synthesis(ws, generator=torch.Generator().manual_seed(5))
    b = gen16.synthesis(ws, noise="random", generator=torch.Generator().manual_seed(5))
    c = gen16.synthesis(ws, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, const)


def test_gradients_reach_ws_and_noise(gen16):
    ws = torch.randn(2, gen16.num_ws, 16, requires_grad=True)
    noise = [n.requires_grad_() for n in gen16.make_noise(2)]
    gen16.synthesis(ws, noise=noise).square().mean().backward()
    assert ws.grad is not None and (ws.grad.abs().sum(dim=(0, 2)) > 0).all()  # every layer's w
    assert all(n.grad is not None and n.grad.abs().sum() > 0 for n in noise)


def test_gradcheck_float64_wrt_ws():
    gen = _randomise(Generator(8, w_dim=3, n_mapping=1, channels={4: 3, 8: 2})).double()
    ws = torch.randn(1, gen.num_ws, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: gen.synthesis(w, noise="const"), (ws,))


def test_unit_range_helpers():
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.2]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    torch.testing.assert_close(to_unit_range(x)[0, 0, 0], torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    img = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(to_unit_range(from_unit_range(img)), img)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        from_unit_range(img * 2)


# --------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("resolution", [4, 8, 32])
def test_discriminator_shapes_features_and_gradient(resolution):
    disc = Discriminator(resolution, channel_base=512, channel_max=16)
    x = torch.rand(4, 3, resolution, resolution).mul(2).sub(1).requires_grad_()
    logits = disc(x)
    assert logits.shape == (4,)
    feats = disc.features(x)
    widths = {r: min(512 // r, 16) for r in (4, 8, 16, 32)}
    sides = [resolution // 2**i for i in range(int(math.log2(resolution)) - 1)]
    assert [tuple(f.shape) for f in feats] == [(4, widths[s], s, s) for s in sides]
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_features_are_per_example_and_errors():
    disc = Discriminator(16, 256, 16)
    x = torch.randn(3, 3, 16, 16)
    for a, b in zip(disc.features(x), disc.features(x[1:2])):
        torch.testing.assert_close(a[1:2], b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        Discriminator(16, 256, 16, mbstd_group_size=4)(torch.randn(6, 3, 16, 16))
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 16, 16\)"):
        disc(torch.randn(2, 3, 32, 32))


def test_minibatch_stddev_values():
    x = torch.randn(2, 4, 3, 3)
    same = minibatch_stddev(torch.cat([x[:1], x[:1]]), group_size=2)
    assert same.shape == (2, 5, 3, 3)
    torch.testing.assert_close(same[:, 4], torch.full((2, 3, 3), 1e-4))  # sqrt(0 + 1e-8)
    y = minibatch_stddev(x, group_size=2)
    expected = (x.var(0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(y[:, 4], expected.expand(2, 3, 3))


# --------------------------------------------------------------------------- rosinality fixture and reference


def _make_kernel() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum()


def rosinality_state_dict(size=16, channel=32, style_dim=32, n_mlp=2, seed=0) -> dict[str, torch.Tensor]:
    """Random ``g_ema`` state dict with rosinality's exact keys and shapes (their ``channels`` table
    replaced by one ``channel`` width so the model is tiny)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g) * scale + shift

    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = randn(style_dim, style_dim, scale=100.0)  # randn / lr_mul
        sd[f"style.{i}.bias"] = randn(style_dim, scale=30.0)  # used times lr_mul = 0.01

    def styled(prefix, cin, cout, upsample):
        sd[f"{prefix}.conv.weight"] = randn(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = randn(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = randn(cin, scale=0.2, shift=1.0)
        if upsample:
            sd[f"{prefix}.conv.blur.kernel"] = _make_kernel() * 4
        sd[f"{prefix}.noise.weight"] = randn(1, scale=0.3)
        sd[f"{prefix}.activate.bias"] = randn(cout, scale=0.3)

    def to_rgb(prefix, cin, upsample):
        if upsample:
            sd[f"{prefix}.upsample.kernel"] = _make_kernel() * 4
        sd[f"{prefix}.conv.weight"] = randn(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = randn(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = randn(cin, scale=0.2, shift=1.0)
        sd[f"{prefix}.bias"] = randn(1, 3, 1, 1, scale=0.3)

    log_size = int(math.log2(size))
    sd["input.input"] = randn(1, channel, 4, 4)
    styled("conv1", channel, channel, False)
    to_rgb("to_rgb1", channel, False)
    for layer_idx in range((log_size - 2) * 2 + 1):
        res = (layer_idx + 5) // 2
        sd[f"noises.noise_{layer_idx}"] = randn(1, 1, 2**res, 2**res)
    for i in range(3, log_size + 1):
        styled(f"convs.{2 * (i - 3)}", channel, channel, True)
        styled(f"convs.{2 * (i - 3) + 1}", channel, channel, False)
        to_rgb(f"to_rgbs.{i - 3}", channel, True)
    return sd


def _upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """rosinality's ``upfirdn2d_native``: zero insertion, pad, flipped-kernel conv, subsampling."""
    b, c, h, w = x.shape
    out = x.reshape(b * c, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
    out = out.reshape(b * c, 1, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(out, torch.flip(kernel, [0, 1])[None, None])[:, :, ::down, ::down]
    return out.reshape(b, c, *out.shape[-2:])


def _ref_linear(x, weight, bias, lr_mul=1.0, lrelu=False):
    out = F.linear(x, weight * (1 / math.sqrt(weight.shape[1])) * lr_mul)
    if lrelu:
        return F.leaky_relu(out + bias * lr_mul, 0.2) * 2**0.5
    return out + bias * lr_mul


def _ref_modconv(sd, prefix, x, style, demodulate, upsample):
    """Fused (grouped-conv) ModulatedConv2d of rosinality."""
    weight = sd[f"{prefix}.conv.weight"]
    _, cout, cin, k, _ = weight.shape
    b, _, h, w = x.shape
    s = _ref_linear(style, sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"])
    wt = (1 / math.sqrt(cin * k * k)) * weight * s.view(b, 1, cin, 1, 1)
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(b, cout, 1, 1, 1)
    if upsample:
        wt = wt.transpose(1, 2).reshape(b * cin, cout, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wt, stride=2, groups=b)
        out = out.view(b, cout, *out.shape[-2:])
        p = (4 - 2) - (k - 1)
        return _upfirdn2d(out, sd[f"{prefix}.conv.blur.kernel"], pad=((p + 1) // 2 + 1, p // 2 + 1))
    out = F.conv2d(x.reshape(1, b * cin, h, w), wt.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
    return out.view(b, cout, h, w)


def rosinality_forward(sd, latent, noise):
    """Their ``Generator.forward`` on ``latent (B,n_latent,style_dim)`` with explicit ``noise``."""
    def styled(prefix, x, style, n, upsample=False):
        out = _ref_modconv(sd, prefix, x, style, True, upsample)
        out = out + sd[f"{prefix}.noise.weight"] * n
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * 2**0.5

    def to_rgb(prefix, x, style, skip=None):
        out = _ref_modconv(sd, prefix, x, style, False, False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + _upfirdn2d(skip, sd[f"{prefix}.upsample.kernel"], up=2, pad=(2, 1))
        return out

    out = sd["input.input"].repeat(latent.shape[0], 1, 1, 1)
    out = styled("conv1", out, latent[:, 0], noise[0])
    skip = to_rgb("to_rgb1", out, latent[:, 1])
    n_up = len([k for k in sd if k.startswith("to_rgbs.") and k.endswith("conv.weight")])
    i = 1
    for j in range(n_up):
        out = styled(f"convs.{2 * j}", out, latent[:, i], noise[2 * j + 1], upsample=True)
        out = styled(f"convs.{2 * j + 1}", out, latent[:, i + 1], noise[2 * j + 2])
        skip = to_rgb(f"to_rgbs.{j}", out, latent[:, i + 2], skip)
        i += 2
    return skip


def rosinality_mapping(sd, z, lr_mul=0.01):
    x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    n_mlp = len([k for k in sd if k.startswith("style.") and k.endswith(".weight")])
    for i in range(1, n_mlp + 1):
        x = _ref_linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mul, lrelu=True)
    return x


def to_rosinality(gen: Generator) -> dict[str, torch.Tensor]:
    """Our model's weights in rosinality's ``g_ema`` layout (test-side exporter for round trips)."""
    sd = {}
    for i, layer in enumerate(gen.mapping_layers):
        sd[f"style.{i + 1}.weight"], sd[f"style.{i + 1}.bias"] = layer.weight, layer.bias
    sd["input.input"] = gen.blocks[0].const[None]

    def styled(prefix, conv, noise_idx):
        sd[f"{prefix}.conv.weight"] = conv.weight[None]
        sd[f"{prefix}.conv.modulation.weight"] = conv.affine.weight
        sd[f"{prefix}.conv.modulation.bias"] = conv.affine.bias
        sd[f"{prefix}.noise.weight"] = conv.noise_strength.reshape(1)
        sd[f"{prefix}.activate.bias"] = conv.bias
        sd[f"noises.noise_{noise_idx}"] = conv.noise_const[None, None]
        if conv.up:
            sd[f"{prefix}.conv.blur.kernel"] = _make_kernel() * 4

    def to_rgb(prefix, layer, upsample):
        sd[f"{prefix}.conv.weight"] = layer.weight[None]
        sd[f"{prefix}.conv.modulation.weight"] = layer.affine.weight
        sd[f"{prefix}.conv.modulation.bias"] = layer.affine.bias
        sd[f"{prefix}.bias"] = layer.bias.reshape(1, 3, 1, 1)
        if upsample:
            sd[f"{prefix}.upsample.kernel"] = _make_kernel() * 4

    styled("conv1", gen.blocks[0].conv1, 0)
    to_rgb("to_rgb1", gen.blocks[0].to_rgb, False)
    for j, block in enumerate(gen.blocks[1:], start=1):
        styled(f"convs.{2 * j - 2}", block.conv0, 2 * j - 1)
        styled(f"convs.{2 * j - 1}", block.conv1, 2 * j)
        to_rgb(f"to_rgbs.{j - 1}", block.to_rgb, True)
    return {k: v.detach().clone() for k, v in sd.items()}


@pytest.fixture(scope="module")
def ros():
    sd = rosinality_state_dict(size=16, channel=32, style_dim=32, n_mlp=2, seed=0)
    latent_avg = torch.randn(32, generator=torch.Generator().manual_seed(9))
    return sd, latent_avg


# --------------------------------------------------------------------------- rosinality loader


def test_rosinality_config_inferred_from_shapes(ros):
    sd, latent_avg = ros
    gen = Generator.from_rosinality({"g_ema": sd, "latent_avg": latent_avg})
    assert (gen.resolution, gen.w_dim, gen.z_dim, len(gen.mapping_layers)) == (16, 32, 32, 2)
    assert gen.widths == {4: 32, 8: 32, 16: 32}
    assert torch.equal(gen.w_avg, latent_avg)


def test_rosinality_numerics_match_their_definition(ros):
    sd, latent_avg = ros
    gen = Generator.from_rosinality({"g_ema": sd, "latent_avg": latent_avg[None]}, resolution=16)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 32, generator=g)
    torch.testing.assert_close(gen.mapping(z), rosinality_mapping(sd, z), rtol=1e-5, atol=1e-5)
    latent = torch.randn(3, gen.num_ws, 32, generator=g)
    noise = [torch.randn(3, 1, r, r, generator=g) for r in gen.noise_resolutions]
    ref = rosinality_forward(sd, latent, noise)
    out = gen.synthesis(latent, noise=noise)
    assert ref.abs().max() > 0.5  # a non-trivial image
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # truncation (their truncation_latent = latent_avg) with their fixed noise buffers
    psi = 0.7
    w = latent_avg + psi * (rosinality_mapping(sd, z) - latent_avg)
    buffers = [sd[f"noises.noise_{i}"] for i in range(gen.num_noise)]
    ref = rosinality_forward(sd, w[:, None].expand(-1, gen.num_ws, -1), buffers)
    torch.testing.assert_close(gen(z, truncation_psi=psi, noise="const"), ref, rtol=1e-4, atol=1e-5)


def test_rosinality_round_trip_identical_images(gen16):
    exported = to_rosinality(gen16)
    assert set(exported) == set(rosinality_state_dict(size=16, channel=32, style_dim=16, n_mlp=2))
    assert exported["to_rgbs.1.conv.weight"].shape == (1, 3, 16, 1, 1)  # TINY is 16 wide at 16x16
    assert exported["convs.2.conv.weight"].shape == (1, 16, 32, 3, 3)
    loaded = Generator.from_rosinality(exported, latent_avg=gen16.w_avg).eval()
    assert loaded.widths == gen16.widths
    ws = torch.randn(2, gen16.num_ws, 16)
    assert torch.equal(loaded.synthesis(ws, noise="const"), gen16.synthesis(ws, noise="const"))
    z = torch.randn(2, 16)
    assert torch.equal(loaded(z, truncation_psi=0.5, noise="const"), gen16(z, truncation_psi=0.5, noise="const"))


def test_rosinality_from_path_and_estimated_w_avg(ros, tmp_path):
    sd, _ = ros
    path = tmp_path / "000100.pt"
    torch.save({"g_ema": sd, "g": sd, "args": argparse.Namespace(size=16, latent=32)}, path)  # a training checkpoint
    gen = Generator.from_rosinality(path, w_avg_samples=64)  # no latent_avg: estimated, seed 0
    fresh = Generator.from_rosinality(sd, latent_avg=torch.zeros(32))
    torch.testing.assert_close(gen.w_avg, fresh.mean_w(64, generator=torch.Generator().manual_seed(0)))


def test_rosinality_mismatched_checkpoints_are_errors(ros):
    sd, latent_avg = ros
    missing = {k: v for k, v in sd.items() if k != "convs.1.noise.weight"}
    with pytest.raises(ValueError, match=r"missing \[convs\.1\.noise\.weight\]"):
        Generator.from_rosinality(missing, latent_avg)
    with pytest.raises(ValueError, match=r"unexpected \[convs\.9\.extra\]"):
        Generator.from_rosinality({**sd, "convs.9.extra": torch.zeros(1)}, latent_avg)
    with pytest.raises(ValueError, match=r"convs\.0\.conv\.modulation\.weight has shape \(32, 31\)"):
        Generator.from_rosinality({**sd, "convs.0.conv.modulation.weight": torch.zeros(32, 31)}, latent_avg)
    with pytest.raises(ValueError, match="resolution=32 was requested but the checkpoint has resolution=16"):
        Generator.from_rosinality(sd, latent_avg, resolution=32)
    with pytest.raises(ValueError, match="channel_base/channel_max give widths"):
        Generator.from_rosinality(sd, latent_avg, channel_base=256, channel_max=16)
    with pytest.raises(ValueError, match=r"\[1,3,3,1\] blur kernel"):
        Generator.from_rosinality({**sd, "to_rgbs.0.upsample.kernel": torch.ones(4, 4)}, latent_avg)
    with pytest.raises(ValueError, match="no 'input.input'"):
        Generator.from_rosinality({"style.1.weight": torch.zeros(4, 4)}, latent_avg)
    with pytest.raises(ValueError, match=r"latent_avg has shape \(31,\)"):
        Generator.from_rosinality(sd, torch.zeros(31))
    ok = Generator.from_rosinality(sd, latent_avg, channel_base=512, channel_max=32)  # agrees: 32 at 4..16
    assert ok.widths == {4: 32, 8: 32, 16: 32}


# --------------------------------------------------------------------------- stylegan2-ada fixture


def _reconstruct_persistent_obj(meta):  # stored as torch_utils.persistence._reconstruct_persistent_obj
    raise AssertionError("never called: the pickle only names it")


class _EasyDict(dict):  # stored as dnnlib.util.EasyDict
    pass


class _AugmentPipe:  # stored as training.augment.AugmentPipe (a plain, non-persistent class)
    def __init__(self):
        self.p = torch.zeros([])
        self.xflip = 1.0


_PICKLE_AS = {_reconstruct_persistent_obj: ("torch_utils.persistence", "_reconstruct_persistent_obj"),
              _EasyDict: ("dnnlib.util", "EasyDict"), _AugmentPipe: ("training.augment", "AugmentPipe")}


class _AdaPickler(pickle._Pickler):
    """Writes the stand-ins above under stylegan2-ada's module paths, which are not importable here."""

    def save_global(self, obj, name=None):
        if obj in _PICKLE_AS:
            module, qualname = _PICKLE_AS[obj]
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: save_global}  # functions bypass self.save_global


class _Persistent:
    """Pickles like a torch_utils.persistence module: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name, params=(), buffers=(), modules=(), module_src="", **attrs):
        self.meta = dict(type="class", version=4, module_src=module_src, class_name=class_name, state={
            "training": False,
            "_parameters": collections.OrderedDict(
                (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False)) for k, v in dict(params).items()),
            "_buffers": collections.OrderedDict((k, v.detach().clone()) for k, v in dict(buffers).items()),
            "_non_persistent_buffers_set": set(),
            "_modules": collections.OrderedDict(modules),
            "_init_args": (), "_init_kwargs": {}, **attrs})

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


def ada_generator_object(gen: Generator, conv_clamp=None, lr_mul=0.01, c_dim=0, module_src="") -> _Persistent:
    """A stylegan2-ada ``Generator`` as pickled by torch_utils.persistence, weights from ``gen``."""
    kernel = _make_kernel()

    def fc(layer, lr=1.0, activation="linear"):
        return _Persistent("FullyConnectedLayer", {"weight": layer.weight, "bias": layer.bias}, module_src=module_src,
                           in_features=layer.weight.shape[1], out_features=layer.weight.shape[0],
                           activation=activation, weight_gain=lr / np.sqrt(layer.weight.shape[1]),  # np.float64
                           bias_gain=lr)

    def synthesis_layer(conv):
        return _Persistent(
            "SynthesisLayer", {"weight": conv.weight, "noise_strength": conv.noise_strength, "bias": conv.bias},
            {"resample_filter": kernel, "noise_const": conv.noise_const}, {"affine": fc(conv.affine)},
            module_src=module_src, up=2 if conv.up else 1, use_noise=True, activation="lrelu",
            conv_clamp=conv_clamp, resolution=conv.resolution, padding=1, act_gain=np.sqrt(2))

    blocks = {}
    for block in gen.blocks:
        r = block.resolution
        layers = {name: synthesis_layer(getattr(block, name)) for name in (["conv1"] if r == 4 else ["conv0", "conv1"])}
        rgb = block.to_rgb
        layers["torgb"] = _Persistent("ToRGBLayer", {"weight": rgb.weight, "bias": rgb.bias}, (),
                                      {"affine": fc(rgb.affine)}, module_src=module_src, conv_clamp=conv_clamp,
                                      weight_gain=1 / np.sqrt(rgb.weight.shape[1]))
        blocks[f"b{r}"] = _Persistent("SynthesisBlock", {"const": block.const} if r == 4 else {},
                                      {"resample_filter": kernel}, layers, module_src=module_src, resolution=r,
                                      architecture="skip", is_last=r == gen.resolution, use_fp16=False)
    synthesis = _Persistent("SynthesisNetwork", (), (), blocks, module_src=module_src, w_dim=gen.w_dim,
                            img_resolution=gen.resolution, img_channels=3, num_fp16_res=0)
    mapping = _Persistent("MappingNetwork", (), {"w_avg": gen.w_avg},
                          {f"fc{i}": fc(layer, lr_mul, "lrelu") for i, layer in enumerate(gen.mapping_layers)},
                          module_src=module_src, z_dim=gen.z_dim, c_dim=c_dim, w_dim=gen.w_dim,
                          num_ws=gen.num_ws, num_layers=len(gen.mapping_layers), w_avg_beta=0.995)
    return _Persistent("Generator", (), (), {"synthesis": synthesis, "mapping": mapping}, module_src=module_src,
                       z_dim=gen.z_dim, c_dim=c_dim, w_dim=gen.w_dim, img_resolution=gen.resolution,
                       img_channels=3, num_ws=gen.num_ws)


def ada_pickle(gen: Generator, **kwargs) -> bytes:
    """A ``network-snapshot.pkl`` look-alike: ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}``."""
    data = {"G": ada_generator_object(gen, **kwargs), "D": None, "G_ema": ada_generator_object(gen, **kwargs),
            "augment_pipe": _AugmentPipe(), "training_set_kwargs": _EasyDict(path="ffhq.zip", resolution=16)}
    buf = io.BytesIO()
    _AdaPickler(buf, protocol=4).dump(data)
    return buf.getvalue()


# --------------------------------------------------------------------------- stylegan2-ada loader


def test_ada_fixture_classes_are_not_importable(gen16):
    data = ada_pickle(gen16)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(data)


def test_ada_pickle_loads_into_identical_generator(gen16, tmp_path):
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(ada_pickle(gen16))
    loaded = Generator.from_stylegan2_ada(path).eval()
    assert loaded.widths == gen16.widths and loaded.config["conv_clamp"] is None
    assert loaded.config["mapping_lr_mul"] == 0.01 and loaded.config["w_avg_beta"] == 0.995
    assert torch.equal(loaded.w_avg, gen16.w_avg)
    z = torch.randn(2, 16)
    assert torch.equal(loaded(z, truncation_psi=0.6, noise="const"), gen16(z, truncation_psi=0.6, noise="const"))


def test_ada_attributes_configure_the_model(gen16):
    loaded = Generator.from_stylegan2_ada(io.BytesIO(ada_pickle(gen16, conv_clamp=0.05, lr_mul=0.02)))
    assert loaded.config["conv_clamp"] == 0.05 and loaded.config["mapping_lr_mul"] == 0.02
    out = loaded.synthesis(torch.randn(1, gen16.num_ws, 16), noise="const")
    assert out.abs().max() > 0.05  # skip sum of clamped toRGB outputs: up to 3 * 0.05
    assert out.abs().max() <= 3 * 0.05 * 1.0001
    with pytest.raises(ValueError, match="conv_clamp=1.0 was requested but the checkpoint has conv_clamp=0.05"):
        Generator.from_stylegan2_ada(io.BytesIO(ada_pickle(gen16, conv_clamp=0.05)), conv_clamp=1.0)


def test_ada_and_rosinality_tables_agree(ros):
    """A rosinality g_ema converted with the ada -> rosinality correspondence used by the community
    (export_weights.py) gives the same model through either loader."""
    sd, latent_avg = ros
    ada = {"mapping.w_avg": latent_avg}
    for i in range(2):
        ada[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        ada[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]

    def conv(nv, ros_name, noise_idx):
        ada[f"{nv}.weight"] = sd[f"{ros_name}.conv.weight"][0]
        ada[f"{nv}.bias"] = sd[f"{ros_name}.activate.bias"]
        ada[f"{nv}.affine.weight"] = sd[f"{ros_name}.conv.modulation.weight"]
        ada[f"{nv}.affine.bias"] = sd[f"{ros_name}.conv.modulation.bias"]
        ada[f"{nv}.noise_strength"] = sd[f"{ros_name}.noise.weight"][0]
        ada[f"{nv}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
        ada[f"{nv}.resample_filter"] = _make_kernel()

    def torgb(nv, ros_name):
        ada[f"{nv}.torgb.weight"] = sd[f"{ros_name}.conv.weight"][0]
        ada[f"{nv}.torgb.bias"] = sd[f"{ros_name}.bias"].flatten()
        ada[f"{nv}.torgb.affine.weight"] = sd[f"{ros_name}.conv.modulation.weight"]
        ada[f"{nv}.torgb.affine.bias"] = sd[f"{ros_name}.conv.modulation.bias"]
        ada[f"{nv}.resample_filter"] = _make_kernel()

    ada["synthesis.b4.const"] = sd["input.input"][0]
    conv("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4", "to_rgb1")
    for i, r in enumerate((8, 16), start=1):
        conv(f"synthesis.b{r}.conv0", f"convs.{2 * i - 2}", 2 * i - 1)
        conv(f"synthesis.b{r}.conv1", f"convs.{2 * i - 1}", 2 * i)
        torgb(f"synthesis.b{r}", f"to_rgbs.{i - 1}")
    from_ada = Generator.from_stylegan2_ada_state_dict(ada)
    from_ros = Generator.from_rosinality(sd, latent_avg)
    for (k1, v1), (k2, v2) in zip(from_ada.state_dict().items(), from_ros.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    with pytest.raises(ValueError, match=r"missing \[synthesis\.b16\.torgb\.bias\]"):
        Generator.from_stylegan2_ada_state_dict({k: v for k, v in ada.items() if k != "synthesis.b16.torgb.bias"})
    with pytest.raises(ValueError, match="conditional"):
        Generator.from_stylegan2_ada_state_dict({**ada, "mapping.embed.weight": torch.zeros(32, 4)})
    with pytest.raises(ValueError, match="resample filter"):
        Generator.from_stylegan2_ada_state_dict({**ada, "synthesis.b8.resample_filter": torch.ones(4, 4)})


def test_ada_errors(gen16):
    with pytest.raises(ValueError, match="conditional"):
        Generator.from_stylegan2_ada(io.BytesIO(ada_pickle(gen16, c_dim=10)))
    with pytest.raises(ValueError, match="no.*'G_ema'|with 'G_ema'"):
        buf = io.BytesIO()
        _AdaPickler(buf, protocol=4).dump((ada_generator_object(gen16),))  # TF-era tuple layout
        Generator.from_stylegan2_ada(io.BytesIO(buf.getvalue()))
    with pytest.raises(ValueError, match="not a pickled stylegan2-ada Generator"):
        Generator.from_stylegan2_ada(io.BytesIO(ada_pickle(gen16)), network="D")


# --------------------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    for payload in (_Evil(os.system, f"touch {marker}"), {"G_ema": [_Evil(os.system, f"touch {marker}")]}):
        data = pickle.dumps(payload)
        with pytest.raises(UnsafePickleError, match=r"refusing to load global (posix|nt|os)\.system"):
            restricted_load(io.BytesIO(data))
    assert not marker.exists()
    for func in (eval, exec, getattr):
        with pytest.raises(UnsafePickleError, match=f"builtins.{func.__name__}"):
            restricted_load(io.BytesIO(pickle.dumps(_Evil(func, "1"))))


def test_persistent_source_is_never_executed_and_stubs_are_inert(gen16, tmp_path):
    marker = tmp_path / "exec_ran"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    data = restricted_load(io.BytesIO(ada_pickle(gen16, module_src=src)))
    assert not marker.exists()
    g_ema = data["G_ema"]
    assert isinstance(g_ema, PersistentStub) and g_ema.class_name == "Generator"
    assert not hasattr(g_ema, "module_src")
    kwargs, pipe = data["training_set_kwargs"], data["augment_pipe"]
    assert isinstance(kwargs, ObjectStub) and kwargs.pickled_name == "dnnlib.util.EasyDict"
    assert dict(kwargs) == {"path": "ffhq.zip", "resolution": 16}
    assert isinstance(pipe, ObjectStub) and pipe.pickled_name == "training.augment.AugmentPipe"
    assert pipe.state["xflip"] == 1.0
    tensors, attrs = module_tensors(g_ema)
    assert torch.equal(tensors["synthesis.b8.conv0.weight"], gen16.blocks[1].conv0.weight)
    assert attrs["synthesis.b8.conv0"]["up"] == 2 and attrs["mapping.fc1"]["bias_gain"] == 0.01
    assert attrs["mapping.fc1"]["weight_gain"] == np.float64(0.01) / np.sqrt(16)  # numpy scalars rebuilt
    with pytest.raises(ValueError, match="not a pickled torch module"):
        module_tensors(pipe)
