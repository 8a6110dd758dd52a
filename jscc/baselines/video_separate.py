"""The separate video baseline: H.264 / H.265 clips over a digital link (capacity or 5G LDPC + QAM).

::

    clip uint8 (T, 3, H, W) ─► rate control to the operating point's budget ─► packets (one per frame)
        └─► link: one codeword per clip (capacity) | one TB per GOP (LDPC) ─► gop_ok (G,)
                └─► video_codecs.reconstruct(result, gop_ok) ─► delivered clip (lost GOPs frozen / mean frame)

The video counterpart of :mod:`jscc.baselines.separate` (same operating points, policies and
results shape). A clip of ``T`` frames of ``H x W`` has ``n = 3 H W T`` source samples and
``k = (k/n) n`` complex channel uses (:func:`~jscc.baselines.video_codecs.video_channel_uses`:
no rounding, ``k`` must come out an integer or the ratio is refused). Frames ``0, gop, 2 gop,
...`` are IDR frames; GOP ``g`` holds frames ``[g gop, min((g + 1) gop, T))`` (closed GOPs, no
B-frames, see :mod:`jscc.baselines.video_codecs`).

Operating points and budgets (README, `jscc baseline`):

- **capacity link**: one capacity-achieving codeword per clip carrying
  ``floor(k log2(1 + snr_design))`` bits; the whole clip is rate-controlled to that budget
  (one quantiser for the clip, bits shared freely between its GOPs). On AWGN and under slow
  fading with one ``h`` per clip all GOPs share one fate, so splitting the codeword per GOP
  would only lose that freedom.
- **LDPC link**: one transport block per GOP. GOP ``g`` of ``T_g`` frames gets
  ``k_g = floor(k T_g / T)`` channel uses, the last GOP the rest (:func:`gop_channel_uses`: the
  ``k_g`` sum to ``k``, are ``(k/n) 3 H W T_g`` whenever that is an integer, and are equal for
  GOPs of equal length; the DeepWiVe clip, 17 frames at k/n = 2/51, k = 199,680: four GOPs of
  46,983 and a one-frame GOP of 11,748) and carries the ``tb_size`` information bits of one TB of ``k_g log2(M)`` coded bits; each
  GOP is rate-controlled to its own TB. Why per GOP: a closed GOP is exactly the unit the
  receiver can decode on its own, so a TB CRC failure maps one to one onto
  ``reconstruct(gop_ok=...)`` (a lost GOP freezes the last decoded frame, later GOPs still
  decode), and TBs stay at realistic sizes (a whole 416x240x9 clip at k/n = 1/12 would be a
  single TB of 224,640 symbols). The clip's operating-point ``bits`` is the sum of its TBs.

Source coding depends only on (clip, budget), so each clip is coded once per budget and
reused for every test SNR and channel draw. Delivery per test SNR and draw:

- capacity, AWGN: success iff the SNR >= the design SNR (all GOPs);
- capacity, slow Rayleigh: one ``h`` per clip, success iff ``log2(1 + |h|^2 snr) >= bits / k``;
- LDPC: each GOP's TB passes with probability ``1 - BLER(snr_eff)`` (cached BLER tables,
  :func:`channels.links.simulate_success`), ``snr_eff = snr`` on AWGN, ``|h|^2 snr`` under slow
  fading with one ``h`` per clip shared by its TBs (independent Bernoulli draws given ``h``).

A GOP whose frames do not fit their budget even at QP 51 is never delivered. Lost GOPs follow
:func:`~jscc.baselines.video_codecs.reconstruct`: each undecodable frame repeats the last
correctly decoded frame, or is the mean frame (``clip_mean``: the clip's per-channel mean,
24 bits assumed delivered; ``dataset_mean``: the test set's, 0 bits) before any frame decoded.

Policies (``design``) as for images: a design SNR in dB (capacity: ``C(design)``; LDPC: the MCS
with the most payload whose every TB has BLER <= 1e-2 there), an MCS name (LDPC), ``"oracle"``
(per test SNR the candidate point of highest expected PSNR over the losses: the envelope, the
rate chosen over the outage under fading; on AWGN LDPC the search runs from the most payload down
and stops below the first MCS that delivers every GOP, :meth:`VideoSeparateBaseline.ldpc_oracle_candidates`)
or ``"match"`` (design SNR = test SNR). On AWGN a TB above its Shannon limit has BLER 1 without
a table (:meth:`VideoSeparateBaseline.gop_bler`), so only the tables of MCSs that can succeed
are simulated.

Metrics (as DeepWiVe sweeps, :mod:`jscc.evaluate`): PSNR per (clip, frame, draw) with peak 1
on ``[0, 1]`` frames, averaged over all three, MS-SSIM (SSIM below 161 px) and, with
``metrics=("lpips",)``, LPIPS (AlexNet); ``metrics_per_frame`` per frame index. Frame
MSEs (and the other metrics) come from per-clip tables (:class:`CodedClip`), identical to what
:func:`~jscc.baselines.video_codecs.reconstruct` delivers (the tests check every loss pattern).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

import channels.links as L
from jscc.baselines.codecs import ACCOUNTING_MODES, CodecUnavailableError, _map, _worker_pool
from jscc.baselines.separate import (CAPACITY_DESIGN_GRID, OperatingPoint, _psnr, check_link, delivery_counts,
                                     design_label, oracle_candidates, oracle_pick, separate_results)
from jscc.baselines.video_codecs import (VIDEO_CODECS, VIDEO_FALLBACK_MODES, VideoCodec, VideoEncodeResult,
                                         encode_clip_to_budget, fallback_clip, reconstruct, video_channel_uses)
from jscc.metrics import (MetricAccumulator, load_lpips, lpips_distance, metrics_for_sizes, ms_ssim, ms_ssim_supported,
                          ssim)
from jscc.video import VideoSet

__all__ = ["CodedClip", "VideoSeparateBaseline", "video_baseline_results", "gop_layout", "gop_channel_uses",
           "DESIGN_BLER"]

DESIGN_BLER = 1e-2  # LDPC design rule: every TB's BLER at the design SNR
RAYLEIGH_POINTS = 512  # quadrature points over |h|^2 for the LDPC oracle under slow fading


def gop_layout(frames: int, gop: int | None) -> list[tuple[int, int]]:
    """``[(first, stop)]`` frame ranges of the GOPs of a ``frames``-frame clip (IDR every ``gop`` frames)."""
    gop = frames if gop is None else gop
    return [(s, min(s + gop, frames)) for s in range(0, frames, gop)]


def gop_channel_uses(k: int, layout: Sequence[tuple[int, int]]) -> list[int]:
    """Channel uses of each GOP's TB: ``k_g = floor(k T_g / T)`` for every GOP but the last, which
    gets the rest (they sum to ``k``). GOPs of equal length get equal ``k_g``, so one BLER table
    serves them all."""
    t = layout[-1][1]
    head = [k * (stop - first) // t for first, stop in layout[:-1]]
    return head + [k - sum(head)]


@dataclass(frozen=True, eq=False)
class CodedClip:
    """One clip coded for one operating point (reused for every SNR and draw).

    Fields:
        result: the clip's packets and reconstruction (GOPs concatenated for the LDPC link; a
            GOP that does not fit has empty packets there and is never delivered), or None when
            nothing fits.
        block_results: the encoder result per link block: ``(result,)`` for the capacity link
            (one codeword per clip), one per GOP for the LDPC link (None: does not fit).
        fits: bool ``(G,)``: GOP g has a stream within its budget.
        frame_mse: float64 ``(T, G + 1)``: MSE of frame ``t`` as shown when the last delivered GOP
            up to its own is ``j`` (column ``j + 1``: frame ``t`` itself if ``j`` is its GOP, else
            the last frame of GOP ``j``) or when none is (column 0: the mean frame); NaN where
            impossible (``j`` after ``t``'s GOP, or GOP ``j`` does not fit).
        frame_ssim: the same table of MS-SSIM per frame (SSIM when a side is below 161 px).
        frame_lpips: the same table of LPIPS per frame, or None when LPIPS is not reported.
    """

    result: VideoEncodeResult | None = field(repr=False)
    block_results: tuple[VideoEncodeResult | None, ...] = field(repr=False)
    fits: np.ndarray
    frame_mse: np.ndarray
    frame_ssim: np.ndarray
    frame_lpips: np.ndarray | None = None

    @property
    def counted_bits(self) -> int:
        return sum(r.counted_bits for r in self.block_results if r is not None)

    @property
    def qualities(self) -> list[float]:
        """Quantiser (QP / CRF) of each block that fits."""
        return [r.quality for r in self.block_results if r is not None]


def _code_task(task) -> list[VideoEncodeResult | None]:
    """Rate control of one clip: ``(codec, frames, [(first, stop, budget bits, gop)], accounting)``."""
    codec, frames, blocks, accounting = task
    return [encode_clip_to_budget(frames[first:stop], budget, codec, gop, accounting=accounting)
            for first, stop, budget, gop in blocks]


class VideoSeparateBaseline:
    """H.264 / H.265 + a digital link over a set of clips at one bandwidth ratio.

    Args:
        clips: test clips; every clip returned by ``clips.clip(i)`` must have one shape
            ``(T, 3, H, W)`` (use ``frames=`` / ``crop=`` of the VideoSet). Random crops, if the
            set has them, are drawn once with a generator seeded 0.
        codec: ``"h264"`` / ``"h265"`` or a :class:`~jscc.baselines.video_codecs.VideoCodec`.
        link: ``"capacity"`` or ``"ldpc"`` (one TB per GOP, cached BLER tables).
        channel: ``"awgn"`` or ``"rayleigh"`` (slow fading, one ``h`` per clip, known at the
            digital receiver).
        bandwidth_ratio: ``k/n`` with ``n = 3 H W T``; ``k`` must be an integer.
        gop: frames per GOP (IDR every ``gop`` frames); None: one GOP per clip.
        accounting: ``"payload"`` (slice NAL units) or ``"full"`` (Annex-B stream with
            parameter sets), see :mod:`jscc.baselines.video_codecs`.
        fallback: ``"clip_mean"`` or ``"dataset_mean"`` (the test set's per-channel mean).
        workers: processes for source coding (1: in this process); spawned per :meth:`code` call, or once per
            run inside :func:`jscc.baselines.codecs.shared_worker_pools`.
        table_kwargs: options of :func:`channels.links.bler_table` (``n_blocks``, ``cache_dir``,
            ``snr_db_grid``, ...).
        progress: show a progress bar.
        metrics: also report ``"lpips"`` (per frame, AlexNet; dropped with a note in ``metric_notes`` for frames
            below 31 px, :func:`jscc.metrics.metrics_for_sizes`). PSNR and MS-SSIM
            (SSIM below 161 px) are always reported.
        device: where SSIM / LPIPS are computed.

    Memory: every clip is held as uint8, and every coded (clip, budget) keeps its
    reconstruction (the oracle codes every candidate budget it considers: on AWGN capacity only
    the designs <= the test SNR, :func:`jscc.baselines.separate.oracle_candidates`).
    """

    def __init__(self, clips: VideoSet, *, codec: str | VideoCodec = "h264", link: str = "capacity",
                 channel: str = "awgn", bandwidth_ratio: Fraction | str = Fraction(1, 12), gop: int | None = 4,
                 accounting: str = "payload", fallback: str = "clip_mean", workers: int = 1,
                 table_kwargs: dict | None = None, progress: bool = False, metrics: Sequence[str] = (),
                 device: str | torch.device = "cpu"):
        check_link(link, channel)
        unknown = set(metrics) - {"psnr", "ssim", "ms_ssim", "lpips"}
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)} for clips; they report psnr, ms_ssim (ssim) and lpips")
        if accounting not in ACCOUNTING_MODES:
            raise ValueError(f"unknown byte accounting {accounting!r}; expected one of {ACCOUNTING_MODES}")
        if fallback not in VIDEO_FALLBACK_MODES:
            raise ValueError(f"unknown fallback {fallback!r} for clips; expected one of {VIDEO_FALLBACK_MODES}")
        if gop is not None and (isinstance(gop, bool) or not isinstance(gop, (int, np.integer)) or gop < 1):
            raise ValueError(f"gop must be a positive integer (frames per GOP) or None (one GOP), got {gop!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if isinstance(codec, str) and codec not in VIDEO_CODECS:
            raise ValueError(f"unknown video codec {codec!r}; expected one of {sorted(VIDEO_CODECS)}")
        self.codec = VideoCodec(codec) if isinstance(codec, str) else codec
        if not isinstance(self.codec, VideoCodec):
            raise TypeError(f"codec must be a name ({sorted(VIDEO_CODECS)}) or a VideoCodec, "
                            f"got {type(codec).__name__}")
        if not self.codec.available():
            raise CodecUnavailableError(f"video codec {self.codec.name!r} needs PyAV with "
                                        f"{VIDEO_CODECS[self.codec.name][0]} (pip install av)")
        if not isinstance(clips, VideoSet) or len(clips) == 0:
            raise ValueError("clips must be a non-empty VideoSet")
        self.link, self.channel, self.accounting, self.fallback = link, channel, accounting, fallback
        self.workers, self.progress = workers, progress
        self.table_kwargs = dict(table_kwargs or {})
        self.clips = clips
        shapes = {clips.output_shape(i) for i in range(len(clips))}
        if len(shapes) != 1:
            raise ValueError(f"the video baseline needs clips of one shape (one k per clip); got {sorted(shapes)}: "
                             "use frames= and crop= of the VideoSet")
        generator = torch.Generator().manual_seed(0)
        self.frames = [clips.clip(i, generator).contiguous() for i in range(len(clips))]
        self.t, _, self.height, self.width = self.frames[0].shape
        self.bandwidth_ratio = Fraction(bandwidth_ratio)
        self.k = video_channel_uses(self.t, self.height, self.width, self.bandwidth_ratio)
        self.n = 3 * self.height * self.width * self.t
        self.gop = None if gop is None or gop >= self.t else int(gop)
        self.gops = gop_layout(self.t, self.gop)
        self.gop_k = gop_channel_uses(self.k, self.gops)
        self.gop_of_frame = np.repeat(np.arange(len(self.gops)), [e - s for s, e in self.gops])
        self.dataset_mean = torch.stack([f.double().mean(dim=(0, 2, 3)) for f in self.frames]).mean(0).div(255)
        self.dataset_mean = self.dataset_mean.tolist()
        self.mean_frames = [fallback_clip(f, fallback, self.dataset_mean if fallback == "dataset_mean" else None)[0]
                            for f in self.frames]
        self.fallback_mse = np.stack([_frame_mse(m[None].expand_as(f), f)
                                      for m, f in zip(self.mean_frames, self.frames)])  # (N, T)
        # MS-SSIM per frame, or SSIM where frames are too small for its 5 scales (jscc.metrics)
        self.ssim_name = "ms_ssim" if ms_ssim_supported(self.height, self.width) else "ssim"
        self.fallback_ssim = np.stack([self._frame_ssim(m[None].expand_as(f), f)
                                       for m, f in zip(self.mean_frames, self.frames)])  # (N, T)
        self.device = torch.device(device)
        kept, self.metric_notes = metrics_for_sizes([m for m in metrics if m == "lpips"], [(self.height, self.width)])
        self._lpips = load_lpips(self.device) if kept else None
        self.fallback_lpips = None if self._lpips is None else np.stack(
            [self._frame_lpips(m[None].expand_as(f), f) for m, f in zip(self.mean_frames, self.frames)])  # (N, T)
        self.metrics = ["psnr", self.ssim_name] + (["lpips"] if self._lpips is not None else [])
        self._coded: dict[tuple, list[CodedClip]] = {}
        self._tables: dict[tuple[int, str], L.BlerTable] = {}

    # ------------------------------------------------------------------ operating points
    def capacity_point(self, design_snr_db: float) -> OperatingPoint:
        """One codeword per clip: ``floor(k log2(1 + snr_design))`` bits."""
        return OperatingPoint(bits=L.capacity_link_bits(self.k, design_snr_db), design_snr_db=float(design_snr_db))

    def ldpc_point(self, mcs) -> OperatingPoint:
        """One TB per GOP at ``mcs``; ``bits`` is the clip's total payload (sum of the TB sizes)."""
        mcs = L.MCS.parse(mcs) if isinstance(mcs, str) else mcs
        return OperatingPoint(bits=sum(self._tb_sizes(mcs)), mcs=mcs)

    def _tb_sizes(self, mcs: L.MCS) -> list[int]:
        sizes = []
        for (first, stop), k_g in zip(self.gops, self.gop_k):
            try:
                sizes.append(L.transport_block_info_bits(k_g, mcs))
            except ValueError as err:
                raise ValueError(f"{mcs.name} cannot carry the TB of GOP frames {first}..{stop - 1} "
                                 f"(k_g = {k_g} channel uses): {err}") from None
        return sizes

    def block_budgets(self, point: OperatingPoint) -> tuple[int, ...]:
        """Bit budget of each link block: ``(bits,)`` (capacity, one per clip) or the TB sizes per GOP (LDPC)."""
        return (point.bits,) if point.mcs is None else tuple(self._tb_sizes(point.mcs))

    def table(self, k: int, mcs: L.MCS) -> L.BlerTable:
        """The cached AWGN BLER table of a TB of ``k`` channel uses at ``mcs`` (lazy: points are simulated
        when a lookup first needs them)."""
        if (k, mcs.name) not in self._tables:
            self._tables[(k, mcs.name)] = L.bler_table(k, mcs, **({"lazy": True, "verbose": self.progress}
                                                                   | self.table_kwargs))
        return self._tables[(k, mcs.name)]

    def feasible_mcs(self) -> list[L.MCS]:
        """MCSs of the grid that can carry every GOP's TB."""
        ok = [set(L.feasible_mcs(k_g)) for k_g in sorted(set(self.gop_k))]
        return [m for m in L.MCS_GRID if all(m in s for s in ok)]

    def candidates(self) -> list[OperatingPoint]:
        if self.link == "capacity":
            return [self.capacity_point(s) for s in CAPACITY_DESIGN_GRID]
        return [self.ldpc_point(m) for m in self.feasible_mcs()]

    def shannon_limit_db(self, k_g: int, mcs: L.MCS) -> float:
        """The SNR (dB) at which a TB of ``k_g`` channel uses at ``mcs`` meets capacity, ``10 log10(2^(tb/k_g) - 1)``."""
        return L.transport_block_layout(k_g, mcs).shannon_limit_db

    def gop_bler(self, mcs: L.MCS, snr_db: float) -> np.ndarray:
        """float64 ``(G,)``: AWGN BLER of each GOP's TB at ``snr_db``. Below a TB's Shannon limit it is 1
        without a table (every table's grid starts there, at BLER ~1: a rate above capacity cannot be
        decoded), so tables are only built for TBs that can succeed."""
        snr_lin = 10 ** (float(snr_db) / 10)
        return np.array([1.0 if snr_db < self.shannon_limit_db(k_g, mcs) else
                         float(L.bler_lookup(self.table(k_g, mcs), snr_lin)) for k_g in self.gop_k])

    def _by_payload(self) -> list[OperatingPoint]:
        """The LDPC points of :meth:`feasible_mcs`, most payload first (ties: grid order)."""
        return sorted((self.ldpc_point(m) for m in self.feasible_mcs()), key=lambda p: -p.bits)

    def design_mcs(self, design_snr_db: float) -> L.MCS | None:
        """The MCS with the most payload whose every GOP TB has BLER <= :data:`DESIGN_BLER` at the design
        SNR (ties in payload: the lowest BLER). Searched from the most payload down, so only the tables
        of MCSs at and above the answer within capacity are built."""
        best = None
        for point in self._by_payload():
            if best is not None and point.bits < best[0][0]:
                break
            if any(design_snr_db < self.shannon_limit_db(k_g, point.mcs) for k_g in self.gop_k):
                continue  # BLER 1 > DESIGN_BLER
            bler = float(self.gop_bler(point.mcs, design_snr_db).max())
            if bler <= DESIGN_BLER and (best is None or (point.bits, -bler) > best[0]):
                best = ((point.bits, -bler), point.mcs)
        return None if best is None else best[1]

    def ldpc_oracle_candidates(self, snr_db: float) -> list[OperatingPoint]:
        """The LDPC oracle's candidates at test SNR ``snr_db``. Under slow fading every feasible MCS. On
        AWGN, most payload first: MCSs whose every TB is above capacity (BLER 1: only the fallback) are
        left out, and so is every MCS after the first one that delivers every GOP (BLER 0) whose TBs are
        all no larger than that one's: same or worse delivery of smaller budgets (this assumes the
        codec's quality does not drop with a larger budget, which the rate control's search over
        quantisers makes hold up to its step). Only the candidates' tables are built."""
        points = self._by_payload()
        if self.channel != "awgn":
            return points
        kept, sure = [], None
        for point in points:
            sizes = self._tb_sizes(point.mcs)
            if sure is not None and all(a <= b for a, b in zip(sizes, sure)):
                continue
            if all(snr_db < self.shannon_limit_db(k_g, point.mcs) for k_g in self.gop_k):
                continue
            kept.append(point)
            if sure is None and not self.gop_bler(point.mcs, snr_db).any():
                sure = sizes
        return kept

    def choose(self, design, snr_db: float) -> OperatingPoint | None:
        """The operating point used at test SNR ``snr_db`` under policy ``design`` (None: always fallback)."""
        if design == "match":
            design = snr_db
        if isinstance(design, (int, float)) and not isinstance(design, bool):
            if self.link == "capacity":
                return self.capacity_point(design)
            mcs = self.design_mcs(design)
            return None if mcs is None else self.ldpc_point(mcs)
        if design != "oracle":
            if self.link == "ldpc" and isinstance(design, (str, L.MCS)):
                return self.ldpc_point(design)  # a fixed MCS, e.g. "QPSK-r1/2"
            raise ValueError(f"design must be a design SNR in dB, 'oracle', 'match' or (LDPC) an MCS name, "
                             f"got {design!r}")
        deterministic = self.link == "capacity" and self.channel == "awgn"
        points = (oracle_candidates(self.candidates(), snr_db, deterministic) if self.link == "capacity"
                  else self.ldpc_oracle_candidates(snr_db))
        if not points:
            return None
        self.code(points)
        expected = [self.expected_psnr(p, snr_db) for p in points]
        return oracle_pick(points, expected, float(_psnr(self.fallback_mse).mean()), deterministic)

    # ------------------------------------------------------------------ source coding
    def _key(self, point: OperatingPoint) -> tuple:
        return ("clip" if point.mcs is None else "gop", self.block_budgets(point))

    def code(self, points: Sequence[OperatingPoint]) -> None:
        """Rate-control every clip to every point's budget(s) not coded yet (once; reused for all SNRs, draws)."""
        keys = list(dict.fromkeys(self._key(p) for p in points if p is not None))
        keys = [key for key in keys if key not in self._coded]
        if not keys:
            return
        tasks = []
        for layout, budgets in keys:
            if layout == "clip":
                blocks = [(0, self.t, budgets[0], self.gop)]
            else:
                blocks = [(first, stop, b, None) for (first, stop), b in zip(self.gops, budgets)]
            tasks += [(self.codec, f, blocks, self.accounting) for f in self.frames]
        # spawned workers (never forked from this threaded process: jscc.baselines.codecs.POOL_START_METHOD), shared
        # by the calls of a run inside codecs.shared_worker_pools(); the results do not depend on the worker
        with (_worker_pool(self.workers, len(tasks)) if self.workers > 1 and len(tasks) > 1
              else contextlib.nullcontext()) as pool:
            coded = list(tqdm(_map(_code_task, tasks, pool), total=len(tasks), desc="source coding",
                              disable=not self.progress, leave=False))
        n = len(self.frames)
        for j, key in enumerate(keys):
            self._coded[key] = [self._coded_clip(i, key[0], coded[j * n + i]) for i in range(n)]

    def coded(self, point: OperatingPoint) -> list[CodedClip]:
        """The clips coded for ``point`` (coding them if needed)."""
        self.code([point])
        return self._coded[self._key(point)]

    def _coded_clip(self, index: int, layout: str, blocks: list[VideoEncodeResult | None]) -> CodedClip:
        frames = self.frames[index]
        g_count = len(self.gops)
        if layout == "clip":
            result = blocks[0]
            fits = np.full(g_count, result is not None)
            if result is not None:
                starts = {first for first, _ in self.gops}
                if result.keyframes != tuple(t in starts for t in range(self.t)):
                    raise RuntimeError(f"{self.codec.name}: IDR frames {result.keyframes} differ from the GOP layout")
        else:
            fits = np.array([r is not None for r in blocks])
            result = _concatenate(frames, self.gops, blocks, self.codec.name, self.accounting, self.gop) \
                if fits.any() else None
        tables = {"lpips": None}
        scorers = [("mse", _frame_mse, self.fallback_mse), ("ssim", self._frame_ssim, self.fallback_ssim)]
        if self._lpips is not None:
            scorers.append(("lpips", self._frame_lpips, self.fallback_lpips))
        for name, metric, fallback in scorers:
            table = tables[name] = np.full((self.t, g_count + 1), np.nan)
            table[:, 0] = fallback[index]
            if result is None:
                continue
            rec = result.reconstruction
            for j, (first, stop) in enumerate(self.gops):
                if not fits[j]:
                    continue
                table[first:stop, j + 1] = metric(rec[first:stop], frames[first:stop])
                if stop < self.t:  # later frames frozen on GOP j's last frame
                    table[stop:, j + 1] = metric(rec[stop - 1 : stop].expand_as(frames[stop:]), frames[stop:])
        return CodedClip(result=result, block_results=tuple(blocks), fits=fits, frame_mse=tables["mse"],
                         frame_ssim=tables["ssim"], frame_lpips=tables["lpips"])

    def _frame_ssim(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        """float64 ``(T,)`` MS-SSIM (or SSIM, see ``ssim_name``) per frame of two uint8 ``(T, 3, H, W)`` clips."""
        metric = ms_ssim if self.ssim_name == "ms_ssim" else ssim
        return metric(a.float() / 255, b.float() / 255).double().numpy()

    def _frame_lpips(self, a: torch.Tensor, b: torch.Tensor, batch: int = 8) -> np.ndarray:
        """float64 ``(T,)`` LPIPS (AlexNet) per frame of two uint8 ``(T, 3, H, W)`` clips."""
        with torch.no_grad():
            return torch.cat([lpips_distance(self._lpips, a[i:i + batch].to(self.device).float() / 255,
                                             b[i:i + batch].to(self.device).float() / 255).double().cpu()
                              for i in range(0, len(a), batch)]).numpy()

    # ------------------------------------------------------------------ transmission
    def delivered(self, point: OperatingPoint | None, snr_db: float, generator: torch.Generator) -> np.ndarray:
        """bool ``(N, G)``: which GOPs the link delivers in one channel draw (before the fits of the coding)."""
        n, g_count = len(self.frames), len(self.gops)
        if point is None:
            return np.zeros((n, g_count), dtype=bool)
        if self.link == "capacity":
            if self.channel == "awgn":
                ok = L.capacity_awgn_success(torch.full((n,), float(snr_db)), point.design_snr_db)
            else:
                ok, _ = L.capacity_rayleigh_success(point.bits, self.k, float(snr_db), batch_size=n,
                                                    generator=generator)
            return np.repeat(ok.numpy()[:, None], g_count, axis=1)
        if self.channel == "awgn":
            bler = self.gop_bler(point.mcs, snr_db)  # (G,)
            return torch.rand((n, g_count), generator=generator, dtype=torch.float64).numpy() >= bler
        oks, h = [], None
        for k_g in self.gop_k:  # one h per clip, shared by the clip's TBs
            ok, h = L.simulate_success(k_g, point.mcs, float(snr_db), channel=self.channel, h=h,
                                       batch_size=None if h is not None else n,
                                       table=self.table(k_g, point.mcs), generator=generator)
            oks.append(ok.numpy())
        return np.stack(oks, axis=1)

    def frame_mse(self, point: OperatingPoint | None, gop_ok: np.ndarray) -> np.ndarray:
        """float64 ``(N, T)``: per-frame MSE of the delivered clips given the link's ``gop_ok`` ``(N, G)``."""
        return self._shown(point, gop_ok, "frame_mse", self.fallback_mse)

    def frame_ssim(self, point: OperatingPoint | None, gop_ok: np.ndarray) -> np.ndarray:
        """float64 ``(N, T)``: per-frame MS-SSIM (or SSIM, ``ssim_name``) of the delivered clips."""
        return self._shown(point, gop_ok, "frame_ssim", self.fallback_ssim)

    def frame_lpips(self, point: OperatingPoint | None, gop_ok: np.ndarray) -> np.ndarray:
        """float64 ``(N, T)``: per-frame LPIPS of the delivered clips (with ``metrics=("lpips",)``)."""
        return self._shown(point, gop_ok, "frame_lpips", self.fallback_lpips)

    def _shown(self, point: OperatingPoint | None, gop_ok: np.ndarray, table: str, fallback: np.ndarray) -> np.ndarray:
        """Per-frame value of ``CodedClip.<table>`` for the frames the receiver shows, ``(N, T)``."""
        if point is None:
            return fallback.copy()
        coded = self.coded(point)
        ok = np.asarray(gop_ok, dtype=bool) & np.stack([c.fits for c in coded])
        idx = np.where(ok, np.arange(ok.shape[1]), -1)
        last = np.maximum.accumulate(idx, axis=1)[:, self.gop_of_frame]  # (N, T): last delivered GOP up to t's
        tables = np.stack([getattr(c, table) for c in coded])  # (N, T, G + 1)
        return np.take_along_axis(tables, (last + 1)[..., None], axis=2)[..., 0]

    def receive(self, index: int, point: OperatingPoint | None, gop_ok: Sequence[bool]) -> torch.Tensor:
        """The receiver's clip ``index``, uint8 ``(T, 3, H, W)``, when the link delivers GOPs ``gop_ok`` ``(G,)``."""
        frames = self.frames[index]
        coded = None if point is None else self.coded(point)[index]
        dataset_mean = self.dataset_mean if self.fallback == "dataset_mean" else None
        if coded is None or coded.result is None:
            return fallback_clip(frames, self.fallback, dataset_mean)
        ok = np.asarray(gop_ok, dtype=bool) & coded.fits
        return reconstruct(coded.result, gop_ok=ok, fallback=self.fallback, dataset_mean=dataset_mean)

    def expected_psnr(self, point: OperatingPoint, snr_db: float) -> float:
        """Mean PSNR over (clip, frame) expected over the link's losses at (average) ``snr_db``."""
        coded = self.coded(point)
        fits = np.stack([c.fits for c in coded]).astype(np.float64)  # (N, G)
        psnr = np.stack([_psnr(np.nan_to_num(c.frame_mse, nan=1.0)) for c in coded])  # (N, T, G + 1)
        g_count = len(self.gops)
        if self.link == "capacity":  # one codeword: all GOPs or none
            rate = point.bits / self.k
            if self.channel == "awgn":
                p = float(snr_db >= point.design_snr_db)
            else:
                p = float(math.exp(-(2**rate - 1) / 10 ** (snr_db / 10)))
            own = psnr[:, np.arange(self.t), self.gop_of_frame + 1]  # (N, T): every GOP delivered
            p_clip = p * fits[:, :1]  # (N, 1)
            return float(np.mean(p_clip * own + (1 - p_clip) * psnr[:, :, 0]))
        if self.channel == "awgn":
            p = 1 - self.gop_bler(point.mcs, snr_db)[None]  # (1, G)
        else:
            gains = -np.log1p(-(np.arange(RAYLEIGH_POINTS) + 0.5) / RAYLEIGH_POINTS)  # |h|^2 quantiles
            p = np.stack([1 - L.bler_lookup(self.table(k_g, point.mcs), gains * 10 ** (snr_db / 10))
                          for k_g in self.gop_k], axis=1)
        q = p[:, None, :] * fits[None]  # (S, N, G): GOPs independent given h
        prob = np.zeros((*q.shape[:2], g_count, g_count + 1))  # [s, n, g, j + 1]: last delivered GOP <= g is j
        for g in range(g_count):
            lost = np.ones(q.shape[:2])
            for j in range(g, -1, -1):
                prob[:, :, g, j + 1] = q[..., j] * lost
                lost = lost * (1 - q[..., j])
            prob[:, :, g, 0] = lost
        prob = prob.mean(axis=0)[:, self.gop_of_frame, :]  # (N, T, G + 1): PSNR is linear in the probabilities
        return float(np.mean(np.sum(prob * psnr, axis=-1)))

    def sweep(self, snr_db: Sequence[float], design, *, n_channel_draws: int = 10, seed: int = 0) -> dict:
        """``{"metrics", "per_frame", "points", "delivery"}``: metrics per test SNR over (clip, frame, draw), per
        frame index, the operating point used per SNR, and per SNR the (clip GOP, draw) pairs whose GOP was
        delivered and fitted its budget (``delivered``) or was concealed / fell back (``fell_back``)."""
        if isinstance(n_channel_draws, bool) or not isinstance(n_channel_draws, int) or n_channel_draws < 1:
            raise ValueError(f"n_channel_draws must be a positive integer, got {n_channel_draws!r}")
        generator = torch.Generator().manual_seed(seed)
        acc = MetricAccumulator()
        points, delivered = [], []
        snrs = [float(s) for s in snr_db]
        for i, snr in enumerate(tqdm(snrs, desc="video baseline", disable=not self.progress, leave=False)):
            point = self.choose(design, snr)
            points.append(point)
            fits = False if point is None else np.stack([c.fits for c in self.coded(point)])  # (N, G)
            delivered.append(0)
            for _ in range(n_channel_draws):
                gop_ok = self.delivered(point, snr, generator)
                delivered[-1] += int((gop_ok & fits).sum())
                mse, sim = self.frame_mse(point, gop_ok), self.frame_ssim(point, gop_ok)  # (N, T)
                lp = None if self._lpips is None else self.frame_lpips(point, gop_ok)
                for key, t_slice in [(i, slice(None))] + [((i, "frame", t), t) for t in range(self.t)]:
                    acc.add(key, "psnr", torch.from_numpy(_psnr(mse[:, t_slice])))
                    acc.add(key, "mse", torch.from_numpy(mse[:, t_slice]))
                    acc.add(key, self.ssim_name, torch.from_numpy(sim[:, t_slice]))
                    if lp is not None:
                        acc.add(key, "lpips", torch.from_numpy(lp[:, t_slice]))
        per_frame = [acc.summary([(i, "frame", t) for i in range(len(snrs))]) for t in range(self.t)]
        shown = len(self.frames) * len(self.gops) * n_channel_draws
        return {"metrics": acc.summary(range(len(snrs))), "per_frame": per_frame, "points": points,
                "delivery": delivery_counts("GOP x channel draw", delivered, shown)}

    # ------------------------------------------------------------------ description
    def layout_note(self) -> str:
        """GOP and link-block layout, for the results notes."""
        gops = ", ".join(f"[{s}-{e - 1}]" if e - s > 1 else f"[{s}]" for s, e in self.gops)
        text = (f"T={self.t} frames of {self.height}x{self.width}, GOP {self.gop or self.t}: GOPs {gops} "
                "(closed, IDR + P-frames, no B-frames); ")
        if self.link == "capacity":
            return text + (f"capacity link: one codeword of k={self.k} channel uses per clip, the clip rate-controlled "
                           "to floor(k log2(1 + snr_design)) bits (one quantiser per clip)")
        return text + (f"LDPC link: one TB per GOP, k_g={self.gop_k} channel uses, each GOP rate-controlled to its "
                       "TB size (one quantiser per GOP); BLER from cached tables")


def _frame_mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """float64 ``(T,)`` MSE per frame of two uint8 ``(T, 3, H, W)`` clips on the [0, 1] scale."""
    return ((a.double() - b.double()) / 255).square().mean(dim=(1, 2, 3)).numpy()


def _concatenate(frames: torch.Tensor, gops, blocks: Sequence[VideoEncodeResult | None], codec: str,
                 accounting: str, gop: int | None) -> VideoEncodeResult:
    """One clip result from per-GOP results; a GOP that does not fit gets empty packets (never delivered)."""
    packets, bits, keys, recs = [], [], [], []
    for (first, stop), r in zip(gops, blocks):
        if r is None:
            packets += [b""] * (stop - first)
            bits += [0] * (stop - first)
            keys += [True] + [False] * (stop - first - 1)
            recs.append(torch.zeros_like(frames[first:stop]))
        else:
            packets += r.packets
            bits += r.frame_bits
            keys += r.keyframes
            recs.append(r.reconstruction)
    if tuple(keys) != tuple(t in {s for s, _ in gops} for t in range(frames.shape[0])):
        raise RuntimeError(f"{codec}: IDR frames {keys} differ from the GOP layout")
    fitted = [r for r in blocks if r is not None]
    mean = frames.double().mean(dim=(0, 2, 3)).round().clamp(0, 255).to(torch.uint8).tolist()
    return VideoEncodeResult(packets=tuple(packets), frame_bits=tuple(bits), counted_bits=sum(bits),
                             total_bytes=sum(len(p) for p in packets), keyframes=tuple(keys),
                             quality=float(np.mean([r.quality for r in fitted])), reconstruction=torch.cat(recs),
                             clip_mean=tuple(mean), codec=codec, accounting=accounting, gop=gop,
                             n_encodes=sum(r.n_encodes for r in fitted))


def _point_note(baseline: VideoSeparateBaseline, point: OperatingPoint | None) -> str:
    if point is None:
        return "none (fallback)"
    coded = baseline.coded(point)
    qualities = [q for c in coded for q in c.qualities]
    lost = sum(int((~c.fits).sum()) for c in coded)
    text = f"{point.label} ({point.bits} bits"
    if point.mcs is not None:
        text += f", TBs {list(baseline.block_budgets(point))}"
    text += f"; {baseline.codec.rate_mode} " + (f"mean {np.mean(qualities):.2f}" if qualities else "n/a")
    return text + (f"; {lost} GOP(s) do not fit)" if lost else ")")


def _points_note(baseline: VideoSeparateBaseline, snr_db: Sequence[float], points) -> str:
    """``"0-8 dB: C(10 dB) (...), 10 dB: ..."``: runs of test SNRs sharing one operating point."""
    runs: list[list] = []
    for snr, point in zip(snr_db, points):
        note = _point_note(baseline, point)
        if runs and runs[-1][2] == note:
            runs[-1][1] = snr
        else:
            runs.append([snr, snr, note])
    return ", ".join((f"{lo:g} dB" if lo == hi else f"{lo:g}-{hi:g} dB") + f": {note}" for lo, hi, note in runs)


def video_baseline_results(baseline: VideoSeparateBaseline, snr_db: Sequence[float], design, *,
                           name: str | None = None, n_channel_draws: int = 10, seed: int = 0,
                           command: str | None = None) -> dict:
    """Run :meth:`VideoSeparateBaseline.sweep` and return the ``jscc-results/1`` dict (with ``metrics_per_frame``)."""
    b = baseline
    out = b.sweep(snr_db, design, n_channel_draws=n_channel_draws, seed=seed)
    notes = ("video clips (k and k/n per clip, n = 3HWT; metrics over (clip, frame, draw)); "
             f"codec {b.codec.config}; {b.layout_note()}; policy {design}; operating point per SNR: "
             + _points_note(b, snr_db, out["points"])
             + f"; fallback {b.fallback}: a lost GOP repeats the last correctly decoded frame, the mean frame "
             "before any frame decoded" + "".join(f"; {note}" for note in b.metric_notes))
    results = separate_results(
        b, snr_db, design, out,
        name=name or f"{b.codec.name}-gop{b.gop or b.t}-{b.link}-{b.channel}-{b.accounting}-{design_label(design)}",
        dataset_name=b.clips.name, n_examples=len(b.frames), n_channel_draws=n_channel_draws, seed=seed,
        command=command, notes=notes)
    results["metrics_per_frame"] = out["per_frame"]
    return results
