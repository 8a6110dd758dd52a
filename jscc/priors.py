"""Generative image priors: train a StyleGAN2 on a CPU, load it, and measure it by GAN inversion.

The prior of InverseJSCC / GenerativeJSCC (Erdemir et al., JSAC 2023) is a StyleGAN2 generator
(:mod:`jscc.models.stylegan2`). This module trains one (the recipe of NVlabs stylegan2-ada-pytorch,
without adaptive augmentation), stores it as a project checkpoint, and scores it without FID
(offline) by how well it can reconstruct held-out images.

::

    reals x (B,3,R,R) in [0,1] ─► 2x-1 ─► D ─► softplus(-D(x)) ┐
    z ─► mapping ─► ws (style mixing) ─► G ─► fakes ─► D ─► softplus(D(G(z))) ┴► D loss (+ R1 every 16 steps)
                                             └──────► D ─► softplus(-D(G(z))) ──► G loss (+ path length every 4)
    G ─► exponential moving average ─► G_ema (the prior users load)

Training (:func:`train_prior`, one step = four phases in stylegan2-ada's order):

- ``Gmain``: non-saturating logistic loss ``softplus(-D(G(z)))``; ``w_avg`` tracked here.
- ``Greg`` (only with ``pl_weight > 0``, every ``pl_interval`` steps, on ``B // pl_batch_shrink``
  fakes): path-length penalty ``(|J^T y| - a)^2``, ``y ~ N(0, I) / sqrt(R^2)``, ``a`` an exponential
  moving mean (decay ``pl_decay``), times ``pl_weight * pl_interval``.
- ``Dmain``: ``softplus(D(G(z))) + softplus(-D(x))`` on fresh fakes.
- ``Dreg`` (every ``r1_interval`` steps): R1 ``gamma/2 * |grad_x D(x)|^2`` on reals, times ``r1_interval``.
- Lazy regularisation scales Adam as StyleGAN2 does: ``lr * c``, ``betas ** c``, ``c = I / (I + 1)``
  (D always; G only when the path-length term is on).
- ``G_ema``: ``beta = 0.5 ** (B / ema_nimg)``, ``ema_nimg = min(ema_kimg * 1000, nimg * ema_rampup)``
  (the half-life in images, ramped up over the first images); buffers are copied.

Every epoch ends with an atomic ``last.pt`` (G, D, G_ema, both optimizers, counters, RNG states,
history), ``prior.pt`` (G_ema in the project's checkpoint format, what :func:`load_prior` reads, with the
discriminator of the same step for the ``disc-features`` distance),
``best.pt`` (highest validation projection PSNR, when there is a validation set), a sample grid
``samples/epoch_NNNN.png`` and ``log.csv`` / ``history.json``. Data order, crops, flips, latents
and noise come from generators re-seeded from ``(seed, epoch)`` at each epoch start, so a resumed
run ends with the same weights as an uninterrupted one (on CPU, same thread count).

Quality: :func:`projection_psnr` inverts held-out images into W+ (Adam from ``w_avg``, MSE) and
reports the mean PSNR after a fixed step budget; :func:`invert` is the reusable optimiser loop with
a pluggable loss (InverseJSCC plugs in a channel-output loss).
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from jscc.checkpoint import FORMAT, atomic_torch_save, read_checkpoint
from jscc.data import ImageSet, iterate_batches
from jscc.metrics import check_images, psnr
from jscc.models.stylegan2 import Discriminator, Generator, from_unit_range
from jscc.results import sha256_file
from jscc.train import epoch_seed, write_logs
from jscc.zoo import PRIOR_MODEL, resolve_prior

__all__ = [
    "PRIOR_MODEL",
    "resolve_prior",
    "PriorTrainConfig",
    "PriorTrainer",
    "train_prior",
    "prior_checkpoint",
    "load_prior",
    "r1_penalty",
    "ema_beta",
    "update_ema",
    "invert",
    "projection_psnr",
    "mse_per_image",
    "save_image_grid",
]



# --------------------------------------------------------------------------- configuration


@dataclass
class PriorTrainConfig:
    """Options of one prior training run (all recorded in its checkpoints).

    Defaults: a CPU-sized 32x32 prior. Widths ``min(channel_base // r, channel_max)``:
    ``channel_base=1024, channel_max=128`` gives 128 channels at 4 and 8, 64 at 16, 32 at 32x32
    (G 0.75 M, D 0.87 M parameters). ``d_channel_base`` / ``d_channel_max``: the discriminator's
    (default: G's).

    ``r1_gamma`` 0.01 and ``n_mapping`` 2 follow stylegan2-ada's CIFAR-10 config; ``ema_kimg`` is the
    G_ema half-life in thousands of images (ramped up as ``nimg * ema_rampup``; None: no ramp-up);
    ``pl_weight`` 0 switches path-length regularisation off (StyleGAN2's FFHQ value is 2);
    ``style_mixing_prob`` 0 switches mixing off. ``images_per_epoch``: real images per epoch (default
    the training set; more cycles through it, fewer makes checkpoints more frequent); the budget is
    ``epochs * images_per_epoch`` images. ``mirror``: random horizontal flips of the reals.
    ``n_samples``: images in each epoch's sample grid (fixed latents). ``val_steps`` / ``val_lr``:
    the projection budget of the per-epoch validation PSNR (with a validation set).
    """

    resolution: int = 32
    channel_base: int = 1024
    channel_max: int = 128
    d_channel_base: int | None = None
    d_channel_max: int | None = None
    w_dim: int = 128
    n_mapping: int = 2
    mapping_lr_mul: float = 0.01
    mbstd_group_size: int = 4
    batch_size: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.01
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    style_mixing_prob: float = 0.9
    mirror: bool = False
    epochs: int = 10
    images_per_epoch: int | None = None
    seed: int = 0
    device: str = "cpu"
    n_samples: int = 64
    val_steps: int = 50
    val_lr: float = 0.1
    extra: dict = field(default_factory=dict)  # dataset names, command: recorded as-is

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        for name in ("epochs", "batch_size", "r1_interval", "pl_interval", "pl_batch_shrink", "n_samples",
                     "w_dim", "n_mapping", "mbstd_group_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_steps < 0:
            raise ValueError(f"val_steps must be >= 0, got {self.val_steps}")
        if self.images_per_epoch is not None and self.images_per_epoch < self.batch_size:
            raise ValueError(f"images_per_epoch ({self.images_per_epoch}) is less than one batch ({self.batch_size})")
        for name in ("lr", "val_lr", "mapping_lr_mul"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("r1_gamma", "pl_weight", "ema_kimg"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")
        if not 0 < self.pl_decay <= 1:
            raise ValueError(f"pl_decay must be in (0, 1], got {self.pl_decay}")
        if self.ema_rampup is not None and not self.ema_rampup > 0:
            raise ValueError(f"ema_rampup must be > 0 or None, got {self.ema_rampup}")
        g = min(self.mbstd_group_size, self.batch_size)
        if self.batch_size % g:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of the minibatch-stddev group "
                             f"size {g}")

    def generator_config(self) -> dict:
        return {"resolution": self.resolution, "w_dim": self.w_dim, "n_mapping": self.n_mapping,
                "channel_base": self.channel_base, "channel_max": self.channel_max,
                "mapping_lr_mul": self.mapping_lr_mul}

    def discriminator_config(self) -> dict:
        return {"resolution": self.resolution,
                "channel_base": self.channel_base if self.d_channel_base is None else self.d_channel_base,
                "channel_max": self.channel_max if self.d_channel_max is None else self.d_channel_max,
                "mbstd_group_size": self.mbstd_group_size}

    def record(self) -> dict:
        """Everything but ``extra``, JSON/weights_only friendly (``betas`` as a list)."""
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        out["betas"] = list(self.betas)
        return out


# --------------------------------------------------------------------------- losses and EMA


def r1_penalty(discriminator: torch.nn.Module, reals: Tensor) -> tuple[Tensor, Tensor]:
    """R1 gradient penalty (Mescheder et al. 2018) on real images.

    Args:
        discriminator: maps ``(B,3,R,R)`` in ``[-1, 1]`` to logits ``(B,)``.
        reals: float ``(B,3,R,R)`` in ``[-1, 1]``.

    Returns:
        ``penalty (B,) = |d sum(D(x)) / dx_b|^2`` (differentiable w.r.t. D's parameters: the
        gradient is built with ``create_graph``) and the logits ``(B,)``.
    """
    reals = reals.detach().requires_grad_(True)
    logits = discriminator(reals)
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)), logits


def ema_beta(batch_size: int, ema_kimg: float, nimg: int, ema_rampup: float | None = 0.05) -> float:
    """G_ema decay of one step of ``batch_size`` images after ``nimg`` images were seen (this step
    included): ``0.5 ** (batch_size / ema_nimg)``, half-life ``ema_nimg = ema_kimg * 1000`` images,
    capped at ``nimg * ema_rampup`` early on (stylegan2-ada's ramp-up). ``ema_kimg = 0``: beta 0
    (G_ema = G)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """``p_ema <- p + beta (p_ema - p)`` for every parameter; buffers (``w_avg``, noise) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


# --------------------------------------------------------------------------- the trainer


def _lazy(lr: float, betas: tuple[float, float], interval: int | None) -> dict:
    """Adam options under lazy regularisation every ``interval`` steps (None: not lazy)."""
    if interval is None:
        return {"lr": lr, "betas": betas}
    c = interval / (interval + 1)
    return {"lr": lr * c, "betas": (betas[0] ** c, betas[1] ** c)}


class PriorTrainer:
    """G, D, G_ema and their optimizers; :meth:`step` runs one StyleGAN2 training step.

    Models are built from ``cfg`` under ``torch.manual_seed(cfg.seed)`` (the caller's global RNG
    state is restored afterwards), so a seed fixes the initial weights.
    """

    def __init__(self, cfg: PriorTrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.G = Generator(**cfg.generator_config())
            self.D = Discriminator(**cfg.discriminator_config())
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        pl_on = cfg.pl_weight > 0
        self.opt_G = torch.optim.Adam(self.G.parameters(), eps=1e-8,
                                      **_lazy(cfg.lr, cfg.betas, cfg.pl_interval if pl_on else None))
        self.opt_D = torch.optim.Adam(self.D.parameters(), eps=1e-8,
                                      **_lazy(cfg.lr, cfg.betas, cfg.r1_interval if cfg.r1_gamma > 0 else None))
        self.step_count = 0  # training steps done
        self.nimg = 0  # real images shown
        self.pl_mean = torch.zeros((), device=self.device)

    # ---- latents

    def sample_ws(self, batch: int, generator: torch.Generator, update_w_avg: bool = False) -> Tensor:
        """``(batch, num_ws, w_dim)`` from fresh ``z``, with style mixing at one shared random cutoff
        with probability ``style_mixing_prob`` (the random numbers are drawn whether or not mixing
        happens, so the stream does not depend on the outcome)."""
        G = self.G
        z = torch.randn(batch, G.z_dim, generator=generator, device=self.device)
        ws = G.mapping(z, update_w_avg=update_w_avg).unsqueeze(1).repeat(1, G.num_ws, 1)
        if self.cfg.style_mixing_prob > 0:
            cutoff = int(torch.randint(1, G.num_ws, (), generator=generator, device=self.device))
            mix = float(torch.rand((), generator=generator, device=self.device)) < self.cfg.style_mixing_prob
            z2 = torch.randn(batch, G.z_dim, generator=generator, device=self.device)
            if mix:
                ws[:, cutoff:] = G.mapping(z2).unsqueeze(1)
        return ws

    # ---- one step

    def step(self, reals: Tensor, generator: torch.Generator) -> dict[str, float | None]:
        """One training step on real images ``(B,3,R,R)`` in ``[0, 1]``; latents and noise from
        ``generator``. Returns the losses, R1 / path-length penalties (None when not run this step),
        mean real/fake logits and the EMA beta used."""
        cfg, G, D = self.cfg, self.G, self.D
        x = from_unit_range(reals.to(self.device))
        b = x.shape[0]
        out: dict[str, float | None] = {"r1": None, "pl": None}

        # Gmain
        G.requires_grad_(True)
        D.requires_grad_(False)
        fake = G.synthesis(self.sample_ws(b, generator, update_w_avg=True), generator=generator)
        fake_logits = D(fake)
        loss_G = F.softplus(-fake_logits).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        out["loss_G"] = loss_G.item()

        # Greg: path length
        if cfg.pl_weight > 0 and self.step_count % cfg.pl_interval == 0:
            pb = max(1, b // cfg.pl_batch_shrink)
            ws = self.sample_ws(pb, generator)
            img = G.synthesis(ws, generator=generator)
            noise = torch.randn(img.shape, generator=generator, device=self.device) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
            penalty = (lengths - self.pl_mean).square()
            loss = (penalty * cfg.pl_weight).mean() * cfg.pl_interval
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_G.step()
            out["pl"] = penalty.mean().item()

        # Dmain
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G.synthesis(self.sample_ws(b, generator), generator=generator)
        fake_logits = D(fake)
        real_logits = D(x)
        loss_D = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        out.update(loss_D=loss_D.item(), d_real=real_logits.mean().item(), d_fake=fake_logits.mean().item())

        # Dreg: R1 on reals
        if cfg.r1_gamma > 0 and self.step_count % cfg.r1_interval == 0:
            penalty, _ = r1_penalty(D, x)
            loss = (penalty * (cfg.r1_gamma / 2)).mean() * cfg.r1_interval
            self.opt_D.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_D.step()
            out["r1"] = penalty.mean().item()
        G.requires_grad_(True)

        self.step_count += 1
        self.nimg += b
        beta = ema_beta(b, cfg.ema_kimg, self.nimg, cfg.ema_rampup)
        update_ema(self.G_ema, G, beta)
        out["ema_beta"] = beta
        return out

    # ---- state

    def state_dict(self) -> dict:
        return {"G": _cpu(self.G.state_dict()), "D": _cpu(self.D.state_dict()), "G_ema": _cpu(self.G_ema.state_dict()),
                "optimizer_G": self.opt_G.state_dict(), "optimizer_D": self.opt_D.state_dict(),
                "step": self.step_count, "nimg": self.nimg, "pl_mean": self.pl_mean.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"], strict=True)
        self.D.load_state_dict(state["D"], strict=True)
        self.G_ema.load_state_dict(state["G_ema"], strict=True)
        self.opt_G.load_state_dict(state["optimizer_G"])
        self.opt_D.load_state_dict(state["optimizer_D"])
        self.step_count, self.nimg = int(state["step"]), int(state["nimg"])
        self.pl_mean = state["pl_mean"].to(self.device)


def _init_from_prior(trainer: PriorTrainer, path_or_zoo_name: str | os.PathLike) -> dict:
    """Load a prior checkpoint's generator into ``trainer.G`` / ``G_ema`` and its discriminator into
    ``trainer.D``, set the image counter to its ``kimg``; returns what to record (path, kimg, sha256)."""
    from jscc.models.generative import read_prior_checkpoint

    path = resolve_prior(path_or_zoo_name)
    ckpt = read_prior_checkpoint(path)
    if "discriminator" not in ckpt:
        raise ValueError(f"{path} has no discriminator (a train-prior prior.pt / best.pt has one); cannot continue training")
    g_cfg = {k: ckpt["config"].get(k) for k in trainer.cfg.generator_config()}
    d_cfg = {k: ckpt["discriminator"]["config"].get(k) for k in trainer.cfg.discriminator_config()}
    for what, saved, wanted in (("generator", g_cfg, trainer.cfg.generator_config()),
                                ("discriminator", d_cfg, trainer.cfg.discriminator_config())):
        diff = sorted(k for k in wanted if saved[k] != wanted[k])
        if diff:
            raise ValueError(f"cannot start from {path}: its {what} has "
                             f"{', '.join(f'{k}={saved[k]!r}' for k in diff)}, this run "
                             f"{', '.join(f'{k}={wanted[k]!r}' for k in diff)}")
    trainer.G.load_state_dict(ckpt["state_dict"], strict=True)
    trainer.G_ema.load_state_dict(ckpt["state_dict"], strict=True)
    trainer.D.load_state_dict(ckpt["discriminator"]["state_dict"], strict=True)
    kimg = float(ckpt.get("metrics", {}).get("kimg", 0.0))
    trainer.nimg = round(kimg * 1000)
    return {"path": str(path_or_zoo_name), "kimg": kimg, "sha256": sha256_file(path)}


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def prior_checkpoint(generator: Generator, *, discriminator: Discriminator | None = None, train: dict | None = None,
                     metrics: dict | None = None) -> dict:
    """The project's self-describing checkpoint of a prior: ``{"format", "model": "stylegan2",
    "config": generator.config, "state_dict", "train", "metrics"}`` (weights copied to CPU), plus
    ``"discriminator": {"config", "state_dict"}`` when given (the trained discriminator of the same
    step, so the shipped file also serves the ``disc-features`` perceptual distance)."""
    ckpt = {"format": FORMAT, "model": PRIOR_MODEL, "config": dict(generator.config),
            "state_dict": _cpu(generator.state_dict()), "train": dict(train or {}), "metrics": dict(metrics or {})}
    if discriminator is not None:
        ckpt["discriminator"] = {"config": dict(discriminator.config), "state_dict": _cpu(discriminator.state_dict())}
    return ckpt


def _rng_state(generators: dict[str, torch.Generator]) -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            **{name: g.get_state() for name, g in generators.items()}}


def _set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    for key, g in generators.items():
        g.set_state(state[key])


def _check_train_set(train_set: ImageSet, resolution: int) -> None:
    if not train_set.stacked and train_set.crop is None:
        raise ValueError(f"{train_set.name!r} holds images of several sizes: pass a crop of {resolution}")
    size = train_set.image_size(0)
    if size != (resolution, resolution):
        raise ValueError(f"{train_set.name!r} gives {size[0]}x{size[1]} images, the prior is {resolution}x{resolution}"
                         f" (crop the images to {resolution}, e.g. --crop {resolution})")


def _epoch_order(n_images: int, n: int, generator: torch.Generator) -> Tensor:
    """``n`` indices: concatenated random permutations of ``range(n_images)``."""
    perms = [torch.randperm(n_images, generator=generator) for _ in range(-(-n // n_images))]
    return torch.cat(perms)[:n]


_RESUME_MAY_CHANGE = frozenset({"epochs", "device", "n_samples", "val_steps", "val_lr"})  # weights unaffected


def train_prior(
    train_set: ImageSet,
    cfg: PriorTrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    *,
    val_set: ImageSet | None = None,
    init_from: str | os.PathLike | None = None,
) -> list[dict]:
    """Train a StyleGAN2 prior; write ``last.pt``, ``prior.pt``, ``best.pt`` (with ``val_set``),
    ``samples/epoch_NNNN.png``, ``log.csv`` and ``history.json`` into ``out_dir``.

    Args:
        train_set: real images, ``resolution`` x ``resolution`` (stacked, or cropped by the set).
        cfg: the run's options.
        resume: continue from ``out_dir/last.pt`` when it exists (it must hold the same config,
            apart from ``epochs``, ``device``, ``extra`` and the sample / validation options).
        progress: tqdm bars.
        val_set: held-out images for the per-epoch projection PSNR (``cfg.val_steps`` Adam steps).
        init_from: start a new run from a trained prior (a ``prior.pt`` / ``best.pt`` or a zoo prior
            name) of the same generator and discriminator config: G and G_ema from its generator, D
            from its discriminator, fresh Adam states, the image counter (kimg, EMA ramp-up) continued
            from its ``kimg``. Ignored when ``resume`` finds ``last.pt``.

    Returns:
        The history: one dict per epoch (``kimg``, mean losses, last R1 / path-length penalties,
        mean logits, ``val_psnr``, seconds, images/s, seconds per step).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but CUDA is not available")
    _check_train_set(train_set, cfg.resolution)
    if val_set is not None:
        _check_train_set(val_set, cfg.resolution)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    trainer = PriorTrainer(cfg)
    data_gen, latent_gen = torch.Generator(), torch.Generator(device=device)
    gens = {"data": data_gen, "latent": latent_gen}
    record = cfg.record()
    train_info = {**cfg.extra, **record, "discriminator": trainer.D.config}

    start_epoch, history = 0, []
    if resume and (out / "last.pt").exists():
        state = read_checkpoint(out / "last.pt", map_location="cpu")
        saved = dict(state.get("prior_config", {}))
        diff = sorted(k for k in set(saved) | set(record) if k not in _RESUME_MAY_CHANGE and saved.get(k) != record.get(k))
        if state.get("model") != PRIOR_MODEL or diff:
            raise ValueError(f"cannot resume: {out / 'last.pt'} was trained with other options "
                             f"({', '.join(f'{k}={saved.get(k)!r}' for k in diff) or state.get('model')}); "
                             f"only {', '.join(sorted(_RESUME_MAY_CHANGE))} may change")
        trainer.load_state_dict(state)
        _set_rng_state(state["rng"], gens)
        start_epoch, history = int(state["epoch"]), list(state["history"])
        if "init_from" in state.get("train", {}):  # the run's starting prior stays recorded
            train_info["init_from"] = state["train"]["init_from"]
        print(f"resuming {out} after epoch {start_epoch} ({trainer.nimg / 1000:.1f} kimg)")
    elif init_from is not None:
        train_info["init_from"] = _init_from_prior(trainer, init_from)
        print(f"starting from prior {init_from} ({trainer.nimg / 1000:.1f} kimg)")

    n_images = cfg.images_per_epoch or len(train_set)
    n_steps = n_images // cfg.batch_size
    if n_steps == 0:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {n_images} training images per epoch")
    sample_z = torch.randn(cfg.n_samples, trainer.G.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
    best_psnr = max((h["val_psnr"] for h in history if h.get("val_psnr") is not None), default=-math.inf)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        data_gen.manual_seed(epoch_seed(cfg.seed, epoch, 0, 0))
        latent_gen.manual_seed(epoch_seed(cfg.seed, epoch, 0, 1))
        order = _epoch_order(len(train_set), n_steps * cfg.batch_size, data_gen)
        batches = iterate_batches(train_set, cfg.batch_size, indices=order, generator=data_gen, drop_last=True)
        sums = {"loss_G": 0.0, "loss_D": 0.0, "d_real": 0.0, "d_fake": 0.0}
        last = {"r1": None, "pl": None}
        bar = tqdm(batches, total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False)
        for i, x in enumerate(bar):
            if cfg.mirror:
                flip = torch.rand(x.shape[0], generator=data_gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            stats = trainer.step(x, latent_gen)
            for k in sums:
                sums[k] += stats[k]
            last.update({k: stats[k] for k in last if stats[k] is not None})
            if i % 20 == 19:
                bar.set_postfix(G=f"{sums['loss_G'] / (i + 1):.3f}", D=f"{sums['loss_D'] / (i + 1):.3f}")
        seconds = time.perf_counter() - t0

        val = None
        if val_set is not None and cfg.val_steps > 0:
            val = projection_psnr(trainer.G_ema, val_set, steps=cfg.val_steps, lr=cfg.val_lr,
                                  batch_size=max(cfg.batch_size, 64), device=device)
        rec = {
            "epoch": epoch + 1,
            "kimg": trainer.nimg / 1000,
            "steps": trainer.step_count,
            **{k: v / n_steps for k, v in sums.items()},
            "r1": last["r1"],
            "pl": last["pl"],
            "val_psnr": None if val is None else val["psnr"],
            "seconds": seconds,
            "images_per_s": n_steps * cfg.batch_size / seconds,
            "step_s": seconds / n_steps,
        }
        history.append(rec)
        val_text = "" if val is None else f"  projection PSNR {val['psnr']:.2f} dB ({cfg.val_steps} steps)"
        print(f"epoch {epoch + 1}/{cfg.epochs}  {rec['kimg']:.1f} kimg  G {rec['loss_G']:.3f}  D {rec['loss_D']:.3f}  "
              f"D(real) {rec['d_real']:+.2f} D(fake) {rec['d_fake']:+.2f}{val_text}  {seconds:.1f} s "
              f"({rec['images_per_s']:.0f} img/s, {rec['step_s'] * 1000:.0f} ms/step)", flush=True)

        with torch.no_grad():
            samples = trainer.G_ema(sample_z.to(device), noise="const")
        save_image_grid((samples.cpu() + 1) / 2, out / "samples" / f"epoch_{epoch + 1:04d}.png")
        info = {**train_info, "epochs_done": epoch + 1, "kimg": trainer.nimg / 1000}
        metrics = {"epoch": epoch + 1, "kimg": trainer.nimg / 1000}
        if val is not None:
            metrics.update(projection_psnr=val["psnr"], projection_psnr_std=val["psnr_std"],
                           projection_steps=cfg.val_steps, projection_lr=cfg.val_lr, n_val_images=val["n_images"])
        prior = prior_checkpoint(trainer.G_ema, discriminator=trainer.D, train=info, metrics=metrics)
        if val is not None and val["psnr"] > best_psnr:
            best_psnr = val["psnr"]
            atomic_torch_save(prior, out / "best.pt")
        atomic_torch_save(prior, out / "prior.pt")
        state = {**{k: v for k, v in prior.items() if k != "discriminator"}, **trainer.state_dict(), "discriminator_config": trainer.D.config, "prior_config": record,
                 "epoch": epoch + 1, "rng": _rng_state(gens), "history": history}
        atomic_torch_save(state, out / "last.pt")
        write_logs(out, history)
    return history


# --------------------------------------------------------------------------- loading


def load_prior(path_or_zoo_name: str | os.PathLike, *, map_location="cpu", return_checkpoint: bool = False):
    """Load a StyleGAN2 prior ``Generator`` (eval mode, strict, ``weights_only=True``).

    Args:
        path_or_zoo_name: a prior checkpoint (``prior.pt``, ``best.pt`` or ``last.pt`` of
            :func:`train_prior`) or the name of a ``jscc.zoo.ZOO`` entry whose ``"model"`` is
            ``"stylegan2"``.

    Returns:
        The generator (``gen.train_info`` set from the checkpoint), and the checkpoint dict when
        ``return_checkpoint``.

    Raises:
        ValueError: an unknown name, a zoo entry or checkpoint of another model, or weights that do
            not match the recorded config.
    """
    path = resolve_prior(path_or_zoo_name)
    ckpt = read_checkpoint(path, map_location=map_location)
    if ckpt.get("model") != PRIOR_MODEL:
        raise ValueError(f"{path} holds model {ckpt.get('model')!r}, not a {PRIOR_MODEL} prior")
    gen = Generator(**ckpt["config"])
    gen.load_state_dict(ckpt["state_dict"], strict=True)
    gen.eval().requires_grad_(False)
    gen.train_info = ckpt.get("train", {})
    return (gen, ckpt) if return_checkpoint else gen


# --------------------------------------------------------------------------- inversion


def mse_per_image(x_hat: Tensor, target: Tensor) -> Tensor:
    """Default inversion loss: MSE per image, ``(B,3,H,W), (B,3,H,W) -> (B,)``."""
    return (x_hat - target).square().flatten(1).mean(1)


def _noise_regularizer(noises: Sequence[Tensor]) -> Tensor:
    """StyleGAN2 projector's noise regulariser per example ``(B,)``: squared autocorrelation at a
    one-pixel shift (both axes) over a pyramid of 2x average-pooled copies down to 8x8."""
    total = 0
    for noise in noises:
        n = noise
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * torch.roll(n, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _straight_through_unit(images: Tensor) -> Tensor:
    """``[-1, 1] -> [0, 1]`` clamped in value, identity in gradient (clamped pixels keep pulling)."""
    x = (images + 1) / 2
    return x + (x.clamp(0, 1) - x).detach()


def invert(
    generator: Generator,
    target: Any,
    steps: int = 200,
    lr: float = 0.1,
    loss_fn: Callable[[Tensor, Any], Tensor] | None = None,
    *,
    batch_size: int | None = None,
    init_ws: Tensor | None = None,
    w_plus: bool = True,
    optimize_noise: bool = False,
    noise_reg_weight: float = 1e5,
    lr_rampup: float = 0.05,
    lr_rampdown: float = 0.25,
    progress: bool = False,
) -> dict[str, Any]:
    """GAN inversion: Adam on latents (and optionally noise maps) to minimise ``loss_fn``.

    ``ws`` start at ``w_avg`` (or ``init_ws``); the images ``G.synthesis(ws)`` are mapped to
    ``[0, 1]`` (clamped in value, straight-through in gradient) and passed to
    ``loss_fn(x_hat (B,3,R,R), target) -> (B,)`` per-example losses (or a scalar); their sum is
    minimised, so the examples of a batch are optimised independently. The learning rate follows
    the StyleGAN2 projector: linear ramp-up over ``lr_rampup`` and cosine ramp-down over the last
    ``lr_rampdown`` of the steps. Without ``optimize_noise`` the noise inputs are the generator's
    fixed ``noise_const`` maps; with it they start there, are optimised per example with the
    projector's autocorrelation regulariser (``noise_reg_weight``) and renormalised to zero mean
    and unit variance after each step. The generator's weights are not changed.

    Args:
        generator: the prior.
        target: anything ``loss_fn`` takes; for the default per-image MSE, images float
            ``(B,3,R,R)`` in ``[0, 1]``.
        steps: Adam steps (0: just evaluate the initial latents).
        lr: peak learning rate.
        loss_fn: ``(x_hat, target) -> (B,)``; default :func:`mse_per_image`.
        batch_size: ``B``; default ``target.shape[0]`` (``target`` a tensor).
        init_ws: initial latents ``(B,num_ws,w_dim)`` (or ``(B,w_dim)`` without ``w_plus``).
        w_plus: optimise one ``w`` per layer (W+) rather than one ``w`` per example (W).

    Returns:
        ``{"ws": (B,num_ws,w_dim), "noise": list of (B,1,r,r) | None, "images": (B,3,R,R) in
        [0,1], "loss": (B,) final per-example loss, "loss_history": [mean loss before each step]}``,
        all detached.
    """
    if loss_fn is None:
        check_images(target, "target")
        if target.shape[1:] != (3, generator.resolution, generator.resolution):
            raise ValueError(f"target images are {tuple(target.shape[1:])}, the prior makes "
                             f"(3, {generator.resolution}, {generator.resolution})")
        loss_fn = mse_per_image
    if batch_size is None:
        if not isinstance(target, Tensor):
            raise ValueError("pass batch_size when target is not a tensor")
        batch_size = target.shape[0]
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    device = generator.w_avg.device
    if init_ws is None:
        shape = (batch_size, generator.num_ws, generator.w_dim) if w_plus else (batch_size, generator.w_dim)
        init_ws = generator.w_avg.detach().expand(shape)
    elif init_ws.shape[0] != batch_size or init_ws.shape[1:] != ((generator.num_ws, generator.w_dim) if w_plus
                                                                   else (generator.w_dim,)):
        raise ValueError(f"init_ws has shape {tuple(init_ws.shape)}, expected "
                         f"{(batch_size, generator.num_ws, generator.w_dim) if w_plus else (batch_size, generator.w_dim)}")
    latent = init_ws.detach().to(device).clone().requires_grad_(True)
    params = [latent]
    noise: list[Tensor] | str = "const"
    if optimize_noise:
        noise = [c.noise_const.detach().expand(batch_size, 1, -1, -1).clone().requires_grad_(True)
                 for c in generator.styled_convs()]
        params += noise
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))

    def full_ws() -> Tensor:
        return latent if w_plus else latent.unsqueeze(1).expand(-1, generator.num_ws, -1)

    def per_example(x_hat: Tensor) -> Tensor:
        loss = loss_fn(x_hat, target)
        return loss if loss.ndim else loss.expand(1)

    flags = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    history: list[float] = []
    try:
        with torch.enable_grad():
            for i in tqdm(range(steps), desc="invert", unit="step", disable=not progress, leave=False):
                ramp = min(1.0, (1 - i / steps) / lr_rampdown) if lr_rampdown > 0 else 1.0
                ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
                if lr_rampup > 0:
                    ramp *= min(1.0, (i + 1) / steps / lr_rampup)
                for group in opt.param_groups:
                    group["lr"] = lr * ramp
                loss = per_example(_straight_through_unit(generator.synthesis(full_ws(), noise=noise)))
                history.append(loss.mean().item())
                total = loss.sum()
                if optimize_noise and noise_reg_weight > 0:
                    total = total + noise_reg_weight * _noise_regularizer(noise).sum()
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                if optimize_noise:
                    with torch.no_grad():
                        for n in noise:
                            n.sub_(n.mean(dim=(1, 2, 3), keepdim=True)).div_(n.std(dim=(1, 2, 3), keepdim=True))
        with torch.no_grad():
            images = _straight_through_unit(generator.synthesis(full_ws(), noise=noise))
            final = per_example(images)
    finally:
        for p, flag in zip(generator.parameters(), flags):
            p.requires_grad_(flag)
    return {"ws": full_ws().detach(), "noise": [n.detach() for n in noise] if optimize_noise else None,
            "images": images.detach(), "loss": final.detach(), "loss_history": history}


def projection_psnr(
    generator: Generator,
    images: Tensor | ImageSet,
    steps: int = 200,
    lr: float = 0.1,
    *,
    batch_size: int = 64,
    optimize_noise: bool = False,
    device: str | torch.device | None = None,
    progress: bool = False,
    **invert_kwargs,
) -> dict[str, Any]:
    """Quality of a prior without FID: invert held-out images (MSE, :func:`invert` from ``w_avg``,
    ``steps`` Adam steps) and report their PSNR.

    Args:
        generator: the prior.
        images: float ``(N,3,R,R)`` in ``[0, 1]`` or an ImageSet of ``R x R`` images (centre crops
            for a cropped set).
        batch_size: images inverted together (independently: per-example losses are summed).

    Returns:
        ``{"psnr": mean dB, "psnr_std", "psnr_per_image": [N], "psnr_init": mean dB at w_avg,
        "n_images", "steps", "lr", "optimize_noise"}``; PSNR per image, peak 1, on the clamped
        reconstructions.
    """
    if device is not None:
        generator = generator.to(device)
    device = generator.w_avg.device
    if isinstance(images, ImageSet):
        images = ImageSet(images.images, images.name, images.crop, random_crop=False)
        batches = iterate_batches(images, batch_size)
    else:
        check_images(images, "images")
        batches = images.split(batch_size)
    per_image, init = [], []
    for x in batches:
        x = x.to(device)
        res = invert(generator, x, steps, lr, optimize_noise=optimize_noise, progress=progress, **invert_kwargs)
        per_image.append(psnr(res["images"], x).cpu())
        with torch.no_grad():
            x0 = _straight_through_unit(generator.synthesis(generator.w_avg.expand(x.shape[0], generator.num_ws, -1),
                                                            noise="const"))
        init.append(psnr(x0, x).cpu())
    values, init_values = torch.cat(per_image).double(), torch.cat(init).double()
    return {"psnr": values.mean().item(), "psnr_std": values.std(unbiased=False).item(),
            "psnr_per_image": values.tolist(), "psnr_init": init_values.mean().item(), "n_images": len(values),
            "steps": steps, "lr": lr, "optimize_noise": optimize_noise}


# --------------------------------------------------------------------------- sample grids


def save_image_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, pad: int = 1) -> Path:
    """Write float ``(N,3,H,W)`` images (clamped to ``[0, 1]``) as one PNG grid, ``nrow`` per row
    (default ``ceil(sqrt(N))``), ``pad`` white pixels between them; atomically."""
    from PIL import Image

    n, _, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.ones(3, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i, im in enumerate(images.detach().float().clamp(0, 1).cpu()):
        r, c = divmod(i, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    array = (canvas.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
