"""Rayleigh fading channel: ``y = h * z + n``, ``h ~ CN(0, 1)``, ``n ~ CN(0, N0)``.

``E|h|^2 = 1``, so the average received SNR equals ``snr_db`` (README, Conventions: "Fading").
Coherence (``block_length``):

- ``None``: one ``h`` per transmitted example, shared by all its layers (slow / block
  fading): for ``z`` of shape ``(B, L, k)``, ``h`` has shape ``(B, 1, 1)``.
- ``1``: fast fading, a new ``h`` per symbol, ``h.shape == z.shape``.
- ``b > 1``: a new ``h`` every ``b`` symbols along the last dim (the last block may be
  partial), independent across the other dims, expanded to ``z.shape``.

Channel state information: ``csi="none"`` (the decoder sees ``y`` only) or
``csi="receiver"`` with ``equalization`` ``"zf"`` (``y / h``, effective noise ``N0/|h|^2``),
``"mmse"`` (``conj(h) y / (|h|^2 + N0/P)``) or ``"side"`` (``y`` unequalised, ``h`` given
to the decoder as side input).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from .awgn import _complex_normal, _noise_var, _resolve_snr_db, awgn
from .power import SnrDb, _check_power, _check_symbols, snr_db_to_lin

__all__ = ["rayleigh", "equalize", "Rayleigh", "CSI_MODES", "EQUALIZATIONS"]

CSI_MODES = ("none", "receiver")
EQUALIZATIONS = (None, "zf", "mmse", "side")
_EQUALIZERS = ("zf", "mmse")


def _check_block_length(block_length: int | None) -> None:
    if block_length is None:
        return
    if isinstance(block_length, bool) or not isinstance(block_length, numbers.Integral):
        raise TypeError(f"block_length must be None or an int, got {type(block_length).__name__}")
    if block_length < 1:
        raise ValueError(f"block_length must be None or >= 1, got {block_length}")


def _draw_h(z: Tensor, block_length: int | None, generator: torch.Generator | None) -> Tensor:
    if block_length is None:
        return _complex_normal(z, (z.shape[0],) + (1,) * (z.ndim - 1), generator)
    k = z.shape[-1]
    h = _complex_normal(z, (*z.shape[:-1], math.ceil(k / block_length)), generator)
    return h.repeat_interleave(block_length, dim=-1)[..., :k]


def _check_h(h: Tensor, z: Tensor) -> Tensor:
    _check_symbols(h, name="h")
    try:
        shape = torch.broadcast_shapes(h.shape, z.shape)
    except RuntimeError:
        shape = None
    if shape != z.shape:
        raise ValueError(f"h of shape {tuple(h.shape)} does not broadcast to z of shape {tuple(z.shape)}")
    return h.to(device=z.device, dtype=z.dtype)


def rayleigh(
    z: Tensor,
    snr_db: SnrDb,
    *,
    block_length: int | None = None,
    power: float = 1.0,
    generator: torch.Generator | None = None,
    h: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Rayleigh fading plus AWGN: ``y = h * z + n``.

    Args:
        z: complex symbols ``(B, ..., k)``, complex64.
        snr_db: average Es/N0 per complex channel use in dB relative to ``power``: float,
            0-dim, ``(B,)`` or a tensor broadcastable to ``z`` (as in :func:`~channels.awgn`).
        block_length: coherence in symbols along the last dim: ``None`` (one ``h`` per
            example, shared by all layers), ``1`` (fast) or ``b >= 1``. See module docstring.
        power: nominal signal power ``P`` the SNR refers to.
        generator: source of ``h`` (drawn first) and then of the noise; on ``z``'s device.
        h: optional complex realisation broadcastable to ``z``, used instead of drawing
            one (``block_length`` is then ignored); cast to ``z``'s dtype/device.

    Returns:
        ``(y, h)``: ``y`` of ``z``'s shape and dtype; ``h`` complex, broadcastable to ``y``
        (``(B, 1, ..., 1)`` for ``block_length=None``, ``z.shape`` otherwise). ``h`` and the
        noise are constants: gradients flow to ``z`` only.
    """
    _check_symbols(z, min_ndim=2)
    _check_block_length(block_length)
    h = _draw_h(z, block_length, generator) if h is None else _check_h(h, z)
    return awgn(h * z, snr_db, power=power, generator=generator), h


