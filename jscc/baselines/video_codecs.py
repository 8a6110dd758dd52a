"""Separate video baseline: H.264 (x264) and H.265 (x265) through PyAV, coded to a bit budget.

Flow (one clip or GOP, one bit budget; the link decides which packets arrive)::

    frames uint8 (T, 3, H, W) ──► encode_clip_to_budget(frames, budget_bits, codec, gop)
        ├─► VideoEncodeResult(packets (one per frame), frame_bits, counted_bits, quality, reconstruction)
        │       └─► reconstruct(result, frame_ok | gop_ok) ──► uint8 (T, 3, H, W)  (losses concealed)
        └─► None: no quality fits ──► fallback_clip(frames, "clip_mean" | "dataset_mean")

Clips are uint8 ``(T, 3, H, W)`` (a torch tensor or NumPy array; :func:`to_uint8_clip`
converts the project's float clips in [0, 1]); reconstructions are uint8 torch tensors
``(T, 3, H, W)``. Requires PyAV (``pip install av``; its wheels bundle FFmpeg with libx264
and libx265).

Budget (README, `jscc baseline`): the link carries
``budget_bits`` per clip, e.g. ``channels.links.capacity_link_bits(k, design_snr_db)`` with
``k = bandwidth_ratio * 3 * H * W * T`` (:func:`video_channel_uses`), or the information
bits of the LDPC transport blocks. Rate control searches the quantiser (constant QP, or
CRF) by bisection for the highest quality whose counted bits fit; the counted bits are
reported (``counted_bits <= budget_bits``). Codec settings (QP, size, frame rate) are side
information, not charged.

Byte accounting (``accounting``, as for images; there is no file container in either mode,
the encoder's packets are counted directly):

* ``full``: the Annex-B elementary stream: start codes and NAL units, parameter sets
  (VPS/SPS/PPS, repeated at every IDR frame) included; SEI and access-unit delimiters are
  dropped from the stream (x264's SEI is its ~600-byte version/options string; they carry no
  picture data);
* ``payload``: the slice (VCL) NAL units only, NAL header included, without start codes:
  parameter sets are known to the receiver and packet framing (one packet per frame) is the
  link's.

Coding structure: no B-frames (frames are coded, sent and decoded in display order, one
packet per frame), no scene-cut detection and closed GOPs, so the frames ``0, gop, 2 gop,
...`` are IDR frames and the others P-frames predicted from earlier frames of their GOP
(``gop=None``: one GOP, only frame 0 is intra). ``tune="zerolatency"`` (default) also
disables lookahead and frame threading; one encoder thread, and for x265 no weighted
prediction, so output is deterministic (the tests check it).

Colour: RGB -> Y'CbCr with the BT.601 full-range (JFIF) matrix in float, chroma subsampled to
4:2:0 by 2x2 box averaging (centre-sited) and rounded to 8 bits; decoding upsamples chroma
bilinearly (centre-sited) and inverts the matrix, rounding and clipping to uint8. This
conversion is part of the codec and its loss is in the reported quality: it caps 4:2:0 at
40.3 dB on the 416x240 BasketballPass frames (QP 0, lossless in x264, reaches exactly that);
``chroma="444"`` skips the subsampling (52.9 dB cap, 8-bit rounding only). Odd heights / widths are padded to
even by repeating the last row / column for 4:2:0 and cropped after decoding.

Link failures (:func:`reconstruct`): a frame whose packet is lost cannot be decoded, nor can
the frames after it up to the next IDR frame (they are predicted from it). Each frame that
cannot be decoded is concealed by repeating the last correctly decoded frame (frame freeze);
if no frame has been decoded yet (the clip's first frames are lost) it is the mean frame:
each channel filled with the clip's own per-channel mean (``"clip_mean"``, 24 bits assumed
delivered, as ``image_mean`` for images) or with a dataset mean (``"dataset_mean"``, 0 bits).
When nothing fits the budget or every packet is lost, every frame is the mean frame
(:func:`fallback_clip`): the cliff effect.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from jscc.baselines.codecs import (ACCOUNTING_MODES, BudgetTooSmallError, CodecUnavailableError, _search_max_feasible,
                                   bits_to_bytes)

__all__ = [
    "VIDEO_CODECS",
    "RATE_MODES",
    "VIDEO_FALLBACK_MODES",
    "VideoCodec",
    "VideoEncodeResult",
    "video_codec_available",
    "encode_clip",
    "encode_clip_to_budget",
    "decode_packets",
    "decodable_frames",
    "frames_ok_from_blocks",
    "reconstruct",
    "fallback_clip",
    "to_uint8_clip",
    "video_channel_uses",
    "split_nal_units",
]

# name -> (PyAV encoder, PyAV decoder)
VIDEO_CODECS = {"h264": ("libx264", "h264"), "h265": ("libx265", "hevc")}
RATE_MODES = ("qp", "crf")
VIDEO_FALLBACK_MODES = ("clip_mean", "dataset_mean")
QP_MAX = 51  # 8-bit H.264 / H.265

# NAL unit types: slices (VCL), parameter sets, and what is dropped (SEI, access unit delimiters)
_H264_VCL, _H264_PARAMETER_SETS, _H264_DROP = set(range(1, 6)), {7, 8}, {6, 9}
_H265_VCL, _H265_PARAMETER_SETS, _H265_DROP = set(range(0, 32)), {32, 33, 34}, {35, 39, 40}
_H264_IDR, _H265_IRAP = {5}, set(range(16, 24))


# --------------------------------------------------------------------------- Annex B


def split_nal_units(data: bytes) -> list[tuple[int, int, int]]:
    """``[(start code offset, NAL unit offset, end)]`` of the NAL units in an Annex-B byte string.

    A start code is ``00 00 01`` or ``00 00 00 01``; emulation prevention guarantees it never
    occurs inside a NAL unit. Trailing zero bytes before the next start code belong to neither.
    """
    units, i, n = [], 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        sc = j - 1 if j > 0 and data[j - 1] == 0 else j
        starts.append((sc, j + 3))
        i = j + 3
    for k, (sc, nal) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        while end > nal and data[end - 1] == 0:  # trailing_zero_8bits
            end -= 1
        units.append((sc, nal, end))
    return units


def _nal_type(codec: str, header: int) -> int:
    return header & 0x1F if codec == "h264" else (header >> 1) & 0x3F


# --------------------------------------------------------------------------- clips


def to_uint8_clip(x) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)`` tensor from a uint8 tensor / array, or a float tensor in [0, 1] (rounded)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"frames must be a (T, 3, H, W) tensor or array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or min(x.shape) < 1:
        raise ValueError(f"frames must be (T, 3, H, W) with T, H, W >= 1, got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise ValueError(f"frames must be uint8 or float in [0, 1], got {x.dtype}")
        x = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.detach().cpu().contiguous()


def _check_clip(frames) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a uint8 (T, 3, H, W) tensor or array, got {type(frames).__name__}")
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3 or min(frames.shape) < 1:
        raise ValueError(f"frames must be uint8 (T, 3, H, W) with T, H, W >= 1, got {frames.dtype} "
                         f"{tuple(frames.shape)} (convert float clips with to_uint8_clip)")
    return frames.detach().cpu().contiguous()


def video_channel_uses(frames: int, height: int, width: int, bandwidth_ratio) -> int:
    """``k = (k/n) * 3 H W T`` complex channel uses for a clip; ValueError unless a positive integer."""
    k = Fraction(bandwidth_ratio) * 3 * height * width * frames
    if k.denominator != 1 or k <= 0:
        raise ValueError(f"bandwidth ratio {bandwidth_ratio} of a {frames}x{height}x{width} clip gives "
                         f"k = {float(k):.3f} channel uses, not a positive integer")
    return int(k)


# BT.601 full range (JFIF): Y'CbCr = M @ RGB + (0, 128, 128)
_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.168735892, -0.331264108, 0.5],
                            [0.5, -0.418687589, -0.081312411]], dtype=torch.float64)
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC)
_YCC_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)


def _rgb_to_planes(frames: torch.Tensor, chroma: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 ``(T, 3, H, W)`` RGB (H, W even for 4:2:0) -> uint8 planes Y ``(T, H, W)``, Cb, Cr."""
    ycc = torch.einsum("ij,tjhw->tihw", _RGB_TO_YCC, frames.double()) + _YCC_OFFSET[:, None, None]
    y = ycc[:, 0]
    cbcr = ycc[:, 1:]
    if chroma == "420":
        cbcr = F.avg_pool2d(cbcr, 2)
    q = lambda p: p.round().clamp(0, 255).to(torch.uint8).numpy()  # noqa: E731
    return q(y), q(cbcr[:, 0]), q(cbcr[:, 1])


