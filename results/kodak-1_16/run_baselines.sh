#!/usr/bin/env bash
# Kodak (24 images, native 768x512 / 512x768), k/n = 1/16, AWGN 0-20 dB: JPEG2000, HEIF and AVIF over a
# capacity-achieving link designed for the test SNR (`match`: on AWGN the best a capacity code can do at
# every SNR, up to the rare budgets where a codestream is worse than the fallback) and over 5G LDPC + QAM
# (the oracle envelope: best MCS per test SNR; fast BLER budget, 10 draws per image), plus a link designed
# for 10 dB (the cliff). `full` byte accounting, image-mean fallback; PSNR, SSIM, MS-SSIM and LPIPS.
# Folders whose results already report LPIPS are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The LDPC BLER tables (lazy: only the points the oracle and the design read) go to the repository,
# committed as they are built, so a run can span sessions and machines.
export JSCC_CACHE_DIR="${JSCC_CACHE_DIR:-results/kodak-1_16/cache}"
for link in capacity ldpc; do
  for codec in jpeg2000 heif avif; do
    if [ "$link" = capacity ]; then policy=match; extra=(--n-channel-draws 1)
    else policy=oracle; extra=(--bler-budget fast --n-channel-draws 10); fi
    done_file=results/kodak-1_16/$codec-$link/$codec-$link-awgn-full-$policy.json
    [ -f "$done_file" ] && grep -q '"lpips"' "$done_file" && continue
    .venv/bin/jscc baseline --codec $codec --link $link --channel awgn --design $policy --design-snr 10 --snr 0:20:2 \
      --bandwidth-ratio 1/16 --byte-accounting full --fallback image_mean "${extra[@]}" --metrics psnr ssim ms_ssim lpips \
      --data ../shared/data/kodak --data-name kodak --workers 1 --threads 1 --out results/kodak-1_16/$codec-$link
  done
done
