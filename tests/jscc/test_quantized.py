"""DeepJSCC-Q (jscc/models/quantized.py): constellations, soft/hard assignment, annealing, the system, training."""
from __future__ import annotations

import math

import pytest
import torch

from channels import AWGN, OFDM, Rayleigh
from jscc.models import DeepJSCC, DeepJSCCQ
from jscc.models.quantized import CONSTELLATIONS, constellation_points, hard_assign, soft_assign
from jscc.registry import build_model
from jscc.system import JSCCSystem


def _on(z: torch.Tensor, points: torch.Tensor) -> bool:
    """Whether every symbol of ``z`` is exactly one of ``points``."""
    return bool((z.unsqueeze(-1) == points).any(-1).all())


@pytest.mark.parametrize("name", CONSTELLATIONS)
def test_constellations_have_m_distinct_points_of_unit_average_power(name):
    points = constellation_points(name)
    m = int(name[:-3])
    assert points.shape == (m,) and points.dtype == torch.complex64
    assert points.abs().square().mean().item() == pytest.approx(1.0, abs=1e-6)
    distances = (points[:, None] - points[None]).abs() + torch.eye(m) * 10
    expected = {"4qam": 2 / math.sqrt(2), "16qam": 2 / math.sqrt(10), "64qam": 2 / math.sqrt(42),
                "8psk": 2 * math.sin(math.pi / 8), "16psk": 2 * math.sin(math.pi / 16)}[name]
    assert distances.min().item() == pytest.approx(expected, rel=1e-5)


def test_soft_assignment_tends_to_the_nearest_point():
    points = constellation_points("16qam")
    z = torch.view_as_complex(torch.randn(50, 2, generator=torch.Generator().manual_seed(0))) * 0.7
    hard = hard_assign(z, points)
    assert _on(hard, points)
    assert (hard - z).abs().max() <= (points - z[:, None]).abs().min(dim=1).values.max() + 1e-6
    assert (soft_assign(z, points, 1e-6) - hard).abs().max() < 1e-3
    assert soft_assign(z, points, 100.0).abs().max() < 0.05  # hot: the mean of all points, ~0


def test_evaluation_sends_constellation_points_and_training_anneals():
    torch.manual_seed(0)
    model = DeepJSCCQ(c=16, constellation="16qam", temperature=0.5, temperature_min=0.01, anneal_steps=4)
    x = torch.rand(8, 3, 32, 32)
    for power in (1.0, 2.0):
        system = JSCCSystem(model, AWGN(10.0, power=power)).eval()
        z = system.encode(x)
        points = model.encode(x)
        assert _on(points, model.points)  # the encoder picks points of the unit-average-energy grid ...
        assert torch.equal(z, points * power**0.5)  # ... and they are sent as they are, not renormalised per example
    system = JSCCSystem(model, AWGN(10.0)).train()
    temps = []
    for _ in range(6):
        temps.append(model.temperature)
        out = system(x, generator=torch.Generator().manual_seed(1))
    assert temps[0] == pytest.approx(0.5) and temps[4] == temps[5] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(temps[:4], temps[1:5])) and int(model.step) == 6
    torch.nn.functional.mse_loss(out["x_hat"], x).backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # the soft assignment passes gradients
    state = model.state_dict()
    assert int(state["step"]) == 6 and "points" not in state  # the schedule resumes, the points are derived


@pytest.mark.parametrize("channel", [Rayleigh(csi="receiver", equalization="mmse"), OFDM(model="flat", csi="perfect")])
def test_runs_over_the_other_links(channel):
    torch.manual_seed(0)
    system = JSCCSystem(DeepJSCCQ(c=16, constellation="4qam"), channel).eval()
    out = system(torch.rand(2, 3, 32, 32), 10.0, generator=torch.Generator().manual_seed(2))
    assert out["x_hat"].shape == (2, 3, 32, 32)
    assert _on(system.model.encode(torch.rand(2, 3, 32, 32)), system.model.points)


def test_warm_start_from_deepjscc_and_bad_configs():
    torch.manual_seed(0)
    base = DeepJSCC(c=16)
    ckpt = {"model": "deepjscc", "config": base.config, "state_dict": base.state_dict()}
    q = build_model("deepjscc-q", c=16, constellation="64qam")
    q.warm_start(ckpt)
    assert torch.equal(q.encoder[0].weight, base.encoder[0].weight) and int(q.step) == 0
    with pytest.raises(ValueError, match="same backbone"):
        build_model("deepjscc-q", c=8).warm_start(ckpt)
    with pytest.raises(ValueError, match="unknown constellation"):
        DeepJSCCQ(constellation="32qam")
    with pytest.raises(ValueError, match="temperature_min"):
        DeepJSCCQ(temperature=0.01, temperature_min=0.1)
    with pytest.raises(ValueError, match="anneal_steps"):
        DeepJSCCQ(anneal_steps=0)


def test_cli_trains_from_a_deepjscc_checkpoint(tmp_path, write_pngs):
    from experiments import sweep as sweep_cli
    from experiments import train as train_cli
    from jscc.results import read_results

    write_pngs(tmp_path / "imgs", [(32, 32)] * 6)
    common = ["--data", str(tmp_path / "imgs"), "--bandwidth-ratio", "1/6", "--epochs", "1", "--batch-size", "2",
              "--val-size", "2", "--quiet"]
    assert train_cli.main([*common, "--out", str(tmp_path / "base")]) == 0
    assert train_cli.main([*common, "--model", "deepjscc-q", "--model-arg", "constellation=16qam",
                           "--model-arg", "anneal_steps=2", "--init", str(tmp_path / "base" / "best.pt"),
                           "--out", str(tmp_path / "q")]) == 0
    out = tmp_path / "q.json"
    assert sweep_cli.main([str(tmp_path / "q" / "best.pt"), "--data", str(tmp_path / "imgs"), "--snr", "0", "20",
                           "--metrics", "psnr", "--n-channel-draws", "1", "--quiet", "--out", str(out)]) == 0
    res = read_results(out)
    assert res["method"] == "deepjscc-q" and res["k"] == 512
    power = res["metrics"]["symbol_power"]  # the points sent, not renormalised: their measured mean power
    assert len(power) == 2 and power[0] == power[1] and 0 < power[0] < 1.9  # 16QAM's peak is 1.8
