"""``jscc train-prior`` in-process: a tiny 8x8 prior from PNG files, resumed for a second epoch."""
from __future__ import annotations

import pytest

import experiments.cli as cli
import experiments.train_prior as train_prior_cli
from jscc.checkpoint import read_checkpoint
from jscc.priors import load_prior


def _argv(data, out, *extra):
    return ["--data", str(data), "--resolution", "8", "--channel-base", "64", "--channel-max", "16", "--w-dim", "16",
            "--batch-size", "4", "--val-size", "2", "--val-steps", "2", "--quiet", "--threads", "1",
            "--out", str(out), *extra]


def test_train_prior_cli_trains_and_resumes(tmp_path, write_pngs):
    write_pngs(tmp_path / "imgs", [(8, 8)] * 20)
    out = tmp_path / "run"
    assert cli.main(["train-prior", *_argv(tmp_path / "imgs", out, "--epochs", "1", "--mirror")]) == 0
    prior = read_checkpoint(out / "prior.pt")
    info = prior["train"]
    assert info["n_train_images"] == 18 and info["n_val_images"] == 2  # at most a tenth is held out
    assert info["command"].startswith("jscc train-prior ") and info["mirror"] is True
    assert prior["config"]["resolution"] == 8 and prior["metrics"]["projection_steps"] == 2
    assert load_prior(out / "prior.pt").num_ws == 4
    assert (out / "samples" / "epoch_0001.png").exists()

    assert train_prior_cli.main(_argv(tmp_path / "imgs", out, "--epochs", "2", "--mirror", "--resume")) == 0
    last = read_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and [h["epoch"] for h in last["history"]] == [1, 2]
    assert (out / "samples" / "epoch_0002.png").exists()


def test_train_prior_cli_options_and_errors(tmp_path, write_pngs):
    write_pngs(tmp_path / "big", [(16, 16)] * 6)
    out = tmp_path / "run"
    # random 8x8 crops of 16x16 photos, 8 images per epoch, no validation
    assert train_prior_cli.main(_argv(tmp_path / "big", out, "--crop", "8", "--val-size", "0", "--epochs", "1",
                                      "--samples-per-epoch", "8", "--style-mixing", "0", "--pl-weight", "1")) == 0
    last = read_checkpoint(out / "last.pt")
    assert last["nimg"] == 8 and last["history"][0]["val_psnr"] is None and last["history"][0]["pl"] > 0
    assert not (out / "best.pt").exists()
    with pytest.raises(SystemExit, match="crop"):
        train_prior_cli.main(_argv(tmp_path / "big", tmp_path / "r2", "--epochs", "1"))
    with pytest.raises(SystemExit, match="its generator has channel_max=16"):  # --init-from another model size
        train_prior_cli.main(_argv(tmp_path / "big", tmp_path / "r6", "--crop", "8", "--channel-max", "8",
                                   "--init-from", str(out / "prior.pt")))
    with pytest.raises(SystemExit, match="--crop 16 must equal --resolution 8"):
        train_prior_cli.main(_argv(tmp_path / "big", tmp_path / "r3", "--crop", "16"))
    with pytest.raises(SystemExit, match="--data"):
        train_prior_cli.main(["--out", str(tmp_path / "r4")])
    with pytest.raises(SystemExit, match="multiple of the minibatch-stddev"):
        train_prior_cli.main(_argv(tmp_path / "big", tmp_path / "r5", "--crop", "8", "--batch-size", "6"))
    with pytest.raises(SystemExit) as err:
        cli.main(["train-prior", "--help"])
    assert err.value.code == 0
