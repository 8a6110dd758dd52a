"""Seeding (README, Conventions: "Randomness").

Stochastic functions take an explicit ``generator: torch.Generator | None``;
:func:`seed_everything` seeds the global sources once per run.
"""

from __future__ import annotations

import numbers
import random

import numpy as np
import torch

__all__ = ["seed_everything", "make_generator"]


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:  # NumPy's legacy seeding range
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy, torch (CPU and all CUDA devices) and Sionna.

    Sionna keeps its own generators (``sionna.phy.config.seed``): ``torch.manual_seed``
    alone does not seed it. Sionna is optional: if it is not installed it is skipped.

    Args:
        seed: int in ``[0, 2**32 - 1]``.
    """
    _check_seed(seed)
    try:  # import first, so that any randomness used at import time is reseeded below
        import sionna.phy
    except ImportError:
        sionna = None
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if sionna is not None:
        sionna.phy.config.seed = seed


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A new ``torch.Generator`` on ``device`` seeded with ``seed`` (an int in ``[0, 2**32 - 1]``)."""
    _check_seed(seed)
    return torch.Generator(device=device).manual_seed(int(seed))
