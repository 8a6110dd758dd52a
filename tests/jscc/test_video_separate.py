"""Separate video baseline: H.264 / H.265 clips over the capacity and per-GOP LDPC links, the cliff per clip.

Tiny clips (2 clips of T = 5 frames of 32x32); tests that code skip when PyAV / the encoder is missing.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import jscc.baselines.video_codecs as vc
from channels.links import BlerTable, capacity_link_bits, transport_block_info_bits
from experiments import baseline as baseline_cli
from jscc.baselines.separate import PSNR_CAP_DB
from jscc.baselines.video_codecs import encode_clip_to_budget, fallback_clip, video_channel_uses
from jscc.baselines.video_separate import (VideoSeparateBaseline, gop_channel_uses, gop_layout,
                                           video_baseline_results)
import jscc.metrics as M
from jscc.metrics import ssim
from jscc.results import validate_results
from jscc.video import VideoSet

needs_h264 = pytest.mark.skipif(not vc.video_codec_available("h264"), reason="PyAV with libx264 not installed")
CODECS = [pytest.param(name, marks=pytest.mark.skipif(not vc.video_codec_available(name),
                                                      reason=f"PyAV with {vc.VIDEO_CODECS[name][0]} not installed"))
          for name in ("h264", "h265")]
T, SIZE = 5, 32


def panning_clips(n: int = 2, t: int = T, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """uint8 ``(n, t, 3, size, size)``: smooth images (mostly luminance) panning 2 px right per frame."""
    g = torch.Generator().manual_seed(seed)
    width = size + 2 * t
    up = lambda x: torch.nn.functional.interpolate(x, size=(size, width), mode="bicubic", align_corners=False)  # noqa: E731
    clips = []
    for _ in range(n):
        big = 0.15 + 0.7 * up(torch.rand(1, 1, size // 6 + 2, width // 6 + 2, generator=g)) \
            + 0.15 * up(torch.rand(1, 3, 3, 4, generator=g))
        big = (big.clamp(0, 1)[0] * 255).round().to(torch.uint8)
        clips.append(torch.stack([big[:, :, 2 * i : 2 * i + size] for i in range(t)]))
    return torch.stack(clips)


@pytest.fixture(scope="module")
def clips() -> VideoSet:
    return VideoSet(panning_clips(), "panning")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-frame PSNR (dB, peak 1) of two uint8 ``(T, 3, H, W)`` clips."""
    mse = ((a.double() - b.double()) / 255).square().mean(dim=(1, 2, 3))
    return (-10 * torch.log10(mse)).numpy()


def test_budget_arithmetic_is_exact():
    # k = (1/12) * 3 * 32 * 32 * 5 = 1280 channel uses per clip; floor(1280 log2 11) = floor(4428.07)
    assert video_channel_uses(T, SIZE, SIZE, Fraction(1, 12)) == 1280
    assert capacity_link_bits(1280, 10.0) == 4428
    assert capacity_link_bits(1280, 0.0) == 1280  # log2(2) = 1
    assert gop_layout(5, 4) == [(0, 4), (4, 5)] and gop_layout(9, 4) == [(0, 4), (4, 8), (8, 9)]
    assert gop_layout(5, None) == [(0, 5)]
    assert gop_channel_uses(1280, gop_layout(5, 4)) == [1024, 256]  # k/n 3HW T_g per GOP
    assert gop_channel_uses(224_640, gop_layout(9, 4)) == [99_840, 99_840, 24_960]  # 416x240x9 at 1/12
    assert gop_channel_uses(10, [(0, 1), (1, 3)]) == [3, 7]  # floor of the share, the last GOP the rest
    # DeepWiVe's clip: 17 frames of 416x240 at k/n = 2/51 -> k = 199,680 (46,983.5 per 4 frames):
    # equal GOPs get equal k_g (one BLER table), the extra key frame the rest
    k = video_channel_uses(17, 240, 416, Fraction(2, 51))
    assert k == 199_680 and gop_channel_uses(k, gop_layout(17, 4)) == [46_983] * 4 + [11_748]
    with pytest.raises(ValueError, match="not a positive integer"):
        video_channel_uses(T, SIZE, SIZE, Fraction(1, 7))


