"""Separate video baseline: H.264 / H.265 through PyAV, rate control to a bit budget, loss concealment.

Encoder tests skip when PyAV or the encoder is missing; the loss rules run without them.
"""
from __future__ import annotations

import math

import pytest
import torch

import jscc.baselines.video_codecs as vc
from channels.links import capacity_link_bits
from jscc.baselines.codecs import BudgetTooSmallError, CodecUnavailableError, psnr_uint8
from jscc.baselines.video_codecs import (VideoCodec, decodable_frames, encode_clip, encode_clip_to_budget,
                                         fallback_clip, frames_ok_from_blocks, reconstruct, split_nal_units,
                                         to_uint8_clip, video_channel_uses)


def _codec_param(name):
    return pytest.param(name, marks=pytest.mark.skipif(not vc.video_codec_available(name),
                                                       reason=f"PyAV with {vc.VIDEO_CODECS[name][0]} not installed"))


CODECS = [_codec_param("h264"), _codec_param("h265")]
needs_h264 = pytest.mark.skipif(not vc.video_codec_available("h264"), reason="PyAV with libx264 not installed")


@pytest.fixture(scope="module")
def clip():
    """uint8 ``(6, 3, 32, 48)``: a smooth image panning 2 px right per frame.

    Mostly luminance with smoother, weaker colour, like natural images (independent random
    RGB would put the 4:2:0 colour conversion alone at ~33 dB).
    """
    g = torch.Generator().manual_seed(0)
    up = lambda x: torch.nn.functional.interpolate(x, size=(32, 64), mode="bicubic", align_corners=False)  # noqa: E731
    big = (0.15 + 0.7 * up(torch.rand(1, 1, 6, 10, generator=g)) + 0.15 * up(torch.rand(1, 3, 3, 4, generator=g)))
    big = big.clamp(0, 1)
    big = (big[0] * 255).round().to(torch.uint8)
    return torch.stack([big[:, :, 12 - 2 * t : 60 - 2 * t] for t in range(6)])


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return psnr_uint8(a.numpy(), b.numpy())


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("name", CODECS)
def test_encode_clip_packets_shapes_and_accounting(clip, name):
    r = encode_clip(clip, name, 20, gop=3)
    assert len(r.packets) == 6 and r.reconstruction.shape == clip.shape and r.reconstruction.dtype == torch.uint8
    assert r.keyframes == (True, False, False, True, False, False)
    assert r.counted_bits == sum(r.frame_bits) and all(b % 8 == 0 for b in r.frame_bits)
    assert r.frame_bytes == tuple(b // 8 for b in r.frame_bits) and r.quality == 20 and r.codec == name
    assert _psnr(r.reconstruction, clip) > 33
    full = encode_clip(clip, name, 20, gop=3, accounting="full")
    assert full.packets == r.packets  # same stream, counted differently
    assert full.counted_bits == 8 * full.total_bytes
    # full also counts start codes and, at IDR frames, the parameter sets
    extra = [f - p for f, p in zip(full.frame_bits, r.frame_bits)]
    assert all(e >= 8 * 3 for e in extra) and extra[0] > extra[1] + 8 * 8
    # no SEI (x264's version string) or AUD left in the stream
    drop = vc._H264_DROP if name == "h264" else vc._H265_DROP
    assert not any(vc._nal_type(name, p[nal]) in drop for p in r.packets for _, nal, _ in split_nal_units(p))
    # deterministic (x265 was not, with weighted prediction on)
    assert all(encode_clip(clip, name, 20, gop=3).packets == r.packets for _ in range(3))


@pytest.mark.parametrize("name", CODECS)
def test_budget_respected_highest_quality_and_monotone(clip, name):
    k = video_channel_uses(6, 32, 48, "1/6")
    assert k == 4608
    budgets = [capacity_link_bits(k, snr) for snr in (-2.0, 1.0, 5.0)]  # 3251, 5417, 9480 bits
    psnrs = []
    for budget in budgets:
        r = encode_clip_to_budget(clip, budget, name, gop=None)
        assert r is not None and r.counted_bits <= budget
        assert r.keyframes == (True,) + (False,) * 5
        # the next better quantiser does not fit: the highest quality that fits
        if r.quality > 0:
            assert encode_clip(clip, name, int(r.quality) - 1).counted_bits > budget
        psnrs.append(_psnr(r.reconstruction, clip))
    assert psnrs[0] < psnrs[1] < psnrs[2]


@needs_h264
def test_crf_mode_and_per_gop_budget(clip):
    r = encode_clip_to_budget(clip[:3], 3000, "h264", gop=3, rate_mode="crf", crf_step=1.0, accounting="full")
    assert r.counted_bits <= 3000 and r.quality == int(r.quality) and len(r.packets) == 3
    assert encode_clip(clip[:3], "h264", r.quality - 1, gop=3, rate_mode="crf",
                       accounting="full").counted_bits > 3000


@needs_h264
def test_budget_too_small(clip):
    assert encode_clip_to_budget(clip, 100, "h264") is None
    with pytest.raises(BudgetTooSmallError, match="no quantiser fits 100 bits"):
        encode_clip_to_budget(clip, 100, "h264", strict=True)


@needs_h264
def test_odd_sizes_and_444(clip):
    odd = clip[:3, :, :15, :17].contiguous()
    r = encode_clip(odd, "h264", 10)
    assert r.reconstruction.shape == (3, 3, 15, 17) and _psnr(r.reconstruction, odd) > 35
    # QP 0 is lossless in x264: only the 8-bit colour conversion is left, and 4:2:0 loses
    # a red / blue checkerboard's colour that 4:4:4 keeps
    checker = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    checker[:, 0, ::2, ::2] = checker[:, 0, 1::2, 1::2] = 255
    checker[:, 2, 1::2, ::2] = checker[:, 2, ::2, 1::2] = 255
    assert _psnr(encode_clip(checker, "h264", 0, chroma="444").reconstruction, checker) > 45
    assert _psnr(encode_clip(checker, "h264", 0).reconstruction, checker) < 15
    assert _psnr(encode_clip(clip[:2], "h264", 0).reconstruction, clip[:2]) > 48


def test_bad_input_errors(clip, monkeypatch):
    with pytest.raises(ValueError, match="to_uint8_clip"):
        encode_clip(clip.float() / 255, "h264", 20)
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        encode_clip(clip[0], "h264", 20)
    with pytest.raises(ValueError, match="unknown video codec"):
        encode_clip(clip, "vp9", 20)
    with pytest.raises(ValueError, match="chroma"):
        VideoCodec("h264", chroma="422")
    with pytest.raises(ValueError, match="byte accounting"):
        encode_clip_to_budget(clip, 1000, "h264", accounting="container")
    with pytest.raises(ValueError, match="budget_bits"):
        encode_clip_to_budget(clip, -1, "h264")
    with pytest.raises(ValueError, match="gop"):
        encode_clip_to_budget(clip, 1000, "h264", gop=0)
    if vc.video_codec_available("h264"):
        with pytest.raises(ValueError, match="qp must be an integer"):
            encode_clip(clip, "h264", 20.5)
        with pytest.raises(ValueError, match=r"qp must be a number in \[0, 51\]"):
            encode_clip(clip, "h264", 52)
    monkeypatch.setattr(vc, "_codec_available", lambda name: False)
    with pytest.raises(CodecUnavailableError, match="pip install av"):
        encode_clip(clip, "h264", 20)
    assert torch.equal(to_uint8_clip(clip.float() / 255), clip)
    with pytest.raises(ValueError, match="not a positive integer"):
        video_channel_uses(6, 32, 48, "1/7")


# --------------------------------------------------------------------------- losses


def test_decodable_frames_and_blocks():
    key = [True, False, False, True, False, False]
    assert decodable_frames(key, [1, 0, 1, 1, 1, 1]).tolist() == [1, 0, 0, 1, 1, 1]
    assert decodable_frames(key, [0, 1, 1, 1, 0, 1]).tolist() == [0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="one length"):
        decodable_frames(key, [True] * 5)
    # bits 0-9 | 10-14 | 15-34 over blocks of 16 bits: frame 2 touches blocks 0, 1, 2
    assert frames_ok_from_blocks([10, 5, 20], 16, [True, False, True]).tolist() == [True, True, False]
    assert frames_ok_from_blocks([10, 5, 20], 16, [False, True, True]).tolist() == [False, False, False]
    assert frames_ok_from_blocks([16, 16, 0], 16, [True, False]).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="need 3 blocks"):
        frames_ok_from_blocks([10, 5, 20], 16, [True, True])


