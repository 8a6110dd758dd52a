"""Self-describing checkpoints (README, Conventions: Checkpoints).

A model checkpoint is ``{"format", "model", "config", "state_dict", "train", "metrics"}``; a
training checkpoint adds ``optimizer``, ``scheduler``, ``epoch``, ``rng`` and ``history``. Both
load with ``torch.load(weights_only=True)`` and strict state-dict loading.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn as nn

from jscc.registry import build_model
from jscc.results import atomic_torch_save

FORMAT = "jscc-checkpoint/1"


class CheckpointError(ValueError, pickle.UnpicklingError):
    """A file that ``torch.load(weights_only=True)`` cannot read as a checkpoint (empty, another kind of
    file, truncated, or holding objects other than tensors and plain data); the message names the file."""


def _not_a_checkpoint(path: Path, err: BaseException) -> CheckpointError:
    """What ``path`` is instead of a checkpoint, from its first bytes and torch's error ``err``."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return CheckpointError(f"{path} is empty (0 bytes), not a checkpoint")
    kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"BM": "a BMP image"}
    kind = next((name for magic, name in kinds.items() if head.startswith(magic)), None)
    if kind is None and head.lstrip()[:1] in (b"{", b"["):
        kind = "a JSON file" + (" (jscc results)" if b'"jscc-results/' in head else "")
    if kind is not None:
        return CheckpointError(f"{path} is {kind}, not a checkpoint (a .pt file of jscc train or the zoo)")
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = next((ln[ln.index("Unsupported"):] for ln in lines if "Unsupported" in ln), lines[0] if lines else "")
    detail = detail.split(". ")[0].rstrip(".")  # its first sentence
    if head.startswith(b"PK\x03\x04") and isinstance(err, pickle.UnpicklingError):
        return CheckpointError(f"{path}: refused by torch.load(weights_only=True), it holds more than tensors and "
                               f"plain data ({detail})")
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or another format: "
                           f"{type(err).__name__}{': ' + detail if detail else ''})")


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
    """``torch.load`` with ``weights_only=True`` and a format check.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: (a ValueError and an UnpicklingError) torch cannot load it with
            ``weights_only=True``: the message says what the file is (empty, an image, JSON, ...).
        ValueError: it loads but is not a ``jscc-checkpoint/1`` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, UnicodeDecodeError) as err:
        raise _not_a_checkpoint(path, err) from err
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
    from jscc.models.generative import PRIOR_MODEL

    ckpt = read_checkpoint(resolve_checkpoint(name_or_path), map_location=map_location)
    if ckpt.get("model") == PRIOR_MODEL:
        raise ValueError(f"{str(name_or_path)!r} is a {PRIOR_MODEL} prior (the image generator of inverse-jscc / "
                         "generative-jscc, jscc.priors.load_prior), not a JSCC model")
    model = model_from_checkpoint(ckpt).eval()
    model.train_info = ckpt.get("train", {})
    return (model, ckpt) if return_checkpoint else model
