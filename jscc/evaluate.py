"""The sweep loop: metrics of a JSCC system over test SNRs and independent channel draws.

Metrics are computed per (image, channel draw) and averaged over both (README,
Conventions, Metrics). Models whose encoder ignores the SNR encode each batch once and reuse the symbols
for every SNR and draw; the draws of one batch are decoded together as one larger batch.
Layered models (DeepJSCC-l, DeepJSCC-f) are run end to end per SNR and also report every
prefix of their layers and the channel uses actually spent.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from jscc import metrics as M
from jscc.data import ImageSet, iterate_batches
from jscc.system import JSCCSystem

IMAGE_METRICS = ("psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg", "perceptual")


@torch.no_grad()
def evaluate(
    system: JSCCSystem,
    dataset: ImageSet,
    snr_db: Sequence[float],
    *,
    n_channel_draws: int = 1,
    batch_size: int = 128,
    metrics: Sequence[str] = ("psnr",),
    seed: int = 0,
    device: str | torch.device = "cpu",
    lpips_model=None,
    progress: bool = False,
    stop_psnr_db: float | None = None,
    perceptual_model=None,
) -> dict[str, list[float]]:
    """Mean and std of each metric per SNR point.

    Args:
        system: the wired model + channel; evaluated in eval mode.
        dataset: test images (batches are ``(B,3,H,W)`` float32 in [0,1]).
        snr_db: test SNRs in dB (Es/N0 per complex channel use).
        n_channel_draws: independent channel realisations per image and SNR.
        metrics: any of ``psnr``, ``ssim``, ``ms_ssim``, ``lpips`` (AlexNet, ``lpips_model`` or loaded here),
            ``lpips_vgg`` (LPIPS with the VGG16 trunk),
            ``perceptual`` (a substitute distance from :func:`jscc.perceptual.build_perceptual`, passed as
            ``perceptual_model``; reported as ``{"name", "values"}`` under its own name);
            PSNR and the PSNR of the mean MSE are always computed (every results file has them).
        seed: seeds the channel generator and the data generator (random crops, synthetic motion),
            so a sweep is reproducible.
        stop_psnr_db: variable-length mode of layered models (see :mod:`jscc.models.layered`).

    Returns:
        The ``metrics`` dict of the results file: ``{"psnr": [...], "psnr_std": [...], ...,
        "psnr_of_mean_mse": [...]}``, one value per SNR. Models that send constellation points as they
        are (``sends_constellation``) add ``symbol_power`` (mean ``|z|^2`` per example, mean and std). Layered models add ``channel_uses``
        (complex uses per image actually sent, mean and std), ``target_reached`` (fraction, with
        ``stop_psnr_db``) and ``per_prefix``: one such dict per prefix of layers (the results
        file's ``metrics_per_prefix``). Video models (clips ``(B,T,3,H,W)``): metrics over every
        (clip, frame, draw), ``channel_uses`` per clip, and ``per_frame`` (``metrics_per_frame``).
    """
    unknown = set(metrics) - set(IMAGE_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {IMAGE_METRICS}")
    if "perceptual" in metrics and perceptual_model is None:
        raise ValueError("metric 'perceptual' needs perceptual_model=jscc.perceptual.build_perceptual(name)")
    given = {"lpips": lpips_model} if lpips_model is not None else {}
    scorers = {**M.load_lpips_scorers(set(metrics) - set(given), device), **given, "perceptual": perceptual_model}
    if n_channel_draws < 1:
        raise ValueError(f"n_channel_draws must be >= 1, got {n_channel_draws}")
    snr_db = [float(s) for s in snr_db]
    device = torch.device(device)
    was_training = system.training
    system.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    acc = M.MetricAccumulator()
    adaptive, constellation = system.model.snr_adaptive, system.model.sends_constellation
    # a seeded data generator too: random crops / synthetic motion of a validation set are the same every time
    batches = iterate_batches(dataset, batch_size, generator=torch.Generator().manual_seed(seed + 1_000_003))
    layered = system.layered
    if stop_psnr_db is not None and not layered:
        raise ValueError(f"{system.model.registry_name} has no variable-length mode (stop_psnr_db)")
    # progress in (image or clip, SNR, channel draw) units
    bar = tqdm(total=len(dataset) * len(snr_db) * n_channel_draws, desc="sweep", unit="img-snr-draw", unit_scale=True,
               disable=not progress, leave=False)
    for x in batches:
        bar.update(x.shape[0] * len(snr_db) * n_channel_draws)
        x = x.to(device, non_blocking=True)
        size = tuple(x.shape[-2:])
        x_rep = x.repeat(n_channel_draws, *([1] * (x.ndim - 1)))
        if x.ndim == 5:  # video (B,T,3,H,W): metrics per (clip, frame, draw), and per frame index
            for i, snr in enumerate(snr_db):
                out = system(x_rep, snr, generator=generator)
                _accumulate(acc, i, out["x_hat"].flatten(0, 1), x_rep.flatten(0, 1), metrics, scorers)
                acc.add(i, "channel_uses", out["channel_uses"])
                for t in range(x.shape[1]):
                    _accumulate(acc, (i, "frame", t), out["x_hat"][:, t], x_rep[:, t], metrics, scorers)
            n_frames = x.shape[1]
            continue
        if layered:
            layer_uses = system.model.layer_channel_uses(*size)
            for i, snr in enumerate(snr_db):
                out = system(x_rep, snr, generator=generator, stop_psnr_db=stop_psnr_db)
                _accumulate(acc, i, out["x_hat"], x_rep, metrics, scorers)
                acc.add(i, "channel_uses", out["layers_sent"] * layer_uses)
                if stop_psnr_db is not None:
                    acc.add(i, "target_reached", out["target_reached"].double())
                for p in range(out["x_hat_prefix"].shape[1]):
                    _accumulate(acc, (i, p), out["x_hat_prefix"][:, p], x_rep, metrics, scorers)
            continue
        z = None if adaptive else system.encode(x).repeat(n_channel_draws, 1)
        for i, snr in enumerate(snr_db):
            z_snr = system.encode(x_rep, snr) if adaptive else z
            x_hat = system.receive(z_snr, size, snr, generator=generator)["x_hat"]
            _accumulate(acc, i, x_hat, x_rep, metrics, scorers)
            if constellation:  # not renormalised per example: record the power it sends
                acc.add(i, "symbol_power", z_snr.abs().square().mean(-1))
    bar.close()
    system.train(was_training)
    summary = _named_perceptual(acc.summary(range(len(snr_db))), perceptual_model)
    if x.ndim == 5:
        summary["per_frame"] = [_named_perceptual(acc.summary([(i, "frame", t) for i in range(len(snr_db))]),
                                                  perceptual_model) for t in range(n_frames)]
    elif layered:
        summary.pop("target_reached_std", None)
        summary["per_prefix"] = [_named_perceptual(acc.summary([(i, p) for i in range(len(snr_db))]), perceptual_model)
                                 for p in range(system.model.layers)]
    return summary


def _named_perceptual(summary: dict, perceptual_model) -> dict:
    """The results file records a substitute perceptual metric under its own name (never as LPIPS)."""
    if "perceptual" in summary:
        summary.pop("perceptual_std")
        summary["perceptual"] = {"name": perceptual_model.name, "values": summary["perceptual"]}
    return summary


def _accumulate(acc, key: int, x_hat: torch.Tensor, x: torch.Tensor, metrics: Sequence[str], scorers: dict) -> None:
    acc.add(key, "mse", M.mse(x_hat, x))
    acc.add(key, "psnr", M.psnr(x_hat, x))
    if "ssim" in metrics:
        acc.add(key, "ssim", M.ssim(x_hat, x))
    if "ms_ssim" in metrics:
        acc.add(key, "ms_ssim", M.ms_ssim(x_hat, x))
    for name in M.LPIPS_NETS:
        if name in metrics:
            acc.add(key, name, M.lpips_distance(scorers[name], x_hat, x))
    if "perceptual" in metrics:
        acc.add(key, "perceptual", scorers["perceptual"](x_hat, x))


def sweep_results(
    system: JSCCSystem,
    dataset: ImageSet,
    snr_db: Sequence[float],
    *,
    name: str,
    n_channel_draws: int = 10,
    metrics: Sequence[str] = ("psnr",),
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device = "cpu",
    train_snr_db=None,
    checkpoint_path=None,
    command: str | None = None,
    lpips_model=None,
    progress: bool = False,
    stop_psnr_db: float | None = None,
    perceptual_model=None,
    notes: Sequence[str] = (),
) -> dict:
    """Run :func:`evaluate` and return the ``jscc-results/1`` dict (validated by the writer).

    ``k`` and the bandwidth ratio are those of the first image; a note is added when the
    dataset's image sizes give different ``k``. ``notes`` (e.g. metrics dropped for the image
    size, :func:`jscc.metrics.metrics_for_sizes`) go to the results' ``notes``.
    """
    from jscc.results import bandwidth_ratio_str, provenance

    summary = evaluate(system, dataset, snr_db, n_channel_draws=n_channel_draws, batch_size=batch_size,
                       metrics=metrics, seed=seed, device=device, lpips_model=lpips_model, progress=progress,
                       stop_psnr_db=stop_psnr_db, perceptual_model=perceptual_model)
    per_prefix = summary.pop("per_prefix", None)
    per_frame = summary.pop("per_frame", None)
    sizes = {dataset.image_size(i) for i in range(len(dataset))}
    height, width = dataset.image_size(0)
    if per_frame is not None:  # video: k and n over the clip's frames
        frames = dataset.num_frames(0)
        k, n = system.model.clip_channel_uses(height, width, frames), 3 * height * width * frames
    else:
        k, n = system.channel_uses(height, width), 3 * height * width
    results = {
        "schema": "jscc-results/1",
        "name": name,
        "method": system.model.registry_name,
        "dataset": {"name": dataset.name, "n_images": len(dataset)},
        "channel": system.channel.channel_config(),
        "k": k,
        "bandwidth_ratio": k / n,
        "bandwidth_ratio_str": bandwidth_ratio_str(k, n),
        "train_snr_db": train_snr_db,
        "snr_db": [float(s) for s in snr_db],
        "metrics": summary,
        "n_channel_draws": n_channel_draws,
        "provenance": provenance(command=command, checkpoint_path=checkpoint_path, device=device, seed=seed,
                                 lpips_backbones=M.lpips_backbone_sources(metrics)),
    }
    if hasattr(system.channel, "accounting"):  # OFDM, MIMO: what the k channel uses cost (pilots, padding, ...)
        results["channel"]["accounting"] = system.channel.accounting(k, n)
    if per_frame is not None:
        results["metrics_per_frame"] = per_frame
        results["allocation_policy"] = system.model.policy
        if system.model.intra_only:
            results["intra_only"] = True
    if per_prefix is not None:
        results["metrics_per_prefix"] = per_prefix
        results["layers"] = system.model.layer_info(height, width)
        if system.model.has_feedback:
            results["feedback_snr_db"] = system.model.feedback_snr_db
            # each layer's received symbols but the last go back to the transmitter, uncoded, outside k
            results["feedback_channel_uses"] = system.model.layer_channel_uses(height, width) * (system.model.layers - 1)
        if stop_psnr_db is not None:
            results["stop_psnr_db"] = float(stop_psnr_db)
    notes = list(notes)
    if len(sizes) > 1:
        notes.append(f"{len(sizes)} image sizes; k is that of the first image ({height}x{width})")
    if notes:
        results["notes"] = "; ".join(notes)
    return results
