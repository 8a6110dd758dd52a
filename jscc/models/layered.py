"""DeepJSCC-l: layered, bandwidth-agile DeepJSCC (Kurka & Gündüz, "Bandwidth-agile image
transmission with deep joint source-channel coding", IEEE TWC 2021; first as "Successive
refinement of images with deep joint source-channel coding", SPAWC 2019).

An image is sent in ``L`` layers of ``k_l = c*H*W/32`` complex channel uses each (layer
bandwidth ratio ``c/96``); the receiver reconstructs from the first ``i`` layers for every ``i``,
so one model serves every bandwidth ``1..L`` layers. All three architectures use the 2019
backbone (:func:`~jscc.models.deepjscc.encoder_stack` / ``decoder_stack``) and differ in how the
layers are produced and decoded:

=====================  ===========================================  ==========================
registry name          transmitter                                  receiver
=====================  ===========================================  ==========================
``deepjscc-l-multi``   one encoder emits all ``L`` blocks            one decoder per prefix
``deepjscc-l-residual`` one encoder per layer; layer ``i`` also sees  one decoder per prefix
                       the transmitter's *own* estimate of the
                       receiver's reconstruction after ``i-1``
                       layers (prefix decoders run on a noiseless
                       or independently simulated channel)
``deepjscc-l-masked``  one encoder emits all ``L`` blocks            one decoder; layers not
                                                                    received are zero
=====================  ===========================================  ==========================

The abstracts describe "three architectures with different complexity trade-offs"; as far as we
could establish without the full text here, ``multi`` is the paper's multiple-decoder scheme,
``residual`` its scheme where each further layer is computed from the image and the previous
layers' reconstruction, and ``masked`` the cheapest single-decoder scheme (it is also what makes
the multiple-description mode possible: any subset of layers can be decoded).

Channel symbols are ``(B, L, k_l)`` complex64 (README, Conventions); power is normalised per layer
over the symbols sent (:class:`jscc.system.LayerLink`), and under slow fading one ``h`` holds for
all layers of an image. ``transmit`` returns a dict with stable keys:

- ``x_hat`` ``(B,3,H,W)``: the reconstruction from all layers sent;
- ``x_hat_prefix`` ``(B,L,3,H,W)``: the reconstruction from layers ``1..i`` at index ``i-1``;
- ``z``, ``y`` ``(B,L,k_l)`` complex64: sent (power-normalised) and received symbols; ``h`` for fading.
"""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

from jscc.metrics import check_images
from jscc.models.base import JSCCModel
from jscc.models.deepjscc import (DOWNSAMPLING, SOURCE_SAMPLES_PER_PIXEL, DeepJSCC, _check_size,
                                  backbone_config, c_from_bandwidth_ratio, check_backbone, copy_stack,
                                   decoder_stack, encoder_stack)
from jscc.models.symbols import features_to_symbols, symbols_to_features
from jscc.registry import register_model


