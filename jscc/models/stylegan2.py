"""StyleGAN2 generator and discriminator (Karras et al., "Analyzing and improving the image quality
of StyleGAN", CVPR 2020, configs E/F), pure PyTorch, no custom CUDA ops.

The image prior of InverseJSCC / GenerativeJSCC (Erdemir, Tung, Dragotti & Gündüz, "Generative
joint source-channel coding for semantic image transmission", IEEE JSAC 2023). These are priors,
not JSCC models: they are not in the model registry.

::

    z (B,z_dim) ─► pixel norm ─► n_mapping x [equalised-lr linear (lr x 0.01), lrelu*sqrt2] ─► w (B,w_dim)
    w ─► broadcast ws (B,num_ws,w_dim) ─► truncation ws[:, :cutoff] <- w_avg + psi (ws - w_avg)
    ws ─► const (C4,4,4) ─► 4x4:  modconv3x3 + noise + bias + lrelu ─────────────► toRGB ─► img
                        ─► 8x8:  modconv3x3 up2 (+blur) ─► modconv3x3 (noise...) ─► toRGB + up2(img)
                        ─► ...                                                  ─► images (B,3,R,R)

Each ``w`` drives one layer: ``num_ws = 2 log2(R) - 2`` (the toRGB of a resolution shares its
``w`` with the first conv of the next); ``num_noise = num_ws - 1`` noise inputs, one per conv.

**Range.** Images come out in roughly ``[-1, 1]`` (not clamped: trained generators overshoot a
little). The simulator's images are ``[0, 1]``: :func:`to_unit_range` maps (and clamps) generator
output there, :func:`from_unit_range` maps ``[0, 1]`` images to the ``[-1, 1]`` that
:class:`Discriminator` expects.

**Numerics** (as rosinality/stylegan2-pytorch and NVlabs/stylegan2-ada-pytorch define them):
equalised learning rate (weights stored ~N(0, 1/lr_mul^2), multiplied by ``lr_mul/sqrt(fan_in)``
at run time, biases by ``lr_mul``); leaky ReLU slope 0.2 times ``sqrt(2)``; style affine biases
initialised to 1; demodulation ``rsqrt(sum w^2 + 1e-8)``; noise ``x + strength * n`` before the
bias; the [1,3,3,1] FIR filter (outer product, sum 1): upsampling conv = stride-2 transposed conv
then blur with pad (1,1) and gain 4, skip upsampling = zero insertion then blur with pad (2,1) and
gain 4, discriminator downsampling = blur with pad (2,2) (3x3) or (1,1) (1x1), then stride 2.
Modulation scales activations before and demodulation after a shared convolution (equal to the
grouped "fused" form up to float rounding).

Loading public checkpoints (strict: a missing, unexpected or wrongly shaped tensor is an error)
-----------------------------------------------------------------------------------------------

:meth:`Generator.from_rosinality` reads the ``g_ema`` state dict of rosinality/stylegan2-pytorch
(a ``.pt`` path, the checkpoint dict, or the state dict itself). ``j`` is the block of resolution
``2^(j+2)``; shapes in brackets are theirs -> ours:

==========================================  ==========================================  =========================
rosinality ``g_ema`` key                    ours                                        shape
==========================================  ==========================================  =========================
``style.{i+1}.weight`` / ``.bias``          ``mapping_layers.{i}.weight`` / ``.bias``   same
``latent_avg`` (checkpoint, when present)   ``w_avg``                                   (w,) or (1,w) -> (w,)
``input.input``                             ``blocks.0.const``                          (1,C,4,4) -> (C,4,4)
``conv1.conv.modulation.weight`` / bias     ``blocks.0.conv1.affine.weight`` / bias     same
``conv1.conv.weight``                       ``blocks.0.conv1.weight``                   (1,O,I,3,3) -> (O,I,3,3)
``conv1.activate.bias``                     ``blocks.0.conv1.bias``                     same
``conv1.noise.weight``                      ``blocks.0.conv1.noise_strength``           (1,) -> ()
``noises.noise_0``                          ``blocks.0.conv1.noise_const``              (1,1,4,4) -> (4,4)
``to_rgb1.conv.modulation.weight`` / bias   ``blocks.0.to_rgb.affine.weight`` / bias    same
``to_rgb1.conv.weight``                     ``blocks.0.to_rgb.weight``                  (1,3,I,1,1) -> (3,I,1,1)
``to_rgb1.bias``                            ``blocks.0.to_rgb.bias``                    (1,3,1,1) -> (3,)
``convs.{2j-2}.*`` (upsampling conv)        ``blocks.{j}.conv0.*``                      as ``conv1`` above
``convs.{2j-1}.*``                          ``blocks.{j}.conv1.*``                      as ``conv1`` above
``noises.noise_{2j-1}``                     ``blocks.{j}.conv0.noise_const``            (1,1,r,r) -> (r,r)
``noises.noise_{2j}``                       ``blocks.{j}.conv1.noise_const``            (1,1,r,r) -> (r,r)
``to_rgbs.{j-1}.*``                         ``blocks.{j}.to_rgb.*``                     as ``to_rgb1`` above
``convs.{2j-2}.conv.blur.kernel``,          checked equal to 4 x the [1,3,3,1] filter,
``to_rgbs.{j-1}.upsample.kernel``           not stored
==========================================  ==========================================  =========================

Resolution, widths per resolution, ``w_dim`` and ``n_mapping`` are read from the tensors (any
config passed must agree); ``lr_mlp`` is not stored in their files: pass ``mapping_lr_mul`` if
it was not 0.01. Without ``latent_avg`` (their training checkpoints), ``w_avg`` is estimated with
:meth:`Generator.mean_w`.

:meth:`Generator.from_stylegan2_ada` reads an NVlabs stylegan2-ada-pytorch ``network-*.pkl``
through :func:`restricted_load` (no stored code runs: see there) and maps ``G_ema`` (or ``G``):

==========================================  ==========================================
stylegan2-ada ``G_ema`` name                ours
==========================================  ==========================================
``mapping.fc{i}.weight`` / ``.bias``        ``mapping_layers.{i}.weight`` / ``.bias``
``mapping.w_avg``                           ``w_avg``
``synthesis.b4.const``                      ``blocks.0.const``
``synthesis.b{r}.conv0.*``, ``.conv1.*``    ``blocks.{j}.conv0.*``, ``.conv1.*`` (``affine.weight``,
                                            ``affine.bias``, ``weight``, ``bias``, ``noise_strength``,
                                            ``noise_const``: same names and shapes)
``synthesis.b{r}.torgb.*``                  ``blocks.{j}.to_rgb.*`` (same names and shapes)
``synthesis.b{r}[.conv*].resample_filter``  checked equal to the [1,3,3,1] filter, not stored
==========================================  ==========================================

with ``r = 2^(j+2)``; ``conv_clamp``, the mapping ``lr_multiplier`` and ``w_avg_beta`` come from
the pickled module attributes. Their conv weights carry no ``1/sqrt(fan_in)`` factor, ours do;
demodulation cancels it (up to the 1e-8 inside the square root). Not supported (clear error):
conditional generators (``c_dim > 0``), ``orig``/``resnet`` generator architectures, mapping
layers narrower or wider than ``w_dim``, StyleGAN3 and TensorFlow pickles, and their
discriminators (ours has its own layout). fp16 layers of theirs run in fp32 here, so outputs
match theirs to fp16 precision only.
"""
from __future__ import annotations

