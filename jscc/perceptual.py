"""Pluggable perceptual distances and the ``alpha * MSE + beta * perceptual`` loss of
DeepJSCC-perception (Erdemir, Tung, Dragotti & Gündüz, "Generative joint source-channel coding for
semantic image transmission", IEEE JSAC 2023).

::

    x_hat, x (B,3,H,W) in [0,1] ─► build_perceptual(name)(x_hat, x) ─► d (B,)   (0 for x_hat == x)
                                ─► CombinedLoss(alpha, beta, d)(x_hat, x) ─► alpha*MSE + beta*mean(d)

Every distance module has a ``name`` that a result must record beside its values (README,
Conventions, Metrics: a substitute perceptual metric is recorded under its own name, never as LPIPS):

==================  ==============================================================================
``"lpips-alex"``    LPIPS v0.1, AlexNet trunk, ``normalize=True`` (:func:`jscc.metrics.load_lpips`): the
                    metric; its ImageNet trunk ships with the package (works offline).
``"lpips-vgg"``     LPIPS v0.1, VGG16 trunk (the DeepJSCC-perception paper's loss); the trunk is converted
                    on first use (:mod:`jscc.lpips_backbones`), else
                    :class:`~jscc.metrics.LPIPSUnavailableError` (never a random trunk).
``"ssim"``          ``1 - SSIM`` (``pytorch-msssim``, 11x11 Gaussian window, ``data_range=1``):
                    a substitute, defined at 32x32, where MS-SSIM is not.
``"disc-features"`` LPIPS-style distance between the unit-normalised feature maps of a trained
                    StyleGAN2 :class:`~jscc.models.stylegan2.Discriminator` (no learned weights);
                    the name carries the SHA-256 of the discriminator's tensors,
                    ``"disc-features:<12 hex>"``, so results from different discriminators differ.
==================  ==============================================================================

The modules are frozen (no parameters require grad) but differentiable w.r.t. their inputs, so
they serve as training / inversion losses.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytorch_msssim
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from jscc.metrics import LPIPSUnavailableError, _check_pair, load_lpips, lpips_distance
from jscc.results import state_dict_sha256

__all__ = [
    "PERCEPTUAL_NAMES",
    "build_perceptual",
    "LPIPSDistance",
    "SSIMDistance",
    "DiscFeatureDistance",
    "load_discriminator",
    "state_dict_sha256",
    "CombinedLoss",
    "LPIPSUnavailableError",
]

PERCEPTUAL_NAMES = ("lpips-alex", "lpips-vgg", "ssim", "disc-features")


class LPIPSDistance(nn.Module):
    """LPIPS v0.1 distance per image: ``(x_hat, x) (B,3,H,W) in [0,1] -> (B,)``, >= 0.

    ``net="alex"`` (``H, W >= 31``, name ``"lpips-alex"``) or ``"vgg"`` (``H, W >= 16``, ``"lpips-vgg"``).
    Raises :class:`~jscc.metrics.LPIPSUnavailableError` at construction when the trunk is
    unavailable (the message says how to provide it).
    """

    def __init__(self, device: str | torch.device = "cpu", net: str = "alex"):
        super().__init__()
        self.lpips = load_lpips(device, net)
        self.name = f"lpips-{net}"

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return lpips_distance(self.lpips, x_hat, x)


class SSIMDistance(nn.Module):
    """``1 - SSIM`` per image: ``(x_hat, x) (B,C,H,W) in [0,1] -> (B,)``, unitless, in ``[0, 2]``,
    0 for identical images. ``pytorch_msssim.ssim`` with ``data_range=1``, 11x11 window (sides
    below 11 px are not smoothed along that axis, as pytorch-msssim does, with its warning)."""

    name = "ssim"

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        _check_pair(x_hat, x)
        return 1 - pytorch_msssim.ssim(x_hat, x, data_range=1.0, size_average=False)


def load_discriminator(source: Any, config: Mapping[str, Any] | None = None) -> nn.Module:
    """A StyleGAN2 :class:`~jscc.models.stylegan2.Discriminator` from weights, loaded strictly.

    Args:
        source: a ``Discriminator``; a path to a ``torch.save`` file (``weights_only=True``); the
            name of a zoo prior (``jscc.zoo``) whose file holds its discriminator; or a dict in one
            of these forms:

            * ``{"config": {...}, "state_dict": {...}}`` (e.g. ``"model": "stylegan2-discriminator"``);
            * a prior-training checkpoint: ``jscc.priors.train_prior``'s ``last.pt`` (state dict
              ``"D"``, config ``"discriminator_config"``), or one holding ``"discriminator"``: a
              ``{"config", "state_dict"}`` dict, or the state dict with ``"discriminator_config"``;
            * a bare state dict, with ``config`` given (sizes are never guessed from shapes).
        config: ``Discriminator`` keyword arguments (``resolution``, ``channel_base``, ``channel_max``,
            ...); required for a bare state dict, else must agree with the stored config.

    Returns:
        The discriminator in eval mode, every parameter frozen.

    Raises:
        ValueError: an unrecognised layout, a missing config, disagreeing configs, or weights that
            do not match the architecture (missing / unexpected / wrongly shaped tensors).
    """
    from jscc.models.stylegan2 import Discriminator

    if isinstance(source, Discriminator):
        disc = source
    else:
        if isinstance(source, (str, os.PathLike)):
            from jscc.zoo import resolve_prior  # a path, or a zoo prior's file

            source = torch.load(resolve_prior(source), map_location="cpu", weights_only=True)
        if not isinstance(source, Mapping):
            raise ValueError(f"expected a Discriminator, a checkpoint path or dict, got {type(source).__name__}")
        stored, state = _discriminator_parts(source)
        if stored is not None and config is not None and dict(stored) != dict(config):
            raise ValueError(f"discriminator config {dict(config)} differs from the stored {dict(stored)}")
        cfg = stored if stored is not None else config
        if cfg is None:
            raise ValueError("a bare discriminator state dict needs config= (resolution, channel_base, channel_max, "
                             "...): sizes are not guessed from weight shapes")
        disc = Discriminator(**cfg)
        try:
            disc.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"discriminator weights do not match {dict(cfg)}: {err}") from None
    disc.requires_grad_(False)
    return disc.eval()


def _discriminator_parts(source: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Mapping[str, Tensor]]:
    """``(config or None, state dict)`` of the dict forms :func:`load_discriminator` accepts."""
    if "D" in source and isinstance(source["D"], Mapping):  # jscc.priors.train_prior's last.pt
        if "discriminator_config" not in source:
            raise ValueError("checkpoint holds a discriminator 'D' but no 'discriminator_config'")
        return source["discriminator_config"], source["D"]
    if "discriminator" in source:
        inner = source["discriminator"]
        if isinstance(inner, Mapping) and "state_dict" in inner:
            return inner.get("config"), inner["state_dict"]
        if isinstance(inner, Mapping):
            return source.get("discriminator_config"), inner
        raise ValueError(f"'discriminator' entry is a {type(inner).__name__}, not a state dict")
    if "state_dict" in source:
        model = source.get("model")
        if model not in (None, "stylegan2-discriminator", "stylegan2-d"):
            raise ValueError(f"checkpoint holds model {model!r}, not a StyleGAN2 discriminator "
                             "(a generator prior checkpoint has no discriminator features)")
        return source.get("config"), source["state_dict"]
    if all(isinstance(v, Tensor) for v in source.values()):
        return None, source
    raise ValueError(f"unrecognised discriminator checkpoint layout (keys {sorted(map(str, source))[:8]})")


class DiscFeatureDistance(nn.Module):
    """Feature distance of a trained StyleGAN2 discriminator, LPIPS-style with uniform weights.

    ``d(x_hat, x) = sum_l mean_{h,w} || f_l(x_hat) - f_l(x) ||_2^2`` over the feature maps ``f_l``
    of :meth:`Discriminator.features` (fromRGB output and every block output, or the ``layers``
    chosen), each unit-normalised along channels (``f / (||f||_2 + 1e-10)``, as LPIPS does).

    Args:
        discriminator: anything :func:`load_discriminator` accepts.
        config: the discriminator config, for a bare state dict.
        layers: indices into ``features()`` to use (default all).

    ``(x_hat, x)`` float ``(B,3,R,R)`` in [0,1] (R = the discriminator's resolution) -> ``(B,)``,
    unitless, >= 0, 0 for identical images. ``name = "disc-features:<first 12 hex of the SHA-256
    of the discriminator's tensors>"``; ``sha256`` holds the full digest.
    """

    def __init__(self, discriminator: Any, config: Mapping[str, Any] | None = None,
                 layers: list[int] | tuple[int, ...] | None = None):
        super().__init__()
        self.discriminator = load_discriminator(discriminator, config)
        n_features = len(self.discriminator.blocks) + 1
        if layers is not None:
            layers = [int(i) for i in layers]
            if not layers or any(not -n_features <= i < n_features for i in layers):
                raise ValueError(f"layers must index the {n_features} feature maps, got {layers}")
        self.layers = layers
        self.sha256 = state_dict_sha256(self.discriminator.state_dict())
        self.name = f"disc-features:{self.sha256[:12]}"

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        from jscc.models.stylegan2 import from_unit_range

        _check_pair(x_hat, x)
        feats = self.discriminator.features(from_unit_range(torch.cat([x_hat, x])))
        if self.layers is not None:
            feats = [feats[i] for i in self.layers]
        b = x.shape[0]
        total = x.new_zeros(b)
        for f in feats:
            f = f / (f.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (f[:b] - f[b:]).square().sum(dim=1).mean(dim=(1, 2))
        return total


def build_perceptual(name: str, **kwargs) -> nn.Module:
    """The perceptual distance ``name`` (see the module docstring), frozen, in eval mode.

    Keyword arguments: ``"lpips-alex"``, ``"lpips-vgg"``: ``device``; ``"ssim"``: none; ``"disc-features"``:
    ``discriminator`` (required: a path, checkpoint dict or module), ``config``, ``layers``.

    Raises:
        ValueError: unknown name or arguments. LPIPSUnavailableError: ``"lpips-vgg"`` without its trunk.
    """
    if name in ("lpips-alex", "lpips-vgg"):
        module = LPIPSDistance(**kwargs, net=name.split("-")[1])
    elif name == "ssim":
        if kwargs:
            raise ValueError(f"perceptual 'ssim' takes no arguments, got {sorted(kwargs)}")
        module = SSIMDistance()
    elif name == "disc-features":
        if "discriminator" not in kwargs:
            raise ValueError("perceptual 'disc-features' needs discriminator=<path or checkpoint dict of a trained "
                             "StyleGAN2 discriminator>")
        module = DiscFeatureDistance(**kwargs)
    else:
        raise ValueError(f"unknown perceptual distance {name!r}; choose from {', '.join(PERCEPTUAL_NAMES)}")
    module.requires_grad_(False)
    return module.eval()


class CombinedLoss(nn.Module):
    """``alpha * MSE + beta * mean(perceptual)``: the DeepJSCC-perception objective.

    Args:
        alpha: weight of the MSE (mean over all pixels and channels, [0,1] images), >= 0.
        beta: weight of the perceptual distance (mean over the batch), >= 0; with ``beta == 0`` the
            perceptual module is not evaluated (and may be None).
        perceptual: a distance module ``(x_hat, x) -> (B,)`` with a ``name`` (see
            :func:`build_perceptual`).

    ``forward(x_hat, x)`` -> scalar loss; :meth:`terms` -> ``{"loss", "mse", "perceptual"}``.
    The perceptual module is not registered as a submodule (its weights stay out of model
    checkpoints and optimisers).
    """

    def __init__(self, alpha: float, beta: float, perceptual: nn.Module | None):
        super().__init__()
        if not (alpha >= 0 and beta >= 0) or alpha + beta == 0:
            raise ValueError(f"alpha and beta must be >= 0 and not both 0, got alpha={alpha}, beta={beta}")
        if beta > 0 and perceptual is None:
            raise ValueError("beta > 0 needs a perceptual distance module")
        self.alpha, self.beta = float(alpha), float(beta)
        self._perceptual = [perceptual]  # a list: not a submodule

    @property
    def perceptual(self) -> nn.Module | None:
        return self._perceptual[0]

    @property
    def perceptual_name(self) -> str | None:
        return None if self.perceptual is None else self.perceptual.name

    def terms(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        """``{"loss": scalar, "mse": scalar, "perceptual": scalar (mean over the batch) or None}``."""
        mse = F.mse_loss(x_hat, x)
        perc = self.perceptual(x_hat, x).mean() if self.beta > 0 else None
        loss = self.alpha * mse + (self.beta * perc if perc is not None else 0.0)
        return {"loss": loss, "mse": mse, "perceptual": perc}

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return self.terms(x_hat, x)["loss"]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:g}, perceptual={self.perceptual_name}"