def _planes_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> torch.Tensor:
    """uint8 planes (chroma at full or half size) -> uint8 ``(T, 3, H, W)`` RGB."""
    y = torch.from_numpy(y).double()
    cbcr = torch.stack([torch.from_numpy(cb), torch.from_numpy(cr)], 1).double()
    if cbcr.shape[-2:] != y.shape[-2:]:
        cbcr = F.interpolate(cbcr, size=y.shape[-2:], mode="bilinear", align_corners=False)
    ycc = torch.cat([y[:, None], cbcr], 1) - _YCC_OFFSET[:, None, None]
    rgb = torch.einsum("ij,tjhw->tihw", _YCC_TO_RGB, ycc)
    return rgb.round().clamp(0, 255).to(torch.uint8)


def _plane_array(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class VideoEncodeResult:
    """One clip coded at one quality.

    Fields:
        packets: one Annex-B packet per frame (display = decode order), SEI/AUD removed: what
            :func:`decode_packets` takes.
        frame_bits: bits of each frame's packet charged to the budget under ``accounting``.
        counted_bits: ``sum(frame_bits)``.
        total_bytes: ``sum(len(p) for p in packets)``.
        keyframes: bool per frame: IDR (intra, decodable without earlier frames).
        quality: the quantiser: QP (``rate_mode="qp"``, integer) or CRF; lower = better.
        reconstruction: decoded uint8 ``(T, 3, H, W)`` (every packet received).
        clip_mean: per-channel mean of the original clip, rounded to uint8 (3 values): the
            ``clip_mean`` fallback's 24 bits.
        codec, accounting, gop: settings; ``n_encodes``: encoder runs spent by the rate search.
    """

    packets: tuple[bytes, ...]
    frame_bits: tuple[int, ...]
    counted_bits: int
    total_bytes: int
    keyframes: tuple[bool, ...]
    quality: float
    reconstruction: torch.Tensor = field(repr=False)
    clip_mean: tuple[int, int, int]
    codec: str
    accounting: str
    gop: int | None
    n_encodes: int = 1

    @property
    def frame_bytes(self) -> tuple[int, ...]:
        """Counted bytes per frame (``frame_bits // 8``)."""
        return tuple(b // 8 for b in self.frame_bits)


# --------------------------------------------------------------------------- codec


@functools.cache
def _codec_available(name: str) -> bool:
    try:
        import av
    except ImportError:
        return False
    encoder, decoder = VIDEO_CODECS[name]
    try:
        av.codec.Codec(encoder, "w")
        av.codec.Codec(decoder, "r")
    except Exception:  # av.codec.codec.UnknownCodecError (not exported under one name across versions)
        return False
    return True


def video_codec_available(name: str) -> bool:
    """True when PyAV and the encoder and decoder of ``name`` (``"h264"`` / ``"h265"``) are installed."""
    return name in VIDEO_CODECS and _codec_available(name)


@dataclass(frozen=True)
class VideoCodec:
    """H.264 / H.265 encoder settings (x264 / x265 through PyAV).

    Args:
        name: ``"h264"`` (libx264) or ``"h265"`` (libx265).
        preset: x264/x265 speed preset (``"ultrafast"`` ... ``"veryslow"``).
        tune: x264/x265 tune (``"zerolatency"``, ``"psnr"``, ...; x264 also takes
            ``"psnr,zerolatency"``) or None. It matters in CRF mode (AQ / psy) more than in QP mode.
        chroma: ``"420"`` (yuv420p, the usual) or ``"444"`` (yuv444p).
        rate_mode: ``"qp"`` (constant QP, integer 0..51; I-frames get x264/x265's usual
            lower QP) or ``"crf"`` (constant rate factor 0..51, searched on a ``crf_step`` grid).
        crf_step: grid of the CRF search.
        fps: frame rate written into the stream (timestamps only).
    """

    name: str = "h264"
    preset: str = "medium"
    tune: str | None = "zerolatency"
    chroma: str = "420"
    rate_mode: str = "qp"
    crf_step: float = 0.5
    fps: int = 25

    def __post_init__(self):
        if self.name not in VIDEO_CODECS:
            raise ValueError(f"unknown video codec {self.name!r}; expected one of {sorted(VIDEO_CODECS)}")
        if self.chroma not in ("420", "444"):
            raise ValueError(f"chroma must be '420' or '444', got {self.chroma!r}")
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"rate_mode must be one of {RATE_MODES}, got {self.rate_mode!r}")
        if not (isinstance(self.crf_step, (int, float)) and 0 < self.crf_step <= QP_MAX):
            raise ValueError(f"crf_step must be a number in (0, {QP_MAX}], got {self.crf_step!r}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or self.fps < 1:
            raise ValueError(f"fps must be a positive integer, got {self.fps!r}")

    def available(self) -> bool:
        """True when PyAV and this codec's encoder and decoder are installed."""
        return video_codec_available(self.name)

    @property
    def config(self) -> dict[str, Any]:
        """The settings (JSON-serialisable), recorded beside results."""
        return {"name": self.name, "encoder": VIDEO_CODECS[self.name][0], "preset": self.preset, "tune": self.tune,
                "chroma": self.chroma, "rate_mode": self.rate_mode, "crf_step": self.crf_step, "fps": self.fps,
                "bframes": 0, "colour": "BT.601 full range",
                **({"weightp": 0} if self.name == "h265" else {})}

    def _require(self):
        if not self.available():
            raise CodecUnavailableError(f"video codec {self.name!r} needs PyAV with {VIDEO_CODECS[self.name][0]} "
                                        "(pip install av)")
        import av

        return av

    # quality grid: index q in [0, n] maps to a quantiser, higher index = lower quantiser = more bits
    def _grid(self) -> tuple[int, int]:
        if self.rate_mode == "qp":
            return 0, QP_MAX
        return 0, int(math.floor(QP_MAX / self.crf_step + 1e-9))

    def _quality(self, q: int) -> float:
        return float(QP_MAX - q) if self.rate_mode == "qp" else round(QP_MAX - q * self.crf_step, 6)

    def _check_quality(self, quality) -> float:
        if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)) \
                or not 0 <= quality <= QP_MAX:
            raise ValueError(f"{self.rate_mode} must be a number in [0, {QP_MAX}], got {quality!r}")
        if self.rate_mode == "qp" and quality != int(quality):
            raise ValueError(f"qp must be an integer in [0, {QP_MAX}], got {quality!r}")
        return float(quality)

    def _options(self, quality: float) -> dict[str, str]:
        q = str(int(quality)) if self.rate_mode == "qp" else f"{quality:g}"
        options = {self.rate_mode: q, "preset": self.preset}
        if self.tune:
            options["tune"] = self.tune
        if self.name == "h264":
            options["x264-params"] = "threads=1:bframes=0:scenecut=0:open-gop=0"
        else:
            # weightp=0: x265's weighted-prediction analysis made the same clip code to different
            # streams from one call to the next (seen with x265 in PyAV 18.1); it only pays on fades
            options["x265-params"] = ("frame-threads=1:pools=none:bframes=0:scenecut=0:open-gop=0:weightp=0:"
                                      "info=0:log-level=none")
        return options

    def encode_packets(self, frames, quality: float, gop: int | None = None) -> list[bytes]:
        """Raw encoder packets (one per frame, SEI/AUD still in) of uint8 ``(T, 3, H, W)`` at ``quality``."""
        av = self._require()
        frames = _check_clip(frames)
        quality = self._check_quality(quality)
        t, _, h, w = frames.shape
        gop = _check_gop(gop)
        if self.chroma == "420" and (h % 2 or w % 2):  # 4:2:0 needs even sizes: repeat the last row / column
            frames = F.pad(frames.float(), (0, w % 2, 0, h % 2), mode="replicate").to(torch.uint8)
        y, cb, cr = _rgb_to_planes(frames, self.chroma)
        pix_fmt = "yuv420p" if self.chroma == "420" else "yuv444p"
        ctx = av.CodecContext.create(VIDEO_CODECS[self.name][0], "w")
        ctx.width, ctx.height, ctx.pix_fmt = y.shape[2], y.shape[1], pix_fmt
        ctx.time_base, ctx.framerate = Fraction(1, self.fps), Fraction(self.fps, 1)
        ctx.gop_size = gop if gop is not None else t
        ctx.max_b_frames = 0
        ctx.thread_count = 1
        ctx.options = self._options(quality)
        try:
            ctx.open()
        except av.FFmpegError as err:
            raise ValueError(f"{self.name}: the encoder refused a {h}x{w} clip with {self.config} "
                             f"(x265 needs frames of at least 16x16): {err}") from err
        packets = []
        for i in range(t):
            if pix_fmt == "yuv420p":
                array = np.concatenate([y[i].reshape(-1), cb[i].reshape(-1), cr[i].reshape(-1)])
                array = array.reshape(-1, y.shape[2])
            else:
                array = np.stack([y[i], cb[i], cr[i]])
            frame = av.VideoFrame.from_ndarray(array, format=pix_fmt)
            frame.pts = i
            packets.extend(bytes(p) for p in ctx.encode(frame))
        packets.extend(bytes(p) for p in ctx.encode(None))
        if len(packets) != t:
            raise RuntimeError(f"{self.name}: expected one packet per frame ({t}), got {len(packets)}")
        return packets

    def clean_packet(self, packet: bytes) -> bytes:
        """``packet`` without its SEI and access-unit-delimiter NAL units."""
        return b"".join(packet[sc:end] for sc, nal, end in split_nal_units(packet)
                        if _nal_type(self.name, packet[nal]) not in (_H264_DROP if self.name == "h264" else _H265_DROP))

    def count_bits(self, packet: bytes, accounting: str) -> int:
        """Bits of one (cleaned) packet charged to the budget under ``accounting``."""
        if accounting not in ACCOUNTING_MODES:
            raise ValueError(f"unknown byte accounting {accounting!r}; expected one of {ACCOUNTING_MODES}")
        if accounting == "full":
            return 8 * len(packet)
        vcl = _H264_VCL if self.name == "h264" else _H265_VCL
        return 8 * sum(end - nal for _, nal, end in split_nal_units(packet)
                       if _nal_type(self.name, packet[nal]) in vcl)

    def is_keyframe(self, packet: bytes) -> bool:
        """True when the packet holds an IDR (H.264) / IRAP (H.265) picture."""
        intra = _H264_IDR if self.name == "h264" else _H265_IRAP
        return any(_nal_type(self.name, packet[nal]) in intra for _, nal, _ in split_nal_units(packet))

    def decode(self, packets: Sequence[bytes], shape: Sequence[int]) -> torch.Tensor:
        """uint8 ``(T, 3, H, W)`` from one packet per frame; ``shape`` is the clip's ``(T, 3, H, W)``."""
        av = self._require()
        t, _, h, w = shape
        ctx = av.CodecContext.create(VIDEO_CODECS[self.name][1], "r")
        ctx.thread_count = 1
        decoded = []
        try:
            for packet in packets:
                decoded.extend(ctx.decode(av.Packet(packet)))
            decoded.extend(ctx.decode(None))
        except av.FFmpegError as err:
            raise ValueError(f"{self.name}: cannot decode the packets: {err}") from err
        if len(decoded) != t:
            raise ValueError(f"{self.name}: decoded {len(decoded)} frames from {len(packets)} packets, expected {t}")
        planes = [[_plane_array(p) for p in frame.planes[:3]] for frame in decoded]
        y, cb, cr = (np.stack([f[i] for f in planes]) for i in range(3))
        return _planes_to_rgb(y, cb, cr)[:, :, :h, :w].contiguous()

    def encode(self, frames, quality: float, gop: int | None = None, accounting: str = "payload") -> VideoEncodeResult:
        """Code uint8 ``(T, 3, H, W)`` at ``quality`` (QP or CRF); see :func:`encode_clip`."""
        frames = _check_clip(frames)
        if accounting not in ACCOUNTING_MODES:
            raise ValueError(f"unknown byte accounting {accounting!r}; expected one of {ACCOUNTING_MODES}")
        packets = [self.clean_packet(p) for p in self.encode_packets(frames, quality, gop)]
        return self._result(frames, packets, float(quality), gop, accounting, n_encodes=1)

    def _result(self, frames: torch.Tensor, packets: list[bytes], quality: float, gop, accounting: str,
                n_encodes: int) -> VideoEncodeResult:
        frame_bits = tuple(self.count_bits(p, accounting) for p in packets)
        mean = frames.double().mean(dim=(0, 2, 3)).round().clamp(0, 255).to(torch.uint8).tolist()
        return VideoEncodeResult(
            packets=tuple(packets), frame_bits=frame_bits, counted_bits=sum(frame_bits),
            total_bytes=sum(len(p) for p in packets), keyframes=tuple(self.is_keyframe(p) for p in packets),
            quality=quality, reconstruction=self.decode(packets, tuple(frames.shape)), clip_mean=tuple(mean),
            codec=self.name, accounting=accounting, gop=gop, n_encodes=n_encodes)

    def encode_to_budget(self, frames, budget_bits: int, gop: int | None = None, accounting: str = "payload", *,
                         strict: bool = False) -> VideoEncodeResult | None:
        """The highest quality (lowest QP / CRF on the grid) whose counted bits fit ``budget_bits``.

        Bisection on the quantiser grid, assuming bits fall as the quantiser rises; the two grid
        points above the answer are probed too (rate is not always monotone), and the best
        fitting probe wins. Returns None when even QP/CRF 51 does not fit (the caller uses
        :func:`fallback_clip`), or raises :class:`BudgetTooSmallError` then if ``strict``.
        """
        frames = _check_clip(frames)
        budget_bits = _check_budget_bits(budget_bits)
        if accounting not in ACCOUNTING_MODES:
            raise ValueError(f"unknown byte accounting {accounting!r}; expected one of {ACCOUNTING_MODES}")
        gop = _check_gop(gop)
        budget_bytes = bits_to_bytes(budget_bits)  # every count is whole bytes
        memo: dict[int, tuple[int, list[bytes]]] = {}

        def count(q: int) -> int:
            if q not in memo:
                packets = [self.clean_packet(p) for p in self.encode_packets(frames, self._quality(q), gop)]
                memo[q] = (sum(self.count_bits(p, accounting) for p in packets) // 8, packets)
            return memo[q][0]

        lo, hi = self._grid()
        q = _search_max_feasible(count, memo, lo, hi, budget_bytes, local_check=2)
        if q is None:
            if strict:
                raise BudgetTooSmallError(f"{self.name}: no quantiser fits {budget_bits} bits ({accounting}); "
                                          f"at {self.rate_mode} {QP_MAX} the clip counts {8 * memo[lo][0]} bits")
            return None
        result = self._result(frames, memo[q][1], self._quality(q), gop, accounting, n_encodes=len(memo))
        if result.counted_bits > budget_bits:  # never returned, whatever the search did
            raise AssertionError(f"{self.name}: {result.counted_bits} bits counted over a {budget_bits}-bit budget")
        return result


def _check_gop(gop) -> int | None:
    if gop is None:
        return None
    if isinstance(gop, bool) or not isinstance(gop, (int, np.integer)) or gop < 1:
        raise ValueError(f"gop must be a positive integer (frames per GOP) or None (one GOP), got {gop!r}")
    return int(gop)


def _check_budget_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 0:
        raise ValueError(f"budget_bits must be a non-negative integer, got {bits!r}")
    return int(bits)


def _get_codec(codec: str | VideoCodec, options: dict) -> VideoCodec:
    if isinstance(codec, VideoCodec):
        if options:
            raise ValueError("pass codec options either in the VideoCodec or as keywords, not both")
        return codec
    if not isinstance(codec, str):
        raise TypeError(f"codec must be a name ({sorted(VIDEO_CODECS)}) or a VideoCodec, got {type(codec).__name__}")
    return VideoCodec(codec, **options)


# --------------------------------------------------------------------------- functions


def encode_clip(frames, codec: str | VideoCodec = "h264", quality: float = 28, gop: int | None = None, *,
                accounting: str = "payload", **options) -> VideoEncodeResult:
    """Code a clip at a fixed quantiser.

    Args:
        frames: uint8 ``(T, 3, H, W)`` (tensor or array).
        codec: ``"h264"`` / ``"h265"`` (``options`` go to :class:`VideoCodec`) or a VideoCodec.
        quality: QP (integer 0..51) or, with ``rate_mode="crf"``, CRF (0..51); lower = better.
        gop: frames per GOP (an IDR frame every ``gop`` frames); None: one GOP.
        accounting: ``"payload"`` (slice NAL units) or ``"full"`` (Annex-B stream with parameter sets).

    Returns:
        :class:`VideoEncodeResult`: per-frame packets and counted bits (``frame_bits``,
        ``frame_bytes``) and the decoded frames (``reconstruction``, uint8 ``(T, 3, H, W)``).
    """
    return _get_codec(codec, options).encode(frames, quality, gop, accounting)


def encode_clip_to_budget(frames, budget_bits: int, codec: str | VideoCodec = "h264", gop: int | None = None, *,
                          accounting: str = "payload", strict: bool = False,
                          **options) -> VideoEncodeResult | None:
    """Code a clip (or one GOP: pass its frames) at the best quantiser whose counted bits fit ``budget_bits``.

    ``budget_bits``: e.g. ``capacity_link_bits(video_channel_uses(T, H, W, ratio), design_snr_db)``.
    None when nothing fits (see :meth:`VideoCodec.encode_to_budget`). Other arguments as
    :func:`encode_clip`.
    """
    return _get_codec(codec, options).encode_to_budget(frames, budget_bits, gop, accounting, strict=strict)


def decode_packets(packets: Sequence[bytes], shape: Sequence[int], codec: str | VideoCodec = "h264",
                   **options) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)`` from a result's ``packets`` (all received)."""
    return _get_codec(codec, options).decode(packets, shape)


