#!/usr/bin/env bash
# JPEG2000 + capacity-achieving link over AWGN on the CIFAR-10 test set (JPEG copy), k/n = c/96 for
# c in {4, 8, 16, 24, 32, 40, 46}, design SNR = test SNR in {10, 20} dB, both byte accountings.
set -euo pipefail
cd "$(dirname "$0")/../.."
for acc in full payload; do
  for ratio in 1/24 1/12 1/6 1/4 1/3 5/12 23/48; do
    .venv/bin/jscc baseline --codec jpeg2000 --link capacity --channel awgn --design-snr 10 20 --snr 10,20 \
      --bandwidth-ratio "$ratio" --byte-accounting "$acc" --fallback image_mean --n-channel-draws 1 \
      --data ../shared/data/cifar10/test --workers 1 --quiet \
      --out "results/separate-cifar10/$acc-${ratio/\//_}"
  done
done
