"""Source codecs behind one interface, for the separate source-channel coding baseline.

Flow (one image, one byte budget)::

    image uint8 (H, W, 3) ──► codec.encode_to_budget(image, budget_bytes, accounting)
        ├─► EncodeResult(data, counted_bytes, total_bytes, quality, reconstruction)
        └─► None: no quality fits ──► fallback_image(image, "image_mean" | "dataset_mean")

Images are ``uint8`` NumPy arrays ``(H, W, 3)`` (RGB) in and out: that is what every
codec library takes and returns. :func:`to_uint8_image` / :func:`to_float_tensor` convert
from / to the project's ``float32 (3, H, W)`` tensors in ``[0, 1]``.

Byte budget (README, `jscc baseline`): a
capacity-achieving code delivers ``floor(k log2(1 + snr_lin))`` bits per image
(:func:`channels.links.capacity_link_bits`), ``bits_to_bytes`` of them as whole bytes. The codec takes the highest
quality whose *counted* bytes fit. Two byte-accounting modes (``byte_accounting``):

* ``full``: the raw codestream, no file container (the DeepJSCC 2019 comparison);
* ``payload``: main header / parameter sets excluded as known to the receiver (the
  DeepJSCC-f comparison).

What each codec counts (``data`` is what :meth:`Codec.decode` takes back):

=========  =======================================  ==========================================
codec      ``full``                                 ``payload``
=========  =======================================  ==========================================
jpeg2000   the J2K codestream SOC..EOC (no JP2      ``full`` minus the main header (SOC up to
           boxes); OpenJPEG's "Created by           the first SOT marker 0xFF90): first SOT
           OpenJPEG" COM segment is stripped        .. EOC, so tile-part header (SOT, SOD,
           (``keep_comment=True`` keeps it)         14 B) and EOC (2 B) are counted
jpeg       SOI..EOI with APPn / COM stripped (no    entropy-coded data after the SOS header,
           JFIF container): SOI, DQT, SOF, DHT,     plus any DHT segment that is not one of
           SOS header, scan data, EOI               the standard Annex K tables (i.e. image-
                                                    adapted tables); SOI, DQT, SOF, SOS
                                                    header, EOI excluded
webp       the VP8 key frame (the 'VP8 ' chunk      ``full`` minus the 3-byte start code and
           data; RIFF/WEBP headers excluded)        4-byte dimensions (the 3-byte frame tag,
                                                    which holds the partition size, counts)
avif       the AV1 OBUs in ``mdat`` (temporal       the frame OBUs only (OBU types 3, 4, 6,
           delimiter, sequence header, frame);      7, 8): sequence header and temporal
           the ISOBMFF boxes are not counted        delimiter excluded
heif       the HEVC stream: VPS/SPS/PPS from        the ``mdat`` contents (the slice NAL
           ``hvcC`` as NAL units with a 4-byte      units with their 4-byte length fields)
           length field each + ``mdat`` contents
=========  =======================================  ==========================================

For AVIF and HEIF the ISOBMFF container cannot be avoided (the decoders need it), so
``data`` is the whole file and ``total_bytes = len(data)`` exceeds the ``full`` count;
for the other codecs ``data`` is the raw codestream and ``full == len(data)``. Quality
parameters (JPEG quality, J2K ratio) are side information not charged in either mode.

JPEG2000 (the reference baseline) uses the irreversible 9/7 wavelet with the colour
transform on (``mct=1``; Pillow's default ``mct=0`` costs 3-7 dB on CIFAR-10 at 110-426 B)
and rate control on the compression ratio (one encode per budget, see
:class:`JPEG2000Codec`). ``num_resolutions="auto"`` keeps the coarsest LL band at least
8 px (3 resolutions at 32x32, 4 at 64, 5 at 128, Pillow's 6 from 256 px up; best or tied
among 3..6 at 32, 64 and 128 px): at 32x32 it gains ~3 dB over Pillow's 6 at equal
``payload`` budget. The main header at 32x32 is 84 B (SOC 2 + SIZ 49 + COD 14 + QCD 19)
against 141 B with Pillow's defaults (6 resolutions: QCD 37; COM segment 39): under
``full`` accounting, CIFAR-10 at 213 B (k/n = 1/12, 20 dB) gets 25.1 dB instead of 18.2 dB.
``JPEG2000Codec(num_resolutions=6, keep_comment=True)`` reproduces Pillow's defaults.

Speed: source coding depends only on (image, budget): :func:`encode_dataset_to_budgets`
encodes each image once per budget in a process pool, shares the rate-control probes
between the budgets of one image, and caches results in a :class:`SourceCodingCache`.
The pool's workers are *spawned* (``POOL_START_METHOD``), never forked: this process runs
threads (torch's intra-op pool, tqdm's monitor, ...) and a forked child can inherit a lock
another thread held at the fork and hang forever. A spawned worker imports torch (seconds),
so a run codes inside :func:`shared_worker_pools` to start its workers once.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, features

__all__ = [
    "ACCOUNTING_MODES",
    "FALLBACK_MODES",
    "FALLBACK_BITS",
    "bits_to_bytes",
    "to_uint8_image",
    "to_float_tensor",
    "psnr_uint8",
    "EncodeResult",
    "Codec",
    "CodecUnavailableError",
    "BudgetTooSmallError",
    "CODECS",
    "register_codec",
    "list_codecs",
    "get_codec",
    "JPEG2000Codec",
    "JPEGCodec",
    "WebPCodec",
    "AVIFCodec",
    "HEIFCodec",
    "j2k_main_header_length",
    "fallback_image",
    "SourceCodingCache",
    "encode_dataset_to_budgets",
    "encode_dataset_to_budget",
    "POOL_START_METHOD",
    "shared_worker_pools",
]

ACCOUNTING_MODES = ("full", "payload")
FALLBACK_MODES = ("image_mean", "dataset_mean")
# Bits assumed delivered for the fallback reconstruction (not charged to the budget).
FALLBACK_BITS = {"image_mean": 24, "dataset_mean": 0}


# --------------------------------------------------------------------------- budget


def bits_to_bytes(bits: int) -> int:
    """Whole bytes in ``bits`` (floor): a codestream is a whole number of bytes."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 0:
        raise ValueError(f"bits must be a non-negative integer, got {bits!r}")
    return int(bits) // 8


