"""The separate source-channel coding baseline: a real codec's bytes over a digital link.

::

    image ─► codec.encode_to_budget(budget) ─► bytes ─► link (capacity | 5G LDPC + QAM) ─┬─ ok ──► codec reconstruction
                                                                                          └─ fail ─► fallback (the cliff)

An *operating point* fixes what the link carries per image: a capacity-achieving code designed
for an SNR (``bits = floor(k log2(1 + snr_design))``) or an MCS of the LDPC link (``tb_size``
info bits). Source coding depends only on (image, budget), so every image is coded once per
operating point and the result is reused for every test SNR and channel draw. At each test SNR
and draw the link either delivers (codec reconstruction) or fails (fallback), per image:

- capacity, AWGN: success iff the SNR >= the design SNR;
- capacity, slow Rayleigh: success iff ``log2(1 + |h|^2 snr_lin) >= R`` (outage);
- LDPC: a transport-block CRC check, from cached BLER curves (``|h|^2 snr_lin`` under fading)
  or the exact bit-level chain carrying the codestream's bytes (``ldpc_mode="exact"``).

Operating-point policies (``design``): a number (fixed design SNR; for LDPC the design MCS is
the highest-rate MCS with BLER <= 1e-2 there); an MCS name such as ``"QPSK-r1/2"`` (LDPC);
``"oracle"`` (per test SNR, the point of highest
expected PSNR: the envelope; under slow fading this is the rate chosen per average SNR over the
outage); ``"match"`` (design SNR = test SNR, i.e. ``R = C(snr_avg)`` under fading).

PSNR is computed per (image, draw) with peak 1 on the ``[0, 1]`` images; an exact
reconstruction (possible for JPEG on a JPEG-compressed dataset) is capped at
:data:`PSNR_CAP_DB`. The other metrics (:data:`BASELINE_METRICS`: SSIM, MS-SSIM, LPIPS) are
computed once per (image, budget) that a sweep uses, and per image for the fallback, then
picked per (image, draw) by whether the link delivered, as PSNR is.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

import channels.links as L
from channels import awgn_capacity, rayleigh_outage_probability
from jscc.baselines.codecs import (FALLBACK_MODES, bits_to_bytes, encode_dataset_to_budgets, fallback_image, get_codec,
                                   to_uint8_image)
from jscc import metrics as M
from jscc.data import ImageSet
from jscc.metrics import MetricAccumulator

PSNR_CAP_DB = 100.0
LINKS = ("capacity", "ldpc")
BASELINE_METRICS = ("psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg")  # psnr is always reported
#: Channel draws behind each success probability of the capacity oracle over OFDM / MIMO (the standard error
#: of a probability p is sqrt(p (1 - p) / 4000) <= 0.008).
LINK_INFORMATION_DRAWS = 4000
CAPACITY_DESIGN_GRID = tuple(float(s) for s in np.arange(-5.0, 30.5, 0.5))  # oracle candidates


@dataclass(frozen=True)
class OperatingPoint:
    """What the link carries per image: ``bits`` in ``k`` channel uses (``rate = bits / k``).

    ``design_snr_db`` for the capacity link, ``mcs`` for the LDPC link.
    """

    bits: int
    design_snr_db: float | None = None
    mcs: L.MCS | None = None

    @property
    def budget_bytes(self) -> int:
        return bits_to_bytes(self.bits)

    @property
    def label(self) -> str:
        return self.mcs.name if self.mcs is not None else f"C({self.design_snr_db:g} dB)"


def channel_uses(image_size: tuple[int, int], bandwidth_ratio: Fraction) -> int:
    """``k = (k/n) * 3 H W``; ValueError unless it is a positive integer."""
    k = Fraction(bandwidth_ratio) * 3 * image_size[0] * image_size[1]
    if k.denominator != 1 or k <= 0:
        raise ValueError(f"bandwidth ratio {bandwidth_ratio} of a {image_size[0]}x{image_size[1]} image gives "
                         f"k = {float(k):.3f} channel uses, not a positive integer")
    return int(k)


class SeparateBaseline:
    """Codec + link over one image set at one bandwidth ratio.

    Args:
        dataset: test images (all with the same number of pixels, so one ``k``).
        codec: codec name (``jscc.baselines.codecs``) or instance.
        link: ``"capacity"`` or ``"ldpc"``.
        channel: ``"awgn"`` or ``"rayleigh"`` (slow fading, one ``h`` per image; the digital
            receiver knows ``h``), or a link Module (:class:`~channels.OFDM`, :class:`~channels.MIMO`,
            with ``equalization="zf"``): over ``link="ldpc"`` (``ldpc_mode="exact"``) each image's TB
            goes through it (policies: a fixed MCS, or the MCS a design SNR gives on AWGN); over
            ``link="capacity"`` a code of rate ``R`` gets through iff the draw's Gaussian-input mutual
            information (``mutual_information``: per data RE / stream, perfect CSI) is ``>= R``
            (policies: a design SNR, ``match``, ``oracle``: the rate of highest expected PSNR, its success
            probability over :data:`LINK_INFORMATION_DRAWS` draws).
        bandwidth_ratio: ``k/n``.
        accounting: ``"full"`` or ``"payload"`` byte accounting.
        fallback: ``"image_mean"`` or ``"dataset_mean"`` (the test set's per-channel mean).
        workers: processes for source coding.
        ldpc_mode: ``"cached"`` (BLER tables) or ``"exact"`` (bit-level chain with the real bytes).
        table_kwargs: options of :func:`channels.links.bler_table` (``n_blocks``, ``cache_dir``,
            ``max_blocks_exact``, ...). TBs of more than ``max_blocks_exact`` (default 4) code
            blocks, e.g. Kodak images, get code-block-scaled BLER tables (noted in the results).
        metrics: any of :data:`BASELINE_METRICS` (PSNR and the PSNR of the mean MSE always); those undefined
            for the image size are changed by :func:`jscc.metrics.metrics_for_sizes` (``metric_notes``).
        device: where SSIM / LPIPS are computed.
    """

    def __init__(self, dataset: ImageSet, *, codec="jpeg2000", link: str = "capacity", channel: str = "awgn",
                 bandwidth_ratio: Fraction | str = Fraction(1, 12), accounting: str = "full",
                 fallback: str = "image_mean", workers: int = 2, ldpc_mode: str = "cached",
                 table_kwargs: dict | None = None, progress: bool = False, metrics=("psnr",), device="cpu"):
        self.channel_module = channel if isinstance(channel, torch.nn.Module) else None
        if self.channel_module is None:
            check_link(link, channel)
        elif link not in LINKS or (link == "ldpc" and ldpc_mode != "exact"):
            raise ValueError(f"over {channel.name} the separate baseline runs --link capacity or --link ldpc "
                             "--ldpc-mode exact (the bit-level chain through the link)")
        else:
            channel = channel.name
        unknown = set(metrics) - set(BASELINE_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; the baseline reports {BASELINE_METRICS}")
        if fallback not in FALLBACK_MODES:
            raise ValueError(f"unknown fallback {fallback!r}; expected one of {FALLBACK_MODES}")
        if ldpc_mode not in ("cached", "exact"):
            raise ValueError(f"unknown ldpc_mode {ldpc_mode!r}; expected cached or exact")
        self.codec = get_codec(codec) if isinstance(codec, str) else codec
        self.link, self.channel, self.accounting, self.fallback = link, channel, accounting, fallback
        self.ldpc_mode, self.workers, self.progress = ldpc_mode, workers, progress
        self.table_kwargs = dict(table_kwargs or {})
        self.bandwidth_ratio = Fraction(bandwidth_ratio)
        self.dataset = dataset
        self.images = [to_uint8_image(dataset.images[i]) for i in range(len(dataset))]
        pixels = {im.shape[0] * im.shape[1] for im in self.images}
        if len(pixels) != 1:
            raise ValueError("the separate baseline needs images with one pixel count (one k per image); "
                             f"got {len(pixels)} different counts: crop them")
        self.k = channel_uses(self.images[0].shape[:2], self.bandwidth_ratio)
        self.n = 3 * self.images[0].shape[0] * self.images[0].shape[1]
        # float64 (H, W, 3) in [0, 1] per image: one pixel count, but portrait and landscape may mix (Kodak)
        self.x = [im / 255.0 for im in self.images]
        mean = np.mean([im.mean(axis=(0, 1)) for im in self.x], axis=0).tolist()
        fallback_images = [fallback_image(im, fallback, mean) for im in self.images]
        self.fallback_mse = self._mse(fallback_images)
        kept, metric_notes = M.metrics_for_sizes(metrics, (im.shape[:2] for im in self.images))
        self.metric_notes = [*getattr(dataset, "notes", []), *metric_notes]  # and what loading did (e.g. cut sizes)
        self.metrics = [m for m in kept if m != "psnr"]  # besides PSNR
        self.device = torch.device(device)
        self._lpips = M.load_lpips_scorers(self.metrics, self.device)
        self.fallback_scores = self._scores(fallback_images)
        self._source: dict[int, np.ndarray] = {}  # budget bytes -> per-image MSE (fallback where nothing fits)
        self._source_extra: dict[int, dict[str, np.ndarray]] = {}  # budget bytes -> {metric: per-image values}
        self._results: dict[int, list] = {}
        self._tables: dict[str, L.BlerTable] = {}
        self._information: dict[float, torch.Tensor] = {}  # OFDM / MIMO capacity oracle

    # ------------------------------------------------------------------ source coding
    def _mse(self, recs: Sequence[np.ndarray], index: Sequence[int] | None = None) -> np.ndarray:
        """Per-image MSE of uint8 reconstructions against the images ``index`` (default all)."""
        index = range(len(self.x)) if index is None else index
        return np.array([np.square(r / 255.0 - self.x[i]).mean() for r, i in zip(recs, index, strict=True)])

    def _scores(self, recs: Sequence[np.ndarray], index: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """``{metric: (len(recs),) float64}`` of :attr:`metrics` for uint8 reconstructions of the images ``index``."""
        if not self.metrics:
            return {}
        index = range(len(self.x)) if index is None else index
        scores = M.per_image_metrics([_chw(r / 255.0, self.device) for r in recs],
                                     [_chw(self.x[i], self.device) for i in index], self.metrics, self._lpips)
        return {m: v.numpy() for m, v in scores.items()}

    def code(self, budgets: Sequence[int]) -> None:
        """Encode every image to every budget not coded yet (once; reused for all SNRs and draws)."""
        todo = sorted({b for b in budgets if b not in self._source})
        if not todo:
            return
        coded = encode_dataset_to_budgets(self.images, todo, self.codec, self.accounting, workers=self.workers)
        for b, results in coded.items():
            mse = self.fallback_mse.copy()
            fits = [i for i, r in enumerate(results) if r is not None]
            if fits:
                mse[fits] = self._mse([results[i].reconstruction for i in fits], fits)
            self._source[b] = mse
            self._results[b] = results

    def psnr_delivered(self, point: OperatingPoint) -> np.ndarray:
        """Per-image PSNR (dB) when the link delivers ``point``'s bytes (fallback where nothing fits)."""
        self.code([point.budget_bytes])
        return _psnr(self._source[point.budget_bytes])

    # ------------------------------------------------------------------ operating points
    def capacity_point(self, design_snr_db: float) -> OperatingPoint:
        return OperatingPoint(bits=L.capacity_link_bits(self.k, design_snr_db), design_snr_db=float(design_snr_db))

    def ldpc_point(self, mcs) -> OperatingPoint:
        mcs = L.MCS.parse(mcs) if isinstance(mcs, str) else mcs
        return OperatingPoint(bits=L.transport_block_info_bits(self.k, mcs), mcs=mcs)

    def table(self, mcs: L.MCS) -> L.BlerTable:
        """The AWGN BLER table of ``mcs`` (lazy: points are simulated when a lookup first needs them)."""
        if mcs.name not in self._tables:
            self._tables[mcs.name] = L.bler_table(self.k, mcs, **({"lazy": True, "verbose": self.progress}
                                                                  | self.table_kwargs))
        return self._tables[mcs.name]

    def candidates(self) -> list[OperatingPoint]:
        if self.link == "capacity":
            return [self.capacity_point(s) for s in CAPACITY_DESIGN_GRID]
        return [self.ldpc_point(m) for m in L.feasible_mcs(self.k)]

    def success_probability(self, point: OperatingPoint, snr_db: float) -> float:
        """Probability that one image's bytes get through at (average) ``snr_db``."""
        if self.link == "capacity":
            if self.channel_module is not None:
                return float((self._link_information(snr_db) >= point.bits / self.k).double().mean())
            rate = awgn_capacity(point.design_snr_db)
            if self.channel == "awgn":
                return float(snr_db >= point.design_snr_db)
            return 1.0 - float(rayleigh_outage_probability(rate, snr_db))
        table = self.table(point.mcs)
        if self.channel == "awgn":
            return 1.0 - float(L.bler_lookup(table, 10 ** (snr_db / 10)))
        return L.rayleigh_success_probability(table, snr_db)

    def _link_information(self, snr_db: float) -> torch.Tensor:
        """:data:`LINK_INFORMATION_DRAWS` draws of the OFDM / MIMO link's mutual information at ``snr_db`` (bits
        per channel use, seeded per SNR, cached): the success probabilities of the capacity oracle."""
        if snr_db not in self._information:
            seed = int(round(float(snr_db) * 1000)) % 2**31
            self._information[snr_db] = self.channel_module.mutual_information(
                self.k, float(snr_db), batch_size=LINK_INFORMATION_DRAWS, generator=torch.Generator().manual_seed(seed))
        return self._information[snr_db]

    def choose(self, design, snr_db: float) -> OperatingPoint | None:
        """The operating point used at test SNR ``snr_db`` under policy ``design`` (None: always fallback)."""
        if design == "match":
            design = snr_db
        if isinstance(design, (int, float)):
            if self.link == "capacity":
                return self.capacity_point(design)
            tables = {m: self.table(m) for m in L.feasible_mcs(self.k)}
            mcs = L.design_mcs(self.k, design, tables=tables)  # over OFDM / MIMO too: the MCS for AWGN at the design
            return None if mcs is None else self.ldpc_point(mcs)
        if design == "oracle" and self.channel_module is not None and self.link == "ldpc":
            raise ValueError(f"the LDPC oracle over {self.channel} is not implemented (it needs Monte-Carlo BLERs "
                             "through the link); use a design SNR or a fixed MCS")
        if design != "oracle":
            if self.link == "ldpc" and isinstance(design, (str, L.MCS)):
                return self.ldpc_point(design)  # a fixed MCS, e.g. "QPSK-r1/2"
            raise ValueError(f"design must be a design SNR in dB, 'oracle', 'match' or (LDPC) an MCS name, got {design!r}")
        deterministic = self.link == "capacity" and self.channel == "awgn"
        if self.link == "ldpc" and self.channel == "awgn":
            points = self.ldpc_awgn_oracle_candidates(snr_db)
        else:
            points = oracle_candidates(self.candidates(), snr_db, deterministic)
        if not points:
            return None
        self.code([p.budget_bytes for p in points])
        p_ok = np.array([self.success_probability(p, snr_db) for p in points])
        quality = np.array([self.psnr_delivered(p).mean() for p in points])
        fallback = float(_psnr(self.fallback_mse).mean())
        best, expected = L.expected_quality_choice(p_ok, quality, fallback)
        return oracle_pick(points, expected, fallback, deterministic)

    def ldpc_awgn_oracle_candidates(self, snr_db: float) -> list[OperatingPoint]:
        """The LDPC oracle's candidates at AWGN SNR ``snr_db``, most payload first: MCSs above
        capacity there (BLER ~1: only the fallback) are left out, and so is every MCS after the
        first one that delivers every image (BLER 0), whose budgets are no larger (same or worse
        delivery of a smaller budget; this assumes the codec's quality does not drop with a larger
        budget, which its rate control's search over quantisers makes hold up to its step). Only
        these MCSs' tables are read, at the one or two points around ``snr_db``."""
        kept = []
        for point in sorted(self.candidates(), key=lambda p: -p.bits):
            if snr_db < L.transport_block_layout(self.k, point.mcs).shannon_limit_db:
                continue
            kept.append(point)
            if self.success_probability(point, snr_db) == 1.0:
                break
        return kept

    # ------------------------------------------------------------------ transmission
    def delivered(self, point: OperatingPoint | None, snr_db: float, generator: torch.Generator) -> np.ndarray:
        """bool ``(N,)``: which images the link delivers in one channel draw."""
        n = len(self.images)
        if point is None:
            return np.zeros(n, dtype=bool)
        if self.link == "capacity":
            if self.channel_module is not None:  # a code of rate R gets through iff the draw's information >= R
                info = self.channel_module.mutual_information(self.k, float(snr_db), batch_size=n, generator=generator)
                return (info >= point.bits / self.k).numpy()
            if self.channel == "awgn":
                ok = L.capacity_awgn_success(torch.full((n,), float(snr_db)), point.design_snr_db)
            else:
                ok, _ = L.capacity_rayleigh_success(point.bits, self.k, float(snr_db), batch_size=n, generator=generator)
            return ok.numpy()
        if self.ldpc_mode == "cached":
            ok, _ = L.simulate_success(self.k, point.mcs, float(snr_db), channel=self.channel, batch_size=n,
                                       table=self.table(point.mcs), generator=generator)
            return ok.numpy()
        return self._send_exact(point, snr_db, generator)

    def _send_exact(self, point: OperatingPoint, snr_db: float, generator: torch.Generator) -> np.ndarray:
        """The bit-level chain carrying each image's counted codestream bytes; ok = CRC pass and bytes intact."""
        results = self._results[point.budget_bytes]
        payloads = [b"" if r is None else r.data[len(r.data) - r.counted_bytes:] for r in results]
        link = L.get_link(self.k, point.mcs)
        ok, received, _ = link.send_bytes(payloads, float(snr_db), channel=self.channel_module or self.channel,
                                          generator=generator)
        ok = ok.numpy() & np.array([rx[: len(tx)] == tx for rx, tx in zip(received, payloads)])
        return ok & np.array([r is not None for r in results])

    def sweep(self, snr_db: Sequence[float], design, *, n_channel_draws: int = 10, seed: int = 0) -> dict:
        """Metrics per test SNR: ``{"metrics", "points", "delivery"}`` (``points``: the operating point used
        per SNR; ``delivery``: the results file's counts of (image, draw) pairs per SNR that showed the
        codec's reconstruction, ``delivered``, or the fallback, ``fell_back``)."""
        generator = torch.Generator().manual_seed(seed)
        acc = MetricAccumulator()
        points, delivered = [], []
        for i, snr in enumerate(tqdm(list(snr_db), desc="baseline", disable=not self.progress, leave=False)):
            point = self.choose(design, float(snr))
            points.append(point)
            mse_ok = self.fallback_mse if point is None else self._source_mse(point)
            scores_ok = self._source_scores(point)
            fits = np.array([r is not None for r in self._results[point.budget_bytes]]) if point is not None else False
            delivered.append(0)
            for _ in range(n_channel_draws):
                ok = self.delivered(point, float(snr), generator)
                delivered[-1] += int((ok & fits).sum())
                mse = np.where(ok, mse_ok, self.fallback_mse)
                acc.add(i, "psnr", torch.from_numpy(_psnr(mse)))
                acc.add(i, "mse", torch.from_numpy(mse))
                for m in self.metrics:
                    acc.add(i, m, torch.from_numpy(np.where(ok, scores_ok[m], self.fallback_scores[m])))
        shown = len(self.images) * n_channel_draws
        return {"metrics": acc.summary(), "points": points,
                "delivery": delivery_counts("image x channel draw", delivered, shown)}

    def _source_mse(self, point: OperatingPoint) -> np.ndarray:
        self.code([point.budget_bytes])
        return self._source[point.budget_bytes]

    def _source_scores(self, point: OperatingPoint | None) -> dict[str, np.ndarray]:
        """Per-image :attr:`metrics` when ``point``'s bytes are delivered (scored once per budget)."""
        if point is None:
            return self.fallback_scores
        b = point.budget_bytes
        if b not in self._source_extra:
            self.code([b])
            results = self._results[b]
            scores = {m: v.copy() for m, v in self.fallback_scores.items()}
            fits = [i for i, r in enumerate(results) if r is not None]
            if fits:
                for m, v in self._scores([results[i].reconstruction for i in fits], fits).items():
                    scores[m][fits] = v
            self._source_extra[b] = scores
        return self._source_extra[b]


def oracle_candidates(points: Sequence[OperatingPoint], snr_db: float, awgn_capacity: bool) -> list[OperatingPoint]:
    """The oracle's candidates at test SNR ``snr_db``. On AWGN a capacity code succeeds iff
    ``snr_db >= design``: the other designs deliver only the fallback, so only the designs
    ``<= snr_db`` are kept (and coded); every candidate otherwise."""
    return [p for p in points if p.design_snr_db <= snr_db] if awgn_capacity else list(points)


def oracle_pick(points: Sequence[OperatingPoint], expected_psnr: Sequence[float] | np.ndarray, fallback_psnr: float,
                awgn_capacity: bool) -> OperatingPoint | None:
    """The candidate of highest expected PSNR (ties: the first). With :func:`oracle_candidates`'
    AWGN capacity rule, None (send nothing: the fallback) when even the best is worse than the
    fallback (a codestream can be, at tiny budgets with ``full`` accounting): exactly the best of a
    search over the whole design grid."""
    best = int(np.argmax(expected_psnr))
    return None if awgn_capacity and expected_psnr[best] < fallback_psnr else points[best]


def delivery_counts(unit: str, delivered: Sequence[int], total: int) -> dict:
    """The results file's ``delivery`` entry: per SNR, how many ``unit`` s (of ``total``) showed the codec's
    reconstruction (the link delivered a codestream that fits the budget) and how many fell back."""
    return {"unit": unit, "delivered": [int(d) for d in delivered], "fell_back": [int(total - d) for d in delivered]}


def _chw(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 ``(3, H, W)`` tensor of an ``(H, W, 3)`` array in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().to(device)


def _psnr(mse: np.ndarray) -> np.ndarray:
    return -10.0 * np.log10(np.maximum(mse, 10 ** (-PSNR_CAP_DB / 10)))


def _cb_scaled_note(baseline: SeparateBaseline) -> str:
    """Which BLER tables used were code-block scaled (``channels.links.bler_table``), for the results notes."""
    scaled = [t for _, t in sorted(baseline._tables.items()) if t.cb_scaled]
    if not scaled:
        return ""
    return ("; code-block-scaled BLER tables (1 - (1 - BLER_cb)^C from a single-code-block surrogate TB): "
            + ", ".join(f"{t.key['mcs']} (C={t.key['num_code_blocks']}, surrogate k={t.key['surrogate_k']})"
                        for t in scaled))


def check_link(link: str, channel: str) -> None:
    """ValueError unless ``link`` is one of :data:`LINKS` and ``channel`` is awgn or rayleigh."""
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; expected one of {LINKS}")
    if channel not in ("awgn", "rayleigh"):
        raise ValueError(f"unknown channel {channel!r} for the separate baseline; expected awgn or rayleigh")


def design_label(design) -> str:
    """File-name label of a policy: ``design10dB``, ``oracle``, ``QPSK-r1_2``."""
    return f"design{design:g}dB" if isinstance(design, (int, float)) else str(design).replace("/", "_")


def point_labels(points) -> list[str]:
    """Operating-point labels of a sweep (``"none"`` where nothing was sent)."""
    return ["none" if p is None else p.label for p in points]


def separate_results(b, snr_db: Sequence[float], design, out: dict, *, name: str, dataset_name: str, n_examples: int,
                     n_channel_draws: int, seed: int, command: str | None, notes: str) -> dict:
    """The ``jscc-results/1`` dict of a separate baseline ``b`` (image or video) from its ``sweep`` output."""
    from jscc.results import bandwidth_ratio_str, provenance

    results = {
        "schema": "jscc-results/1",
        "name": name,
        "method": "separate",
        "dataset": {"name": dataset_name, "n_images": n_examples},
        "channel": (b.channel_module.channel_config() if getattr(b, "channel_module", None) is not None else
                    {"name": b.channel, "csi": "receiver" if b.channel == "rayleigh" else "none", "block_length": None}),
        "k": b.k,
        "bandwidth_ratio": b.k / b.n,
        "bandwidth_ratio_str": bandwidth_ratio_str(b.k, b.n),
        "design_snr_db": float(design) if isinstance(design, (int, float)) else None,
        "codec": b.codec.name,
        "link": b.link,
        "byte_accounting": b.accounting,
        "fallback": b.fallback,
        "snr_db": [float(s) for s in snr_db],
        "metrics": out["metrics"],
        "n_channel_draws": n_channel_draws,
        "provenance": provenance(command=command, seed=seed, lpips_backbones=M.lpips_backbone_sources(b.metrics)),
        "notes": notes + _cb_scaled_note(b),
    }
    if "delivery" in out:
        results["delivery"] = out["delivery"]
    if b.link == "ldpc":
        results["mcs"] = point_labels(out["points"])
    return results


def baseline_results(baseline: SeparateBaseline, snr_db: Sequence[float], design, *, name: str | None = None,
                     n_channel_draws: int = 10, seed: int = 0, command: str | None = None) -> dict:
    """Run :meth:`SeparateBaseline.sweep` and return the ``jscc-results/1`` dict."""
    b = baseline
    out = b.sweep(snr_db, design, n_channel_draws=n_channel_draws, seed=seed)
    budgets = ["0" if p is None else str(p.budget_bytes) for p in out["points"]]
    notes = (f"codec {b.codec!r}; policy {design}; operating point per SNR: "
             + ", ".join(f"{lab} ({bud} B)" for lab, bud in zip(point_labels(out["points"]), budgets))
             + (f"; LDPC {b.ldpc_mode}" if b.link == "ldpc" else "")
             + "".join(f"; {note}" for note in b.metric_notes))
    return separate_results(b, snr_db, design, out, name=name or f"{b.codec.name}-{b.link}-{b.channel}-{b.accounting}-"
                            f"{design_label(design)}", dataset_name=b.dataset.name, n_examples=len(b.images),
                            n_channel_draws=n_channel_draws, seed=seed, command=command, notes=notes)
