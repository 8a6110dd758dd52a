#!/usr/bin/env bash
# The separate video baseline on BasketballPass (416x240, first 17 frames = 1 + 4 x 4, the DeepWiVe clip),
# k/n = 2/51 ≈ 0.039 (DeepWiVe's clip ratio for T = 17), AWGN 0-20 dB: H.264 and H.265 (PyAV) with an
# IDR frame every 4 frames, over a capacity-achieving link designed for the test SNR (`match`) and over 5G
# LDPC (one TB per GOP; the oracle envelope, best MCS per test SNR; fast BLER budget), plus a link designed
# for 10 dB (the cliff). PSNR, MS-SSIM and LPIPS (AlexNet) per frame.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The LDPC BLER tables (hours of Monte-Carlo on one core) are committed as they are computed, so a run
# can be finished over several sessions: tables whose key (block sizes, MCS, decoder, Sionna version,
# budget) matches are loaded instead of simulated. To fill the cache on a second core while this works
# upwards from 0 dB: `.venv/bin/python results/video-basketballpass/warm_bler_tables.py` (20 dB down;
# same cache).
export JSCC_CACHE_DIR="${JSCC_CACHE_DIR:-results/video-basketballpass/cache}"
for link in capacity ldpc; do
  for codec in h264 h265; do
    if [ "$link" = capacity ]; then policy=match; extra=(--n-channel-draws 1)
    else policy=oracle; extra=(--bler-budget fast --n-channel-draws 10); fi
    .venv/bin/jscc baseline --codec $codec --link $link --channel awgn --frames 17 --gop 4 --design $policy --design-snr 10 \
      --snr 0:20:2 --bandwidth-ratio 2/51 "${extra[@]}" --metrics psnr ms_ssim lpips --data ../shared/data/video --data-name "BasketballPass 416x240" \
      --workers 1 --quiet --out results/video-basketballpass/$codec-$link
  done
done