# --------------------------------------------------------------------------- images


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a uint8 numpy array (H, W, 3), got {type(image).__name__}"
                        " (convert tensors with to_uint8_image)")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def to_uint8_image(x: Any) -> np.ndarray:
    """A codec image ``uint8 (H, W, 3)`` from ``uint8 (H, W, 3)`` NumPy or a ``(3, H, W)`` tensor.

    Float tensors are in ``[0, 1]`` and rounded to the nearest of 256 levels; ``uint8``
    tensors (what :class:`jscc.data.ImageSet` holds) are transposed only.
    """
    if isinstance(x, np.ndarray):
        return _check_image(x)
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor or a uint8 (H, W, 3) array, got {type(x).__name__}"
                         f" {tuple(getattr(x, 'shape', ()))}")
    x = x.detach().cpu()
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


def to_float_tensor(image: np.ndarray):
    """``float32 (3, H, W)`` tensor in ``[0, 1]`` from a codec image ``uint8 (H, W, 3)``."""
    import torch

    return torch.from_numpy(_check_image(image).transpose(2, 0, 1).astype(np.float32) / 255.0)


def psnr_uint8(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR in dB of two ``uint8`` images, peak 255 (equal to peak 1 on ``[0, 1]`` images)."""
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- results, errors


@dataclass(frozen=True, eq=False)
class EncodeResult:
    """One image coded to fit a budget.

    ``data``: what :meth:`Codec.decode` takes (raw codestream; the file for AVIF/HEIF);
    ``counted_bytes``: bytes charged to the budget under ``accounting``;
    ``total_bytes``: ``len(data)``; ``quality``: the codec's parameter (J2K: compression
    ratio, lower is better; others: integer quality, higher is better);
    ``reconstruction``: decoded ``uint8 (H, W, 3)``, read-only; ``n_encodes``: encoder calls spent
    by the rate search on this budget (probes shared with other budgets not recounted).
    """

    data: bytes
    counted_bytes: int
    total_bytes: int
    quality: float
    reconstruction: np.ndarray
    codec: str
    accounting: str
    n_encodes: int = 0


class CodecUnavailableError(RuntimeError):
    """The codec's library (or its Pillow plugin) is not installed."""


class BudgetTooSmallError(ValueError):
    """No quality of the codec fits the byte budget (raised only with ``strict=True``)."""


def _check_accounting(accounting: str) -> str:
    if accounting not in ACCOUNTING_MODES:
        raise ValueError(f"unknown byte accounting {accounting!r}; expected one of {ACCOUNTING_MODES}")
    return accounting


def _check_budget(budget_bytes: Any) -> int:
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) or budget_bytes < 0:
        raise ValueError(f"budget_bytes must be a non-negative integer, got {budget_bytes!r}")
    return int(budget_bytes)


# --------------------------------------------------------------------------- rate search


def _search_max_feasible(count: Callable[[int], int], memo: Mapping[int, Any], lo: int, hi: int,
                         budget: int, *, guess: int | None = None, guess_is_optimal: bool = False,
                         interpolate: bool = False, local_check: int = 0) -> int | None:
    """Largest ``q`` in ``[lo, hi]`` with ``count(q) <= budget``, assuming ``count`` non-decreasing.

    ``memo`` (``q -> (count, ...)``, filled by ``count``) holds earlier probes, e.g. for
    other budgets of the same image: they set the starting bracket. ``guess`` is probed
    first; if it fits and ``guess_is_optimal`` (the codec's rate control guarantees it),
    the search ends there. ``interpolate`` (counts ~linear in ``q``) uses secant steps,
    safeguarded by bisection, instead of plain bisection. Non-monotone spots: the
    ``local_check`` grid points above the answer are probed too, and the largest
    feasible ``q`` ever probed wins.
    """

    def best_probed() -> int:
        return max(q for q, v in memo.items() if v[0] <= budget)

    if guess is not None and count(min(max(guess, lo), hi)) <= budget and guess_is_optimal:
        return best_probed()
    b = min((q for q, v in memo.items() if v[0] > budget), default=hi + 1)
    a = max((q for q, v in memo.items() if v[0] <= budget and q < b), default=None)
    if a is None:
        if b <= lo or count(lo) > budget:
            return None
        a = lo
    if interpolate and count(a) == budget:
        b = a + 1  # cannot use more bytes
    shrink_slow = False
    while b - a > 1:
        fa = count(a)
        if not interpolate or shrink_slow:
            q = (a + b) // 2
        elif b > hi:  # no infeasible point yet: Newton step with slope 1 (bytes ~ target)
            q = a + max(1, budget - fa)
        else:
            q = a + int((budget - fa) * (b - a) / max(count(b) - fa, 1))
        q = min(max(q, a + 1), b - 1, hi)
        width, bracketed = b - a, b <= hi
        c = count(q)
        if c <= budget:
            a = q
            if interpolate and c == budget:
                break
        else:
            b = q
        shrink_slow = interpolate and bracketed and (b - a) > width // 2
    for q in range(a + 1, min(a + local_check, hi) + 1):
        count(q)
    return best_probed()


# --------------------------------------------------------------------------- codec base, registry


