"""The interface every registered model family shares (as CompressAI's ``CompressionModel``).

A model maps images to complex channel symbols and back; the :class:`~jscc.system.JSCCSystem` wraps it
with power normalisation and the channel. What a model can do is **declared** by class attributes, read
by the system, the trainer and the CLI (never probed with ``hasattr``):

=======================  ==========================================================================
``snr_adaptive``         encoder and decoder take the channel SNR (``snr_db`` ``(B,)``); False: a sweep
                         may encode once for every SNR
``rate_adaptive``        one model sends several bandwidth ratios (:meth:`set_bandwidth_ratio`)
``sends_constellation``  the symbols are points of a unit-average-energy constellation, sent as they are
                         (scaled by ``sqrt(P)``, not renormalised per example)
``sends_layers``         the model drives the channel itself: ``transmit(x, link, stop_psnr_db)`` through
                         the link of :meth:`make_link` (layered, feedback and video models)
``variable_length``      a layered model that can stop sending once its estimate reaches a target PSNR
                         (``encode_layer``; ``stop_psnr_db``)
``has_feedback``         DeepJSCC-f: ``feedback_snr_db`` (None = noiseless)
``video``                clips ``(B, T, 3, H, W)``; ``clip_channel_uses(H, W, T)``
``defines_loss``         :meth:`loss` is the model's own objective (else the trainer's MSE / PSNR)
``size_multiple``        image sides must be multiples of this (data loaders cut images to it)
=======================  ==========================================================================

Every model also has ``config`` (its JSON-serialisable constructor arguments, for checkpoints),
``registry_name`` (set by :func:`~jscc.registry.register_model`), ``channel_uses(H, W)`` (complex channel
uses ``k`` per image) and ``bandwidth_ratio(H, W)`` (``k / (3 H W)``, exact). Image models ``encode``
float32 ``(B,3,H,W)`` in [0, 1] to complex64 ``(B, k)`` and ``decode`` back; their system output is the
dict ``{"x_hat", "z", "y", "h"?}`` (layered: also ``x_hat_prefix``, ``layers_sent``; video: ``channel_uses``).
"""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn as nn


class JSCCModel(nn.Module):
    """Base class of the registered JSCC models (see the module docstring for the interface)."""

    registry_name = "jscc-model"
    snr_adaptive = False
    rate_adaptive = False
    sends_constellation = False
    sends_layers = False
    variable_length = False
    has_feedback = False
    video = False
    defines_loss = False
    size_multiple = 4

    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses ``k`` per image of ``height`` x ``width`` pixels."""
        raise NotImplementedError

    def bandwidth_ratio(self, height: int, width: int) -> Fraction:
        """Exact ``k/n`` for an image size (``n = 3 H W`` source samples)."""
        return Fraction(self.channel_uses(height, width), 3 * height * width)

    def set_bandwidth_ratio(self, ratio) -> None:
        """Rate-adaptive models: send ``ratio`` from now on. ValueError for models of one ratio."""
        raise ValueError(f"{self.registry_name} sends one bandwidth ratio; only rate-adaptive models (swinjscc) "
                         "change it")

    def loss(self, out: dict, x: torch.Tensor) -> torch.Tensor:
        """The model's own training objective (``defines_loss``), from the system's output and the images."""
        raise NotImplementedError(f"{self.registry_name} has no loss of its own (defines_loss = False)")

    def warm_start(self, checkpoint: dict) -> None:
        """Initialise from a checkpoint of another model or configuration (e.g. ``adjscc`` from ``deepjscc``);
        ValueError when this model cannot start from it."""
        raise ValueError(f"{self.registry_name} {getattr(self, 'config', {})} cannot start from "
                         f"{checkpoint.get('model')} {checkpoint.get('config')}: give a checkpoint of the same model "
                         "and configuration")

    def make_link(self, system, snr_db, batch: int, device, generator: torch.Generator | None = None):
        """``sends_layers`` models: the link ``transmit`` sends through (default: the system's
        :class:`~jscc.system.LayerLink`)."""
        return system.layer_link(snr_db, batch, device, generator=generator)
