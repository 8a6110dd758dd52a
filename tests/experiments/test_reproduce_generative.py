"""``jscc reproduce generative-cifar10`` in-process on tiny 16x16 images with random tiny models."""
from __future__ import annotations

import json

import pytest
import torch

import experiments.plot as plot_cli
import experiments.reproduce as reproduce_cli
from jscc.checkpoint import save_model
from jscc.models.deepjscc import DeepJSCC
from jscc.models.generative import GenerativeJSCC
from jscc.models.stylegan2 import Discriminator, Generator
from jscc.priors import prior_checkpoint
from jscc.results import read_results, validate_results

G16 = dict(resolution=16, w_dim=32, n_mapping=2, channel_max=32)


@pytest.fixture()
def models(tmp_path):
    torch.manual_seed(0)
    prior = prior_checkpoint(Generator(**G16), discriminator=Discriminator(resolution=16, channel_base=256,
                                                                           channel_max=16))
    torch.save(prior, tmp_path / "prior.pt")
    save_model(DeepJSCC(c=2), tmp_path / "base.pt")
    gen = GenerativeJSCC(c=2, generator=str(tmp_path / "prior.pt"), head_width=8, beta=0.01,
                         perceptual="disc-features", perceptual_args={"discriminator": str(tmp_path / "prior.pt")})
    save_model(gen, tmp_path / "generative.pt")
    return tmp_path


def test_generative_figure_writes_three_receivers_projection_and_pictures(models, tmp_path, write_pngs):
    write_pngs(tmp_path / "test", [(16, 16)] * 9)
    out = tmp_path / "fig"
    argv = ["generative-cifar10", "--data", str(tmp_path / "test"), "--snr", "0,5", "--n-channel-draws", "2",
            "--base", str(models / "base.pt"), "--prior", str(models / "prior.pt"),
            "--generative", str(models / "generative.pt"), "--n-images", "3", "--held-out", "2", "--inversion-steps", "2",
            "--grid-images", "2", "--out", str(out)]
    with pytest.raises(SystemExit, match="lpips-alex needs images of at least 31 px"):  # the default objective
        reproduce_cli.main(argv)
    argv += ["--perceptual", "disc-features"]  # the substitute, reported under its own name
    assert reproduce_cli.main(argv) == 0
    results = {p.stem: read_results(p) for p in out.glob("*.json") if p.name != "projection.json"}
    assert set(results) == {"base", "inverse-jscc-2steps", "generative"}
    for res in results.values():
        validate_results(res)
        assert res["k"] == 16 and res["bandwidth_ratio_str"] == "1/48" and res["train_snr_db"] == [0.0, 5.0]
        assert res["n_channel_draws"] == 2 and res["snr_db"] == [0.0, 5.0]
        # the prior's validation images (the figure holds out the first 64) are never reported
        assert res["dataset"]["n_images"] == 3 and "after the first 2" in res["dataset"]["name"]
        assert res["metrics"]["perceptual"]["name"].startswith("disc-features:") and "ssim" in res["metrics"]
        assert "lpips" not in res["metrics"] and "too small for lpips" in res["notes"]  # 16 px: LPIPS undefined
    names = {res["metrics"]["perceptual"]["name"] for res in results.values()}
    assert len(names) == 1  # one distance for every receiver
    inverse = results["inverse-jscc-2steps"]
    assert "2 Adam steps" in inverse["notes"] and inverse["method"] == "inverse-jscc"
    assert inverse["provenance"]["checkpoint_sha256"] == results["base"]["provenance"]["checkpoint_sha256"]
    projection = json.loads((out / "projection.json").read_text())
    assert projection["n_images"] == 3 and projection["steps"] == 2 and projection["psnr"] > 0
    for png in (tmp_path / "fig.png", tmp_path / "fig-grid.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # jscc plot draws the named perceptual distance
    files = [str(out / f"{n}.json") for n in results]
    assert plot_cli.main([*files, "--metric", "perceptual", "--out", str(tmp_path / "p.png")]) == 0


def test_generative_figure_needs_images_beyond_the_held_out_ones(models, tmp_path, write_pngs):
    write_pngs(tmp_path / "few", [(16, 16)] * 2)
    with pytest.raises(SystemExit, match="held out"):
        reproduce_cli.main(["generative-cifar10", "--data", str(tmp_path / "few"), "--base", str(models / "base.pt"),
                            "--prior", str(models / "prior.pt"), "--generative", str(models / "generative.pt"),
                            "--out", str(tmp_path / "o")])