_CODECS: dict[str, type[Codec]] = {}
CODECS: Mapping[str, type[Codec]] = types.MappingProxyType(_CODECS)


def register_codec(name: str) -> Callable[[type[Codec]], type[Codec]]:
    """Class decorator registering a codec class under ``name``."""

    def decorator(cls: type[Codec]) -> type[Codec]:
        if name in _CODECS and _CODECS[name] is not cls:
            raise ValueError(f"codec name {name!r} is already registered by {_CODECS[name].__name__}")
        cls.name = name
        _CODECS[name] = cls
        return cls

    return decorator


def list_codecs(available_only: bool = False) -> list[str]:
    """Registered codec names, sorted; ``available_only``: those whose library is installed."""
    return sorted(n for n, c in _CODECS.items() if not available_only or c.available())


def get_codec(name: str, **options: Any) -> Codec:
    """The codec registered under ``name``, built with ``options``.

    ValueError listing the known names for an unknown name; :class:`CodecUnavailableError`
    naming what to install when the codec's library is missing.
    """
    try:
        cls = _CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; available codecs: {', '.join(list_codecs())}") from None
    if not cls.available():
        raise CodecUnavailableError(f"codec {name!r} needs {cls.requires}, which is not installed")
    return cls(**options)


class Codec(ABC):
    """A source codec: ``encode`` / ``decode`` / ``count_bytes`` and rate control to a budget.

    Subclasses set ``requires`` (what to install), ``quality_range`` (inclusive integer
    grid searched by :meth:`encode_to_budget`, higher = more bytes) and implement
    :meth:`encode`, :meth:`decode`, :meth:`count_bytes`. The defaults map grid points to
    qualities one to one; :class:`JPEG2000Codec` maps them to compression ratios.
    """

    name: str = "codec"
    requires: str = "Pillow"
    quality_range: tuple[int, int] = (0, 100)
    interpolate: bool = False  # counted bytes ~ linear in the grid point
    guess_is_optimal: bool = False  # _first_guess, when it fits, is the answer
    local_check: int = 2

    @classmethod
    def available(cls) -> bool:
        return True

    @property
    def config(self) -> dict[str, Any]:
        """The codec's settings (JSON-serialisable), recorded beside results."""
        return {}

    @property
    def key(self) -> str:
        """Name + settings: identifies the codec in caches."""
        return f"{self.name}:{json.dumps(self.config, sort_keys=True)}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Code ``image`` (uint8 ``(H, W, 3)``) at ``quality``; returns ``data`` for :meth:`decode`."""

    @abstractmethod
    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        """uint8 ``(H, W, 3)`` from ``data``; ValueError unless the size matches ``shape[:2]``."""

    @abstractmethod
    def count_bytes(self, data: bytes, accounting: str) -> int:
        """Bytes of ``data`` charged to a budget under ``accounting`` (``full`` / ``payload``)."""

    # Grid point <-> quality parameter (identity for integer-quality codecs).
    def _grid(self, image: np.ndarray) -> tuple[int, int]:
        return self.quality_range

    def _quality(self, q: int, image: np.ndarray) -> float:
        return q

    def _first_guess(self, image: np.ndarray, budget: int, accounting: str) -> int | None:
        return None

    def _encode_for(self, image: np.ndarray, quality: float, accounting: str) -> bytes:
        """:meth:`encode` as the rate search calls it (a codec may tune itself to ``accounting``)."""
        return self.encode(image, quality)

    def encode_to_budget(self, image: np.ndarray, budget_bytes: int, accounting: str = "full", *,
                         strict: bool = False) -> EncodeResult | None:
        """The highest quality whose counted bytes fit ``budget_bytes``.

        Returns None when no quality fits (the caller uses :func:`fallback_image`), or
        raises :class:`BudgetTooSmallError` then if ``strict``.
        """
        return self.encode_to_budgets(image, [budget_bytes], accounting, strict=strict)[0]

    def encode_to_budgets(self, image: np.ndarray, budgets: Iterable[int], accounting: str = "full", *,
                          strict: bool = False) -> list[EncodeResult | None]:
        """:meth:`encode_to_budget` for several budgets of one image, sharing the search probes."""
        image = _check_image(image)
        _check_accounting(accounting)
        budgets = [_check_budget(b) for b in budgets]
        lo, hi = self._grid(image)
        memo: dict[int, tuple[int, bytes]] = {}

        def count(q: int) -> int:
            if q not in memo:
                data = self._encode_for(image, self._quality(q, image), accounting)
                memo[q] = (self.count_bytes(data, accounting), data)
            return memo[q][0]

        results: list[EncodeResult | None] = [None] * len(budgets)
        decoded: dict[bytes, np.ndarray] = {}  # budgets on one plateau share a codestream
        for i in sorted(range(len(budgets)), key=budgets.__getitem__):
            budget, n_before = budgets[i], len(memo)
            q = _search_max_feasible(count, memo, lo, hi, budget,
                                     guess=self._first_guess(image, budget, accounting),
                                     guess_is_optimal=self.guess_is_optimal,
                                     interpolate=self.interpolate, local_check=self.local_check)
            if q is None:
                if strict:
                    raise BudgetTooSmallError(
                        f"{self.name}: no quality fits {budget} B ({accounting}); the smallest "
                        f"codestream of this image counts {memo[lo][0]} B")
                continue
            counted, data = memo[q]
            if counted > budget:  # never returned, whatever the search did
                raise AssertionError(f"{self.name}: {counted} B counted over a {budget} B budget")
            if data not in decoded:
                decoded[data] = self.decode(data, image.shape)
                decoded[data].setflags(write=False)  # shared by the budgets of one plateau
            results[i] = EncodeResult(data=data, counted_bytes=counted, total_bytes=len(data),
                                      quality=self._quality(q, image), reconstruction=decoded[data],
                                      codec=self.name, accounting=accounting,
                                      n_encodes=len(memo) - n_before)
        return results


