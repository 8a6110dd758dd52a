"""StyleGAN2 prior training: run directory, exact resume, R1, EMA, strict loading, GAN inversion.

Everything runs at 8x8 with widths 16/8 (a training step takes milliseconds)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import jscc.priors as jp
import jscc.zoo
from jscc.checkpoint import atomic_torch_save, read_checkpoint
from jscc.data import ImageSet
from jscc.metrics import psnr
from jscc.models.stylegan2 import Discriminator, Generator, to_unit_range
from jscc.models.generative import canonical_generator_config, read_prior_checkpoint
from jscc.perceptual import build_perceptual
from jscc.priors import (PriorTrainConfig, PriorTrainer, ema_beta, invert, load_prior, prior_checkpoint,
                         projection_psnr, r1_penalty, train_prior, update_ema)
from jscc.results import sha256_file

TINY = dict(resolution=8, channel_base=64, channel_max=16, w_dim=16, n_mapping=2, batch_size=4, r1_interval=2,
            n_samples=4, val_steps=3)
GEN = dict(w_dim=16, n_mapping=2, channel_base=64, channel_max=16)


def _cfg(**kw):
    return PriorTrainConfig(**{**TINY, **kw})


@pytest.fixture
def sets(smooth_uint8):
    return ImageSet(smooth_uint8(16, 8, 8, seed=1), "tiny-train"), ImageSet(smooth_uint8(4, 8, 8, seed=2), "tiny-val")


def _same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _randomised_generator(resolution=8, seed=0) -> Generator:
    """A tiny generator with non-trivial noise strengths and biases (they start at 0)."""
    torch.manual_seed(seed)
    gen = Generator(resolution, **GEN)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in gen.state_dict().items():
            if name.endswith(("noise_strength", ".bias")) or name == "w_avg":
                t.copy_(0.3 * torch.randn(t.shape, generator=g))
            if name.endswith("affine.bias"):
                t.add_(1.0)
    return gen.eval()


# --------------------------------------------------------------------------- training runs


def test_one_epoch_writes_run_directory(sets, tmp_path):
    train_set, val_set = sets
    history = train_prior(train_set, _cfg(epochs=1, extra={"dataset": "tiny"}), tmp_path, progress=False,
                          val_set=val_set)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"last.pt", "prior.pt", "best.pt", "log.csv", "history.json", "samples"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert (tmp_path / "samples" / "epoch_0001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (rec,) = history
    assert rec["epoch"] == 1 and rec["steps"] == 4 and rec["kimg"] == 16 / 1000
    assert rec["r1"] > 0 and rec["pl"] is None  # R1 ran (steps 0, 2); path length is off by default
    assert rec["val_psnr"] > 0 and rec["images_per_s"] > 0
    assert json.loads((tmp_path / "history.json").read_text()) == history
    with open(tmp_path / "log.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["loss_D"]) == pytest.approx(rec["loss_D"], rel=1e-12)

    last = read_checkpoint(tmp_path / "last.pt")
    assert {"G", "D", "G_ema", "optimizer_G", "optimizer_D", "rng", "history", "step", "nimg"} <= set(last)
    assert last["epoch"] == 1 and last["step"] == 4 and last["nimg"] == 16
    prior = read_checkpoint(tmp_path / "prior.pt")
    assert prior["model"] == "stylegan2" and set(prior) == {"format", "model", "config", "state_dict", "train",
                                                             "metrics", "discriminator"}
    # the discriminator of the same step rides along (disc-features from the shipped file); last.pt keeps one copy
    assert "discriminator" not in last
    _same_state(prior["discriminator"]["state_dict"], last["D"])
    assert prior["discriminator"]["config"] == last["discriminator_config"]
    assert build_perceptual("disc-features", discriminator=str(tmp_path / "prior.pt")).name == \
        build_perceptual("disc-features", discriminator=str(tmp_path / "last.pt")).name
    assert prior["train"]["dataset"] == "tiny" and prior["train"]["epochs_done"] == 1
    assert prior["metrics"]["projection_psnr"] == rec["val_psnr"]
    gen = load_prior(tmp_path / "prior.pt")
    assert not gen.training and gen.config == prior["config"]
    _same_state(gen.state_dict(), last["G_ema"])


def test_interrupted_and_resumed_equals_uninterrupted(sets, tmp_path, monkeypatch):
    """Every random path on: style mixing, path length, R1, flips."""
    train_set, _ = sets
    cfg = dict(epochs=2, pl_weight=2.0, pl_interval=2, mirror=True, ema_kimg=0.01)
    hist_a = train_prior(train_set, _cfg(**cfg), tmp_path / "a", progress=False)
    final_a = read_checkpoint(tmp_path / "a" / "last.pt")

    original = jp.write_logs

    def interrupt(out, history):
        assert read_checkpoint(Path(out) / "last.pt")["epoch"] == len(history)  # checkpoint written first
        raise KeyboardInterrupt

    monkeypatch.setattr(jp, "write_logs", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_prior(train_set, _cfg(**cfg), tmp_path / "b", progress=False)
    monkeypatch.setattr(jp, "write_logs", original)
    assert read_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1

    hist_b = train_prior(train_set, _cfg(**cfg), tmp_path / "b", resume=True, progress=False)
    final_b = read_checkpoint(tmp_path / "b" / "last.pt")
    for key in ("G_ema", "G", "D", "state_dict"):
        _same_state(final_a[key], final_b[key])
    assert torch.equal(final_a["pl_mean"], final_b["pl_mean"]) and final_a["pl_mean"] > 0
    for key in ("loss_G", "loss_D", "r1", "pl", "d_real", "d_fake"):
        assert [h[key] for h in hist_a] == [h[key] for h in hist_b], key
    assert final_b["epoch"] == 2 and final_b["nimg"] == 32
    # resuming with other options is an error; the number of epochs may change
    with pytest.raises(ValueError, match="cannot resume.*r1_gamma"):
        train_prior(train_set, _cfg(**{**cfg, "r1_gamma": 1.0}), tmp_path / "b", resume=True, progress=False)


def test_init_from_a_trained_prior_continues_its_weights_and_kimg(sets, tmp_path, monkeypatch):
    train_set, _ = sets
    train_prior(train_set, _cfg(epochs=1), tmp_path / "a", progress=False)
    first = read_checkpoint(tmp_path / "a" / "prior.pt")
    seen = {}
    original = PriorTrainer.step

    def spy(self, reals, generator):  # the weights the first step of the new run starts from
        if not seen:
            seen.update(G=jp._cpu(self.G.state_dict()), G_ema=jp._cpu(self.G_ema.state_dict()),
                        D=jp._cpu(self.D.state_dict()), nimg=self.nimg)
        return original(self, reals, generator)

    monkeypatch.setattr(PriorTrainer, "step", spy)
    (rec,) = train_prior(train_set, _cfg(epochs=1, seed=1), tmp_path / "b", progress=False,
                         init_from=tmp_path / "a" / "prior.pt")
    _same_state(seen["G"], first["state_dict"])
    _same_state(seen["G_ema"], first["state_dict"])
    _same_state(seen["D"], first["discriminator"]["state_dict"])
    assert seen["nimg"] == 16 and rec["kimg"] == 32 / 1000  # the image counter goes on
    info = read_checkpoint(tmp_path / "b" / "prior.pt")["train"]["init_from"]
    assert info == {"path": str(tmp_path / "a" / "prior.pt"), "kimg": 16 / 1000,
                    "sha256": sha256_file(tmp_path / "a" / "prior.pt")}
    monkeypatch.setattr(PriorTrainer, "step", original)
    train_prior(train_set, _cfg(epochs=2, seed=1), tmp_path / "b", resume=True, progress=False)
    assert read_checkpoint(tmp_path / "b" / "prior.pt")["train"]["init_from"] == info  # kept on resume
    with pytest.raises(ValueError, match="its generator has channel_max=16, this run channel_max=8"):
        train_prior(train_set, _cfg(epochs=1, channel_max=8), tmp_path / "c", progress=False,
                    init_from=tmp_path / "a" / "prior.pt")
    no_disc = {k: v for k, v in first.items() if k != "discriminator"}
    atomic_torch_save(no_disc, tmp_path / "g_only.pt")
    with pytest.raises(ValueError, match="no discriminator"):
        train_prior(train_set, _cfg(epochs=1), tmp_path / "d", progress=False, init_from=tmp_path / "g_only.pt")
    with pytest.raises(ValueError, match="neither a checkpoint file nor a zoo prior"):
        train_prior(train_set, _cfg(epochs=1), tmp_path / "e", progress=False, init_from="no-such-prior")


def test_r1_penalty_arithmetic_and_gradient_reaches_d():
    class Linear(nn.Module):  # D(x) = <w, x>: grad_x = w, R1 = |w|^2 for every example
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0)))

        def forward(self, x):
            return (x * self.w).sum(dim=(1, 2, 3))

    lin = Linear()
    reals = torch.rand(4, 3, 8, 8) * 2 - 1
    penalty, logits = r1_penalty(lin, reals)
    assert torch.allclose(penalty, lin.w.square().sum().expand(4))
    penalty.sum().backward()
    assert torch.allclose(lin.w.grad, 2 * 4 * lin.w.detach())  # d/dw 4 |w|^2

    torch.manual_seed(0)
    disc = Discriminator(8, channel_base=64, channel_max=16)
    penalty, logits = r1_penalty(disc, reals)
    assert penalty.shape == (4,) and logits.shape == (4,) and (penalty > 0).all()
    penalty.mean().backward()
    # every weight gets a gradient (biases behind a leaky ReLU do not: its second derivative is 0)
    weights = {n: p.grad for n, p in disc.named_parameters() if n.endswith("weight")}
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in weights.values())


def test_ema_beta_values():
    assert ema_beta(32, 10.0, nimg=10**6) == 0.5 ** (32 / 10_000)  # half-life 10k images
    assert ema_beta(32, 10.0, nimg=320, ema_rampup=0.05) == 0.5 ** (32 / 16)  # ramp-up: 0.05 * 320 images
    assert ema_beta(32, 10.0, nimg=320, ema_rampup=None) == 0.5 ** (32 / 10_000)
    assert ema_beta(32, 0.0, nimg=320) == 0.0
    # after the half-life in images, the old weights weigh one half
    beta = ema_beta(50, 1.0, nimg=10**6)
    assert beta ** (1000 / 50) == pytest.approx(0.5, rel=1e-12)


def test_update_ema_arithmetic_and_one_training_step(smooth_images):
    ema, model = nn.Linear(2, 2), nn.Linear(2, 2)
    ema.register_buffer("b", torch.zeros(2))
    model.register_buffer("b", torch.ones(2))
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    update_ema(ema, model, 0.75)
    assert torch.allclose(ema.weight, 0.25 * model.weight + 0.75 * before["weight"])
    assert torch.equal(ema.b, model.b)

    cfg = _cfg(ema_kimg=0.01, ema_rampup=None)  # half-life 10 images: beta = 0.5 ** (4 / 10)
    trainer = PriorTrainer(cfg)
    g0 = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    _same_state(trainer.G_ema.state_dict(), g0)
    stats = trainer.step(smooth_images(4, 8, 8), torch.Generator().manual_seed(0))
    assert stats["ema_beta"] == 0.5 ** 0.4
    g1 = trainer.G.state_dict()
    for name, value in trainer.G_ema.state_dict().items():
        if name in dict(trainer.G.named_parameters()):
            assert torch.allclose(value, g1[name] + 0.5 ** 0.4 * (g0[name] - g1[name]), atol=1e-7), name
        else:  # buffers (w_avg moved in the G step, noise maps) are copied
            assert torch.equal(value, g1[name]), name
    assert not torch.equal(g1["w_avg"], g0["w_avg"])


def test_config_errors():
    for kw in ({"batch_size": 6}, {"lr": 0.0}, {"style_mixing_prob": 1.5}, {"betas": (0.0, 1.0)},
               {"images_per_epoch": 2}, {"ema_rampup": 0.0}):
        with pytest.raises(ValueError):
            _cfg(**kw)


def test_train_set_of_the_wrong_size_is_an_error(smooth_uint8, tmp_path):
    with pytest.raises(ValueError, match="crop"):
        train_prior(ImageSet(smooth_uint8(8, 16, 16), "big"), _cfg(), tmp_path, progress=False)


# --------------------------------------------------------------------------- loading


def test_load_prior_is_strict_and_errors_are_clear(tmp_path, monkeypatch):
    gen = _randomised_generator()
    ckpt = prior_checkpoint(gen, train={"dataset": "x"})
    atomic_torch_save(ckpt, tmp_path / "prior.pt")
    loaded = load_prior(tmp_path / "prior.pt")
    _same_state(loaded.state_dict(), gen.state_dict())
    assert not loaded.training and loaded.train_info == {"dataset": "x"}

    bad = {**ckpt, "state_dict": {k: v for k, v in ckpt["state_dict"].items() if k != "w_avg"}}
    atomic_torch_save(bad, tmp_path / "missing.pt")
    with pytest.raises(RuntimeError, match="w_avg"):
        load_prior(tmp_path / "missing.pt")
    atomic_torch_save({**ckpt, "config": {**ckpt["config"], "w_dim": 32}}, tmp_path / "shape.pt")
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_prior(tmp_path / "shape.pt")
    atomic_torch_save({**ckpt, "model": "deepjscc"}, tmp_path / "jscc.pt")
    with pytest.raises(ValueError, match="not a stylegan2 prior"):
        load_prior(tmp_path / "jscc.pt")
    torch.save(ckpt["state_dict"], tmp_path / "raw.pt")
    with pytest.raises(ValueError, match="raw state_dict"):
        load_prior(tmp_path / "raw.pt")

    with pytest.raises(ValueError, match="neither a checkpoint file nor a zoo prior"):
        load_prior("stylegan2-nonexistent")
    jscc_names = [n for n, e in jscc.zoo.ZOO.items() if e["model"] != "stylegan2"]
    if jscc_names:
        with pytest.raises(ValueError, match="not a stylegan2 prior"):
            load_prior(jscc_names[0])

    # a zoo entry of model "stylegan2" resolves to its verified weight file
    monkeypatch.setattr(jscc.zoo, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(jscc.zoo.ZOO, "stylegan2-test", {"model": "stylegan2", "config": ckpt["config"],
                                                         "file": "prior.pt", "sha256": sha256_file(tmp_path / "prior.pt")})
    _same_state(load_prior("stylegan2-test").state_dict(), gen.state_dict())
    with pytest.raises(ValueError, match="generator prior checkpoint has no discriminator"):  # resolved, no D inside
        build_perceptual("disc-features", discriminator="stylegan2-test")
    with pytest.raises(ValueError, match="neither a checkpoint file nor a zoo prior"):
        build_perceptual("disc-features", discriminator="stylegan2-nonexistent")
    assert canonical_generator_config(read_prior_checkpoint("stylegan2-test")["config"]) == \
        canonical_generator_config(ckpt["config"])


# --------------------------------------------------------------------------- inversion


def test_invert_reconstructs_an_image_of_the_prior_itself():
    gen = _randomised_generator(seed=3)
    with torch.no_grad():
        target = to_unit_range(gen(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), noise="const"))
    res = invert(gen, target, steps=40, lr=0.1)
    assert res["ws"].shape == (3, gen.num_ws, 16) and res["images"].shape == target.shape
    assert res["noise"] is None and len(res["loss_history"]) == 40
    start = psnr(invert(gen, target, steps=0)["images"], target)
    end = psnr(res["images"], target)
    assert (end > start + 3).all(), (start, end)  # measured here: about +12 dB
    assert torch.allclose(res["loss"], (res["images"] - target).square().flatten(1).mean(1))
    assert all(not p.requires_grad or p.grad is None for p in gen.parameters())  # weights untouched

    metric = projection_psnr(gen, target, steps=40, lr=0.1, batch_size=2)  # two batches
    assert metric["n_images"] == 3 and metric["psnr"] > metric["psnr_init"] + 3
    assert metric["psnr"] == pytest.approx(end.double().mean().item(), abs=0.05)


def test_invert_with_a_pluggable_loss_and_noise_optimisation():
    gen = _randomised_generator(seed=4)
    with torch.no_grad():
        target = to_unit_range(gen(torch.randn(2, 16, generator=torch.Generator().manual_seed(2)), noise="const"))
    pooled = {"means": target.mean(dim=(2, 3))}  # a target that is not an image: per-channel means

    def loss_fn(x_hat, tgt):
        return (x_hat.mean(dim=(2, 3)) - tgt["means"]).square().sum(1)

    res = invert(gen, pooled, steps=30, lr=0.1, loss_fn=loss_fn, batch_size=2, w_plus=False, optimize_noise=True)
    assert res["loss_history"][-1] < 0.1 * res["loss_history"][0]
    assert res["ws"].shape == (2, gen.num_ws, 16) and torch.equal(res["ws"][:, 0], res["ws"][:, -1])  # one w
    for n, r in zip(res["noise"], gen.noise_resolutions):
        assert n.shape == (2, 1, r, r)
        assert torch.allclose(n.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
        assert torch.allclose(n.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        invert(gen, pooled, steps=1, loss_fn=loss_fn)
    with pytest.raises(ValueError, match="prior makes"):
        invert(gen, torch.rand(1, 3, 16, 16), steps=1)
