#!/usr/bin/env bash
# As run.sh, full accounting, with Pillow's JPEG2000 defaults (6 resolutions, COM segment kept:
# a 141 B main header at 32x32), the closest to the codec settings of the DeepJSCC 2019 figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
for ratio in 1/24 1/12 1/6 1/4 1/3 5/12 23/48; do
  .venv/bin/jscc baseline --codec jpeg2000 --codec-arg num_resolutions=6 --codec-arg keep_comment=true \
    --link capacity --channel awgn --design-snr 10 20 --snr 10,20 \
    --bandwidth-ratio "$ratio" --byte-accounting full --fallback image_mean --n-channel-draws 1 \
    --data ../shared/data/cifar10/test --data-name "cifar10-test (JPEG copy)" --workers 1 --quiet \
    --out "results/separate-cifar10/full-pillowdefaults-${ratio/\//_}"
done
