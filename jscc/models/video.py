"""DeepWiVe: video JSCC with motion-compensated interpolation and bandwidth allocation (Tung &
Gündüz, "DeepWiVe: Deep-learning-aided wireless video transmission", IEEE JSAC 2022).

A clip of ``T = 1 + G*m`` frames (GOP size ``G``, default 4) is sent as one initial key frame
(frame 0) followed by ``m`` groups of pictures. GOP ``i`` holds frames ``G*i+1 .. G*i+G``: its last
frame is a key frame, coded alone by an image JSCC; the ``G-1`` frames before it are interpolated
from their two references, the decoded key frames at both ends of the GOP (frame ``G*i`` of the
previous GOP and frame ``G*i+G``)::

    frame:   0      1   2   3   4      5   6   7   8   ...
             K0  |  I   I   I   K1  |  I   I   I   K2  |
                 └─ GOP 0 ──────┘   └─ GOP 1 ──────┘

    key frame  x_K ─► key encoder (2019 backbone + SNR attention) ─► c channels ─► symbols
    interp.    x_t, refs r_a, r_b ─► flow net ─► (flow, scale) to each ref ─► scale-space warps w_a, w_b
               [x_t, w_a, w_b, x_t-w_a, x_t-w_b, flow_a, scale_a, flow_b, scale_b] (21 ch)
                   ─► interpolation encoder (+ SNR attention) ─► c channels ─► symbols
    receiver   y_t ─► interpolation decoder ─► flows, scales, 3-way soft mask m, residual image r
               x̂_t = m_a * warp(r̂_a) + m_b * warp(r̂_b) + m_r * sigmoid(r)

``interp_order="keyframes"`` (default) interpolates every frame of the GOP from the two key frames;
``"hierarchical"`` follows the first author's public code: the middle frame from the key frames,
then the quarter frames from (key, middle) and (middle, key), as in a B-frame pyramid.

Bandwidth (``k`` = complex channel uses, ``n = 3*H*W*T`` source samples over all frames sent;
every frame of the clip is sent, possibly with zero symbols):

- Each frame's code is ``c`` feature channels at ``H/4 x W/4``: at most ``k_f = c*H*W/32`` channel
  uses (:meth:`DeepWiVe.channel_uses`), ordered row-major (channel-major) and cut into
  ``chunks_per_frame`` chunks of ``k_f / chunks_per_frame`` uses each, i.e. groups of
  ``c / chunks_per_frame`` channels (so sending ``a`` chunks = sending the first ``a`` channel groups).
- A GOP's budget is ``gop_chunks`` chunks: ``k_GOP = gop_chunks * k_f / chunks_per_frame``
  (:meth:`DeepWiVe.gop_channel_uses`). An *allocation* is a vector of chunks per frame of the GOP,
  in display order (index ``G-1`` is the key frame), each in ``0..chunks_per_frame``, summing to
  ``gop_chunks``. Chunks not allocated are not sent: their symbols are exactly zero, are not channel
  uses, and the receiver sees zeros there (the decoders are trained on random allocations).
- The initial key frame gets ``initial_chunks`` chunks (default ``gop_chunks / G``, the GOP's mean
  share per frame), so the clip's ratio ``(initial + m*gop_chunks) * k_chunk / (3HW(1+G*m))`` equals
  the GOP ratio ``k_GOP / (3HW*G) = gop_chunks * c / (96 * G * chunks_per_frame)`` for every ``m``
  (:meth:`DeepWiVe.bandwidth_ratio`); its channel uses are always counted in ``k``. The first
  author's public code sends it with a whole GOP's budget instead (``initial_chunks = gop_chunks =
  chunks_per_frame``), which raises the ratio of a clip above the GOP ratio (x 8/5 for ``T = 5``).

Defaults: ``c = 16``, ``chunks_per_frame = 8`` (2 channels per chunk), ``gop_chunks = 16`` (the
mean frame sends half its code), ``G = 4``: ``k/n = 1/12``; a frame may take up to twice its mean
share. ``chunks_per_frame = gop_chunks`` lets one frame take the whole budget, as in the public code.

Power: each frame's sent symbols are normalised to average power ``P`` over the symbols actually sent
(:func:`channels.power_normalize` with the mask), i.e. power per transmitted frame; a frame with zero
chunks sends nothing. Under slow fading (``block_length=None``) one ``h`` holds for the whole clip.

Allocation policies (``policy``; ``train_policy`` in training mode):

- ``uniform``: ``gop_chunks // G`` per frame, the remainder to the last frames (key frame first);
- ``random``: uniform over all valid allocations (the training default);
- ``oracle``: per GOP, the allocation of highest PSNR on the actual channel realisation (the GOP is
  re-sent with every allocation of :meth:`DeepWiVe.allocation_space`, replaying the same noise and
  fading): ``A + 1`` GOP encode/decode passes per GOP (``A = 489`` for the defaults), greedy across
  GOPs (each GOP's choice takes the earlier ones as fixed). A genie bound, not a realisable scheme;
- ``agent``: a small policy network (:class:`AllocationAgent`) from content statistics and the SNR to
  a distribution over the allocation space; greedy (most likely allocation) when transmitting,
  trained by REINFORCE (:meth:`DeepWiVe.train_agent_step`) with the PSNR gain over the uniform
  allocation on the same channel realisation as reward. Per-GOP (contextual bandit) rewards: the effect
  of a GOP's key frame on the next GOP is not credited.

Per-frame reference (``intra_only = True``, a run-time switch like ``policy``): every frame is coded
alone by the key-frame codec with the chunks the allocation gives it, through the same link: the
image JSCC at exactly the same bandwidth, to show what motion compensation gains.

Transmitter references (``tx_reference``): ``"decoded"`` (default) uses the receiver's reconstructed
references for motion, as the public training code does, which assumes the transmitter knows them
(ideal feedback); ``"original"`` uses the original frames (no feedback needed; the encoder then sees
references slightly different from the decoder's).

``transmit(x, link)`` returns a dict with stable keys: ``x_hat`` ``(B,T,3,H,W)``; ``z``, ``y``
complex64 ``(B,T,k_f)`` (sent, power-normalised, and received symbols; zeros where not sent; frame
order); ``mask`` bool ``(B,T,k_f)``; ``allocation`` int64 ``(B, m, G)``; ``channel_uses`` int64
``(B,)``; ``warp_mse`` (transmitter-side warping error, a scalar); ``h`` complex ``(B,T,k_f)`` for fading.
"""
from __future__ import annotations

import math
from fractions import Fraction

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F

