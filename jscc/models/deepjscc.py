"""DeepJSCC of Bourtsoulatze, Kurka & Gündüz, "Deep joint source-channel coding for wireless
image transmission", IEEE TCCN 2019.

::

    x (B,3,H,W) ─► 5 conv 5x5 (16,32,32,32,c; strides 2,2,1,1,1; PReLU) ─► (B,c,H/4,W/4)
                ─► complex symbols z (B,k), k = c*H*W/32, k/n = c/96
    y (B,k)     ─► 5 transposed conv 5x5 (32,32,32,16,3; strides 1,1,1,2,2; PReLU, sigmoid) ─► x_hat

Fully convolutional: any H, W that are multiples of 4, so a CIFAR-trained model runs on Kodak.
"""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn as nn

from jscc.metrics import check_images
from jscc.models.symbols import features_to_symbols, symbols_to_features
from jscc.registry import register_model

SOURCE_SAMPLES_PER_PIXEL = 3  # n = 3*H*W
DOWNSAMPLING = 4  # two stride-2 layers


def c_from_bandwidth_ratio(ratio: Fraction | str | float) -> int:
    """Output filters ``c = 96 k/n`` for a bandwidth ratio; ValueError unless it is a positive integer.

    ``ratio`` is a Fraction, a string ``"1/12"`` or a float (floats are matched to the nearest
    fraction with denominator <= 96).
    """
    if isinstance(ratio, str):
        frac = Fraction(ratio)
    elif isinstance(ratio, float):
        frac = Fraction(ratio).limit_denominator(96)
    else:
        frac = Fraction(ratio)
    c = frac * SOURCE_SAMPLES_PER_PIXEL * DOWNSAMPLING**2 * 2
    if c.denominator != 1 or c <= 0:
        raise ValueError(
            f"bandwidth ratio {ratio} gives c = 96*k/n = {float(c):.4g} output filters, which is not a "
            "positive integer; DeepJSCC realises k/n = c/96 (e.g. 1/12 -> c=8, 1/6 -> c=16)"
        )
    return int(c)


def _conv(cin: int, cout: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=stride, padding=2)


def _deconv(cin: int, cout: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=stride, padding=2, output_padding=stride - 1)


@register_model("deepjscc")
class DeepJSCC(nn.Module):
    """The 2019 DeepJSCC autoencoder (power normalisation and channel live in the system wrapper).

    Args:
        c: filters of the last encoder layer; bandwidth ratio k/n = c/96.
        hidden: filters of the four hidden encoder layers (the paper: 16, 32, 32, 32); the
            decoder mirrors them. Wider values give a "DeepJSCC+" variant.
        csi_side_input: the decoder also receives the fading realisation ``h`` (Re, Im laid out
            like the received symbols), for ``csi="receiver"`` with ``equalization="side"``.
    """

    snr_adaptive = False  # encoder and decoder ignore the SNR: a sweep may encode once

    def __init__(self, c: int = 8, hidden: tuple[int, ...] | list[int] = (16, 32, 32, 32), csi_side_input: bool = False):
        super().__init__()
        hidden = [int(v) for v in hidden]
        if int(c) != c or c < 1:
            raise ValueError(f"c must be a positive integer, got {c!r}")
        if len(hidden) != 4 or min(hidden) < 1:
            raise ValueError(f"hidden must be 4 positive filter counts, got {hidden!r}")
        self.config = {"c": int(c), "hidden": hidden, "csi_side_input": bool(csi_side_input)}
        self.c = int(c)
        self.csi_side_input = bool(csi_side_input)
        enc_filters = [3, *hidden, self.c]
        strides = [2, 2, 1, 1, 1]
        layers: list[nn.Module] = []
        for cin, cout, s in zip(enc_filters[:-1], enc_filters[1:], strides):
            layers += [_conv(cin, cout, s), nn.PReLU(cout)]
        self.encoder = nn.Sequential(*layers)

        dec_in = self.c * (2 if self.csi_side_input else 1)
        dec_filters = [dec_in, *hidden[::-1], 3]  # c -> 32,32,32,16 -> 3
        layers = []
        for i, (cin, cout, s) in enumerate(zip(dec_filters[:-1], dec_filters[1:], strides[::-1])):
            layers += [_deconv(cin, cout, s), nn.Sigmoid() if i == 4 else nn.PReLU(cout)]
        self.decoder = nn.Sequential(*layers)

    @classmethod
    def from_bandwidth_ratio(cls, ratio: Fraction | str | float, **kwargs) -> "DeepJSCC":
        """Build the model whose k/n equals ``ratio`` exactly (``c = 96 k/n``)."""
        return cls(c=c_from_bandwidth_ratio(ratio), **kwargs)

    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses k per image of ``height`` x ``width`` pixels (``c*H*W/32``)."""
        _check_size(height, width)
        reals = self.c * (height // DOWNSAMPLING) * (width // DOWNSAMPLING)
        if reals % 2:
            raise ValueError(f"c*H*W/16 = {reals} reals is odd: cannot pair them into complex symbols")
        return reals // 2

    def bandwidth_ratio(self, height: int, width: int) -> Fraction:
        """Exact k/n for an image size (always c/96)."""
        return Fraction(self.channel_uses(height, width), SOURCE_SAMPLES_PER_PIXEL * height * width)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Images float32 ``(B,3,H,W)`` in [0,1] -> complex64 symbols ``(B,k)`` (not power-normalised).

        ``snr_db`` is accepted for interface compatibility with SNR-adaptive models and ignored.
        """
        check_images(x)
        _check_size(*x.shape[-2:])
        return features_to_symbols(self.encoder(x))

    def decode(
        self,
        y: torch.Tensor,
        image_size: tuple[int, int],
        snr_db: torch.Tensor | None = None,
        h: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Received complex symbols ``(B,k)`` -> reconstruction float32 ``(B,3,H,W)`` in [0,1].

        ``h``: fading realisation broadcastable to ``y``; required iff ``csi_side_input``.
        """
        height, width = image_size
        shape = (self.c, height // DOWNSAMPLING, width // DOWNSAMPLING)
        features = symbols_to_features(y, shape)
        if self.csi_side_input:
            if h is None:
                raise ValueError("this decoder was built with csi_side_input=True and needs h")
            features = torch.cat([features, symbols_to_features(h.expand_as(y), shape)], dim=1)
        elif h is not None:
            raise ValueError("h given to a decoder built without csi_side_input")
        return self.decoder(features)


def _check_size(height: int, width: int) -> None:
    if height % DOWNSAMPLING or width % DOWNSAMPLING or height < DOWNSAMPLING or width < DOWNSAMPLING:
        raise ValueError(f"image height and width must be positive multiples of 4, got {height}x{width}")
