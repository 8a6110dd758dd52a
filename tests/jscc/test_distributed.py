"""``jscc train`` under torchrun: 2 CPU processes (gloo), DistributedSampler shards, rank-0 checkpoints, resume."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from jscc.checkpoint import read_checkpoint


def _torchrun(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "experiments.cli", "train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_torchrun_two_cpu_processes_train_and_resume(tmp_path, write_pngs):
    write_pngs(tmp_path / "data", [(32, 32)] * 20)
    out = tmp_path / "run"
    common = ["--data", str(tmp_path / "data"), "--batch-size", "4", "--val-size", "2", "--out", str(out),
              "--quiet", "--threads", "1", "--lr-schedule", "none"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    first = _torchrun([*common, "--epochs", "1"], repo)
    assert first.returncode == 0, first.stderr[-3000:]
    # Only rank 0 logs: the epoch line appears once.
    assert first.stdout.count("epoch 1/1") == 1
    state = read_checkpoint(out / "last.pt")
    assert state["epoch"] == 1
    # 18 training images, 2 processes: DistributedSampler gives 9 each -> 2 batches of 4 per process,
    # 16 images per epoch in all.
    assert state["history"][0]["images_per_s"] > 0
    before = {k: v.clone() for k, v in state["state_dict"].items()}

    second = _torchrun([*common, "--epochs", "2", "--resume"], repo)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout and second.stdout.count("epoch 2/2") == 1
    state = read_checkpoint(out / "last.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert any(not torch.equal(before[k], v) for k, v in state["state_dict"].items())