@needs_h264
def test_baseline_records_k_and_budgets(clips):
    b = VideoSeparateBaseline(clips, codec="h264", bandwidth_ratio="1/12")
    assert (b.k, b.n, b.t, b.gops, b.gop_k) == (1280, 15360, 5, [(0, 4), (4, 5)], [1024, 256])
    assert b.capacity_point(10.0).bits == 4428 and b.block_budgets(b.capacity_point(10.0)) == (4428,)


@pytest.mark.parametrize("codec", CODECS)
def test_capacity_awgn_cliff(clips, codec):
    """At or above the design SNR each clip is the codec's reconstruction, below it the mean frame."""
    b = VideoSeparateBaseline(clips, codec=codec, bandwidth_ratio="1/12", gop=4)
    point = b.capacity_point(10.0)
    gen = torch.Generator().manual_seed(0)
    codec_psnr, fallback_psnr = [], []
    for i, coded in enumerate(b.coded(point)):
        frames = clips.clip(i)
        ref = encode_clip_to_budget(frames, 4428, codec, gop=4, accounting="payload")
        assert coded.result.counted_bits == ref.counted_bits <= 4428  # the payload never exceeds the budget
        assert torch.equal(coded.result.reconstruction, ref.reconstruction)
        assert torch.equal(b.receive(i, point, b.delivered(point, 10.0, gen)[i]), ref.reconstruction)
        assert torch.equal(b.receive(i, point, b.delivered(point, 9.9, gen)[i]), fallback_clip(frames, "clip_mean"))
        codec_psnr.append(_psnr(ref.reconstruction, frames))
        fallback_psnr.append(_psnr(fallback_clip(frames, "clip_mean"), frames))
    codec_psnr, fallback_psnr = np.stack(codec_psnr), np.stack(fallback_psnr)
    out = b.sweep([9.9, 10.0, 20.0], 10.0, n_channel_draws=2)
    psnr = out["metrics"]["psnr"]
    assert psnr[0] == pytest.approx(fallback_psnr.mean()) and psnr[1] == pytest.approx(codec_psnr.mean())
    assert psnr[1] == psnr[2] and psnr[1] > psnr[0] + 15  # flat above the cliff
    assert len(out["per_frame"]) == T
    for t in range(T):
        assert out["per_frame"][t]["psnr"][2] == pytest.approx(codec_psnr[:, t].mean())
        assert out["per_frame"][t]["psnr"][0] == pytest.approx(fallback_psnr[:, t].mean())
    # SSIM (32x32 frames: too small for MS-SSIM's 5 scales) of what the receiver shows
    assert b.ssim_name == "ssim"
    shown = lambda snr: torch.stack([b.receive(i, point, b.delivered(point, snr, gen)[i])  # noqa: E731
                                     for i in range(len(clips))]).flatten(0, 1).float() / 255
    ref = torch.stack([clips.clip(i) for i in range(len(clips))]).flatten(0, 1).float() / 255
    for col, snr in ((0, 9.9), (1, 10.0)):
        assert out["metrics"]["ssim"][col] == pytest.approx(ssim(shown(snr), ref).mean().item(), abs=1e-5)
    assert out["metrics"]["ssim"][1] > out["metrics"]["ssim"][0] + 0.3


@needs_h264
def test_nothing_fits_gives_the_fallback_at_every_snr(clips):
    b = VideoSeparateBaseline(clips, codec="h264", bandwidth_ratio="1/12")
    point = b.capacity_point(-20.0)  # floor(1280 log2 1.01) = 18 bits: no H.264 clip fits
    assert point.bits == 18 and all(c.result is None and not c.fits.any() for c in b.coded(point))
    out = b.sweep([0.0, 20.0], -20.0, n_channel_draws=1)
    assert out["metrics"]["psnr"] == pytest.approx([float((-10 * np.log10(b.fallback_mse)).mean())] * 2)
    # per SNR, 2 clips x 2 GOPs x 1 draw: all fell back
    assert out["delivery"] == {"unit": "GOP x channel draw", "delivered": [0, 0], "fell_back": [4, 4]}


def _step_table(k: int, mcs: str, threshold_db: float) -> BlerTable:
    """A synthetic AWGN BLER table: 1 up to ``threshold_db``, 0 from 1e-6 dB above (no Sionna simulation)."""
    key = {"k": k, "mcs": mcs, "tb_size": transport_block_info_bits(k, mcs)}
    return BlerTable(key=key, snr_db=np.array([threshold_db, threshold_db + 1e-6]), bler=np.array([1.0, 0.0]),
                     n_blocks=np.array([100, 100]), n_errors=np.array([100, 0]))


