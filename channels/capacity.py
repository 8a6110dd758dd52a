"""Information-theoretic references, in bits per complex channel use.

All functions take ``snr_db`` (Es/N0 per complex use, dB) as a Python/NumPy number, a
NumPy array or a real tensor, and return the same kind (float / ndarray / tensor).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from scipy.special import exp1
from torch import Tensor

from .power import SnrDb, snr_db_to_lin

__all__ = ["awgn_capacity", "rayleigh_outage_probability", "rayleigh_ergodic_capacity"]

# Above this x, exp(x) * E1(x) is taken from its asymptotic series (exp(x) overflows near 709).
_ASYMPTOTIC_X = 50.0


def _xp(x):
    return torch if isinstance(x, Tensor) else np


def _like_input(value, snr_db: SnrDb):
    """A float for scalar inputs, else ``value`` unchanged (ndarray or tensor)."""
    return value if isinstance(snr_db, (Tensor, np.ndarray)) else float(value)


def awgn_capacity(snr_db: SnrDb) -> SnrDb:
    """``C = log2(1 + snr_lin)`` bits per complex channel use (``awgn_capacity(0) == 1``)."""
    snr = snr_db_to_lin(snr_db)
    return _like_input(_xp(snr).log2(1 + snr), snr_db)


def rayleigh_outage_probability(rate: float | np.ndarray | Tensor, snr_db: SnrDb) -> SnrDb:
    """Slow Rayleigh outage ``P[log2(1 + |h|^2 snr_lin) < R] = 1 - exp(-(2^R - 1) / snr_lin)``, ``h ~ CN(0, 1)``.

    Args:
        rate: ``R`` in bits per complex channel use, >= 0 (number, array or tensor).
        snr_db: average Es/N0 in dB (broadcasts with ``rate``).

    Returns:
        Outage probability in [0, 1]; a tensor if either input is a tensor.
    """
    scalar = not any(isinstance(v, (Tensor, np.ndarray)) for v in (rate, snr_db))
    if isinstance(rate, Tensor) or isinstance(snr_db, Tensor):
        like = rate if isinstance(rate, Tensor) else snr_db
        dtype = like.dtype if like.is_floating_point() else torch.float32
        rate, snr_db = (torch.as_tensor(v, dtype=dtype, device=like.device) for v in (rate, snr_db))
    elif isinstance(rate, bool) or not isinstance(rate, (numbers.Real, np.ndarray)):
        raise TypeError(f"rate must be a real number, an array or a tensor, got {type(rate).__name__}")
    else:
        rate = np.asarray(rate, dtype=np.float64)
    xp = _xp(rate)
    if not (xp.isfinite(rate) & (rate >= 0)).all():
        raise ValueError(f"rate must be finite and >= 0, got {rate}")
    p = -xp.expm1(-(xp.exp2(rate) - 1) / snr_db_to_lin(snr_db))
    return float(p) if scalar else p


def _exp_e1(x: np.ndarray) -> np.ndarray:
    """``exp(x) * E1(x)`` for ``x > 0``, stable for large ``x``."""
    small = np.minimum(x, _ASYMPTOTIC_X)
    direct = np.exp(small) * exp1(small)
    # e^x E1(x) ~ sum_n (-1)^n n! / x^(n+1); 20 terms: relative error < 1e-15 for x >= 50.
    big = np.maximum(x, _ASYMPTOTIC_X)
    series = sum((-1) ** n * math.factorial(n) / big ** (n + 1) for n in range(20))
    return np.where(x < _ASYMPTOTIC_X, direct, series)


def rayleigh_ergodic_capacity(snr_db: SnrDb) -> SnrDb:
    """Ergodic capacity ``E[log2(1 + |h|^2 snr_lin)] = log2(e) * exp(1/snr_lin) * E1(1/snr_lin)``, ``h ~ CN(0, 1)``.

    Bits per complex channel use. Tensors are evaluated in float64 with SciPy and returned
    on the input's device (floating dtype kept, else float32); not differentiable.
    """
    if isinstance(snr_db, Tensor):
        snr_lin = snr_db_to_lin(snr_db.detach().cpu().double()).numpy()
        dtype = snr_db.dtype if snr_db.is_floating_point() else torch.float32
        return torch.as_tensor(math.log2(math.e) * _exp_e1(1 / snr_lin), dtype=dtype, device=snr_db.device)
    c = math.log2(math.e) * _exp_e1(1 / np.asarray(snr_db_to_lin(snr_db)))
    return _like_input(c, snr_db)
