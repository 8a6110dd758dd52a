"""OFDM link on Sionna's blocks (channels/ofdm.py): statistics with stated tolerances, accounting,
gradients, reproducibility, bad parameters and one CLI run."""
from __future__ import annotations

import json
import math

import pytest
import torch

from channels import OFDM, build_channel
from channels.ofdm import OFDM_MODELS
from jscc.models import DeepJSCC
from jscc.system import JSCCSystem


def _symbols(batch: int, k: int, seed: int = 0) -> torch.Tensor:
    """CN(0, 1) symbols (unit average power), complex64 ``(batch, k)``."""
    w = torch.randn(batch, k, 2, generator=torch.Generator().manual_seed(seed))
    return torch.view_as_complex(w) * 0.5**0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_unit_channel_with_perfect_csi_is_awgn():
    # 64 x 512 = 32,768 errors per SNR: the relative standard error of their mean power is
    # 1/sqrt(32768) = 0.55 %; tolerance 3 % (> 5 sigma). The reported noise variance is N0 itself.
    z = _symbols(64, 512)
    link = OFDM(model="none", csi="perfect", equalization="zf")
    for snr in (0.0, 10.0, 20.0):
        out = link(z, snr, generator=_gen(1))
        n0 = 10 ** (-snr / 10)
        assert out["y"].shape == z.shape and out["y"].dtype == torch.complex64
        assert abs((out["y"] - z).abs().square().mean().item() / n0 - 1) < 0.03
        torch.testing.assert_close(out["noise_var"], torch.full(z.shape, n0), rtol=1e-5, atol=0)
    # one SNR per example: each example's error power follows its own N0 (512 samples: 1 sigma 4.4 %)
    snr = torch.linspace(0, 20, 64)
    err = (link(z, snr, generator=_gen(2))["y"] - z).abs().square().mean(1)
    ratio = err / 10 ** (-snr / 10)
    assert (ratio - 1).abs().max() < 0.2 and abs(ratio.mean().item() - 1) < 0.03


def test_ls_estimation_error_matches_its_closed_form_at_high_snr():
    # H = 1, LS with nearest-neighbour interpolation: H_hat = 1 + e, e ~ CN(0, N0) (unit pilots), so
    # y / H_hat - x ~ n - x e: error power N0 (1 + E|x|^2) = 2 N0 to first order (second order +O(N0)).
    # 256 grids x 864 REs at 20 dB; each pilot estimate serves 6-7 data REs, so ~30k independent
    # estimates: 1 sigma ~1 %; tolerance 4 %.
    z = _symbols(256, 864)
    link = OFDM(model="none", csi="ls", interpolation="nn", equalization="zf")
    n0 = 0.01
    err = (link(z, 20.0, generator=_gen(3))["y"] - z).abs().square().mean().item()
    assert abs(err / (2 * n0) - 1) < 0.04, err


def test_mmse_is_the_biased_estimate_and_beats_zf_on_a_flat_fading_grid():
    z = _symbols(128, 864)
    zf = OFDM(model="flat", csi="perfect", equalization="zf")(z, 5.0, generator=_gen(4))
    mmse = OFDM(model="flat", csi="perfect", equalization="mmse")(z, 5.0, generator=_gen(4))
    torch.testing.assert_close(mmse["y"], zf["y"] / (1 + zf["noise_var"]), rtol=1e-5, atol=1e-6)
    assert (mmse["y"] - z).abs().square().mean() < (zf["y"] - z).abs().square().mean()
    # the post-equalisation noise variance of the biased estimate predicts its error (perfect CSI):
    # 110,592 samples, heavy-tailed per-RE variances; tolerance 5 %
    err = (mmse["y"] - z).abs().square().mean().item()
    assert abs(err / mmse["noise_var"].mean().item() - 1) < 0.05


