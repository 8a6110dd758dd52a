"""DeepWiVe video JSCC: warping, bandwidth accounting, masks and power, policies, agent."""
from __future__ import annotations

import json
from fractions import Fraction

import kornia
import pytest
import torch

from channels import AWGN, Rayleigh
from jscc.models import ADJSCC, DeepJSCC
from jscc.models.video import (INTRA_START_RESIDUAL_WEIGHT, DeepWiVe, ScaleSpaceFlow, VideoLink, allocation_space,
                               reinforce_step, scale_space_volume, scale_space_warp, warp)
from jscc.registry import build_model
from jscc.system import JSCCSystem
from jscc.video import affine_motion, render_motion


def _tiny(**kw) -> DeepWiVe:
    """16x16-friendly model: c=8 in 4 chunks of 2 channels, 8 chunks per GOP of 4 (85 allocations)."""
    torch.manual_seed(0)
    return DeepWiVe(**{"c": 8, "chunks_per_frame": 4, "gop_chunks": 8, "hidden": (8, 8, 8, 8), "flow_hidden": 8,
                       "agent_hidden": 16, **kw})


def _video(smooth_images, batch=2, frames=5, size=16, seed=0) -> torch.Tensor:
    return smooth_images(batch * frames, size, size, seed).reshape(batch, frames, 3, size, size)


def _link(batch=2, snr=10.0, seed=1, channel=None) -> VideoLink:
    return VideoLink(channel or AWGN(), torch.full((batch,), snr), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- warping


def test_zero_flow_is_the_identity_exactly_and_warp_matches_kornia_remap():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 17, 23, generator=g)
    zero = torch.zeros(2, 2, 17, 23)
    assert torch.equal(warp(x, zero), x)
    assert torch.equal(scale_space_warp(x, zero, torch.zeros(2, 1, 17, 23), levels=4), x)
    flow = 3 * torch.randn(2, 2, 17, 23, generator=g)
    gx = torch.arange(23.0).expand(17, 23)
    gy = torch.arange(17.0)[:, None].expand(17, 23)
    ref = kornia.geometry.transform.remap(x, gx + flow[:, 0], gy + flow[:, 1], padding_mode="border", align_corners=True)
    torch.testing.assert_close(warp(x, flow), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="flow"):
        warp(x, zero[:, :1])