def _pil_decode(data: bytes, shape: tuple[int, ...], codec: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im.convert("RGB"))
    if out.shape[:2] != tuple(shape[:2]):
        raise ValueError(f"{codec}: decoded size {out.shape[:2]} does not match the expected {tuple(shape[:2])}")
    return out


def _be16(data: bytes, i: int) -> int:
    return int.from_bytes(data[i:i + 2], "big")


# --------------------------------------------------------------------------- JPEG2000

_J2K_SOC, _J2K_SOT, _J2K_COM = b"\xff\x4f", b"\xff\x90", b"\xff\x64"
_J2K_TILE_PART_OVERHEAD = 16  # SOT (12 B) + SOD (2 B) + EOC (2 B): one tile, one tile-part
_J2K_HEADER_LENGTHS: dict[tuple[str, int, int], tuple[int, int]] = {}  # per process


def _j2k_main_header_segments(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """``([(start, end) of each main-header marker segment], offset of the first SOT)``."""
    if data[:2] != _J2K_SOC:
        raise ValueError("not a JPEG2000 codestream (no SOC marker 0xFF4F at the start)")
    i, segments = 2, []
    while i + 4 <= len(data):
        marker = data[i:i + 2]
        if marker == _J2K_SOT:
            return segments, i
        if marker[0] != 0xFF:
            break
        end = i + 2 + _be16(data, i + 2)
        segments.append((i, end))
        i = end
    raise ValueError("malformed JPEG2000 codestream: no SOT marker (0xFF90) after the main header")


def j2k_main_header_length(data: bytes) -> int:
    """Bytes of a J2K codestream's main header: SOC up to (excluding) the first SOT marker."""
    return _j2k_main_header_segments(data)[1]


def _j2k_strip_comments(data: bytes) -> bytes:
    segments, sot = _j2k_main_header_segments(data)
    kept = [data[s:e] for s, e in segments if data[s:s + 2] != _J2K_COM]
    return b"".join([data[:2], *kept, data[sot:]])


@register_codec("jpeg2000")
class JPEG2000Codec(Codec):
    """JPEG2000 through Pillow/OpenJPEG: raw J2K codestream, irreversible 9/7, colour transform.

    ``quality`` is OpenJPEG's compression ratio (``raw bytes / target bytes``, ``>= 1``;
    lower = better). Rate control works on the integer target size ``t`` (bytes, ratio
    ``H*W*3 / (t - 0.5)``: OpenJPEG's allocator only sees whole bytes). OpenJPEG keeps
    the longest rate-distortion truncation whose packets fit ``t`` minus its own main
    header (with its COM segment), so ``t = budget - 16 - sent header (full) + OpenJPEG's
    header`` is the best stream that fits, in one encode (checked against an exhaustive
    scan of ratios in the tests). Should it not fit (another OpenJPEG), a secant search
    with a bisection safeguard on ``t`` takes over, keeping the best fitting probe.

    Args:
        num_resolutions: wavelet resolutions (levels + 1) or ``"auto"``:
            ``clip(1 + floor(log2(min(H, W) / 8)), 1, 6)`` (3 at 32x32, Pillow's 6 from 256 px).
        mct: colour transform (1 = on; Pillow's default 0 costs ~3 dB).
        keep_comment: keep OpenJPEG's ~39-byte "Created by OpenJPEG" COM segment (counted
            in ``full``); by default it is stripped, as it carries no image data.
    """

    requires = "Pillow with OpenJPEG (PIL.features.check('jpg_2000'))"
    interpolate = True
    guess_is_optimal = True
    local_check = 0

    def __init__(self, num_resolutions: int | str = "auto", mct: int = 1, keep_comment: bool = False):
        if num_resolutions != "auto" and not (isinstance(num_resolutions, int) and 1 <= num_resolutions <= 32):
            raise ValueError(f"num_resolutions must be 'auto' or an integer in [1, 32], got {num_resolutions!r}")
        if mct not in (0, 1):
            raise ValueError(f"mct must be 0 or 1, got {mct!r}")
        self.num_resolutions = num_resolutions
        self.mct = int(mct)
        self.keep_comment = bool(keep_comment)

    @classmethod
    def available(cls) -> bool:
        return bool(features.check("jpg_2000"))

    @property
    def config(self) -> dict[str, Any]:
        return {"num_resolutions": self.num_resolutions, "mct": self.mct, "keep_comment": self.keep_comment,
                "irreversible": True}

    def resolutions_for(self, height: int, width: int) -> int:
        """The number of resolutions used for an ``height x width`` image."""
        if self.num_resolutions != "auto":
            return int(self.num_resolutions)
        return int(np.clip(1 + math.floor(math.log2(max(min(height, width), 1) / 8)), 1, 6))

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        image = _check_image(image)
        ratio = quality
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)) \
                or not math.isfinite(ratio) or ratio < 1:
            raise ValueError(f"JPEG2000 compression ratio must be a finite number >= 1, got {ratio!r}")
        data = self._encode_openjpeg(image, float(ratio))
        return data if self.keep_comment else _j2k_strip_comments(data)

    def _encode_openjpeg(self, image: np.ndarray, ratio: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(image).save(
            buf, format="JPEG2000", no_jp2=True, irreversible=True, mct=self.mct, quality_mode="rates",
            quality_layers=[ratio], num_resolutions=self.resolutions_for(*image.shape[:2]))
        return buf.getvalue()

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        if bytes(data[:2]) != _J2K_SOC:
            raise ValueError("jpeg2000: data is not a raw J2K codestream (no SOC marker)")
        return _pil_decode(data, shape, self.name)

    def count_bytes(self, data: bytes, accounting: str) -> int:
        _check_accounting(accounting)
        return len(data) if accounting == "full" else len(data) - j2k_main_header_length(data)

    def _grid(self, image: np.ndarray) -> tuple[int, int]:
        return 1, image.size  # target bytes: 1 .. raw size (ratio ~1)

    def _quality(self, q: int, image: np.ndarray) -> float:
        return image.size / (q - 0.5)

    def main_header_lengths(self, height: int, width: int) -> tuple[int, int]:
        """``(main header as sent, as OpenJPEG's rate control counts it)`` for a ``height x width`` image.

        They differ by the COM segment when it is stripped. The main header (SOC, SIZ,
        COD, QCD) depends on the size and settings only, never on the pixels.
        """
        key = (self.key, height, width)
        if key not in _J2K_HEADER_LENGTHS:
            raw = self._encode_openjpeg(np.zeros((height, width, 3), np.uint8), 2.0 * height * width * 3)
            sent = raw if self.keep_comment else _j2k_strip_comments(raw)
            _J2K_HEADER_LENGTHS[key] = (j2k_main_header_length(sent), j2k_main_header_length(raw))
        return _J2K_HEADER_LENGTHS[key]

    def _first_guess(self, image: np.ndarray, budget: int, accounting: str) -> int | None:
        # OpenJPEG's allocator keeps the longest truncation whose packets fit
        # target - (main header incl. COM); SOT + SOD (14 B) and EOC (2 B) come on top.
        # So this target gives the best stream that fits (checked in the tests against
        # an exhaustive scan); the search goes on only if it does not fit.
        sent, counted_by_openjpeg = self.main_header_lengths(*image.shape[:2])
        packets = budget - _J2K_TILE_PART_OVERHEAD - (sent if accounting == "full" else 0)
        return packets + counted_by_openjpeg


# --------------------------------------------------------------------------- JPEG

_JPEG_SOI, _JPEG_EOI, _JPEG_SOS, _JPEG_DHT = 0xD8, 0xD9, 0xDA, 0xC4


def _jpeg_header_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """``([(marker, start, end) of the segments before the first scan], end of the first SOS header)``."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream (no SOI marker 0xFFD8)")
    i, segments = 2, []
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        end = i + 2 + _be16(data, i + 2)
        segments.append((marker, i, end))
        if marker == _JPEG_SOS:
            return segments, end
        i = end
    raise ValueError("malformed JPEG stream: no SOS segment")


@functools.cache
def _jpeg_standard_dht_segments() -> frozenset[bytes]:
    """libjpeg's standard (ITU T.81 Annex K) Huffman tables, as the DHT segments it writes."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="JPEG", quality=75, optimize=False)
    data = buf.getvalue()
    return frozenset(data[s:e] for m, s, e in _jpeg_header_segments(data)[0] if m == _JPEG_DHT)


@register_codec("jpeg")
class JPEGCodec(Codec):
    """Baseline JPEG (libjpeg through Pillow), quality 1..95.

    ``payload`` counts the DHT segments unless they hold the standard tables (known to
    the receiver). Image-adapted tables (``optimize=True``) shrink the DHT and the scan,
    which pays under ``full``; under ``payload`` the standard tables cost nothing, which
    pays more (+4 dB at 213 B on CIFAR-10, more below, where optimised tables often do
    not fit at all).

    Args:
        subsampling: chroma subsampling, ``"4:2:0"`` (default: better than ``"4:4:4"``
            at the low rates of the baseline) or ``"4:4:4"`` / ``"4:2:2"``.
        optimize: image-adapted Huffman tables: True, False, or ``"auto"`` (True for
            :meth:`encode` and ``full``, False for ``payload``).

    Note: the project's CIFAR-10 copy is itself JPEG (quality 75, 4:2:0), which JPEG
    re-encodes almost losslessly at that quality: JPEG is favoured on that copy.
    """

    quality_range = (1, 95)
    _SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}

    def __init__(self, subsampling: str = "4:2:0", optimize: bool | str = "auto"):
        if subsampling not in self._SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {list(self._SUBSAMPLING)}, got {subsampling!r}")
        if optimize not in (True, False, "auto"):
            raise ValueError(f"optimize must be True, False or 'auto', got {optimize!r}")
        self.subsampling = subsampling
        self.optimize = optimize

    @classmethod
    def available(cls) -> bool:
        return bool(features.check("jpg"))

    @property
    def config(self) -> dict[str, Any]:
        return {"subsampling": self.subsampling, "optimize": self.optimize}

    def encode(self, image: np.ndarray, quality: float, *, optimize: bool | None = None) -> bytes:
        """JPEG without APPn / COM segments (no JFIF container); ``optimize`` overrides the setting."""
        image = _check_image(image)
        q = _check_int_quality(quality, self.quality_range, self.name)
        if optimize is None:
            optimize = self.optimize if isinstance(self.optimize, bool) else True
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=q, optimize=bool(optimize),
                                    subsampling=self._SUBSAMPLING[self.subsampling])
        data = buf.getvalue()
        segments, _ = _jpeg_header_segments(data)
        drop = [(s, e) for m, s, e in segments if 0xE0 <= m <= 0xEF or m == 0xFE]  # APPn (JFIF), COM
        out, i = [], 0
        for s, e in drop:
            out.append(data[i:s])
            i = e
        out.append(data[i:])
        return b"".join(out)

    def _encode_for(self, image: np.ndarray, quality: float, accounting: str) -> bytes:
        optimize = self.optimize if isinstance(self.optimize, bool) else accounting == "full"
        return self.encode(image, quality, optimize=optimize)

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        return _pil_decode(data, shape, self.name)

    def count_bytes(self, data: bytes, accounting: str) -> int:
        _check_accounting(accounting)
        if accounting == "full":
            return len(data)
        segments, scan_start = _jpeg_header_segments(data)
        standard = _jpeg_standard_dht_segments()
        dht = sum(e - s for m, s, e in segments if m == _JPEG_DHT and data[s:e] not in standard)
        eoi = 2 if data[-2:] == b"\xff\xd9" else 0
        return dht + len(data) - scan_start - eoi


