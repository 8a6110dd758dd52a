"""The JSCC system: the one place that wires a model to power normalisation and a channel.

::

    x ─► model.encode ─► power_normalize ─► channel ─► model.decode ─► x_hat
         (B,3,H,W)        z (B,k) complex    y (B,k)     (B,3,H,W)

Training, sweeps and the demo all call this wrapper.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from channels import PowerNormalize


class JSCCSystem(nn.Module):
    """Model + power normalisation + channel.

    Args:
        model: a registered model with ``encode(x, snr_db)`` and ``decode(y, image_size, snr_db, h)``.
        channel: a channel Module from ``channels`` (``AWGN``, ``Rayleigh``); its forward returns a
            dict with ``y`` (and ``h`` for fading).

    Power normalisation uses the channel's nominal power ``P`` (``channel.power``, default 1), so
    the SNR the channel applies always refers to the power actually enforced.

    The decoder receives ``h`` only when the channel has ``csi="receiver"`` and
    ``equalization="side"``; with ``csi="none"`` the realisation is returned for logging only.
    """

    def __init__(self, model: nn.Module, channel: nn.Module):
        super().__init__()
        self.model = model
        self.channel = channel
        self.power_norm = PowerNormalize(getattr(channel, "power", 1.0))

    @property
    def decoder_gets_h(self) -> bool:
        return getattr(self.channel, "csi", "none") == "receiver" and getattr(self.channel, "equalization", None) == "side"

    def resolve_snr(self, snr_db: float | torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """The SNR of each example as a float32 ``(B,)`` tensor in dB (call-time value, else the channel's)."""
        if snr_db is None:
            snr_db = getattr(self.channel, "snr_db", None)
            if snr_db is None:
                raise ValueError("no SNR given: pass snr_db at call time or build the channel with one")
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
        if not torch.isfinite(snr).all():
            raise ValueError(f"snr_db must be finite, got {snr_db!r}")
        if snr.numel() not in (1, batch):
            raise ValueError(f"snr_db must be a float or hold one value per example (B = {batch}), got shape {tuple(snr.shape)}")
        return snr.reshape(-1).expand(batch)

    def encode(self, x: torch.Tensor, snr_db: float | torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(B,3,H,W)`` -> power-normalised complex64 symbols ``(B,k)``.

        ``snr_db`` may be omitted for models whose encoder ignores it (``snr_adaptive = False``).
        """
        needs_snr = snr_db is not None or getattr(self.model, "snr_adaptive", True)
        snr = self.resolve_snr(snr_db, x.shape[0], x.device) if needs_snr else None
        return self.power_norm(self.model.encode(x, snr_db=snr))

    def receive(
        self,
        z: torch.Tensor,
        image_size: tuple[int, int],
        snr_db: float | torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sent symbols ``z`` (B,k) -> channel -> decoder. Returns ``{"x_hat", "y", "h"?}``."""
        snr = self.resolve_snr(snr_db, z.shape[0], z.device)
        out = self.channel(z, snr_db=snr, generator=generator)
        h = out.get("h")
        x_hat = self.model.decode(out["y"], image_size, snr_db=snr, h=h if self.decoder_gets_h else None)
        result = {"x_hat": x_hat, "y": out["y"]}
        if h is not None:
            result["h"] = h
        return result

    def forward(
        self,
        x: torch.Tensor,
        snr_db: float | torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Transmit images ``x`` float32 ``(B,3,H,W)`` in [0,1].

        Args:
            snr_db: Es/N0 per complex use in dB, a float or a ``(B,)`` tensor; None uses the channel's.
            generator: source of the channel randomness.

        Returns:
            ``{"x_hat": (B,3,H,W), "z": complex (B,k), "y": complex (B,k), "h": ...}`` (``h`` for fading).
        """
        snr = self.resolve_snr(snr_db, x.shape[0], x.device)
        z = self.encode(x, snr)
        return {"z": z, **self.receive(z, x.shape[-2:], snr, generator=generator)}

    def channel_uses(self, height: int, width: int) -> int:
        return self.model.channel_uses(height, width)