from channels import power_normalize
from jscc.metrics import check_images
from jscc.models.base import JSCCModel
from jscc.models.deepjscc import (DOWNSAMPLING, SOURCE_SAMPLES_PER_PIXEL, STRIDES, ADJSCC, SNRAttention,
                                  _check_size, _deconv, copy_stack, encoder_stack)
from jscc.models.symbols import features_to_symbols, symbols_to_features
from jscc.registry import register_model

__all__ = ["warp", "scale_space_volume", "scale_space_warp", "ScaleSpaceFlow", "VideoLink", "AllocationAgent",
           "allocation_space", "reinforce_step", "DeepWiVe"]

# kornia 0.8.3 moved create_meshgrid from kornia.utils to kornia.geometry (the project allows kornia >= 0.7)
_create_meshgrid = getattr(kornia.geometry, "create_meshgrid", None) or kornia.utils.create_meshgrid

POLICIES = ("uniform", "random", "oracle", "agent")
INTERP_ORDERS = ("keyframes", "hierarchical")
TX_REFERENCES = ("decoded", "original")
INTERP_INPUT_CHANNELS = 21  # frame, 2 warped refs, 2 residuals (3 each), 2 x (flow 2 + scale 1)
INTERP_OUTPUT_CHANNELS = 12  # 2 x (flow 2 + scale 1), 3 mask logits, 3 residual-image channels
#: Weight of the residual image in the soft mask of an interpolation codec started as the key-frame
#: codec (:meth:`DeepWiVe.init_interp_as_intra`); each warped reference gets half the rest.
INTRA_START_RESIDUAL_WEIGHT = 0.9


