"""The model zoo: one table of pretrained weights shipped in ``jscc/zoo_weights/``.

Each entry: registry model and config (the checkpoint re-states them), weight file, its sha256,
the command that trained it and the metrics measured with ``jscc sweep``.
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "zoo_weights"

ZOO: dict[str, dict] = {
    "deepjscc-cifar10-1_12-awgn-snr10": {
        "model": "deepjscc",
        "config": {"c": 8, "hidden": [16, 32, 32, 32], "csi_side_input": False},
        "file": "deepjscc-cifar10-1_12-awgn-snr10.pt",
        "sha256": "7ceaf40f5664ba3e57b85e874049a471fce33af39c55d068ccf50e8cc70debec",
        "bandwidth_ratio": "1/12",
        "channel": "awgn",
        "train_snr_db": 10.0,
        "train_command": (
            "jscc train --data ../shared/data/cifar10/train --bandwidth-ratio 1/12 --channel awgn --train-snr 10 "
            "--epochs 60 --batch-size 64 --lr 1e-3 --lr-schedule cosine --out runs/deepjscc-cifar10-1_12-awgn-snr10"
        ),
        "train_notes": "best.pt (epoch 59 of 60, validation on 1,000 held-out training images); trained with the "
                       "loop of commit aef22be, before per-epoch reseeding: a rerun is statistically, not bit-, equal",
        "metrics": {"dataset": "cifar10-test (JPEG copy)", "n_images": 10000, "snr_db": 10.0,
                    "psnr": 27.42, "n_channel_draws": 10,
                    "results": "results/deepjscc-cifar10-1_12-awgn-snr10.json"},
    },
    'deepjscc-cifar10-1_12-awgn-snr1': {'model': 'deepjscc', 'config': {'c': 8, 'hidden': [16, 32, 32, 32], 'csi_side_input': False}, 'file': 'deepjscc-cifar10-1_12-awgn-snr1.pt', 'sha256': 'ca69743b39f925a9ba926532cefcb05723e6a0b707443c00f97768c99bf0efb7', 'bandwidth_ratio': '1/12', 'channel': 'awgn', 'train_snr_db': 1.0, 'train_command': 'jscc train --data ../shared/data/cifar10/train --bandwidth-ratio 1/12 --channel awgn --train-snr 1 --epochs 15 --batch-size 64 --lr 5e-4 --lr-schedule cosine --init deepjscc-cifar10-1_12-awgn-snr10 --out runs/deepjscc-cifar10-1_12-awgn-snr1', 'train_notes': 'best.pt (epoch 15 of 15); warm start from deepjscc-cifar10-1_12-awgn-snr10', 'metrics': {'dataset': 'cifar10-test (JPEG copy)', 'n_images': 10000, 'snr_db': 1.0, 'psnr': 22.268, 'n_channel_draws': 10, 'results': 'results/zoo/deepjscc-cifar10-1_12-awgn-snr1.json'}},
}


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