class LayeredJSCC(JSCCModel):
    """Shared parts of the layered models: layer sizes, bandwidth bookkeeping and the loss.

    Args:
        c: filters per layer; each layer has bandwidth ratio ``c/96``.
        layers: number of layers ``L >= 1``.
        hidden: the backbone's hidden filters (the paper: 16, 32, 32, 32).
        norm: the backbone's ``norm`` (``"gdn"`` with ``hidden=[256]*4``: the official DeepJSCC-f
            network, :data:`~jscc.models.deepjscc.GDN256`).
        loss_weights: weight of each prefix's MSE in the training loss (default: equal); they are
            normalised to sum to 1.
    """

    snr_adaptive = False
    sends_layers = True
    defines_loss = True

    def __init__(self, c: int = 8, layers: int = 2, hidden=(16, 32, 32, 32), loss_weights=None, norm: str = "none"):
        super().__init__()
        c, hidden = check_backbone(c, hidden, "c (filters per layer)", norm)
        if int(layers) != layers or layers < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        weights = [1.0] * int(layers) if loss_weights is None else [float(w) for w in loss_weights]
        if len(weights) != layers or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"loss_weights must be {layers} non-negative numbers with a positive sum, got {loss_weights!r}")
        self.c, self.layers, self.hidden = int(c), int(layers), hidden
        self.norm = norm
        self.config = {"c": self.c, "layers": self.layers, "hidden": hidden, "loss_weights": loss_weights,
                       **backbone_config(norm)}
        self.register_buffer("loss_weights", torch.tensor(weights) / sum(weights), persistent=False)
        self.train_layer: int | None = None  # layer-by-layer training: see set_train_layer

    @classmethod
    def from_bandwidth_ratio(cls, ratio, layers: int = 2, **kwargs) -> "LayeredJSCC":
        """Build the model whose *total* k/n over ``layers`` equal layers is ``ratio``."""
        per_layer = Fraction(ratio) / int(layers) if not isinstance(ratio, float) else ratio / int(layers)
        return cls(c=c_from_bandwidth_ratio(per_layer), layers=layers, **kwargs)

    # ------------------------------------------------------------------ bandwidth
    def layer_channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses per layer ``k_l = c*H*W/32``."""
        _check_size(height, width)
        reals = self.c * (height // DOWNSAMPLING) * (width // DOWNSAMPLING)
        if reals % 2:
            raise ValueError(f"c*H*W/16 = {reals} reals per layer is odd: cannot form complex symbols")
        return reals // 2

    def channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses of all ``L`` layers."""
        return self.layers * self.layer_channel_uses(height, width)

    def layer_info(self, height: int, width: int) -> list[dict]:
        """The results file's ``layers`` entry: ``[{k, bandwidth_ratio, cumulative_bandwidth_ratio}]``."""
        k, n = self.layer_channel_uses(height, width), SOURCE_SAMPLES_PER_PIXEL * height * width
        return [{"k": k, "bandwidth_ratio": k / n, "cumulative_bandwidth_ratio": (i + 1) * k / n} for i in range(self.layers)]

    # ------------------------------------------------------------------ training
    def set_train_layer(self, layer: int | None) -> None:
        """Layer-by-layer training: train only layer ``layer`` (1-based) on its prefix loss, with
        the earlier layers' modules frozen. ``None``: all layers jointly (weighted prefix losses)."""
        if layer is not None:
            if not 1 <= layer <= self.layers:
                raise ValueError(f"train layer must be in 1..{self.layers}, got {layer}")
            modules = self.layer_modules(layer)
            for p in self.parameters():
                p.requires_grad_(False)
            for m in modules:
                for p in m.parameters():
                    p.requires_grad_(True)
        else:
            for p in self.parameters():
                p.requires_grad_(True)
        self.train_layer = layer

    def layer_modules(self, layer: int) -> list[nn.Module]:
        raise ValueError(f"{self.registry_name} has no per-layer modules: layer-by-layer training needs one "
                         "encoder per layer (deepjscc-l-residual, deepjscc-f); train it jointly")

    def loss(self, out: dict, x: torch.Tensor) -> torch.Tensor:
        """Weighted sum of per-prefix MSEs (or the trained layer's prefix MSE alone)."""
        per_prefix = (out["x_hat_prefix"] - x.unsqueeze(1)).square().mean(dim=(0, 2, 3, 4))
        if self.train_layer is not None:
            return per_prefix[self.train_layer - 1]
        return (per_prefix * self.loss_weights).sum()

    # ------------------------------------------------------------------ helpers
    def _feature_shape(self, image_size, n_layers: int) -> tuple[int, int, int]:
        height, width = image_size
        return (n_layers * self.c, height // DOWNSAMPLING, width // DOWNSAMPLING)

    def _layers_to_features(self, y: torch.Tensor, image_size) -> torch.Tensor:
        """Symbols ``(B, i, k_l)`` of the first ``i`` layers -> features ``(B, i*c, H/4, W/4)``."""
        if y.ndim != 3 or y.shape[-1] != self.layer_channel_uses(*image_size):
            raise ValueError(f"expected layer symbols (B, i, {self.layer_channel_uses(*image_size)}) for "
                             f"{tuple(image_size)} images, got {tuple(y.shape)}")
        return symbols_to_features(y.reshape(y.shape[0], -1), self._feature_shape(image_size, y.shape[1]))

    def _features_to_layers(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``(B, i*c, h, w)`` -> layer symbols ``(B, i, k_l)`` (layer j = channels j*c..(j+1)*c)."""
        return features_to_symbols(features).reshape(features.shape[0], features.shape[1] // self.c, -1)

    def _check_input(self, x: torch.Tensor, link) -> None:
        check_images(x, model_input=True)
        _check_size(*x.shape[-2:])
        if link.layers != self.layers:
            raise ValueError(f"link set up for {link.layers} layers, model has {self.layers}")


class _SingleEncoder(LayeredJSCC):
    """One encoder that emits all ``L`` blocks (``L*c`` output filters)."""

    def __init__(self, c: int = 8, layers: int = 2, hidden=(16, 32, 32, 32), loss_weights=None, norm: str = "none"):
        super().__init__(c, layers, hidden, loss_weights, norm)
        self.encoder = encoder_stack(3, self.hidden, self.layers * self.c, self.norm)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B,3,H,W)`` -> complex64 layer symbols ``(B, L, k_l)`` (not power-normalised)."""
        check_images(x, model_input=True)
        _check_size(*x.shape[-2:])
        return self._features_to_layers(self.encoder(x))

    def transmit(self, x: torch.Tensor, link, stop_psnr_db: float | None = None) -> dict:
        """Send all layers through ``link`` and decode every prefix. See the module docstring."""
        self._check_input(x, link)
        if stop_psnr_db is not None:
            raise ValueError(f"{self.registry_name} sends all layers at once: variable-length mode needs a model "
                             "that sends layer by layer (deepjscc-l-residual, deepjscc-f)")
        z, y = link.send(self.encode(x), first_layer=0)
        size = tuple(x.shape[-2:])
        x_hat_prefix = torch.stack([self.decode_prefix(y[:, : i + 1], size) for i in range(self.layers)], dim=1)
        return link.result(x_hat_prefix=x_hat_prefix, z=z, y=y)

    def _warm_start_encoder(self, checkpoint: dict, backbone) -> None:
        if checkpoint["model"] != "deepjscc" or checkpoint["config"]["c"] != self.layers * self.c \
                or checkpoint["config"]["hidden"] != self.hidden or checkpoint["config"].get("csi_side_input") \
                or checkpoint["config"].get("norm", "none") != self.norm:
            raise ValueError(f"{self.registry_name} (c={self.c} x {self.layers} layers) can warm-start from a deepjscc "
                             f"checkpoint with c={self.layers * self.c}, hidden={self.hidden} and norm={self.norm}, not "
                             f"{checkpoint['model']} {checkpoint['config']}")
        backbone.load_state_dict(checkpoint["state_dict"], strict=True)
        copy_stack(self.encoder, backbone.encoder)


@register_model("deepjscc-l-multi")
class LayeredMultiDecoder(_SingleEncoder):
    """DeepJSCC-l (a): one encoder for all layers, one decoder per prefix (``L`` decoders, the
    ``i``-th taking the ``i*c`` feature channels of layers ``1..i``)."""

    def __init__(self, c: int = 8, layers: int = 2, hidden=(16, 32, 32, 32), loss_weights=None, norm: str = "none"):
        super().__init__(c, layers, hidden, loss_weights, norm)
        self.decoders = nn.ModuleList(decoder_stack((i + 1) * self.c, self.hidden, self.norm) for i in range(self.layers))

    def decode_prefix(self, y: torch.Tensor, image_size) -> torch.Tensor:
        return self.decoders[y.shape[1] - 1](self._layers_to_features(y, image_size))

    def warm_start(self, checkpoint: dict) -> None:
        """From a single-layer ``deepjscc`` with ``c = L*c``: its encoder, and its decoder for the full prefix."""
        backbone = DeepJSCC(c=self.layers * self.c, hidden=self.hidden, norm=self.norm)
        self._warm_start_encoder(checkpoint, backbone)
        copy_stack(self.decoders[-1], backbone.decoder)


@register_model("deepjscc-l-masked")
class LayeredMasked(_SingleEncoder):
    """DeepJSCC-l (c): one encoder and one decoder over all ``L*c`` feature channels; the layers not
    received are set to zero (cheapest; any subset of layers can be decoded with :meth:`decode_subset`)."""

    def __init__(self, c: int = 8, layers: int = 2, hidden=(16, 32, 32, 32), loss_weights=None, norm: str = "none"):
        super().__init__(c, layers, hidden, loss_weights, norm)
        self.decoder = decoder_stack(self.layers * self.c, self.hidden, self.norm)

    def decode_subset(self, y: torch.Tensor, received: torch.Tensor, image_size) -> torch.Tensor:
        """Symbols of all layers ``(B, L, k_l)`` and a bool mask ``(L,)`` or ``(B, L)`` of the layers
        received -> reconstruction ``(B,3,H,W)``; unreceived layers are zeroed before decoding."""
        if y.shape[1] != self.layers:
            raise ValueError(f"expected symbols of all {self.layers} layers, got {tuple(y.shape)}")
        mask = torch.as_tensor(received, dtype=torch.bool, device=y.device).expand(y.shape[0], self.layers)
        return self.decoder(self._layers_to_features(y * mask.unsqueeze(-1), image_size))

    def decode_prefix(self, y: torch.Tensor, image_size) -> torch.Tensor:
        full = F.pad(y, (0, 0, 0, self.layers - y.shape[1]))  # zeros for the layers not received
        return self.decode_subset(full, torch.arange(self.layers, device=y.device) < y.shape[1], image_size)

    def warm_start(self, checkpoint: dict) -> None:
        """From a single-layer ``deepjscc`` with ``c = L*c``: its encoder and decoder."""
        backbone = DeepJSCC(c=self.layers * self.c, hidden=self.hidden, norm=self.norm)
        self._warm_start_encoder(checkpoint, backbone)
        copy_stack(self.decoder, backbone.decoder)


@register_model("deepjscc-l-residual")
class LayeredRefinement(LayeredJSCC):
    """DeepJSCC-l (b): one encoder per layer; layer ``i > 1`` encodes (image, the transmitter's
    estimate of the receiver's reconstruction after ``i-1`` layers); one decoder per prefix.

    Without feedback the transmitter cannot know the real channel outputs, so its estimate runs the
    prefix decoders on ``estimate_channel``: ``"noiseless"`` (the sent symbols themselves) or
    ``"simulated"`` (the link's channel at the same SNR with independent randomness). The symbols
    of layer ``i`` therefore never depend on the noise that actually occurred.
    :class:`~jscc.models.feedback.DeepJSCCFeedback` is the same network fed the real channel outputs.
    """

    variable_length = True  # encode_layer: it may stop once its estimate reaches stop_psnr_db

    def __init__(self, c: int = 8, layers: int = 2, hidden=(16, 32, 32, 32), loss_weights=None,
                 estimate_channel: str = "noiseless", norm: str = "none"):
        super().__init__(c, layers, hidden, loss_weights, norm)
        if estimate_channel not in ("noiseless", "simulated"):
            raise ValueError(f"estimate_channel must be 'noiseless' or 'simulated', got {estimate_channel!r}")
        self.estimate_channel = estimate_channel
        self.config["estimate_channel"] = estimate_channel
        self.encoders = nn.ModuleList(encoder_stack(3 if i == 0 else 6, self.hidden, self.c, self.norm) for i in range(self.layers))
        self.decoders = nn.ModuleList(decoder_stack((i + 1) * self.c, self.hidden, self.norm) for i in range(self.layers))

    def layer_modules(self, layer: int) -> list[nn.Module]:
        return [self.encoders[layer - 1], self.decoders[layer - 1]]

    def encode_layer(self, x: torch.Tensor, layer: int, estimate: torch.Tensor | None) -> torch.Tensor:
        """Symbols ``(B, 1, k_l)`` of layer ``layer`` (0-based): layer 0 from the image, later layers
        from (image, the transmitter's estimate ``(B,3,H,W)`` after the previous layers)."""
        inputs = x if layer == 0 else torch.cat([x, estimate], dim=1)
        return self._features_to_layers(self.encoders[layer](inputs))

    def decode_prefix(self, y: torch.Tensor, image_size) -> torch.Tensor:
        """Symbols of the first ``i`` layers ``(B, i, k_l)`` -> reconstruction ``(B,3,H,W)``."""
        return self.decoders[y.shape[1] - 1](self._layers_to_features(y, image_size))

    # The transmitter's view of the channel outputs; DeepJSCC-f overrides these two.
    estimate_is_receivers = False  # True when the transmitter sees exactly what the receiver saw

    def transmitter_view(self, z: torch.Tensor, y: torch.Tensor, link, layer: int) -> torch.Tensor:
        """What the transmitter decodes its estimate from, given layer ``layer``'s sent ``z`` and
        received ``y`` ``(B, 1, k_l)``: never ``y`` here (no feedback), but ``z`` or a simulated output."""
        return z if self.estimate_channel == "noiseless" else link.simulate(z, layer)

    def transmit(self, x: torch.Tensor, link, stop_psnr_db: float | None = None) -> dict:
        """Send the layers one by one, each computed from the transmitter's estimate so far.

        ``stop_psnr_db``: variable-length mode; each image stops after the first layer whose
        transmitter-side estimate reaches this PSNR (at most ``L`` layers), see :func:`stop_early`.
        """
        self._check_input(x, link)
        size = tuple(x.shape[-2:])
        zs, ys, views, prefix, estimates = [], [], [], [], []
        estimate = None
        for i in range(self.layers):
            z_i, y_i = link.send(self.encode_layer(x, i, estimate), first_layer=i)
            zs.append(z_i)
            ys.append(y_i)
            prefix.append(self.decode_prefix(torch.cat(ys, dim=1), size))
            if i + 1 < self.layers or stop_psnr_db is not None:
                if self.estimate_is_receivers:
                    estimate = prefix[-1]
                else:
                    views.append(self.transmitter_view(z_i, y_i, link, i))
                    estimate = self.decode_prefix(torch.cat(views, dim=1), size)
                estimates.append(estimate)
        out = link.result(x_hat_prefix=torch.stack(prefix, dim=1), z=torch.cat(zs, dim=1), y=torch.cat(ys, dim=1))
        if stop_psnr_db is not None:
            out = stop_early(out, x, torch.stack(estimates, dim=1), stop_psnr_db)
        return out

    def warm_start(self, checkpoint: dict) -> None:
        """From a single-layer ``deepjscc`` with the same ``c``: layer 1's encoder and decoder are
        copied; every later encoder and decoder starts as a copy that ignores its new inputs, so the
        model initially reconstructs from layer 1 alone at every prefix."""
        config = checkpoint["config"]
        if checkpoint["model"] != "deepjscc" or config["c"] != self.c or config["hidden"] != self.hidden \
                or config.get("csi_side_input") or config.get("norm", "none") != self.norm:
            raise ValueError(f"{self.registry_name} (c={self.c} per layer) can warm-start from a deepjscc checkpoint "
                             f"with c={self.c}, hidden={self.hidden} and norm={self.norm}, not {checkpoint['model']} {config}")
        backbone = DeepJSCC(c=self.c, hidden=self.hidden, norm=self.norm)
        backbone.load_state_dict(checkpoint["state_dict"], strict=True)
        for enc in self.encoders:
            copy_stack(enc, backbone.encoder)
        for dec in self.decoders:
            copy_stack(dec, backbone.decoder)


def stop_early(out: dict, x: torch.Tensor, estimates: torch.Tensor, stop_psnr_db: float) -> dict:
    """Variable-length transmission: each image stops after the first layer whose transmitter-side
    estimate ``estimates[:, i]`` ``(B,L,3,H,W)`` reaches ``stop_psnr_db`` (else after all ``L``).

    Layers after the stop are not sent: their ``z``/``y`` become 0, the receiver keeps the
    reconstruction of the stopping layer for every longer prefix. Adds ``target_reached`` (bool ``(B,)``)
    and sets ``layers_sent`` (int64 ``(B,)``, in ``1..L``).
    """
    n_layers = estimates.shape[1]
    mse = (estimates - x.unsqueeze(1)).square().mean(dim=(2, 3, 4))
    reached = -10 * torch.log10(mse.clamp_min(1e-12)) >= stop_psnr_db  # (B, L)
    layers_sent = torch.where(reached.any(dim=1), reached.int().argmax(dim=1) + 1, n_layers)
    sent = torch.arange(n_layers, device=x.device) < layers_sent.unsqueeze(1)  # (B, L)
    x_hat = out["x_hat_prefix"][torch.arange(x.shape[0], device=x.device), layers_sent - 1]
    out.update(
        x_hat=x_hat,
        x_hat_prefix=torch.where(sent[:, :, None, None, None], out["x_hat_prefix"], x_hat.unsqueeze(1)),
        z=out["z"] * sent.unsqueeze(-1),
        y=out["y"] * sent.unsqueeze(-1),
        layers_sent=layers_sent,
        target_reached=reached.any(dim=1),
    )
    return out
