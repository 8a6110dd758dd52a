"""OFDM link on Sionna's blocks: resource grid, 3GPP TDL multipath, pilots, LS estimation, equalisation.

::

    z (B, k) ─► data REs of G = ceil(k / D) resource grids ─► H (TDL-A..E / flat / none) ─► + n
              ─► LS estimate from the pilots (or perfect CSI) ─► ZF / LMMSE per RE ─► y (B, k)

Built on ``sionna.phy.ofdm`` (``ResourceGrid``, ``ResourceGridMapper``, ``LSChannelEstimator``,
``ZFEqualizer``), ``sionna.phy.channel`` (``GenerateOFDMChannel`` + ``ApplyOFDMChannel`` over
``tr38901.TDL`` or ``RayleighBlockFading``) and ``sionna.phy.mimo.StreamManagement`` (one
transmitter, one receiver, one stream); Sionna is imported when the link is first used.

Conventions (README, Conventions: "SNR and noise"; the OFDM issue's accounting):

- **A channel use is a data resource element (RE).** The ``k`` symbols of an example fill the data
  REs of ``G = ceil(k / D)`` grids in Sionna's order (OFDM symbol major, then subcarrier), ``D`` data
  REs per grid; the rest of the last grid is zero (padding). Pilots and the cyclic prefix are
  overhead, counted by :meth:`OFDM.accounting`. The default grid is close to a 5G NR slot:
  14 OFDM symbols, 72 subcarriers (6 resource blocks) at 30 kHz, the normal cyclic prefix
  ``round(fft_size * 144 / 2048)`` samples, Kronecker pilots on OFDM symbols 2 and 11: ``D = 864``
  data REs and 144 pilot REs per grid.
- **SNR** is Es/N0 per RE: ``N0 = P / 10^(snr_db / 10)`` per complex RE, per example, as on AWGN;
  pilots have unit power (``P``-scaled). ``E|H|^2 = 1`` on average over the channel's draws.
- **Fading**: each grid of each example draws its own channel (grids are separate slots). ``tdl-a``
  .. ``tdl-e``: 3GPP TR 38.901 TDL with ``delay_spread`` and a UE at ``speed`` (Doppler at
  ``carrier_frequency``); frequency-domain model, i.e. a cyclic prefix longer than the channel
  (no inter-symbol interference). ``flat``: one Rayleigh ``h ~ CN(0, 1)`` per grid. ``none``:
  ``H = 1`` (AWGN on the grid; for tests and references).
- **CSI**: ``perfect`` (the true ``H``) or ``ls`` (least squares at the pilots, interpolated:
  ``nn``, ``lin`` or ``lin_time_avg``). Equalisation per RE: ``zf`` (``y / H_hat``, Sionna's
  ``ZFEqualizer``; for one antenna also what Sionna's unbiased LMMSE equaliser returns) or
  ``mmse`` (the biased MMSE estimate ``y_zf / (1 + N0_eff / P)``, which is
  ``conj(H) y / (|H|^2 + N0 / P)`` with perfect CSI, as :func:`~channels.equalize`), or ``side``: no
  equalisation, the decoder gets the raw data REs ``y = H z + n`` and, as side input ``h``, the channel at
  those REs (the true ``H`` with ``perfect``, the LS estimate from the pilot observations with ``ls``).
  ``csi="none"``: the raw data REs alone (the pilots are still sent and charged, nothing uses them).
- **Randomness**: the channel is drawn by Sionna from its own generator, seeded per call from
  ``generator`` (Sionna's state is restored afterwards); the noise comes from ``generator``. The
  pilots are fixed (drawn once, seed 0). Draws depend on the batch size, as everywhere.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import torch
from torch import Tensor, nn

from .awgn import _complex_normal, _noise_var, _resolve_snr_db
from .power import SnrDb, _check_power, _check_symbols, snr_db_to_lin

__all__ = ["OFDM", "OFDM_MODELS", "OFDM_CSI", "OFDM_EQUALIZATIONS", "OFDM_INTERPOLATIONS"]

OFDM_MODELS = ("tdl-a", "tdl-b", "tdl-c", "tdl-d", "tdl-e", "flat", "none")
OFDM_CSI = ("perfect", "ls", "none")
OFDM_EQUALIZATIONS = ("zf", "mmse", "side")
OFDM_INTERPOLATIONS = ("nn", "lin", "lin_time_avg")
PILOT_SEED = 0  # the Kronecker pilots (QPSK) are drawn once from Sionna's generator seeded with this


def _check_positive(value, name: str, kind=numbers.Real) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive {'integer' if kind is numbers.Integral else 'number'}, "
                         f"got {value!r}")


class _SionnaBlocks:
    """The Sionna blocks of one :class:`OFDM` configuration on one device (built once, cached)."""

    def __init__(self, link: "OFDM", device: torch.device):
        import numpy as np
        from sionna.phy import config
        from sionna.phy.channel import ApplyOFDMChannel, GenerateOFDMChannel, RayleighBlockFading
        from sionna.phy.channel.tr38901 import TDL
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import LSChannelEstimator, ResourceGrid, ResourceGridMapper, ZFEqualizer

        dev = str(device)
        self.rng = config.torch_rng(dev)
        with self.seeded(PILOT_SEED):  # the pilots are drawn when the grid is built
            self.grid = ResourceGrid(num_ofdm_symbols=link.num_ofdm_symbols, fft_size=link.fft_size,
                                     subcarrier_spacing=link.subcarrier_spacing, num_tx=1, num_streams_per_tx=1,
                                     cyclic_prefix_length=link.cyclic_prefix_length, pilot_pattern="kronecker",
                                     pilot_ofdm_symbol_indices=list(link.pilot_ofdm_symbols), device=dev)
        streams = StreamManagement(np.ones([1, 1]), 1)
        self.mapper = ResourceGridMapper(self.grid, device=dev)
        if link.model.startswith("tdl"):
            fading = TDL(link.model[-1].upper(), delay_spread=link.delay_spread,
                         carrier_frequency=link.carrier_frequency, min_speed=link.speed, max_speed=link.speed,
                         device=dev)
        elif link.model == "flat":
            fading = RayleighBlockFading(1, 1, 1, 1, device=dev)
        else:
            fading = None
        self.generate = None if fading is None else GenerateOFDMChannel(fading, self.grid, device=dev)
        self.apply = ApplyOFDMChannel(device=dev)
        self.estimator = LSChannelEstimator(self.grid, interpolation_type=link.interpolation, device=dev)
        self.equalizer = ZFEqualizer(self.grid, streams, device=dev)

    @contextlib.contextmanager
    def seeded(self, seed: int):
        """Sionna's generator seeded with ``seed`` inside the block, its state restored after."""
        state = self.rng.get_state()
        self.rng.manual_seed(int(seed))
        try:
            yield
        finally:
            self.rng.set_state(state)