import collections
import importlib
import io
import math
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from jscc.metrics import check_images

__all__ = [
    "Generator",
    "Discriminator",
    "to_unit_range",
    "from_unit_range",
    "fir2d",
    "upsample2d",
    "modulated_conv2d",
    "minibatch_stddev",
    "restricted_load",
    "UnsafePickleError",
    "PersistentStub",
    "ObjectStub",
    "module_tensors",
]

BLUR_TAPS = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


# --------------------------------------------------------------------------- range helpers


def to_unit_range(images: Tensor) -> Tensor:
    """Generator output float ``(B,3,H,W)`` in about ``[-1, 1]`` -> ``(x + 1) / 2`` clamped to ``[0, 1]``."""
    return ((images + 1) / 2).clamp(0, 1)


def from_unit_range(images: Tensor) -> Tensor:
    """Simulator images float ``(B,3,H,W)`` in ``[0, 1]`` (checked) -> ``2x - 1`` in ``[-1, 1]``."""
    check_images(images, "images")
    return images * 2 - 1


# --------------------------------------------------------------------------- building blocks


def blur_kernel(device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The 4x4 StyleGAN2 low-pass filter: outer product of [1,3,3,1], normalised to sum 1."""
    taps = torch.tensor(BLUR_TAPS, dtype=dtype, device=device)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


def fir2d(x: Tensor, kernel: Tensor, pad: tuple[int, int], gain: float = 1.0) -> Tensor:
    """Depthwise 2-D FIR filtering (upfirdn2d without up/down): pad, then convolve every channel.

    Args:
        x: float ``(B,C,H,W)``.
        kernel: float ``(kh,kw)``; applied as a true convolution (flipped), as upfirdn2d does.
        pad: ``(before, after)`` zero padding on both spatial axes.
        gain: multiplies the kernel (4 after 2x upsampling keeps the mean).

    Returns:
        ``(B,C,H+before+after-kh+1, W+before+after-kw+1)``.
    """
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = (kernel * gain).flip([0, 1])[None, None].expand(c, 1, *kernel.shape).to(x.dtype)
    return F.conv2d(x, weight, groups=c)  # depthwise: 6-20x faster on CPU than B*C single-channel images


def upsample2d(x: Tensor) -> Tensor:
    """2x FIR upsampling of the skip image: zero insertion, [1,3,3,1] blur, gain 4, pad (2,1).

    ``(B,C,H,W) -> (B,C,2H,2W)``."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, h, 2, w, 2)
    up[:, :, :, 0, :, 0] = x
    p = len(BLUR_TAPS) - 2
    return fir2d(up.reshape(b, c, 2 * h, 2 * w), blur_kernel(x.device, x.dtype), ((p + 1) // 2 + 1, p // 2), gain=4)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: bool = False) -> Tensor:
    """StyleGAN2 modulated convolution.

    Args:
        x: float ``(B,I,H,W)``.
        weight: float ``(O,I,k,k)``, the equalised-lr factor already applied.
        styles: float ``(B,I)``, per-example input-channel scales.
        demodulate: divide each output channel by the norm of its modulated weight.
        up: 2x upsampling: stride-2 transposed conv, then [1,3,3,1] blur (gain 4).

    Returns:
        ``(B,O,H,W)``, or ``(B,O,2H,2W)`` with ``up``.
    """
    x = x * styles[:, :, None, None]
    k = weight.shape[-1]
    if up:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # (B,O,2H+k-2,...)
        p = (len(BLUR_TAPS) - 2) - (k - 1)
        x = fir2d(x, blur_kernel(x.device, x.dtype), ((p + 1) // 2 + 1, p // 2 + 1), gain=4)
    else:
        x = F.conv2d(x, weight, padding=k // 2)
    if demodulate:
        # sum_{i,kh,kw} (w_oi s_bi)^2 = sum_i s_bi^2 * sum_{kh,kw} w_oi^2
        norm2 = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # (B,O)
        x = x * torch.rsqrt(norm2 + DEMOD_EPS)[:, :, None, None]
    return x


def bias_lrelu(x: Tensor, bias: Tensor, clamp: float | None = None) -> Tensor:
    """``lrelu_0.2(x + bias) * sqrt(2)`` (bias over dim 1), then clamp to ``+-clamp`` if given."""
    x = F.leaky_relu(x + bias.reshape(1, -1, *([1] * (x.ndim - 2))), LRELU_SLOPE) * LRELU_GAIN
    return x.clamp(-clamp, clamp) if clamp is not None else x


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer: ``x (B,in) -> (B,out)``.

    Weight stored ``~N(0, 1/lr_mul^2)`` and used as ``weight * lr_mul / sqrt(in)``; bias stored as
    ``bias_init`` and used as ``bias * lr_mul``; optional leaky ReLU with gain ``sqrt(2)``.
    """

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.lr_mul = float(lr_mul)
        self.scale = lr_mul / math.sqrt(in_features)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.scale)
        bias = self.bias * self.lr_mul
        return bias_lrelu(x, bias) if self.activation else x + bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul:g}, lrelu={self.activation}"


class StyledConv(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu (StyleGAN2 "synthesis layer").

    ``x (B,I,r',r'), w (B,w_dim), noise (B|1,1,r,r) | None -> (B,O,r,r)``, ``r' = r/2`` with ``up``.
    Noise strength starts at 0 (as in both reference implementations).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 conv_clamp: float | None = None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.scale = 1 / math.sqrt(in_channels * 9)
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None) -> Tensor:
        x = modulated_conv2d(x, self.weight * self.scale, self.affine(w), up=self.up)
        if noise is not None:
            x = x + self.noise_strength * noise
        return bias_lrelu(x, self.bias, self.conv_clamp)

    def extra_repr(self) -> str:
        o, i = self.weight.shape[:2]
        return f"{i}, {o}, resolution={self.resolution}, up={self.up}"


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation: ``x (B,I,r,r), w (B,w_dim) -> (B,3,r,r)``."""

    def __init__(self, in_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.scale = 1 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight * self.scale, self.affine(w), demodulate=False)
        x = x + self.bias[None, :, None, None]
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution ``r`` of the skip generator.

    ``r = 4``: learned ``const (C,4,4)`` -> ``conv1`` -> ``to_rgb``. ``r > 4``: ``conv0`` (2x up) ->
    ``conv1`` -> ``to_rgb``, added to the 2x-upsampled image of the previous block.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
        else:
            self.conv0 = StyledConv(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = StyledConv(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.to_rgb = ToRGB(out_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if resolution == 4 else 2

    def convs(self) -> list[StyledConv]:
        """The block's styled convs in order (``[conv1]`` at 4x4, else ``[conv0, conv1]``)."""
        return [self.conv1] if self.resolution == 4 else [self.conv0, self.conv1]

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor,
                noise: Sequence[Tensor | None]) -> tuple[Tensor, Tensor]:
        """``x (B,C',r/2,r/2) | None``, ``img (B,3,r/2,r/2) | None``, ``ws (B,num_conv+1,w_dim)``,
        ``noise``: ``num_conv`` tensors or None -> ``x (B,C,r,r)``, ``img (B,3,r,r)``."""
        if self.resolution == 4:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        for i, conv in enumerate(self.convs()):
            x = conv(x, ws[:, i], noise[i])
        y = self.to_rgb(x, ws[:, self.num_conv])
        return x, (y if img is None else upsample2d(img) + y)


def _is_power_of_two(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value & (value - 1) == 0


def _widths(resolution: int, channel_base: int, channel_max: int,
            channels: Mapping[int, int] | None) -> dict[int, int]:
    """Width per resolution ``{4: C4, 8: C8, ..., R: CR}``: ``min(channel_base // r, channel_max)``
    or the explicit ``channels``."""
    resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    if channels is not None:
        widths = {int(r): int(c) for r, c in dict(channels).items()}
        if sorted(widths) != resolutions:
            raise ValueError(f"channels must give a width for each resolution {resolutions}, got keys {sorted(widths)}")
    else:
        widths = {r: min(int(channel_base) // r, int(channel_max)) for r in resolutions}
    bad = {r: c for r, c in widths.items() if c < 1}
    if bad:
        raise ValueError(f"every resolution needs >= 1 channel, got {bad} (raise channel_base / channel_max)")
    return widths


# --------------------------------------------------------------------------- generator


class Generator(nn.Module):
    """StyleGAN2 generator (config F: skip toRGB, no progressive growing), any power-of-two size.

    Args:
        resolution: output side ``R``, a power of two >= 4.
        w_dim: latent ``w`` width (also ``z`` width unless ``z_dim`` is given).
        n_mapping: mapping-network layers.
        channel_base, channel_max: width at resolution ``r`` is ``min(channel_base // r, channel_max)``
            (32768 and 512 are the FFHQ/rosinality ``channel_multiplier=2`` widths; e.g. ``resolution=32,
            channel_base=1024, channel_max=64`` is a CPU-cheap prior).
        z_dim: ``z`` width (default ``w_dim``).
        channels: explicit ``{resolution: width}`` for every resolution 4..R; overrides the two above.
        mapping_lr_mul: learning-rate multiplier of the mapping layers (0.01).
        w_avg_beta: decay of the ``w_avg`` moving average (updated by ``mapping(z, update_w_avg=True)``).
        conv_clamp: clamp conv/toRGB outputs to ``+-conv_clamp`` (stylegan2-ada trains with 256; None = off).

    Noise: ``synthesis`` and ``forward`` take ``noise="random"`` (default: fresh N(0,1) per call,
    ``generator`` used), ``"const"`` (the fixed ``noise_const`` buffers: deterministic), ``"none"``, or
    a list of ``num_noise`` tensors, the ``i``-th broadcastable to ``(B,1,r_i,r_i)`` (see
    :attr:`noise_resolutions`, :meth:`make_noise`); gradients flow to ``ws`` and to such tensors.
    """

    def __init__(self, resolution: int, w_dim: int = 512, n_mapping: int = 8, channel_base: int = 32768,
                 channel_max: int = 512, *, z_dim: int | None = None, channels: Mapping[int, int] | None = None,
                 mapping_lr_mul: float = 0.01, w_avg_beta: float = 0.995, conv_clamp: float | None = None):
        super().__init__()
        if not _is_power_of_two(resolution) or resolution < 4:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
        z_dim = w_dim if z_dim is None else z_dim
        for name, value in (("w_dim", w_dim), ("z_dim", z_dim), ("n_mapping", n_mapping)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not mapping_lr_mul > 0:
            raise ValueError(f"mapping_lr_mul must be > 0, got {mapping_lr_mul!r}")
        widths = _widths(resolution, channel_base, channel_max, channels)
        self.config = {"resolution": resolution, "w_dim": w_dim, "n_mapping": n_mapping,
                       "channel_base": int(channel_base), "channel_max": int(channel_max), "z_dim": z_dim,
                       "channels": None if channels is None else dict(widths),
                       "mapping_lr_mul": float(mapping_lr_mul), "w_avg_beta": float(w_avg_beta),
                       "conv_clamp": None if conv_clamp is None else float(conv_clamp)}
        self.resolution, self.w_dim, self.z_dim = resolution, w_dim, z_dim
        self.widths = widths
        self.w_avg_beta = float(w_avg_beta)

        self.mapping_layers = nn.ModuleList(
            EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=mapping_lr_mul, activation=True)
            for i in range(n_mapping))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.blocks = nn.ModuleList(
            SynthesisBlock(widths.get(r // 2, 0), widths[r], w_dim, r, conv_clamp=conv_clamp) for r in widths)

    # ---- sizes

    @property
    def num_ws(self) -> int:
        """Number of ``w`` vectors ``synthesis`` takes: ``2 log2(R) - 2``."""
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def num_noise(self) -> int:
        """Number of noise inputs (one per styled conv): ``num_ws - 1``."""
        return self.num_ws - 1

    @property
    def noise_resolutions(self) -> list[int]:
        """Side of each noise input, in order: ``[4, 8, 8, 16, 16, ..., R, R]``."""
        return [conv.resolution for block in self.blocks for conv in block.convs()]

    def styled_convs(self) -> list[StyledConv]:
        """Every styled conv, in noise-input order."""
        return [conv for block in self.blocks for conv in block.convs()]

    # ---- latent space

    def mapping(self, z: Tensor, update_w_avg: bool = False) -> Tensor:
        """``z`` float ``(B,z_dim)`` -> ``w (B,w_dim)``.

        ``update_w_avg``: move ``w_avg`` towards this batch's mean ``w`` (``w_avg <- beta w_avg +
        (1-beta) mean(w)``), as StyleGAN2 training does for truncation.
        """
        if not isinstance(z, Tensor) or not z.is_floating_point() or z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be a floating tensor (B, {self.z_dim}), got "
                             f"{tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__}")
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        for layer in self.mapping_layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x

    def truncate(self, ws: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Tensor:
        """Truncation trick: ``w_avg + psi (w - w_avg)`` on ``ws[:, :cutoff]`` (all when None).

        ``ws``: ``(B,w_dim)`` or ``(B,num_ws,w_dim)``; returns the same shape (``ws`` itself when
        ``psi == 1``, else a new tensor; gradients flow through it).
        """
        if truncation_psi == 1:
            return ws
        truncated = self.w_avg + truncation_psi * (ws - self.w_avg)
        if truncation_cutoff is None or ws.ndim == 2:
            return truncated
        return torch.cat([truncated[:, :truncation_cutoff], ws[:, truncation_cutoff:]], dim=1)

    def ws_from_z(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Tensor:
        """``z (B,z_dim)`` -> ``ws (B,num_ws,w_dim)``: mapping, broadcast, truncation."""
        ws = self.mapping(z).unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    @torch.no_grad()
    def mean_w(self, n: int = 10_000, generator: torch.Generator | None = None, batch_size: int = 2048) -> Tensor:
        """Monte-Carlo estimate of ``E[mapping(z)]``, ``z ~ N(0, I)``, from ``n`` samples: float32 ``(w_dim,)``.

        Use ``g.w_avg.copy_(g.mean_w())`` for a model whose ``w_avg`` was never tracked.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        device = self.w_avg.device
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=device)
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), self.z_dim, generator=generator, device=device)
            total += self.mapping(z).double().sum(0)
        return (total / n).float()

    # ---- synthesis

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[Tensor]:
        """Fresh N(0,1) noise inputs: ``num_noise`` tensors ``(batch,1,r_i,r_i)`` (e.g. to optimise)."""
        device = self.w_avg.device
        return [torch.randn(batch, 1, r, r, generator=generator, device=device) for r in self.noise_resolutions]

    def _noise_inputs(self, noise: str | Sequence[Tensor] | None, batch: int,
                      generator: torch.Generator | None) -> list[Tensor | None]:
        convs = self.styled_convs()
        if noise is None or (isinstance(noise, str) and noise == "random"):
            return self.make_noise(batch, generator)
        if isinstance(noise, str):
            if noise == "const":
                return [conv.noise_const[None, None] for conv in convs]
            if noise == "none":
                return [None] * len(convs)
            raise ValueError(f"noise must be None, 'random', 'const', 'none' or a list of tensors, got {noise!r}")
        noise = list(noise)
        if len(noise) != len(convs):
            raise ValueError(f"noise must hold {len(convs)} tensors (one per styled conv), got {len(noise)}")
        for i, (n, conv) in enumerate(zip(noise, convs)):
            r = conv.resolution
            ok = isinstance(n, Tensor) and (
                (n.ndim == 2 and tuple(n.shape) == (r, r))
                or (n.ndim == 4 and n.shape[0] in (1, batch) and tuple(n.shape[1:]) == (1, r, r)))
            if not ok:
                shape = tuple(n.shape) if isinstance(n, Tensor) else type(n).__name__
                raise ValueError(f"noise[{i}] must have shape ({r},{r}), (1,1,{r},{r}) or ({batch},1,{r},{r}), "
                                 f"got {shape}")
        return noise

    def synthesis(self, ws: Tensor, noise: str | Sequence[Tensor] | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
        """``ws`` float ``(B,num_ws,w_dim)`` -> images float32 ``(B,3,R,R)`` in about ``[-1, 1]``.

        ``noise``: None / ``"random"`` (drawn with ``generator``), ``"const"``, ``"none"`` or a list of
        ``num_noise`` tensors (see the class docstring).
        """
        if (not isinstance(ws, Tensor) or not ws.is_floating_point() or ws.ndim != 3
                or ws.shape[1:] != (self.num_ws, self.w_dim)):
            got = tuple(ws.shape) if isinstance(ws, Tensor) else type(ws).__name__
            raise ValueError(f"ws must be a floating tensor (B, num_ws={self.num_ws}, w_dim={self.w_dim}), got {got}")
        noises = self._noise_inputs(noise, ws.shape[0], generator)
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks:
            k = block.num_conv
            x, img = block(x, img, ws[:, w_idx:w_idx + k + 1], noises[n_idx:n_idx + k])
            w_idx += k
            n_idx += k
        return img

    def forward(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise: str | Sequence[Tensor] | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``z (B,z_dim)`` -> images ``(B,3,R,R)`` in about ``[-1, 1]`` (:func:`to_unit_range` for [0, 1])."""
        return self.synthesis(self.ws_from_z(z, truncation_psi, truncation_cutoff), noise=noise, generator=generator)

    # ---- public checkpoints

    @classmethod
    def from_rosinality(cls, source: str | os.PathLike | Mapping[str, Any], latent_avg: Tensor | None = None, *,
                        w_avg_samples: int = 10_000, **config) -> "Generator":
        """Build from rosinality/stylegan2-pytorch weights (key table in the module docstring).

        Args:
            source: a ``.pt`` path (loaded with ``weights_only=True``), their checkpoint dict (uses
                ``"g_ema"`` and ``"latent_avg"``), or the ``g_ema`` state dict itself.
            latent_avg: ``(w_dim,)`` or ``(1,w_dim)`` mean ``w``; overrides the checkpoint's.
            w_avg_samples: without any ``latent_avg``, ``w_avg`` is estimated from this many ``z``
                (seed 0).
            **config: Generator arguments. Resolution, widths, ``w_dim``, ``z_dim`` and ``n_mapping``
                are read from the tensors and must agree when given; pass ``mapping_lr_mul`` if
                their ``lr_mlp`` was not 0.01.

        Raises:
            ValueError: missing, unexpected or wrongly shaped tensors, a blur kernel other than
                [1,3,3,1], or a config that disagrees with the tensors.
        """
        if isinstance(source, (str, os.PathLike)):
            source = _load_torch_checkpoint(source)
        if not isinstance(source, Mapping):
            raise ValueError(f"expected a rosinality checkpoint or g_ema state dict, got {type(source).__name__}")
        if "g_ema" in source:
            if latent_avg is None:
                latent_avg = source.get("latent_avg")
            source = source["g_ema"]
        state = dict(source)
        inferred = _infer_rosinality_config(state)
        gen = cls(**_merge_config(inferred, config, "rosinality g_ema"))
        table = _rosinality_table(len(gen.blocks), len(gen.mapping_layers))
        expected_kernel = 4 * blur_kernel()
        checked = {f"convs.{2 * j - 2}.conv.blur.kernel" for j in range(1, len(gen.blocks))}
        checked |= {f"to_rgbs.{j - 1}.upsample.kernel" for j in range(1, len(gen.blocks))}
        _check_key_sets(state, set(table) | checked, "rosinality g_ema")
        for key in sorted(checked):
            if not torch.allclose(state[key].float(), expected_kernel):
                raise ValueError(f"{key}: only the [1,3,3,1] blur kernel is supported, got {state[key].tolist()}")
        gen._load_mapped(state, table, "rosinality g_ema")
        gen._set_w_avg(latent_avg, w_avg_samples)
        return gen

    @classmethod
    def from_stylegan2_ada_state_dict(cls, state_dict: Mapping[str, Tensor], **config) -> "Generator":
        """Build from the ``state_dict()`` of an NVlabs stylegan2-ada-pytorch ``Generator`` (names in
        the module docstring). Sizes are read from the tensors; ``conv_clamp`` (default None) and
        ``mapping_lr_mul`` (0.01) are not in a state dict: pass them if they differ."""
        state = dict(state_dict)
        inferred = _infer_ada_config(state)
        gen = cls(**_merge_config(inferred, config, "stylegan2-ada G"))
        table = _ada_table(gen)
        checked = {k for k in state if k.endswith("resample_filter")}
        _check_key_sets(state, set(table) | checked, "stylegan2-ada G")
        for key in sorted(checked):
            if not torch.allclose(state[key].float(), blur_kernel()):
                raise ValueError(f"{key}: only the [1,3,3,1] resample filter is supported, got {state[key].tolist()}")
        gen._load_mapped(state, table, "stylegan2-ada G")
        return gen

    @classmethod
    def from_stylegan2_ada(cls, path: str | os.PathLike | BinaryIO, network: str = "G_ema", **config) -> "Generator":
        """Build from an NVlabs stylegan2-ada-pytorch ``.pkl`` (``network``: ``"G_ema"`` or ``"G"``).

        The pickle is read by :func:`restricted_load`: its stored classes and source code are never
        imported or executed. ``conv_clamp``, the mapping lr multiplier and ``w_avg_beta`` come from
        the pickled attributes; ``config`` may repeat (must agree with) them.
        """
        if isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as f:
                data = restricted_load(f)
        else:
            data = restricted_load(path)
        if not isinstance(data, Mapping) or network not in data:
            keys = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a stylegan2-ada-pytorch network pickle with {network!r} (found {keys}); "
                             "TensorFlow StyleGAN2 pickles must first be converted with NVlabs' legacy.py")
        net = data[network]
        if not isinstance(net, PersistentStub) or net.class_name != "Generator":
            raise ValueError(f"{network!r} is not a pickled stylegan2-ada Generator "
                             f"(got {getattr(net, 'class_name', type(net).__name__)})")
        tensors, attrs = module_tensors(net)
        return cls.from_stylegan2_ada_state_dict(tensors, **_merge_config(_ada_attr_config(attrs), config,
                                                                          "stylegan2-ada pickle"))

    def _load_mapped(self, state: Mapping[str, Tensor], table: Mapping[str, tuple[str, str]], source: str) -> None:
        """Copy ``state[their] -> ours`` for every ``their: (ours, layout)`` entry after checking shapes."""
        ours = self.state_dict()
        mapped = {}
        for their, (name, layout) in table.items():
            want = _their_shape(tuple(ours[name].shape), layout)
            got = tuple(state[their].shape)
            if got != want:
                raise ValueError(f"{source}: {their} has shape {got}, expected {want} "
                                 f"(-> {name} {tuple(ours[name].shape)})")
            mapped[name] = state[their].reshape(ours[name].shape).to(ours[name].dtype)
        mapped.setdefault("w_avg", self.w_avg.clone())
        self.load_state_dict(mapped, strict=True)

    def _set_w_avg(self, latent_avg: Tensor | None, w_avg_samples: int) -> None:
        if latent_avg is None:
            self.w_avg.copy_(self.mean_w(w_avg_samples, generator=torch.Generator().manual_seed(0)))
            return
        latent_avg = torch.as_tensor(latent_avg)
        if latent_avg.numel() != self.w_dim:
            raise ValueError(f"latent_avg has shape {tuple(latent_avg.shape)}, expected ({self.w_dim},)")
        self.w_avg.copy_(latent_avg.reshape(-1))


# Layouts: how a public tensor's shape relates to ours.
_LAYOUTS = {
    "same": lambda s: s,
    "lead1": lambda s: (1, *s),  # (1,O,I,k,k), (1,C,4,4)
    "lead11": lambda s: (1, 1, *s),  # noise (1,1,r,r)
    "bias4d": lambda s: (1, s[0], 1, 1),  # toRGB bias (1,3,1,1)
    "scalar1": lambda s: (1,),  # noise strength
}


def _their_shape(ours: tuple[int, ...], layout: str) -> tuple[int, ...]:
    return tuple(_LAYOUTS[layout](ours))


def _rosinality_table(num_blocks: int, n_mapping: int) -> dict[str, tuple[str, str]]:
    """``{rosinality key: (our key, layout)}`` for every tensor of their ``g_ema`` except blur kernels."""
    table = {}
    for i in range(n_mapping):
        table[f"style.{i + 1}.weight"] = (f"mapping_layers.{i}.weight", "same")
        table[f"style.{i + 1}.bias"] = (f"mapping_layers.{i}.bias", "same")
    table["input.input"] = ("blocks.0.const", "lead1")

    def styled(their: str, ours: str, noise_idx: int) -> None:
        table[f"{their}.conv.weight"] = (f"{ours}.weight", "lead1")
        table[f"{their}.conv.modulation.weight"] = (f"{ours}.affine.weight", "same")
        table[f"{their}.conv.modulation.bias"] = (f"{ours}.affine.bias", "same")
        table[f"{their}.noise.weight"] = (f"{ours}.noise_strength", "scalar1")
        table[f"{their}.activate.bias"] = (f"{ours}.bias", "same")
        table[f"noises.noise_{noise_idx}"] = (f"{ours}.noise_const", "lead11")

    def to_rgb(their: str, ours: str) -> None:
        table[f"{their}.conv.weight"] = (f"{ours}.weight", "lead1")
        table[f"{their}.conv.modulation.weight"] = (f"{ours}.affine.weight", "same")
        table[f"{their}.conv.modulation.bias"] = (f"{ours}.affine.bias", "same")
        table[f"{their}.bias"] = (f"{ours}.bias", "bias4d")

    styled("conv1", "blocks.0.conv1", 0)
    to_rgb("to_rgb1", "blocks.0.to_rgb")
    for j in range(1, num_blocks):
        styled(f"convs.{2 * j - 2}", f"blocks.{j}.conv0", 2 * j - 1)
        styled(f"convs.{2 * j - 1}", f"blocks.{j}.conv1", 2 * j)
        to_rgb(f"to_rgbs.{j - 1}", f"blocks.{j}.to_rgb")
    return table


def _ada_table(gen: Generator) -> dict[str, tuple[str, str]]:
    """``{stylegan2-ada G name: (our key, layout)}`` for every tensor except resample filters."""
    table = {f"mapping.fc{i}.{p}": (f"mapping_layers.{i}.{p}", "same")
             for i in range(len(gen.mapping_layers)) for p in ("weight", "bias")}
    table["mapping.w_avg"] = ("w_avg", "same")
    for j, block in enumerate(gen.blocks):
        prefix = f"synthesis.b{block.resolution}"
        for name in block.state_dict():
            table[f"{prefix}.{name.replace('to_rgb.', 'torgb.')}"] = (f"blocks.{j}.{name}", "same")
    return table


def _check_key_sets(state: Mapping[str, Any], expected: set[str], source: str) -> None:
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
        raise ValueError(f"{source} state dict does not match the architecture read from it: "
                         f"missing [{show(missing)}], unexpected [{show(unexpected)}]")


def _require(state: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state:
        raise ValueError(f"not a {source} state dict: no {key!r} (keys start {sorted(state)[:5]})")
    return state[key]


def _infer_rosinality_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Resolution, widths, ``w_dim``, ``z_dim`` and ``n_mapping`` from the shapes of a ``g_ema`` dict."""
    source = "rosinality g_ema"
    n_mapping = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
    style = _require(state, "style.1.weight", source)
    const = _require(state, "input.input", source)
    n_up = len([k for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    channels = {4: int(const.shape[1])}
    for j in range(1, n_up + 1):
        channels[2 ** (j + 2)] = int(_require(state, f"convs.{2 * j - 2}.conv.weight", source).shape[1])
    return {"resolution": 2 ** (n_up + 2), "w_dim": int(style.shape[0]), "z_dim": int(style.shape[1]),
            "n_mapping": n_mapping, "channels": channels}


def _infer_ada_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """The same, from the names and shapes of a stylegan2-ada ``Generator.state_dict()``."""
    source = "stylegan2-ada G"
    if any(k.startswith("mapping.embed.") for k in state):
        raise ValueError("conditional stylegan2-ada generators (c_dim > 0) are not supported")
    n_mapping = len([k for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    fc0 = _require(state, "mapping.fc0.weight", source)
    last = _require(state, f"mapping.fc{n_mapping - 1}.weight", source)
    hidden = {int(v.shape[0]) for k, v in state.items() if re.fullmatch(r"mapping\.fc\d+\.weight", k)}
    if hidden != {last.shape[0]}:
        raise ValueError(f"mapping layers of widths {sorted(hidden)} differ from w_dim={last.shape[0]}: not supported")
    resolutions = sorted({int(m.group(1)) for k in state if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if not resolutions or resolutions[0] != 4:
        raise ValueError(f"not a stylegan2-ada G state dict: synthesis blocks {resolutions}")
    if any(k.startswith("synthesis.") and ".skip." in k for k in state):
        raise ValueError("stylegan2-ada 'resnet' generator architecture is not supported (only 'skip')")
    channels = {r: int(_require(state, f"synthesis.b{r}.conv1.weight", source).shape[0]) for r in resolutions}
    return {"resolution": resolutions[-1], "w_dim": int(last.shape[0]), "z_dim": int(fc0.shape[1]),
            "n_mapping": n_mapping, "channels": channels}


def _ada_attr_config(attrs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Config read from pickled stylegan2-ada module attributes (conv_clamp, lr multiplier, w_avg_beta)."""
    top = attrs.get("", {})
    if top.get("c_dim", 0):
        raise ValueError(f"conditional stylegan2-ada generators (c_dim={top['c_dim']}) are not supported")
    if top.get("img_channels", 3) != 3:
        raise ValueError(f"only RGB generators are supported, got img_channels={top['img_channels']}")
    config: dict[str, Any] = {}
    fc0 = attrs.get("mapping.fc0", {})
    if "bias_gain" in fc0:
        config["mapping_lr_mul"] = float(fc0["bias_gain"])
    beta = attrs.get("mapping", {}).get("w_avg_beta")
    if beta is not None:
        config["w_avg_beta"] = float(beta)
    clamps = {a.get("conv_clamp") for name, a in attrs.items() if re.fullmatch(r"synthesis\.b\d+\.conv[01]", name)}
    if len(clamps) > 1:
        raise ValueError(f"layers disagree on conv_clamp: {clamps}")
    if clamps:
        config["conv_clamp"] = clamps.pop()
    for name, a in attrs.items():
        if a.get("architecture", "skip") != "skip":
            raise ValueError(f"{name}: stylegan2-ada architecture {a['architecture']!r} is not supported (only 'skip')")
        if a.get("activation", "lrelu") != "lrelu" and re.fullmatch(r"synthesis\.b\d+\.conv[01]|mapping\.fc\d+", name):
            raise ValueError(f"{name}: activation {a['activation']!r} is not supported (only 'lrelu')")
    return config


def _merge_config(found: Mapping[str, Any], requested: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``found`` (read from a checkpoint) plus ``requested``; ValueError where they disagree.

    ``channel_base``/``channel_max`` requests are checked against the widths found."""
    merged = dict(found)
    for key, value in requested.items():
        if key in ("channel_base", "channel_max") and "channels" in found:
            continue
        if key in found and found[key] != value:
            raise ValueError(f"{source}: {key}={value!r} was requested but the checkpoint has {key}={found[key]!r}")
        merged[key] = value
    if "channels" in found and ({"channel_base", "channel_max"} & set(requested)):
        derived = _widths(found["resolution"], requested.get("channel_base", 32768),
                          requested.get("channel_max", 512), None)
        if derived != found["channels"]:
            raise ValueError(f"{source}: channel_base/channel_max give widths {derived}, the checkpoint has "
                             f"{found['channels']}")
        merged["channel_base"] = requested.get("channel_base", 32768)
        merged["channel_max"] = requested.get("channel_max", 512)
    return merged


def _load_torch_checkpoint(path: str | os.PathLike) -> Any:
    import argparse  # rosinality training checkpoints store their argparse.Namespace under "args"

    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- restricted unpickling


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the whitelist (code that would run on loading)."""


class PersistentStub:
    """An object pickled by NVlabs ``torch_utils.persistence``: the class name and pickled state.

    The real unpickler would ``exec`` the stored module source (``meta["module_src"]``) to rebuild
    the class; here that source is dropped unread and nothing is executed.

    Attributes:
        class_name: e.g. ``"Generator"``, ``"SynthesisLayer"``.
        state: the object's pickled ``__dict__`` (for an ``nn.Module``: ``_parameters``,
            ``_buffers``, ``_modules``, plain attributes).
        version: ``torch_utils.persistence`` format version.
    """

    def __init__(self, meta: Any):
        if not isinstance(meta, Mapping) or meta.get("type") != "class":
            raise UnsafePickleError("torch_utils.persistence object with unexpected metadata")
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        state = meta.get("state")
        self.state = dict(state) if isinstance(state, Mapping) else {}

    def __repr__(self) -> str:
        return f"PersistentStub({self.class_name})"


class ObjectStub(dict):
    """An instance of a non-importable pickled class (e.g. ``dnnlib.util.EasyDict``): records the
    constructor arguments, dict / list items and ``__setstate__`` state, runs nothing."""

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.state, obj.items_list = args, None, []
        return obj

    def __init__(self, *args, **kwargs):  # dict.__init__ would interpret args
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items_list.append(item)

    def extend(self, items: Any) -> None:
        self.items_list.extend(items)

    def __repr__(self) -> str:
        return f"ObjectStub({self.pickled_name})"


def _load_storage_bytes(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: the bytes are a legacy ``torch.save`` of one
    storage, read with ``weights_only=True`` onto the CPU."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("torch storage payload is not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_persistent(meta: Any) -> PersistentStub:
    return PersistentStub(meta)


_STUB_PREFIXES = ("training.", "torch_utils.", "dnnlib.", "metrics.")
_SAFE_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "int", "float", "complex", "bool", "str", "bytes",
                  "bytearray", "slice", "range", "object"}
_NUMPY_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                  for name in ("_reconstruct", "scalar")}
_NUMPY_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype")}
_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _rebuild_persistent,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self._stub_classes: dict[str, type] = {}  # one inert class per pickled class name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH_GLOBALS:
            return _TORCH_GLOBALS[(module, name)]
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "torch":
            obj = getattr(torch, name, None)
            if isinstance(obj, torch.dtype) or (name.endswith("Storage") and isinstance(obj, type)):
                return obj
        if (module, name) in _NUMPY_GLOBALS:
            return getattr(importlib.import_module(module), name)
        if module.startswith(_STUB_PREFIXES) or module in {p.rstrip(".") for p in _STUB_PREFIXES}:
            qualified = f"{module}.{name}"
            if qualified not in self._stub_classes:
                self._stub_classes[qualified] = type(name, (ObjectStub,), {"pickled_name": qualified})
            return self._stub_classes[qualified]
        raise UnsafePickleError(f"refusing to load global {module}.{name}: not in the whitelist of "
                                "tensor/container rebuilders (a pickle can run arbitrary code through it)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not supported (is this a torch.save file? use torch.load)")


def restricted_load(file: BinaryIO) -> Any:
    """Unpickle a stylegan2-ada-style pickle without running stored code.

    ``find_class`` allows only: torch tensor / parameter rebuilders and ``torch.storage._load_from_bytes``
    (replaced by a ``weights_only=True`` load of the embedded legacy storage), torch dtypes, storages
    and ``Size``, ``collections.OrderedDict``, numpy's array/scalar/dtype reconstructors and inert
    builtins (``set``, ``slice``, ...). ``torch_utils.persistence._reconstruct_persistent_obj`` becomes
    :class:`PersistentStub` (its stored source code is never executed); other classes under
    ``training.``, ``torch_utils.``, ``dnnlib.``, ``metrics.`` become inert :class:`ObjectStub`
    subclasses. Anything else (``os.system``, ``builtins.eval``, ``getattr``...) raises
    :class:`UnsafePickleError`.
    """
    return _RestrictedUnpickler(file).load()


def module_tensors(obj: Any, prefix: str = "") -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    """Flatten a pickled ``nn.Module`` stub like ``state_dict()``.

    Returns:
        ``tensors``: ``{"mapping.fc0.weight": Tensor, ...}`` (parameters and persistent buffers,
        detached, CPU); ``attrs``: ``{"mapping.fc0": {"bias_gain": 0.01, ...}, "": {...}}``, the plain
        (str/int/float/bool/None) attributes of every module, keyed by module path.
    """
    state = obj.state if isinstance(obj, (PersistentStub, ObjectStub)) else None
    if not isinstance(state, Mapping) or "_modules" not in state:
        raise ValueError(f"{prefix or 'object'} is not a pickled torch module (got {obj!r})")
    tensors: dict[str, Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or name in skip:
                continue
            if not isinstance(value, Tensor):
                raise ValueError(f"{prefix}{name} is not a tensor ({type(value).__name__})")
            tensors[prefix + name] = value.detach()
    attrs = {prefix.rstrip("."): {k: v for k, v in state.items()
                                  if not k.startswith("_") and isinstance(v, (str, int, float, bool, type(None)))}}
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        sub_tensors, sub_attrs = module_tensors(child, f"{prefix}{name}.")
        tensors.update(sub_tensors)
        attrs.update(sub_attrs)
    return tensors, attrs


# --------------------------------------------------------------------------- discriminator


class Conv2dLayer(nn.Module):
    """Equalised-lr conv, optional FIR-blur + stride-2 downsampling, bias, optional lrelu*sqrt2.

    ``(B,I,H,W) -> (B,O,H,W)``, or ``(B,O,H/2,W/2)`` with ``down``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, down: bool = False,
                 bias: bool = True, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.down, self.activate = down, activate

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.scale
        k = weight.shape[-1]
        if self.down:
            p = (len(BLUR_TAPS) - 2) + (k - 1)
            x = fir2d(x, blur_kernel(x.device, x.dtype), ((p + 1) // 2, p // 2))
            x = F.conv2d(x, weight, stride=2)
        else:
            x = F.conv2d(x, weight, padding=k // 2)
        if self.activate:
            return bias_lrelu(x, self.bias if self.bias is not None else x.new_zeros(x.shape[1]))
        return x if self.bias is None else x + self.bias[None, :, None, None]


class DiscriminatorBlock(nn.Module):
    """Residual block: ``(conv3x3 -> conv3x3 down) + conv1x1 down (no bias)``, over ``sqrt(2)``.

    ``(B,I,r,r) -> (B,O,r/2,r/2)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3)
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, down=True)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, down=True, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / math.sqrt(2)


def minibatch_stddev(x: Tensor, group_size: int = 4, num_channels: int = 1) -> Tensor:
    """Append the minibatch standard deviation: ``(B,C,H,W) -> (B,C+num_channels,H,W)``.

    Examples are split into groups of ``min(group_size, B)`` (``B`` must be a multiple); each new
    channel holds, for its slice of ``C / num_channels`` channels, the mean over channels and
    pixels of the within-group std (``sqrt(var + 1e-8)``), shared by the group.
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    if b % g:
        raise ValueError(f"batch size {b} must be a multiple of the minibatch-stddev group size {g}")
    if c % num_channels:
        raise ValueError(f"{c} channels do not split into {num_channels} stddev channels")
    y = x.reshape(g, b // g, num_channels, c // num_channels, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # (b/g, F, c/F, h, w)
    y = y.mean(dim=(2, 3, 4)).reshape(b // g, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (config E/F).

    ``images (B,3,R,R)`` in ``[-1, 1]`` (:func:`from_unit_range`) -> ``fromRGB 1x1`` -> residual
    blocks ``R -> R/2 -> ... -> 4`` -> minibatch stddev -> ``conv3x3`` -> ``dense (C4*16 -> C4)``,
    lrelu -> ``dense (C4 -> 1)`` -> logits ``(B,)``.

    Args:
        resolution: input side ``R``, a power of two >= 4.
        channel_base, channel_max: width at ``r`` is ``min(channel_base // r, channel_max)``.
        mbstd_group_size: group size of the minibatch-stddev layer (the batch must be a multiple
            of ``min(group_size, B)``).
        mbstd_channels: stddev feature channels appended (1 in StyleGAN2).
    """

    def __init__(self, resolution: int, channel_base: int = 32768, channel_max: int = 512,
                 mbstd_group_size: int = 4, mbstd_channels: int = 1):
        super().__init__()
        if not _is_power_of_two(resolution) or resolution < 4:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
        if mbstd_group_size < 1 or mbstd_channels < 1:
            raise ValueError("mbstd_group_size and mbstd_channels must be >= 1")
        widths = _widths(resolution, channel_base, channel_max, None)
        self.config = {"resolution": resolution, "channel_base": int(channel_base), "channel_max": int(channel_max),
                       "mbstd_group_size": mbstd_group_size, "mbstd_channels": mbstd_channels}
        self.resolution = resolution
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        self.from_rgb = Conv2dLayer(3, widths[resolution], 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(widths[r], widths[r // 2])
                                    for r in sorted(widths, reverse=True) if r > 4)
        self.final_conv = Conv2dLayer(widths[4] + mbstd_channels, widths[4], 3)
        self.fc = EqualLinear(widths[4] * 16, widths[4], activation=True)
        self.out = EqualLinear(widths[4], 1)

    def _check(self, images: Tensor) -> None:
        side = self.resolution
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1:] != (3, side, side):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be (B, 3, {self.resolution}, {self.resolution}), got {got}")

    def features(self, images: Tensor) -> list[Tensor]:
        """Intermediate feature maps for a perceptual feature loss: ``[fromRGB (B,C_R,R,R), block
        outputs (B,C_r,r,r) for r = R/2 ... 4]`` (before the batch-dependent stddev layer, so each
        example's features depend on that example only)."""
        self._check(images)
        x = self.from_rgb(images)
        feats = [x]
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, images: Tensor) -> Tensor:
        """``images (B,3,R,R)`` in ``[-1, 1]`` -> real/fake logits float ``(B,)``."""
        x = self.features(images)[-1]
        x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_channels)
        x = self.final_conv(x)
        return self.out(self.fc(x.flatten(1))).squeeze(1)
