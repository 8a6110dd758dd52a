"""The maintainers' zoo_add script on tiny data, into a temporary zoo table."""
from __future__ import annotations

import json

import pytest
import torch

import experiments.zoo_add as zoo_add
from jscc.checkpoint import read_checkpoint, save_model
from jscc.models.deepjscc import DeepJSCC
from jscc.models.stylegan2 import Discriminator, Generator
from jscc.models.video import DeepWiVe
from jscc.priors import prior_checkpoint
from jscc.results import sha256_file


@pytest.fixture()
def zoo(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "zoo.json").write_text("{}\n")
    monkeypatch.setattr(zoo_add, "WEIGHTS_DIR", tmp_path / "w")
    monkeypatch.setattr(zoo_add, "ZOO_TABLE", tmp_path / "w" / "zoo.json")
    monkeypatch.setattr(zoo_add, "RESULTS_DIR", tmp_path / "results")
    return tmp_path


def test_adds_a_jscc_model_with_its_measured_psnr(zoo, write_pngs):
    write_pngs(zoo / "imgs", [(16, 16)] * 3)
    torch.manual_seed(0)
    save_model(DeepJSCC(c=2), zoo / "best.pt", train={"train_snr_db": [0.0, 5.0]})
    assert zoo_add.main(["deepjscc-tiny-1_48-awgn-snr0-5", str(zoo / "best.pt"), "--data", str(zoo / "imgs"),
                         "--snr", "0,5", "--n-channel-draws", "2", "--train-command", "jscc train ..."]) == 0
    entry = json.loads((zoo / "w" / "zoo.json").read_text())["deepjscc-tiny-1_48-awgn-snr0-5"]
    assert entry["sha256"] == sha256_file(zoo / "w" / "deepjscc-tiny-1_48-awgn-snr0-5.pt")
    assert entry["bandwidth_ratio"] == "1/48" and entry["train_snr_db"] == [0.0, 5.0]
    assert entry["metrics"]["snr_db"] == [0.0, 5.0] and len(entry["metrics"]["psnr"]) == 2
    assert entry["metrics"]["n_images"] == 3 and entry["metrics"]["n_channel_draws"] == 2
    assert set(read_checkpoint(zoo / "w" / entry["file"])) == {"format", "model", "config", "state_dict", "train",
                                                                "metrics"}


def test_adds_a_video_model_swept_over_clips_of_frames(zoo, write_pngs):
    for clip in ("a", "b"):
        write_pngs(zoo / "clips" / clip, [(16, 16)] * 5, seed=ord(clip))
    torch.manual_seed(0)
    save_model(DeepWiVe(c=8, chunks_per_frame=4, gop_chunks=8, hidden=(8, 8, 8, 8), flow_hidden=8), zoo / "v.pt")
    assert zoo_add.main(["deepwive-tiny-1_24-awgn", str(zoo / "v.pt"), "--data", str(zoo / "clips"), "--frames", "5",
                         "--snr", "10", "--n-channel-draws", "1", "--train-command", "jscc train ..."]) == 0
    entry = json.loads((zoo / "w" / "zoo.json").read_text())["deepwive-tiny-1_24-awgn"]
    assert entry["model"] == "deepwive" and entry["metrics"]["n_images"] == 2 and entry["bandwidth_ratio"] == "1/24"
    assert entry["metrics"]["snr_db"] == 10.0 and entry["metrics"]["psnr"] > 0


def test_adds_a_prior_with_its_projection_psnr_and_needs_its_discriminator(zoo, write_pngs):
    write_pngs(zoo / "imgs", [(16, 16)] * 5)
    torch.manual_seed(0)
    gen = Generator(resolution=16, w_dim=16, channel_max=16)
    torch.save(prior_checkpoint(gen, discriminator=Discriminator(resolution=16, channel_max=16)), zoo / "prior.pt")
    argv = ["stylegan2-tiny", str(zoo / "prior.pt"), "--data", str(zoo / "imgs"), "--skip", "2", "--n-images", "2",
            "--projection-steps", "2", "--train-command", "jscc train-prior ..."]
    assert zoo_add.main(argv) == 0
    entry = json.loads((zoo / "w" / "zoo.json").read_text())["stylegan2-tiny"]
    assert entry["model"] == "stylegan2" and entry["metrics"]["n_images"] == 2
    assert entry["metrics"]["projection_steps"] == 2 and entry["metrics"]["projection_psnr"] > 0
    torch.save(prior_checkpoint(gen), zoo / "no_d.pt")
    with pytest.raises(SystemExit, match="no discriminator"):
        zoo_add.main(["x", str(zoo / "no_d.pt"), *argv[2:]])