@needs_h264
@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_ldpc_one_tb_per_gop(clips, channel):
    mcs = "16QAM-r1/2"
    b = VideoSeparateBaseline(clips, codec="h264", link="ldpc", channel=channel, bandwidth_ratio="1/12",
                              metrics=("lpips",) if channel == "awgn" else ())
    for k_g in b.gop_k:
        b._tables[(k_g, mcs)] = _step_table(k_g, mcs, 6.0)
    point = b.ldpc_point(mcs)
    tbs = [transport_block_info_bits(1024, mcs), transport_block_info_bits(256, mcs)]
    assert b.block_budgets(point) == tuple(tbs) and point.bits == sum(tbs)
    coded = b.coded(point)
    for c in coded:
        assert c.fits.all() and [r.counted_bits <= tb for r, tb in zip(c.block_results, tbs)] == [True, True]
    gen = torch.Generator().manual_seed(0)
    if channel == "awgn":
        assert b.delivered(point, 10.0, gen).all() and not b.delivered(point, 0.0, gen).any()
    else:  # one h per clip shared by its TBs: with equal step tables, both GOPs share one fate
        ok = np.concatenate([b.delivered(point, 10.0, gen) for _ in range(50)])
        assert (ok[:, 0] == ok[:, 1]).all() and 0 < ok.mean() < 1
    # The per-frame MSE (and LPIPS) tables equal what video_codecs.reconstruct delivers, for every loss pattern.
    for pattern in itertools.product([False, True], repeat=len(b.gops)):
        mse = b.frame_mse(point, np.array([pattern] * len(clips)))
        lpips = b.frame_lpips(point, np.array([pattern] * len(clips))) if channel == "awgn" else None
        for i in range(len(clips)):
            received = b.receive(i, point, pattern)
            ref = ((received.double() - clips.clip(i).double()) / 255).square().mean(dim=(1, 2, 3)).numpy()
            np.testing.assert_allclose(mse[i], ref, rtol=1e-12)
            if lpips is not None:
                with torch.no_grad():
                    ref = M.lpips_distance(b._lpips, received.float() / 255, clips.clip(i).float() / 255)
                np.testing.assert_allclose(lpips[i], ref.double().numpy(), atol=1e-6)
    if channel == "awgn":
        out = b.sweep([0.0, 10.0], mcs, n_channel_draws=1)
        assert out["metrics"]["lpips"][0] > out["metrics"]["lpips"][1] and "lpips" in out["per_frame"][0]
    rec = coded[0].result.reconstruction
    assert torch.equal(b.receive(0, point, [True, False])[4], rec[3])  # GOP 1 lost: frame 3 frozen
    lost_first = b.receive(0, point, [False, True])
    assert torch.equal(lost_first[:4], fallback_clip(clips.clip(0))[:4]) and torch.equal(lost_first[4], rec[4])


@needs_h264
def test_oracle_is_the_envelope_of_fixed_designs(clips):
    b = VideoSeparateBaseline(clips, codec="h264", bandwidth_ratio="1/12")
    snrs = [4.0, 10.0, 16.0]
    oracle = b.sweep(snrs, "oracle", n_channel_draws=1)["metrics"]["psnr"]
    for design in (5.0, 10.0, 15.0):
        fixed = b.sweep(snrs, design, n_channel_draws=1)["metrics"]["psnr"]
        assert all(o >= f - 1e-9 for o, f in zip(oracle, fixed))
        # AWGN capacity is deterministic: the expected PSNR is the measured one
        assert [b.expected_psnr(b.capacity_point(design), s) for s in snrs] == pytest.approx(fixed)
    assert oracle[0] < oracle[1] < oracle[2]


