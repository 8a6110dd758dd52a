"""Fill the LDPC BLER points the Kodak oracle reads, from the highest test SNR down, on a second core
while `run_baselines.sh` works upwards from 0 dB. Both use `results/kodak-1_16/cache`, and a lazy table
takes the points the other process has saved, so they share the work. Same k (1/16 of a 768x512 image)
and budget (`fast`) as run_baselines.sh; this simulates BLER points only (no source coding)::

    python results/kodak-1_16/warm_bler_tables.py
"""
import os

os.environ.setdefault("JSCC_CACHE_DIR", "results/kodak-1_16/cache")

import numpy as np
import torch

from channels.links import BLER_BUDGETS
from jscc.baselines.separate import SeparateBaseline
from jscc.data import load_dataset

torch.set_num_threads(1)
one_image = load_dataset("../shared/data/kodak", limit=1)  # fixes k; every Kodak image has 768 x 512 pixels
b = SeparateBaseline(one_image, link="ldpc", bandwidth_ratio="1/16", workers=1,
                     table_kwargs={**BLER_BUDGETS["fast"], "verbose": True})
print("k", b.k, flush=True)
for snr in np.arange(20, -1, -2, dtype=float):
    points = b.ldpc_awgn_oracle_candidates(float(snr))
    print(f"{snr:5.1f} dB: candidates {[p.mcs.name for p in points]}", flush=True)
