"""Mapping between real feature maps and complex channel symbols (README, Conventions: Signals).

A real feature map ``(B, C, h, w)`` is flattened row-major to ``2k`` reals, reshaped to
``(B, k, 2)`` and paired (real, imaginary) into ``k`` complex symbols. The inverse undoes
exactly this.
"""
from __future__ import annotations

import torch


def features_to_symbols(features: torch.Tensor) -> torch.Tensor:
    """Real ``(B, ...)`` float32 features -> complex64 symbols ``(B, k)`` with ``2k`` = numel per example.

    Raises ValueError when an example holds an odd number of reals.
    """
    batch = features.shape[0]
    flat = features.reshape(batch, -1)
    if flat.shape[1] % 2:
        raise ValueError(f"an odd number of reals per example ({flat.shape[1]}) cannot form complex symbols")
    return torch.view_as_complex(flat.float().reshape(batch, -1, 2).contiguous())


def symbols_to_features(symbols: torch.Tensor, feature_shape: tuple[int, ...]) -> torch.Tensor:
    """Complex symbols ``(B, k)`` -> real features ``(B, *feature_shape)`` (inverse of features_to_symbols)."""
    return torch.view_as_real(symbols).reshape(symbols.shape[0], *feature_shape)
