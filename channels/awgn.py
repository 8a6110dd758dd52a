"""Additive white Gaussian noise channel: ``y = z + n``, ``n ~ CN(0, N0)``.

``N0 = P / 10^(snr_db / 10)`` per complex channel use; real and imaginary parts of
``n`` are independent, each with variance ``N0 / 2`` (README, Conventions: "SNR and noise").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .power import SnrDb, _check_power, _check_symbols, snr_db_to_lin, snr_db_to_noise_var

__all__ = ["awgn", "AWGN"]


def _snr_db_like(z: Tensor, snr_db: SnrDb) -> Tensor:
    """``snr_db`` as a real tensor on ``z``'s device that broadcasts against ``z`` ``(B, ..., k)``.

    A scalar stays 0-dim; a ``(B,)`` (or ``(1,)``) tensor becomes ``(B, 1, ..., 1)``;
    any other shape must already broadcast to ``z.shape``.
    """
    snr_db_to_lin(snr_db)  # type and finiteness checks, one place for all channels
    snr = torch.as_tensor(snr_db, dtype=z.real.dtype, device=z.device)
    if snr.ndim == 1 and snr.shape[0] in (1, z.shape[0]):
        return snr.reshape(-1, *([1] * (z.ndim - 1)))
    if snr.ndim != 1:
        try:
            if torch.broadcast_shapes(snr.shape, z.shape) == z.shape:
                return snr
        except RuntimeError:
            pass
    raise ValueError(
        f"snr_db of shape {tuple(snr.shape)} is not broadcastable to the batch of z with shape "
        f"{tuple(z.shape)}: expected a scalar, shape (B,)=({z.shape[0]},) or a shape broadcastable to z"
    )


def _noise_var(z: Tensor, snr_db: SnrDb, power: float) -> Tensor:
    """``N0`` as a real tensor broadcastable to ``z`` (0-dim or ``(B, 1, ..., 1)``)."""
    return snr_db_to_noise_var(_snr_db_like(z, snr_db), power)


def _complex_normal(like: Tensor, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """``CN(0, 1)`` samples of ``shape``, ``like``'s complex dtype and device.

    Drawn as one ``torch.randn((*shape, 2))`` (real, imag interleaved), scaled by ``sqrt(1/2)``.
    """
    if generator is not None and generator.device.type != like.device.type:
        raise ValueError(f"generator is on {generator.device} but z is on {like.device}")
    w = torch.randn((*shape, 2), generator=generator, device=like.device, dtype=like.dtype.to_real())
    return torch.view_as_complex(w) * 0.5**0.5


def _resolve_snr_db(call: SnrDb | None, default: SnrDb | None) -> SnrDb:
    snr_db = default if call is None else call
    if snr_db is None:
        raise ValueError("snr_db must be given at call time or when building the channel")
    return snr_db


def awgn(z: Tensor, snr_db: SnrDb, *, power: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Add complex white Gaussian noise: ``y = z + n``.

    Args:
        z: complex symbols ``(B, ..., k)``, complex64 (the noise takes ``z``'s dtype/device).
        snr_db: Es/N0 per complex channel use in dB relative to ``power``: a float, a
            0-dim tensor, a ``(B,)`` tensor (one SNR per example, reshaped to
            ``(B, 1, ..., 1)``) or a tensor broadcastable to ``z``.
        power: nominal signal power ``P`` the SNR refers to (not the measured power).
        generator: source of the noise; must be on ``z``'s device.

    Returns:
        ``y``: same shape and dtype as ``z``, with ``E|n|^2 = N0 = P / 10^(snr_db/10)``,
        real and imaginary parts each of variance ``N0/2``. Differentiable w.r.t. ``z``.
    """
    _check_symbols(z, min_ndim=2)
    _check_power(power)
    noise_var = _noise_var(z, snr_db, power)
    return z + _complex_normal(z, z.shape, generator) * noise_var.sqrt()


class AWGN(nn.Module):
    """Module form of :func:`awgn`.

    ``forward(z, snr_db=None, *, generator=None) -> {"y": y, "noise_var": N0}``: ``y``
    complex ``(B, ..., k)`` as ``z``; ``noise_var`` real (linear ``N0``), 0-dim or
    ``(B, 1, ..., 1)``, broadcastable to ``y``. The call-time ``snr_db`` overrides the
    one given here; one of the two is required.
    """

    name = "awgn"

    def __init__(self, snr_db: SnrDb | None = None, power: float = 1.0):
        super().__init__()
        if snr_db is not None:
            snr_db_to_lin(snr_db)
        _check_power(power)
        self.snr_db = snr_db
        self.power = float(power)

    def forward(self, z: Tensor, snr_db: SnrDb | None = None, *, generator: torch.Generator | None = None) -> dict:
        snr_db = _resolve_snr_db(snr_db, self.snr_db)
        y = awgn(z, snr_db, power=self.power, generator=generator)
        return {"y": y, "noise_var": _noise_var(z, snr_db, self.power)}

    def channel_config(self) -> dict:
        """The ``channel`` entry of a results file."""
        return {"name": self.name, "csi": "none", "block_length": None}

    def extra_repr(self) -> str:
        return f"snr_db={self.snr_db}, power={self.power}"
