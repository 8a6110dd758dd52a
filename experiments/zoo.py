"""``jscc zoo``: list the pretrained models shipped with the package and their measured metrics."""
from __future__ import annotations

import argparse
import sys

from jscc.zoo import ZOO


def setup_args() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jscc zoo", description=__doc__)
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
    print(f"{'name':40s} {'k/n':>6s} {'train SNR':>9s}  measured")
    for name, entry in sorted(ZOO.items()):
        m = entry["metrics"]
        print(f"{name:40s} {entry['bandwidth_ratio']:>6s} {entry['train_snr_db']:>9g}  "
              f"PSNR {m['psnr']:.2f} dB at {m['snr_db']:g} dB on {m['dataset']} ({m['n_channel_draws']} draws)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
