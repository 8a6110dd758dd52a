"""Generative JSCC with a StyleGAN2 image prior: DeepJSCC-perception of Erdemir, Tung, Dragotti &
Gündüz, "Generative joint source-channel coding for semantic image transmission", IEEE JSAC 2023.

Both schemes aim at ``alpha * MSE + beta * perceptual`` (:mod:`jscc.perceptual`; the paper's
perceptual term is LPIPS) and decode through a pretrained StyleGAN2 :class:`Generator`.

**InverseJSCC** (``inverse-jscc``): a trained DeepJSCC plus GAN inversion at the receiver::

    x (B,3,R,R) ─► DeepJSCC encoder ─► z (B,k) ─► channel ─► y ─► DeepJSCC decoder ─► x_base
    ws <- w_avg (B,num_ws,w_dim); repeat `steps` Adam steps on ws (and noise maps):
        min  alpha MSE(G(ws), x_base) + beta d(G(ws), x_base) + latent_weight |ws - w_avg|^2
             + consistency_weight |y - h P(enc(G(ws)))|^2 / k  [+ noise_weight reg(noise)]
    x_hat = (G(ws) + 1) / 2  (detached)

Nothing is trained end to end: the base is trained as ``deepjscc`` (``jscc train``), the prior as a
StyleGAN2 separately; :meth:`InverseJSCC.warm_start` / :meth:`InverseJSCC.from_checkpoints` put
them together.

**GenerativeJSCC** (``generative-jscc``): the 2019 encoder and a decoder that maps the channel
output to StyleGAN2 latents, trained end to end through the channel::

    x ─► encoder (5 conv, c filters) ─► z (B,k), k/n = c/96 ─► channel ─► y (B,k)
    y ─► features (B,c,R/4,R/4) ─► LatentHead: 2 conv3x3 + lrelu ─► avg-pool (P,P) ─► linear
      ─► ws = w_avg + offsets (B,num_ws,w_dim) [+ noise maps (B,1,r_i,r_i) from a 1x1 conv]
      ─► Generator.synthesis (frozen unless finetune_generator) ─► x_hat = (img + 1)/2 in [0,1]

Images must be ``R x R`` with ``R`` the generator's resolution. The StyleGAN2 generator's
configuration is part of each model's ``config`` (JSON form, see :func:`canonical_generator_config`)
and its weights are part of the state dict, so ``jscc.load`` rebuilds either model.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from channels.power import power_normalize
from jscc.metrics import check_images
from jscc.models.base import JSCCModel
from jscc.models.deepjscc import DeepJSCC, _check_size, c_from_bandwidth_ratio, check_backbone, encoder_stack
from jscc.models.stylegan2 import Generator, to_unit_range
from jscc.models.symbols import features_to_symbols, symbols_to_features
from jscc.perceptual import PERCEPTUAL_NAMES, CombinedLoss, build_perceptual
from jscc.registry import register_model
from jscc.zoo import PRIOR_MODEL, resolve_prior

__all__ = ["InverseJSCC", "GenerativeJSCC", "LatentHead", "canonical_generator_config", "read_prior_checkpoint"]



# --------------------------------------------------------------------------- generator config and priors


def _generator_defaults() -> dict[str, Any]:
    params = inspect.signature(Generator.__init__).parameters
    return {n: p.default for n, p in params.items() if n != "self"}


def canonical_generator_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A StyleGAN2 ``Generator`` config with every argument filled in, in JSON form.

    Defaults are taken from ``Generator``'s signature, ``z_dim`` resolved to ``w_dim`` when None,
    numbers typed as ``Generator.config`` types them, and the explicit ``channels`` widths (when
    given) keyed by strings (``{"4": 512, ...}``) so the dict survives a JSON round trip unchanged.
    Two configs describe the same architecture iff their canonical forms are equal.

    Raises:
        ValueError: not a mapping, no ``resolution``, or an unknown argument.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"generator config must be a dict of Generator arguments, got {type(config).__name__}")
    defaults = _generator_defaults()
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"unknown Generator arguments {unknown}; known: {sorted(defaults)}")
    if "resolution" not in config:
        raise ValueError("generator config needs 'resolution' (the image side R)")
    cfg = {**defaults, **config}
    if cfg["z_dim"] is None:
        cfg["z_dim"] = cfg["w_dim"]
    for key in ("channel_base", "channel_max"):
        cfg[key] = int(cfg[key])
    for key in ("mapping_lr_mul", "w_avg_beta"):
        cfg[key] = float(cfg[key])
    if cfg["conv_clamp"] is not None:
        cfg["conv_clamp"] = float(cfg["conv_clamp"])
    if cfg["channels"] is not None:
        if not isinstance(cfg["channels"], Mapping):
            raise ValueError(f"generator 'channels' must map resolution -> width, got {cfg['channels']!r}")
        cfg["channels"] = {str(int(r)): int(c) for r, c in sorted(cfg["channels"].items(), key=lambda rc: int(rc[0]))}
    return {k: cfg[k] for k in sorted(cfg)}


def read_prior_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A StyleGAN2 prior checkpoint ``{"format": "jscc-checkpoint/1", "model": "stylegan2", "config":
    <Generator config>, "state_dict": <G_ema state dict>, ...}`` from a path or zoo prior name
    (``weights_only=True``) or the dict itself. ValueError unless it has that shape."""
    if isinstance(source, (str, os.PathLike)):
        from jscc.checkpoint import read_checkpoint

        source = read_checkpoint(resolve_prior(source))
    if not isinstance(source, Mapping) or source.get("model") != PRIOR_MODEL:
        got = source.get("model") if isinstance(source, Mapping) else type(source).__name__
        raise ValueError(f"not a StyleGAN2 prior checkpoint (model {got!r}, expected {PRIOR_MODEL!r})")
    if not isinstance(source.get("config"), Mapping) or not isinstance(source.get("state_dict"), Mapping):
        raise ValueError("StyleGAN2 prior checkpoint needs a 'config' (Generator arguments) and a 'state_dict'")
    return dict(source)


