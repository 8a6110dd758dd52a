#!/usr/bin/env bash
# CIFAR-10 (2,000 of the 10,000 test images: --limit 2000, seeded; JPEG copy) at k/n = 1/6 over a 2x2 MIMO link (i.i.d. Rayleigh, one H per image,
# CSI at the receiver: two streams, LMMSE; a channel use is a stream in a slot: 256 slots x 2 streams per image),
# total power P per slot (each stream at P/2), SNR = P/N0 (the average SNR per receive antenna), 0-20 dB:
#   - DeepJSCC fine-tuned over this link (zoo: deepjscc-cifar10-1_6-mimo2x2-snr10, from the AWGN zoo model);
#   - the AWGN zoo model over the same link (mismatch);
#   - JPEG2000 over a capacity-achieving code designed for the test SNR, or of the rate of highest expected PSNR
#     over the draws (oracle; delivered iff the draw's mutual information
#     log2 det(I + snr/2 H H^H) / 2 reaches the rate), and over 5G LDPC designed for 10 dB (ZF, exact chain).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/mimo-cifar10-1_6
data=../shared/data/cifar10/test
mimo=(--channel mimo --antennas 2x2 --csi receiver)
model=${MODEL:-deepjscc-cifar10-1_6-mimo2x2-snr10}
common=(--data "$data" --limit 2000 --snr 0:20:2 --n-channel-draws 1 --metrics psnr ssim lpips --threads 1 --quiet)
.venv/bin/jscc sweep "$model" "${common[@]}" "${mimo[@]}" --name deepjscc-mimo-trained --out $out/deepjscc-mimo-trained.json
.venv/bin/jscc sweep deepjscc-cifar10-1_6-awgn-snr10 "${common[@]}" "${mimo[@]}" --name deepjscc-awgn-trained-over-mimo --out $out/deepjscc-awgn-trained-over-mimo.json
.venv/bin/jscc baseline --codec jpeg2000 --link capacity --design match oracle "${common[@]}" "${mimo[@]}" --bandwidth-ratio 1/6 --workers 1 --out $out
.venv/bin/jscc baseline --codec jpeg2000 --link ldpc --ldpc-mode exact --design-snr 10 "${common[@]}" "${mimo[@]}" --bandwidth-ratio 1/6 --workers 1 --out $out/jpeg2000-ldpc-mimo-design10dB.json
