"""Digital links of the separate source-channel coding baseline (README, `jscc baseline`).

Two links carry the source codec's bytes for one image over ``k`` complex channel uses:

1. **Capacity link** (an ideal, capacity-achieving code, pure functions):
   ``bits = floor(k * log2(1 + snr_design_lin))`` (:func:`capacity_link_bits`). Decoding
   succeeds on AWGN iff the actual SNR is >= the design SNR
   (:func:`capacity_awgn_success`) and under slow Rayleigh fading iff
   ``log2(1 + |h|^2 snr_lin) >= R = bits / k`` (:func:`capacity_rayleigh_success`, outage
   probability ``1 - exp(-(2^R - 1) / snr_lin)``). Under fading the rate is chosen per
   average SNR to maximise the expected quality (:func:`rayleigh_capacity_rate_choice`).

2. **5G NR LDPC + QAM link** (Sionna PHY 2.x, PyTorch, imported lazily): one transport
   block (TB) per image of exactly ``n = k * log2(M)`` coded bits, so the image takes
   exactly ``k`` modulated symbols. The TB is built by ``sionna.phy.nr.TBEncoder`` as in
   38.212/38.214: TB CRC (CRC16 for TBs <= 3824 bits, CRC24A above), segmentation into
   code blocks with CRC24B each when the TB needs several, LDPC base graph and lifting
   (filler bits when the lifting size exceeds the code block), rate matching to ``n`` bits,
   bit interleaving and scrambling. The payload budget is the TB size (``tb_size``), the
   information bits only: TB CRC, CB CRCs and filler bits are all inside the ``n`` coded
   bits, i.e. counted against the budget (:class:`TransportBlockLayout`).

   Receiver: the project's own :func:`~channels.awgn` / :func:`~channels.rayleigh` carry the
   symbols; under slow Rayleigh fading the receiver knows ``h`` (coherent, pilots not
   charged): zero-forcing ``y / h`` and LLRs with the effective noise ``N0 / |h|^2``
   (``Demapper(..., no=noise_var)``, never ``ebnodb2no``). A TB CRC failure makes the
   image undecodable (fallback).

   Sweeps use the fast path: Monte-Carlo BLER curves per MCS on AWGN
   (:func:`bler_table`, cached as JSON on disk; lazy in the baselines: a point is simulated
   when a lookup first reads it, each point with its own seed), looked up at the effective SNR
   (``snr_lin`` on AWGN, ``|h|^2 snr_lin`` per image under slow fading) and turned into
   Bernoulli successes (:func:`simulate_success` ``mode="cached"``); ``mode="exact"`` runs
   the full bit-level chain.

   Large TBs (more than ``max_blocks_exact`` code blocks, default 4; e.g. a 768x512 Kodak
   image at k/n = 1/16: k = 73,728 channel uses, 9 code blocks at QPSK-1/2, 59 at
   256QAM-5/6) are too slow to simulate whole. Their tables are *code-block scaled*:
   ``BLER_TB = 1 - (1 - BLER_cb)^C`` with ``BLER_cb`` the exact table of a single-code-block
   surrogate TB of the same modulation (:func:`code_block_surrogate`), chosen for the same
   base graph and lifting size, the closest code-block size and code rate the 38.214 TB
   sizes allow (for k = 73,728 and the 25 MCSs: -216 to +40 information bits of ~8.2k, the
   code rate within 4e-4 relative). Code blocks occupy whole symbols, so their errors are
   independent on AWGN and, given ``h``, under slow fading. The key of a scaled table
   records ``cb_scaled`` and the surrogate (:func:`bler_table`).

Randomness: every stochastic function takes a ``torch.Generator`` (payload bits, noise,
``h`` and Bernoulli draws all come from it). The Sionna blocks used here draw no random
numbers (the 5G scrambler sequence is fixed by ``n_rnti``/``n_id``); table building also
sets ``sionna.phy.config.seed`` explicitly, inside ``torch.random.fork_rng`` because
Sionna's seed setter reseeds torch's global CPU generator too.

The MCS grid is {BPSK, QPSK, 16-, 64-, 256-QAM} x {1/3, 1/2, 2/3, 3/4, 5/6}. BPSK is
Sionna's ``("pam", 1)`` (real +-1 on the complex channel: 1 bit per complex use).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import numbers
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .awgn import awgn
from .capacity import awgn_capacity, rayleigh_outage_probability
from .fading import _draw_h, equalize, rayleigh
from .power import SnrDb, snr_db_to_lin, snr_db_to_noise_var
from .random import make_generator

__all__ = [
    "BLER_BUDGETS",
    "MCS",
    "MCS_GRID",
    "BlerTable",
    "CodeBlockSurrogate",
    "LDPCLink",
    "MCSChoice",
    "RateChoice",
    "TransportBlockLayout",
    "bler_lookup",
    "bler_table",
    "bler_cache_dir",
    "capacity_awgn_success",
    "capacity_link_bits",
    "capacity_rayleigh_success",
    "code_block_surrogate",
    "default_snr_grid",
    "design_mcs",
    "expected_quality_choice",
    "feasible_mcs",
    "get_link",
    "rayleigh_capacity_rate_choice",
    "rayleigh_mcs_choice",
    "rayleigh_success_probability",
    "simulate_success",
    "transport_block_info_bits",
    "transport_block_layout",
]

CHANNELS = ("awgn", "rayleigh")


# ----------------------------------------------------------------------------------------
# Small validators
# ----------------------------------------------------------------------------------------


def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_scalar_snr(snr_db, name: str = "snr_db") -> float:
    if isinstance(snr_db, Tensor):
        if snr_db.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(snr_db.shape)}")
        snr_db = snr_db.item()
    if isinstance(snr_db, bool) or not isinstance(snr_db, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(snr_db).__name__}")
    if not math.isfinite(snr_db):
        raise ValueError(f"{name} must be finite, got {snr_db!r}")
    return float(snr_db)


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; known channels: {list(CHANNELS)}")


def _check_link_channel(channel) -> torch.nn.Module | None:
    """A link Module (OFDM, MIMO) with zero-forcing equalisation, or None for a checked channel name."""
    if isinstance(channel, torch.nn.Module):
        if getattr(channel, "equalization", None) != "zf":
            raise ValueError(f"the digital receiver takes LLRs from unbiased symbols: build the {channel.name} channel "
                             f"with equalization='zf', not {getattr(channel, 'equalization', None)!r}")
        return channel
    _check_channel(channel)
    return None


def _check_demapping(demapping: str) -> str:
    if demapping not in ("app", "maxlog"):
        raise ValueError(f"demapping must be 'app' or 'maxlog', got {demapping!r}")
    return demapping


def _batch_snr_db(snr_db: SnrDb, batch: int | None) -> tuple[Tensor, int]:
    """``snr_db`` as a float64 CPU tensor of shape ``(B,)`` and ``B``.

    ``snr_db`` is a number / 0-dim (then ``batch`` gives B) or a ``(B,)`` tensor/array.
    """
    snr_db_to_lin(snr_db)  # type and finiteness checks (ValueError for NaN / inf)
    snr = torch.as_tensor(np.asarray(snr_db.detach().cpu() if isinstance(snr_db, Tensor) else snr_db,
                                     dtype=np.float64))
    if snr.ndim == 0:
        if batch is None:
            raise ValueError("batch_size is needed when snr_db is a scalar and no h is given")
        return snr.expand(_check_int(batch, "batch_size")).clone(), int(batch)
    if snr.ndim != 1 or (batch is not None and snr.shape[0] != batch):
        raise ValueError(f"snr_db must be a scalar or of shape (B,), got shape {tuple(snr.shape)}"
                         + (f" for B={batch}" if batch is not None else ""))
    return snr, snr.shape[0]


def _slow_fading_h(batch: int, generator: torch.Generator | None) -> Tensor:
    """One ``h ~ CN(0, 1)`` per image, ``(B,)`` complex64, drawn by the project's Rayleigh
    machinery (the same draw :func:`~channels.rayleigh` makes first for ``block_length=None``)."""
    return _draw_h(torch.zeros(batch, 1, dtype=torch.complex64), None, generator).reshape(batch)


def _check_h(h, batch: int | None) -> Tensor:
    if not isinstance(h, Tensor) or not h.is_complex():
        raise TypeError("h must be a complex tensor of one fading coefficient per image, shape (B,)")
    h = h.detach().cpu()
    if h.ndim > 1 and all(s == 1 for s in h.shape[1:]):  # (B, 1, ..., 1) as rayleigh() returns it
        h = h.reshape(h.shape[0])
    if h.ndim != 1 or (batch is not None and h.shape[0] != batch):
        raise ValueError(f"h must have shape (B,) (one coefficient per image), got {tuple(h.shape)}")
    return h.to(torch.complex64)


# ----------------------------------------------------------------------------------------
# 1. Capacity link
# ----------------------------------------------------------------------------------------


def capacity_link_bits(k: int, design_snr_db: float) -> int:
    """Bits per image of a capacity-achieving code: ``floor(k * log2(1 + snr_lin))``.

    Args:
        k: complex channel uses per image (int >= 1).
        design_snr_db: design Es/N0 per complex use in dB (finite).

    Returns:
        int, e.g. ``capacity_link_bits(256, 10.0) == 885``.
    """
    k = _check_int(k, "k")
    return int(math.floor(k * awgn_capacity(_check_scalar_snr(design_snr_db, "design_snr_db"))))


def capacity_awgn_success(snr_db: SnrDb, design_snr_db: float) -> Tensor:
    """AWGN capacity link: decoding succeeds iff ``snr_db >= design_snr_db``.

    Args:
        snr_db: actual SNR(s) in dB: number, array or tensor (any shape).
        design_snr_db: the SNR the rate was designed for.

    Returns:
        bool tensor of ``snr_db``'s shape (0-dim for a number).
    """
    design = _check_scalar_snr(design_snr_db, "design_snr_db")
    snr_db_to_lin(snr_db)  # checks
    snr = torch.as_tensor(snr_db.detach().cpu() if isinstance(snr_db, Tensor) else np.asarray(snr_db),
                          dtype=torch.float64)
    return snr >= design


def capacity_rayleigh_success(
    bits: int,
    k: int,
    snr_db: SnrDb,
    *,
    h: Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Slow Rayleigh capacity link: success iff ``log2(1 + |h|^2 snr_lin) >= R = bits / k``.

    One ``h ~ CN(0, 1)`` per image (slow / block fading), known at the receiver.

    Args:
        bits: bits sent per image (int >= 0), e.g. ``floor(k * R)`` for a chosen rate ``R``.
        k: complex channel uses per image.
        snr_db: average SNR in dB, a number or a ``(B,)`` tensor/array.
        h: optional ``(B,)`` complex realisations; drawn with ``generator`` when None.
        batch_size: number of images B when neither ``h`` nor a ``(B,)`` ``snr_db`` gives it.
        generator: source of ``h`` (CPU generator).

    Returns:
        ``(ok, h)``: ``ok`` bool ``(B,)``, ``h`` complex64 ``(B,)`` (the realisations used).
    """
    bits = _check_int(bits, "bits", minimum=0)
    k = _check_int(k, "k")
    batch = None if h is None else _check_h(h, None).shape[0]
    if batch is not None and batch_size is not None and batch_size != batch:
        raise ValueError(f"batch_size={batch_size} disagrees with h of {batch} images")
    snr, batch = _batch_snr_db(snr_db, batch if batch is not None else batch_size)
    h = _slow_fading_h(batch, generator) if h is None else _check_h(h, batch)
    gain = h.to(torch.complex128).abs().square()
    ok = torch.log2(1 + gain * snr_db_to_lin(snr)) >= bits / k
    return ok, h