@needs_h264
def test_capacity_rayleigh_outage_rate(clips):
    """Slow fading, one h per clip: P(delivered) = exp(-(2^R - 1)/snr), R = bits / k."""
    b = VideoSeparateBaseline(clips, codec="h264", channel="rayleigh", bandwidth_ratio="1/12")
    point = b.capacity_point(10.0)
    gen = torch.Generator().manual_seed(0)
    ok = np.concatenate([b.delivered(point, 10.0, gen) for _ in range(4000)])  # 8,000 (clip, draw) pairs
    assert (ok == ok[:, :1]).all()  # all GOPs of a clip share its codeword's fate
    expected = math.exp(-(2 ** (4428 / 1280) - 1) / 10.0)  # 0.368
    # binomial std at n = 8,000: 0.0054; 0.025 is ~4.6 sigma
    assert abs(ok[:, 0].mean() - expected) < 0.025
    # the sweep's mean PSNR matches the expectation over the outage (std of the mean ~0.2 dB here)
    psnr = b.sweep([10.0], 10.0, n_channel_draws=1000, seed=1)["metrics"]["psnr"][0]
    assert psnr == pytest.approx(b.expected_psnr(point, 10.0), abs=1.0)


@needs_h264
def test_results_validate_and_record_the_setup(clips):
    b = VideoSeparateBaseline(clips, codec="h264", bandwidth_ratio="1/12", fallback="dataset_mean")
    res = video_baseline_results(b, [0.0, 10.0, 20.0], 10.0, n_channel_draws=2)
    validate_results(res)
    delivery = res["delivery"]  # (clip GOP, draw) pairs: 2 clips x 2 GOPs x 2 draws per SNR
    assert delivery["delivered"][0] == 0 and delivery["delivered"][2] > 0
    assert [d + f for d, f in zip(delivery["delivered"], delivery["fell_back"])] == [8, 8, 8]
    assert res["method"] == "separate" and res["codec"] == "h264" and res["link"] == "capacity"
    assert res["design_snr_db"] == 10.0 and res["byte_accounting"] == "payload" and res["fallback"] == "dataset_mean"
    assert res["k"] == 1280 and res["bandwidth_ratio_str"] == "1/12" and res["dataset"]["n_images"] == 2
    assert len(res["metrics_per_frame"]) == T and all(len(m["psnr"]) == 3 for m in res["metrics_per_frame"])
    assert max(res["metrics"]["psnr"]) < PSNR_CAP_DB and "libx264" in res["notes"] and "[0-3], [4]" in res["notes"]
    # dataset_mean: below the cliff every frame is the test set's mean colour
    mean = (torch.tensor(b.dataset_mean) * 255).round().to(torch.uint8)
    assert (b.receive(0, b.capacity_point(10.0), [False, False]) == mean[:, None, None]).all()