def test_warp_recovers_integer_translations(smooth_images):
    big = smooth_images(1, 24, 24)
    ref, frame = big[..., 4:20, 4:20], big[..., 5:21, 2:18]  # frame(p) = ref(p + (dx=-2, dy=+1))
    flow = torch.tensor([-2.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16)
    assert torch.equal(warp(ref, flow)[..., :-1, 2:], frame[..., :-1, 2:])  # exact away from the clamped border
    # the ground-truth flow of a synthetic pan (jscc.video) predicts the next frame
    motion = affine_motion(torch.tensor([[[0.0, 0.0], [3.0, -1.0]]]), 1.0, 0.0, torch.tensor([[20.0, 20.0]]), 16)
    clip = render_motion(smooth_images(1, 48, 48, seed=3), motion)[0]
    true_flow = motion.flow("backward")[:, 0]
    torch.testing.assert_close(true_flow, torch.tensor([-3.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16))
    pred = warp(clip[:1], true_flow)
    torch.testing.assert_close(pred[..., :-1, 3:], clip[1:, :, :-1, 3:], atol=1e-5, rtol=0)


def test_scale_space_levels_are_kornia_blurs_and_scale_interpolates_between_them():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    vol = scale_space_volume(x, levels=3, sigma=1.0)
    torch.testing.assert_close(vol[:, 2], kornia.filters.gaussian_blur2d(x, (13, 13), (2.0, 2.0), border_type="replicate"))
    zero = torch.zeros(1, 2, 16, 16)
    half = scale_space_warp(x, zero, torch.full((1, 1, 16, 16), 1.5), levels=3)
    torch.testing.assert_close(half, 0.5 * (vol[:, 1] + vol[:, 2]))
    torch.testing.assert_close(scale_space_warp(x, zero, torch.full((1, 1, 16, 16), 9.0), levels=3), vol[:, 2])


def test_flow_net_starts_at_zero_and_learns_a_known_shift(smooth_images):
    big = smooth_images(1, 24, 24)
    ref, frame = big[..., 4:20, 4:20], big[..., 4:20, 5:21]  # true backward flow (+1, 0)
    torch.manual_seed(0)
    net = ScaleSpaceFlow(8)
    flow, scale = net(frame, ref)
    assert torch.equal(flow, torch.zeros_like(flow)) and torch.equal(scale, torch.zeros_like(scale))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def warp_error():
        f, s = net(frame, ref)
        return (scale_space_warp(ref, f, s) - frame)[..., 2:-2, 2:-2].square().mean()

    before = warp_error().item()
    for _ in range(60):
        err = warp_error()
        opt.zero_grad()
        err.backward()
        opt.step()
    assert warp_error().item() < 0.05 * before
    mean_flow = net(frame, ref)[0][0, :, 4:12, 4:12].mean(dim=(1, 2))
    torch.testing.assert_close(mean_flow, torch.tensor([1.0, 0.0]), atol=0.15, rtol=0)


# --------------------------------------------------------------------------- bandwidth


def test_channel_uses_per_frame_gop_and_clip_and_from_bandwidth_ratio():
    m = DeepWiVe()  # c=16, 8 chunks of 2 channels, 16 chunks per GOP of 4
    assert m.channel_uses(32, 32) == 16 * 32 * 32 // 32 == 512
    assert m.chunk_channel_uses(32, 32) == 64
    assert m.gop_channel_uses(32, 32) == 16 * 64
    assert m.clip_channel_uses(32, 32, 5) == 4 * 64 + 1024  # initial key frame: 16/4 chunks
    assert m.clip_channel_uses(32, 32, 9) == 4 * 64 + 2 * 1024
    assert m.bandwidth_ratio(32, 32) == m.bandwidth_ratio(32, 32, 5) == m.bandwidth_ratio(32, 32, 13) == Fraction(1, 12)
    assert DeepWiVe.from_bandwidth_ratio("1/24").config["gop_chunks"] == 8
    assert DeepWiVe.from_bandwidth_ratio(1 / 12).bandwidth_ratio(64, 48) == Fraction(1, 12)
    public = DeepWiVe(c=16, chunks_per_frame=16, gop_chunks=16, initial_chunks=16)  # the public code's accounting
    assert public.bandwidth_ratio(32, 32) == Fraction(512, 3 * 32 * 32 * 4)  # a GOP: one frame's full code
    assert public.bandwidth_ratio(32, 32, 5) == Fraction(2 * 512, 3 * 32 * 32 * 5)  # + a full-budget key frame
    with pytest.raises(ValueError, match="gop_chunks"):
        DeepWiVe.from_bandwidth_ratio("1/7")
    with pytest.raises(ValueError, match="initial_chunks"):
        DeepWiVe(gop_chunks=10)
    with pytest.raises(ValueError, match="divide"):
        DeepWiVe(c=12, chunks_per_frame=8)


def test_allocation_space_and_policies_sum_to_the_gop_budget(smooth_images):
    space = allocation_space(4, 8, 4)
    assert space.shape == (85, 4)  # C(11,3) - 4*C(6,3)
    assert (space.sum(1) == 8).all() and space.min() == 0 and space.max() == 4
    assert len({tuple(r) for r in space.tolist()}) == 85
    m = _tiny().eval()
    assert m.uniform_allocation().tolist() == [2, 2, 2, 2]
    assert DeepWiVe(gop_chunks=18, initial_chunks=4).uniform_allocation().tolist() == [4, 4, 5, 5]
    x = _video(smooth_images, frames=9)
    for policy in ("uniform", "random", "agent"):
        out = m.transmit(x, _link(), policy=policy)
        assert out["allocation"].shape == (2, 2, 4)
        assert (out["allocation"].sum(-1) == 8).all()
        assert (out["channel_uses"] == m.clip_channel_uses(16, 16, 9)).all()
        assert torch.equal(out["mask"].sum(-1)[:, 1:].reshape(2, 2, 4), out["allocation"] * m.chunk_channel_uses(16, 16))
    assert (m.transmit(x, _link(), policy="agent")["allocation"] == 2).all()  # the agent starts at the uniform split


def test_masked_symbols_are_zero_and_power_is_normalised_per_frame_over_sent_symbols(smooth_images):
    m = _tiny()
    x = _video(smooth_images)
    alloc = torch.tensor([[[0, 4, 1, 3]], [[2, 2, 4, 0]]])
    for power in (1.0, 2.0):
        link = VideoLink(AWGN(power=power), torch.tensor([5.0, 15.0]), power=power,
                         generator=torch.Generator().manual_seed(0))
        out = m.transmit(x, link, allocation=alloc)
        z, y, mask = out["z"], out["y"], out["mask"]
        assert z.shape == y.shape == mask.shape == (2, 5, m.channel_uses(16, 16))
        assert torch.equal(out["allocation"], alloc)
        assert (z[~mask] == 0).all() and (y[~mask] == 0).all()
        sent = mask.sum(-1)
        energy = z.abs().square().sum(-1)
        torch.testing.assert_close(energy[sent > 0] / sent[sent > 0], torch.full_like(energy[sent > 0], power))
        assert (energy[sent == 0] == 0).all()
        # mask = the first chunks of each frame; initial key frame = gop_chunks / G = 2 chunks
        assert torch.equal(sent, torch.tensor([[2, 0, 4, 1, 3], [2, 2, 2, 4, 0]]) * m.chunk_channel_uses(16, 16))


def test_intra_only_reference_codes_each_frame_alone_at_the_same_bandwidth(smooth_images):
    m = _tiny().eval()
    x = _video(smooth_images)
    alloc = torch.tensor([[[0, 4, 1, 3]], [[2, 2, 4, 0]]])
    with torch.no_grad():
        video = m.transmit(x, _link(), allocation=alloc)
        m.intra_only = True
        intra = m.transmit(x, _link(), allocation=alloc)
        # frame t's reconstruction is the key-frame codec applied to frame t alone (same chunks, same noise)
        changed = x.clone()
        changed[:, 2] = 1 - changed[:, 2]
        other = m.transmit(changed, _link(), allocation=alloc)
    assert torch.equal(intra["mask"], video["mask"]) and torch.equal(intra["channel_uses"], video["channel_uses"])
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(other["x_hat"][:, keep], intra["x_hat"][:, keep])
    assert not torch.allclose(other["x_hat"][:, 2], intra["x_hat"][:, 2])


# --------------------------------------------------------------------------- system, shapes, gradients


def test_through_jscc_system_shapes_gradients_and_registry(smooth_images):
    m = _tiny()
    x = _video(smooth_images)
    out = JSCCSystem(m, AWGN())(x, torch.tensor([0.0, 20.0]), generator=torch.Generator().manual_seed(0))
    assert {"x_hat", "z", "y", "mask", "allocation", "channel_uses", "warp_mse"} <= set(out)
    assert out["x_hat"].shape == x.shape and 0 <= out["x_hat"].min() and out["x_hat"].max() <= 1
    assert out["z"].dtype == torch.complex64 and out["allocation"].dtype == torch.int64
    m.loss(out, x).backward()
    for name in ("key_codec.encoder.0.weight", "key_codec.decoder.0.weight", "interp_encoder.0.weight",
                 "interp_decoder.0.weight", "flow_net.head.2.weight"):
        grad = m.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert m.agent.net[0].weight.grad is None  # the agent learns by REINFORCE only
    config = json.loads(json.dumps(m.config))
    rebuilt = build_model("deepwive", **config)
    assert rebuilt.config == m.config
    rebuilt.load_state_dict(m.state_dict(), strict=True)
    image = DeepJSCC(c=8, hidden=(8, 8, 8, 8))  # warm start of the key-frame codec
    m.warm_start({"model": "deepjscc", "config": image.config, "state_dict": image.state_dict()})
    torch.testing.assert_close(m.key_codec.encode(x[:, 0], torch.tensor([3.0, 9.0])), image.encode(x[:, 0]))


def test_warm_start_from_an_image_codec_starts_the_interpolation_codec_as_intra_coding(smooth_images):
    """After a warm start from an image codec, an interpolated frame's symbols are exactly the image
    encoder's and its reconstruction is w * intra + (1 - w)/2 * (r_a + r_b) (identity warps)."""
    m = _tiny()
    torch.manual_seed(3)
    image = ADJSCC(c=8, hidden=(8, 8, 8, 8))
    for module in (*image.encoder_attention, *image.decoder_attention):  # attention that is not the identity
        torch.nn.init.normal_(module.context[-1].weight, std=0.5)
    m.warm_start({"model": "adjscc", "config": image.config, "state_dict": image.state_dict()})
    frames = _video(smooth_images, batch=2, frames=3)
    target, ref_a, ref_b = frames.unbind(1)
    snr = torch.tensor([2.0, 15.0])
    symbols, _ = m._interp_encode(target, ref_a, ref_b, snr)
    torch.testing.assert_close(symbols, image.encode(target, snr))
    y = symbols + 0.1 * torch.randn_like(symbols)
    w = INTRA_START_RESIDUAL_WEIGHT
    expected = w * image.decode(y, (16, 16), snr) + (1 - w) / 2 * (ref_a + ref_b)
    torch.testing.assert_close(m._interp_decode(y, ref_a, ref_b, snr, (16, 16)), expected)
    m.key_codec.config = {**m.key_codec.config, "csi_side_input": True}
    with pytest.raises(ValueError, match="2019 key codec"):
        m.init_interp_as_intra()


def test_rayleigh_slow_fading_holds_one_h_per_clip_and_hierarchical_order(smooth_images):
    m = _tiny(interp_order="hierarchical", tx_reference="original").eval()
    assert m.stages == [[(2, 0, 4)], [(1, 0, 2), (3, 2, 4)]]
    out = JSCCSystem(m, Rayleigh())(_video(smooth_images, frames=9), 10.0)
    h = out["h"]
    assert h.shape == out["z"].shape and torch.equal(h, h[:, :1, :1].expand_as(h))


def test_bad_inputs_raise_clear_errors(smooth_images):
    m = _tiny()
    for frames in (4, 6, 1):
        with pytest.raises(ValueError, match="1 \\+ 4\\*m"):
            m.transmit(_video(smooth_images, frames=frames), _link())
    x = _video(smooth_images)
    with pytest.raises(ValueError, match="sum to gop_chunks = 8"):
        m.transmit(x, _link(), allocation=torch.tensor([2, 2, 2, 1]))
    with pytest.raises(ValueError, match="0..4"):
        m.transmit(x, _link(), allocation=torch.tensor([5, 1, 1, 1]))
    with pytest.raises(ValueError, match="\\(B, T, 3, H, W\\)"):
        m.transmit(x[:, 0], _link())
    with pytest.raises(ValueError, match="stop_psnr_db"):
        m.transmit(x, _link(), stop_psnr_db=30.0)
    with pytest.raises(ValueError, match="side input"):
        JSCCSystem(m, Rayleigh(csi="receiver", equalization="side"))(x, 10.0)


# --------------------------------------------------------------------------- oracle and agent


def test_oracle_beats_every_allocation_on_the_same_channel_realisation(smooth_images):
    m = DeepWiVe(c=4, chunks_per_frame=2, gop_chunks=4, hidden=(4, 4, 4, 4), flow_hidden=4).eval()
    assert len(m.allocation_space()) == 19
    x = _video(smooth_images)

    def gop_mse(out):
        return (out["x_hat"] - x)[:, 1:].square().mean(dim=(1, 2, 3, 4))

    with torch.no_grad():
        oracle = m.transmit(x, _link(seed=7), policy="oracle")
        others = torch.stack([gop_mse(m.transmit(x, _link(seed=7), allocation=a)) for a in m.allocation_space()])
    assert (gop_mse(oracle) <= others.min(0).values + 1e-7).all()
    # the oracle's choice replayed with the same noise gives the same reconstruction
    with torch.no_grad():
        replay = m.transmit(x, _link(seed=7), allocation=oracle["allocation"])
    assert torch.equal(replay["x_hat"], oracle["x_hat"]) and torch.equal(replay["y"], oracle["y"])


def test_reinforce_step_increases_expected_reward_on_a_toy_bandit():
    torch.manual_seed(0)
    contexts = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(8, 1)  # two contexts, 16 examples
    table = torch.tensor([[0.0, 1.0, 0.2, 0.0], [0.5, 0.0, 0.0, 1.0]])  # reward of each action per context
    rewards = table[contexts.argmax(1)]
    policy = torch.nn.Linear(2, 4)
    opt = torch.optim.Adam(policy.parameters(), lr=0.05)

    def expected_reward():
        with torch.no_grad():
            return (torch.softmax(policy(contexts), -1) * rewards).sum(-1).mean().item()

    before = expected_reward()
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        stats = reinforce_step(policy, contexts, lambda a: rewards.gather(1, a), opt, n_samples=4, generator=gen)
    assert set(stats) == {"loss", "reward"}
    assert before < 0.5 and expected_reward() > 0.9


def test_train_agent_step_changes_only_the_agent(smooth_images):
    m = _tiny().eval()
    x = _video(smooth_images)
    frozen = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("agent.")}
    agent_before = [p.clone() for p in m.agent.parameters()]
    opt = torch.optim.Adam(m.agent.parameters(), lr=1e-2)
    stats = m.train_agent_step(x, _link(), opt, n_samples=3)
    assert set(stats) == {"loss", "reward"} and all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(agent_before, m.agent.parameters()))
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in frozen.items())
    features = m.agent_features(x[:, 1:], x[:, 0], torch.tensor([0.0, 20.0]))
    assert features.shape == (2, 13) and torch.isfinite(features).all()


def test_sweep_results_for_video_report_per_frame_metrics_and_clip_bandwidth():
    from jscc.evaluate import sweep_results
    from jscc.results import validate_results
    from jscc.video import VideoSet

    model = _tiny()
    clips = VideoSet(torch.randint(0, 256, (2, 5, 3, 16, 16), dtype=torch.uint8), "rand-clips")
    res = sweep_results(JSCCSystem(model, AWGN()), clips, [0.0, 10.0], name="wive", n_channel_draws=2, command="test")
    validate_results(res)
    assert len(res["metrics_per_frame"]) == 5 and len(res["metrics_per_frame"][0]["psnr"]) == 2
    assert res["k"] == model.clip_channel_uses(16, 16, 5)
    assert res["bandwidth_ratio"] == pytest.approx(float(model.bandwidth_ratio(16, 16, 5)))
    assert res["metrics"]["channel_uses"] == [float(res["k"])] * 2