def _check_int_quality(quality: Any, quality_range: tuple[int, int], codec: str) -> int:
    lo, hi = quality_range
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not lo <= quality <= hi:
        raise ValueError(f"{codec}: quality must be an integer in [{lo}, {hi}], got {quality!r}")
    return int(quality)


# --------------------------------------------------------------------------- WebP

_VP8_START_CODE = b"\x9d\x01\x2a"


def _riff_chunks(data: bytes) -> dict[bytes, bytes]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file (no RIFF/WEBP header)")
    chunks, i = {}, 12
    while i + 8 <= len(data):
        size = int.from_bytes(data[i + 4:i + 8], "little")
        chunks[data[i:i + 4]] = data[i + 8:i + 8 + size]
        i += 8 + size + (size & 1)
    return chunks


@register_codec("webp")
class WebPCodec(Codec):
    """Lossy WebP (VP8 key frame, libwebp through Pillow), quality 0..100, ``method=6``.

    ``data`` is the bare VP8 frame (the 'VP8 ' chunk); :meth:`decode` re-wraps it in the
    20-byte RIFF header, which is not counted.
    """

    requires = "Pillow with libwebp (PIL.features.check('webp'))"

    def __init__(self, method: int = 6):
        if method not in range(7):
            raise ValueError(f"method must be an integer in [0, 6], got {method!r}")
        self.method = method

    @classmethod
    def available(cls) -> bool:
        return bool(features.check("webp"))

    @property
    def config(self) -> dict[str, Any]:
        return {"method": self.method}

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        image = _check_image(image)
        q = _check_int_quality(quality, self.quality_range, self.name)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="WEBP", quality=q, method=self.method, lossless=False)
        chunks = _riff_chunks(buf.getvalue())
        if b"VP8 " not in chunks:
            raise RuntimeError(f"webp: expected a simple lossy file with one 'VP8 ' chunk, got {list(chunks)}")
        return chunks[b"VP8 "]

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        if bytes(data[3:6]) != _VP8_START_CODE:
            raise ValueError("webp: data is not a VP8 key frame (no start code 9d 01 2a)")
        pad = b"\x00" * (len(data) & 1)
        riff = (b"RIFF" + (4 + 8 + len(data) + len(pad)).to_bytes(4, "little") + b"WEBP"
                + b"VP8 " + len(data).to_bytes(4, "little") + bytes(data) + pad)
        return _pil_decode(riff, shape, self.name)

    def count_bytes(self, data: bytes, accounting: str) -> int:
        _check_accounting(accounting)
        return len(data) if accounting == "full" else len(data) - 7  # start code + width/height


