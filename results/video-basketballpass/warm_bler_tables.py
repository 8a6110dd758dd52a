"""Build the LDPC BLER tables the video baseline's oracle and 10 dB design need, from the highest test
SNR down, so that a second core can fill the cache while `run_baselines.sh` works upwards from 0 dB
(both read and write the same cache; a table is loaded once its file exists). Same clip, k and
budget as run_baselines.sh; this builds tables only (no source coding)."""
import os
import sys

import numpy as np

from channels.links import BLER_BUDGETS
from jscc.baselines.video_separate import VideoSeparateBaseline
from jscc.video import load_video_folder

os.environ.setdefault("JSCC_CACHE_DIR", "results/video-basketballpass/cache")
clips = load_video_folder("../shared/data/video", frames=17, random_crop=False, max_frames=17,
                          name="BasketballPass 416x240")
b = VideoSeparateBaseline(clips, codec=sys.argv[1] if len(sys.argv) > 1 else "h264", link="ldpc", gop=4,
                          bandwidth_ratio="2/51", table_kwargs={"n_blocks": 1000, **BLER_BUDGETS["fast"], "verbose": True})
print("k_g", b.gop_k, flush=True)
print("design 10 dB:", b.design_mcs(10.0), flush=True)
for snr in np.arange(20, -1, -2, dtype=float):
    points = b.ldpc_oracle_candidates(float(snr))
    print(f"{snr:5.1f} dB: candidates {[p.mcs.name for p in points]}", flush=True)
