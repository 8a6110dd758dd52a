"""DeepJSCC-Q: constellation-constrained deep JSCC (Tung, Kurka, Jankowski & Gündüz, "DeepJSCC-Q:
Constellation constrained deep joint source-channel coding", IEEE JSAIT 2022).

::

    x ─► DeepJSCC encoder ─► z (B,k) power-normalised ─► soft (training) / hard (evaluation)
         assignment to a fixed constellation C of M points ─► x sqrt(P) ─► channel ─► DeepJSCC decoder ─► x_hat

Every transmitted symbol is a point of a standard constellation (M-QAM or M-PSK, unit average
power over the points), so a trained model runs on a radio that only sends those points. In training
each symbol is the softmax-weighted mean of the points, ``q = sum_m softmax(-|z - c_m|^2 / T)_m c_m``,
differentiable in ``z``; the temperature ``T`` is annealed geometrically from ``temperature`` to
``temperature_min`` over ``anneal_steps`` training steps (the step count is a buffer: it is saved in
checkpoints and a resumed run continues the schedule). In evaluation each symbol is the nearest
point. The points are sent as they are (``sends_constellation = True``: the system scales them by
``sqrt(P)`` and does not renormalise each example), so the radio sends exactly the constellation's
points and the power constraint holds on average over the constellation, as in the paper; an
example's own mean power is that of the points it picks (sweeps record it as ``symbol_power``; the
soft assignments of training have at most the power of the encoder's normalised output).
"""
from __future__ import annotations

import math

import torch

from channels import power_normalize
from jscc.models.deepjscc import DeepJSCC
from jscc.registry import register_model

CONSTELLATIONS = ("4qam", "16qam", "64qam", "8psk", "16psk")


def constellation_points(name: str) -> torch.Tensor:
    """The points of ``name`` (one of :data:`CONSTELLATIONS`) as complex64 ``(M,)`` with unit average
    power: square M-QAM (odd-integer grid, scaled) or M-PSK (``exp(2 pi j m / M)``)."""
    if name not in CONSTELLATIONS:
        raise ValueError(f"unknown constellation {name!r}; choose one of {', '.join(CONSTELLATIONS)}")
    m = int(name[:-3])
    if name.endswith("psk"):
        return torch.polar(torch.ones(m), 2 * math.pi * torch.arange(m) / m).to(torch.complex64)
    side = math.isqrt(m)
    levels = torch.arange(side, dtype=torch.float32) * 2 - (side - 1)
    points = torch.complex(levels.repeat_interleave(side), levels.repeat(side))
    return (points / points.abs().square().mean().sqrt()).to(torch.complex64)


def soft_assign(z: torch.Tensor, points: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft assignment: complex ``z`` ``(..., k)`` -> ``sum_m softmax(-|z - c_m|^2 / T)_m c_m`` (same shape)."""
    weights = torch.softmax(-(z.unsqueeze(-1) - points).abs().square() / temperature, dim=-1)
    return torch.complex(weights @ points.real, weights @ points.imag)


def hard_assign(z: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Nearest point of ``points`` ``(M,)`` to each symbol of complex ``z`` ``(..., k)``."""
    return points[(z.unsqueeze(-1) - points).abs().argmin(dim=-1)]


@register_model("deepjscc-q")
class DeepJSCCQ(DeepJSCC):
    """The DeepJSCC backbone (:class:`~jscc.models.DeepJSCC`, ``c = 96 k/n``) sending constellation points.

    Args:
        c, hidden, csi_side_input, norm: the backbone (as :class:`~jscc.models.DeepJSCC`).
        constellation: one of :data:`CONSTELLATIONS` (default ``16qam``).
        temperature, temperature_min: the soft assignment's temperature at the first training step
            and after ``anneal_steps`` steps (geometric in between; > 0).
        anneal_steps: training steps of the annealing (>= 1).

    ``encode`` returns complex64 ``(B, k)`` symbols: soft assignments in training mode, points of the
    constellation in evaluation mode (the system sends them scaled by ``sqrt(P)``, not renormalised).
    """

    sends_constellation = True

    def __init__(self, c: int = 8, hidden: tuple[int, ...] | list[int] = (16, 32, 32, 32), csi_side_input: bool = False,
                 norm: str = "none", constellation: str = "16qam", temperature: float = 0.5,
                 temperature_min: float = 0.01, anneal_steps: int = 20_000):
        super().__init__(c=c, hidden=hidden, csi_side_input=csi_side_input, norm=norm)
        points = constellation_points(constellation)
        if not (0 < temperature_min <= temperature and math.isfinite(temperature)):
            raise ValueError(f"need 0 < temperature_min <= temperature, got {temperature_min} and {temperature}")
        if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 1:
            raise ValueError(f"anneal_steps must be an integer >= 1, got {anneal_steps!r}")
        self.config = {**self.config, "constellation": constellation, "temperature": float(temperature),
                       "temperature_min": float(temperature_min), "anneal_steps": anneal_steps}
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    @property
    def temperature(self) -> float:
        """The soft assignment's current temperature."""
        t0, t1 = self.config["temperature"], self.config["temperature_min"]
        return t0 * (t1 / t0) ** min(int(self.step) / self.config["anneal_steps"], 1.0)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Images float32 ``(B,3,H,W)`` in [0,1] -> complex64 ``(B,k)``: constellation points (evaluation)
        or their soft assignment at the current temperature (training; each call is one annealing step)."""
        z = power_normalize(super().encode(x))
        if not self.training:
            return hard_assign(z, self.points)
        q = soft_assign(z, self.points, self.temperature)
        self.step += 1
        return q

    def warm_start(self, checkpoint: dict) -> None:
        """Load the encoder and decoder of a ``deepjscc`` checkpoint with the same backbone configuration."""
        backbone = {key: self.config.get(key, "none") for key in ("c", "hidden", "csi_side_input", "norm")}
        theirs = checkpoint.get("config", {})
        if checkpoint.get("model") != "deepjscc" or any(theirs.get(k, "none") != v for k, v in backbone.items()):
            raise ValueError(f"deepjscc-q {backbone} warm-starts from a deepjscc checkpoint with the same backbone, "
                             f"got {checkpoint.get('model')} {theirs}")
        missing, unexpected = self.load_state_dict(checkpoint["state_dict"], strict=False)
        if unexpected or set(missing) != {"step"}:
            raise ValueError(f"deepjscc checkpoint does not fit: missing {missing}, unexpected {unexpected}")