# --------------------------------------------------------------------------- ISOBMFF (AVIF, HEIF)

_FULL_BOXES = {b"meta"}  # boxes with a 4-byte version/flags field before their children


def _find_box(data: bytes, path: Sequence[bytes]) -> bytes:
    """Contents of the box at ``path`` (e.g. ``[b"meta", b"iprp", b"ipco", b"hvcC"]``)."""
    start, end = 0, len(data)
    for name in path:
        i = start
        while i + 8 <= end:
            size, typ, header = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8], 8
            if size == 1:
                size, header = int.from_bytes(data[i + 8:i + 16], "big"), 16
            elif size == 0:
                size = end - i
            if size < header:
                break
            if typ == name:
                start, end = i + header + (4 if typ in _FULL_BOXES else 0), i + size
                break
            i += size
        else:
            raise ValueError(f"no {'/'.join(p.decode() for p in path)} box in the file")
    return data[start:end]


def _leb128(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _av1_obus(stream: bytes) -> list[tuple[int, int]]:
    """``[(obu_type, size in bytes incl. its header)]`` of a low-overhead AV1 bitstream."""
    obus, i = [], 0
    while i < len(stream):
        header = stream[i]
        obu_type, has_ext, has_size = (header >> 3) & 0xF, (header >> 2) & 1, (header >> 1) & 1
        j = i + 1 + has_ext
        size, j = _leb128(stream, j) if has_size else (len(stream) - j, j)
        obus.append((obu_type, j + size - i))
        i = j + size
    return obus


_AV1_FRAME_OBUS = {3, 4, 6, 7, 8}  # frame header, tile group, frame, redundant frame header, tile list


@register_codec("avif")
class AVIFCodec(Codec):
    """AVIF (AV1 intra through Pillow's libavif plugin), quality 0..100, 4:2:0.

    ``data`` is the AVIF file; ``full`` counts the AV1 OBUs in ``mdat``, ``payload`` the
    frame OBUs only (see the module table).
    """

    requires = "Pillow with libavif (PIL.features.check('avif'))"

    def __init__(self, speed: int = 6, subsampling: str = "4:2:0"):
        if speed not in range(11):
            raise ValueError(f"speed must be an integer in [0, 10], got {speed!r}")
        if subsampling not in ("4:2:0", "4:2:2", "4:4:4"):
            raise ValueError(f"subsampling must be 4:2:0, 4:2:2 or 4:4:4, got {subsampling!r}")
        self.speed, self.subsampling = speed, subsampling

    @classmethod
    def available(cls) -> bool:
        try:
            return bool(features.check("avif"))
        except ValueError:  # Pillow without the avif feature
            return False

    @property
    def config(self) -> dict[str, Any]:
        return {"speed": self.speed, "subsampling": self.subsampling}

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        image = _check_image(image)
        q = _check_int_quality(quality, self.quality_range, self.name)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="AVIF", quality=q, speed=self.speed,
                                    subsampling=self.subsampling, max_threads=1)
        return buf.getvalue()

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        return _pil_decode(data, shape, self.name)

    def count_bytes(self, data: bytes, accounting: str) -> int:
        _check_accounting(accounting)
        mdat = _find_box(data, [b"mdat"])
        if accounting == "full":
            return len(mdat)
        return sum(size for obu_type, size in _av1_obus(mdat) if obu_type in _AV1_FRAME_OBUS)