def equalize(y: Tensor, h: Tensor, noise_var: float | Tensor, method: str, power: float = 1.0) -> Tensor:
    """Receiver equalisation with known ``h``.

    Args:
        y: complex received symbols ``(B, ..., k)``.
        h: complex channel, broadcastable to ``y``.
        noise_var: ``N0`` per complex use (linear), float or real tensor broadcastable to ``y``.
        method: ``"zf"`` -> ``y / h`` (effective noise ``N0/|h|^2``);
            ``"mmse"`` -> ``conj(h) * y / (|h|^2 + N0/P)``.
        power: nominal signal power ``P``.

    Returns:
        Equalised symbols, complex, shape of ``y``.
    """
    if method not in _EQUALIZERS:
        raise ValueError(f"method must be one of {_EQUALIZERS}, got {method!r}")
    _check_power(power)
    if method == "zf":
        return y / h
    return h.conj() * y / (h.abs().square() + noise_var / power)


class Rayleigh(nn.Module):
    """Module form of :func:`rayleigh` with explicit channel state information.

    Args:
        snr_db: default average SNR in dB (overridden by the call-time value).
        block_length: coherence, as in :func:`rayleigh`.
        csi: ``"none"`` or ``"receiver"``.
        equalization: with ``csi="receiver"``: ``"zf"``, ``"mmse"`` (default when None) or
            ``"side"``; must be None with ``csi="none"``.
        power: nominal signal power ``P``.

    ``forward(z, snr_db=None, *, generator=None, h=None)`` returns
    ``{"y": y, "h": h, "noise_var": N0}``: ``y`` complex ``(B, ..., k)``, equalised for
    ``"zf"``/``"mmse"``, the raw ``h*z + n`` for ``"side"`` and ``csi="none"``; ``h``
    complex broadcastable to ``y``; ``noise_var`` real, 0-dim or ``(B, 1, ..., 1)``.
    With ``csi="none"`` the ``h`` entry is for logging and tests only: the decoder must
    not use it (the system wrapper passes ``h`` on only for ``equalization="side"``).
    """

    name = "rayleigh"

    def __init__(
        self,
        snr_db: SnrDb | None = None,
        *,
        block_length: int | None = None,
        csi: str = "none",
        equalization: str | None = None,
        power: float = 1.0,
    ):
        super().__init__()
        if csi not in CSI_MODES:
            raise ValueError(f"csi must be one of {CSI_MODES}, got {csi!r}")
        if equalization not in EQUALIZATIONS:
            raise ValueError(f"equalization must be one of {EQUALIZATIONS}, got {equalization!r}")
        if csi == "none" and equalization is not None:
            raise ValueError(f"equalization={equalization!r} needs csi='receiver'; with csi='none' it must be None")
        if snr_db is not None:
            snr_db_to_lin(snr_db)
        _check_block_length(block_length)
        _check_power(power)
        self.snr_db = snr_db
        self.block_length = block_length
        self.csi = csi
        self.equalization = "mmse" if csi == "receiver" and equalization is None else equalization
        self.power = float(power)

    def forward(
        self,
        z: Tensor,
        snr_db: SnrDb | None = None,
        *,
        generator: torch.Generator | None = None,
        h: Tensor | None = None,
    ) -> dict:
        snr_db = _resolve_snr_db(snr_db, self.snr_db)
        y, h = rayleigh(z, snr_db, block_length=self.block_length, power=self.power, generator=generator, h=h)
        noise_var = _noise_var(z, snr_db, self.power)
        if self.equalization in _EQUALIZERS:
            y = equalize(y, h, noise_var, self.equalization, self.power)
        return {"y": y, "h": h, "noise_var": noise_var}

    def channel_config(self) -> dict:
        """The ``channel`` entry of a results file."""
        return {"name": self.name, "csi": self.csi, "block_length": self.block_length, "equalization": self.equalization}

    def extra_repr(self) -> str:
        return (
            f"snr_db={self.snr_db}, block_length={self.block_length}, csi={self.csi!r}, "
            f"equalization={self.equalization!r}, power={self.power}"
        )
