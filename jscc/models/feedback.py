"""DeepJSCC-f: layered DeepJSCC with channel-output feedback (Kurka & Gündüz, "DeepJSCC-f: Deep
joint source-channel coding of images with feedback", IEEE JSAIT 2020).

After each layer the transmitter receives the channel output back, noiselessly or through an AWGN
feedback channel at ``feedback_snr_db`` (noise variance ``P / 10^(feedback_snr_db/10)``), runs a
copy of the receiver's prefix decoder on it, and codes the next layer from (image, that estimate).
With noiseless feedback the transmitter's estimate *is* the receiver's reconstruction.

The network is that of :class:`~jscc.models.layered.LayeredRefinement` (``deepjscc-l-residual``):
one 2019-backbone encoder per layer (layers after the first take the image and the estimate, 6
input channels) and one decoder per prefix that sees every channel output so far. So the gain of
feedback is measured against the same network without it. The official code (ipc-lab/deepJSCC-feedback,
GDN with 256 filters, ~65x the compute; `norm="gdn"` here) decodes a residual and merges it with the previous estimate
through a small conv net; here each prefix decoder outputs the image directly from all outputs so far.

Variable-length mode: ``transmit(..., stop_psnr_db=...)`` stops each image once the transmitter's
estimate reaches the target (``jscc sweep --stop-psnr``); results report the channel uses per image.
"""
from __future__ import annotations

import torch

from channels import awgn
from jscc.models.layered import LayeredRefinement
from jscc.registry import register_model


@register_model("deepjscc-f")
class DeepJSCCFeedback(LayeredRefinement):
    """DeepJSCC-f. Same arguments as ``deepjscc-l-residual`` plus ``feedback_snr_db`` (None:
    noiseless feedback). ``feedback_snr_db`` may be changed on a trained model (the attribute) to
    evaluate it with another feedback channel; ``config`` keeps the training value."""

    has_feedback = True

    def __init__(self, c: int = 8, layers: int = 2, hidden=(16, 32, 32, 32), loss_weights=None,
                 feedback_snr_db: float | None = None, norm: str = "none"):
        super().__init__(c, layers, hidden, loss_weights, norm=norm)
        del self.config["estimate_channel"]
        if feedback_snr_db is not None:
            feedback_snr_db = float(feedback_snr_db)
            if not torch.isfinite(torch.tensor(feedback_snr_db)):
                raise ValueError(f"feedback_snr_db must be finite or None (noiseless), got {feedback_snr_db}")
        self.config["feedback_snr_db"] = feedback_snr_db
        self.feedback_snr_db = feedback_snr_db

    @property
    def estimate_is_receivers(self) -> bool:
        return self.feedback_snr_db is None

    def transmitter_view(self, z: torch.Tensor, y: torch.Tensor, link, layer: int) -> torch.Tensor:
        """The fed-back channel output: ``y`` itself, or ``y`` plus AWGN at ``feedback_snr_db``."""
        if self.feedback_snr_db is None:
            return y
        return awgn(y, self.feedback_snr_db, power=link.power, generator=link.generator)