@functools.cache
def _register_heif_opener() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@register_codec("heif")
class HEIFCodec(Codec):
    """HEIF with HEVC intra (x265 / libde265 through ``pillow-heif``), quality 0..100, 4:2:0.

    The closest BPG-class codec with a wheel (BPG itself has none). ``data`` is the HEIF
    file; ``full`` counts the HEVC stream (parameter sets from ``hvcC`` + ``mdat``),
    ``payload`` the ``mdat`` contents (see the module table).
    """

    requires = "pillow-heif (pip install pillow-heif)"

    def __init__(self, chroma: str = "420"):
        if chroma not in ("420", "422", "444"):
            raise ValueError(f"chroma must be '420', '422' or '444', got {chroma!r}")
        self.chroma = chroma

    @classmethod
    def available(cls) -> bool:
        return _register_heif_opener()

    @property
    def config(self) -> dict[str, Any]:
        return {"chroma": self.chroma}

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        image = _check_image(image)
        q = _check_int_quality(quality, self.quality_range, self.name)
        _register_heif_opener()
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="HEIF", quality=q, chroma=self.chroma)
        return buf.getvalue()

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        _register_heif_opener()
        return _pil_decode(data, shape, self.name)

    def count_bytes(self, data: bytes, accounting: str) -> int:
        _check_accounting(accounting)
        mdat = _find_box(data, [b"mdat"])
        if accounting == "payload":
            return len(mdat)
        hvcc = _find_box(data, [b"meta", b"iprp", b"ipco", b"hvcC"])
        i, parameter_sets = 23, 0  # 22-byte configuration record, then numOfArrays
        for _ in range(hvcc[22]):
            n_nalus, i = _be16(hvcc, i + 1), i + 3
            for _ in range(n_nalus):
                length = _be16(hvcc, i)
                parameter_sets += 4 + length  # as a length-prefixed NAL unit, like mdat's
                i += 2 + length
        return parameter_sets + len(mdat)


# --------------------------------------------------------------------------- fallback


def fallback_image(image: np.ndarray, mode: str, dataset_mean: Sequence[float] | None = None) -> np.ndarray:
    """The reconstruction when the digital link fails or no quality fits (the cliff).

    ``image_mean``: each channel filled with the image's own mean, rounded to 8 bits (the
    24 bits assumed delivered, :data:`FALLBACK_BITS`); ``dataset_mean``: each channel
    filled with ``dataset_mean`` (3 values in ``[0, 1]``, the project's pixel scale;
    0 bits), rounded to 8 bits. Returns uint8 ``(H, W, 3)``.
    """
    image = _check_image(image)
    if mode == "image_mean":
        mean = image.reshape(-1, 3).mean(axis=0)
    elif mode == "dataset_mean":
        if dataset_mean is None:
            raise ValueError("fallback 'dataset_mean' needs dataset_mean (3 values in [0, 1])")
        mean = np.asarray(dataset_mean, dtype=np.float64).reshape(-1)
        if mean.shape != (3,) or not np.all((mean >= 0) & (mean <= 1)):
            raise ValueError(f"dataset_mean must be 3 values in [0, 1], got {dataset_mean!r}")
        mean = mean * 255.0
    else:
        raise ValueError(f"unknown fallback {mode!r}; expected one of {FALLBACK_MODES}")
    pixel = np.clip(np.round(mean), 0, 255).astype(np.uint8)
    return np.broadcast_to(pixel, image.shape).copy()


# --------------------------------------------------------------------------- datasets


class SourceCodingCache:
    """In-memory results of encode-to-budget, keyed by ``(image index, budget, codec key, accounting)``.

    A cache belongs to one image sequence: it fingerprints each index's image and raises
    ValueError if a different image shows up at a known index. Each entry holds the
    reconstruction (``H*W*3`` bytes), e.g. ~3 KB per CIFAR-10 image and budget.
    """

    def __init__(self) -> None:
        self._results: dict[tuple[int, int, str, str], EncodeResult | None] = {}
        self._fingerprints: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._results)

    def check_image(self, index: int, image: np.ndarray) -> None:
        digest = hashlib.blake2b(image.tobytes() + repr(image.shape).encode(), digest_size=16).hexdigest()
        known = self._fingerprints.setdefault(index, digest)
        if known != digest:
            raise ValueError(f"image {index} differs from the one cached under that index; "
                             "use one SourceCodingCache per image sequence")

    def get(self, key: tuple[int, int, str, str]) -> tuple[bool, EncodeResult | None]:
        """``(found, result)``; ``result`` may be None (nothing fitted) when found."""
        return (True, self._results[key]) if key in self._results else (False, None)

    def put(self, key: tuple[int, int, str, str], result: EncodeResult | None) -> None:
        self._results[key] = result


# --------------------------------------------------------------------------- worker processes