@dataclasses.dataclass(frozen=True)
class RateChoice:
    """Result of :func:`rayleigh_capacity_rate_choice`."""

    index: int
    rate: float
    expected_quality: float
    outage_probability: float


def expected_quality_choice(
    success_probability: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    quality_fallback: float,
) -> tuple[int, np.ndarray]:
    """Pick the option maximising ``p_i * quality_i + (1 - p_i) * quality_fallback``.

    Ties go to the first (lowest-index) option. Returns ``(index, expected qualities)``.
    """
    p = np.asarray(success_probability, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if p.ndim != 1 or p.shape != q.shape or p.size == 0:
        raise ValueError(f"success_probability and quality must be 1-D of the same non-zero length, "
                         f"got shapes {p.shape} and {q.shape}")
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("success probabilities must lie in [0, 1]")
    if not (np.isfinite(q).all() and math.isfinite(quality_fallback)):
        raise ValueError("qualities must be finite")
    expected = p * q + (1 - p) * float(quality_fallback)
    return int(np.argmax(expected)), expected


def rayleigh_capacity_rate_choice(
    snr_db: float,
    rates: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray | Callable[[float], float],
    quality_fallback: float,
) -> RateChoice:
    """Rate of the capacity link under slow Rayleigh fading maximising the expected quality.

    ``E[quality](R) = (1 - P_out(R)) * quality(R) + P_out(R) * quality_fallback`` with
    ``P_out(R) = 1 - exp(-(2^R - 1) / snr_lin)`` (:func:`~channels.rayleigh_outage_probability`).

    Args:
        snr_db: average SNR in dB.
        rates: candidate rates ``R`` in bits per complex use (>= 0), e.g. ``bits_i / k``.
        quality: quality (e.g. PSNR) on success for each rate, a sequence or a callable ``R -> q``.
        quality_fallback: quality of the fallback reconstruction (on outage).
    """
    snr_db = _check_scalar_snr(snr_db)
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError(f"rates must be a non-empty 1-D sequence, got shape {rates.shape}")
    q = np.array([quality(float(r)) for r in rates]) if callable(quality) else np.asarray(quality, np.float64)
    p_out = np.asarray(rayleigh_outage_probability(rates, snr_db), dtype=np.float64)
    i, expected = expected_quality_choice(1 - p_out, q, quality_fallback)
    return RateChoice(index=i, rate=float(rates[i]), expected_quality=float(expected[i]),
                      outage_probability=float(p_out[i]))


# ----------------------------------------------------------------------------------------
# 2. 5G LDPC + QAM link: MCS and transport block layout
# ----------------------------------------------------------------------------------------

_MODULATIONS = {2: "BPSK", 4: "QPSK", 16: "16QAM", 64: "64QAM", 256: "256QAM"}
_MOD_BY_NAME = {v.lower(): m for m, v in _MODULATIONS.items()} | {"pam2": 2, "4qam": 4}
# Sionna's limits: TBEncoder target_coderate in (0, 948/1024]; LDPC5GEncoder rate >= 1/5.
MIN_CODE_RATE = Fraction(1, 5)
MAX_CODE_RATE = Fraction(948, 1024)
CODE_RATES = (Fraction(1, 3), Fraction(1, 2), Fraction(2, 3), Fraction(3, 4), Fraction(5, 6))


@dataclasses.dataclass(frozen=True, order=False)
class MCS:
    """Modulation and coding scheme.

    Args:
        order: modulation order ``M`` in {2 (BPSK, Sionna ``("pam", 1)``), 4, 16, 64, 256}
            or a name ("BPSK", "QPSK", "16QAM", ...).
        rate: LDPC target code rate in [1/5, 948/1024] (Sionna's limits): a Fraction, a
            float or a string such as ``"1/2"``; stored as a Fraction (floats via
            ``limit_denominator(1024)``).
    """

    order: int
    rate: Fraction

    def __post_init__(self):
        order = self.order
        if isinstance(order, str):
            if order.lower() not in _MOD_BY_NAME:
                raise ValueError(f"unknown modulation {order!r}; known: {list(_MODULATIONS.values())}")
            order = _MOD_BY_NAME[order.lower()]
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order not in _MODULATIONS:
            raise ValueError(f"unknown modulation order M={order!r}; supported: {sorted(_MODULATIONS)} "
                             f"({', '.join(_MODULATIONS.values())})")
        rate = self.rate
        try:
            if isinstance(rate, str):
                rate = Fraction(rate)
            elif isinstance(rate, Fraction):
                pass
            elif isinstance(rate, numbers.Real) and not isinstance(rate, bool) and math.isfinite(rate):
                rate = Fraction(rate).limit_denominator(1024)
            else:
                raise TypeError
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"code rate must be a finite number or a fraction string like '1/2', got {self.rate!r}")
        if not MIN_CODE_RATE <= rate <= MAX_CODE_RATE:
            raise ValueError(f"code rate {float(rate):.4f} is outside Sionna's 5G LDPC limits "
                             f"[1/5, 948/1024 = {float(MAX_CODE_RATE):.4f}]")
        object.__setattr__(self, "order", int(order))
        object.__setattr__(self, "rate", rate)

    @classmethod
    def parse(cls, name: str) -> "MCS":
        """``MCS.parse("16QAM-r1/2")`` (case-insensitive), inverse of :attr:`name`."""
        if not isinstance(name, str) or "-r" not in name.lower():
            raise ValueError(f"MCS name must look like '16QAM-r1/2', got {name!r}")
        mod, rate = name.lower().rsplit("-r", 1)
        return cls(mod, rate)

    @property
    def bits_per_symbol(self) -> int:
        """``log2(M)``."""
        return int(math.log2(self.order))

    @property
    def constellation_type(self) -> str:
        """Sionna constellation type: ``"pam"`` for BPSK, ``"qam"`` otherwise."""
        return "pam" if self.order == 2 else "qam"

    @property
    def modulation(self) -> str:
        return _MODULATIONS[self.order]

    @property
    def spectral_efficiency(self) -> float:
        """Nominal ``log2(M) * r`` bits per complex channel use (the TB's actual rate is
        ``tb_size / k``, see :class:`TransportBlockLayout`)."""
        return self.bits_per_symbol * float(self.rate)

    @property
    def name(self) -> str:
        return f"{self.modulation}-r{self.rate.numerator}/{self.rate.denominator}"

    def __str__(self) -> str:
        return self.name


MCS_GRID: tuple[MCS, ...] = tuple(
    sorted((MCS(m, r) for m in _MODULATIONS for r in CODE_RATES), key=lambda x: (x.spectral_efficiency, x.order))
)


def _coerce_mcs(mcs) -> MCS:
    if isinstance(mcs, MCS):
        return mcs
    if isinstance(mcs, str):
        return MCS.parse(mcs)
    raise TypeError(f"mcs must be an MCS or a name like '16QAM-r1/2', got {type(mcs).__name__}")


@dataclasses.dataclass(frozen=True)
class TransportBlockLayout:
    """How one image's transport block fills its ``n = k * log2(M)`` coded bits.

    ``tb_size`` is the payload budget (information bits given to the source codec); TB CRC,
    CB CRCs and LDPC filler bits are overhead inside the ``n`` coded bits.
    """

    k: int  # complex channel uses (= modulated symbols)
    mcs: str
    num_coded_bits: int  # n = k * log2(M)
    tb_size: int  # information bits per image (payload budget), a multiple of 8
    tb_crc_bits: int  # 16 (TB <= 3824 bits) or 24
    num_code_blocks: int
    cb_crc_bits: int  # per code block: 24 if segmented, else 0
    cb_size: int  # LDPC information bits per code block, incl. CRC bits
    filler_bits: int  # per code block (LDPC lifting K_b*Z - cb_size), not transmitted
    base_graph: str
    lifting_size: int
    codeword_lengths: tuple[int, ...]  # rate-matched bits per code block, sum = n
    effective_code_rate: float  # (tb_size + all CRC bits) / n

    @property
    def payload_bytes(self) -> int:
        return self.tb_size // 8

    @property
    def info_rate(self) -> float:
        """Payload bits per complex channel use, ``tb_size / k``."""
        return self.tb_size / self.k

    @property
    def shannon_limit_db(self) -> float:
        """Es/N0 (dB) at which the AWGN capacity equals :attr:`info_rate`, ``10 log10(2^R - 1)``.
        Below it a TB cannot be decoded reliably (its BLER is far above 1e-2)."""
        return 10 * math.log10(2 ** self.info_rate - 1)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"codeword_lengths": list(self.codeword_lengths)}