# --------------------------------------------------------------------------- motion


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out[:, :, y, x] = image`` sampled at ``(x + flow[:, 0], y + flow[:, 1])``.

    Bilinear, border padding (coordinates clamped to the frame), pixel centres at integers: the
    convention of :meth:`jscc.video.AffineMotion.flow` (``"backward"``) and of
    ``kornia.geometry.transform.remap(..., padding_mode="border", align_corners=True)``, computed
    with explicit corner weights so that zero flow returns ``image`` exactly (grid_sample's
    normalised coordinates round). Differentiable w.r.t. both inputs.

    Args:
        image: float ``(N, C, H, W)``.
        flow: float ``(N, 2, H, W)`` in pixels, channel 0 = dx (right), 1 = dy (down).

    Returns:
        float ``(N, C, H, W)``.
    """
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[0] != image.shape[0] \
            or flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"warp needs image (N,C,H,W) and flow (N,2,H,W) of the same N, H, W; got "
                         f"{tuple(image.shape)} and {tuple(flow.shape)}")
    n, c, h, w = image.shape
    grid = _create_meshgrid(h, w, normalized_coordinates=False, device=image.device, dtype=flow.dtype)[0]  # (H,W,2): x, y
    px = (grid[..., 0] + flow[:, 0]).clamp(0, w - 1)
    py = (grid[..., 1] + flow[:, 1]).clamp(0, h - 1)
    x0 = px.detach().floor().clamp(max=max(w - 2, 0))  # the last pixel is reached with weight 1
    y0 = py.detach().floor().clamp(max=max(h - 2, 0))
    wx, wy = (px - x0).unsqueeze(1), (py - y0).unsqueeze(1)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = image.reshape(n, c, h * w)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        index = (yy * w + xx).reshape(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, index).reshape(n, c, h, w)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def scale_space_sigmas(levels: int, sigma: float) -> list[float]:
    """Blur of each level of the scale-space volume: ``[0, sigma, 2 sigma, 4 sigma, ...]``."""
    return [0.0] + [sigma * 2.0**i for i in range(levels - 1)]


def scale_space_volume(image: torch.Tensor, levels: int = 4, sigma: float = 1.0) -> torch.Tensor:
    """The scale-space volume of Agustsson et al. (CVPR 2020): ``image`` and ``levels - 1``
    Gaussian blurs of it (``kornia.filters.gaussian_blur2d``, std ``sigma * 2^(l-1)`` at level ``l``,
    kernel ``2*ceil(3 std)+1``, replicated border). ``(N,C,H,W) -> (N, levels, C, H, W)``."""
    if levels < 1 or sigma <= 0:
        raise ValueError(f"scale space needs levels >= 1 and sigma > 0, got {levels}, {sigma}")
    out = [image]
    for s in scale_space_sigmas(levels, sigma)[1:]:
        k = 2 * math.ceil(3 * s) + 1
        out.append(kornia.filters.gaussian_blur2d(image, (k, k), (s, s), border_type="replicate"))
    return torch.stack(out, dim=1)


def scale_space_warp(image: torch.Tensor, flow: torch.Tensor, scale: torch.Tensor, levels: int = 4,
                     sigma: float = 1.0) -> torch.Tensor:
    """Scale-space warp: trilinear lookup in :func:`scale_space_volume` at ``(x + dx, y + dy, scale)``.

    ``scale`` is the (fractional) volume level, clamped to ``[0, levels - 1]``: 0 = the sharp image,
    ``l`` = blur of std ``sigma * 2^(l-1)``; blurred levels let the warp fade out content that the
    flow cannot predict. Zero flow and zero scale return ``image`` exactly.

    Args:
        image: float ``(N, C, H, W)``; flow: ``(N, 2, H, W)`` pixels; scale: ``(N, 1, H, W)``.

    Returns:
        float ``(N, C, H, W)``.
    """
    if scale.ndim != 4 or scale.shape[1] != 1 or scale.shape[0] != image.shape[0] or scale.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"scale must be (N,1,H,W) matching image {tuple(image.shape)}, got {tuple(scale.shape)}")
    n, c, h, w = image.shape
    volume = scale_space_volume(image, levels, sigma)
    warped = warp(volume.reshape(n, levels * c, h, w), flow).reshape(n, levels, c, h, w)
    if levels == 1:
        return warped[:, 0]
    s = scale[:, 0].clamp(0, levels - 1)
    l0 = s.detach().floor().clamp(max=levels - 2)
    ws = (s - l0).unsqueeze(1)
    index = l0.long()[:, None, None].expand(n, 1, c, h, w)
    return warped.gather(1, index)[:, 0] * (1 - ws) + warped.gather(1, index + 1)[:, 0] * ws


class ScaleSpaceFlow(nn.Module):
    """Small flow network: ``(frame, reference)`` -> ``flow`` ``(N,2,H,W)`` (pixels, backward: warping
    the reference with it predicts the frame) and ``scale`` ``(N,1,H,W)`` (volume level).

    A full-resolution branch and a 1/4-resolution branch (two stride-2 convs, receptive field ~30 px)
    merged by bilinear upsampling; the output layer starts at zero, so the initial flow is zero and
    :func:`scale_space_warp` starts as the identity.
    """

    def __init__(self, hidden: int = 16):
        super().__init__()
        h = int(hidden)
        self.full = nn.Sequential(nn.Conv2d(6, h, 3, padding=1), nn.PReLU(h))
        self.coarse = nn.Sequential(
            nn.Conv2d(h, h, 3, stride=2, padding=1), nn.PReLU(h),
            nn.Conv2d(h, 2 * h, 3, stride=2, padding=1), nn.PReLU(2 * h),
            nn.Conv2d(2 * h, 2 * h, 3, padding=1), nn.PReLU(2 * h),
        )
        self.head = nn.Sequential(nn.Conv2d(3 * h, h, 3, padding=1), nn.PReLU(h), nn.Conv2d(h, 3, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, frame: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.full(torch.cat([frame, reference], dim=1))
        up = F.interpolate(self.coarse(f), size=f.shape[-2:], mode="bilinear", align_corners=False)
        out = self.head(torch.cat([f, up], dim=1))
        return out[:, :2], out[:, 2:]


# --------------------------------------------------------------------------- channel


class VideoLink:
    """The channel as the video model uses it: one call per group of frames.

    ``send(z, mask)`` normalises each frame of ``z`` ``(B, n, k_f)`` to average power ``P`` over its
    sent symbols (``mask``), applies the channel at each example's SNR, and zeroes the received
    symbols not sent. Under slow fading the first ``h`` is kept for every later frame. ``state`` /
    ``restore`` replay the same channel realisation (noise and fading), for the oracle and the agent's
    rewards; the generator is therefore always a private ``torch.Generator`` (seeded from the global
    RNG when none is given).

    Args:
        channel: a channel Module of :mod:`channels` (``AWGN``, ``Rayleigh``).
        snr_db: float32 ``(B,)`` SNR per example in dB.
        power: nominal power ``P``.
        generator: the channel's randomness.
    """

    def __init__(self, channel: nn.Module, snr_db: torch.Tensor, *, power: float = 1.0,
                 generator: torch.Generator | None = None):
        if snr_db.ndim != 1 or not torch.isfinite(snr_db).all():
            raise ValueError(f"snr_db must be a finite (B,) tensor, got {tuple(snr_db.shape)}")
        if getattr(channel, "csi", "none") == "receiver" and getattr(channel, "equalization", None) == "side":
            raise ValueError("deepwive takes no h side input: use csi='none' or zf/mmse equalisation")
        self.channel, self.snr_db, self.power = channel, snr_db.float(), float(power)
        self.device = snr_db.device
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(torch.randint(2**62, (1,))))
        self.generator = generator
        self.h = None

    @classmethod
    def from_system(cls, system, snr_db, batch: int, device, generator: torch.Generator | None = None) -> "VideoLink":
        """The link of a :class:`jscc.system.JSCCSystem`: its channel, power and SNR rules."""
        snr = system.resolve_snr(snr_db, batch, device)
        return cls(system.channel, snr, power=system.power_norm.power, generator=generator)

    @classmethod
    def coerce(cls, link) -> "VideoLink":
        """``link`` itself if it is a :class:`VideoLink` (``JSCCSystem`` builds one through
        :meth:`DeepWiVe.make_link`), else TypeError."""
        if not isinstance(link, cls):
            raise TypeError(f"expected a VideoLink (see DeepWiVe.make_link), got {type(link).__name__}")
        return link

    @property
    def batch(self) -> int:
        return self.snr_db.shape[0]

    def send(self, z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Frames' symbols ``z`` complex ``(B, n, k_f)`` with bool ``mask`` (sent symbols) ->
        ``(z_sent, y, h)``: power-normalised sent symbols and received symbols (both zero where not
        sent), and the fading realisation broadcast to ``(B, n, k_f)`` (None for AWGN)."""
        if z.ndim != 3 or mask.shape != z.shape or z.shape[0] != self.batch:
            raise ValueError(f"expected z and mask (B={self.batch}, n, k_f), got {tuple(z.shape)}, {tuple(mask.shape)}")
        z = power_normalize(z, self.power, mask)
        extra = {"h": self.h} if self.h is not None else {}
        out = self.channel(z, snr_db=self.snr_db.view(-1, 1, 1), generator=self.generator, **extra)
        h = out.get("h")
        if h is not None and getattr(self.channel, "block_length", 0) is None:
            self.h = h
        y = out["y"].masked_fill(~mask, 0)
        return z, y, None if h is None else h.expand_as(z)

    def state(self) -> tuple:
        """Snapshot of the channel realisation still to come (generator state and the held ``h``)."""
        return self.generator.get_state(), self.h

    def restore(self, state: tuple) -> None:
        self.generator.set_state(state[0])
        self.h = state[1]


# --------------------------------------------------------------------------- allocation


def allocation_space(frames: int, budget: int, max_per_frame: int) -> torch.Tensor:
    """All allocations of ``budget`` chunks to ``frames`` frames with ``0..max_per_frame`` each:
    int64 ``(A, frames)`` in lexicographic order. ValueError when there is none."""
    rows: list[tuple[int, ...]] = []

    def fill(prefix: tuple[int, ...], left: int) -> None:
        slots = frames - len(prefix)
        if slots == 1:
            if left <= max_per_frame:
                rows.append((*prefix, left))
            return
        for a in range(max(0, left - (slots - 1) * max_per_frame), min(max_per_frame, left) + 1):
            fill((*prefix, a), left - a)

    if frames < 1 or budget < 0 or budget > frames * max_per_frame:
        raise ValueError(f"no allocation of {budget} chunks to {frames} frames of at most {max_per_frame}")
    fill((), budget)
    return torch.tensor(rows, dtype=torch.int64)


