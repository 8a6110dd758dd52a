"""Power normalisation and SNR conversions (README, Conventions: "Power" and "SNR and noise").

- Average power per transmitted example over the LAST dimension, not per batch:
  ``(1/k) * sum_i |z_i|^2 = P``, enforced by ``z <- sqrt(k * P) * z / ||z||_2``.
- ``snr_db`` is Es/N0 per complex channel use relative to the nominal power ``P``;
  ``noise_var = N0 = E|n|^2 = P / 10^(snr_db / 10)``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["power_normalize", "PowerNormalize", "snr_db_to_lin", "snr_db_to_noise_var"]

SnrDb = float | int | np.ndarray | Tensor


def _check_symbols(z: Tensor, min_ndim: int = 1, name: str = "z") -> None:
    if not isinstance(z, Tensor) or not z.is_complex():
        got = z.dtype if isinstance(z, Tensor) else type(z).__name__
        raise TypeError(f"{name} must be a complex tensor of channel symbols (torch.complex64), got {got}")
    if z.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims (B, ..., k), got shape {tuple(z.shape)}")


def _check_power(power: float) -> None:
    if isinstance(power, bool) or not isinstance(power, numbers.Real):
        raise TypeError(f"power must be a real number, got {type(power).__name__}")
    if not (math.isfinite(power) and power > 0):
        raise ValueError(f"power must be a positive finite number, got {power!r}")


def _check_mask(mask: Tensor, z: Tensor) -> Tensor:
    """``mask`` as a bool tensor on ``z``'s device, broadcastable to ``z``."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a bool or 0/1 tensor, got {type(mask).__name__}")
    try:
        shape = torch.broadcast_shapes(mask.shape, z.shape)
    except RuntimeError:
        shape = None
    if shape != z.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to z of shape {tuple(z.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask must be bool or contain only 0 and 1")
        mask = mask != 0
    return mask.to(z.device)


def power_normalize(z: Tensor, power: float = 1.0, mask: Tensor | None = None, *, eps: float = 1e-12) -> Tensor:
    """Scale each example to average power ``power`` per complex channel use.

    ``z <- sqrt(k * P) * z / ||z||_2``, the norm taken over the last dim only, so an
    example's output does not depend on the rest of the batch.

    Args:
        z: complex symbols ``(B, ..., k)``, any complex dtype (kept; complex64 in the simulator).
        power: nominal average power ``P`` per complex channel use (linear, > 0).
        mask: optional bool or 0/1 tensor broadcastable to ``z``; ``True``/1 marks sent
            symbols. Then ``k`` = number of sent symbols of each example, masked-out
            symbols are set to exactly 0 and do not count.
        eps: floor on the norm, so an all-zero (or fully masked) example maps to zeros.
            Examples whose norm overflows (finite values beyond ~1e19 in complex64) are
            rescaled before normalising, so they too come out at power ``P``.

    Returns:
        Tensor of ``z``'s shape and dtype with ``(1/k) * sum |z_i|^2 = P`` over the
        (sent symbols of the) last dim. Differentiable w.r.t. ``z``.
    """
    _check_symbols(z)
    _check_power(power)
    if mask is None:
        k = z.shape[-1]
    else:
        mask = _check_mask(mask, z)
        z = z.masked_fill(~mask, 0)
        k = mask.expand(z.shape).sum(dim=-1, keepdim=True).to(z.real.dtype)
    norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    # Symbols beyond ~1e19 overflow the float32 sum of squares (norm inf: the output would be 0). Such
    # examples are divided by their largest |Re| / |Im| first; torch.where keeps every other example's
    # result (and gradient) bit for bit and needs no host sync on a GPU.
    finite = torch.isfinite(norm)
    peak = torch.maximum(z.real.abs(), z.imag.abs()).amax(dim=-1, keepdim=True).clamp_min(1.0)
    scaled = z / peak
    z = torch.where(finite, z, scaled)
    norm = torch.where(finite, norm, torch.linalg.vector_norm(scaled, dim=-1, keepdim=True)).clamp_min(eps)
    return z * ((k * power) ** 0.5 / norm)


class PowerNormalize(nn.Module):
    """Module form of :func:`power_normalize`: ``forward(z, mask=None)``, shapes as there."""

    def __init__(self, power: float = 1.0):
        super().__init__()
        _check_power(power)
        self.power = float(power)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        return power_normalize(z, self.power, mask)

    def extra_repr(self) -> str:
        return f"power={self.power}"


def snr_db_to_lin(snr_db: SnrDb) -> SnrDb:
    """``snr_lin = 10^(snr_db / 10)``.

    Args:
        snr_db: Es/N0 in dB: a Python/NumPy number, a NumPy array or a real tensor; finite.

    Returns:
        Same kind as the input: float for a scalar, ndarray for an array, tensor for a tensor.
    """
    if isinstance(snr_db, Tensor):
        if snr_db.is_complex() or snr_db.dtype == torch.bool:
            raise TypeError(f"snr_db must be a real tensor, got {snr_db.dtype}")
        if not torch.isfinite(snr_db).all():
            raise ValueError(f"snr_db must be finite, got {snr_db}")
        return torch.pow(10.0, snr_db / 10)
    if isinstance(snr_db, bool) or not isinstance(snr_db, (numbers.Real, np.ndarray)):
        raise TypeError(f"snr_db must be a real number, an array or a tensor, got {type(snr_db).__name__}")
    arr = np.asarray(snr_db, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"snr_db must be finite, got {snr_db!r}")
    lin = 10.0 ** (arr / 10)
    return lin if isinstance(snr_db, np.ndarray) else float(lin)


def snr_db_to_noise_var(snr_db: SnrDb, power: float = 1.0) -> SnrDb:
    """``noise_var = N0 = P / 10^(snr_db / 10)``: noise energy per complex channel use.

    Args:
        snr_db: Es/N0 per complex channel use in dB (float, array or tensor; finite).
        power: nominal signal power ``P`` (linear, > 0).

    Returns:
        ``N0`` (linear), same kind and shape as ``snr_db``.
    """
    _check_power(power)
    return power / snr_db_to_lin(snr_db)
