"""DeepJSCC of Bourtsoulatze, Kurka & Gündüz, "Deep joint source-channel coding for wireless
image transmission", IEEE TCCN 2019.

::

    x (B,3,H,W) ─► 5 conv 5x5 (16,32,32,32,c; strides 2,2,1,1,1; PReLU) ─► (B,c,H/4,W/4)
                ─► complex symbols z (B,k), k = c*H*W/32, k/n = c/96
    y (B,k)     ─► 5 transposed conv 5x5 (32,32,32,16,3; strides 1,1,1,2,2; PReLU, sigmoid) ─► x_hat

Fully convolutional: any H, W that are multiples of 4, so a CIFAR-trained model runs on Kodak.

:class:`ADJSCC` adds the SNR-conditioned attention feature (AF) modules of Xu, Ai, Chen, Wang &
Gündüz, "Wireless image transmission using deep source channel coding with attention modules",
IEEE TCSVT 2022, to this backbone: one model for every SNR.
"""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn as nn

from jscc.metrics import check_images
from jscc.models.base import JSCCModel
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
            f"bandwidth ratio {ratio} gives c = 96*k/n = {float(c):.10g} output filters, which is not a "
            "positive integer; DeepJSCC realises k/n = c/96 (e.g. 1/12 -> c=8, 1/6 -> c=16)"
        )
    return int(c)


def _conv(cin: int, cout: int, stride: int, kernel: int = 5) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, stride: int, kernel: int = 5) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