# How source-coding workers start. Not "fork" (Linux's default before Python 3.14): the parent runs threads
# (torch's intra-op pool, tqdm's monitor, LPIPS, ...), and a forked child gets a copy of every lock held by
# another thread at that instant, never released there: a worker can hang forever (jscc baseline --workers 2).
# A spawned worker re-imports the main module: a script that codes with workers > 1 needs the
# ``if __name__ == "__main__":`` guard (the jscc CLI has it).
POOL_START_METHOD = "spawn"

# Inside shared_worker_pools(): (pid that opened the block, {workers: executor}).
_shared_pools: tuple[int, dict[int, ProcessPoolExecutor]] | None = None


def _init_worker(num_threads: int | None) -> None:
    """Pool initializer: the parent's torch intra-op threads (``--threads``), which a spawned child does not inherit."""
    if num_threads is not None:
        import torch

        torch.set_num_threads(num_threads)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    torch = sys.modules.get("torch")
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(POOL_START_METHOD),
                               initializer=_init_worker,
                               initargs=(None if torch is None else torch.get_num_threads(),))


@contextlib.contextmanager
def shared_worker_pools():
    """Within the block, source coding with ``workers > 1`` (:func:`encode_dataset_to_budgets`, the video
    baseline) reuses one process pool per worker count, started on first use and shut down on exit, instead of
    starting one per call (a spawned worker imports torch: seconds each time). Nested blocks share the outer's."""
    global _shared_pools
    outer = _shared_pools
    if outer is not None and outer[0] == os.getpid():
        yield
        return
    pools: dict[int, ProcessPoolExecutor] = {}
    _shared_pools = (os.getpid(), pools)
    try:
        yield
    finally:
        _shared_pools = outer
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)


@contextlib.contextmanager
def _worker_pool(workers: int, n_tasks: int):
    """An executor for ``n_tasks`` tasks on up to ``workers`` spawned processes: the shared one inside
    :func:`shared_worker_pools` (workers start on demand), else a new one shut down afterwards. The results
    must not depend on the worker: tasks are pure functions of their arguments."""
    shared = _shared_pools[1] if _shared_pools is not None and _shared_pools[0] == os.getpid() else None
    if shared is None:
        pool = _new_pool(min(workers, n_tasks))
        try:
            yield pool
        finally:
            pool.shutdown(cancel_futures=True)
        return
    pool = shared.get(workers)
    if pool is None:
        pool = shared[workers] = _new_pool(workers)
    try:
        yield pool
    except BrokenProcessPool:  # a worker died (killed, out of memory): the next call starts a new pool
        if shared.get(workers) is pool:
            del shared[workers]
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _map(fn: Callable, tasks: list, pool: Executor | None, chunksize: int = 1) -> Iterable:
    return map(fn, tasks) if pool is None else pool.map(fn, tasks, chunksize=chunksize)


def _encode_task(args: tuple[Codec, np.ndarray, list[int], str]) -> list[EncodeResult | None]:
    codec, image, budgets, accounting = args
    return codec.encode_to_budgets(image, budgets, accounting)


def encode_dataset_to_budgets(images: Sequence[np.ndarray] | np.ndarray, budgets: Iterable[int],
                              codec: Codec | str, accounting: str = "full", *, workers: int | None = 2,
                              cache: SourceCodingCache | None = None,
                              chunksize: int | None = None) -> dict[int, list[EncodeResult | None]]:
    """Every image coded to every budget: ``{budget: [EncodeResult | None per image]}``.

    Args:
        images: uint8 ``(H, W, 3)`` images (a sequence, or an ``(N, H, W, 3)`` array).
        budgets: byte budgets (e.g. one per design SNR); each image's budgets share one
            rate search, so pass them together.
        codec: a :class:`Codec` or a registered name.
        accounting: ``"full"`` or ``"payload"``.
        workers: processes (``1``: in this process; ``None``: ``os.cpu_count()``), spawned per call or
            shared within :func:`shared_worker_pools`.
        cache: results already there are reused, new ones added.
        chunksize: images per pool task (default: ~8 tasks per worker).
    """
    codec = get_codec(codec) if isinstance(codec, str) else codec
    if not isinstance(codec, Codec):
        raise TypeError(f"codec must be a Codec or a codec name, got {type(codec).__name__}")
    _check_accounting(accounting)
    budgets = sorted({_check_budget(b) for b in budgets})
    images = [_check_image(im) for im in images]
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    out = {b: [None] * len(images) for b in budgets}
    tasks, task_index = [], []
    for i, image in enumerate(images):
        missing = budgets
        if cache is not None:
            cache.check_image(i, image)
            missing = []
            for b in budgets:
                found, result = cache.get((i, b, codec.key, accounting))
                if found:
                    out[b][i] = result
                else:
                    missing.append(b)
        if missing:
            tasks.append((codec, image, missing, accounting))
            task_index.append(i)

    chunksize = chunksize or max(1, len(tasks) // (8 * workers))
    with (_worker_pool(workers, len(tasks)) if workers > 1 and len(tasks) > 1
          else contextlib.nullcontext()) as pool:
        for i, (_, _, missing, _), results in zip(task_index, tasks, _map(_encode_task, tasks, pool, chunksize)):
            for b, result in zip(missing, results):
                out[b][i] = result
                if cache is not None:
                    cache.put((i, b, codec.key, accounting), result)
    return out


def encode_dataset_to_budget(images: Sequence[np.ndarray] | np.ndarray, budget_bytes: int,
                             codec: Codec | str, accounting: str = "full", *, workers: int | None = 2,
                             cache: SourceCodingCache | None = None) -> list[EncodeResult | None]:
    """Every image coded to one budget (see :func:`encode_dataset_to_budgets`)."""
    return encode_dataset_to_budgets(images, [budget_bytes], codec, accounting, workers=workers,
                                     cache=cache)[_check_budget(budget_bytes)]
