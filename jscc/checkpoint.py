"""Self-describing checkpoints (CONVENTIONS.md, Checkpoints).

A model checkpoint is ``{"format", "model", "config", "state_dict", "train", "metrics"}``; a
training checkpoint adds ``optimizer``, ``scheduler``, ``epoch``, ``rng`` and ``history``. Both
load with ``torch.load(weights_only=True)`` and strict state-dict loading.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from jscc.registry import build_model
from jscc.results import atomic_torch_save

FORMAT = "jscc-checkpoint/1"


def model_checkpoint(model: nn.Module, *, train: dict | None = None, metrics: dict | None = None) -> dict:
    """The self-describing dict of a registered model (weights copied to CPU)."""
    name = getattr(model, "registry_name", None)
    if name is None:
        raise TypeError(f"{type(model).__name__} is not a registered model (use @register_model)")
    return {
        "format": FORMAT,
        "model": name,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train": dict(train or {}),
        "metrics": dict(metrics or {}),
    }


def save_model(model: nn.Module, path, *, train: dict | None = None, metrics: dict | None = None) -> None:
    """Write a model checkpoint atomically."""
    atomic_torch_save(model_checkpoint(model, train=train, metrics=metrics), path)


def read_checkpoint(path, map_location="cpu") -> dict:
    """``torch.load`` with ``weights_only=True`` and a format check."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (is it a raw state_dict?)")
    return ckpt


def model_from_checkpoint(ckpt: dict, *, expect_model: str | None = None, expect_config: dict | None = None) -> nn.Module:
    """Rebuild the registered model and load its weights strictly.

    ``expect_model`` / ``expect_config``: raise ValueError when the checkpoint holds another model
    or another configuration (e.g. resuming a run with different options).
    """
    if expect_model is not None and ckpt["model"] != expect_model:
        raise ValueError(f"checkpoint holds model {ckpt['model']!r}, expected {expect_model!r}")
    if expect_config is not None and ckpt["config"] != expect_config:
        raise ValueError(f"checkpoint config {ckpt['config']} differs from the expected {expect_config}")
    model = build_model(ckpt["model"], **ckpt["config"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint file path: the path itself if it exists, else the zoo entry's verified weight file."""
    from jscc import zoo

    path = Path(name_or_path)
    return path if path.exists() else zoo.weight_path(str(name_or_path))


def load(name_or_path: str | os.PathLike, *, map_location="cpu", return_checkpoint: bool = False):
    """Load a model by zoo name or checkpoint path, strictly and with ``weights_only=True``.

    Returns the model in eval mode (and the checkpoint dict when ``return_checkpoint``), with
    ``model.train_info`` set from the checkpoint's ``train`` entry.
    """
    ckpt = read_checkpoint(resolve_checkpoint(name_or_path), map_location=map_location)
    model = model_from_checkpoint(ckpt).eval()
    model.train_info = ckpt.get("train", {})
    return (model, ckpt) if return_checkpoint else model
