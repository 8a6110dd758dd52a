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
from jscc.models.base import JSCCModel


class JSCCSystem(nn.Module):
    """Model + power normalisation + channel.

    Args:
        model: a registered model (:class:`~jscc.models.JSCCModel`): ``encode(x, snr_db)`` and
            ``decode(y, image_size, snr_db, h)``, or ``transmit`` for ``sends_layers`` models.
        channel: a channel Module from ``channels`` (``AWGN``, ``Rayleigh``); its forward returns a
            dict with ``y`` (and ``h`` for fading).

    Power normalisation uses the channel's nominal power ``P`` (``channel.power``, default 1), so
    the SNR the channel applies always refers to the power actually enforced. Models that send points of a
    fixed constellation (``sends_constellation = True``, e.g. DeepJSCC-Q) are not renormalised per example:
    their unit-average-energy points are sent as they are, scaled by ``sqrt(P)``, so the average power holds
    over the constellation and an example's own power is what its points give (recorded by the sweeps as
    ``symbol_power``).

    The decoder receives ``h`` only when the channel knows it (``csi="receiver"``; OFDM ``perfect`` / ``ls``)
    and has ``equalization="side"``; otherwise a returned realisation is for logging only.
    """

    def __init__(self, model: JSCCModel, channel: nn.Module):
        super().__init__()
        if not isinstance(model, JSCCModel):
            raise TypeError(f"model must be a registered model, a jscc.models.JSCCModel such as "
                            f"jscc.build_model('deepjscc') or jscc.load(...), got {type(model).__name__}")
        if not isinstance(channel, nn.Module):
            hint = f" (build it by name: channels.build_channel({channel!r}, snr_db=...))" if isinstance(channel, str) else ""
            raise TypeError(f"channel must be a channel Module such as channels.AWGN(10.0), got "
                            f"{type(channel).__name__} {channel!r}{hint}")
        self.model = model
        self.channel = channel
        self.power_norm = PowerNormalize(getattr(channel, "power", 1.0))

    @property
    def decoder_gets_h(self) -> bool:
        return getattr(self.channel, "csi", "none") != "none" and getattr(self.channel, "equalization", None) == "side"

    def resolve_snr(self, snr_db: float | torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """The SNR of each example as a float32 ``(B,)`` tensor in dB (call-time value, else the channel's)."""
        if snr_db is None:
            snr_db = getattr(self.channel, "snr_db", None)
            if snr_db is None:
                raise ValueError("no SNR given: pass snr_db at call time or build the channel with one")
        try:
            if isinstance(snr_db, (str, bytes)):
                raise TypeError("a string")
            snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"snr_db must be a number or a tensor of dB values, got {snr_db!r} ({err})") from None
        if not torch.isfinite(snr).all():
            raise ValueError(f"snr_db must be finite, got {snr_db!r}")
        if snr.numel() not in (1, batch):
            raise ValueError(f"snr_db must be a float or hold one value per example (B = {batch}), got shape {tuple(snr.shape)}")
        return snr.reshape(-1).expand(batch)

    def encode(self, x: torch.Tensor, snr_db: float | torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(B,3,H,W)`` -> power-normalised complex64 symbols ``(B,k)``.

        ``snr_db`` may be omitted for models whose encoder ignores it (``snr_adaptive = False``).
        """
        needs_snr = snr_db is not None or self.model.snr_adaptive
        snr = self.resolve_snr(snr_db, x.shape[0], x.device) if needs_snr else None
        z = self.model.encode(x, snr_db=snr)
        if self.model.sends_constellation:  # unit-average-energy grid points, sent as they are
            return z * self.power_norm.power ** 0.5
        return self.power_norm(z)

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
        stop_psnr_db: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Transmit images ``x`` float32 ``(B,3,H,W)`` in [0,1].

        Args:
            snr_db: Es/N0 per complex use in dB, a float or a ``(B,)`` tensor (layered models also
                ``(B, L)``); None uses the channel's.
            generator: source of the channel randomness.
            stop_psnr_db: variable-length mode of layered models that send layer by layer.

        Returns:
            ``{"x_hat": (B,3,H,W), "z": complex (B,k), "y": complex (B,k), "h": ...}`` (``h`` for fading);
            layered models: ``z``/``y`` ``(B,L,k_l)`` plus ``x_hat_prefix`` ``(B,L,3,H,W)`` and
            ``layers_sent`` ``(B,)`` (see :mod:`jscc.models.layered`).
        """
        if self.layered:  # the model drives the channel itself, through its own link or a LayerLink
            link = self.model.make_link(self, snr_db, x.shape[0], x.device, generator=generator)
            return self.model.transmit(x, link, stop_psnr_db=stop_psnr_db)
        if stop_psnr_db is not None:
            raise ValueError(f"{self.model.registry_name} has no variable-length mode (stop_psnr_db)")
        snr = self.resolve_snr(snr_db, x.shape[0], x.device)
        z = self.encode(x, snr)
        return {"z": z, **self.receive(z, x.shape[-2:], snr, generator=generator)}

    @property
    def layered(self) -> bool:
        """Whether the model sends layers itself (``transmit``; DeepJSCC-l, DeepJSCC-f)."""
        return self.model.sends_layers

    def layer_link(self, snr_db, batch: int, device, *, generator=None, tx_generator=None) -> "LayerLink":
        """The :class:`LayerLink` a layered model sends through. ``snr_db``: a float, ``(B,)``, or
        per layer ``(B, L)`` / ``(1, L)`` (layers may see different SNRs)."""
        layers = self.model.layers
        snr = torch.as_tensor(getattr(self.channel, "snr_db", None) if snr_db is None else snr_db,
                              dtype=torch.float32, device=device)
        if snr.ndim == 2:
            if snr.shape[1] != layers or snr.shape[0] not in (1, batch) or not torch.isfinite(snr).all():
                raise ValueError(f"per-layer snr_db must be finite with shape (B, L) = ({batch}, {layers}) or "
                                 f"(1, {layers}), got {tuple(snr.shape)}")
            snr = snr.expand(batch, layers)
        else:
            snr = self.resolve_snr(snr_db, batch, device).unsqueeze(1).expand(batch, layers)
        if self.decoder_gets_h:
            raise ValueError("layered models take no h side input: use csi='none' or zf/mmse equalisation")
        return LayerLink(self, snr, generator, tx_generator)

    def channel_uses(self, height: int, width: int) -> int:
        return self.model.channel_uses(height, width)


class LayerLink:
    """The channel as a layered model uses it, one call per group of layers.

    ``send(z, first_layer)`` power-normalises each layer of ``z`` ``(B, n, k_l)`` over its own
    symbols, applies the channel at those layers' SNRs and returns ``(z_normalised, y)``. Under
    slow fading (``block_length=None``) the ``h`` drawn for the first layer is reused for every
    later one: one ``h`` per image for all its layers. ``simulate`` passes symbols through an
    independent realisation of the channel (``tx_generator``), for a transmitter that has no
    feedback; ``result`` assembles the model's output dict.
    """

    def __init__(self, system: JSCCSystem, snr_db: torch.Tensor, generator=None, tx_generator=None):
        self.system, self.snr_db, self.generator = system, snr_db, generator
        self.layers = snr_db.shape[1]
        self.power = system.power_norm.power
        self.h = None
        if tx_generator is None:
            device = snr_db.device
            seed = int(torch.randint(2**62, (1,), generator=generator, device=device)) if generator is not None else None
            tx_generator = torch.Generator(device=device)
            tx_generator.manual_seed(seed) if seed is not None else tx_generator.seed()
        self.tx_generator = tx_generator

    def _slow_fading(self) -> bool:
        return getattr(self.system.channel, "block_length", 0) is None

    def send(self, z: torch.Tensor, first_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers ``first_layer .. first_layer+n-1`` as complex ``(B, n, k_l)`` -> ``(z_normalised, y)``."""
        if z.ndim != 3 or first_layer + z.shape[1] > self.layers:
            raise ValueError(f"expected (B, n, k_l) symbols of layers within 0..{self.layers - 1}, got "
                             f"{tuple(z.shape)} from layer {first_layer}")
        z = self.system.power_norm(z)
        snr = self.snr_db[:, first_layer:first_layer + z.shape[1], None]
        extra = {"h": self.h} if self.h is not None else {}
        out = self.system.channel(z, snr_db=snr, generator=self.generator, **extra)
        if "h" in out and self._slow_fading():
            self.h = out["h"]
        return z, out["y"]

    def simulate(self, z: torch.Tensor, first_layer: int) -> torch.Tensor:
        """``z`` (normalised, ``(B, n, k_l)``) through an independent channel realisation."""
        snr = self.snr_db[:, first_layer:first_layer + z.shape[1], None]
        return self.system.channel(z, snr_db=snr, generator=self.tx_generator)["y"]

    def result(self, *, x_hat_prefix: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stable output dict of a layered transmission with all layers sent."""
        out = {"x_hat": x_hat_prefix[:, -1], "x_hat_prefix": x_hat_prefix, "z": z, "y": y,
               "layers_sent": torch.full((z.shape[0],), z.shape[1], dtype=torch.int64, device=z.device)}
        if self.h is not None:
            out["h"] = self.h
        return out