def _fake_result(t: int = 6, gop: int = 3) -> vc.VideoEncodeResult:
    """A result whose decoded frame i is filled with value 10 * (i + 1) (no encoder needed)."""
    rec = torch.stack([torch.full((3, 4, 5), 10 * (i + 1), dtype=torch.uint8) for i in range(t)])
    return vc.VideoEncodeResult(packets=(b"",) * t, frame_bits=(8,) * t, counted_bits=8 * t, total_bytes=t,
                                keyframes=tuple(i % gop == 0 for i in range(t)), quality=20.0, reconstruction=rec,
                                clip_mean=(7, 8, 9), codec="h264", accounting="payload", gop=gop)


def test_reconstruct_freezes_last_decoded_frame_else_mean():
    r = _fake_result()
    value = lambda x: x[:, 0, 0, 0].tolist()  # noqa: E731
    assert torch.equal(reconstruct(r), r.reconstruction)
    # frame 2 lost: frames 2 (lost) freezes frame 1; frame 3 is an IDR and decodes again
    assert value(reconstruct(r, [1, 1, 0, 1, 1, 1])) == [10, 20, 20, 40, 50, 60]
    # frame 1 lost: 1 and 2 (predicted from it) freeze frame 0
    assert value(reconstruct(r, [1, 0, 1, 1, 1, 1])) == [10, 10, 10, 40, 50, 60]
    # first frame lost: the mean frame until the next IDR
    out = reconstruct(r, [0, 1, 1, 1, 0, 1])
    assert value(out) == [7, 7, 7, 40, 40, 40]
    assert out[0, :, 0, 0].tolist() == [7, 8, 9] and torch.all(out[0] == out[0, :, :1, :1])
    assert torch.equal(reconstruct(r, gop_ok=[False, True]), reconstruct(r, [0, 0, 0, 1, 1, 1]))
    dm = reconstruct(r, [0] * 6, fallback="dataset_mean", dataset_mean=[0.0, 0.5, 1.0])
    assert dm[:, :, 0, 0].tolist() == [[0, 128, 255]] * 6
    with pytest.raises(ValueError, match="dataset_mean"):
        reconstruct(r, [0] * 6, fallback="dataset_mean")
    with pytest.raises(ValueError, match="6 frames"):
        reconstruct(r, [1] * 5)
    with pytest.raises(ValueError, match="2 GOPs"):
        reconstruct(r, gop_ok=[True])
    with pytest.raises(ValueError, match="not both"):
        reconstruct(r, [1] * 6, gop_ok=[True, True])


