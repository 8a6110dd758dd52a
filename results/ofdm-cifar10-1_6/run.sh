#!/usr/bin/env bash
# CIFAR-10 (2,000 of the 10,000 test images: --limit 2000, seeded; JPEG copy) at k/n = 1/6 over OFDM (3GPP TDL-A, 100 ns, 3 m/s, 72 subcarriers x 14
# symbols, Kronecker pilots, LS + linear interpolation, MMSE equalisation; a channel use is a data RE: 512 of the
# 864 data REs of one grid per image), SNR = Es/N0 per RE, 0-20 dB:
#   - DeepJSCC fine-tuned over this link (zoo: deepjscc-cifar10-1_6-ofdm-tdla-ls-snr10, from the AWGN zoo model),
#     with LS and with perfect CSI (what estimating the channel costs);
#   - ADJSCC (one model for 0-20 dB) fine-tuned over this link (zoo: adjscc-cifar10-1_6-ofdm-tdla-ls, from the AWGN
#     ADJSCC), with LS and with perfect CSI;
#   - the AWGN zoo model over the same link (mismatch);
#   - JPEG2000 over a capacity-achieving code designed for the test SNR, or of the rate of highest expected PSNR
#     over the draws (oracle; delivered iff the draw's mutual
#     information over the image's REs, perfect CSI, reaches the rate), and over 5G LDPC designed for 10 dB
#     (ZF, LLRs from the post-equalisation noise variance; exact chain).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/ofdm-cifar10-1_6
data=../shared/data/cifar10/test
ofdm=(--channel ofdm --ofdm-model tdl-a --delay-spread 100 --speed 3)
model=${MODEL:-deepjscc-cifar10-1_6-ofdm-tdla-ls-snr10}
common=(--data "$data" --limit 2000 --snr 0:20:2 --n-channel-draws 1 --metrics psnr ssim lpips --threads 1 --quiet)
.venv/bin/jscc sweep "$model" "${common[@]}" "${ofdm[@]}" --csi ls --name deepjscc-ofdm-trained-ls --out $out/deepjscc-ofdm-trained-ls.json
.venv/bin/jscc sweep "$model" "${common[@]}" "${ofdm[@]}" --csi perfect --name deepjscc-ofdm-trained-perfect-csi --out $out/deepjscc-ofdm-trained-perfect-csi.json
.venv/bin/jscc sweep adjscc-cifar10-1_6-ofdm-tdla-ls "${common[@]}" "${ofdm[@]}" --csi ls --name adjscc-ofdm-trained-ls --out $out/adjscc-ofdm-trained-ls.json
.venv/bin/jscc sweep adjscc-cifar10-1_6-ofdm-tdla-ls "${common[@]}" "${ofdm[@]}" --csi perfect --name adjscc-ofdm-trained-perfect-csi --out $out/adjscc-ofdm-trained-perfect-csi.json
.venv/bin/jscc sweep deepjscc-cifar10-1_6-awgn-snr10 "${common[@]}" "${ofdm[@]}" --csi ls --name deepjscc-awgn-trained-over-ofdm-ls --out $out/deepjscc-awgn-trained-over-ofdm-ls.json
.venv/bin/jscc baseline --codec jpeg2000 --link capacity --design match oracle "${common[@]}" "${ofdm[@]}" --csi perfect --bandwidth-ratio 1/6 --workers 1 --out $out
.venv/bin/jscc baseline --codec jpeg2000 --link ldpc --ldpc-mode exact --design-snr 10 "${common[@]}" "${ofdm[@]}" --csi ls --bandwidth-ratio 1/6 --workers 1 --out $out/jpeg2000-ldpc-ofdm-design10dB.json