def _build_generator(spec: Mapping[str, Any] | str | os.PathLike) -> tuple[Generator, dict[str, Any]]:
    """``(generator, canonical config)`` from a config dict, or from a prior checkpoint path (weights loaded)."""
    if spec is None:
        raise ValueError("the StyleGAN2 prior is required: generator=<Generator config dict> or "
                         "generator=<path of a stylegan2 prior checkpoint>")
    prior = None
    if isinstance(spec, (str, os.PathLike)):
        prior = read_prior_checkpoint(spec)
        spec = prior["config"]
    cfg = canonical_generator_config(spec)
    gen = Generator(**cfg)
    if canonical_generator_config(gen.config) != cfg:  # Generator normalised something differently
        raise ValueError(f"generator config {cfg} is not in canonical form ({gen.config})")
    if prior is not None:
        _load_generator(gen, cfg, prior)
    return gen, cfg


def _load_generator(gen: Generator, cfg: Mapping[str, Any], prior: Mapping[str, Any]) -> None:
    """Strictly load a prior checkpoint into ``gen`` whose canonical config is ``cfg``."""
    theirs = canonical_generator_config(prior["config"])
    if theirs != cfg:
        diff = {k: (cfg.get(k), theirs.get(k)) for k in sorted(set(cfg) | set(theirs)) if cfg.get(k) != theirs.get(k)}
        raise ValueError(f"the prior's generator config differs from this model's: {{key: (model, prior)}} = {diff}")
    try:
        gen.load_state_dict(prior["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"prior generator weights do not match its config: {err}") from None


def _check_weight(name: str, value: Any) -> float:
    value = float(value)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _check_perceptual(perceptual: str, perceptual_args: Mapping[str, Any] | None, beta: float) -> dict:
    if perceptual not in PERCEPTUAL_NAMES:
        raise ValueError(f"unknown perceptual distance {perceptual!r}; choose from {', '.join(PERCEPTUAL_NAMES)}")
    args = dict(perceptual_args or {})
    if "device" in args:
        raise ValueError("perceptual_args must not set 'device': the distance runs where the images are")
    if perceptual == "disc-features" and beta > 0 and "discriminator" not in args:
        raise ValueError("perceptual='disc-features' needs perceptual_args={'discriminator': <path of a trained "
                         "StyleGAN2 discriminator checkpoint>}")
    return args


class _PerceptualLoss:
    """The lazily built ``alpha*MSE + beta*perceptual`` of a model (built on first use, per device;
    kept out of the module tree so its weights never enter checkpoints or optimisers)."""

    def _combined_loss(self, device: torch.device) -> CombinedLoss:
        cache = self.__dict__.setdefault("_loss_cache", {})
        if device not in cache:
            cfg = self.config
            perceptual = None
            if cfg["beta"] > 0:
                kw = dict(cfg["perceptual_args"])
                if cfg["perceptual"].startswith("lpips-"):
                    kw["device"] = device
                perceptual = build_perceptual(cfg["perceptual"], **kw).to(device)
            cache[device] = CombinedLoss(cfg["alpha"], cfg["beta"], perceptual)
        return cache[device]

    @property
    def perceptual_name(self) -> str | None:
        """Name of the perceptual distance as results must record it (e.g. ``"ssim"``,
        ``"disc-features:<hash>"``); builds the distance. None when ``beta == 0``."""
        return self._combined_loss(torch.device("cpu")).perceptual_name


def _check_image_size(image_size, resolution: int) -> None:
    h, w = (int(s) for s in image_size)
    if (h, w) != (resolution, resolution):
        raise ValueError(f"images must be {resolution}x{resolution} (the StyleGAN2 prior's resolution), got {h}x{w}")


# --------------------------------------------------------------------------- InverseJSCC


def noise_regularizer(noises: list[Tensor]) -> Tensor:
    """StyleGAN2-projector noise regulariser per example: squared autocorrelations at lag 1 (both
    axes) of each noise map ``(B,1,r,r)`` and of its 2x average-pooled pyramid down to 8x8. ``(B,)``."""
    reg = noises[0].new_zeros(noises[0].shape[0])
    for n in noises:
        while True:
            reg = reg + (n * n.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            reg = reg + (n * n.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return reg


@register_model("inverse-jscc")
class InverseJSCC(_PerceptualLoss, JSCCModel):
    """DeepJSCC + StyleGAN2 inversion at the receiver (see the module docstring).

    Args:
        c, hidden, csi_side_input: the base :class:`DeepJSCC` (``k/n = c/96``; same encoder, so the
            same channel uses).
        generator: StyleGAN2 ``Generator`` config (dict), or the path of a ``stylegan2`` prior
            checkpoint (its config is used and its weights loaded). Images are ``R x R``.
        steps: Adam steps of the inversion per decoded batch (0: the image of ``w_avg``).
        lr: Adam learning rate on the W+ latents (and noise maps).
        alpha, beta: weights of MSE and of the perceptual distance to the base reconstruction.
        perceptual: ``"ssim"``, ``"lpips-alex"`` or ``"disc-features"`` (:mod:`jscc.perceptual`);
            ``perceptual_args``: its keyword arguments (JSON, e.g. ``{"discriminator": path}``).
        latent_weight: weight of ``mean (ws - w_avg)^2`` (over layers and ``w_dim``).
        consistency_weight: weight of the channel-consistency term ``mean_i |y_i - h_i z'_i|^2``,
            ``z'`` = power-normalised (``power``) re-encoding of the generated image by the known
            encoder (``h`` = 1 unless the decoder is given ``h``). Meaningful for AWGN and for
            equalised fading; 0 (default) turns it off.
        optimize_noise: optimise the per-layer noise maps too (initialised from the generator's
            fixed ``noise_const``, renormalised to zero mean / unit variance after each step);
            otherwise the fixed maps are used. ``noise_weight``: weight of :func:`noise_regularizer`.
        power: nominal power ``P`` per channel use for the re-encoding (the system's).

    The inversion minimises the sum over the batch of per-example objectives (each example's
    latents see only its own objective; Adam is elementwise), runs with gradients enabled even
    inside ``torch.no_grad()`` / ``inference_mode`` callers, and returns detached images. It uses
    no randomness: equal inputs give equal outputs. After each ``decode``, ``last_inversion``
    holds ``{"base": x_base (B,3,R,R), "objective": (steps+1, B)}`` (the per-example objective
    before each step and at the returned latents).
    """

    snr_adaptive = False  # the base ignores the SNR
    defines_loss = True

    def __init__(self, c: int = 8, hidden: tuple[int, ...] | list[int] = (16, 32, 32, 32),
                 csi_side_input: bool = False, generator: Mapping[str, Any] | str | None = None,
                 steps: int = 200, lr: float = 0.05, alpha: float = 1.0, beta: float = 1.0,
                 perceptual: str = "ssim", perceptual_args: Mapping[str, Any] | None = None,
                 latent_weight: float = 1e-3, consistency_weight: float = 0.0, optimize_noise: bool = False,
                 noise_weight: float = 1e3, power: float = 1.0):
        super().__init__()
        self.base = DeepJSCC(c=c, hidden=hidden, csi_side_input=csi_side_input)
        self.generator, gen_cfg = _build_generator(generator)
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        if not float(lr) > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        alpha, beta = _check_weight("alpha", alpha), _check_weight("beta", beta)
        if alpha + beta == 0:
            raise ValueError("alpha and beta are both 0: the inversion would have no data term")
        if not float(power) > 0:
            raise ValueError(f"power must be > 0, got {power!r}")
        self.config = {
            **self.base.config, "generator": gen_cfg, "steps": int(steps), "lr": float(lr), "alpha": alpha,
            "beta": beta, "perceptual": str(perceptual),
            "perceptual_args": _check_perceptual(perceptual, perceptual_args, beta),
            "latent_weight": _check_weight("latent_weight", latent_weight),
            "consistency_weight": _check_weight("consistency_weight", consistency_weight),
            "optimize_noise": bool(optimize_noise), "noise_weight": _check_weight("noise_weight", noise_weight),
            "power": float(power),
        }
        self.last_inversion: dict[str, Tensor] | None = None

    @classmethod
    def from_bandwidth_ratio(cls, ratio: Fraction | str | float, **kwargs) -> "InverseJSCC":
        """The model whose k/n equals ``ratio`` (``c = 96 k/n``)."""
        return cls(c=c_from_bandwidth_ratio(ratio), **kwargs)

    @classmethod
    def from_checkpoints(cls, base: str | os.PathLike | Mapping, prior: str | os.PathLike | Mapping,
                         **kwargs) -> "InverseJSCC":
        """Assemble from a trained ``deepjscc`` checkpoint and a ``stylegan2`` prior checkpoint (paths,
        zoo names for the base, or dicts); ``kwargs``: the inversion options (``steps``, ``beta``, ...)."""
        from jscc.checkpoint import read_checkpoint, resolve_checkpoint

        if not isinstance(base, Mapping):
            base = read_checkpoint(resolve_checkpoint(base))
        if base.get("model") != "deepjscc":
            raise ValueError(f"base checkpoint holds {base.get('model')!r}, expected 'deepjscc'")
        prior = read_prior_checkpoint(prior)
        model = cls(**base["config"], generator=prior["config"], **kwargs)
        model.warm_start(base)
        model.warm_start(prior)
        return model

    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses per image: the base's (``c*H*W/32``)."""
        return self.base.channel_uses(height, width)

    def bandwidth_ratio(self, height: int, width: int) -> Fraction:
        """Exact k/n (``c/96``)."""
        return self.base.bandwidth_ratio(height, width)

    def encode(self, x: Tensor, snr_db: Tensor | None = None) -> Tensor:
        """Images float32 ``(B,3,R,R)`` in [0,1] -> complex64 symbols ``(B,k)`` (the base encoder)."""
        _check_image_size(x.shape[-2:], self.generator.resolution)
        return self.base.encode(x, snr_db)

    def decode(self, y: Tensor, image_size: tuple[int, int], snr_db: Tensor | None = None,
               h: Tensor | None = None, return_base: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Received symbols complex ``(B,k)`` -> StyleGAN2 image float32 ``(B,3,R,R)`` in [0,1], detached.

        ``h``: fading realisation for a ``csi_side_input`` base (also used by the consistency term).
        ``return_base``: also return the DeepJSCC reconstruction, ``(x_hat, x_base)``.
        """
        _check_image_size(image_size, self.generator.resolution)
        inference = torch.is_inference_mode_enabled()
        with torch.inference_mode(False) if inference else contextlib.nullcontext():
            y = y.clone() if inference else y
            h = h.clone() if inference and h is not None else h
            with torch.no_grad():
                x_base = self.base.decode(y, image_size, snr_db, h).detach().clone()
            with torch.enable_grad():
                x_hat, trace = self._invert(x_base, y.detach(), None if h is None else h.detach())
        self.last_inversion = {"base": x_base, "objective": trace}
        return (x_hat, x_base) if return_base else x_hat

    def _objective(self, loss: CombinedLoss, image: Tensor, target: Tensor, ws: Tensor, noises: list[Tensor] | None,
                   y: Tensor, h: Tensor | None) -> Tensor:
        """Per-example objective ``(B,)`` of generated images ``image`` in [0,1]."""
        cfg = self.config
        obj = cfg["alpha"] * (image - target).square().flatten(1).mean(dim=1)
        if cfg["beta"] > 0:
            obj = obj + cfg["beta"] * loss.perceptual(image, target)
        if cfg["latent_weight"] > 0:
            obj = obj + cfg["latent_weight"] * (ws - self.generator.w_avg).square().mean(dim=(1, 2))
        if cfg["consistency_weight"] > 0:
            z = power_normalize(self.base.encode(image), cfg["power"])
            rx = z if h is None else h * z
            obj = obj + cfg["consistency_weight"] * (y - rx).abs().square().mean(dim=-1)
        if noises is not None and cfg["noise_weight"] > 0:
            obj = obj + cfg["noise_weight"] * noise_regularizer(noises)
        return obj

    def _invert(self, target: Tensor, y: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor]:
        """W+ (and noise) inversion of ``target`` (B,3,R,R) -> (image (B,3,R,R) detached, trace (steps+1, B))."""
        cfg = self.config
        gen = self.generator
        loss = self._combined_loss(target.device)
        batch = target.shape[0]
        ws = gen.w_avg.detach().reshape(1, 1, -1).expand(batch, gen.num_ws, -1).clone().requires_grad_(True)
        params = [ws]
        noises = None
        if cfg["optimize_noise"]:
            noises = [conv.noise_const.detach().expand(batch, 1, -1, -1).clone().requires_grad_(True)
                      for conv in gen.styled_convs()]
            params += noises
        optimizer = torch.optim.Adam(params, lr=cfg["lr"])
        trace = []
        for _ in range(cfg["steps"]):
            image = to_unit_range(gen.synthesis(ws, noise=noises if noises is not None else "const"))
            obj = self._objective(loss, image, target, ws, noises, y, h)
            trace.append(obj.detach())
            grads = torch.autograd.grad(obj.sum(), params)
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
            if noises is not None:
                with torch.no_grad():
                    for n in noises:
                        n.sub_(n.mean(dim=(1, 2, 3), keepdim=True))
                        n.div_(n.square().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-16).sqrt())
        with torch.no_grad():
            image = to_unit_range(gen.synthesis(ws, noise=noises if noises is not None else "const"))
            trace.append(self._objective(loss, image, target, ws, noises, y, h))
        return image.detach(), torch.stack(trace)

    def loss(self, out: dict, x: Tensor) -> Tensor:
        """Not trainable end to end: raises. Train the base as ``deepjscc`` and the StyleGAN2 prior
        separately, then assemble with :meth:`from_checkpoints` / :meth:`warm_start`."""
        raise RuntimeError("inverse-jscc is not trained end to end: train the base with `jscc train --model deepjscc` "
                           "and the StyleGAN2 prior separately, then combine them (InverseJSCC.from_checkpoints or "
                           "warm_start)")

    def warm_start(self, checkpoint: Mapping[str, Any]) -> None:
        """Load part of the model from a checkpoint dict, strictly:

        * ``deepjscc`` with this base config (``c``, ``hidden``, ``csi_side_input``): the base;
        * ``stylegan2`` prior whose generator config equals ``config["generator"]``: the generator;
        * ``inverse-jscc`` with the same base and generator config (other options may differ): all.

        Raises ValueError otherwise (the message names the mismatch).
        """
        name = checkpoint.get("model")
        if name == "deepjscc":
            if checkpoint["config"] != self.base.config:
                raise ValueError(f"deepjscc checkpoint config {checkpoint['config']} differs from this base "
                                 f"{self.base.config}")
            _strict_load(self.base, checkpoint["state_dict"], "deepjscc base")
        elif name == PRIOR_MODEL:
            _load_generator(self.generator, self.config["generator"], read_prior_checkpoint(checkpoint))
        elif name == "inverse-jscc":
            keys = (*self.base.config, "generator")
            if any(checkpoint["config"].get(k) != self.config[k] for k in keys):
                raise ValueError(f"inverse-jscc checkpoint differs in {[k for k in keys if checkpoint['config'].get(k) != self.config[k]]}")
            _strict_load(self, checkpoint["state_dict"], "inverse-jscc")
        else:
            raise ValueError(f"inverse-jscc warm-starts from a deepjscc base, a stylegan2 prior or an inverse-jscc "
                             f"checkpoint, not {name!r}")


def _strict_load(module: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{what} weights do not match: {err}") from None


# --------------------------------------------------------------------------- GenerativeJSCC


class LatentHead(nn.Module):
    """Channel-output features -> StyleGAN2 W+ offsets (and noise maps).

    ``features (B,c,h,w) -> conv3x3(c->width) lrelu -> conv3x3(width->width) lrelu`` then
    ``avg-pool to (pool, pool) -> flatten -> linear -> (B,num_ws,w_dim)`` offsets from ``w_avg``;
    with ``noise_resolutions``, a 1x1 conv gives one map per noise input, resized (bilinear) to
    ``(B,1,r_i,r_i)``. The linear layer starts at 1/10 of PyTorch's default scale, so the initial
    latents sit near ``w_avg``.
    """

    def __init__(self, in_channels: int, num_ws: int, w_dim: int, width: int = 64, pool: int = 4,
                 noise_resolutions: list[int] | None = None):
        super().__init__()
        self.num_ws, self.w_dim = num_ws, w_dim
        self.trunk = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.linear = nn.Linear(width * pool * pool, num_ws * w_dim)
        with torch.no_grad():
            self.linear.weight.mul_(0.1)
            self.linear.bias.zero_()
        self.noise_resolutions = list(noise_resolutions or [])
        self.noise = nn.Conv2d(width, len(self.noise_resolutions), 1) if self.noise_resolutions else None

    def forward(self, features: Tensor) -> tuple[Tensor, list[Tensor] | None]:
        """``(B,c,h,w)`` -> ``(offsets (B,num_ws,w_dim), noise maps or None)``."""
        f = self.trunk(features)
        offsets = self.linear(self.pool(f).flatten(1)).reshape(-1, self.num_ws, self.w_dim)
        if self.noise is None:
            return offsets, None
        maps = self.noise(f)
        noises = [F.interpolate(maps[:, i:i + 1], size=(r, r), mode="bilinear", align_corners=False)
                  for i, r in enumerate(self.noise_resolutions)]
        return offsets, noises


@register_model("generative-jscc")
class GenerativeJSCC(_PerceptualLoss, JSCCModel):
    """DeepJSCC encoder + a latent head + a StyleGAN2 generator decoder (see the module docstring).

    Args:
        c, hidden: the 2019 encoder (``k/n = c/96``, five 5x5 convs, strides 2,2,1,1,1).
        generator: StyleGAN2 ``Generator`` config (dict), or the path of a ``stylegan2`` prior
            checkpoint (its config is used and its weights loaded). Images are ``R x R``.
        head_width, head_pool: latent-head conv width and pooled grid side (see :class:`LatentHead`).
        predict_noise: the head also predicts the generator's noise maps; otherwise the generator's
            fixed ``noise_const`` maps are used (a deterministic decoder).
        finetune_generator: train the generator's weights too (default frozen: no gradients).
        alpha, beta: loss ``alpha * MSE + beta * perceptual`` (:meth:`loss`).
        perceptual: ``"ssim"`` (default; offline), ``"lpips-alex"`` (needs the AlexNet weights) or
            ``"disc-features"`` (``perceptual_args={"discriminator": path}``); built on first use.

    ``warm_start`` loads the prior (a ``stylegan2`` checkpoint) or the encoder (a ``deepjscc`` one);
    train with ``jscc train --model generative-jscc --model-arg generator=PRIOR.pt``.
    """

    snr_adaptive = False
    defines_loss = True

    def __init__(self, c: int = 8, hidden: tuple[int, ...] | list[int] = (16, 32, 32, 32),
                 generator: Mapping[str, Any] | str | None = None, head_width: int = 64, head_pool: int = 4,
                 predict_noise: bool = False, finetune_generator: bool = False, alpha: float = 1.0,
                 beta: float = 1.0, perceptual: str = "ssim", perceptual_args: Mapping[str, Any] | None = None):
        super().__init__()
        c, hidden = check_backbone(c, hidden)
        for name, value in (("head_width", head_width), ("head_pool", head_pool)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        alpha, beta = _check_weight("alpha", alpha), _check_weight("beta", beta)
        if alpha + beta == 0:
            raise ValueError("alpha and beta are both 0: the loss would be 0")
        self.c = int(c)
        self.encoder = encoder_stack(3, hidden, self.c)
        self.generator, gen_cfg = _build_generator(generator)
        self.generator.requires_grad_(bool(finetune_generator))
        self.head = LatentHead(self.c, self.generator.num_ws, self.generator.w_dim, int(head_width), int(head_pool),
                               self.generator.noise_resolutions if predict_noise else None)
        self.config = {
            "c": self.c, "hidden": hidden, "generator": gen_cfg, "head_width": int(head_width),
            "head_pool": int(head_pool), "predict_noise": bool(predict_noise),
            "finetune_generator": bool(finetune_generator), "alpha": alpha, "beta": beta,
            "perceptual": str(perceptual), "perceptual_args": _check_perceptual(perceptual, perceptual_args, beta),
        }

    @classmethod
    def from_bandwidth_ratio(cls, ratio: Fraction | str | float, **kwargs) -> "GenerativeJSCC":
        """The model whose k/n equals ``ratio`` exactly (``c = 96 k/n``)."""
        return cls(c=c_from_bandwidth_ratio(ratio), **kwargs)

    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses k per image (``c*H*W/32``, as DeepJSCC)."""
        _check_size(height, width)
        reals = self.c * (height // 4) * (width // 4)
        if reals % 2:
            raise ValueError(f"c*H*W/16 = {reals} reals is odd: cannot pair them into complex symbols")
        return reals // 2

    def encode(self, x: Tensor, snr_db: Tensor | None = None) -> Tensor:
        """Images float32 ``(B,3,R,R)`` in [0,1] -> complex64 symbols ``(B,k)`` (not power-normalised);
        ``snr_db`` is ignored."""
        check_images(x, model_input=True)
        _check_image_size(x.shape[-2:], self.generator.resolution)
        return features_to_symbols(self.encoder(x))

    def latents(self, y: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, list[Tensor] | None]:
        """Received symbols ``(B,k)`` -> ``(ws (B,num_ws,w_dim), noise maps or None)``."""
        _check_image_size(image_size, self.generator.resolution)
        h, w = image_size
        features = symbols_to_features(y, (self.c, h // 4, w // 4))
        offsets, noises = self.head(features)
        return self.generator.w_avg + offsets, noises

    def decode(self, y: Tensor, image_size: tuple[int, int], snr_db: Tensor | None = None,
               h: Tensor | None = None) -> Tensor:
        """Received complex symbols ``(B,k)`` -> reconstruction float32 ``(B,3,R,R)`` in [0,1]
        (``(G(ws) + 1)/2``, clamped). ``h`` is not used (CSI-free decoder): an error if given."""
        if h is not None:
            raise ValueError("generative-jscc takes no h side input: use csi='none' or zf/mmse equalisation")
        ws, noises = self.latents(y, image_size)
        return to_unit_range(self.generator.synthesis(ws, noise=noises if noises is not None else "const"))

    def loss(self, out: dict, x: Tensor) -> Tensor:
        """Training loss: ``alpha * MSE(out["x_hat"], x) + beta * mean(perceptual(out["x_hat"], x))``, scalar."""
        return self._combined_loss(x.device)(out["x_hat"], x)

    def train(self, mode: bool = True) -> "GenerativeJSCC":
        super().train(mode)
        if not self.config["finetune_generator"]:
            self.generator.eval()  # a frozen prior stays in inference mode
        return self

    def warm_start(self, checkpoint: Mapping[str, Any]) -> None:
        """Load part of the model from a checkpoint dict, strictly:

        * ``stylegan2`` prior whose generator config equals ``config["generator"]``: the generator;
        * ``deepjscc`` with the same ``c`` and ``hidden``: the encoder;
        * ``generative-jscc`` with the same architecture (``c``, ``hidden``, ``generator``, head and
          noise options; the loss options may differ, e.g. fine-tuning with another ``beta``): all.

        Raises ValueError otherwise (the message names the mismatch).
        """
        name = checkpoint.get("model")
        if name == PRIOR_MODEL:
            _load_generator(self.generator, self.config["generator"], read_prior_checkpoint(checkpoint))
        elif name == "deepjscc":
            theirs = checkpoint["config"]
            if theirs.get("c") != self.c or list(theirs.get("hidden", [])) != self.config["hidden"]:
                raise ValueError(f"deepjscc checkpoint has c={theirs.get('c')}, hidden={theirs.get('hidden')}; this "
                                 f"model has c={self.c}, hidden={self.config['hidden']}")
            enc = {k[len("encoder."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
            _strict_load(self.encoder, enc, "deepjscc encoder")
        elif name == "generative-jscc":
            keys = ("c", "hidden", "generator", "head_width", "head_pool", "predict_noise")
            diff = [k for k in keys if checkpoint["config"].get(k) != self.config[k]]
            if diff:
                raise ValueError(f"generative-jscc checkpoint differs in architecture keys {diff}")
            _strict_load(self, checkpoint["state_dict"], "generative-jscc")
        else:
            raise ValueError(f"generative-jscc warm-starts from a stylegan2 prior, a deepjscc encoder or a "
                             f"generative-jscc checkpoint, not {name!r}")
