"""MIMO link: ``Nr x Nt`` i.i.d. Rayleigh, spatial multiplexing with an LMMSE / ZF receiver (Sionna's
``sionna.phy.mimo`` equalisers) or SVD precoding with CSI at the transmitter.

::

    z (B, k) ─► T = ceil(k / S) slots x S streams ─► [V diag(sqrt(p))] ─► y = H x + n ─► LMMSE / ZF (CSI at
              the receiver) or U^H y per eigenmode (CSI at the transmitter) ─► y (B, k)

Conventions:

- **A channel use is one stream in one time slot**: the ``k`` symbols of an example fill ``T``
  slots of ``S`` streams in slot-major order (``S = Nt`` with CSI only at the receiver, ``S =
  min(Nt, Nr)`` eigenmodes with CSI at the transmitter); the rest of the last slot is zero
  (padding, counted by :meth:`MIMO.accounting`).
- **Power and SNR**: a slot sends total power ``P`` across its antennas (each of its ``S`` stream
  symbols ``z_i``, of power ``P`` after the system's normalisation, goes out with power ``P / S``), and
  ``snr_db`` is ``P / N0`` with ``N0 = P / 10^(snr_db / 10)`` per receive antenna, per example: the average
  SNR at each receive antenna, as for the single-antenna channels. The equalised ``y`` estimates ``z``
  itself (power ``P`` per symbol).
- **Fading**: ``H`` has i.i.d. ``CN(0, 1)`` entries, one draw per example (``block_length=None``,
  slow fading as the Rayleigh channel's default) or a new one every ``block_length`` slots.
- **CSI at the receiver** (``csi="receiver"``): every transmit antenna carries its own stream;
  Sionna's ``lmmse_equalizer`` (unbiased per stream, channel ``H / sqrt(S)``, noise covariance
  ``N0/P I``) or ``zf_equalizer``; ``equalization="mmse"`` returns the biased estimate ``x_u / (1 + N0_eff / P)``
  (as :class:`~channels.OFDM`), ``"zf"`` the zero-forcing one.
- **CSI at the transmitter** (``csi="transmitter"``): ``H = U diag(sigma) V^H``; the transmitter sends
  ``V diag(sqrt(p)) z`` with ``sum(p) = 1`` (``power_allocation="equal"``: ``p = 1 / S``;
  ``"waterfilling"``: ``p_i = max(0, mu - N0 / (P sigma_i^2))``, the capacity-achieving allocation over
  the eigenmodes), the receiver ``U^H y``: ``S`` parallel channels ``sigma_i sqrt(p_i) z_i + n_i``,
  equalised per mode (ZF, or MMSE ``conj(a) r / (|a|^2 + N0/P)``). A mode given no power carries
  nothing: its symbols are received as 0 (MMSE) and its noise variance is ``P`` (the symbol's own).

Randomness: ``H`` and the noise come from ``generator``, ``H`` first.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from .awgn import _complex_normal, _noise_var, _resolve_snr_db
from .power import SnrDb, _check_power, _check_symbols, snr_db_to_lin

__all__ = ["MIMO", "MIMO_CSI", "MIMO_POWER_ALLOCATIONS", "parse_antennas", "waterfilling"]

MIMO_CSI = ("receiver", "transmitter")
MIMO_POWER_ALLOCATIONS = ("equal", "waterfilling")


def parse_antennas(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"NrxNt"`` (e.g. ``"2x2"``, receive x transmit antennas) or a pair -> ``(Nr, Nt)``, each >= 1."""
    try:
        pair = tuple(int(v) for v in (text.lower().split("x") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"antennas must be 'NrxNt' with Nr, Nt >= 1 (e.g. 2x2), got {text!r}")
    return pair


def waterfilling(gains: Tensor, total: float | Tensor) -> Tensor:
    """Water-filling powers ``p`` over parallel channels of SNR gains ``g`` (``g_i = sigma_i^2 P / N0``):
    ``p_i = max(0, mu - 1 / g_i)`` with ``sum(p) = total``, per example.

    Args:
        gains: real ``(..., S)`` >= 0.
        total: the power to share (a number or a tensor broadcastable to ``gains[..., :1]``).

    Returns:
        Real ``(..., S)`` powers, >= 0, summing to ``total``.
    """
    inv = 1 / gains.clamp_min(1e-30)
    order = inv.sort(dim=-1).values  # strongest mode first
    n = torch.arange(1, gains.shape[-1] + 1, dtype=gains.dtype, device=gains.device)
    mu = (torch.as_tensor(total, dtype=gains.dtype, device=gains.device) + order.cumsum(-1)) / n
    active = (mu > order).sum(-1, keepdim=True).clamp_min(1)  # modes above the water line
    level = mu.gather(-1, active - 1)
    return (level - inv).clamp_min(0)


class MIMO(nn.Module):
    """MIMO link over an i.i.d. Rayleigh channel (see the module docstring for the conventions).

    Args:
        snr_db: default Es/N0 per channel use in dB (overridden by the call-time value).
        antennas: ``"NrxNt"`` or ``(Nr, Nt)`` (default ``"2x2"``).
        csi: ``"receiver"`` (spatial multiplexing, LMMSE/ZF receiver) or ``"transmitter"`` (SVD precoding).
        equalization: ``"mmse"`` (default) or ``"zf"``.
        power_allocation: with ``csi="transmitter"``: ``"equal"`` (default) or ``"waterfilling"``.
        block_length: slots per channel draw; None = one ``H`` per example.
        power: nominal power ``P`` per channel use (stream symbol); a slot sends ``P`` in all.

    ``forward(z, snr_db=None, *, generator=None)``: complex64 ``z`` ``(B, k)`` -> ``{"y", "noise_var",
    "h"}``: ``y`` complex64 ``(B, k)``, the equalised symbols in ``z``'s order; ``noise_var`` float32
    ``(B, k)``, their error variance (exact CSI); ``h`` complex64 ``(B, D, Nr, Nt)``, the ``D`` channel
    draws of each example (for logging and references; the decoder does not get it).
    """

    name = "mimo"

    def __init__(self, snr_db: SnrDb | None = None, *, antennas: str | tuple[int, int] = "2x2",
                 csi: str = "receiver", equalization: str = "mmse", power_allocation: str = "equal",
                 block_length: int | None = None, power: float = 1.0):
        super().__init__()
        self.rx, self.tx = parse_antennas(antennas)
        for name, allowed, value in (("csi", MIMO_CSI, csi), ("equalization", ("mmse", "zf"), equalization),
                                     ("power_allocation", MIMO_POWER_ALLOCATIONS, power_allocation)):
            if value not in allowed:
                raise ValueError(f"unknown MIMO {name} {value!r}; choose one of {', '.join(allowed)}")
        if csi == "receiver" and power_allocation != "equal":
            raise ValueError("power_allocation needs csi='transmitter' (the transmitter must know H)")
        if csi == "receiver" and equalization == "zf" and self.tx > self.rx:
            raise ValueError(f"zero-forcing {self.tx} streams needs at least as many receive antennas, got {self.rx}")
        if block_length is not None and (isinstance(block_length, bool) or not isinstance(block_length, numbers.Integral)
                                         or block_length < 1):
            raise ValueError(f"block_length must be None or an integer >= 1 (slots), got {block_length!r}")
        if snr_db is not None:
            snr_db_to_lin(snr_db)
        _check_power(power)
        self.snr_db, self.csi, self.equalization = snr_db, csi, equalization
        self.power_allocation, self.block_length, self.power = power_allocation, block_length, float(power)

    @property
    def streams(self) -> int:
        """Streams per slot ``S``: ``Nt`` (CSI at the receiver) or ``min(Nt, Nr)`` eigenmodes."""
        return self.tx if self.csi == "receiver" else min(self.tx, self.rx)

    def accounting(self, k: int, n: int | None = None) -> dict:
        """What sending ``k`` symbols takes: ``slots`` T, ``streams`` S, ``channel_uses`` T S and ``padding``
        T S - k; with ``n`` source samples also ``bandwidth_ratio_with_padding`` (T S / n)."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        slots = math.ceil(k / self.streams)
        out = {"slots": slots, "streams": self.streams, "channel_uses": slots * self.streams,
               "padding": slots * self.streams - int(k)}
        return out if n is None else out | {"bandwidth_ratio_with_padding": slots * self.streams / n}

    def mutual_information(self, k: int, snr_db: SnrDb, *, batch_size: int,
                           generator: torch.Generator | None = None) -> Tensor:
        """Gaussian-input mutual information of ``batch_size`` fresh channel draws, in bits per channel use:
        per example, the mean over its ``T`` slots of ``sum_i log2(1 + sigma_i^2 p_i P / N0) / S`` (the
        eigenmodes of ``H``; ``p = 1 / S`` with CSI at the receiver or equal power, water-filling of total 1
        otherwise), i.e. ``log2 det(I + P/(S N0) H H^H) / S`` for equal power. A capacity-achieving code of rate ``R`` bits per
        channel use gets through iff it is ``>= R``. float64 ``(batch_size,)``."""
        slots = self.accounting(k)["slots"]
        draws = 1 if self.block_length is None else math.ceil(slots / self.block_length)
        per_draw = slots if self.block_length is None else self.block_length
        like = torch.zeros(batch_size, 1, dtype=torch.complex64)
        h = _complex_normal(like, (batch_size, draws, self.rx, self.tx), generator).to(torch.complex128)
        snr = snr_db_to_lin(torch.as_tensor(snr_db, dtype=torch.float64)).expand(batch_size).reshape(batch_size, 1, 1)
        gains = torch.linalg.svdvals(h)[..., : self.streams].square() * snr
        p = (waterfilling(gains, 1.0) if self.power_allocation == "waterfilling"
             else torch.full_like(gains, 1 / self.streams))
        info = torch.log2(1 + gains * p).sum(-1) / self.streams  # (B, draws), bits per channel use
        weights = torch.full((draws,), float(per_draw), dtype=torch.float64)
        weights[-1] = slots - per_draw * (draws - 1)  # the last draw may cover fewer slots
        return (info * weights).sum(1) / slots

    def forward(self, z: Tensor, snr_db: SnrDb | None = None, *, generator: torch.Generator | None = None) -> dict:
        from sionna.phy.mimo import lmmse_equalizer, zf_equalizer

        _check_symbols(z, min_ndim=2)
        if z.ndim != 2 or z.dtype != torch.complex64:
            raise ValueError(f"z must be complex64 (B, k), got {z.dtype} {tuple(z.shape)}")
        snr_db = _resolve_snr_db(snr_db, self.snr_db)
        batch, k = z.shape
        s, slots = self.streams, math.ceil(k / self.streams)
        draws = 1 if self.block_length is None else math.ceil(slots / self.block_length)
        n0 = _noise_var(z, snr_db, self.power).expand(batch, 1).reshape(batch, 1, 1)  # N0 per example
        h = _complex_normal(z, (batch, draws, self.rx, self.tx), generator)
        h_slot = h.repeat_interleave(slots if self.block_length is None else self.block_length, dim=1)[:, :slots]
        x = nn.functional.pad(z, (0, slots * s - k)).reshape(batch, slots, s)  # power P per stream symbol
        if self.csi == "receiver":
            h_slot = h_slot / s ** 0.5  # each antenna sends P / S: H x / sqrt(S) carries P per slot
            y = (h_slot @ x.unsqueeze(-1)).squeeze(-1)
            y = y + _complex_normal(y, y.shape, generator) * n0.sqrt()
            scale = self.power ** 0.5  # Sionna's equalisers take unit-power streams
            eye = torch.eye(self.rx, dtype=z.dtype, device=z.device)
            noise_cov = eye * (n0 / self.power).unsqueeze(-1)
            if self.equalization == "zf":
                x_hat, no_eff = zf_equalizer(y / scale, h_slot, noise_cov.expand(batch, slots, -1, -1))
            else:
                x_hat, no_eff = lmmse_equalizer(y / scale, h_slot, noise_cov.expand(batch, slots, -1, -1))
                x_hat, no_eff = x_hat / (1 + no_eff), no_eff / (1 + no_eff)
            x_hat, no_eff = x_hat * scale, no_eff * self.power
        else:
            u, sigma, vh = torch.linalg.svd(h_slot)  # (B, T, Nr, Nr), (B, T, S), (B, T, Nt, Nt)
            gains = sigma.square() * self.power / n0
            p = torch.full_like(sigma, 1 / s) if self.power_allocation == "equal" else waterfilling(gains, 1.0)
            a = (sigma * p.sqrt()).to(z.dtype)  # per-mode amplitude
            tx = (vh.mH[..., :, :s] @ (p.sqrt().to(z.dtype) * x).unsqueeze(-1)).squeeze(-1)
            y = (h_slot @ tx.unsqueeze(-1)).squeeze(-1)
            y = y + _complex_normal(y, y.shape, generator) * n0.sqrt()
            r = (u.mH[..., :s, :] @ y.unsqueeze(-1)).squeeze(-1)  # a_i s_i + CN(0, N0)
            a2 = a.abs().square()
            if self.equalization == "zf":
                live = a2 > 0
                x_hat = torch.where(live, r / torch.where(live, a, torch.ones_like(a)), torch.zeros_like(r))
                no_eff = torch.where(live, n0 / a2.clamp_min(1e-30), torch.full_like(a2, self.power))
            else:
                x_hat = a.conj() * r / (a2 + n0 / self.power)
                no_eff = self.power * (n0 / self.power) / (a2 + n0 / self.power)
        return {"y": x_hat.reshape(batch, slots * s)[:, :k].to(torch.complex64),
                "noise_var": no_eff.reshape(batch, slots * s)[:, :k].to(torch.float32), "h": h}

    def channel_config(self) -> dict:
        """The ``channel`` entry of a results file."""
        return {"name": self.name, "csi": self.csi, "block_length": self.block_length,
                "equalization": self.equalization, "antennas": f"{self.rx}x{self.tx}", "streams": self.streams,
                "power_allocation": self.power_allocation}

    def extra_repr(self) -> str:
        return (f"snr_db={self.snr_db}, antennas={self.rx}x{self.tx}, csi={self.csi!r}, "
                f"equalization={self.equalization!r}, power_allocation={self.power_allocation!r}, "
                f"block_length={self.block_length}, power={self.power}")