def decodable_frames(keyframes: Sequence[bool], frame_ok: Sequence[bool]) -> np.ndarray:
    """bool ``(T,)``: frames the receiver decodes correctly.

    A frame decodes iff its packet arrived and it is a keyframe (IDR) or the frame before it
    decodes (P-frames are predicted from earlier frames of their GOP; no B-frames).
    """
    keyframes, frame_ok = np.asarray(keyframes, dtype=bool), np.asarray(frame_ok, dtype=bool)
    if keyframes.shape != frame_ok.shape or keyframes.ndim != 1:
        raise ValueError(f"keyframes and frame_ok must be (T,) of one length, got {keyframes.shape}, {frame_ok.shape}")
    out = np.zeros_like(frame_ok)
    for t in range(len(out)):
        out[t] = frame_ok[t] and (keyframes[t] or (t > 0 and out[t - 1]))
    return out


def frames_ok_from_blocks(frame_bits: Sequence[int], block_bits: int, block_ok: Sequence[bool]) -> np.ndarray:
    """bool ``(T,)``: which frames' packets arrive when the packets, in order, fill transport blocks.

    Packets are concatenated and cut into blocks of ``block_bits`` information bits (e.g. an
    LDPC transport block's ``tb_size``); a frame arrives iff every block holding any of its
    bits passes (its CRC). ``block_ok`` has one flag per block, at least
    ``ceil(sum(frame_bits) / block_bits)``. A frame with 0 bits arrives iff the block where
    it would start does (or always, past the last block).
    """
    if isinstance(block_bits, bool) or not isinstance(block_bits, (int, np.integer)) or block_bits < 1:
        raise ValueError(f"block_bits must be a positive integer, got {block_bits!r}")
    block_ok = np.asarray(block_ok, dtype=bool).reshape(-1)
    needed = math.ceil(sum(frame_bits) / block_bits)
    if len(block_ok) < needed:
        raise ValueError(f"{sum(frame_bits)} bits need {needed} blocks of {block_bits} bits, got {len(block_ok)} flags")
    ok, start = [], 0
    for bits in frame_bits:
        first, last = start // block_bits, (start + max(int(bits), 1) - 1) // block_bits
        ok.append(bool(block_ok[first : last + 1].all()) if first < len(block_ok) else True)
        start += int(bits)
    return np.array(ok, dtype=bool)