def test_bad_input(clips, tmp_path):
    with pytest.raises(ValueError, match="holds no clips"):
        VideoSet([], "empty")
    with pytest.raises(ValueError, match="unknown video codec"):
        VideoSeparateBaseline(clips, codec="bpg")
    with pytest.raises(ValueError, match="unknown link"):
        VideoSeparateBaseline(clips, link="turbo")
    with pytest.raises(ValueError, match="unknown fallback"):
        VideoSeparateBaseline(clips, fallback="image_mean")
    with pytest.raises(ValueError, match="gop must be"):
        VideoSeparateBaseline(clips, gop=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no clips found"):
        baseline_cli.main(["--codec", "h264", "--frames", "5", "--design-snr", "10", "--data", str(tmp_path / "empty"),
                           "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="use --codec h264"):
        baseline_cli.main(["--codec", "jpeg2000", "--frames", "5", "--design-snr", "10", "--out", "x.json"])
    with pytest.raises(SystemExit):  # argparse: invalid choice
        baseline_cli.main(["--codec", "bpg", "--frames", "5", "--design-snr", "10", "--out", "x.json"])
    if not vc.video_codec_available("h264"):
        return
    with pytest.raises(ValueError, match="not a positive integer"):
        VideoSeparateBaseline(clips, bandwidth_ratio="1/7")
    with pytest.raises(ValueError, match="one shape"):
        VideoSeparateBaseline(VideoSet([panning_clips(1)[0], panning_clips(1, t=4)[0]], "mixed"))
    with pytest.raises(ValueError, match="design must be"):
        VideoSeparateBaseline(clips).sweep([10.0], "best")


@needs_h264
def test_awgn_capacity_oracle_codes_only_feasible_designs_and_equals_the_full_search(clips):
    """As for images (jscc.baselines.separate.oracle_candidates): on AWGN only the designs <= the
    test SNR can succeed, so only their budgets are coded, and the choice equals a search over the
    whole design grid (the fallback when none beats it)."""
    from jscc.baselines.separate import CAPACITY_DESIGN_GRID

    b = VideoSeparateBaseline(clips, codec="h264", bandwidth_ratio="1/12")
    snrs = [-6.0, 8.0]
    oracle = b.sweep(snrs, "oracle", n_channel_draws=1)
    assert oracle["points"][0] is None
    feasible = {b._key(b.capacity_point(d)) for d in CAPACITY_DESIGN_GRID if d <= 8.0}
    assert set(b._coded) == feasible
    fallback = float(np.mean(-10 * np.log10(b.fallback_mse)))
    for snr, psnr in zip(snrs, oracle["metrics"]["psnr"]):
        full = [b.expected_psnr(b.capacity_point(d), snr) if d <= snr else fallback for d in CAPACITY_DESIGN_GRID]
        assert psnr == pytest.approx(max(full), abs=1e-9)


def _recording_step_tables(b: VideoSeparateBaseline, gap_db: float = 1.0) -> list:
    """Make ``b.table`` return step tables ``gap_db`` above each TB's Shannon limit; returns the built (k, MCS)."""
    built = []

    def table(k_g, mcs):
        built.append((k_g, mcs.name))
        return _step_table(k_g, mcs.name, b.shannon_limit_db(k_g, mcs) + gap_db)

    b.table = table
    return built


@needs_h264
def test_ldpc_awgn_bler_is_one_above_capacity_without_a_table(clips):
    b = VideoSeparateBaseline(clips, codec="h264", link="ldpc", bandwidth_ratio="1/12")
    built = _recording_step_tables(b)
    mcs = b.ldpc_point("16QAM-r1/2").mcs
    limits = [b.shannon_limit_db(k_g, mcs) for k_g in b.gop_k]
    assert all(4.0 < lim < 5.5 for lim in limits)  # log2(1 + snr) = tb / k_g ~ 2 bits per channel use
    assert b.gop_bler(mcs, 4.0).tolist() == [1.0, 1.0] and built == []
    assert b.gop_bler(mcs, max(limits) + 2.0).tolist() == [0.0, 0.0] and len(built) == 2
    assert not b.delivered(b.ldpc_point(mcs), 4.0, torch.Generator()).any() and len(built) == 2


@needs_h264
def test_ldpc_design_search_builds_only_the_tables_it_needs(clips):
    b = VideoSeparateBaseline(clips, codec="h264", link="ldpc", bandwidth_ratio="1/12")
    built = _recording_step_tables(b, gap_db=1.0)
    points = b._by_payload()
    assert [p.bits for p in points] == sorted((p.bits for p in points), reverse=True)
    for design in (-3.0, 3.0, 10.0):
        built.clear()
        best = b.design_mcs(design)
        # brute force: the most payload among the MCSs whose every TB is 1 dB above its limit by `design`
        ok = [p for p in points if all(b.shannon_limit_db(k_g, p.mcs) + 1.0 < design for k_g in b.gop_k)]
        assert best is not None and b.ldpc_point(best).bits == max(p.bits for p in ok)
        assert {name for _, name in built} <= {p.mcs.name for p in points if p.bits >= b.ldpc_point(best).bits}
    assert b.design_mcs(-20.0) is None


@needs_h264
def test_ldpc_awgn_oracle_stops_at_the_first_sure_mcs_and_equals_the_full_search(clips):
    b = VideoSeparateBaseline(clips, codec="h264", link="ldpc", bandwidth_ratio="1/12")
    _recording_step_tables(b, gap_db=1.0)
    for snr in (2.0, 9.0):
        cands = b.ldpc_oracle_candidates(snr)
        bler = [b.gop_bler(p.mcs, snr) for p in cands]
        assert not bler[-1].any() and all(x.any() for x in bler[:-1])  # stops at the first sure MCS
        assert all(any(snr >= b.shannon_limit_db(k_g, p.mcs) for k_g in b.gop_k) for p in cands)
        full = [b.expected_psnr(p, snr) for p in b._by_payload()]
        assert b.expected_psnr(b.choose("oracle", snr), snr) == pytest.approx(max(full), abs=1e-9)
