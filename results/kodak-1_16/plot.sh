#!/usr/bin/env bash
# The Kodak 1/16 figure: DeepJSCC vs JPEG2000 / HEIF / AVIF over capacity and 5G LDPC, PSNR and LPIPS panels
# (results without LPIPS appear in the PSNR panel only).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/jscc plot results/kodak-1_16/deepjscc-photos-1_16-awgn-snr10.json results/kodak-1_16/*/*.json \
  --metric psnr lpips --title "Kodak (24 images, native size), k/n = 1/16, AWGN" --out results/kodak-1_16.png