def _mean_frame(mode: str, clip_mean: Sequence[int] | None, dataset_mean, shape) -> torch.Tensor:
    if mode == "clip_mean":
        pixel = torch.tensor(list(clip_mean), dtype=torch.uint8)
    elif mode == "dataset_mean":
        if dataset_mean is None:
            raise ValueError("fallback 'dataset_mean' needs dataset_mean (3 values in [0, 1])")
        mean = torch.as_tensor(dataset_mean, dtype=torch.float64).reshape(-1)
        if mean.shape != (3,) or not torch.all((mean >= 0) & (mean <= 1)):
            raise ValueError(f"dataset_mean must be 3 values in [0, 1], got {dataset_mean!r}")
        pixel = (mean * 255).round().to(torch.uint8)
    else:
        raise ValueError(f"unknown fallback {mode!r}; expected one of {VIDEO_FALLBACK_MODES}")
    return pixel[:, None, None].expand(3, *shape[-2:]).clone()


def fallback_clip(frames, mode: str = "clip_mean", dataset_mean: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)``: every frame the mean frame (nothing fits the budget, or all is lost).

    ``clip_mean``: each channel filled with the clip's per-channel mean, rounded to 8 bits
    (24 bits assumed delivered); ``dataset_mean``: 3 values in [0, 1] (0 bits).
    """
    frames = _check_clip(frames)
    clip_mean = frames.double().mean(dim=(0, 2, 3)).round().to(torch.uint8).tolist()
    return _mean_frame(mode, clip_mean, dataset_mean, frames.shape).expand(frames.shape).clone()


def reconstruct(result: VideoEncodeResult, frame_ok: Sequence[bool] | None = None, *,
                gop_ok: Sequence[bool] | None = None, fallback: str = "clip_mean",
                dataset_mean: Sequence[float] | None = None) -> torch.Tensor:
    """The receiver's clip, uint8 ``(T, 3, H, W)``, given which packets the link delivered.

    Args:
        result: the coded clip.
        frame_ok: bool per frame: its packet arrived (the link decides). Default: all arrived.
        gop_ok: alternatively, bool per GOP (GOPs start at the ``keyframes``): all its packets
            arrived or none.
        fallback: the mean frame used before any frame has decoded: ``"clip_mean"`` (the clip's
            per-channel mean, ``result.clip_mean``, 24 bits) or ``"dataset_mean"``.
        dataset_mean: 3 values in [0, 1] for ``"dataset_mean"``.

    A frame that cannot be decoded (:func:`decodable_frames`: its packet, or an earlier one of
    its GOP, was lost) repeats the last correctly decoded frame, or is the mean frame if no
    frame decoded before it.
    """
    t = len(result.packets)
    if frame_ok is not None and gop_ok is not None:
        raise ValueError("pass frame_ok or gop_ok, not both")
    if gop_ok is not None:
        gop_index = np.cumsum(result.keyframes) - 1
        gop_ok = np.asarray(gop_ok, dtype=bool).reshape(-1)
        if len(gop_ok) != gop_index[-1] + 1:
            raise ValueError(f"gop_ok has {len(gop_ok)} flags for a clip of {gop_index[-1] + 1} GOPs")
        frame_ok = gop_ok[gop_index]
    if frame_ok is None:
        frame_ok = np.ones(t, dtype=bool)
    frame_ok = np.asarray(frame_ok, dtype=bool).reshape(-1)
    if len(frame_ok) != t:
        raise ValueError(f"frame_ok has {len(frame_ok)} flags for a clip of {t} frames")
    ok = decodable_frames(result.keyframes, frame_ok)
    out = result.reconstruction.clone()
    if ok.all():
        return out
    mean = _mean_frame(fallback, result.clip_mean, dataset_mean, out.shape)
    last = None
    for i in range(t):
        if ok[i]:
            last = i
        else:
            out[i] = mean if last is None else out[last]
    return out