STRIDES = (2, 2, 1, 1, 1)
NORMS = ("none", "gdn")
#: The official DeepJSCC-f / ADJSCC network as a configuration of this backbone (~65x the compute
#: of the 2019 one per pixel): ``--model-arg hidden=[256,256,256,256] --model-arg norm=gdn``.
GDN256 = {"hidden": [256, 256, 256, 256], "norm": "gdn"}


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient also passes below the bound when it pushes ``x`` up (so a
    parameter at the bound is not stuck there), as in tensorflow-compression."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)), None


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), per pixel across channels.

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; ``inverse=True`` multiplies instead (IGDN,
    for decoders). Initialised to ``beta = 1``, ``gamma = 0.1 I`` as in tensorflow-compression, with
    its parametrisation: the stored parameters are ``sqrt(beta + p)`` and ``sqrt(gamma + p)`` with a
    pedestal ``p = 2^-36``, lower-bounded so that ``beta >= beta_min`` and ``gamma >= 0``; the
    pedestal keeps the gradient of the zero-initialised cross-channel terms non-zero.

    Args:
        channels: ``C``; input and output float ``(B,C,H,W)``.
        inverse: IGDN.
    """

    PEDESTAL = 2.0**-36

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse, self.beta_min = bool(inverse), float(beta_min)
        self.beta_param = nn.Parameter(torch.full((channels,), 1.0 + self.PEDESTAL).sqrt())
        self.gamma_param = nn.Parameter((torch.eye(channels) * gamma_init + self.PEDESTAL).sqrt())

    @property
    def beta(self) -> torch.Tensor:
        """``(C,)``, ``>= beta_min``."""
        bound = (self.beta_min + self.PEDESTAL) ** 0.5
        return _LowerBound.apply(self.beta_param, bound).square() - self.PEDESTAL

    @property
    def gamma(self) -> torch.Tensor:
        """``(C, C)``, ``>= 0``; row ``i`` weighs the squared inputs normalising channel ``i``."""
        return _LowerBound.apply(self.gamma_param, self.PEDESTAL**0.5).square() - self.PEDESTAL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = nn.functional.conv2d(x.square(), self.gamma[:, :, None, None], self.beta)
        return x * norm.sqrt() if self.inverse else x * norm.rsqrt()


def check_backbone(c, hidden, c_name: str = "c", norm: str = "none") -> tuple[int, list[int]]:
    """Validated ``(c, hidden)`` of the 2019 backbone: ``c`` a positive integer, ``hidden`` four
    positive filter counts, ``norm`` one of :data:`NORMS`. ValueError otherwise."""
    if int(c) != c or c < 1:
        raise ValueError(f"{c_name} must be a positive integer, got {c!r}")
    hidden = [int(v) for v in hidden]
    if len(hidden) != 4 or min(hidden) < 1:
        raise ValueError(f"hidden must be 4 positive filter counts, got {hidden!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return int(c), hidden


def backbone_config(norm: str) -> dict:
    """The ``norm`` entry of a model's config: empty for the 2019 backbone, so that its
    checkpoints keep the config they were saved with."""
    return {} if norm == "none" else {"norm": norm}


def encoder_stack(in_channels: int, hidden: list[int], out_channels: int, norm: str = "none") -> nn.Sequential:
    """The 2019 encoder: five 5x5 convs (``hidden`` filters, then ``out_channels``), strides
    2,2,1,1,1, each followed by PReLU. ``(B,in,H,W) -> (B,out,H/4,W/4)``.

    ``norm="gdn"``: the official DeepJSCC-f/ADJSCC encoder instead: the first conv 9x9, GDN before
    each hidden PReLU, and no activation after the last conv. Either way the stack is
    ``(conv, activation)`` pairs."""
    filters = [in_channels, *hidden, out_channels]
    layers: list[nn.Module] = []
    for i, (cin, cout, stride) in enumerate(zip(filters[:-1], filters[1:], STRIDES)):
        if norm == "none":
            layers += [_conv(cin, cout, stride), nn.PReLU(cout)]
        else:
            last = i == len(STRIDES) - 1
            layers += [_conv(cin, cout, stride, 9 if i == 0 else 5),
                       nn.Identity() if last else nn.Sequential(GDN(cout), nn.PReLU(cout))]
    return nn.Sequential(*layers)


def decoder_stack(in_channels: int, hidden: list[int], norm: str = "none") -> nn.Sequential:
    """The 2019 decoder: five 5x5 transposed convs (``hidden`` reversed, then 3), strides
    1,1,1,2,2, PReLU and a final sigmoid. ``(B,in,h,w) -> (B,3,4h,4w)`` in [0,1].

    ``norm="gdn"``: IGDN before each hidden PReLU and a 9x9 last layer (the official decoder)."""
    filters = [in_channels, *hidden[::-1], 3]
    layers: list[nn.Module] = []
    for i, (cin, cout, stride) in enumerate(zip(filters[:-1], filters[1:], STRIDES[::-1])):
        last = i == len(STRIDES) - 1
        if norm == "none":
            layers += [_deconv(cin, cout, stride), nn.Sigmoid() if last else nn.PReLU(cout)]
        else:
            layers += [_deconv(cin, cout, stride, 9 if last else 5),
                       nn.Sigmoid() if last else nn.Sequential(GDN(cout, inverse=True), nn.PReLU(cout))]
    return nn.Sequential(*layers)


def copy_stack(dst: nn.Sequential, src: nn.Sequential) -> None:
    """Copy the weights of a trained stack into ``dst`` of the same widths, except that ``dst``'s
    first layer may take more input channels: the extra inputs get zero weights, so ``dst``
    computes exactly what ``src`` does on the first inputs (a warm start that ignores the new ones)."""
    if len(dst) != len(src):
        raise ValueError(f"stacks differ in depth ({len(dst)} vs {len(src)})")
    with torch.no_grad():
        for i, (d, s) in enumerate(zip(dst, src)):
            for name, ps in s.named_parameters():
                pd = dict(d.named_parameters())[name]
                if pd.shape == ps.shape:
                    pd.copy_(ps)
                    continue
                in_dim = 1 if isinstance(d, nn.Conv2d) else 0  # ConvTranspose2d weights are (in, out, k, k)
                grown = [a for a, (x, y) in enumerate(zip(pd.shape, ps.shape)) if x != y]
                if i != 0 or grown != [in_dim] or pd.shape[in_dim] < ps.shape[in_dim]:
                    raise ValueError(f"layer {i} {name}: cannot copy {tuple(ps.shape)} into {tuple(pd.shape)}")
                pd.zero_()
                pd.narrow(in_dim, 0, ps.shape[in_dim]).copy_(ps)


@register_model("deepjscc")
class DeepJSCC(JSCCModel):
    """The 2019 DeepJSCC autoencoder (power normalisation and channel live in the system wrapper).

    Args:
        c: filters of the last encoder layer; bandwidth ratio k/n = c/96.
        hidden: filters of the four hidden encoder layers (the paper: 16, 32, 32, 32); the
            decoder mirrors them. Wider values give a "DeepJSCC+" variant.
        csi_side_input: the decoder also receives the fading realisation ``h`` (Re, Im laid out
            like the received symbols), for ``csi="receiver"`` with ``equalization="side"``.
        norm: ``"none"`` (the 2019 network) or ``"gdn"``: GDN/IGDN and 9x9 outer kernels as in the
            official DeepJSCC-f and ADJSCC code; with ``hidden=[256]*4`` (:data:`GDN256`) it is
            that network (~65x the multiply-accumulates per image).
    """

    snr_adaptive = False  # encoder and decoder ignore the SNR: a sweep may encode once

    def __init__(self, c: int = 8, hidden: tuple[int, ...] | list[int] = (16, 32, 32, 32), csi_side_input: bool = False,
                 norm: str = "none"):
        super().__init__()
        c, hidden = check_backbone(c, hidden, norm=norm)
        self.config = {"c": c, "hidden": hidden, "csi_side_input": bool(csi_side_input), **backbone_config(norm)}
        self.c = int(c)
        self.csi_side_input = bool(csi_side_input)
        self.encoder = encoder_stack(3, hidden, self.c, norm)
        self.decoder = decoder_stack(self.c * (2 if self.csi_side_input else 1), hidden, norm)

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

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Images float32 ``(B,3,H,W)`` in [0,1] -> complex64 symbols ``(B,k)`` (not power-normalised).

        ``snr_db`` is accepted for interface compatibility with SNR-adaptive models and ignored.
        """
        check_images(x, model_input=True)
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
        return self.decoder(self._decoder_input(y, image_size, h))

    def _decoder_input(self, y: torch.Tensor, image_size: tuple[int, int], h: torch.Tensor | None) -> torch.Tensor:
        """Symbols ``(B,k)`` (and ``h``) -> the decoder's input feature map ``(B,c or 2c,H/4,W/4)``."""
        height, width = image_size
        shape = (self.c, height // DOWNSAMPLING, width // DOWNSAMPLING)
        features = symbols_to_features(y, shape)
        if self.csi_side_input:
            if h is None:
                raise ValueError("this decoder was built with csi_side_input=True and needs h")
            features = torch.cat([features, symbols_to_features(h.expand_as(y), shape)], dim=1)
        elif h is not None:
            raise ValueError("h given to a decoder built without csi_side_input")
        return features


class SNRAttention(nn.Module):
    """Attention feature module of ADJSCC: channel-wise scaling conditioned on the SNR.

    ``s = 2 * sigmoid(W2 relu(W1 [mean_hw(f), snr_db / 20]))``, ``f <- f * s``. The paper uses
    ``sigmoid``; the factor 2 with ``W2 = 0`` at initialisation makes the module the identity,
    so a trained DeepJSCC backbone can warm-start an ADJSCC model (:meth:`ADJSCC.warm_start`).

    Args:
        channels: feature channels ``C``.
        hidden: width of the hidden layer (default ``max(C // 4, 8)``; the paper's ``C // 16``
            with its 256-filter network).
    """

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(channels // 4, 8)
        self.context = nn.Sequential(nn.Linear(channels + 1, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        nn.init.zeros_(self.context[2].weight)
        nn.init.zeros_(self.context[2].bias)

    def forward(self, features: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """``features`` (B,C,h,w), ``snr_db`` float32 (B,) -> scaled features (B,C,h,w)."""
        context = torch.cat([features.mean(dim=(2, 3)), snr_db.reshape(-1, 1).to(features.dtype) / 20], dim=1)
        return features * (2 * torch.sigmoid(self.context(context)))[:, :, None, None]


@register_model("adjscc")
class ADJSCC(DeepJSCC):
    """DeepJSCC with SNR attention (ADJSCC): an AF module after each hidden encoder and decoder layer.

    Same arguments, channel uses and symbol layout as :class:`DeepJSCC`; ``encode`` and ``decode``
    need ``snr_db`` (float32 ``(B,)`` in dB, the channel SNR both ends are told). Trained over an
    SNR range (``jscc train --train-snr-range 0 20``), one model serves every SNR. The official
    network (GDN, 256 filters) is ~65x the compute: ``norm="gdn", hidden=[256]*4`` builds it
    (:data:`GDN256`); the default is the 2019 backbone with AF modules.
    """

    snr_adaptive = True

    def __init__(self, c: int = 8, hidden: tuple[int, ...] | list[int] = (16, 32, 32, 32), csi_side_input: bool = False,
                 norm: str = "none"):
        super().__init__(c=c, hidden=hidden, csi_side_input=csi_side_input, norm=norm)
        widths = self.config["hidden"]
        self.encoder_attention = nn.ModuleList(SNRAttention(w) for w in widths)
        self.decoder_attention = nn.ModuleList(SNRAttention(w) for w in widths[::-1])

    @staticmethod
    def _run(stack: nn.Sequential, attention: nn.ModuleList, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        layers = list(stack)
        for i in range(0, len(layers), 2):  # (conv, activation) pairs; AF after the hidden ones
            x = layers[i + 1](layers[i](x))
            if i // 2 < len(attention):
                x = attention[i // 2](x, snr_db)
        return x

    @staticmethod
    def _check_snr(snr_db: torch.Tensor | None, batch: int) -> torch.Tensor:
        if snr_db is None:
            raise ValueError("ADJSCC is SNR-adaptive: encode/decode need snr_db")
        return torch.as_tensor(snr_db, dtype=torch.float32).reshape(-1).expand(batch)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Images float32 ``(B,3,H,W)`` in [0,1] and ``snr_db`` (B,) -> complex64 symbols ``(B,k)``."""
        check_images(x, model_input=True)
        _check_size(*x.shape[-2:])
        snr_db = self._check_snr(snr_db, x.shape[0]).to(x.device)
        return features_to_symbols(self._run(self.encoder, self.encoder_attention, x, snr_db))

    def decode(self, y, image_size, snr_db=None, h=None):
        """Received symbols ``(B,k)`` and ``snr_db`` (B,) -> reconstruction ``(B,3,H,W)`` in [0,1]."""
        snr_db = self._check_snr(snr_db, y.shape[0]).to(y.device)
        return self._run(self.decoder, self.decoder_attention, self._decoder_input(y, image_size, h), snr_db)

    def warm_start(self, checkpoint: dict) -> None:
        """Initialise from a ``deepjscc`` (or ``adjscc``) checkpoint of the same ``c``/``hidden``:
        backbone weights are copied, AF modules start as the identity. ValueError otherwise."""
        if checkpoint["model"] not in ("deepjscc", "adjscc") or checkpoint["config"] != self.config:
            raise ValueError(f"adjscc {self.config} can warm-start from deepjscc/adjscc with the same config, "
                             f"not {checkpoint['model']} {checkpoint['config']}")
        missing, unexpected = self.load_state_dict(checkpoint["state_dict"], strict=False)
        if unexpected or any(not k.startswith(("encoder_attention.", "decoder_attention.")) for k in missing):
            raise ValueError(f"checkpoint does not match the backbone: missing {missing}, unexpected {unexpected}")


def _check_size(height: int, width: int) -> None:
    if height % DOWNSAMPLING or width % DOWNSAMPLING or height < DOWNSAMPLING or width < DOWNSAMPLING:
        raise ValueError(f"image height and width must be positive multiples of 4, got {height}x{width}")
