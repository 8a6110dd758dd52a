"""SwinJSCC (jscc/models/swin.py): exact k per ratio, shapes and sizes, power per example, gradients through
the channel, SNR and rate conditioning, the shifted-window mask, a tiny model that learns."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from channels import AWGN
from jscc.models.swin import SwinBlock, SwinJSCC, channels_for_ratio
from jscc.registry import build_model
from jscc.system import JSCCSystem

TINY = dict(dims=[8, 8, 12, 12], depths=[1, 1, 1, 1], heads=[1, 1, 2, 2], window=4, mlp_ratio=2.0)


def _model(**kwargs) -> SwinJSCC:
    torch.manual_seed(0)
    return SwinJSCC(**{**TINY, **kwargs})


@pytest.mark.parametrize("ratio, channels", [("1/48", 32), ("1/16", 96), ("1/12", 128), ("1/8", 192)])
def test_exact_channel_uses_per_ratio(ratio, channels):
    assert channels_for_ratio(ratio) == channels
    model = _model(ratio=ratio).eval()
    for height, width in [(32, 32), (64, 128), (512, 768)]:
        k = channels * (height // 16) * (width // 16) // 2
        assert model.channel_uses(height, width) == k
        assert model.bandwidth_ratio(height, width) == Fraction(ratio)
    x = torch.rand(2, 3, 64, 128)
    z = model.encode(x, torch.tensor([0.0, 20.0]))
    assert z.shape == (2, model.channel_uses(64, 128)) and z.dtype == torch.complex64
    assert model.decode(z, (64, 128), torch.tensor([0.0, 20.0])).shape == x.shape


def test_one_model_serves_every_ratio_and_the_system_normalises_power():
    model = _model().eval()
    system = JSCCSystem(model, AWGN(10.0, power=2.0))
    x = torch.rand(3, 3, 32, 32)
    for ratio in model.config["ratios"]:
        model.set_bandwidth_ratio(ratio)
        z = system.encode(x, 10.0)
        assert z.shape == (3, channels_for_ratio(ratio) * 2 * 2 // 2)
        torch.testing.assert_close(z.abs().square().mean(1), torch.full((3,), 2.0))  # power P per example
        assert system(x, 10.0, generator=torch.Generator().manual_seed(0))["x_hat"].shape == x.shape
    # training draws a ratio per batch from `ratios`
    model.train()
    sizes = {model.encode(x, torch.full((3,), 5.0)).shape[1] for _ in range(40)}
    assert sizes == {channels_for_ratio(r) * 2 for r in model.config["ratios"]}


def test_snr_and_rate_change_the_output():
    model = _model().eval()
    for scale in (*model.encoder_scales, model.encoder_head_scale, *model.decoder_scales, model.decoder_head_scale):
        torch.nn.init.normal_(scale.mlp[2].weight, std=0.5)  # trained modulation (zero at initialisation)
    x = torch.rand(2, 3, 32, 32)
    low, high = model.encode(x, torch.full((2,), 0.0)), model.encode(x, torch.full((2,), 20.0))
    assert (low - high).abs().max() > 1e-3
    assert (model.decode(low, (32, 32), torch.full((2,), 0.0)) - model.decode(low, (32, 32), torch.full((2,), 20.0))).abs().max() > 1e-4
    model.set_bandwidth_ratio("1/48")
    small = model.encode(x, torch.full((2,), 20.0))
    # the same first channels at another rate condition differ: the modulation sees the ratio
    prefix = torch.view_as_real(high).reshape(2, 96, 4)[:, :32]
    assert (torch.view_as_real(small).reshape(2, 32, 4) - prefix).abs().max() > 1e-4


def test_gradients_flow_through_the_channel():
    system = JSCCSystem(_model(), AWGN(5.0)).train()
    x = torch.rand(2, 3, 32, 32)
    torch.nn.functional.mse_loss(system(x, generator=torch.Generator().manual_seed(1))["x_hat"], x).backward()
    for name in ("embed.weight", "encoder_head.weight", "decoder_head.weight", "unembed.weight",
                 "encoder_stages.0.blocks.0.attention.qkv.weight"):
        grad = dict(system.model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_shifted_windows_attend_only_within_the_original_neighbourhood():
    # 8x8 tokens, window 4, shift 2: after the roll, tokens (0,0) and (7,7) share a window but were not neighbours
    # in the image: the mask keeps them apart; (0,0) and (1,1) are neighbours and attend to each other.
    torch.manual_seed(0)
    block = SwinBlock(dim=8, heads=2, window=4, shifted=True).eval()
    x = torch.randn(1, 8, 8, 8)
    bumped = x.clone()
    bumped[0, 0, 0, 0] += 5.0  # one channel of token (0, 0)
    diff = (block(bumped) - block(x)).abs().sum(-1)[0]
    assert diff[7, 7] < 1e-6 and diff[1, 1] > 1e-4


@pytest.mark.parametrize("size", [(24, 32), (48, 48), (8, 8)])
def test_sizes_the_grid_cannot_take_are_rejected(size):
    with pytest.raises(ValueError, match="multiples of 16"):
        _model().encode(torch.rand(1, 3, *size), torch.zeros(1))


def test_bad_configurations():
    with pytest.raises(ValueError, match="positive even integer"):
        channels_for_ratio("1/1000")
    with pytest.raises(ValueError, match="serves k/n"):
        _model().set_bandwidth_ratio("1/6")
    with pytest.raises(ValueError, match="4 entries"):
        SwinJSCC(dims=[8, 8])
    with pytest.raises(ValueError, match="SNR-adaptive"):
        _model().encode(torch.rand(1, 3, 32, 32))
    model = build_model("swinjscc", **SwinJSCC.from_bandwidth_ratio("1/6", **TINY).config)
    assert model.config["ratio"] == "1/6" and "1/6" in model.config["ratios"]  # from_bandwidth_ratio adds it


def test_a_tiny_model_learns_a_tiny_image_set():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 1, 1).expand(4, 3, 32, 32).clone() * 0.6 + 0.2 * torch.rand(4, 3, 32, 32)
    system = JSCCSystem(_model(ratios=["1/16"]), AWGN(20.0)).train()
    optimizer = torch.optim.Adam(system.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(system(x, generator=generator)["x_hat"], x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.3 * sum(losses[:10]) / 10, (losses[:3], losses[-3:])


def test_cli_trains_one_model_and_sweeps_it_at_two_ratios(tmp_path, write_pngs):
    import json

    from experiments import sweep as sweep_cli
    from experiments import train as train_cli
    from jscc.results import read_results

    write_pngs(tmp_path / "imgs", [(32, 32)] * 6)
    tiny = [arg for key, value in TINY.items() for arg in ("--model-arg", f"{key}={json.dumps(value)}")]
    assert train_cli.main(["--model", "swinjscc", "--bandwidth-ratio", "1/16", *tiny, "--model-arg", 'ratios=["1/48","1/16"]',
                           "--data", str(tmp_path / "imgs"), "--epochs", "1", "--batch-size", "2", "--val-size", "2",
                           "--train-snr-range", "0", "20", "--quiet", "--out", str(tmp_path / "run")]) == 0
    for ratio, k in (("1/16", 192), ("1/48", 64)):
        out = tmp_path / f"{ratio.replace('/', '_')}.json"
        assert sweep_cli.main([str(tmp_path / "run" / "best.pt"), "--data", str(tmp_path / "imgs"), "--snr", "5",
                               "--bandwidth-ratio", ratio, "--n-channel-draws", "1", "--quiet", "--out", str(out)]) == 0
        res = read_results(out)
        assert (res["method"], res["k"], res["bandwidth_ratio_str"]) == ("swinjscc", k, ratio)
    with pytest.raises(SystemExit, match="serves k/n in 1/48, 1/16, not 1/8"):
        sweep_cli.main([str(tmp_path / "run" / "best.pt"), "--data", str(tmp_path / "imgs"), "--bandwidth-ratio", "1/8",
                        "--out", str(tmp_path / "x.json")])
