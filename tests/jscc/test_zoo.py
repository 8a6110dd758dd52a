"""Every zoo entry: weight file present, sha256 as tabled, strict load, table == checkpoint, deterministic forward."""
from __future__ import annotations

import pytest
import torch

import jscc
from channels import AWGN
from experiments import zoo as zoo_cli
from jscc.checkpoint import read_checkpoint
from jscc.results import parse_ratio, sha256_file
from jscc.zoo import WEIGHTS_DIR, ZOO, weight_path

ENTRIES = sorted(n for n, e in ZOO.items() if e["model"] != "stylegan2")  # JSCC models
PRIORS = sorted(n for n, e in ZOO.items() if e["model"] == "stylegan2")  # image priors (jscc.priors)


@pytest.mark.parametrize("name", ENTRIES)
def test_zoo_entry_loads_strictly_and_matches_its_table_row(name):
    entry = ZOO[name]
    path = weight_path(name)
    assert sha256_file(path) == entry["sha256"]
    ckpt = read_checkpoint(path)
    assert ckpt["model"] == entry["model"] and ckpt["config"] == entry["config"]
    model = jscc.load(name)
    assert not model.training
    assert model.bandwidth_ratio(32, 32) == parse_ratio(entry["bandwidth_ratio"])


@pytest.mark.parametrize("name", ENTRIES)
def test_zoo_model_forward_is_deterministic_under_a_seed(name, smooth_images):
    system = jscc.JSCCSystem(jscc.load(name), AWGN(10.0))
    x = smooth_images(2, 32, 32)
    if hasattr(system.model, "clip_channel_uses"):  # video: two clips of 1 + GOP frames
        frames = 1 + system.model.gop_size
        x = smooth_images(2 * frames, 32, 32).reshape(2, frames, 3, 32, 32)
    with torch.no_grad():
        a = system(x, generator=torch.Generator().manual_seed(0))["x_hat"]
        b = system(x, generator=torch.Generator().manual_seed(0))["x_hat"]
    assert torch.equal(a, b)
    assert a.shape == x.shape


@pytest.mark.parametrize("name", PRIORS)
def test_zoo_prior_loads_strictly(name):
    from jscc.priors import load_prior

    assert sha256_file(weight_path(name)) == ZOO[name]["sha256"]
    generator = load_prior(name)
    assert generator.config == ZOO[name]["config"] and not generator.training


def test_weight_files_are_all_tabled():
    files = {p.name for p in WEIGHTS_DIR.glob("*.pt")} if WEIGHTS_DIR.exists() else set()
    assert files == {e["file"] for e in ZOO.values()}


def test_unknown_zoo_name_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a checkpoint file nor a zoo model"):
        jscc.load("deepjscc-nonexistent")
    with pytest.raises(SystemExit, match="no zoo model"):
        zoo_cli.main(["deepjscc-nonexistent"])


def test_zoo_cli_lists_entries(capsys):
    assert zoo_cli.main([]) == 0
    out = capsys.readouterr().out
    for name in ENTRIES:
        assert name in out