class AllocationAgent(nn.Module):
    """Policy network of the bandwidth agent: GOP features -> logits over the allocation space.

    ``features -> Linear -> ReLU -> Linear -> (A,)``. The last layer's weights start at zero and its
    bias at ``-prior * ||a - a_uniform||^2``, so the initial policy favours allocations near the
    uniform one and its most likely allocation *is* the uniform one.

    Args:
        allocations: int64 ``(A, G)`` the actions.
        uniform: int64 ``(G,)`` the uniform allocation.
        in_features: size of the feature vector (:meth:`DeepWiVe.agent_features`: ``3G + 1``).
        hidden: hidden width.
        prior: strength of the initial preference for the uniform allocation.
    """

    def __init__(self, allocations: torch.Tensor, uniform: torch.Tensor, in_features: int, hidden: int = 64,
                 prior: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, len(allocations)))
        nn.init.zeros_(self.net[-1].weight)
        with torch.no_grad():
            self.net[-1].bias.copy_(-prior * (allocations - uniform).float().square().sum(dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` float ``(B, F)`` -> logits ``(B, A)``."""
        return self.net(features)


def reinforce_step(policy: nn.Module, features: torch.Tensor, reward_fn, optimizer: torch.optim.Optimizer,
                   n_samples: int = 4, generator: torch.Generator | None = None) -> dict[str, float]:
    """One REINFORCE update of a categorical policy.

    Samples ``n_samples`` actions per example from ``softmax(policy(features))``, gets their rewards
    from ``reward_fn(actions int64 (B, S)) -> (B, S)``, and ascends
    ``mean[(r - mean_S r) * log pi(a)]`` (the other samples' mean reward is the baseline; with one
    sample the raw reward). Returns ``{"loss", "reward"}`` (mean sampled reward).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    logp = torch.log_softmax(policy(features), dim=-1)
    actions = torch.multinomial(logp.detach().exp(), n_samples, replacement=True, generator=generator)
    rewards = torch.as_tensor(reward_fn(actions), dtype=logp.dtype, device=logp.device)
    if rewards.shape != actions.shape:
        raise ValueError(f"reward_fn must return {tuple(actions.shape)} rewards, got {tuple(rewards.shape)}")
    advantage = rewards - rewards.mean(dim=1, keepdim=True) if n_samples > 1 else rewards
    loss = -(advantage * logp.gather(1, actions)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "reward": rewards.mean().item()}


# --------------------------------------------------------------------------- model


def _linear_decoder_stack(in_channels: int, hidden: list[int], out_channels: int) -> nn.Sequential:
    """The 2019 decoder's five transposed convs (strides 1,1,1,2,2) ending in a linear layer of
    ``out_channels`` (PReLU after the others), as (conv, activation) pairs."""
    filters = [in_channels, *hidden[::-1], out_channels]
    layers: list[nn.Module] = []
    for i, (cin, cout, stride) in enumerate(zip(filters[:-1], filters[1:], STRIDES[::-1])):
        layers += [_deconv(cin, cout, stride), nn.Identity() if i == len(STRIDES) - 1 else nn.PReLU(cout)]
    return nn.Sequential(*layers)


def _interp_stages(gop_size: int, order: str) -> list[list[tuple[int, int, int]]]:
    """Interpolation schedule: stages of ``(frame, ref_a, ref_b)`` positions within the GOP (0 = the
    previous key frame, ``G`` = this GOP's key frame); frames of one stage are coded together."""
    if order == "keyframes":
        return [[(j, 0, gop_size) for j in range(1, gop_size)]] if gop_size > 1 else []
    stages, intervals = [], [(0, gop_size)]
    while intervals:
        stage, nxt = [], []
        for a, b in intervals:
            if b - a >= 2:
                m = (a + b) // 2
                stage.append((m, a, b))
                nxt += [(a, m), (m, b)]
        if stage:
            stages.append(stage)
        intervals = nxt
    return stages


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@register_model("deepwive")
class DeepWiVe(JSCCModel):
    """DeepWiVe video JSCC (see the module docstring for the structure and the bandwidth accounting).

    Args:
        c: code channels per frame (``k_f = c*H*W/32`` channel uses at full allocation).
        chunks_per_frame: chunks per frame's code (must divide ``c``).
        gop_chunks: chunks per GOP (the budget), ``<= gop_size * chunks_per_frame``.
        gop_size: frames per GOP ``G`` (clips have ``1 + G*m`` frames).
        initial_chunks: chunks of the initial key frame (default ``gop_chunks / G``, which must then be
            an integer).
        hidden: hidden filters of the 2019 backbone used by all encoders and decoders.
        flow_hidden: width of :class:`ScaleSpaceFlow`.
        scale_levels, scale_sigma: the scale-space volume (levels ``0, sigma, 2 sigma, ...``).
        interp_order: ``"keyframes"`` or ``"hierarchical"``.
        tx_reference: ``"decoded"`` or ``"original"`` (what the transmitter warps).
        policy: allocation policy when transmitting in eval mode; ``train_policy``: in training mode.
        agent_hidden: hidden width of the allocation agent.
        flow_loss_weight: weight of the transmitter's warping MSE added to the loss (0: pure MSE).
    """

    snr_adaptive = True
    sends_layers = True  # transmit(): key frames and GOPs through its own VideoLink (make_link)
    video = True
    defines_loss = True

    def __init__(self, c: int = 16, chunks_per_frame: int = 8, gop_chunks: int = 16, gop_size: int = 4,
                 initial_chunks: int | None = None, hidden=(16, 32, 32, 32), flow_hidden: int = 16,
                 scale_levels: int = 4, scale_sigma: float = 1.0, interp_order: str = "keyframes",
                 tx_reference: str = "decoded", policy: str = "uniform", train_policy: str = "random",
                 agent_hidden: int = 64, flow_loss_weight: float = 0.0):
        super().__init__()
        c, cpf = _positive_int(c, "c"), _positive_int(chunks_per_frame, "chunks_per_frame")
        g = _positive_int(gop_size, "gop_size")
        budget = _positive_int(gop_chunks, "gop_chunks")
        if c % cpf:
            raise ValueError(f"chunks_per_frame={cpf} must divide c={c} (a chunk is c/chunks_per_frame channels)")
        if budget > g * cpf:
            raise ValueError(f"gop_chunks={budget} exceeds gop_size*chunks_per_frame={g * cpf}")
        if initial_chunks is None:
            if budget % g:
                raise ValueError(f"gop_chunks={budget} is not a multiple of gop_size={g}: give initial_chunks "
                                 "(the initial key frame's chunks) explicitly")
            initial = budget // g
        elif isinstance(initial_chunks, bool) or int(initial_chunks) != initial_chunks:
            raise ValueError(f"initial_chunks must be an integer, got {initial_chunks!r}")
        else:
            initial = int(initial_chunks)
        if not 0 <= initial <= cpf:
            raise ValueError(f"initial_chunks must be in 0..chunks_per_frame={cpf}, got {initial}")
        hidden = [int(v) for v in hidden]
        if len(hidden) != 4 or min(hidden) < 1:
            raise ValueError(f"hidden must be 4 positive filter counts, got {hidden!r}")
        for name, value, allowed in (("interp_order", interp_order, INTERP_ORDERS),
                                     ("tx_reference", tx_reference, TX_REFERENCES),
                                     ("policy", policy, POLICIES), ("train_policy", train_policy, POLICIES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        _positive_int(scale_levels, "scale_levels")
        if not scale_sigma > 0:
            raise ValueError(f"scale_sigma must be positive, got {scale_sigma!r}")
        if not flow_loss_weight >= 0:
            raise ValueError(f"flow_loss_weight must be >= 0, got {flow_loss_weight!r}")
        self.config = {"c": c, "chunks_per_frame": cpf, "gop_chunks": budget, "gop_size": g,
                       "initial_chunks": None if initial_chunks is None else initial, "hidden": hidden, "flow_hidden": int(flow_hidden),
                       "scale_levels": int(scale_levels), "scale_sigma": float(scale_sigma),
                       "interp_order": interp_order, "tx_reference": tx_reference, "policy": policy,
                       "train_policy": train_policy, "agent_hidden": int(agent_hidden),
                       "flow_loss_weight": float(flow_loss_weight)}
        self.c, self.chunks_per_frame, self.gop_chunks, self.gop_size = c, cpf, budget, g
        self.initial_chunks, self.hidden = initial, hidden
        self.scale_levels, self.scale_sigma = int(scale_levels), float(scale_sigma)
        self.interp_order, self.tx_reference = interp_order, tx_reference
        self.policy, self.train_policy, self.flow_loss_weight = policy, train_policy, float(flow_loss_weight)
        self.stages = _interp_stages(g, interp_order)
        self.intra_only = False  # the per-frame image-JSCC reference (a switch, not part of the config)

        self.key_codec = ADJSCC(c=c, hidden=hidden)
        self.flow_net = ScaleSpaceFlow(flow_hidden)
        self.interp_encoder = encoder_stack(INTERP_INPUT_CHANNELS, hidden, c)
        self.interp_encoder_attention = nn.ModuleList(SNRAttention(w) for w in hidden)
        self.interp_decoder = _linear_decoder_stack(c, hidden, INTERP_OUTPUT_CHANNELS)
        self.interp_decoder_attention = nn.ModuleList(SNRAttention(w) for w in hidden[::-1])
        allocations = allocation_space(g, budget, cpf)
        uniform = torch.full((g,), budget // g, dtype=torch.int64)
        if budget % g:
            uniform[g - budget % g:] += 1
        self.register_buffer("allocations", allocations, persistent=False)
        self.register_buffer("uniform", uniform, persistent=False)
        self.agent = AllocationAgent(allocations, uniform, 3 * g + 1, int(agent_hidden))

    @classmethod
    def from_bandwidth_ratio(cls, ratio: Fraction | str | float, **kwargs) -> "DeepWiVe":
        """The model whose k/n is ``ratio`` exactly, by choosing ``gop_chunks`` (``c``,
        ``chunks_per_frame`` and ``gop_size`` from ``kwargs`` or the defaults):
        ``gop_chunks = ratio * 96 * G * chunks_per_frame / c``; ValueError unless a positive integer
        within the per-frame maximum."""
        c, cpf, g = kwargs.get("c", 16), kwargs.get("chunks_per_frame", 8), kwargs.get("gop_size", 4)
        # realisable ratios are gop_chunks * c / (96 G cpf): match a float to the nearest such denominator
        frac = Fraction(ratio).limit_denominator(96 * g * cpf) if isinstance(ratio, float) else Fraction(ratio)
        chunks = frac * SOURCE_SAMPLES_PER_PIXEL * DOWNSAMPLING**2 * 2 * g * cpf / c
        if chunks.denominator != 1 or not 1 <= chunks <= g * cpf:
            raise ValueError(f"bandwidth ratio {ratio} needs gop_chunks = 96*G*chunks_per_frame*k/n / c = "
                             f"{float(chunks):.10g}, not an integer in 1..{g * cpf} (c={c}, chunks_per_frame={cpf}, "
                             f"G={g}; the ratio is gop_chunks*c/({96 * g * cpf}))")
        return cls(**{**kwargs, "gop_chunks": int(chunks)})

    # ------------------------------------------------------------------ bandwidth
    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses ``k_f = c*H*W/32`` of one frame at full allocation (all chunks)."""
        return self.key_codec.channel_uses(height, width)

    def chunk_channel_uses(self, height: int, width: int) -> int:
        """Channel uses per chunk, ``k_f / chunks_per_frame``."""
        reals = self.c // self.chunks_per_frame * (height // DOWNSAMPLING) * (width // DOWNSAMPLING)
        _check_size(height, width)
        if reals % 2:
            raise ValueError(f"a chunk of {self.c // self.chunks_per_frame} channels at {height}x{width} holds {reals} "
                             "reals, an odd number: cannot form complex symbols (use more channels per chunk)")
        return reals // 2

    def gop_channel_uses(self, height: int, width: int) -> int:
        """Channel uses per GOP (``G`` frames): ``gop_chunks * k_f / chunks_per_frame``."""
        return self.gop_chunks * self.chunk_channel_uses(height, width)

    def clip_channel_uses(self, height: int, width: int, frames: int) -> int:
        """Channel uses of a clip of ``frames = 1 + G*m`` frames: initial key frame + ``m`` GOPs."""
        m = self._gops(frames)
        return self.initial_chunks * self.chunk_channel_uses(height, width) + m * self.gop_channel_uses(height, width)

    def bandwidth_ratio(self, height: int, width: int, frames: int | None = None) -> Fraction:
        """Exact k/n: per GOP (``k_GOP / (3HW*G)``) or, given ``frames``, for the clip
        (``k_clip / (3HW*frames)``); equal with the default ``initial_chunks``."""
        n = SOURCE_SAMPLES_PER_PIXEL * height * width
        if frames is None:
            return Fraction(self.gop_channel_uses(height, width), n * self.gop_size)
        return Fraction(self.clip_channel_uses(height, width, frames), n * frames)

    def allocation_space(self) -> torch.Tensor:
        """All valid allocations of one GOP: int64 ``(A, G)`` (display order, key frame last)."""
        return self.allocations

    def uniform_allocation(self) -> torch.Tensor:
        """int64 ``(G,)``: ``gop_chunks // G`` each, one more for the last ``gop_chunks % G`` frames."""
        return self.uniform

    def _gops(self, frames: int) -> int:
        if frames < 1 + self.gop_size or (frames - 1) % self.gop_size:
            raise ValueError(f"deepwive codes clips of T = 1 + {self.gop_size}*m frames (m >= 1: one initial key frame, "
                             f"then GOPs of {self.gop_size}), got T = {frames}")
        return (frames - 1) // self.gop_size

    # ------------------------------------------------------------------ checks
    def _check_video(self, x: torch.Tensor) -> int:
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[2] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"video must be (B, T, 3, H, W), got {got}")
        check_images(x.flatten(0, 1), name="x", model_input=True)
        self.chunk_channel_uses(*x.shape[-2:])
        return self._gops(x.shape[1])

    def check_allocation(self, allocation, batch: int, n_gops: int) -> torch.Tensor:
        """An allocation ``(G,)``, ``(n_gops, G)`` or ``(B, n_gops, G)`` -> int64 ``(B, n_gops, G)``;
        ValueError unless every entry is an integer in ``0..chunks_per_frame`` and every GOP's sum is
        ``gop_chunks``."""
        a = torch.as_tensor(allocation, device=self.allocations.device)
        if a.is_floating_point() and not torch.equal(a, a.round()) or a.is_complex() or a.dtype == torch.bool:
            raise ValueError("an allocation holds integer chunk counts")
        a = a.long()
        if a.ndim == 0 or a.ndim > 3 or a.shape[-1] != self.gop_size:
            raise ValueError(f"allocation must be (G,), (n_gops, G) or (B, n_gops, G) with G = {self.gop_size}, "
                             f"got {tuple(a.shape)}")
        try:
            a = a.expand(batch, n_gops, self.gop_size)
        except RuntimeError:
            raise ValueError(f"allocation of shape {tuple(a.shape)} does not broadcast to (B, n_gops, G) = "
                             f"({batch}, {n_gops}, {self.gop_size})") from None
        if (a < 0).any() or (a > self.chunks_per_frame).any():
            raise ValueError(f"allocation entries must be in 0..{self.chunks_per_frame} chunks per frame")
        bad = a.sum(dim=-1) != self.gop_chunks
        if bad.any():
            raise ValueError(f"each GOP's allocation must sum to gop_chunks = {self.gop_chunks}, got sums "
                             f"{sorted(set(a.sum(dim=-1)[bad].tolist()))}")
        return a

    # ------------------------------------------------------------------ coding
    def _mask(self, chunks: torch.Tensor, size) -> torch.Tensor:
        """Chunks per frame ``(B, n)`` -> bool mask of sent symbols ``(B, n, k_f)`` (the first chunks)."""
        k, k_chunk = self.channel_uses(*size), self.chunk_channel_uses(*size)
        return torch.arange(k, device=chunks.device) < (chunks * k_chunk).unsqueeze(-1)

    def _send(self, link: VideoLink, z: torch.Tensor, chunks: torch.Tensor, size):
        mask = self._mask(chunks, size)
        z_sent, y, h = link.send(z, mask)
        return z_sent, y, mask, h

    def _interp_encode(self, target, ref_a, ref_b, snr_db):
        """Transmitter of interpolated frames ``(N,3,H,W)`` -> symbols ``(N, k_f)`` and the warping MSE."""
        flow, scale = self.flow_net(torch.cat([target, target]), torch.cat([ref_a, ref_b]))
        warped = scale_space_warp(torch.cat([ref_a, ref_b]), flow, scale, self.scale_levels, self.scale_sigma)
        w_a, w_b = warped.chunk(2)
        f_a, f_b = flow.chunk(2)
        s_a, s_b = scale.chunk(2)
        inputs = torch.cat([target, w_a, w_b, target - w_a, target - w_b, f_a, s_a, f_b, s_b], dim=1)
        features = ADJSCC._run(self.interp_encoder, self.interp_encoder_attention, inputs, snr_db)
        return features_to_symbols(features), (warped - torch.cat([target, target])).square().mean()

    def _interp_decode(self, y, ref_a, ref_b, snr_db, size):
        """Receiver of interpolated frames: symbols ``(N, k_f)`` and decoded references -> ``(N,3,H,W)``."""
        height, width = size
        features = symbols_to_features(y, (self.c, height // DOWNSAMPLING, width // DOWNSAMPLING))
        out = ADJSCC._run(self.interp_decoder, self.interp_decoder_attention, features, snr_db)
        flow = torch.cat([out[:, 0:2], out[:, 3:5]])
        scale = torch.cat([out[:, 2:3], out[:, 5:6]])
        w_a, w_b = scale_space_warp(torch.cat([ref_a, ref_b]), flow, scale, self.scale_levels, self.scale_sigma).chunk(2)
        m = torch.softmax(out[:, 6:9], dim=1)
        return m[:, 0:1] * w_a + m[:, 1:2] * w_b + m[:, 2:3] * torch.sigmoid(out[:, 9:12])

    def _send_initial(self, key: torch.Tensor, snr_db, link: VideoLink) -> dict:
        size = tuple(key.shape[-2:])
        chunks = torch.full((key.shape[0], 1), self.initial_chunks, dtype=torch.int64, device=key.device)
        z, y, mask, h = self._send(link, self.key_codec.encode(key, snr_db).unsqueeze(1), chunks, size)
        rx = self.key_codec.decode(y[:, 0], size, snr_db)
        return {"x_hat": rx.unsqueeze(1), "z": z, "y": y, "mask": mask, "h": h,
                "tx": rx if self.tx_reference == "decoded" else key}

    def _run_gop(self, frames, prev_rx, prev_tx, alloc, snr_db, link: VideoLink) -> dict:
        """Send one GOP ``frames`` ``(B,G,3,H,W)`` with allocation ``alloc`` ``(B,G)`` given the previous
        key frame as decoded (``prev_rx``) and as the transmitter sees it (``prev_tx``)."""
        batch, g = frames.shape[:2]
        size = tuple(frames.shape[-2:])
        if self.intra_only:  # every frame coded alone by the key-frame codec, same chunks and channel
            snr_f = snr_db.repeat_interleave(g)
            symbols = self.key_codec.encode(frames.flatten(0, 1), snr_f).reshape(batch, g, -1)
            z, y, mask, h = self._send(link, symbols, alloc, size)
            x_hat = self.key_codec.decode(y.flatten(0, 1), size, snr_f).reshape(frames.shape)
            return {"x_hat": x_hat, "z": z, "y": y, "mask": mask, "h": h, "tx": x_hat[:, -1],
                    "warp_mse": frames.new_zeros(())}
        decoded = self.tx_reference == "decoded"
        rx, tx = {0: prev_rx}, {0: prev_tx}
        z, y, mask, h = [None] * g, [None] * g, [None] * g, [None] * g
        key = frames[:, -1]
        key_symbols = self.key_codec.encode(key, snr_db).unsqueeze(1)
        z[-1], y[-1], mask[-1], h[-1] = self._send(link, key_symbols, alloc[:, -1:], size)
        rx[g] = self.key_codec.decode(y[-1][:, 0], size, snr_db)
        tx[g] = rx[g] if decoded else key
        warp_mse = []
        for stage in self.stages:
            n = len(stage)
            target = torch.cat([frames[:, j - 1] for j, _, _ in stage])
            snr_n = snr_db.repeat(n)
            symbols, err = self._interp_encode(target, torch.cat([tx[a] for _, a, _ in stage]),
                                               torch.cat([tx[b] for _, _, b in stage]), snr_n)
            warp_mse.append(err)
            chunks = torch.stack([alloc[:, j - 1] for j, _, _ in stage], dim=1)
            zs, ys, ms, hs = self._send(link, symbols.reshape(n, batch, -1).transpose(0, 1), chunks, size)
            x_hat = self._interp_decode(ys.transpose(0, 1).reshape(n * batch, -1),
                                        torch.cat([rx[a] for _, a, _ in stage]), torch.cat([rx[b] for _, _, b in stage]),
                                        snr_n, size).reshape(n, batch, *frames.shape[2:])
            for i, (j, _, _) in enumerate(stage):
                rx[j] = x_hat[i]
                tx[j] = x_hat[i] if decoded else frames[:, j - 1]
                z[j - 1], y[j - 1], mask[j - 1] = zs[:, i:i + 1], ys[:, i:i + 1], ms[:, i:i + 1]
                h[j - 1] = None if hs is None else hs[:, i:i + 1]
        return {"x_hat": torch.stack([rx[j] for j in range(1, g + 1)], dim=1), "z": torch.cat(z, dim=1),
                "y": torch.cat(y, dim=1), "mask": torch.cat(mask, dim=1),
                "h": None if h[-1] is None else torch.cat(h, dim=1), "tx": tx[g],
                "warp_mse": torch.stack(warp_mse).mean() if warp_mse else frames.new_zeros(())}

    @staticmethod
    def _gop_psnr(x_hat: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """PSNR (dB, peak 1) of each example's GOP, from the MSE over its frames: ``(B,)``."""
        return -10 * torch.log10((x_hat - frames).square().mean(dim=(1, 2, 3, 4)).clamp_min(1e-10))

    def agent_features(self, frames: torch.Tensor, prev_key: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """The agent's view of a GOP (transmitter side): per frame, log10 of the MSE to the previous key
        frame, to this GOP's key frame and of the spatial gradient energy, and ``snr_db / 20``:
        float ``(B, 3G + 1)``."""
        to_prev = (frames - prev_key.unsqueeze(1)).square().mean(dim=(2, 3, 4))
        to_next = (frames - frames[:, -1:]).square().mean(dim=(2, 3, 4))
        texture = (frames.diff(dim=-1).square().mean(dim=(2, 3, 4)) + frames.diff(dim=-2).square().mean(dim=(2, 3, 4)))
        stats = torch.cat([to_prev, to_next, texture], dim=1).clamp_min(1e-4).log10()
        return torch.cat([stats, snr_db.reshape(-1, 1).to(stats.dtype) / 20], dim=1)

    def _choose(self, policy: str, frames, prev_rx, prev_tx, snr_db, link: VideoLink) -> torch.Tensor:
        """Allocation ``(B, G)`` of one GOP under ``policy``."""
        batch = frames.shape[0]
        if policy == "uniform":
            return self.uniform.expand(batch, -1)
        if policy == "random":
            idx = torch.randint(len(self.allocations), (batch,), generator=link.generator, device=link.device)
            return self.allocations[idx.to(self.allocations.device)]
        if policy == "agent":
            with torch.no_grad():
                return self.allocations[self.agent(self.agent_features(frames, prev_tx, snr_db)).argmax(dim=1)]
        # oracle: replay the same channel realisation for every candidate
        snapshot = link.state()
        best = torch.full((batch,), -math.inf, device=frames.device)
        best_idx = torch.zeros(batch, dtype=torch.int64, device=frames.device)
        with torch.no_grad():
            for i, candidate in enumerate(self.allocations):
                link.restore(snapshot)
                gop = self._run_gop(frames, prev_rx, prev_tx, candidate.expand(batch, -1), snr_db, link)
                psnr = self._gop_psnr(gop["x_hat"], frames)
                better = psnr > best
                best = torch.where(better, psnr, best)
                best_idx = torch.where(better, i, best_idx)
        link.restore(snapshot)
        return self.allocations[best_idx]

    def transmit(self, x: torch.Tensor, link, stop_psnr_db: float | None = None, *, policy: str | None = None,
                 allocation=None) -> dict:
        """Send video ``x`` float32 ``(B, T, 3, H, W)`` in [0,1], ``T = 1 + G*m``, through ``link``.

        Args:
            link: a :class:`VideoLink` (or the one-layer ``LayerLink`` that ``JSCCSystem`` passes).
            stop_psnr_db: not supported (ValueError).
            policy: allocation policy (default: ``train_policy`` in training mode, else ``policy``).
            allocation: fixed allocation ``(G,)``, ``(m, G)`` or ``(B, m, G)`` instead of a policy.

        Returns:
            The dict described in the module docstring.
        """
        if stop_psnr_db is not None:
            raise ValueError("deepwive has no variable-length mode (stop_psnr_db)")
        n_gops = self._check_video(x)
        link = VideoLink.coerce(link)
        batch, g = x.shape[0], self.gop_size
        if link.batch != batch:
            raise ValueError(f"link set up for {link.batch} examples, video batch is {batch}")
        if allocation is not None:
            if policy is not None:
                raise ValueError("give either a policy or an allocation")
            fixed = self.check_allocation(allocation, batch, n_gops)
        else:
            policy = policy or (self.train_policy if self.training else self.policy)
            if policy not in POLICIES:
                raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        snr = link.snr_db
        first = self._send_initial(x[:, 0], snr, link)
        parts = [first]
        prev_rx, prev_tx = first["x_hat"][:, 0], first["tx"]
        allocations = []
        for i in range(n_gops):
            frames = x[:, 1 + g * i: 1 + g * (i + 1)]
            alloc = fixed[:, i] if allocation is not None else self._choose(policy, frames, prev_rx, prev_tx, snr, link)
            gop = self._run_gop(frames, prev_rx, prev_tx, alloc, snr, link)
            parts.append(gop)
            allocations.append(alloc)
            prev_rx, prev_tx = gop["x_hat"][:, -1], gop["tx"]
        mask = torch.cat([p["mask"] for p in parts], dim=1)
        out = {"x_hat": torch.cat([p["x_hat"] for p in parts], dim=1), "z": torch.cat([p["z"] for p in parts], dim=1),
               "y": torch.cat([p["y"] for p in parts], dim=1), "mask": mask,
               "allocation": torch.stack(allocations, dim=1), "channel_uses": mask.sum(dim=(1, 2)),
               "warp_mse": torch.stack([p["warp_mse"] for p in parts[1:]]).mean()}
        if first["h"] is not None:
            out["h"] = torch.cat([p["h"] for p in parts], dim=1)
        return out

    def loss(self, out: dict, x: torch.Tensor) -> torch.Tensor:
        """MSE over all frames (plus ``flow_loss_weight`` x the transmitter's warping MSE)."""
        mse = F.mse_loss(out["x_hat"], x)
        return mse + self.flow_loss_weight * out["warp_mse"] if self.flow_loss_weight else mse

    @staticmethod
    def make_link(system, snr_db, batch: int, device, generator: torch.Generator | None = None) -> VideoLink:
        """The :class:`VideoLink` for ``system`` (a hook for ``JSCCSystem.forward``)."""
        return VideoLink.from_system(system, snr_db, batch, device, generator)

    # ------------------------------------------------------------------ agent
    def train_agent_step(self, x: torch.Tensor, link, optimizer: torch.optim.Optimizer, n_samples: int = 4) -> dict:
        """One REINFORCE update of :attr:`agent` on video ``x`` (the JSCC networks are not changed).

        Per GOP: ``n_samples`` allocations are drawn from the policy, each GOP is re-sent on the same
        channel realisation with each of them and with the uniform allocation, and the reward is the
        GOP PSNR gain (dB) over the uniform allocation. The clip then continues from the uniform
        allocation's reconstruction. ``optimizer`` should hold only the agent's parameters; one step
        per GOP. Returns ``{"loss", "reward"}`` averaged over the GOPs (reward: mean sampled gain in dB).
        """
        n_gops = self._check_video(x)
        link = VideoLink.coerce(link)
        g, snr, uniform = self.gop_size, link.snr_db, self.uniform.expand(x.shape[0], -1)
        # the policy's samples come from their own stream: replaying a channel snapshot must not reuse them
        seed = int(torch.randint(2**62, (1,), generator=link.generator, device=link.device))
        action_generator = torch.Generator(device=link.device).manual_seed(seed)
        with torch.no_grad():
            first = self._send_initial(x[:, 0], snr, link)
        prev_rx, prev_tx = first["x_hat"][:, 0], first["tx"]
        stats = []
        for i in range(n_gops):
            frames = x[:, 1 + g * i: 1 + g * (i + 1)]
            snapshot = link.state()
            reference = {}

            def reward_fn(actions: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    rewards = []
                    for s in range(actions.shape[1]):
                        link.restore(snapshot)
                        gop = self._run_gop(frames, prev_rx, prev_tx, self.allocations[actions[:, s]], snr, link)
                        rewards.append(self._gop_psnr(gop["x_hat"], frames))
                    link.restore(snapshot)
                    reference.update(self._run_gop(frames, prev_rx, prev_tx, uniform, snr, link))
                    return torch.stack(rewards, dim=1) - self._gop_psnr(reference["x_hat"], frames).unsqueeze(1)

            features = self.agent_features(frames, prev_tx, snr)
            stats.append(reinforce_step(self.agent, features, reward_fn, optimizer, n_samples, action_generator))
            prev_rx, prev_tx = reference["x_hat"][:, -1], reference["tx"]
        return {key: sum(s[key] for s in stats) / len(stats) for key in ("loss", "reward")}

    def init_interp_as_intra(self) -> None:
        """Start the interpolation codec as the key-frame (image) codec, so that training starts from
        intra coding instead of from scratch: the encoder and decoder stacks and SNR attention get
        the key codec's weights (the encoder's 18 reference inputs zero-weighted, so its symbols are
        the key encoder's), the decoder's residual-image channels are the key decoder's output, its
        flow/scale outputs are zero (warps are the identity) and its mask logits are constant, giving
        ``x̂ = w * intra + (1 - w)/2 * (r̂_a + r̂_b)`` with ``w =`` :data:`INTRA_START_RESIDUAL_WEIGHT`
        (the references keep a gradient)."""
        key = self.key_codec
        if key.config.get("csi_side_input") or key.config.get("norm", "none") != "none":
            raise ValueError(f"init_interp_as_intra needs the 2019 key codec, got {key.config}")
        copy_stack(self.interp_encoder, key.encoder)
        self.interp_encoder_attention.load_state_dict(key.encoder_attention.state_dict())
        self.interp_decoder_attention.load_state_dict(key.decoder_attention.state_dict())
        last = len(key.decoder) - 2  # the final (transposed conv, sigmoid) pair
        self.interp_decoder[:last].load_state_dict(key.decoder[:last].state_dict())
        w = INTRA_START_RESIDUAL_WEIGHT
        with torch.no_grad():
            conv, src = self.interp_decoder[last], key.decoder[last]
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[:, 9:12].copy_(src.weight)
            conv.bias[9:12].copy_(src.bias)
            conv.bias[8] = math.log(2 * w / (1 - w))  # softmax(0, 0, b) = ((1-w)/2, (1-w)/2, w)

    def warm_start(self, checkpoint: dict) -> None:
        """From a ``deepwive`` checkpoint that differs only in the allocation policies (``policy``,
        ``train_policy``: e.g. the agent stage from the trained codec), all weights; else the key-frame
        codec from a ``deepjscc`` / ``adjscc`` checkpoint with the same ``c`` and ``hidden``, and the
        interpolation codec started as that image codec (:meth:`init_interp_as_intra`)."""
        if checkpoint["model"] == "deepwive":
            policies = ("policy", "train_policy")
            other = {k: v for k, v in checkpoint["config"].items() if k not in policies}
            if other != {k: v for k, v in self.config.items() if k not in policies}:
                raise ValueError(f"deepwive can warm-start from a deepwive checkpoint that differs only in {policies}, "
                                 f"not {checkpoint['config']} (this model: {self.config})")
            self.load_state_dict(checkpoint["state_dict"], strict=True)
            return
        self.key_codec.warm_start(checkpoint)
        self.init_interp_as_intra()
