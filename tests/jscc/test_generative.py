"""InverseJSCC (DeepJSCC + StyleGAN2 inversion) and GenerativeJSCC (encoder -> W+ head -> StyleGAN2),
with a tiny random StyleGAN2 prior (16x16, 32 channels, w_dim 32)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import experiments.train as train_cli
import jscc.metrics as M
from channels import AWGN
from jscc.checkpoint import FORMAT, load, model_checkpoint, save_model
from jscc.models.deepjscc import DeepJSCC
from jscc.models.generative import GenerativeJSCC, InverseJSCC, canonical_generator_config
from jscc.models.stylegan2 import Discriminator, Generator
from jscc.system import JSCCSystem

G16 = dict(resolution=16, w_dim=32, n_mapping=2, channel_max=32)
SIZE = (16, 16)


def _prior(seed: int = 0, **overrides) -> dict:
    torch.manual_seed(seed)
    gen = Generator(**{**G16, **overrides})
    with torch.no_grad():
        gen.w_avg.normal_(0, 0.3)
        for block in gen.blocks:  # keep images mostly inside [-1, 1] (a random prior saturates otherwise)
            block.to_rgb.weight.mul_(0.3)
        for conv in gen.styled_convs():  # trained priors use their noise inputs (strength starts at 0)
            conv.noise_strength.fill_(0.2)
    return {"format": FORMAT, "model": "stylegan2", "config": dict(gen.config), "state_dict": gen.state_dict()}


@pytest.fixture(scope="module")
def prior():
    return _prior()


@pytest.fixture(scope="module")
def x(smooth_images):
    return smooth_images(2, 16, 16, seed=3)


def _inverse(prior, **kw) -> InverseJSCC:
    torch.manual_seed(1)
    model = InverseJSCC(c=8, generator=G16, **{"steps": 15, "lr": 0.05, **kw})
    model.warm_start(prior)
    return model.eval()


# --------------------------------------------------------------------------- InverseJSCC


def test_inverse_channel_uses_and_config(prior):
    model = _inverse(prior)
    base = DeepJSCC(c=8)
    assert model.channel_uses(16, 16) == base.channel_uses(16, 16) == 64
    assert model.bandwidth_ratio(16, 16) == base.bandwidth_ratio(16, 16) == pytest.approx(1 / 12)
    assert json.loads(json.dumps(model.config)) == model.config
    for key in ("steps", "lr", "alpha", "beta", "perceptual", "latent_weight", "consistency_weight"):
        assert key in model.config
    assert model.config["generator"] == canonical_generator_config(prior["config"])
    assert InverseJSCC.from_bandwidth_ratio("1/6", generator=G16).config["c"] == 16


def test_inverse_lowers_objective_under_no_grad(prior, x):
    model = _inverse(prior, steps=25, lr=0.1)
    system = JSCCSystem(model, AWGN(snr_db=10))
    with torch.no_grad():
        out = system(x, 10.0, generator=torch.Generator().manual_seed(0))
    x_hat = out["x_hat"]
    assert x_hat.shape == x.shape and not x_hat.requires_grad
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    trace = model.last_inversion["objective"]
    assert trace.shape == (26, 2)
    assert (trace[-1] < 0.7 * trace[0]).all(), trace[[0, -1]]
    base = model.base.decode(out["y"], SIZE)
    torch.testing.assert_close(model.last_inversion["base"], base)
    # the objective measured at the returned image: alpha*MSE + beta*(1-SSIM) + latent term >= data terms
    data = F.mse_loss(x_hat, base, reduction="none").flatten(1).mean(1) + 1 - M.ssim(x_hat, base)
    assert (trace[-1] >= data - 1e-5).all() and (trace[-1] <= data + 0.05).all()


def test_inverse_deterministic_batch_independent_and_inference_mode(prior, x):
    model = _inverse(prior)
    y = model.encode(x).detach()
    a, base = model.decode(y, SIZE, return_base=True)
    b = model.decode(y, SIZE)
    assert torch.equal(a, b)
    torch.testing.assert_close(base, model.base.decode(y, SIZE))
    torch.testing.assert_close(model.decode(y[1:], SIZE), a[1:], atol=1e-4, rtol=0)
    with torch.inference_mode():
        c = model.decode(y, SIZE)
    torch.testing.assert_close(c, a)


def test_inverse_consistency_term_and_noise(prior, x):
    y = _inverse(prior).encode(x).detach()
    plain = _inverse(prior, steps=0)
    plain.decode(y, SIZE)
    weighted = _inverse(prior, steps=0, consistency_weight=0.5)
    image = weighted.decode(y, SIZE)
    from channels.power import power_normalize

    z = power_normalize(weighted.base.encode(image))
    extra = 0.5 * (y - z).abs().square().mean(-1)
    torch.testing.assert_close(weighted.last_inversion["objective"][0], plain.last_inversion["objective"][0] + extra)
    noisy = _inverse(prior, steps=10, consistency_weight=0.5, optimize_noise=True)
    noisy.decode(y, SIZE)
    trace = noisy.last_inversion["objective"]
    assert (trace[-1] < trace[0]).all()


def test_inverse_warm_start_and_errors(prior, tmp_path, x):
    model = _inverse(prior)
    torch.manual_seed(5)
    base = DeepJSCC(c=8)
    base_ckpt = model_checkpoint(base)
    model.warm_start(base_ckpt)
    assert torch.equal(model.base.encoder[0].weight, base.encoder[0].weight)
    assert torch.equal(model.generator.blocks[0].const, prior["state_dict"]["blocks.0.const"])
    with pytest.raises(ValueError, match="differs from this base"):
        model.warm_start(model_checkpoint(DeepJSCC(c=16)))
    with pytest.raises(ValueError, match="w_dim"):
        model.warm_start(_prior(w_dim=16))
    with pytest.raises(ValueError, match="not 'adjscc'"):
        model.warm_start({**base_ckpt, "model": "adjscc"})
    bad = {**prior, "state_dict": {k: v for k, v in prior["state_dict"].items() if k != "w_avg"}}
    with pytest.raises(ValueError, match="do not match"):
        model.warm_start(bad)
    save_model(base, tmp_path / "base.pt")
    torch.save(prior, tmp_path / "prior.pt")
    assembled = InverseJSCC.from_checkpoints(tmp_path / "base.pt", tmp_path / "prior.pt", steps=3, beta=0.5)
    assert assembled.config["beta"] == 0.5 and assembled.config["steps"] == 3
    assert torch.equal(assembled.base.decoder[0].weight, base.decoder[0].weight)
    save_model(assembled, tmp_path / "inv.pt")
    reloaded = load(tmp_path / "inv.pt")
    y = assembled.encode(x).detach()
    torch.testing.assert_close(reloaded.decode(y, SIZE), assembled.eval().decode(y, SIZE))
    with pytest.raises(ValueError, match="16x16"):
        model.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match="not trained end to end"):
        model.loss({"x_hat": x}, x)
    with pytest.raises(ValueError, match="prior is required"):
        InverseJSCC(c=8)


# --------------------------------------------------------------------------- GenerativeJSCC


def _generative(prior=None, **kw) -> GenerativeJSCC:
    torch.manual_seed(2)
    model = GenerativeJSCC(c=8, generator=G16, **{"head_width": 16, **kw})
    if prior is not None:
        model.warm_start(prior)
    return model


def test_generative_shapes_and_rebuild(prior, x, tmp_path):
    model = _generative(prior)
    assert model.channel_uses(16, 16) == 64 and model.bandwidth_ratio(16, 16) == pytest.approx(1 / 12)
    out = JSCCSystem(model, AWGN(snr_db=5))(x, 5.0, generator=torch.Generator().manual_seed(0))
    assert out["z"].shape == (2, 64) and out["z"].dtype == torch.complex64
    assert out["x_hat"].shape == x.shape and 0 <= out["x_hat"].min() and out["x_hat"].max() <= 1
    ws, noises = model.latents(out["y"], SIZE)
    assert ws.shape == (2, model.generator.num_ws, 32) and noises is None
    assert json.loads(json.dumps(model.config)) == model.config
    assert model.config["perceptual"] == "ssim" and model.perceptual_name == "ssim"
    save_model(model, tmp_path / "gen.pt")
    reloaded = load(tmp_path / "gen.pt")
    torch.testing.assert_close(reloaded.decode(out["y"], SIZE), model.decode(out["y"], SIZE))
    assert GenerativeJSCC.from_bandwidth_ratio("1/6", generator=G16).config["c"] == 16


def test_generative_gradients_and_loss(prior, x):
    model = _generative(prior, alpha=0.7, beta=0.3, predict_noise=True)
    out = JSCCSystem(model, AWGN(snr_db=5))(x, 5.0)
    loss = model.loss(out, x)
    expected = 0.7 * F.mse_loss(out["x_hat"], x) + 0.3 * (1 - M.ssim(out["x_hat"], x)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for name in ("encoder.0.weight", "head.trunk.0.weight", "head.linear.weight", "head.noise.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(not p.requires_grad and p.grad is None for p in model.generator.parameters())
    tuned = _generative(prior, finetune_generator=True)
    tuned.loss(JSCCSystem(tuned, AWGN(snr_db=5))(x, 5.0), x).backward()
    assert tuned.generator.blocks[-1].to_rgb.weight.grad.abs().sum() > 0


def test_generative_warm_start(prior, tmp_path):
    model = _generative()
    model.warm_start(prior)
    for key, value in prior["state_dict"].items():
        assert torch.equal(model.generator.state_dict()[key], value), key
    torch.manual_seed(7)
    base = DeepJSCC(c=8)
    model.warm_start(model_checkpoint(base))
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(), base.encoder.state_dict().values()))
    finetune = _generative(beta=0.5)
    finetune.warm_start(model_checkpoint(model))  # same architecture, other loss weights
    assert torch.equal(finetune.head.linear.weight, model.head.linear.weight)
    torch.save(prior, tmp_path / "prior.pt")
    from_path = GenerativeJSCC(c=8, generator=str(tmp_path / "prior.pt"))
    assert from_path.config["generator"] == model.config["generator"]
    assert torch.equal(from_path.generator.w_avg, prior["state_dict"]["w_avg"])
    with pytest.raises(ValueError, match="channel_max"):
        model.warm_start(_prior(channel_max=16))
    with pytest.raises(ValueError, match="c=16"):
        model.warm_start(model_checkpoint(DeepJSCC(c=16)))
    with pytest.raises(ValueError, match="architecture keys \\['head_width'\\]"):
        model.warm_start(model_checkpoint(_generative(head_width=8)))
    with pytest.raises(ValueError, match="not 'deepjscc-f'"):
        model.warm_start({"model": "deepjscc-f", "config": {}, "state_dict": {}})


def test_generative_bad_config(x):
    with pytest.raises(ValueError, match="prior is required"):
        GenerativeJSCC(c=8)
    with pytest.raises(ValueError, match="unknown Generator arguments \\['depth'\\]"):
        GenerativeJSCC(c=8, generator={**G16, "depth": 3})
    with pytest.raises(ValueError, match="needs 'resolution'"):
        GenerativeJSCC(c=8, generator={"w_dim": 32})
    with pytest.raises(ValueError, match="unknown perceptual distance"):
        GenerativeJSCC(c=8, generator=G16, perceptual="lpips")
    with pytest.raises(ValueError, match="needs perceptual_args"):
        GenerativeJSCC(c=8, generator=G16, perceptual="disc-features")
    with pytest.raises(ValueError, match="both 0"):
        GenerativeJSCC(c=8, generator=G16, alpha=0, beta=0)
    model = GenerativeJSCC(c=8, generator=G16)
    with pytest.raises(ValueError, match="16x16"):
        model.encode(torch.rand(1, 3, 32, 32))
    y = model.encode(x)
    with pytest.raises(ValueError, match="no h side input"):
        model.decode(y, SIZE, h=torch.ones(2, 1, dtype=torch.complex64))


def test_generative_disc_features_and_lpips_offline(x, tmp_path):
    torch.manual_seed(0)
    disc = Discriminator(16, channel_base=256, channel_max=16)
    torch.save({"config": disc.config, "state_dict": disc.state_dict()}, tmp_path / "d.pt")
    model = GenerativeJSCC(c=8, generator=G16, perceptual="disc-features",
                           perceptual_args={"discriminator": str(tmp_path / "d.pt")})
    assert model.perceptual_name.startswith("disc-features:")
    assert model.loss({"x_hat": x.flip(0)}, x) > model.loss({"x_hat": x}, x) == 0
    assert not any(k.startswith("discriminator") for k in model.state_dict())
    lp = GenerativeJSCC(c=8, generator=G16, perceptual="lpips-alex")  # real LPIPS, offline
    assert lp.perceptual_name == "lpips-alex"
    with pytest.raises(ValueError, match="LPIPS-alex is undefined for 16x16 images"):  # AlexNet needs >= 31 px
        lp.loss({"x_hat": x}, x)


def test_train_cli_generative_one_epoch(prior, tmp_path, write_pngs):
    write_pngs(tmp_path / "imgs", [SIZE] * 10, seed=4)
    torch.save(prior, tmp_path / "prior.pt")
    out = tmp_path / "run"
    argv = ["--model", "generative-jscc", "--model-arg", f"generator={json.dumps(G16)}", "--model-arg", "head_width=8",
            "--model-arg", "beta=0.5", "--init", str(tmp_path / "prior.pt"), "--data", str(tmp_path / "imgs"),
            "--epochs", "1", "--batch-size", "4", "--val-size", "2", "--quiet", "--threads", "1", "--out", str(out)]
    assert train_cli.main(argv) == 0
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["model"] == "generative-jscc" and ckpt["config"]["beta"] == 0.5
    assert ckpt["train"]["init"]["checkpoint"] == str(tmp_path / "prior.pt")
    for key, value in prior["state_dict"].items():  # the frozen prior is unchanged by training
        assert torch.equal(ckpt["state_dict"][f"generator.{key}"], value), key
    model = load(out / "best.pt")
    assert model.config == ckpt["config"] and model.channel_uses(16, 16) == 64
