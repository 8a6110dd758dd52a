"""``jscc zoo``: list the pretrained models shipped with the package and their measured metrics."""
from __future__ import annotations

import argparse
import sys

from experiments.args import ArgumentParser
from jscc.zoo import ZOO


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc zoo", description=__doc__)
    p.add_argument("name", nargs="?", help="show one entry in full (training command, sha256)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    if args.name:
        if args.name not in ZOO:
            raise SystemExit(f"error: no zoo model {args.name!r}; available: {', '.join(sorted(ZOO)) or 'none'}")
        for key, value in ZOO[args.name].items():
            print(f"{key:>14}: {value}")
        return 0
    if not ZOO:
        print("the zoo is empty")
        return 0
    print(f"{'name':44s} {'k/n':>6s} {'train SNR':>9s}  measured")
    for name, entry in sorted(ZOO.items()):
        m = entry["metrics"]
        if entry["model"] == "stylegan2":  # an image prior: no channel; quality = projection PSNR
            print(f"{name:44s} {'prior':>6s} {'-':>9s}  projection PSNR {m['projection_psnr']:.2f} dB on {m['dataset']}")
            continue
        snr = entry["train_snr_db"]
        train = f"{snr[0]:g}-{snr[1]:g}" if isinstance(snr, list) else f"{snr:g}"
        psnr = "/".join(f"{v:.2f}" for v in _as_list(m["psnr"]))
        at = "/".join(f"{v:g}" for v in _as_list(m["snr_db"]))
        prefixes = m.get("psnr_per_prefix")
        layers = f" (layers 1..i: {'/'.join(f'{v:.2f}' for v in prefixes)})" if prefixes else ""
        print(f"{name:44s} {entry['bandwidth_ratio']:>6s} {train:>9s}  "
              f"PSNR {psnr} dB{layers} at {at} dB on {m['dataset']} ({m['n_channel_draws']} draws)")
    return 0


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


if __name__ == "__main__":
    sys.exit(main())