class OFDM(nn.Module):
    """OFDM link over a frequency-selective channel with pilots, channel estimation and equalisation.

    Args:
        snr_db: default Es/N0 per data RE in dB (overridden by the call-time value).
        model: ``"tdl-a"`` .. ``"tdl-e"``, ``"flat"`` or ``"none"`` (see the module docstring).
        delay_spread: TDL RMS delay spread in seconds (> 0).
        speed: UE speed in m/s (>= 0; Doppler at ``carrier_frequency``).
        carrier_frequency: Hz (> 0).
        fft_size: subcarriers per OFDM symbol (all used; >= 1).
        num_ofdm_symbols: OFDM symbols per grid (slot).
        subcarrier_spacing: Hz.
        cyclic_prefix_length: samples; None = the NR normal CP, ``round(fft_size * 144 / 2048)``.
        pilot_ofdm_symbols: indices of the OFDM symbols that carry pilots (all subcarriers).
        csi: ``"perfect"``, ``"ls"`` or ``"none"`` (raw data REs, no equalisation).
        interpolation: LS interpolation, ``"nn"``, ``"lin"`` or ``"lin_time_avg"``.
        equalization: ``"mmse"`` (default), ``"zf"`` or ``"side"`` (raw data REs and ``h``, the true or
            estimated channel there, for a decoder with side input).
        clip_db: clip each OFDM symbol's time-domain samples at this many dB above its RMS amplitude
            (PAPR reduction; the clipping distortion then goes through the channel); None = no clipping.
        power: nominal signal power ``P`` the SNR refers to (the data symbols' and the pilots').

    ``forward(z, snr_db=None, *, generator=None)`` takes complex symbols ``z`` ``(B, ..., k)``
    (complex64; each leading index is sent on its own grids) and returns ``{"y": y, "noise_var":
    N0_eff, "papr_db": papr}`` (and ``"h"``, complex64 of ``z``'s shape, with ``equalization="side"``):
    ``y`` complex64 of ``z``'s shape, the equalised (or, with ``side`` or ``csi="none"``, raw) data REs in ``z``'s
    order; ``N0_eff`` float32 of ``z``'s shape, the post-equalisation noise variance per RE (Sionna's,
    which leaves out the interpolation error of LS); ``papr`` float32 ``(*z.shape[:-1], G * symbols)``,
    the peak-to-average power ratio of each transmitted OFDM symbol (after clipping) in dB.
    Differentiable w.r.t. ``z``.
    """

    name = "ofdm"

    def __init__(
        self,
        snr_db: SnrDb | None = None,
        *,
        model: str = "tdl-a",
        delay_spread: float = 100e-9,
        speed: float = 3.0,
        carrier_frequency: float = 3.5e9,
        fft_size: int = 72,
        num_ofdm_symbols: int = 14,
        subcarrier_spacing: float = 30e3,
        cyclic_prefix_length: int | None = None,
        pilot_ofdm_symbols: tuple[int, ...] | list[int] = (2, 11),
        csi: str = "ls",
        interpolation: str = "lin",
        equalization: str = "mmse",
        clip_db: float | None = None,
        power: float = 1.0,
    ):
        super().__init__()
        for name, allowed, value in (("model", OFDM_MODELS, model), ("csi", OFDM_CSI, csi),
                                     ("interpolation", OFDM_INTERPOLATIONS, interpolation),
                                     ("equalization", OFDM_EQUALIZATIONS, equalization)):
            if value not in allowed:
                raise ValueError(f"unknown OFDM {name} {value!r}; choose one of {', '.join(allowed)}")
        for name, value in (("fft_size", fft_size), ("num_ofdm_symbols", num_ofdm_symbols)):
            _check_positive(value, name, numbers.Integral)
        for name, value in (("delay_spread", delay_spread), ("carrier_frequency", carrier_frequency),
                            ("subcarrier_spacing", subcarrier_spacing)):
            _check_positive(value, name)
        if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not math.isfinite(speed) or speed < 0:
            raise ValueError(f"speed must be a number >= 0 (m/s), got {speed!r}")
        if cyclic_prefix_length is None:
            cyclic_prefix_length = round(fft_size * 144 / 2048)
        if isinstance(cyclic_prefix_length, bool) or not isinstance(cyclic_prefix_length, numbers.Integral) \
                or not 0 <= cyclic_prefix_length <= fft_size:
            raise ValueError(f"cyclic_prefix_length must be an integer in [0, fft_size={fft_size}], "
                             f"got {cyclic_prefix_length!r}")
        pilots = tuple(int(i) for i in pilot_ofdm_symbols)
        if not pilots or len(set(pilots)) != len(pilots) or not all(0 <= i < num_ofdm_symbols for i in pilots) \
                or len(pilots) >= num_ofdm_symbols:
            raise ValueError(f"pilot_ofdm_symbols must be distinct indices in [0, {num_ofdm_symbols}) leaving at least "
                             f"one data symbol, got {list(pilot_ofdm_symbols)}")
        if clip_db is not None and (isinstance(clip_db, bool) or not isinstance(clip_db, numbers.Real)
                                    or not math.isfinite(clip_db)):
            raise ValueError(f"clip_db must be a finite number of dB (or None), got {clip_db!r}")
        if snr_db is not None:
            snr_db_to_lin(snr_db)
        _check_power(power)
        self.snr_db, self.clip_db = snr_db, None if clip_db is None else float(clip_db)
        self.model, self.delay_spread, self.speed = model, float(delay_spread), float(speed)
        self.carrier_frequency = float(carrier_frequency)
        self.fft_size, self.num_ofdm_symbols = int(fft_size), int(num_ofdm_symbols)
        self.subcarrier_spacing, self.cyclic_prefix_length = float(subcarrier_spacing), int(cyclic_prefix_length)
        self.pilot_ofdm_symbols = pilots
        self.csi, self.interpolation, self.equalization = csi, interpolation, equalization
        self.power = float(power)
        self._blocks: dict[str, _SionnaBlocks] = {}

    # ------------------------------------------------------------------ accounting
    @property
    def pilot_res_per_grid(self) -> int:
        """Pilot REs per grid (every subcarrier of every pilot OFDM symbol)."""
        return len(self.pilot_ofdm_symbols) * self.fft_size

    @property
    def data_res_per_grid(self) -> int:
        """Data REs (channel uses) per grid, ``D``."""
        return self.num_ofdm_symbols * self.fft_size - self.pilot_res_per_grid

    def accounting(self, k: int, n: int | None = None) -> dict:
        """What sending ``k`` symbols costs: ``grids`` G, ``data_res`` k, ``padding_res`` (unused data REs of
        the last grid), ``pilot_res``, ``time_samples`` (with the cyclic prefix), and the overhead ratios
        ``res_per_channel_use`` (all REs of the G grids / k) and ``samples_per_channel_use``; with ``n``
        source samples also ``bandwidth_ratio_with_pilots`` (all REs / n)."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        grids = math.ceil(k / self.data_res_per_grid)
        res = grids * self.num_ofdm_symbols * self.fft_size
        samples = grids * self.num_ofdm_symbols * (self.fft_size + self.cyclic_prefix_length)
        out = {"grids": grids, "data_res": int(k), "padding_res": grids * self.data_res_per_grid - int(k),
               "pilot_res": grids * self.pilot_res_per_grid, "time_samples": samples,
               "res_per_channel_use": res / k, "samples_per_channel_use": samples / k}
        return out if n is None else out | {"bandwidth_ratio_with_pilots": res / n}

    # ------------------------------------------------------------------ the link
    def _sionna(self, device: torch.device) -> _SionnaBlocks:
        key = str(device)
        if key not in self._blocks:
            self._blocks[key] = _SionnaBlocks(self, device)
        return self._blocks[key]

    def _channel(self, blocks: _SionnaBlocks, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """``H`` ``[n, 1, 1, 1, 1, symbols, fft]`` complex."""
        if blocks.generate is None:
            return torch.ones(n, 1, 1, 1, 1, self.num_ofdm_symbols, self.fft_size, dtype=like.dtype, device=like.device)
        if generator is None:
            return blocks.generate(n)
        with blocks.seeded(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))):
            return blocks.generate(n)

    def mutual_information(self, k: int, snr_db: SnrDb, *, batch_size: int,
                           generator: torch.Generator | None = None) -> Tensor:
        """Gaussian-input mutual information of ``batch_size`` fresh channel draws, in bits per channel use:
        per example, the mean of ``log2(1 + |H|^2 P / N0)`` over the ``k`` data REs it would occupy (perfect
        CSI at the receiver). A capacity-achieving code of rate ``R`` (bits per data RE) gets through iff it
        is ``>= R``; its mean over draws is the ergodic capacity of the link. float64 ``(batch_size,)``."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        like = torch.zeros(batch_size, 1, dtype=torch.complex64)
        snr = snr_db_to_lin(torch.as_tensor(snr_db, dtype=torch.float64)).expand(batch_size).reshape(batch_size, 1)
        grids = math.ceil(k / self.data_res_per_grid)
        h = self._channel(self._sionna(like.device), batch_size * grids, generator, like)
        data = [i for i in range(self.num_ofdm_symbols) if i not in self.pilot_ofdm_symbols]  # no guards: whole rows
        gain = h.reshape(batch_size * grids, self.num_ofdm_symbols, self.fft_size)[:, data].abs().square()
        gain = gain.reshape(batch_size, grids * self.data_res_per_grid)[:, :k].double()
        return torch.log2(1 + gain * snr).mean(1)

    def forward(self, z: Tensor, snr_db: SnrDb | None = None, *, generator: torch.Generator | None = None) -> dict:
        _check_symbols(z, min_ndim=2)
        if z.dtype != torch.complex64:
            raise ValueError(f"z must be complex64, got {z.dtype}")
        snr_db = _resolve_snr_db(snr_db, self.snr_db)
        blocks = self._sionna(z.device)
        shape, k = z.shape, z.shape[-1]
        d = self.data_res_per_grid
        grids = math.ceil(k / d)
        n_ex = z[..., 0].numel()
        noise_var = _noise_var(z, snr_db, self.power).expand(*shape[:-1], 1).reshape(n_ex)  # N0 per example
        x = nn.functional.pad(z.reshape(n_ex, k), (0, grids * d - k)).reshape(n_ex * grids, 1, 1, d)
        pilots_scale = self.power ** 0.5
        x_grid = blocks.mapper(x / pilots_scale) * pilots_scale  # pilots at power P like the data
        x_grid, papr_db = self._clip(x_grid)
        h = self._channel(blocks, n_ex * grids, generator, z)
        no = noise_var.repeat_interleave(grids)
        y = blocks.apply(x_grid, h)
        y = y + _complex_normal(y, y.shape, generator) * no.sqrt().reshape(-1, 1, 1, 1, 1)
        # The equaliser works at unit pilot power: scale y by 1/sqrt(P) (noise N0/P).
        y_unit, no_unit = y / pilots_scale, no / self.power
        if self.csi == "none" or self.equalization == "side":
            out = {"y": self._data_res(y, n_ex, k).reshape(shape).to(torch.complex64),
                   "noise_var": noise_var.reshape(n_ex, 1).expand(n_ex, k).reshape(shape).to(torch.float32),
                   "papr_db": papr_db.reshape(*shape[:-1], grids * self.num_ofdm_symbols).to(torch.float32)}
            if self.csi != "none":  # the channel at the data REs: true, or estimated from the pilots
                h_hat = h if self.csi == "perfect" else blocks.estimator(y_unit.detach(), no_unit)[0]
                out["h"] = self._data_res(h_hat, n_ex, k).reshape(shape).to(torch.complex64)
            return out
        if self.csi == "perfect":
            h_hat, err_var = h, torch.zeros((), dtype=no.dtype, device=no.device)
        else:  # the pilot REs do not depend on z: no gradient is lost by detaching y here
            h_hat, err_var = blocks.estimator(y_unit.detach(), no_unit)
        x_hat, no_eff = blocks.equalizer(y_unit, h_hat, err_var, no_unit)  # [n*G, 1, 1, D], unit power
        x_hat, no_eff = x_hat.reshape(n_ex, grids * d)[:, :k], no_eff.reshape(n_ex, grids * d)[:, :k]
        if self.equalization == "mmse":
            x_hat = x_hat / (1 + no_eff)
            no_eff = no_eff / (1 + no_eff)  # error variance of the biased estimate (unit power, exact CSI)
        return {"y": (x_hat * pilots_scale).reshape(shape).to(torch.complex64),
                "noise_var": (no_eff * self.power).reshape(shape).to(torch.float32),
                "papr_db": papr_db.reshape(*shape[:-1], grids * self.num_ofdm_symbols).to(torch.float32)}

    def _data_res(self, grid: Tensor, n_ex: int, k: int) -> Tensor:
        """The data REs of grids ``[n_ex G, ..., symbols, fft]`` (whole OFDM symbols without pilots) in the
        mapper's order -> ``(n_ex, k)``."""
        data = [i for i in range(self.num_ofdm_symbols) if i not in self.pilot_ofdm_symbols]
        res = grid.reshape(-1, self.num_ofdm_symbols, self.fft_size)[:, data]
        return res.reshape(n_ex, -1)[:, :k]

    def _clip(self, x_grid: Tensor) -> tuple[Tensor, Tensor]:
        """Time-domain view of each OFDM symbol (``ifft`` over the subcarriers; the cyclic prefix repeats
        samples and changes no peak): clip at ``clip_db`` above its RMS when set, back to the subcarriers.
        Returns the grid and the PAPR (dB) of each OFDM symbol ``(n, symbols)``."""
        t = torch.fft.ifft(x_grid, dim=-1, norm="ortho")
        rms = t.abs().square().mean(-1, keepdim=True).sqrt()
        if self.clip_db is not None:
            limit = rms * 10 ** (self.clip_db / 20)
            t = t * torch.clamp(limit / t.abs().clamp_min(1e-30), max=1.0)
            x_grid = torch.fft.fft(t, dim=-1, norm="ortho")
        peak = t.abs().square().amax(-1) / rms.squeeze(-1).square().clamp_min(1e-30)
        return x_grid, 10 * torch.log10(peak).reshape(x_grid.shape[0], self.num_ofdm_symbols)

    def channel_config(self) -> dict:
        """The ``channel`` entry of a results file (with the grid's RE counts)."""
        return {"name": self.name, "csi": self.csi, "block_length": None, "equalization": self.equalization,
                "model": self.model, "delay_spread": self.delay_spread, "speed": self.speed,
                "carrier_frequency": self.carrier_frequency, "fft_size": self.fft_size,
                "num_ofdm_symbols": self.num_ofdm_symbols, "subcarrier_spacing": self.subcarrier_spacing,
                "cyclic_prefix_length": self.cyclic_prefix_length, "pilot_ofdm_symbols": list(self.pilot_ofdm_symbols),
                "interpolation": self.interpolation, "clip_db": self.clip_db,
                "data_res_per_grid": self.data_res_per_grid, "pilot_res_per_grid": self.pilot_res_per_grid}

    def extra_repr(self) -> str:
        return (f"snr_db={self.snr_db}, model={self.model!r}, delay_spread={self.delay_spread:g}, speed={self.speed:g}, "
                f"fft_size={self.fft_size}, num_ofdm_symbols={self.num_ofdm_symbols}, csi={self.csi!r}, "
                f"interpolation={self.interpolation!r}, equalization={self.equalization!r}, power={self.power}")
