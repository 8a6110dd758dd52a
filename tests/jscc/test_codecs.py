"""Source codecs of the separate baseline: budgets, byte accounting, rate control, fallback."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata

from jscc.baselines import codecs as C

AVAILABLE = C.list_codecs(available_only=True)


@pytest.fixture(scope="module")
def image32() -> np.ndarray:
    """A textured colour 32x32 crop (the astronaut's face and suit)."""
    return np.ascontiguousarray(skdata.astronaut()[100:132, 180:212])


@pytest.fixture(scope="module")
def image_pair() -> list[np.ndarray]:
    return [np.ascontiguousarray(skdata.astronaut()[i:i + 32, j:j + 32]) for i, j in [(100, 180), (300, 250)]]


# --------------------------------------------------------------------------- budget arithmetic


def test_bits_to_bytes_floors_to_whole_bytes():
    assert C.bits_to_bytes(885) == 110 and C.bits_to_bytes(7) == 0 and C.bits_to_bytes(8) == 1


@pytest.mark.parametrize("bits", [-1, 8.0, None])
def test_bits_to_bytes_bad_input(bits):
    with pytest.raises(ValueError):
        C.bits_to_bytes(bits)


# --------------------------------------------------------------------------- registry, bad input


def test_registry_lists_codecs_and_rejects_unknown_names():
    assert {"jpeg2000", "jpeg", "webp", "avif", "heif"} <= set(C.list_codecs())
    assert "jpeg2000" in AVAILABLE and "jpeg" in AVAILABLE
    assert isinstance(C.get_codec("jpeg2000"), C.JPEG2000Codec)
    assert C.CODECS["jpeg2000"] is C.JPEG2000Codec
    with pytest.raises(ValueError, match="unknown codec 'bpg'.*jpeg2000"):
        C.get_codec("bpg")


def test_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(C.HEIFCodec, "available", classmethod(lambda cls: False))
    with pytest.raises(C.CodecUnavailableError, match="pillow-heif"):
        C.get_codec("heif")
    assert "heif" not in C.list_codecs(available_only=True)


@pytest.mark.parametrize("ratio", [0.5, 0.0, -3.0, math.nan, math.inf, "10", None, True])
def test_jpeg2000_rejects_malformed_ratio(image32, ratio):
    with pytest.raises(ValueError, match="ratio"):
        C.get_codec("jpeg2000").encode(image32, ratio)


def test_bad_arguments(image32):
    codec = C.get_codec("jpeg2000")
    with pytest.raises(ValueError, match="accounting"):
        codec.encode_to_budget(image32, 200, "header")
    with pytest.raises(ValueError, match="budget"):
        codec.encode_to_budget(image32, -1)
    with pytest.raises(ValueError, match="budget"):
        codec.encode_to_budget(image32, 200.5)
    with pytest.raises(ValueError, match="uint8"):
        codec.encode_to_budget(image32.astype(np.float32) / 255, 200)
    with pytest.raises(ValueError, match="uint8"):
        codec.encode_to_budget(image32[..., 0], 200)
    with pytest.raises(TypeError, match="numpy"):
        codec.encode_to_budget(image32.tolist(), 200)
    with pytest.raises(ValueError, match="quality"):
        C.get_codec("jpeg").encode(image32, 0)
    with pytest.raises(ValueError, match="quality"):
        C.get_codec("webp").encode(image32, 50.5)
    with pytest.raises(ValueError, match="num_resolutions"):
        C.JPEG2000Codec(num_resolutions=0)
    with pytest.raises(ValueError, match="mct"):
        C.JPEG2000Codec(mct=2)
    with pytest.raises(ValueError, match="subsampling"):
        C.JPEGCodec(subsampling="4:1:1")


# --------------------------------------------------------------------------- every codec


@pytest.mark.parametrize("name", AVAILABLE)
def test_decode_encode_shape_dtype(name, image32):
    codec = C.get_codec(name)
    quality = 10.0 if name == "jpeg2000" else 50
    out = codec.decode(codec.encode(image32, quality), image32.shape)
    assert out.shape == image32.shape and out.dtype == np.uint8
    assert C.psnr_uint8(image32, out) > 20
    with pytest.raises(ValueError, match="size"):
        codec.decode(codec.encode(image32, quality), (16, 32, 3))


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("accounting", C.ACCOUNTING_MODES)
def test_budget_respected_and_quality_grows(name, accounting, image32):
    codec = C.get_codec(name)
    budgets = [350, 500, 800, 1400]
    results = codec.encode_to_budgets(image32, budgets, accounting)
    psnrs = []
    for budget, r in zip(budgets, results):
        assert r is not None, (name, accounting, budget)
        assert r.counted_bytes <= budget
        assert r.counted_bytes == codec.count_bytes(r.data, accounting)
        assert r.total_bytes == len(r.data)
        assert codec.count_bytes(r.data, "full") >= codec.count_bytes(r.data, "payload")
        assert r.reconstruction.shape == image32.shape and r.reconstruction.dtype == np.uint8
        np.testing.assert_array_equal(r.reconstruction, codec.decode(r.data, image32.shape))
        assert (r.codec, r.accounting) == (name, accounting)
        psnrs.append(C.psnr_uint8(image32, r.reconstruction))
    assert all(b >= a for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert psnrs[-1] > psnrs[0] + 1  # 4x the bytes (JPEG tops out at quality 95)
    # One budget at a time gives the same answer as the shared search.
    single = codec.encode_to_budget(image32, budgets[1], accounting)
    assert single.data == results[1].data


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("accounting", C.ACCOUNTING_MODES)
def test_nothing_fits_a_tiny_budget(name, accounting, image32):
    codec = C.get_codec(name)
    assert codec.encode_to_budget(image32, 10, accounting) is None
    assert codec.encode_to_budget(image32, 0, accounting) is None
    with pytest.raises(C.BudgetTooSmallError, match="no quality fits 10 B"):
        codec.encode_to_budget(image32, 10, accounting, strict=True)
    assert issubclass(C.BudgetTooSmallError, ValueError)


# --------------------------------------------------------------------------- JPEG2000


def test_jpeg2000_byte_accounting(image32):
    codec = C.get_codec("jpeg2000")
    data = codec.encode(image32, 12.0)
    assert data[:2] == b"\xff\x4f" and data[-2:] == b"\xff\xd9"  # raw codestream SOC..EOC, no JP2 box
    sot = data.find(b"\xff\x90")
    assert C.j2k_main_header_length(data) == sot
    assert codec.count_bytes(data, "full") == len(data)
    assert codec.count_bytes(data, "payload") == len(data) - sot
    # Main header at 32x32, 3 resolutions: SOC 2 + SIZ 49 + COD 14 + QCD 19 (7 subbands).
    assert sot == 84
    assert b"OpenJPEG" not in data
    sent, seen_by_rate_control = codec.main_header_lengths(32, 32)
    assert sent == 84 and seen_by_rate_control > sent  # OpenJPEG counts its COM segment
    # Pillow's defaults: 6 resolutions (QCD 37 B) and OpenJPEG's COM segment.
    default = C.JPEG2000Codec(num_resolutions=6, keep_comment=True).encode(image32, 12.0)
    header = C.j2k_main_header_length(default)
    assert b"Created by OpenJPEG" in default[:header]
    assert header == 102 + (len(default) - len(C._j2k_strip_comments(default)))
    with pytest.raises(ValueError, match="SOC"):
        codec.count_bytes(b"\xff\xd8" + data[2:], "payload")
    with pytest.raises(ValueError, match="SOT"):
        codec.count_bytes(data[:sot], "payload")


def test_jpeg2000_resolutions():
    codec = C.JPEG2000Codec()
    assert codec.resolutions_for(32, 32) == 3
    assert codec.resolutions_for(64, 96) == 4
    assert codec.resolutions_for(512, 768) == 6
    assert codec.resolutions_for(8, 8) == 1
    assert C.JPEG2000Codec(num_resolutions=5).resolutions_for(32, 32) == 5


@pytest.mark.parametrize("accounting", C.ACCOUNTING_MODES)
def test_jpeg2000_rate_control_matches_exhaustive_scan(accounting, image_pair):
    """The one-probe target is the best fitting stream over a scan of compression ratios."""
    codec = C.get_codec("jpeg2000")
    for image in image_pair:
        for budget in (150, 333):
            r = codec.encode_to_budget(image, budget, accounting)
            assert r.n_encodes == 1
            counts = [codec.count_bytes(codec.encode(image, image.size / (t - 0.5)), accounting)
                      for t in range(budget - 60, budget + 140)]
            assert r.counted_bytes == max(c for c in counts if c <= budget)
            # Bytes never shrink as the ratio falls (the search relies on it).
            assert all(b >= a for a, b in zip(counts, counts[1:]))


def test_jpeg2000_colour_transform_gains_decibels(image32):
    """mct=1 (Pillow's default is 0) is worth several dB on a colour image at equal budget."""
    for budget in (250, 500):
        on = C.JPEG2000Codec(mct=1).encode_to_budget(image32, budget)
        off = C.JPEG2000Codec(mct=0).encode_to_budget(image32, budget)
        assert C.psnr_uint8(image32, on.reconstruction) > C.psnr_uint8(image32, off.reconstruction) + 1.0


def test_jpeg2000_auto_resolutions_beat_pillow_default_at_32px(image_pair):
    for image in image_pair:
        auto = C.JPEG2000Codec().encode_to_budget(image, 250, "payload")
        six = C.JPEG2000Codec(num_resolutions=6).encode_to_budget(image, 250, "payload")
        assert C.psnr_uint8(image, auto.reconstruction) > C.psnr_uint8(image, six.reconstruction)


# --------------------------------------------------------------------------- other codecs' accounting


def test_jpeg_byte_accounting(image32):
    codec = C.get_codec("jpeg")
    for optimize in (True, False):
        data = codec.encode(image32, 50, optimize=optimize)
        assert data[:2] == b"\xff\xd8" and b"JFIF" not in data  # no APP0 container
        segments, scan_start = C._jpeg_header_segments(data)
        markers = [m for m, _, _ in segments]
        assert 0xC4 in markers and markers[-1] == 0xDA
        dht = sum(e - s for m, s, e in segments if m == 0xC4)
        entropy = len(data) - scan_start - 2
        assert codec.count_bytes(data, "full") == len(data)
        # Image-adapted tables count; the standard ones are known to the receiver.
        assert codec.count_bytes(data, "payload") == entropy + (dht if optimize else 0)
    r_full = codec.encode_to_budget(image32, 700, "full")
    r_payload = codec.encode_to_budget(image32, 700, "payload")
    assert codec.count_bytes(r_payload.data, "payload") == r_payload.counted_bytes
    assert len(r_payload.data) > r_payload.counted_bytes + 100  # standard DHT + DQT + SOF excluded
    assert r_full.counted_bytes == len(r_full.data)


@pytest.mark.skipif("webp" not in AVAILABLE, reason="Pillow without WebP")
def test_webp_byte_accounting(image32):
    codec = C.get_codec("webp")
    data = codec.encode(image32, 40)
    assert data[3:6] == b"\x9d\x01\x2a" and b"RIFF" not in data  # bare VP8 key frame
    assert codec.count_bytes(data, "full") == len(data)
    assert codec.count_bytes(data, "payload") == len(data) - 7


@pytest.mark.skipif("avif" not in AVAILABLE, reason="Pillow without AVIF")
def test_avif_byte_accounting(image32):
    codec = C.get_codec("avif")
    data = codec.encode(image32, 40)
    mdat = C._find_box(data, [b"mdat"])
    obus = C._av1_obus(mdat)
    assert sum(size for _, size in obus) == len(mdat)
    assert 1 in [t for t, _ in obus]  # sequence header, a parameter set
    assert codec.count_bytes(data, "full") == len(mdat) < len(data)
    assert codec.count_bytes(data, "payload") == sum(s for t, s in obus if t in (3, 4, 6))


@pytest.mark.skipif("heif" not in AVAILABLE, reason="pillow-heif not installed")
def test_heif_byte_accounting(image32):
    codec = C.get_codec("heif")
    data = codec.encode(image32, 40)
    mdat = C._find_box(data, [b"mdat"])
    hvcc = C._find_box(data, [b"meta", b"iprp", b"ipco", b"hvcC"])
    assert codec.count_bytes(data, "payload") == len(mdat)
    # Parameter sets: VPS + SPS + PPS, stored in hvcC with 2-byte lengths, counted with 4.
    parameter_sets = codec.count_bytes(data, "full") - len(mdat)
    assert 3 * 4 < parameter_sets < len(hvcc)
    assert codec.count_bytes(data, "full") < len(data)


# --------------------------------------------------------------------------- fallback


def test_fallback_image_values(image32):
    mean = C.fallback_image(image32, "image_mean")
    assert mean.shape == image32.shape and mean.dtype == np.uint8
    expected = np.round(image32.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    np.testing.assert_array_equal(mean, np.broadcast_to(expected, image32.shape))
    fixed = C.fallback_image(image32, "dataset_mean", dataset_mean=[0.5, 0.25, 1.0])
    np.testing.assert_array_equal(fixed[0, 0], [128, 64, 255])
    assert (fixed == fixed[0, 0]).all()
    assert C.FALLBACK_BITS == {"image_mean": 24, "dataset_mean": 0}
    # The image's own mean is the better guess.
    assert C.psnr_uint8(image32, mean) > C.psnr_uint8(image32, C.fallback_image(image32, "dataset_mean", [0.5] * 3))
    with pytest.raises(ValueError, match="unknown fallback"):
        C.fallback_image(image32, "zeros")
    with pytest.raises(ValueError, match="dataset_mean"):
        C.fallback_image(image32, "dataset_mean")
    with pytest.raises(ValueError, match="dataset_mean"):
        C.fallback_image(image32, "dataset_mean", [120, 110, 100])


# --------------------------------------------------------------------------- datasets, cache, conversion


def test_dataset_encoding_cache_and_pool(image_pair, monkeypatch):
    codec = C.get_codec("jpeg2000")
    budgets = [10, 150, 300]
    cache = C.SourceCodingCache()
    out = C.encode_dataset_to_budgets(image_pair, budgets, codec, "full", workers=1, cache=cache)
    assert set(out) == set(budgets) and len(cache) == len(budgets) * len(image_pair)
    assert out[10] == [None, None]
    for b in (150, 300):
        for image, r in zip(image_pair, out[b]):
            assert r.data == codec.encode_to_budget(image, b, "full").data
    # Cached: no encoder call the second time.
    monkeypatch.setattr(C.JPEG2000Codec, "encode", lambda *a, **k: pytest.fail("encoded again"))
    again = C.encode_dataset_to_budget(image_pair, 150, codec, "full", workers=1, cache=cache)
    assert again == out[150]
    with pytest.raises(ValueError, match="differs"):
        C.encode_dataset_to_budget(image_pair[::-1], 150, codec, "full", workers=1, cache=cache)
    monkeypatch.undo()
    # A process pool gives the same streams.
    pooled = C.encode_dataset_to_budgets(image_pair * 2, [150, 300], "jpeg2000", "full", workers=2, chunksize=1)
    assert [r.data for r in pooled[300]] == [r.data for r in out[300]] * 2
    with pytest.raises(ValueError, match="workers"):
        C.encode_dataset_to_budget(image_pair, 150, codec, workers=0)


def test_tensor_conversion(image32):
    x = C.to_float_tensor(image32)
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(C.to_uint8_image(x), image32)
    np.testing.assert_array_equal(C.to_uint8_image(torch.from_numpy(image32).permute(2, 0, 1)), image32)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        C.to_uint8_image(torch.zeros(1, 3, 8, 8))