def test_side_gives_the_decoder_raw_data_res_and_the_channel_there():
    # perfect CSI: y = H z + n exactly at the data REs, h = H there; LS: h is the pilots' estimate, within its
    # error (unit pilots: E|h_hat - H|^2 ~ N0 = 0.01 at 20 dB for nn interpolation on a flat channel; 5x slack);
    # csi none: the same raw y, no h.
    z = _symbols(32, 1000)
    perfect = OFDM(model="flat", csi="perfect", equalization="side")(z, 200.0, generator=_gen(21))
    assert perfect["h"].shape == z.shape and perfect["h"].dtype == torch.complex64
    torch.testing.assert_close(perfect["y"], perfect["h"] * z, rtol=1e-4, atol=1e-5)
    ls = OFDM(model="flat", csi="ls", interpolation="nn", equalization="side")(z, 20.0, generator=_gen(21))
    truth = OFDM(model="flat", csi="perfect", equalization="side")(z, 20.0, generator=_gen(21))
    torch.testing.assert_close(ls["y"], truth["y"])  # same draws: the raw grid does not depend on the estimator
    assert (ls["h"] - truth["h"]).abs().square().mean() < 0.05
    none = OFDM(model="flat", csi="none")(z, 20.0, generator=_gen(21))
    assert "h" not in none and torch.equal(none["y"], truth["y"])
    torch.testing.assert_close(none["noise_var"], torch.full(z.shape, 0.01))


