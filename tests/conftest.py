"""Shared fixtures: tiny synthetic images made in the test itself (no dataset on disk, offline)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image


def _smooth_images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """float32 ``(n, 3, H, W)`` in [0, 1]: random colours at 1/8 resolution, upsampled bilinearly.

    Smooth images are learnable by a few optimiser steps (white noise is not).
    """
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, height // 8), max(2, width // 8), generator=g)
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


@pytest.fixture(scope="session")
def smooth_images():
    """``smooth_images(n, H, W, seed=0)`` -> float32 ``(n, 3, H, W)`` in [0, 1]."""
    return _smooth_images


@pytest.fixture(scope="session")
def smooth_uint8():
    """``smooth_uint8(n, H, W, seed=0)`` -> uint8 ``(n, 3, H, W)`` (what ImageSet holds)."""
    return lambda n, h, w, seed=0: _to_uint8(_smooth_images(n, h, w, seed))


def _write_pngs(folder, sizes, seed: int = 0, mode: str = "RGB", prefix: str = "img") -> list[np.ndarray]:
    """Write one PNG per ``(H, W)`` in ``sizes`` into ``folder``; return the HxWxC uint8 arrays written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i, (h, w) in enumerate(sizes):
        arr = _to_uint8(_smooth_images(1, h, w, seed=seed * 100_003 + i))[0].permute(1, 2, 0).numpy()
        if mode == "L":
            arr = arr[..., 0]
        elif mode == "RGBA":
            arr = np.concatenate([arr, np.full((h, w, 1), 128, np.uint8)], axis=2)
        Image.fromarray(np.ascontiguousarray(arr), mode=mode).save(folder / f"{prefix}_{i:03d}.png")
        arrays.append(arr)
    return arrays


@pytest.fixture(scope="session")
def write_pngs():
    """``write_pngs(folder, [(H, W), ...], seed=0, mode="RGB")`` -> list of the uint8 arrays written."""
    return _write_pngs


def _write_panning_clips(folder: Path, n_clips: int = 2, frames: int = 5) -> Path:
    """``n_clips`` frame folders ``folder/clip{c}/f001.png ...``: a smooth 32 x (32 + 2 frames) image panned 2 px per frame,
    ``frames`` 32x32 frames each (seeded). Returns ``folder``."""
    g = torch.Generator().manual_seed(0)
    for c in range(n_clips):
        low = torch.rand(1, 3, 6, 8, generator=g)
        big = F.interpolate(low, size=(32, 32 + 2 * frames), mode="bilinear", align_corners=False)[0]
        big = (big.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        (folder / f"clip{c}").mkdir(parents=True)
        for t in range(frames):
            Image.fromarray(np.ascontiguousarray(big[:, 2 * t : 2 * t + 32])).save(folder / f"clip{c}" / f"f{t + 1:03d}.png")
    return folder


@pytest.fixture(scope="session")
def write_panning_clips():
    """``write_panning_clips(folder, n_clips=2, frames=5)``: smooth panning clips as frame folders."""
    return _write_panning_clips
