#!/usr/bin/env bash
# CIFAR-10 (2,000 of the 10,000 test images: --limit 2000, seeded; JPEG copy) at k/n = 1/6 over AWGN, 0-20 dB:
# DeepJSCC-Q sending 16-QAM points (deepjscc-q-cifar10-1_6-16qam-awgn-snr10) against the unconstrained DeepJSCC it
# was fine-tuned from (deepjscc-cifar10-1_6-awgn-snr10), and JPEG2000 over a capacity-achieving code designed for the
# test SNR and over 5G LDPC + QAM with the best MCS per SNR (lazy BLER tables, standard budget).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/deepjscc-q-cifar10-1_6
common=(--data ../shared/data/cifar10/test --limit 2000 --snr 0:20:2 --metrics psnr ssim lpips --threads 1 --quiet)
.venv/bin/jscc sweep deepjscc-q-cifar10-1_6-16qam-awgn-snr10 "${common[@]}" --n-channel-draws 2 --out $out/deepjscc-q-16qam.json
.venv/bin/jscc sweep deepjscc-cifar10-1_6-awgn-snr10 "${common[@]}" --n-channel-draws 2 --out $out/deepjscc.json
.venv/bin/jscc baseline --codec jpeg2000 --link capacity --design match "${common[@]}" --n-channel-draws 1 --bandwidth-ratio 1/6 --workers 1 --out $out/jpeg2000-capacity-match.json
.venv/bin/jscc baseline --codec jpeg2000 --link ldpc --design oracle "${common[@]}" --n-channel-draws 4 --bandwidth-ratio 1/6 --workers 1 --out $out/jpeg2000-ldpc-oracle.json
