#!/usr/bin/env bash
# DeepWiVe on BasketballPass (416x240 native, first 17 frames = 1 + 4 x 4), AWGN 0-20 dB, k/n = 2/51
# over the clip: uniform vs learned (agent) allocation, and the per-frame image-JSCC reference at the same
# bandwidth; then the figures with the H.264 / H.265 baselines (run_baselines.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
M=${MODEL:-deepwive-photos-5_128-awgn}
common=(--data ../shared/data/video --data-name "BasketballPass 416x240" --frames 17 --snr 0:20:2 --n-channel-draws 4
        --metrics psnr ms_ssim lpips --quiet)
.venv/bin/jscc sweep $M "${common[@]}" --allocation-policy agent --name "DeepWiVe (agent)" --out results/video-basketballpass/deepwive-agent.json
.venv/bin/jscc sweep $M "${common[@]}" --allocation-policy uniform --name "DeepWiVe (uniform)" --out results/video-basketballpass/deepwive-uniform.json
.venv/bin/jscc sweep $M "${common[@]}" --allocation-policy uniform --intra-only --name "per-frame image JSCC (key-frame codec)" \
  --out results/video-basketballpass/per-frame-jscc.json
for metric in psnr ms_ssim lpips; do
  .venv/bin/jscc plot results/video-basketballpass/*.json results/video-basketballpass/h26*/*.json --metric $metric \
    --title "BasketballPass 416x240, 17 frames, k/n = 2/51, AWGN" --out results/video-basketballpass-$metric.png
done