def test_fallback_clip_is_the_clip_mean(clip):
    out = fallback_clip(clip)
    mean = clip.double().mean(dim=(0, 2, 3)).round()
    assert out.shape == clip.shape and out.dtype == torch.uint8
    assert torch.equal(out[3, :, 5, 7].double(), mean)
    assert torch.all(out == out[:1, :, :1, :1])
    with pytest.raises(ValueError, match="unknown fallback"):
        fallback_clip(clip, "image_mean")


@needs_h264
def test_reconstruct_real_clip_all_lost_equals_fallback(clip):
    r = encode_clip(clip, "h264", 30, gop=3)
    assert torch.equal(reconstruct(r, [False] * 6), fallback_clip(clip))
    part = reconstruct(r, [True, True, False, True, True, True])
    assert torch.equal(part[2], r.reconstruction[1]) and torch.equal(part[3:], r.reconstruction[3:])
    assert math.isfinite(_psnr(part, clip))


def test_split_nal_units():
    data = b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x68c\x00\x00\x00\x00\x01\x65def"
    units = split_nal_units(data)
    assert [data[nal:end] for _, nal, end in units] == [b"\x67ab", b"\x68c", b"\x65def"]
    assert [sc for sc, _, _ in units] == [0, 7, 13]  # 4-byte start code after one trailing zero byte
    assert [vc._nal_type("h264", data[nal]) for _, nal, _ in units] == [7, 8, 5]
