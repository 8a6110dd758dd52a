"""SwinJSCC: a Swin-transformer deep JSCC with SNR and rate adaptation, written from Yang, Zhang, Tan,
Niyato & Dai, "SwinJSCC: Taming Swin Transformer for Deep Joint Source-Channel Coding", IEEE TCCN 2024,
and WITT (Yang, Zhang, Tan, Niyato & Dai, "WITT: A wireless image transmission transformer for semantic
communications", ICASSP 2023).

::

    x (B,3,H,W) ─► patch embedding (2x2) ─► stage 1 ─► [patch merging ─► stage s] x 3 ─► (B, H/16·W/16, D4)
        ─► linear ─► (B, L, C_max) ─► SNR/rate modulation ─► the first C = 1536 k/n channels ─► z (B, k)
    y (B,k) ─► zero-fill to C_max ─► SNR/rate modulation ─► linear ─► stage 4 ─► [patch expanding ─► stage]
        x 3 ─► linear + pixel shuffle (2x2) ─► sigmoid ─► x_hat (B,3,H,W)

A stage is ``depth`` Swin blocks: LayerNorm, multi-head self-attention inside non-overlapping windows of
``window x window`` tokens (every second block on windows shifted by half a window, with the attention
mask of the Swin transformer), residual, LayerNorm, MLP, residual.

Choices of this implementation (each stated, none hidden):

- **Bandwidth**: ``k = C L / 2`` complex symbols for ``L = (H/16)(W/16)`` tokens of ``C`` reals, so
  ``k/n = C / 1536`` exactly; ``C`` must be even (``768 k/n`` an integer): 1/48 -> 32, 1/16 -> 96, 1/8 -> 192.
- **Rate adaptation (RA)**: one model sends any ratio of ``ratios``. The encoder's head makes
  ``C_max`` channels per token (for the largest ratio); a ratio sends the first ``C`` of them (a fixed,
  nested order) after a modulation conditioned on the ratio, so the encoder learns to put what matters
  most first and the decoder knows ``C`` from the number of symbols it receives. SwinJSCC instead picks
  the ``C`` most important channels per image and gives their indices to the decoder for free; the nested
  order needs no side information. In training each batch draws its ratio uniformly from ``ratios``;
  in evaluation the model sends ``bandwidth_ratio`` (:meth:`SwinJSCC.set_bandwidth_ratio`).
- **SNR adaptation (SA)**: after every stage and at the head, the features are scaled per channel by
  ``2 sigmoid(MLP([mean over tokens, snr_db / 20, 8 k/n]))`` (the ADJSCC attention of
  :class:`~jscc.models.deepjscc.SNRAttention` applied to tokens, identity at initialisation), in the
  encoder and the decoder: both ends are told the SNR and the ratio.
- **Position bias**: a small MLP of the log-scaled relative coordinates (the continuous position bias
  of Swin V2) instead of a table, so that windows clipped to small token grids (CIFAR's 2x2 tokens at the
  last stage) use the same weights.
- **Image sizes**: multiples of 16 whose token grid at every stage is a multiple of the window (clipped
  to the grid): e.g. 32x32 and multiples of 128 with ``window=8``; Kodak's 768x512 works. Others are
  rejected with the sizes that would work.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

from jscc.metrics import check_images
from jscc.models.base import JSCCModel
from jscc.models.symbols import features_to_symbols, symbols_to_features
from jscc.registry import register_model

DOWNSAMPLING = 16  # patch embedding 2x2, then three 2x patch mergings
CHANNELS_PER_RATIO = 3 * DOWNSAMPLING**2 * 2  # C = 1536 k/n reals per token
DEFAULT_RATIOS = ("1/48", "1/32", "1/24", "1/16", "1/12", "1/8")
#: The paper's network (SwinJSCC / WITT base): ``--model-arg dims=[128,192,256,320] --model-arg
#: depths=[2,2,6,2] --model-arg heads=[4,6,8,10]``.
SWINJSCC_PAPER = {"dims": [128, 192, 256, 320], "depths": [2, 2, 6, 2], "heads": [4, 6, 8, 10]}


def _as_fraction(ratio: Fraction | str | float) -> Fraction:
    """A bandwidth ratio as a Fraction (a float is matched to the nearest fraction of denominator <= 1536)."""
    return Fraction(ratio).limit_denominator(CHANNELS_PER_RATIO) if isinstance(ratio, float) else Fraction(ratio)


def channels_for_ratio(ratio: Fraction | str | float) -> int:
    """Reals per token ``C = 1536 k/n`` for a bandwidth ratio; ValueError unless it is a positive even integer."""
    c = _as_fraction(ratio) * CHANNELS_PER_RATIO
    if c.denominator != 1 or c <= 0 or c % 2:
        raise ValueError(f"bandwidth ratio {ratio} gives C = 1536 k/n = {float(c):.10g} reals per token, which is "
                         "not a positive even integer; SwinJSCC realises k/n = C/1536 for even C (e.g. 1/48 -> 32, "
                         "1/16 -> 96, 1/8 -> 192)")
    return int(c)


class ConditionedScale(nn.Module):
    """Per-channel scaling of tokens ``(B, L, D)`` by ``2 sigmoid(MLP([mean_L(t), snr_db / 20, 8 k/n]))``;
    the last layer starts at zero, so the module starts as the identity."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = max(dim // 4, 16)
        self.mlp = nn.Sequential(nn.Linear(dim + 2, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, tokens: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B,L,D), ``condition`` (B,2) = (snr_db / 20, 8 k/n) -> (B,L,D)."""
        context = torch.cat([tokens.mean(1), condition.to(tokens.dtype)], dim=1)
        return tokens * (2 * torch.sigmoid(self.mlp(context))).unsqueeze(1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a continuous relative position bias (an MLP of the
    log-scaled relative coordinates, one value per head)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.position_mlp = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, heads))

    def position_bias(self, wh: int, ww: int) -> torch.Tensor:
        """``(heads, wh ww, wh ww)`` bias for a ``wh x ww`` window."""
        coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, N)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).float()  # (N, N, 2)
        rel = torch.sign(rel) * torch.log2(1 + rel.abs()) / math.log2(8)
        device = self.position_mlp[0].weight.device
        return self.position_mlp(rel.to(device)).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``windows`` (B, nW, N, D) and an additive ``mask`` broadcastable to (B, nW, heads, N, N) -> (B, nW, N, D)."""
        batch, nw, n, dim = windows.shape
        q, k, v = self.qkv(windows).reshape(batch, nw, n, 3, self.heads, dim // self.heads).permute(3, 0, 1, 4, 2, 5)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return self.proj(out.transpose(2, 3).reshape(batch, nw, n, dim))


class SwinBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> residual -> LayerNorm -> MLP -> residual, on tokens
    ``(B, gh, gw, D)``; ``shifted`` blocks roll the grid by half a window first (and back after)."""

    def __init__(self, dim: int, heads: int, window: int, shifted: bool, mlp_ratio: float = 4.0):
        super().__init__()
        self.window, self.shifted = window, shifted
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = WindowAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, gh, gw, dim = x.shape
        wh, ww = min(self.window, gh), min(self.window, gw)
        sh = wh // 2 if self.shifted and gh > wh else 0
        sw = ww // 2 if self.shifted and gw > ww else 0
        h = self.norm1(x)
        if sh or sw:
            h = torch.roll(h, (-sh, -sw), dims=(1, 2))
        windows = (h.reshape(batch, gh // wh, wh, gw // ww, ww, dim).permute(0, 1, 3, 2, 4, 5)
                   .reshape(batch, -1, wh * ww, dim))
        mask = self.attention.position_bias(wh, ww)  # (heads, N, N)
        if sh or sw:
            mask = mask + _shift_mask(gh, gw, wh, ww, sh, sw, x.device).unsqueeze(1)  # (nW, heads, N, N)
        out = self.attention(windows, mask)
        out = out.reshape(batch, gh // wh, gw // ww, wh, ww, dim).permute(0, 1, 3, 2, 4, 5).reshape(batch, gh, gw, dim)
        if sh or sw:
            out = torch.roll(out, (sh, sw), dims=(1, 2))
        x = x + out
        return x + self.mlp(self.norm2(x))


def _shift_mask(gh: int, gw: int, wh: int, ww: int, sh: int, sw: int, device) -> torch.Tensor:
    """Swin's mask for shifted windows: ``(nW, N, N)``, -inf-like between tokens that were not neighbours
    before the roll (regions labelled by where they came from), 0 elsewhere."""
    labels = torch.zeros(gh, gw)
    region = 0
    for hs in (slice(0, gh - wh), slice(gh - wh, gh - sh), slice(gh - sh, gh)):
        for ws in (slice(0, gw - ww), slice(gw - ww, gw - sw), slice(gw - sw, gw)):
            labels[hs, ws] = region
            region += 1
    labels = labels.reshape(gh // wh, wh, gw // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    different = labels[:, :, None] != labels[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different.to(device), -100.0)


class Stage(nn.Module):
    """``depth`` Swin blocks (regular and shifted windows alternating) on ``(B, gh, gw, D)`` tokens."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, shifted=i % 2 == 1, mlp_ratio=mlp_ratio)
                                    for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4D) -> LayerNorm -> linear to ``dim_out``: ``(B, gh, gw, D)`` ->
    ``(B, gh/2, gw/2, dim_out)``."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, dim_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, gh, gw, dim = x.shape
        x = x.reshape(batch, gh // 2, 2, gw // 2, 2, dim).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch, gh // 2, gw // 2, 4 * dim)
        return self.reduction(self.norm(x))


class PatchExpanding(nn.Module):
    """Linear to ``4 dim_out`` and a 2x2 pixel shuffle of the tokens, then LayerNorm: ``(B, gh, gw, D)`` ->
    ``(B, 2gh, 2gw, dim_out)``."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.expand = nn.Linear(dim, 4 * dim_out, bias=False)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, gh, gw, _ = x.shape
        x = self.expand(x)
        dim_out = x.shape[-1] // 4
        x = x.reshape(batch, gh, gw, 2, 2, dim_out).permute(0, 1, 3, 2, 4, 5).reshape(batch, 2 * gh, 2 * gw, dim_out)
        return self.norm(x)


@register_model("swinjscc")
class SwinJSCC(JSCCModel):
    """Swin-transformer JSCC with SNR and rate adaptation (see the module docstring).

    Args:
        ratio: the bandwidth ratio sent in evaluation (one of ``ratios``; change it with
            :meth:`set_bandwidth_ratio`), e.g. ``"1/16"``.
        ratios: every ratio the model serves (training draws one per batch); ``C_max`` is that of the largest.
        dims: token widths of the four stages (encoder; the decoder mirrors them).
        depths: Swin blocks per stage.
        heads: attention heads per stage.
        window: window size in tokens (clipped to small token grids).
        mlp_ratio: hidden width of the blocks' MLP, in units of the stage width.

    ``encode(x, snr_db)``: float32 ``(B,3,H,W)`` in [0,1] and ``snr_db`` ``(B,)`` -> complex64 ``(B, k)`` with
    ``k = C (H/16)(W/16) / 2``. ``decode(y, image_size, snr_db)`` -> float32 ``(B,3,H,W)`` in [0,1]; the ratio
    is read from the number of symbols.
    """

    snr_adaptive = True
    rate_adaptive = True
    size_multiple = DOWNSAMPLING  # image sides the data loaders cut to

    def __init__(self, ratio: str = "1/16", ratios: tuple[str, ...] | list[str] = DEFAULT_RATIOS,
                 dims: tuple[int, ...] | list[int] = (48, 64, 96, 128), depths: tuple[int, ...] | list[int] = (2, 2, 2, 2),
                 heads: tuple[int, ...] | list[int] = (2, 2, 4, 4), window: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        dims, depths, heads = list(dims), list(depths), list(heads)
        if not (len(dims) == len(depths) == len(heads) == 4):
            raise ValueError(f"dims, depths and heads need 4 entries (one per stage), got {dims}, {depths}, {heads}")
        if min(dims + depths + heads) < 1 or window < 1:
            raise ValueError("dims, depths, heads and window must be positive integers")
        ratio_list = [str(Fraction(r)) for r in ratios]
        if not ratio_list:
            raise ValueError("ratios must name at least one bandwidth ratio")
        self.ratio_channels = {r: channels_for_ratio(r) for r in ratio_list}
        self.c_max = max(self.ratio_channels.values())
        self.config = {"ratio": str(Fraction(ratio)), "ratios": ratio_list, "dims": dims, "depths": depths,
                       "heads": heads, "window": int(window), "mlp_ratio": float(mlp_ratio)}
        self.set_bandwidth_ratio(ratio)

        self.embed = nn.Conv2d(3, dims[0], kernel_size=2, stride=2)
        self.embed_norm = nn.LayerNorm(dims[0])
        self.encoder_stages = nn.ModuleList(Stage(d, n, h, window, mlp_ratio) for d, n, h in zip(dims, depths, heads))
        self.merges = nn.ModuleList(PatchMerging(dims[i], dims[i + 1]) for i in range(3))
        self.encoder_scales = nn.ModuleList(ConditionedScale(d) for d in dims)
        self.encoder_head = nn.Linear(dims[-1], self.c_max)
        self.encoder_head_scale = ConditionedScale(self.c_max)

        self.decoder_head_scale = ConditionedScale(self.c_max)
        self.decoder_head = nn.Linear(self.c_max, dims[-1])
        rdims, rdepths, rheads = dims[::-1], depths[::-1], heads[::-1]
        self.decoder_stages = nn.ModuleList(Stage(d, n, h, window, mlp_ratio) for d, n, h in zip(rdims, rdepths, rheads))
        self.expands = nn.ModuleList(PatchExpanding(rdims[i], rdims[i + 1]) for i in range(3))
        self.decoder_scales = nn.ModuleList(ConditionedScale(d) for d in rdims)
        self.unembed = nn.Linear(dims[0], 3 * 4)

    @classmethod
    def from_bandwidth_ratio(cls, ratio: Fraction | str | float, **kwargs) -> "SwinJSCC":
        """The model sending ``ratio`` in evaluation (added to ``ratios`` if it is not one of them)."""
        ratio = str(_as_fraction(ratio))
        ratios = [str(Fraction(r)) for r in kwargs.pop("ratios", DEFAULT_RATIOS)]
        return cls(ratio=ratio, ratios=ratios if ratio in ratios else sorted({*ratios, ratio}, key=Fraction), **kwargs)

    def set_bandwidth_ratio(self, ratio: Fraction | str | float) -> None:
        """Send ``ratio`` (one of ``config["ratios"]``) from now on in evaluation."""
        key = str(_as_fraction(ratio))
        if key not in self.ratio_channels:
            raise ValueError(f"this swinjscc serves k/n in {', '.join(self.ratio_channels)}, not {ratio}")
        self.ratio = Fraction(key)
        self.config["ratio"] = key

    def _check_size(self, height: int, width: int) -> tuple[int, int]:
        """The last stage's token grid ``(H/16, W/16)``; ValueError for sizes the patch/window grid cannot take."""
        window = self.config["window"]
        ok = height % DOWNSAMPLING == 0 and width % DOWNSAMPLING == 0 and height > 0 and width > 0
        for s in range(4):
            gh, gw = height // (2 << s), width // (2 << s)
            ok = ok and gh % min(window, gh) == 0 and gw % min(window, gw) == 0
        if not ok:
            raise ValueError(f"swinjscc takes images whose sides are multiples of 16 and whose token grids "
                             f"(H/2, H/4, H/8, H/16) are multiples of the window ({window}) or smaller than it, "
                             f"e.g. 32 or multiples of {16 * window}; got {height}x{width}")
        return height // DOWNSAMPLING, width // DOWNSAMPLING

    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses ``k = C (H/16)(W/16) / 2`` per image at the current ratio."""
        gh, gw = self._check_size(height, width)
        return self.ratio_channels[str(self.ratio)] * gh * gw // 2

    def _condition(self, snr_db: torch.Tensor | None, batch: int, channels: int, device) -> torch.Tensor:
        if snr_db is None:
            raise ValueError("swinjscc is SNR-adaptive: encode/decode need snr_db")
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device).reshape(-1).expand(batch)
        rate = torch.full((batch,), 8 * channels / CHANNELS_PER_RATIO, device=device)
        return torch.stack([snr / 20, rate], dim=1)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Images float32 ``(B,3,H,W)`` in [0,1], ``snr_db`` ``(B,)`` -> complex64 ``(B, k)`` (not power-normalised);
        in training mode at a ratio drawn from ``ratios`` (one per batch), else at the current ratio."""
        check_images(x, model_input=True)
        gh, gw = self._check_size(*x.shape[-2:])
        if self.training and len(self.ratio_channels) > 1:
            options = list(self.ratio_channels.values())
            channels = options[int(torch.randint(len(options), ()))]
        else:
            channels = self.ratio_channels[str(self.ratio)]
        condition = self._condition(snr_db, x.shape[0], channels, x.device)
        t = self.embed_norm(self.embed(x).permute(0, 2, 3, 1))  # (B, H/2, W/2, D1)
        for s in range(4):
            if s:
                t = self.merges[s - 1](t)
            t = self.encoder_stages[s](t)
            t = self.encoder_scales[s](t.flatten(1, 2), condition).reshape(t.shape)
        t = self.encoder_head_scale(self.encoder_head(t).flatten(1, 2), condition)  # (B, L, C_max)
        features = t[:, :, :channels].transpose(1, 2).reshape(x.shape[0], channels, gh, gw)
        return features_to_symbols(features)

    def decode(self, y: torch.Tensor, image_size: tuple[int, int], snr_db: torch.Tensor | None = None,
               h: torch.Tensor | None = None) -> torch.Tensor:
        """Received complex ``(B, k)`` -> float32 ``(B,3,H,W)`` in [0,1]; ``C = 2k / L`` from ``k``."""
        if h is not None:
            raise ValueError("swinjscc's decoder takes no h (use csi=receiver with an equalizer)")
        height, width = image_size
        gh, gw = self._check_size(height, width)
        channels, rest = divmod(2 * y.shape[-1], gh * gw)
        if rest or channels not in self.ratio_channels.values():
            raise ValueError(f"{y.shape[-1]} symbols for {height}x{width} is not a ratio this swinjscc serves "
                             f"({', '.join(self.ratio_channels)})")
        batch = y.shape[0]
        condition = self._condition(snr_db, batch, channels, y.device)
        features = symbols_to_features(y, (channels, gh * gw)).transpose(1, 2)  # (B, L, C)
        t = F.pad(features, (0, self.c_max - channels))
        t = self.decoder_head(self.decoder_head_scale(t, condition)).reshape(batch, gh, gw, -1)
        for s in range(4):
            if s:
                t = self.expands[s - 1](t)
            t = self.decoder_stages[s](t)
            t = self.decoder_scales[s](t.flatten(1, 2), condition).reshape(t.shape)
        out = self.unembed(t)  # (B, H/2, W/2, 12)
        out = F.pixel_shuffle(out.permute(0, 3, 1, 2), 2)
        return torch.sigmoid(out)