def _sionna_version() -> str:
    for dist in ("sionna-no-rt", "sionna", "sionna-phy"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _tb_sizes(ks: np.ndarray, mcs: MCS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """38.214 5.1.3.2 TB sizes for many candidate ``k`` at once (``calculate_tb_size``, vectorised).

    Args:
        ks: int array of channel uses, any shape.
        mcs: the MCS (``log2(M)`` and target rate ``r``; ``N_info = r * k * log2(M)``).

    Returns:
        ``(tb_size, num_code_blocks, n)``: int64 arrays of ``ks``'s shape, ``n = k * log2(M)``.
    """
    from sionna.phy.nr.utils import calculate_tb_size

    n = np.asarray(ks, dtype=np.int64) * mcs.bits_per_symbol
    shape = n.shape
    out = calculate_tb_size(modulation_order=torch.full(shape, mcs.bits_per_symbol, dtype=torch.int32),
                            target_coderate=torch.full(shape, float(mcs.rate), dtype=torch.float32),
                            num_coded_bits=torch.as_tensor(n, dtype=torch.int32), return_cw_length=False,
                            device="cpu")
    return out[0].numpy().astype(np.int64), out[2].numpy().astype(np.int64), n


def _tb_size(k: int, mcs: MCS) -> tuple[int, int]:
    """(tb_size, n) of one image's TB from ``sionna.phy.nr.utils.calculate_tb_size`` (38.214 5.1.3.2)."""
    tb, _, n = _tb_sizes(np.array([k]), mcs)
    return int(tb[0]), int(n[0])


@functools.lru_cache(maxsize=64)
def _tb_encoder(k: int, mcs: MCS, device: str):
    """The Sionna ``TBEncoder`` for one image, or ValueError if Sionna cannot build it."""
    from sionna.phy.nr import TBEncoder

    tb_size, n = _tb_size(k, mcs)
    what = f"k={k} channel uses at {mcs.name} ({n} coded bits, TB of {tb_size} info bits)"
    if tb_size + 16 >= n:
        raise ValueError(f"k too small: {what}: the smallest transport block (24 info bits + CRC) "
                         f"does not fit; use more channel uses or a lower code rate / higher order")
    try:
        with warnings.catch_warnings():
            # rates in (948/1024, 0.95] from TBS quantisation are allowed by Sionna (warned only)
            warnings.filterwarnings("ignore", message="Effective coderate")
            enc = TBEncoder(target_tb_size=tb_size, num_coded_bits=n, target_coderate=float(mcs.rate),
                            num_bits_per_symbol=mcs.bits_per_symbol, device=device)
    except ValueError as e:
        hint = ("k is too small for this MCS" if "r>0.95" in str(e) else
                "Sionna's LDPC base graph 1 needs code-block rates >= 1/3 (no repetition)"
                if "coderate>1/3" in str(e) else "unsupported by Sionna's 5G LDPC")
        raise ValueError(f"{what}: {hint} (Sionna: {e})") from None
    if enc.tb_size != tb_size or enc.n != n or int(enc.cw_lengths_sum) != n:
        raise RuntimeError(f"unexpected TB layout from Sionna for {what}")
    return enc


def transport_block_layout(k: int, mcs: MCS | str, *, device: str = "cpu") -> TransportBlockLayout:
    """The 38.212/38.214 layout of one image's TB of ``k * log2(M)`` coded bits (see class doc).

    TBEncoder is configured with ``num_coded_bits = k * log2(M)``,
    ``target_coderate = r``, ``num_bits_per_symbol = log2(M)`` and
    ``target_tb_size = tb_size`` from ``calculate_tb_size(log2(M), r, num_coded_bits=n)``
    (the 38.214 TBS for ``N_info = r * n``), so no zero padding happens inside Sionna.

    Raises:
        ValueError: bad ``k``/MCS, or ``k`` too small / a layout Sionna cannot encode.
    """
    k = _check_int(k, "k")
    mcs = _coerce_mcs(mcs)
    enc = _tb_encoder(k, mcs, device)
    ldpc = enc.ldpc_encoder
    n_crc = enc.tb_crc_encoder.crc_length + enc.num_cbs * (0 if enc.cb_crc_encoder is None else 24)
    return TransportBlockLayout(
        k=k,
        mcs=mcs.name,
        num_coded_bits=enc.n,
        tb_size=enc.tb_size,
        tb_crc_bits=int(enc.tb_crc_encoder.crc_length),
        num_code_blocks=int(enc.num_cbs),
        cb_crc_bits=0 if enc.cb_crc_encoder is None else 24,
        cb_size=int(ldpc.k),
        filler_bits=int(ldpc.k_filler),
        base_graph=str(ldpc._bg),
        lifting_size=int(ldpc.z),
        codeword_lengths=tuple(int(c) for c in enc.cw_lengths if int(c) > 0),
        effective_code_rate=(enc.tb_size + n_crc) / enc.n,
    )


def transport_block_info_bits(k: int, mcs: MCS | str) -> int:
    """Information (payload) bits of one TB of ``k * log2(M)`` coded bits: Sionna's
    ``TBEncoder.tb_size`` (CRC and filler bits excluded, they count against the budget)."""
    return transport_block_layout(k, mcs).tb_size


def feasible_mcs(k: int, mcs_grid: Sequence[MCS] = MCS_GRID) -> list[MCS]:
    """The MCSs of ``mcs_grid`` Sionna can encode in one TB of ``k`` channel uses."""
    out = []
    for mcs in mcs_grid:
        try:
            transport_block_layout(k, mcs)
        except ValueError:
            continue
        out.append(mcs)
    return out


# ----------------------------------------------------------------------------------------
# Large transport blocks: one code block as a single-code-block surrogate TB
# ----------------------------------------------------------------------------------------

#: Weight of the relative code-block size mismatch against the relative code-rate mismatch
#: when choosing a surrogate (a 1 % rate error counts as much as a 10 % size error: at a
#: fixed rate the waterfall of an ~8k-bit LDPC code moves by ~0.01 dB for a 1 % change of
#: length, while a 1 % rate change moves it by ~0.03 dB (QPSK) to ~0.1 dB (256-QAM)).
SURROGATE_SIZE_WEIGHT = 0.1
#: Candidate surrogate codeword lengths span ``E * (1 +- SURROGATE_WINDOW)``.
SURROGATE_WINDOW = 0.12
#: Cost handicap of a surrogate whose target rate differs from the MCS's (chosen only when it
#: lowers the rate error by more than this, e.g. 6.6e-3 -> 1e-4 for k = 8344 at QPSK-1/2).
SURROGATE_RATE_ADJUST_PENALTY = 1e-3
_SURROGATE_TRIES = 16  # best-ranked candidates built with Sionna before giving up


@dataclasses.dataclass(frozen=True)
class CodeBlockSurrogate:
    """Per-code-block layout of a (large) TB and the single-code-block TB standing in for one CB.

    ``layout`` is the TB of ``k`` channel uses (:class:`TransportBlockLayout`, from Sionna's
    ``TBEncoder``): ``C = num_code_blocks`` code blocks of ``K_cb = cb_size`` LDPC information
    bits each (TB bits + CRC24B, plus ``filler_bits`` up to ``22 * lifting_size`` for base
    graph 1), rate-matched to ``E_c = codeword_lengths[c]`` coded bits (38.212 5.4.2.1: two
    values at most, differing by ``log2(M)``).

    ``surrogate`` is the TB of ``surrogate_k`` channel uses at ``surrogate_mcs`` (the same
    modulation; the same target rate unless another one gives a much closer code rate, see
    :func:`code_block_surrogate`) that Sionna encodes as exactly one code block (no
    segmentation, no CB CRC; its TB CRC is CRC24A, or CRC16 for TBs <= 3824 bits) with the
    same base graph and lifting size, ``K_s = surrogate.cb_size`` as close to ``K_cb`` and
    ``K_s / E_s`` (``E_s = surrogate_k * log2(M)``) as close to ``K_cb / mean(E_c)`` as the
    38.214 TB sizes allow. For a TB of one code block the surrogate is the TB itself.

    The TB block error rate is then approximated by ``1 - (1 - BLER_s)^C``: code blocks see
    independent noise on AWGN since each occupies whole symbols, and a TB fails iff any of its
    CBs is decoded wrongly (Sionna's ``TBDecoder`` flags it by the TB CRC24A, missing ~2^-24
    of the errors). Differences from the real CBs: ``K_s - K_cb`` information bits (TB sizes
    of one CB are multiples of 64 to 256 and stop at 8192 + 24 bits, so up to -3 %), the
    resulting ``E_s - mean(E_c)``, a residual rate error (``rate_error``, ~1e-4 typically,
    below 8e-4 in all of 30 cases checked for C >= 5), CRC24A or CRC16 instead of CRC24B (same decoder, only the
    undetected-error probability differs), and one codeword length instead of ``E_c`` values
    differing by ``log2(M)`` bits.
    """

    layout: TransportBlockLayout
    surrogate: TransportBlockLayout

    @property
    def surrogate_mcs(self) -> MCS:
        """MCS of the surrogate TB: the TB's modulation, its target rate possibly adjusted."""
        return MCS.parse(self.surrogate.mcs)

    @property
    def num_code_blocks(self) -> int:
        """``C``, code blocks of the TB."""
        return self.layout.num_code_blocks

    @property
    def surrogate_k(self) -> int:
        """Channel uses of the single-code-block surrogate TB."""
        return self.surrogate.k

    @property
    def mean_codeword_length(self) -> float:
        """``mean(E_c) = n / C`` rate-matched bits per code block of the TB."""
        return self.layout.num_coded_bits / self.layout.num_code_blocks

    @property
    def cb_code_rate(self) -> float:
        """``K_cb / mean(E_c)``: LDPC rate of the TB's code blocks (CRC and TB bits, filler excluded)."""
        return self.layout.cb_size / self.mean_codeword_length

    @property
    def surrogate_code_rate(self) -> float:
        """``K_s / E_s`` of the surrogate's single code block."""
        return self.surrogate.cb_size / self.surrogate.num_coded_bits

    @property
    def rate_error(self) -> float:
        """Relative code-rate mismatch ``(K_s / E_s) / (K_cb / mean(E_c)) - 1``."""
        return self.surrogate_code_rate / self.cb_code_rate - 1

    @property
    def cb_size_error(self) -> int:
        """``K_s - K_cb`` information bits (CRC included)."""
        return self.surrogate.cb_size - self.layout.cb_size

    @property
    def codeword_length_error(self) -> float:
        """``E_s - mean(E_c)`` coded bits."""
        return self.surrogate.num_coded_bits - self.mean_codeword_length

    def as_dict(self) -> dict:
        return {"layout": self.layout.as_dict(), "surrogate": self.surrogate.as_dict(),
                "surrogate_mcs": self.surrogate.mcs,
                "rate_error": self.rate_error, "cb_size_error": self.cb_size_error,
                "codeword_length_error": self.codeword_length_error}


def code_block_surrogate(k: int, mcs: MCS | str, *, device: str = "cpu") -> CodeBlockSurrogate:
    """The code-block layout of one image's TB and its single-code-block surrogate TB.

    Candidates are (a) the ``k_s`` at the TB's MCS whose ``k_s * log2(M)`` coded bits lie
    within ``+-SURROGATE_WINDOW`` of ``mean(E_c)`` and (b) for each one-code-block TB size
    ``T`` they reach, the ``k_s`` closest to ``K_s / (K_cb / mean(E_c))`` with the target
    rate ``T / (k_s log2 M)`` (an exact fraction: the TB size ``T`` is kept, ``E_s`` set for
    the code rate; only this decouples ``E_s`` from the 38.214 TB-size quantisation, which
    leaves rate errors up to ~1 % in (a), 0.66 % for k = 8344 at QPSK-1/2). Those Sionna
    would encode as one code block are ranked by ``|rate_error| + SURROGATE_SIZE_WEIGHT *
    |K_s / K_cb - 1|``, plus ``SURROGATE_RATE_ADJUST_PENALTY`` for (b) (ties: the closer
    length), and the first whose Sionna layout has the TB's base graph and lifting size is
    taken. Deterministic; cached per ``(k, mcs, device)``.

    Args:
        k: complex channel uses per image (int >= 1).
        mcs: an :class:`MCS` or its name.
        device: device of the Sionna blocks built to check the layouts.

    Returns:
        A :class:`CodeBlockSurrogate` (the TB itself when it has one code block).

    Raises:
        ValueError: bad ``k``/MCS, a TB Sionna cannot encode, or no single-code-block TB with
            the same base graph and lifting size near the code blocks' size.
    """
    return _code_block_surrogate(_check_int(k, "k"), _coerce_mcs(mcs), str(device))


@functools.lru_cache(maxsize=128)
def _code_block_surrogate(k: int, mcs: MCS, device: str) -> CodeBlockSurrogate:
    layout = transport_block_layout(k, mcs, device=device)
    if layout.num_code_blocks == 1:
        return CodeBlockSurrogate(layout=layout, surrogate=layout)
    q = mcs.bits_per_symbol
    e_mean = layout.num_coded_bits / layout.num_code_blocks
    r_cb = layout.cb_size / e_mean

    def one_block(tb: np.ndarray, ncb: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K_s = TB bits + TB CRC, feasible as one code block that Sionna encodes)."""
        k_cb = tb + np.where(tb > 3824, 24, 16)
        return k_cb, (ncb == 1) & (tb + 16 < n) & (k_cb <= 0.95 * n)

    def cost(k_cb: np.ndarray, n: np.ndarray) -> np.ndarray:
        return np.abs(k_cb / n / r_cb - 1) + SURROGATE_SIZE_WEIGHT * np.abs(k_cb / layout.cb_size - 1)

    # (a) the TB's own MCS
    ks = np.arange(max(1, math.floor(e_mean * (1 - SURROGATE_WINDOW) / q)),
                   math.ceil(e_mean * (1 + SURROGATE_WINDOW) / q) + 1)
    tb, ncb, n = _tb_sizes(ks, mcs)
    k_cb, ok = one_block(tb, ncb, n)
    cands = [(float(c), abs(float(nn) - e_mean), int(kk), mcs) for c, nn, kk, f in zip(cost(k_cb, n), n, ks, ok) if f]
    # (b) each one-code-block TB size reached in (a), with the rate-matching length set for the rate
    for t in np.unique(tb[ok]):
        t = int(t)
        k_s = round((t + (24 if t > 3824 else 16)) / r_cb / q)
        rate = Fraction(t, k_s * q)
        if not MIN_CODE_RATE <= rate <= MAX_CODE_RATE or rate == mcs.rate:
            continue
        adj = MCS(mcs.order, rate)
        tb2, ncb2, n2 = _tb_sizes(np.array([k_s]), adj)
        k_cb2, ok2 = one_block(tb2, ncb2, n2)
        if ok2[0] and tb2[0] == t:  # 38.214 keeps T at this rate
            cands.append((float(cost(k_cb2, n2)[0]) + SURROGATE_RATE_ADJUST_PENALTY, abs(float(n2[0]) - e_mean), k_s,
                          adj))
    cands.sort(key=lambda c: c[:2])
    for _, _, k_s, m in cands[:_SURROGATE_TRIES]:
        try:
            sur = transport_block_layout(k_s, m, device=device)
        except ValueError:
            continue
        if (sur.num_code_blocks == 1 and sur.base_graph == layout.base_graph
                and sur.lifting_size == layout.lifting_size):
            return CodeBlockSurrogate(layout=layout, surrogate=sur)
    raise ValueError(f"no single-code-block surrogate for k={k} {mcs.name} ({layout.num_code_blocks} code blocks "
                     f"of {layout.cb_size} bits, {layout.base_graph}, Z={layout.lifting_size}, "
                     f"E ~ {e_mean:.0f}): no 38.214 TB of one code block with the same base graph and lifting "
                     f"size within +-{SURROGATE_WINDOW:.0%} of the codeword length")


# ----------------------------------------------------------------------------------------
# The bit-exact link
# ----------------------------------------------------------------------------------------


#: Largest per-edge message tensor of one LDPC decoder call (bytes). Larger batches are split
#: (decoding is per code block, so the results do not change): glibc serves allocations above
#: its mmap threshold (at most 32 MiB) with fresh pages on every call, and for 100 code blocks
#: of Z = 384 (48 MB per message tensor) the page faults cost 0.25 s of system time per code
#: block against 0.15-0.17 s of decoding (measured on this project's 2-core CPU machine).
DECODE_CHUNK_BYTES = 16 * 2**20


class LDPCLink:
    """One image = one 5G NR transport block over ``k`` complex channel uses.

    Args:
        k: complex channel uses per image.
        mcs: an :class:`MCS` or its name.
        num_bp_iter: LDPC belief-propagation iterations (``TBDecoder(num_bp_iter=...)``).
        demapping: ``"app"`` (exact LLRs) or ``"maxlog"``.
        device: torch device of the Sionna blocks ("cpu" or "cuda").

    ``transmit(bits, snr_db, ...)`` runs: TBEncoder (CRC, segmentation, LDPC, rate matching,
    interleaving, scrambling) -> Mapper -> project channel -> (ZF with known ``h``) ->
    Demapper(``no = N0`` or ``N0/|h|^2``) -> TBDecoder -> TB CRC.
    """

    def __init__(self, k: int, mcs: MCS | str, *, num_bp_iter: int = 20, demapping: str = "app",
                 device: str = "cpu"):
        from sionna.phy.mapping import Demapper, Mapper
        from sionna.phy.nr import TBDecoder

        self.k = _check_int(k, "k")
        self.mcs = _coerce_mcs(mcs)
        self.num_bp_iter = _check_int(num_bp_iter, "num_bp_iter")
        self.demapping = _check_demapping(demapping)
        self.device = str(device)
        self.layout = transport_block_layout(self.k, self.mcs, device=self.device)
        self.encoder = _tb_encoder(self.k, self.mcs, self.device)
        self.decoder = TBDecoder(self.encoder, num_bp_iter=self.num_bp_iter, device=self.device)
        # TBs per decoder call, so that its per-edge message tensors (float32, one per
        # Tanner-graph edge and code block) stay below DECODE_CHUNK_BYTES (see there).
        edges = int(self.encoder.ldpc_encoder.pcm.nnz) * self.layout.num_code_blocks
        self.decode_chunk = max(1, DECODE_CHUNK_BYTES // (4 * edges))
        m, ctype = self.mcs.bits_per_symbol, self.mcs.constellation_type
        self.mapper = Mapper(ctype, m, device=self.device)
        self.demapper = Demapper(demapping, ctype, m, device=self.device)

    @property
    def tb_size(self) -> int:
        """Payload bits per image."""
        return self.layout.tb_size

    def __repr__(self) -> str:
        return (f"LDPCLink(k={self.k}, mcs={self.mcs.name}, tb_size={self.tb_size}, "
                f"num_bp_iter={self.num_bp_iter}, demapping={self.demapping!r})")

    def random_payload(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """``(B, tb_size)`` float32 random bits."""
        return torch.randint(0, 2, (_check_int(batch, "batch"), self.tb_size), generator=generator).float()

    def modulate(self, bits: Tensor) -> Tensor:
        """``(B, tb_size)`` bits -> ``(B, k)`` complex64 unit-power symbols."""
        with torch.inference_mode():
            x = self.mapper(self.encoder(bits.to(self.device, torch.float32)))
        if x.shape[-1] != self.k:  # guaranteed by n = k log2 M
            raise RuntimeError(f"mapper produced {x.shape[-1]} symbols, expected k={self.k}")
        return x.to(torch.complex64)

    def transmit(
        self,
        bits: Tensor,
        snr_db: SnrDb,
        *,
        channel: str | torch.nn.Module = "awgn",
        h: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Send a batch of images, one TB each.

        Args:
            bits: ``(B, L)`` payload bits (0/1, any real or int dtype), ``L <= tb_size``;
                zero-padded to ``tb_size``.
            snr_db: Es/N0 per complex use in dB (average SNR under fading): a number or ``(B,)``.
            channel: ``"awgn"``, ``"rayleigh"`` (slow fading: one ``h`` per image, known
                at the receiver), or a link Module (:class:`~channels.OFDM`,
                :class:`~channels.MIMO`) built with ``equalization="zf"``: the QAM symbols go
                through it and the LLRs come from its equalised symbols with their
                post-equalisation noise variance (per symbol).
            h: optional ``(B,)`` complex realisations for ``"rayleigh"`` (else drawn).
            generator: source of ``h`` (first) and of the noise (CPU generator).

        Returns:
            ``(ok, bits_hat, h)``: ``ok`` bool ``(B,)`` (TB CRC passed), ``bits_hat`` float
            ``(B, L)`` decoded bits, ``h`` ``(B,)`` complex64 or None on AWGN.
        """
        module = _check_link_channel(channel)
        if not isinstance(bits, Tensor) or bits.ndim != 2:
            raise ValueError(f"bits must be a (B, L) tensor of 0/1, got "
                             f"{tuple(bits.shape) if isinstance(bits, Tensor) else type(bits).__name__}")
        b, length = bits.shape
        if length > self.tb_size:
            raise ValueError(f"payload of {length} bits exceeds the transport block size "
                             f"{self.tb_size} bits ({self.mcs.name}, k={self.k})")
        if bits.is_complex() or not ((bits == 0) | (bits == 1)).all():
            raise ValueError("bits must contain only 0 and 1")
        if b == 0:
            raise ValueError("empty batch")
        if h is not None and (module is not None or channel == "awgn"):
            raise ValueError("h is only used with channel='rayleigh'")
        snr, _ = _batch_snr_db(snr_db, b)
        u = torch.zeros(b, self.tb_size)
        u[:, :length] = bits.detach().cpu().float()
        x = self.modulate(u).cpu()
        noise_var = snr_db_to_noise_var(snr).to(torch.float32).reshape(b, 1)
        snr32 = snr.to(torch.float32)
        if module is not None:
            with torch.inference_mode():
                out = channel(x, snr32, generator=generator)
            y, no = out["y"], out["noise_var"]
        elif channel == "awgn":
            y = awgn(x, snr32, generator=generator)
            no = noise_var
        else:
            h = _slow_fading_h(b, generator) if h is None else _check_h(h, b)
            y, hb = rayleigh(x, snr32, h=h.reshape(b, 1), generator=generator)
            y = equalize(y, hb, noise_var, "zf")
            no = noise_var / hb.abs().square()
        with torch.inference_mode():
            llr = self.demapper(y.to(self.device), no.to(self.device))
            decoded = [self.decoder(part) for part in llr.split(self.decode_chunk)]  # per TB: chunking is exact
            u_hat, ok = torch.cat([d[0] for d in decoded]), torch.cat([d[1] for d in decoded])
        return ok.cpu().bool(), u_hat.cpu()[:, :length], h

    def send_bytes(
        self,
        payloads: Sequence[bytes],
        snr_db: SnrDb,
        *,
        channel: str | torch.nn.Module = "awgn",
        h: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, list[bytes], Tensor | None]:
        """Send the source codec's bytes, one image (TB) each.

        Each payload is zero-padded to the TB; its length is assumed known at the receiver
        (signalled out of band, not charged). Returns ``(ok, received, h)``: ``received[i]``
        has ``len(payloads[i])`` bytes (garbage where ``ok[i]`` is False).
        """
        if isinstance(payloads, (bytes, bytearray)) or not all(isinstance(p, (bytes, bytearray)) for p in payloads):
            raise TypeError("payloads must be a sequence of bytes objects, one per image")
        if len(payloads) == 0:
            raise ValueError("empty batch")
        too_long = [i for i, p in enumerate(payloads) if 8 * len(p) > self.tb_size]
        if too_long:
            raise ValueError(f"payload(s) {too_long[:5]} exceed the transport block of {self.tb_size // 8} "
                             f"bytes ({self.mcs.name}, k={self.k})")
        bits = torch.zeros(len(payloads), self.tb_size)
        for i, p in enumerate(payloads):
            if p:
                bits[i, : 8 * len(p)] = torch.from_numpy(np.unpackbits(np.frombuffer(bytes(p), np.uint8)).astype(np.float32))
        ok, u_hat, h = self.transmit(bits, snr_db, channel=channel, h=h, generator=generator)
        packed = np.packbits(u_hat.round().clamp(0, 1).to(torch.uint8).numpy(), axis=-1)
        return ok, [packed[i, : len(p)].tobytes() for i, p in enumerate(payloads)], h


@functools.lru_cache(maxsize=32)
def _link(k: int, mcs: MCS, num_bp_iter: int, demapping: str, device: str) -> LDPCLink:
    return LDPCLink(k, mcs, num_bp_iter=num_bp_iter, demapping=demapping, device=device)


def get_link(k: int, mcs: MCS | str, *, num_bp_iter: int = 20, demapping: str = "app",
             device: str = "cpu") -> LDPCLink:
    """A cached :class:`LDPCLink` (building Sionna's blocks takes a while)."""
    return _link(_check_int(k, "k"), _coerce_mcs(mcs), _check_int(num_bp_iter, "num_bp_iter"), demapping,
                 str(device))


# ----------------------------------------------------------------------------------------
# BLER tables (fast path)
# ----------------------------------------------------------------------------------------

TABLE_SCHEMA = "jscc-bler/1"


@dataclasses.dataclass
class BlerTable:
    """Monte-Carlo block (= image) error rate vs Es/N0 on AWGN for one (k, MCS, decoder).

    ``snr_db`` float64 ``(P,)`` ascending, in dB; ``bler`` float64 ``(P,)``; ``n_blocks``,
    ``n_errors`` int64 ``(P,)``. Exact tables: ``bler[i] = n_errors[i] / n_blocks[i]``
    (TBs). Code-block-scaled tables (``key["cb_scaled"]``, see :func:`bler_table`):
    ``bler[i] = 1 - (1 - n_errors[i] / n_blocks[i])^C`` with the counts of the surrogate's
    code blocks. Points above an error-free point are not simulated (``n_blocks == 0``,
    ``bler == 0``, assumed by monotonicity). ``key`` identifies the configuration (see
    :func:`bler_table`).

    A *lazy* table (``bler_table(..., lazy=True)``) starts with every point **pending**
    (``bler`` NaN, counts 0) and simulates a point the first time a lookup needs it
    (:meth:`resolve`); each point has its own seed, so a point has the same value whether it
    is simulated alone or while building the whole table.
    """

    key: dict
    snr_db: np.ndarray
    bler: np.ndarray
    n_blocks: np.ndarray
    n_errors: np.ndarray
    elapsed_s: float = 0.0
    #: ``fill(table, indices)`` simulates pending points (ascending indices); None: a complete table.
    fill: Callable[["BlerTable", np.ndarray], None] | None = dataclasses.field(default=None, repr=False,
                                                                                 compare=False)

    @property
    def mcs(self) -> MCS:
        return MCS.parse(self.key["mcs"])

    @property
    def tb_size(self) -> int:
        return int(self.key["tb_size"])

    @property
    def cb_scaled(self) -> bool:
        """True for a code-block-scaled table (BLER of a single-code-block surrogate, scaled to C blocks)."""
        return bool(self.key.get("cb_scaled", False))

    @property
    def pending(self) -> np.ndarray:
        """bool ``(P,)``: points not simulated yet (lazy tables)."""
        return np.isnan(self.bler)

    def resolve(self, index=None) -> "BlerTable":
        """Simulate the pending points among ``index`` (default: all of them, which makes the
        table complete: the same values as a table built whole). Returns ``self``."""
        todo = np.flatnonzero(self.pending)
        if index is not None:
            todo = np.intersect1d(todo, np.asarray(index, dtype=np.int64))
        if todo.size:
            if self.fill is None:
                raise RuntimeError(f"BLER table {self.key.get('mcs')} k={self.key.get('k')} has pending points "
                                   f"and no simulator")
            self.fill(self, todo)
        return self

    def monotone_bler(self) -> np.ndarray:
        """BLER forced non-increasing in SNR (running minimum over the simulated points; NaN
        where pending), used by :meth:`lookup`."""
        b = np.clip(self.bler, 0.0, 1.0)
        known = ~np.isnan(b)
        b[known] = np.minimum.accumulate(b[known]) if known.any() else b[known]
        return b

    def lookup(self, snr_lin):
        """BLER at linear SNR(s) (see :func:`bler_lookup`)."""
        return bler_lookup(self, snr_lin)

    def snr_db_at(self, target_bler: float) -> float:
        """Lowest SNR (dB) on the piecewise-linear monotone curve with BLER <= target
        (``inf`` if the grid never reaches it). Simulates the pending points first."""
        b = self.resolve().monotone_bler()
        idx = np.flatnonzero(b <= target_bler)
        if idx.size == 0:
            return math.inf
        i = int(idx[0])
        if i == 0:
            return float(self.snr_db[0])
        s0, s1, b0, b1 = self.snr_db[i - 1], self.snr_db[i], b[i - 1], b[i]
        return float(s1 if b0 == b1 else s0 + (b0 - target_bler) / (b0 - b1) * (s1 - s0))

    def to_json(self) -> dict:
        return {
            "schema": TABLE_SCHEMA,
            "key": self.key,
            "snr_db": [float(s) for s in self.snr_db],
            "bler": [None if math.isnan(b) else float(b) for b in self.bler],  # null: pending
            "n_blocks": [int(n) for n in self.n_blocks],
            "n_errors": [int(e) for e in self.n_errors],
            "elapsed_s": float(self.elapsed_s),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "BlerTable":
        if obj.get("schema") != TABLE_SCHEMA:
            raise ValueError(f"not a BLER table (schema {obj.get('schema')!r}, expected {TABLE_SCHEMA!r})")
        bler = np.array([math.nan if b is None else b for b in obj["bler"]], np.float64)
        return cls(key=obj["key"], snr_db=np.asarray(obj["snr_db"], np.float64), bler=bler,
                   n_blocks=np.asarray(obj["n_blocks"], np.int64), n_errors=np.asarray(obj["n_errors"], np.int64),
                   elapsed_s=float(obj.get("elapsed_s", 0.0)))


#: SNRs (dB) closer than this to a grid point are looked up at that point (``10 log10(10^(x/10))``
#: is not always ``x``).
_ON_GRID_DB = 1e-9


def _snap_to_grid(grid: np.ndarray, x_db: np.ndarray) -> np.ndarray:
    """``x_db`` with the values within :data:`_ON_GRID_DB` of a grid point replaced by that point."""
    i = np.clip(np.searchsorted(grid, x_db), 0, grid.size - 1)
    lo = np.maximum(i - 1, 0)
    nearest = np.where(np.abs(x_db - grid[lo]) < np.abs(x_db - grid[i]), grid[lo], grid[i])
    return np.where(np.abs(x_db - nearest) <= _ON_GRID_DB, nearest, x_db)


def _points_needed(grid: np.ndarray, x_db: np.ndarray) -> np.ndarray:
    """Indices of the grid points a piecewise-linear lookup at (snapped) ``x_db`` reads: none
    below the grid, the last point above it, the point itself on the grid, else the two around."""
    x = x_db[np.isfinite(x_db) & (x_db >= grid[0])]
    i = np.searchsorted(grid, x, side="right") - 1
    between = (grid[i] != x) & (i + 1 < grid.size)
    return np.unique(np.concatenate([i, i[between] + 1]))


def bler_lookup(table: BlerTable, snr_lin):
    """Block error rate at the (effective) linear SNR(s) ``snr_lin``.

    Piecewise-linear interpolation of the monotone (running-minimum) BLER in SNR dB,
    clamped to [0, 1]. Below the grid: 1 (``snr_lin <= 0`` too); above the grid: the last
    point's value (0 when the last point is error-free). Under slow fading pass
    ``|h|^2 * snr_lin`` per image. Pending points of a lazy table that the lookup reads
    are simulated first (:meth:`BlerTable.resolve`).

    Args:
        table: a :class:`BlerTable`.
        snr_lin: number, array or tensor of linear SNRs (>= 0, not NaN).

    Returns:
        Same kind as ``snr_lin`` (float, float64 ndarray, or float64 tensor on its device).
    """
    if not isinstance(table, BlerTable):
        raise TypeError(f"table must be a BlerTable, got {type(table).__name__}")
    is_tensor = isinstance(snr_lin, Tensor)
    x = np.asarray(snr_lin.detach().cpu().double() if is_tensor else snr_lin, dtype=np.float64)
    if np.isnan(x).any() or (x < 0).any():
        raise ValueError("snr_lin must be >= 0 and not NaN")
    with np.errstate(divide="ignore"):
        x_db = _snap_to_grid(table.snr_db, 10 * np.log10(x))
    if table.pending.any():
        table.resolve(_points_needed(table.snr_db, np.atleast_1d(x_db)))
    mono = table.monotone_bler()
    known = ~np.isnan(mono)
    if known.any():
        b = np.interp(x_db, table.snr_db[known], mono[known], left=1.0, right=float(mono[known][-1]))
    else:  # nothing read: every SNR is below the grid
        b = np.ones_like(x_db)
    b = np.where(np.isneginf(x_db), 1.0, np.clip(b, 0.0, 1.0))
    if is_tensor:
        return torch.as_tensor(b, dtype=torch.float64, device=snr_lin.device)
    return b if isinstance(snr_lin, np.ndarray) else float(b)


def bler_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the BLER tables: ``cache_dir`` if given, else ``$JSCC_CACHE_DIR/bler``,
    else ``~/.cache/jscc/bler``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("JSCC_CACHE_DIR")
    return Path(env) / "bler" if env else Path.home() / ".cache" / "jscc" / "bler"


def default_snr_grid(k: int, mcs: MCS | str, *, step_db: float = 0.25, below_db: float = 1.0,
                     above_db: float = 12.0) -> np.ndarray:
    """SNR grid (dB, multiples of ``step_db``) from ``below_db`` under the Shannon limit of
    the TB's info rate, ``10 log10(2^(tb_size/k) - 1)``, to ``above_db`` over it: a finite
    code's BLER is ~1 at the bottom and the waterfall lies inside.

    Args:
        k, mcs: the link.
        step_db: grid step (dB, finite, > 0).
        below_db, above_db: extent under / over the Shannon limit (dB, finite; ``below_db``
            may be 0 or negative to start at or above it, ``-below_db < above_db``).

    Returns:
        float64 ``(P,)`` ascending SNRs in dB.
    """
    for name, v in (("step_db", step_db), ("below_db", below_db), ("above_db", above_db)):
        _check_scalar_snr(v, name)
    if step_db <= 0 or above_db <= -below_db:
        raise ValueError(f"need step_db > 0 and -below_db < above_db, got step_db={step_db}, "
                         f"below_db={below_db}, above_db={above_db}")
    th = transport_block_layout(k, mcs).shannon_limit_db
    lo = math.floor((th - below_db) / step_db) * step_db
    hi = math.ceil((th + above_db) / step_db) * step_db
    return np.round(np.arange(lo, hi + step_db / 2, step_db), 6)


def _simulate_blocks(link: LDPCLink, snr_db: SnrDb, batch: int, generator: torch.Generator,
                     channel: str = "awgn", h: Tensor | None = None) -> Tensor:
    """Exact simulation of ``batch`` random TBs: ``ok`` bool ``(batch,)``."""
    bits = link.random_payload(batch, generator)
    ok, _, _ = link.transmit(bits, snr_db, channel=channel, h=h, generator=generator)
    return ok


def _simulate_bler_point(link: LDPCLink, snr_db: float, n_blocks: int, max_errors: int, batch_size: int,
                         generator: torch.Generator) -> tuple[int, int]:
    """(blocks simulated, block errors) at one AWGN SNR, stopping early at ``max_errors``."""
    blocks = errors = 0
    while blocks < n_blocks and errors < max_errors:
        b = min(batch_size, n_blocks - blocks)
        ok = _simulate_blocks(link, snr_db, b, generator)
        blocks += b
        errors += int((~ok).sum())
    return blocks, errors


def _point_seed(seed: int, snr_db: float) -> int:
    """Seed of the Monte-Carlo run of one table point: its own, so that a point has the same
    value whether it is simulated alone (lazy tables) or while building the whole table."""
    digest = hashlib.sha256(f"bler-point:{int(seed)}:{float(snr_db):.6f}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _fill_exact(table: BlerTable, index: np.ndarray, *, link_args: tuple, path: Path | None,
                verbose: bool) -> None:
    """Simulate the pending points ``index`` (ascending) of an exact table, saving it after each.
    A point above an error-free point is set to 0 without simulating (as when building whole).
    Points another process has saved to ``path`` meanwhile are taken from there (before each point
    and before each save), so processes that share a cache share the work."""
    import sionna.phy

    key = table.key
    link = get_link(*link_args[:2], num_bp_iter=link_args[2], demapping=link_args[3], device=link_args[4])
    todo = np.sort(index)
    for done, i in enumerate(todo, start=1):
        _adopt_saved_points(table, path)
        if not table.pending[i]:
            continue
        if (table.bler[:i] == 0).any():
            table.bler[i], table.n_blocks[i], table.n_errors[i] = 0.0, 0, 0
            continue
        snr = float(table.snr_db[i])
        seed = _point_seed(key["seed"], snr)
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # Sionna's seed setter reseeds torch's global RNG
            old_seed = sionna.phy.config.seed
            sionna.phy.config.seed = seed
            try:
                blocks, errors = _simulate_bler_point(link, snr, key["n_blocks"], key["max_errors"],
                                                      key["batch_size"], make_generator(seed))
            finally:
                sionna.phy.config.seed = old_seed
        seconds = time.perf_counter() - t0
        table.n_blocks[i], table.n_errors[i], table.bler[i] = blocks, errors, errors / blocks
        table.elapsed_s += seconds
        if verbose:
            print(f"BLER {key['mcs']} k={key['k']} at {snr:.2f} dB (point {done} of at most {len(todo)}): "
                  f"{errors}/{blocks} blocks in error ({seconds:.1f} s)", file=sys.stderr, flush=True)
        if path is not None:
            _adopt_saved_points(table, path)
            _atomic_write_json(table.to_json(), path)


def _adopt_saved_points(table: BlerTable, path: Path | None) -> None:
    """Copy into ``table`` the points it lacks that the cache file at ``path`` (same key) holds."""
    saved = None if path is None else _load_table(path, table.key)
    if saved is not None:
        new = table.pending & ~saved.pending
        for name in ("bler", "n_blocks", "n_errors"):
            getattr(table, name)[new] = getattr(saved, name)[new]


def _load_table(path: Path, key: dict) -> BlerTable | None:
    """The cached table at ``path`` if it exists, is readable and has ``key``; else None."""
    if not path.exists():
        return None
    try:
        table = BlerTable.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        warnings.warn(f"ignoring unreadable BLER cache file {path}: {e}", stacklevel=3)
        return None
    return table if table.key == key else None


def _atomic_write_json(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        umask = os.umask(0)  # mkstemp makes the file 0600: give it a normal file's permissions (as jscc.results)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _table_key(layout: TransportBlockLayout, mcs: MCS, grid: np.ndarray, *, n_blocks: int, max_errors: int,
               batch_size: int, num_bp_iter: int, demapping: str, seed: int) -> dict:
    """The identity of a BLER table (see :func:`bler_table`); JSON-serialisable."""
    return {
        "k": layout.k,
        "mcs": mcs.name,
        "modulation_order": mcs.order,
        "code_rate": f"{mcs.rate.numerator}/{mcs.rate.denominator}",
        "num_coded_bits": layout.num_coded_bits,
        "tb_size": layout.tb_size,
        "num_code_blocks": layout.num_code_blocks,
        "num_bp_iter": num_bp_iter,
        "demapping": demapping,
        "channel": "awgn",
        "sionna_version": _sionna_version(),
        "snr_db_grid": [round(float(s), 6) for s in grid],
        "n_blocks": n_blocks,
        "max_errors": max_errors,
        "batch_size": batch_size,
        "seed": int(seed),
        "seeding": "per-point",
    }


def _key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _warn_grid_edges(table: BlerTable, what: str) -> None:
    """Warn when the grid misses the top (BLER < 0.9 at its lowest SNR) or the floor of the waterfall."""
    b = table.monotone_bler()
    if b[0] < 0.9:
        warnings.warn(f"BLER table {what}: BLER {b[0]:.3f} at the lowest SNR {table.snr_db[0]} dB; "
                      f"lookups below the grid return 1", stacklevel=3)
    if b[-1] > 0:
        warnings.warn(f"BLER table {what}: BLER {b[-1]:.3f} > 0 at the highest SNR {table.snr_db[-1]} dB; "
                      f"lookups above the grid return that value", stacklevel=3)


#: Named Monte-Carlo budgets of :func:`bler_table` (keyword overrides of its defaults; the CLI's
#: ``--bler-budget``). ``fast``: 300 blocks, 20 errors, batches of 20, 0.1 dB grid starting at the
#: Shannon limit (~3x cheaper for large images, threshold within ~0.1 dB).
BLER_BUDGETS: dict[str, dict] = {
    "standard": {},
    "fast": {"n_blocks": 300, "max_errors": 20, "batch_size": 20, "grid_step_db": 0.1, "grid_below_db": 0.0},
}


def bler_table(
    k: int,
    mcs: MCS | str,
    snr_db_grid: Sequence[float] | np.ndarray | None = None,
    *,
    n_blocks: int = 1000,
    max_errors: int = 100,
    batch_size: int = 100,
    num_bp_iter: int = 20,
    demapping: str = "app",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    device: str = "cpu",
    verbose: bool = False,
    max_blocks_exact: int = 4,
    grid_step_db: float = 0.25,
    grid_below_db: float = 1.0,
    lazy: bool = False,
) -> BlerTable:
    """Monte-Carlo BLER of the bit-exact link on AWGN, cached on disk as JSON.

    **Exact tables** (TBs of at most ``max_blocks_exact`` code blocks): at each SNR
    (ascending) random TBs are simulated in batches of ``batch_size`` until ``n_blocks``
    blocks or ``max_errors`` errors; after the first error-free point the higher SNRs are set
    to 0 without simulating. The resolution is therefore about ``1 / n_blocks`` (default
    1e-3, enough for the 1e-2 design target). Each point draws from its own generator, seeded
    from ``seed`` and its SNR.

    **Lazy tables** (``lazy=True``): no point is simulated until a lookup reads it
    (:func:`bler_lookup` needs the one or two grid points around the SNR asked for, and none
    below the grid), then the table is saved with the points simulated so far (``null`` BLER
    for the pending ones). A decision at one SNR costs one or two points instead of a
    waterfall, and gives the value of the whole table wherever that table is monotone (it
    takes the running minimum over the points simulated).

    The cache file is ``<cache>/bler_k{k}_{MCS}_it{num_bp_iter}_{hash}.json`` where the hash
    covers the key: k, coded bits, tb size, number of code blocks, M, code rate, decoder
    iterations, demapping, Sionna version, the SNR grid, ``n_blocks``, ``max_errors``,
    ``batch_size``, ``seed`` and ``seeding`` (``"per-point"``). A file whose key matches is
    loaded instead of simulating. Files of tables built before per-point seeding (one
    generator for the whole table; their key has no ``seeding``) are still read.

    **Code-block-scaled tables** (TBs of ``C > max_blocks_exact`` code blocks, e.g. a Kodak
    image at k/n = 1/16: k = 73,728, 9 to 59 code blocks): the exact table of the TB's
    single-code-block surrogate (:func:`code_block_surrogate`: ``surrogate_k`` channel uses,
    the same modulation, one code block of about the same size, base graph, lifting size and
    code rate) is built (or loaded) on the same SNR grid with the same budget, *counted in code
    blocks*, and ``BLER_TB = 1 - (1 - BLER_cb)^C`` at each grid point. The returned table's
    key is the TB's key plus ``"cb_scaled": True``, ``"surrogate_k"``, ``"surrogate_mcs"``,
    ``"surrogate_tb_size"``, ``"surrogate_num_coded_bits"``, ``"surrogate_cb_size"`` and
    ``"surrogate_table"`` (the hash of the surrogate table's key); its ``n_blocks`` /
    ``n_errors`` are the surrogate's code-block counts. It is derived on every call from the
    cached surrogate file (no file of its own). The TB-BLER resolution is ``~C / n_blocks``
    (the smallest non-zero point is ``1 - (1 - 1/n_blocks)^C``, 5.7 % for C = 59 and
    ``n_blocks=1000``), so the 1e-2 point is found by interpolating towards the first
    error-free SNR. Exact tables keep their key (no ``cb_scaled`` field), so existing cache
    files stay valid.

    Args:
        k, mcs: the link.
        snr_db_grid: ascending SNRs in dB; default :func:`default_snr_grid` of the TB with
            ``step_db=grid_step_db``, ``below_db=grid_below_db`` (these two are only used then;
            being per-(k, MCS), the default grid can be tuned through ``table_kwargs``).
        n_blocks, max_errors, batch_size: Monte-Carlo budget per SNR point (TBs, or code blocks
            of the surrogate for scaled tables).
        num_bp_iter, demapping: receiver.
        seed: seeds the torch generator (payloads, noise) and ``sionna.phy.config.seed``.
        cache_dir: cache folder (default: :func:`bler_cache_dir`).
        use_cache: False to neither read nor write the cache.
        device: device of the Sionna blocks.
        verbose: print one line per SNR point.
        max_blocks_exact: TBs with more code blocks than this (int >= 1) get a
            code-block-scaled table; pass a large number to always simulate whole TBs.
        grid_step_db, grid_below_db: see ``snr_db_grid``.
        lazy: simulate points only when a lookup needs them (see above).

    Cost (one CPU core, k = 73,728, default budget and grid): 3000 to 3700 surrogate code
    blocks per table, of which 800 to 1200 on the BLER ~1 points below the waterfall and
    2000 on the last two points; ~0.1 to 0.17 s per code block, so 5 to 8 minutes per
    table (QPSK-1/2: 495 s, 16QAM-2/3: 318 s, 256QAM-5/6: 362 s). ``BLER_BUDGETS["fast"]``
    is cheaper, with a finer grid (0.1 dB points from the Shannon limit, 20 code blocks per
    BLER ~1 point; 104 to 165 s for those three MCSs); its TB-BLER resolution is
    ``~C / 300``, the 1e-2 point is interpolated towards the first error-free point 0.1 dB away.

    Returns:
        A :class:`BlerTable` whose ``key["k"]`` and ``key["tb_size"]`` are the TB's.
    """
    k = _check_int(k, "k")
    mcs = _coerce_mcs(mcs)
    n_blocks = _check_int(n_blocks, "n_blocks")
    max_errors = _check_int(max_errors, "max_errors")
    batch_size = _check_int(batch_size, "batch_size")
    num_bp_iter = _check_int(num_bp_iter, "num_bp_iter")
    max_blocks_exact = _check_int(max_blocks_exact, "max_blocks_exact")
    _check_demapping(demapping)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32 - 1], got {seed!r}")
    layout = transport_block_layout(k, mcs, device=device)
    grid = (default_snr_grid(k, mcs, step_db=grid_step_db, below_db=grid_below_db) if snr_db_grid is None
            else np.asarray(snr_db_grid, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise ValueError("snr_db_grid must be a non-empty 1-D sequence of finite SNRs (dB)")
    if grid.size > 1 and not (np.diff(grid) > 0).all():
        raise ValueError("snr_db_grid must be strictly ascending")
    budget = dict(n_blocks=n_blocks, max_errors=max_errors, batch_size=batch_size, num_bp_iter=num_bp_iter,
                  demapping=demapping, seed=int(seed))
    key = _table_key(layout, mcs, grid, **budget)
    if layout.num_code_blocks > max_blocks_exact:
        return _cb_scaled_table(key, mcs, grid, budget, lazy=lazy, cache_dir=cache_dir, use_cache=use_cache,
                                device=device, verbose=verbose)
    folder, slug = bler_cache_dir(cache_dir), mcs.name.replace("/", "_")
    path = folder / f"bler_k{k}_{slug}_it{num_bp_iter}_{_key_digest(key)}.json"
    table = None
    if use_cache:
        legacy = {name: v for name, v in key.items() if name != "seeding"}
        table = _load_table(path, key) or _load_table(
            folder / f"bler_k{k}_{slug}_it{num_bp_iter}_{_key_digest(legacy)}.json", legacy)
    if table is None:
        table = BlerTable(key=key, snr_db=grid, bler=np.full(grid.size, np.nan),
                          n_blocks=np.zeros(grid.size, np.int64), n_errors=np.zeros(grid.size, np.int64))
    if table.pending.any():
        table.fill = functools.partial(_fill_exact, link_args=(k, mcs, num_bp_iter, demapping, device),
                                       path=path if use_cache else None, verbose=verbose)
        if not lazy:
            _warn_grid_edges(table.resolve(), f"{mcs.name} k={k}")
    return table


def _cb_scaled_table(key: dict, mcs: MCS, grid: np.ndarray, budget: dict, *, lazy: bool, **options) -> BlerTable:
    """TB BLER ``1 - (1 - BLER_cb)^C`` from the exact table of the single-code-block surrogate
    (lazy like it: resolving a point of the TB's table resolves the surrogate's)."""
    sur = code_block_surrogate(key["k"], mcs, device=options["device"])
    cb = bler_table(sur.surrogate_k, sur.surrogate_mcs, grid, max_blocks_exact=1, lazy=True, **budget, **options)
    key = key | {
        "cb_scaled": True,
        "surrogate_k": sur.surrogate_k,
        "surrogate_mcs": sur.surrogate.mcs,
        "surrogate_tb_size": sur.surrogate.tb_size,
        "surrogate_num_coded_bits": sur.surrogate.num_coded_bits,
        "surrogate_cb_size": sur.surrogate.cb_size,
        "surrogate_table": _key_digest(cb.key),
    }
    table = BlerTable(key=key, snr_db=cb.snr_db.copy(), bler=cb.bler.copy(), n_blocks=cb.n_blocks,
                      n_errors=cb.n_errors, fill=functools.partial(_fill_scaled, surrogate=cb,
                                                                   num_code_blocks=sur.num_code_blocks))
    _fill_scaled(table, np.zeros(0, np.int64), surrogate=cb, num_code_blocks=sur.num_code_blocks)
    if not lazy and table.pending.any():
        _warn_grid_edges(table.resolve(), f"{mcs.name} k={key['k']} ({sur.num_code_blocks} code blocks, "
                                          f"scaled from k={sur.surrogate_k})")
    return table


def _fill_scaled(table: BlerTable, index: np.ndarray, *, surrogate: BlerTable, num_code_blocks: int) -> None:
    """Resolve the surrogate's points ``index``, then copy its counts and scaled BLERs (NaN: pending)."""
    surrogate.resolve(index)
    table.n_blocks, table.n_errors = surrogate.n_blocks.copy(), surrogate.n_errors.copy()
    table.bler = 1.0 - (1.0 - np.clip(surrogate.bler, 0.0, 1.0)) ** num_code_blocks
    table.elapsed_s = surrogate.elapsed_s


# ----------------------------------------------------------------------------------------
# Success draws, MCS choice
# ----------------------------------------------------------------------------------------


def simulate_success(
    k: int,
    mcs: MCS | str,
    snr_db: SnrDb,
    *,
    channel: str = "awgn",
    h: Tensor | None = None,
    batch_size: int | None = None,
    mode: str = "cached",
    table: BlerTable | None = None,
    generator: torch.Generator | None = None,
    num_bp_iter: int = 20,
    demapping: str = "app",
    chunk: int = 256,
    **table_kwargs,
) -> tuple[Tensor, Tensor | None]:
    """Per-image decoding success of the LDPC link (random payloads).

    Args:
        k, mcs: the link.
        snr_db: Es/N0 in dB (average under fading): a number or a ``(B,)`` tensor/array.
        channel: ``"awgn"`` or ``"rayleigh"`` (slow, ``h`` known at the receiver).
        h: optional ``(B,)`` complex realisations for ``"rayleigh"``; drawn when None.
        batch_size: B when neither ``h`` nor a ``(B,)`` ``snr_db`` gives it.
        mode: ``"cached"``: ``ok ~ Bernoulli(1 - BLER(snr_eff))`` with ``snr_eff = snr_lin``
            (AWGN) or ``|h|^2 snr_lin`` (fading), BLER from ``table`` or
            ``bler_table(k, mcs, num_bp_iter=..., demapping=..., **table_kwargs)`` (lazy unless
            ``lazy=False``; a code-block-scaled table for TBs of more than ``max_blocks_exact``
            code blocks, a ``table_kwargs`` option, default 4); ``"exact"``: the bit-level chain (whole
            TBs, any number of code blocks), ``chunk`` images per decoder call.
        generator: source of ``h`` (drawn first), then of the uniforms / payloads / noise.

    Returns:
        ``(ok, h)``: bool ``(B,)``; ``h`` complex64 ``(B,)`` under fading, else None.
    """
    _check_channel(channel)
    if mode not in ("cached", "exact"):
        raise ValueError(f"mode must be 'cached' or 'exact', got {mode!r}")
    mcs = _coerce_mcs(mcs)
    if channel == "awgn" and h is not None:
        raise ValueError("h is only used with channel='rayleigh'")
    batch = None if h is None else _check_h(h, None).shape[0]
    if batch is not None and batch_size is not None and batch != batch_size:
        raise ValueError(f"batch_size={batch_size} disagrees with h of {batch} images")
    snr, batch = _batch_snr_db(snr_db, batch if batch is not None else batch_size)
    if channel == "rayleigh":
        h = _slow_fading_h(batch, generator) if h is None else _check_h(h, batch)
    if mode == "cached":
        if table is None:
            table = bler_table(k, mcs, num_bp_iter=num_bp_iter, demapping=demapping,
                               **({"lazy": True} | table_kwargs))
        elif table.key["k"] != k or table.key["mcs"] != mcs.name:
            raise ValueError(f"table is for k={table.key['k']} {table.key['mcs']}, not k={k} {mcs.name}")
        snr_eff = snr_db_to_lin(snr)
        if h is not None:
            snr_eff = snr_eff * h.to(torch.complex128).abs().square()
        p_err = bler_lookup(table, snr_eff)
        return torch.rand(batch, generator=generator, dtype=torch.float64) >= p_err, h
    link = get_link(k, mcs, num_bp_iter=num_bp_iter, demapping=demapping)
    chunk = _check_int(chunk, "chunk")
    oks = []
    for s in range(0, batch, chunk):
        e = min(batch, s + chunk)
        oks.append(_simulate_blocks(link, snr[s:e], e - s, generator, channel, None if h is None else h[s:e]))
    return torch.cat(oks), h


def _tables_for(k: int, grid: Sequence[MCS], tables: Mapping | None, table_kwargs: dict) -> dict[MCS, BlerTable]:
    out = {}
    for mcs in feasible_mcs(k, grid):
        if tables is not None and (mcs in tables or mcs.name in tables):
            out[mcs] = tables[mcs] if mcs in tables else tables[mcs.name]
        elif tables is None:
            out[mcs] = bler_table(k, mcs, **table_kwargs)
    if not out:
        raise ValueError(f"no MCS of the grid has a BLER table / is feasible for k={k}")
    return out


def design_mcs(
    k: int,
    design_snr_db: float,
    *,
    target_bler: float = 1e-2,
    mcs_grid: Sequence[MCS] = MCS_GRID,
    tables: Mapping | None = None,
    **table_kwargs,
) -> MCS | None:
    """The MCS with the most payload bits whose AWGN BLER at ``design_snr_db`` is <= target.

    "Highest spectral efficiency" is measured by the actual payload ``tb_size`` (=
    ``k *`` actual spectral efficiency); ties (e.g. 16QAM-r3/4 vs 64QAM-r1/2) go to the
    lower BLER. Evaluated at each test SNR instead of a design SNR, this gives the oracle
    envelope (best MCS per SNR). Returns None when no MCS qualifies (always fallback).

    The MCSs are tried from the most payload down and the search stops below the payload of
    the first that qualifies; an MCS whose payload needs more than the capacity at the design
    SNR (:attr:`TransportBlockLayout.shannon_limit_db` above it: BLER far above any target)
    is skipped without a table. So only a few tables are read, at one or two points each when
    they are lazy, and the answer is the one of a search through every table.

    Args:
        tables: optional mapping MCS (or name) -> :class:`BlerTable`; MCSs missing from
            it are skipped. When None, :func:`bler_table` (cached, lazy unless
            ``table_kwargs`` says ``lazy=False``) is called per MCS tried with ``table_kwargs``.
    """
    design = _check_scalar_snr(design_snr_db, "design_snr_db")
    if not 0 < target_bler < 1:
        raise ValueError(f"target_bler must be in (0, 1), got {target_bler}")
    layouts = sorted(((transport_block_layout(k, m), m) for m in feasible_mcs(k, mcs_grid)),
                     key=lambda lm: -lm[0].tb_size)
    if not layouts or (tables is not None and not any(m in tables or m.name in tables for _, m in layouts)):
        raise ValueError(f"no MCS of the grid has a BLER table / is feasible for k={k}")
    best = None
    for layout, mcs in layouts:
        if best is not None and layout.tb_size < best[0][0]:
            break
        if design < layout.shannon_limit_db:
            continue
        if tables is None:
            table = bler_table(k, mcs, **({"lazy": True} | table_kwargs))
        elif mcs in tables or mcs.name in tables:
            table = tables[mcs] if mcs in tables else tables[mcs.name]
        else:
            continue
        b = bler_lookup(table, snr_db_to_lin(design))
        if b <= target_bler and (best is None or (table.tb_size, -b) > best[0]):
            best = ((table.tb_size, -b), mcs)
    return None if best is None else best[1]


def rayleigh_success_probability(table: BlerTable, snr_db: float, *, n_points: int = 4096) -> float:
    """``E_h[1 - BLER(|h|^2 snr_lin)]`` for ``h ~ CN(0, 1)`` (``|h|^2 ~ Exp(1)``).

    Deterministic midpoint rule in probability: ``|h|^2_i = -log(1 - (i + 1/2) / n_points)``.
    """
    snr_lin = snr_db_to_lin(_check_scalar_snr(snr_db))
    g = -np.log1p(-(np.arange(_check_int(n_points, "n_points")) + 0.5) / n_points)
    return float(1 - np.mean(bler_lookup(table, g * snr_lin)))


@dataclasses.dataclass(frozen=True)
class MCSChoice:
    """Result of :func:`rayleigh_mcs_choice`."""

    mcs: MCS
    expected_quality: float
    success_probability: float


def rayleigh_mcs_choice(
    k: int,
    snr_db: float,
    quality: Mapping | Callable[[MCS], float],
    quality_fallback: float,
    *,
    mcs_grid: Sequence[MCS] = MCS_GRID,
    tables: Mapping | None = None,
    **table_kwargs,
) -> MCSChoice:
    """MCS maximising the expected quality under slow Rayleigh fading at average ``snr_db``.

    ``E[q] = P_s * quality(mcs) + (1 - P_s) * quality_fallback`` with
    ``P_s = E_h[1 - BLER(|h|^2 snr_lin)]`` (:func:`rayleigh_success_probability`).

    Args:
        quality: mapping MCS (or name) -> quality on success, or a callable ``MCS -> q``
            (e.g. the PSNR of the best codec setting fitting ``transport_block_info_bits``).
        tables, table_kwargs: as in :func:`design_mcs`.
    """
    snr_db = _check_scalar_snr(snr_db)
    cands = _tables_for(k, mcs_grid, tables, table_kwargs)
    mcss = list(cands)

    def q(m):
        if callable(quality):
            return float(quality(m))
        return float(quality[m] if m in quality else quality[m.name])

    p = [rayleigh_success_probability(cands[m], snr_db) for m in mcss]
    i, expected = expected_quality_choice(p, [q(m) for m in mcss], quality_fallback)
    return MCSChoice(mcs=mcss[i], expected_quality=float(expected[i]), success_probability=float(p[i]))


# ----------------------------------------------------------------------------------------
# Command line: build / print BLER tables
# ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m channels.links",
                                 description="Build (or load from the cache) BLER tables and print their waterfall.")
    ap.add_argument("--k", type=int, nargs="+", default=[256], help="channel uses per image")
    ap.add_argument("--mcs", nargs="*", default=None, help="MCS names (default: the whole grid), e.g. QPSK-r1/2")
    ap.add_argument("--n-blocks", type=int, default=1000)
    ap.add_argument("--max-errors", type=int, default=100)
    ap.add_argument("--num-bp-iter", type=int, default=20)
    ap.add_argument("--step-db", type=float, default=0.25)
    ap.add_argument("--below-db", type=float, default=1.0, help="default grid: start this far under the Shannon limit")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--snr-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="SNR grid LO:step:HI in dB instead of the default grid")
    ap.add_argument("--max-blocks-exact", type=int, default=4,
                    help="TBs with more code blocks get a code-block-scaled table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    grid = MCS_GRID if not a.mcs else [MCS.parse(m) for m in a.mcs]
    print(f"{'k':>5} {'MCS':<13} {'tb_size':>7} {'bits/use':>8} {'Shannon dB':>10} "
          f"{'BLER=1e-1 dB':>12} {'BLER=1e-2 dB':>12} {'build s':>8}")
    for k in a.k:
        for mcs in grid:
            try:
                lay = transport_block_layout(k, mcs)
            except ValueError as e:
                print(f"{k:>5} {mcs.name:<13} infeasible: {e}")
                continue
            grid = (default_snr_grid(k, mcs, step_db=a.step_db, below_db=a.below_db) if a.snr_range is None else
                    np.round(np.arange(a.snr_range[0], a.snr_range[1] + a.step_db / 2, a.step_db), 6))
            t = bler_table(k, mcs, grid, n_blocks=a.n_blocks, max_errors=a.max_errors, batch_size=a.batch_size,
                           num_bp_iter=a.num_bp_iter,
                           seed=a.seed, cache_dir=a.cache_dir, verbose=a.verbose,
                           max_blocks_exact=a.max_blocks_exact)
            print(f"{k:>5} {mcs.name:<13} {lay.tb_size:>7} {lay.info_rate:>8.3f} {lay.shannon_limit_db:>10.2f} "
                  f"{t.snr_db_at(1e-1):>12.2f} {t.snr_db_at(1e-2):>12.2f} {t.elapsed_s:>8.1f}"
                  + (f"  CB-scaled: {lay.num_code_blocks} x k={t.key['surrogate_k']}" if t.cb_scaled else ""),
                  flush=True)
            if a.verbose:
                print("   SNR dB: " + " ".join(f"{x:7.2f}" for x in t.snr_db[t.n_blocks > 0]))
                print("   BLER  : " + " ".join(f"{x:7.4f}" for x in t.bler[t.n_blocks > 0]), flush=True)


if __name__ == "__main__":
    main()
