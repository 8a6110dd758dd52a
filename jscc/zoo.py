"""The model zoo: one table, ``jscc/zoo_weights/zoo.json``, of the weights shipped beside it.

Each entry: registry model and config (the checkpoint re-states them), weight file, its sha256,
bandwidth ratio, channel and training SNR, the command that trained it (``train_command``,
``train_notes``) and the metrics measured with ``jscc sweep`` (``metrics``, with the results file).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "zoo_weights"
#: The checkpoint "model" entry of a StyleGAN2 image prior (priors are not in the JSCC model registry).
PRIOR_MODEL = "stylegan2"

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


def resolve_prior(path_or_zoo_name: str | os.PathLike) -> Path:
    """The file of a prior: an existing path as given, or the sha256-checked weight file of the zoo
    entry so named (ValueError for an unknown name or a zoo entry that is not a prior)."""
    path = Path(path_or_zoo_name)
    if path.exists():
        return path
    name = str(path_or_zoo_name)
    priors = sorted(n for n, e in ZOO.items() if e.get("model") == PRIOR_MODEL)
    if name not in ZOO:
        raise ValueError(f"{name!r} is neither a checkpoint file nor a zoo prior; zoo priors: "
                         f"{', '.join(priors) or '(none yet)'}")
    if ZOO[name].get("model") != PRIOR_MODEL:
        raise ValueError(f"zoo entry {name!r} is a {ZOO[name].get('model')} JSCC model, not a {PRIOR_MODEL} prior "
                         f"(load it with jscc.load); zoo priors: {', '.join(priors) or '(none yet)'}")
    return weight_path(name)
