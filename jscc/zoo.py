"""The model zoo: one table, ``jscc/zoo_weights/zoo.json``, of the weights shipped beside it.

Each entry: registry model and config (the checkpoint re-states them), weight file, its sha256,
bandwidth ratio, channel and training SNR, the command that trained it (``train_command``,
``train_notes``) and the metrics measured with ``jscc sweep`` (``metrics``, with the results file).
"""
from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "zoo_weights"

ZOO: dict[str, dict] = json.loads((WEIGHTS_DIR / "zoo.json").read_text())


def list_zoo() -> list[str]:
    return sorted(ZOO)


def weight_path(name: str) -> Path:
    """Path of a zoo entry's weight file, checked against its sha256."""
    from jscc.results import sha256_file

    if name not in ZOO:
        known = ", ".join(list_zoo()) or "(the zoo is empty)"
        raise ValueError(f"{name!r} is neither a checkpoint file nor a zoo model; zoo models: {known}")
    entry = ZOO[name]
    path = WEIGHTS_DIR / entry["file"]
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ValueError(f"{path} has sha256 {digest}, the zoo table expects {entry['sha256']}")
    return path
