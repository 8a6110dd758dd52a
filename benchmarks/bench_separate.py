"""Throughput of the separate baseline: JPEG2000 + capacity link over a dataset at several SNRs.

Times the ``match`` policy (design SNR = test SNR, so every test SNR is its own byte budget: the
most source coding a sweep can need) at 11 SNRs (0:20:2) and two bandwidth ratios. Usage::

    python benchmarks/bench_separate.py --data ../shared/data/cifar10/test --workers 2
"""
from __future__ import annotations

import argparse
import time

from jscc.baselines.separate import SeparateBaseline
from jscc.data import load_dataset

from bench_deepjscc import machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ratios", nargs="+", default=["1/12", "1/6"])
    p.add_argument("--accounting", default="full")
    args = p.parse_args()
    dataset = load_dataset(args.data, train=False, limit=args.limit)
    snrs = [float(s) for s in range(0, 21, 2)]
    print(machine(), f"| {len(dataset)} images, {len(snrs)} SNRs, workers={args.workers}")
    total = 0.0
    for ratio in args.ratios:
        t0 = time.perf_counter()
        b = SeparateBaseline(dataset, codec="jpeg2000", link="capacity", bandwidth_ratio=ratio,
                             accounting=args.accounting, workers=args.workers)
        out = b.sweep(snrs, "match", n_channel_draws=1)
        dt = time.perf_counter() - t0
        total += dt
        print(f"k/n={ratio}: {dt:.1f} s ({len(dataset) * len(snrs) / dt:.0f} image-SNR pairs/s); "
              f"PSNR at 0/10/20 dB: {out['metrics']['psnr'][0]:.2f} / {out['metrics']['psnr'][5]:.2f} / "
              f"{out['metrics']['psnr'][10]:.2f}")
    print(f"total {total:.1f} s")


if __name__ == "__main__":
    main()