def test_a_side_input_decoder_trains_over_ofdm_with_estimated_csi():
    torch.manual_seed(0)
    system = JSCCSystem(DeepJSCC(c=16, csi_side_input=True), OFDM(csi="ls", equalization="side"))
    assert system.decoder_gets_h and not JSCCSystem(DeepJSCC(c=16), OFDM(csi="none")).decoder_gets_h
    x = torch.rand(2, 3, 32, 32)
    torch.nn.functional.mse_loss(system(x, 10.0, generator=_gen(22))["x_hat"], x).backward()
    assert system.model.encoder[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model", [m for m in OFDM_MODELS if m != "none"])
def test_average_channel_power_is_one(model):
    # E|H|^2 = 1 over resource elements and draws: 600 grids; the per-grid mean of |H|^2 has a
    # standard deviation of at most 1 (one Rayleigh tap), so 1 sigma of the mean <= 4.1 %; tolerance 15 %.
    link = OFDM(model=model)
    blocks = link._sionna(torch.device("cpu"))
    h = link._channel(blocks, 600, _gen(5), torch.zeros(1, dtype=torch.complex64))
    assert h.shape == (600, 1, 1, 1, 1, 14, 72)
    assert abs(h.abs().square().mean().item() - 1) < 0.15


def test_delay_spread_makes_the_channel_frequency_selective():
    # The wider the delay spread, the less alike two subcarriers 36 apart (1.08 MHz) are:
    # E|H(f) - H(f + 36)|^2 = 2 (1 - Re rho) grows from ~0 (30 ns) towards 2 (1000 ns).
    def decorrelation(ds):
        link = OFDM(model="tdl-a", delay_spread=ds)
        h = link._channel(link._sionna(torch.device("cpu")), 400, _gen(6), torch.zeros(1, dtype=torch.complex64))
        return (h[..., :36] - h[..., 36:]).abs().square().mean().item()

    short, long = decorrelation(30e-9), decorrelation(1000e-9)
    assert short < 0.5 < 1.5 < long, (short, long)


def test_resource_elements_are_accounted_exactly():
    link = OFDM()
    assert (link.data_res_per_grid, link.pilot_res_per_grid, link.cyclic_prefix_length) == (864, 144, 5)
    one = link.accounting(512)  # CIFAR-10 at 1/6: one grid, 352 data REs left empty
    assert one == {"grids": 1, "data_res": 512, "padding_res": 352, "pilot_res": 144, "time_samples": 14 * 77,
                   "res_per_channel_use": 1008 / 512, "samples_per_channel_use": 1078 / 512}
    three = link.accounting(1729)  # 2 x 864 + 1
    assert (three["grids"], three["padding_res"], three["pilot_res"]) == (3, 863, 432)
    small = OFDM(fft_size=48, num_ofdm_symbols=7, pilot_ofdm_symbols=[3])
    assert (small.cyclic_prefix_length, small.data_res_per_grid, small.pilot_res_per_grid) == (3, 288, 48)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        link.accounting(0)


@pytest.mark.parametrize("kwargs", [dict(model="tdl-a", csi="ls"), dict(model="flat", csi="perfect", equalization="zf")])
def test_gradients_reach_the_encoder(kwargs):
    torch.manual_seed(0)
    system = JSCCSystem(DeepJSCC(c=16), OFDM(**kwargs))
    x = torch.rand(4, 3, 32, 32)
    out = system(x, 10.0, generator=_gen(7))
    assert out["x_hat"].shape == x.shape
    torch.nn.functional.mse_loss(out["x_hat"], x).backward()
    grad = system.model.encoder[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_reproducible_from_the_generator_and_sionna_state_untouched():
    from sionna.phy import config

    z = _symbols(8, 1000)
    link = OFDM()
    link(z, 10.0, generator=_gen(0))  # build the blocks
    before = config.torch_rng("cpu").get_state()
    a = link(z, 10.0, generator=_gen(8))["y"]
    b = link(z, 10.0, generator=_gen(8))["y"]
    c = link(z, 10.0, generator=_gen(9))["y"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(config.torch_rng("cpu").get_state(), before)
    # layered symbols (B, L, k): each (example, layer) on its own grids, SNR per layer
    y = link(z.reshape(8, 2, 500), torch.tensor([[[5.0], [15.0]]]).expand(8, 2, 1), generator=_gen(10))["y"]
    assert y.shape == (8, 2, 500)


@pytest.mark.parametrize("kwargs, match", [
    (dict(model="tdl-f"), "unknown OFDM model"),
    (dict(csi="receiver"), "unknown OFDM csi"),
    (dict(fft_size=0), "fft_size must be a positive integer"),
    (dict(delay_spread=-1e-9), "delay_spread must be a positive number"),
    (dict(speed=float("nan")), "speed must be a number >= 0"),
    (dict(pilot_ofdm_symbols=[2, 14]), "pilot_ofdm_symbols"),
    (dict(cyclic_prefix_length=100), "cyclic_prefix_length"),
])
def test_bad_parameters_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OFDM(**kwargs)


def test_bad_inputs():
    link = OFDM()
    with pytest.raises(ValueError, match="complex64"):
        link(_symbols(2, 8).to(torch.complex128), 10.0)
    with pytest.raises(ValueError, match="snr_db must be given"):
        link(_symbols(2, 8))
    assert isinstance(build_channel("ofdm", model="flat"), OFDM)


def test_cli_trains_and_sweeps_over_ofdm(tmp_path, write_pngs):
    from experiments import sweep as sweep_cli
    from experiments import train as train_cli

    write_pngs(tmp_path / "imgs", [(32, 32)] * 6)
    run = tmp_path / "run"
    assert train_cli.main(["--data", str(tmp_path / "imgs"), "--bandwidth-ratio", "1/6", "--epochs", "1",
                           "--batch-size", "2", "--val-size", "2", "--channel", "ofdm", "--ofdm-model", "tdl-c",
                           "--delay-spread", "300", "--speed", "30", "--csi", "ls", "--quiet", "--out", str(run)]) == 0
    out = tmp_path / "sweep.json"
    assert sweep_cli.main([str(run / "best.pt"), "--data", str(tmp_path / "imgs"), "--snr", "0", "10",
                           "--metrics", "psnr", "--n-channel-draws", "1", "--quiet", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    channel = res["channel"]
    assert (channel["name"], channel["model"], channel["csi"]) == ("ofdm", "tdl-c", "ls")  # from the checkpoint
    assert channel["delay_spread"] == pytest.approx(300e-9) and channel["speed"] == 30.0
    assert res["k"] == 512 and channel["accounting"]["padding_res"] == 352
    assert channel["accounting"]["bandwidth_ratio_with_pilots"] == pytest.approx(1008 / 3072)
    assert all(math.isfinite(p) for p in res["metrics"]["psnr"])
    with pytest.raises(ValueError, match="apply to --channel ofdm only"):
        sweep_cli.main([str(run / "best.pt"), "--data", str(tmp_path / "imgs"), "--channel", "awgn",
                        "--ofdm-model", "flat", "--quiet", "--out", str(tmp_path / "x.json")])
    # a decoder with side input: raw data REs and the LS channel estimate (recorded, read back by the sweep)
    side = tmp_path / "side"
    assert train_cli.main(["--data", str(tmp_path / "imgs"), "--bandwidth-ratio", "1/6", "--epochs", "1",
                           "--batch-size", "2", "--val-size", "2", "--channel", "ofdm", "--csi", "ls",
                           "--equalization", "side", "--model-arg", "csi_side_input=true", "--quiet",
                           "--out", str(side)]) == 0
    assert sweep_cli.main([str(side / "best.pt"), "--data", str(tmp_path / "imgs"), "--snr", "10", "--metrics",
                           "psnr", "--n-channel-draws", "1", "--quiet", "--out", str(tmp_path / "side.json")]) == 0
    assert json.loads((tmp_path / "side.json").read_text())["channel"]["equalization"] == "side"


def test_mutual_information_references():
    # H = 1: log2(1 + snr) exactly. Flat Rayleigh: the ergodic capacity log2(e) e^(1/rho) E1(1/rho) = 2.9065 bits at
    # 10 dB; 4,000 draws (sd of one draw ~1.33 bits): 1 sigma 0.021, tolerance 0.1. TDL-A with a 1 us delay spread
    # averages over frequency (coherence bandwidth ~200 kHz of the 2.16 MHz grid): the same mean, a smaller spread.
    import math

    from scipy.special import exp1

    k, snr = 1000, 10.0
    exact = OFDM(model="none").mutual_information(k, snr, batch_size=3)
    torch.testing.assert_close(exact, torch.full((3,), math.log2(11), dtype=torch.float64))
    rho = 10.0
    ergodic = math.log2(math.e) * math.exp(1 / rho) * exp1(1 / rho)
    flat = OFDM(model="flat").mutual_information(k, snr, batch_size=4000, generator=_gen(11))
    tdl = OFDM(model="tdl-a", delay_spread=1e-6).mutual_information(k, snr, batch_size=4000, generator=_gen(12))
    assert abs(flat.mean().item() - ergodic) < 0.1 and abs(tdl.mean().item() - ergodic) < 0.1
    assert tdl.std() < 0.8 * flat.std()  # measured 0.75 vs 1.13 bits


def test_papr_is_reported_and_clipping_bounds_it():
    # 72 random-phase subcarriers: the PAPR of an OFDM symbol is typically 7-10 dB (never below 0, at most
    # 10 log10(72) = 18.6 dB); clipping at 4 dB bounds it at 4 dB and the clipping distortion costs accuracy
    # (H = 1, perfect CSI, 30 dB: the noise is small next to the distortion).
    z = _symbols(32, 864)
    plain = OFDM(model="none", csi="perfect", equalization="zf")(z, 30.0, generator=_gen(13))
    clipped = OFDM(model="none", csi="perfect", equalization="zf", clip_db=4.0)(z, 30.0, generator=_gen(13))
    assert plain["papr_db"].shape == (32, 14)
    assert 6.0 < plain["papr_db"].median() < 11.0 and plain["papr_db"].max() < 18.6
    assert clipped["papr_db"].max() <= 4.0 + 1e-3
    err = [(o["y"] - z).abs().square().mean().item() for o in (plain, clipped)]
    assert err[1] > 3 * err[0]
    with pytest.raises(ValueError, match="clip_db"):
        OFDM(clip_db=float("inf"))
