"""MIMO link (channels/mimo.py): statistics with stated tolerances, SVD precoding, water-filling,
accounting, gradients and bad parameters."""
from __future__ import annotations

import json

import pytest
import torch

from channels import MIMO, Rayleigh
from channels.mimo import parse_antennas, waterfilling
from jscc.models import DeepJSCC
from jscc.system import JSCCSystem


def _symbols(batch: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.view_as_complex(torch.randn(batch, k, 2, generator=torch.Generator().manual_seed(seed))) * 0.5**0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_one_by_one_receiver_csi_is_the_rayleigh_channel():
    # 1x1 with MMSE equalisation is conj(h) y / (|h|^2 + N0): the same error power as Rayleigh(csi=receiver,
    # mmse) with one h per example. 4,000 examples x 64 symbols; per-example errors vary with |h|^2, so the
    # relative standard error of the mean is ~2 % for 4,000 independent h; tolerance 8 %.
    z = _symbols(4000, 64)
    mimo = MIMO(antennas="1x1")(z, 5.0, generator=_gen(1))
    ray = Rayleigh(csi="receiver", equalization="mmse")(z, 5.0, generator=_gen(2))
    e_mimo, e_ray = (mimo["y"] - z).abs().square().mean(), (ray["y"] - z).abs().square().mean()
    assert abs(e_mimo / e_ray - 1) < 0.08, (e_mimo, e_ray)
    assert abs(mimo["noise_var"].mean() / e_mimo - 1) < 0.05  # the reported variance predicts the error


def test_receiver_csi_lmmse_and_zf_on_2x2():
    # The biased LMMSE estimate has lower error than ZF on the same draws, and both report their error:
    # 2,000 examples x 64 symbols; tolerance 10 % (ZF's per-example variance is heavy-tailed: 20 %).
    z = _symbols(2000, 64)
    zf = MIMO(equalization="zf")(z, 10.0, generator=_gen(3))
    mmse = MIMO(equalization="mmse")(z, 10.0, generator=_gen(3))
    e_zf, e_mmse = ((o["y"] - z).abs().square().mean().item() for o in (zf, mmse))
    assert e_mmse < e_zf
    assert abs(mmse["noise_var"].mean().item() / e_mmse - 1) < 0.1
    assert abs(zf["noise_var"].mean().item() / e_zf - 1) < 0.2
    assert zf["h"].shape == (2000, 1, 2, 2) and zf["y"].shape == z.shape


def test_svd_precoding_diagonalises_the_channel():
    # Noise-free in effect (100 dB): with CSI at the transmitter and ZF per eigenmode, every symbol comes back
    # (relative error < 1e-2 except on nearly dead modes); U^H H V is diag(sigma).
    z = _symbols(200, 64)
    out = MIMO(csi="transmitter", equalization="zf")(z, 100.0, generator=_gen(4))
    h = out["h"][:, 0]
    u, sigma, vh = torch.linalg.svd(h)
    d = u.mH @ h @ vh.mH
    torch.testing.assert_close(d, torch.diag_embed(sigma).to(d.dtype), atol=1e-5, rtol=0)
    good = sigma.min(-1).values > 0.05
    assert ((out["y"] - z).abs()[good] < 1e-2).all()


@pytest.mark.parametrize("csi", ["receiver", "transmitter"])
def test_a_slot_sends_total_power_p_across_its_antennas(csi):
    # Zero-forcing's error variance is exact given H: with each of the S = 2 streams sent at P / 2 it is
    # N0 * 2 * [(H^H H)^-1]_ii (CSI at the receiver) or N0 * 2 / sigma_i^2 per eigenmode (equal power), N0 = P / 10.
    z = _symbols(50, 8)
    out = MIMO(csi=csi, equalization="zf", power=2.0)(z * 2**0.5, 10.0, generator=_gen(12))
    h = out["h"][:, 0].to(torch.complex128)
    n0 = 2.0 / 10
    if csi == "receiver":
        per_stream = torch.linalg.inv(h.mH @ h).diagonal(dim1=-2, dim2=-1).real * n0 * 2
    else:
        per_stream = n0 * 2 / torch.linalg.svdvals(h).square()
    torch.testing.assert_close(out["noise_var"].double(), per_stream.repeat(1, 4), rtol=1e-4, atol=0)


def test_waterfilling_allocation():
    gains = torch.tensor([[100.0, 1.0], [100.0, 100.0], [10.0, 0.01]])
    p = waterfilling(gains, 2.0)
    torch.testing.assert_close(p.sum(-1), torch.full((3,), 2.0))
    assert (p >= 0).all() and p[0, 0] > p[0, 1] and p[1, 0] == pytest.approx(1.0) and p[2, 1] == 0.0
    # mu - 1/g is the same for every mode that gets power: 1/100 + p0 = 1 + p1
    assert (p[0, 0] + 0.01).item() == pytest.approx((p[0, 1] + 1.0).item())
    # water-filling is the capacity-achieving allocation: never below equal power (same draws)
    z = _symbols(500, 64)
    eq = MIMO(csi="transmitter")(z, 0.0, generator=_gen(5))
    wf = MIMO(csi="transmitter", power_allocation="waterfilling")(z, 0.0, generator=_gen(5))
    h = eq["h"][:, 0]
    s2 = torch.linalg.svdvals(h).square()
    cap = lambda p: torch.log2(1 + s2 * p).sum(-1).mean()  # noqa: E731  (N0 = P = 1 at 0 dB)
    assert cap(waterfilling(s2, 1.0)) >= cap(torch.full_like(s2, 0.5)) - 1e-6
    assert torch.equal(wf["h"], eq["h"])


def test_channel_uses_are_accounted_exactly():
    assert MIMO().accounting(512) == {"slots": 256, "streams": 2, "channel_uses": 512, "padding": 0}
    assert MIMO(antennas="4x2", csi="transmitter").accounting(513, 3072) == {
        "slots": 257, "streams": 2, "channel_uses": 514, "padding": 1, "bandwidth_ratio_with_padding": 514 / 3072}
    assert MIMO(antennas="2x4", csi="transmitter").streams == 2 and MIMO(antennas="4x2").streams == 2
    out = MIMO(antennas="2x3")(_symbols(2, 7), 10.0, generator=_gen(6))  # 3 slots of 3 streams, 2 padded
    assert out["y"].shape == (2, 7)
    blocks = MIMO(block_length=2)(_symbols(3, 10), 10.0, generator=_gen(7))["h"]
    assert blocks.shape == (3, 3, 2, 2)  # 5 slots, a new H every 2


@pytest.mark.parametrize("kwargs", [dict(), dict(csi="transmitter", power_allocation="waterfilling")])
def test_gradients_reach_the_encoder(kwargs):
    torch.manual_seed(0)
    system = JSCCSystem(DeepJSCC(c=16), MIMO(**kwargs))
    x = torch.rand(4, 3, 32, 32)
    torch.nn.functional.mse_loss(system(x, 10.0, generator=_gen(8))["x_hat"], x).backward()
    grad = system.model.encoder[0].weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(antennas="2x0"), "antennas must be"),
    (dict(antennas="two"), "antennas must be"),
    (dict(csi="none"), "unknown MIMO csi"),
    (dict(power_allocation="waterfilling"), "power_allocation needs csi='transmitter'"),
    (dict(antennas="1x2", equalization="zf"), "zero-forcing 2 streams"),
    (dict(block_length=0), "block_length"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MIMO(**kwargs)
    assert parse_antennas("4X2") == (4, 2)


def test_cli_trains_and_sweeps_over_mimo(tmp_path, write_pngs):
    from experiments import sweep as sweep_cli
    from experiments import train as train_cli

    write_pngs(tmp_path / "imgs", [(32, 32)] * 6)
    run = tmp_path / "run"
    assert train_cli.main(["--data", str(tmp_path / "imgs"), "--bandwidth-ratio", "1/6", "--epochs", "1",
                           "--batch-size", "2", "--val-size", "2", "--channel", "mimo", "--antennas", "2x2",
                           "--csi", "transmitter", "--power-allocation", "waterfilling", "--quiet",
                           "--out", str(run)]) == 0
    out = tmp_path / "sweep.json"
    assert sweep_cli.main([str(run / "best.pt"), "--data", str(tmp_path / "imgs"), "--snr", "0", "10",
                           "--metrics", "psnr", "--n-channel-draws", "1", "--quiet", "--out", str(out)]) == 0
    channel = json.loads(out.read_text())["channel"]
    assert (channel["name"], channel["csi"], channel["power_allocation"], channel["antennas"]) == \
        ("mimo", "transmitter", "waterfilling", "2x2")
    assert channel["accounting"] == {"slots": 256, "streams": 2, "channel_uses": 512, "padding": 0,
                                     "bandwidth_ratio_with_padding": 512 / 3072}


def test_mutual_information_references():
    # 1x1: the Rayleigh ergodic capacity log2(e) e^(1/rho) E1(1/rho) (2.9065 bits at 10 dB; 4,000 draws, 1 sigma
    # 0.021, tolerance 0.1); 2x2 per stream, total power P per slot: log2 det(I + rho/2 H H^H) / 2; water-filling
    # never below equal power.
    import math

    from scipy.special import exp1

    ergodic = math.log2(math.e) * math.exp(0.1) * exp1(0.1)
    one = MIMO(antennas="1x1").mutual_information(64, 10.0, batch_size=4000, generator=_gen(9))
    assert abs(one.mean().item() - ergodic) < 0.1
    two = MIMO().mutual_information(64, 10.0, batch_size=5, generator=_gen(10))
    h = torch.view_as_complex(torch.randn(5, 1, 2, 2, 2, generator=_gen(10), dtype=torch.float32)) * 0.5**0.5
    det = torch.linalg.det(torch.eye(2) + 5 * h[:, 0].to(torch.complex128) @ h[:, 0].to(torch.complex128).mH).real
    torch.testing.assert_close(two, torch.log2(det) / 2, rtol=1e-5, atol=1e-6)
    eq = MIMO(csi="transmitter").mutual_information(64, 0.0, batch_size=200, generator=_gen(11))
    wf = MIMO(csi="transmitter", power_allocation="waterfilling").mutual_information(64, 0.0, batch_size=200,
                                                                                      generator=_gen(11))
    assert (wf >= eq - 1e-9).all() and (wf > eq + 1e-3).any()
