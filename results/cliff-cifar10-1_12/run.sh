#!/usr/bin/env bash
# The cliff-effect figure: DeepJSCC (k/n = 1/12, trained at 10 dB) vs JPEG2000 over a capacity-achieving
# link designed for 13, 16 and 20 dB, CIFAR-10 test set (JPEG copy), AWGN 0-20 dB; PSNR, SSIM and LPIPS
# (AlexNet, the trunk shipped with the package), the figure with a PSNR and an LPIPS panel.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/jscc baseline --codec jpeg2000 --link capacity --channel awgn --design-snr 13 16 20 --snr 0:20:1 \
  --bandwidth-ratio 1/12 --byte-accounting full --fallback image_mean --n-channel-draws 1 --metrics psnr ssim lpips \
  --data ../shared/data/cifar10/test --data-name "cifar10-test (JPEG copy)" --workers 1 --threads 1 --quiet \
  --out results/cliff-cifar10-1_12
.venv/bin/jscc plot results/deepjscc-cifar10-1_12-awgn-snr10.json results/cliff-cifar10-1_12/*.json \
  --metric psnr lpips --title "CIFAR-10 (JPEG copy), k/n = 1/12, AWGN" --out results/cliff-cifar10-1_12.png
