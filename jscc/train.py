"""The training loop, shared by every model family.

Adam on the per-image MSE through the differentiable channel. Every epoch ends with a
validation PSNR, a log line (CSV + JSON) and an atomic training checkpoint holding the
optimizer, scheduler and all RNG states, so a run killed at any moment resumes from its last
finished epoch and ends with the same weights as an uninterrupted run (on CPU).

The data order comes from a ``DistributedSampler`` (seeded, ``set_epoch`` per epoch) and the
crop and channel generators are re-seeded from ``(seed, epoch, rank)`` at every epoch start, so
an epoch's randomness never depends on what ran before it. Under ``torchrun`` the model is
wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA), each process takes its shard
of every epoch (``batch_size`` is per process), and only rank 0 validates, logs and checkpoints.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from jscc.checkpoint import atomic_torch_save, model_checkpoint, read_checkpoint
from jscc.data import ImageSet, iterate_batches
from jscc.evaluate import evaluate
from jscc.system import JSCCSystem


@dataclass
class TrainConfig:
    """Options of one training run (all recorded in its checkpoints).

    ``train_snr_db`` is one SNR in dB or a ``[lo, hi]`` range sampled uniformly per image.
    ``lr_schedule``: ``"none"``, ``"cosine"`` (to ``lr_min`` at the last epoch) or ``"step"``
    (x0.1 at 60% and 85% of the epochs). The loss is the model's ``loss(out, x)`` where it has one
    (layered models: weighted prefix MSEs), else ``loss``: ``"mse"``, the MSE of ``x_hat``, or
    ``"psnr"``, minus the mean per-image PSNR (``mean_i 10 log10 MSE_i``, the reported metric; over an
    SNR range it keeps the large low-SNR errors from dominating the gradient). ``train_layer``: layer-by-layer
    training of layered models (the official DeepJSCC-f schedule): only that layer's modules train,
    on its prefix's loss, and validation reports that prefix. ``train_agent``: models with
    ``train_agent_step`` (``deepwive``): every other parameter is frozen and each step is one
    REINFORCE update of ``model.agent`` (validation then uses the model's ``policy``, e.g. ``agent``);
    the log records ``train_reward_db`` (mean sampled PSNR gain over the uniform allocation).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    lr_min: float = 1e-5
    loss: str = "mse"
    train_snr_db: float | list[float] = 10.0
    val_snr_db: float | None = None  # default: train SNR (mid-range for a range)
    val_draws: int = 1
    seed: int = 0
    device: str = "cpu"
    channels_last: bool = False
    train_layer: int | None = None  # layered models: train only this layer (1-based), earlier ones frozen
    train_agent: bool = False  # models with an allocation agent: train only the agent (REINFORCE)
    extra: dict = field(default_factory=dict)  # dataset names, channel config, command: recorded as-is

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.lr_schedule not in ("none", "cosine", "step"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose none, cosine or step")
        if self.loss not in ("mse", "psnr"):
            raise ValueError(f"unknown loss {self.loss!r}; choose mse or psnr")
        if self.train_agent and self.loss != "mse":
            raise ValueError("agent training maximises its reward; loss applies to the codec")
        snr = self.train_snr_db
        if isinstance(snr, (list, tuple)):
            if len(snr) != 2 or not all(math.isfinite(s) for s in snr) or snr[0] > snr[1]:
                raise ValueError(f"train SNR range must be finite [lo, hi] with lo <= hi, got {snr}")
            self.train_snr_db = [float(s) for s in snr]
        elif not math.isfinite(snr):
            raise ValueError(f"train SNR must be finite, got {snr}")
        if self.val_snr_db is None:
            self.val_snr_db = float(np.mean(self.train_snr_db))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)
    if cfg.lr_schedule == "step":
        milestones = sorted({max(1, round(cfg.epochs * f)) for f in (0.6, 0.85)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def _rng_state(data_gen: torch.Generator, chan_gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "data": data_gen.get_state(),
        "channel": chan_gen.get_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def _set_rng_state(state: dict, data_gen: torch.Generator, chan_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_gen.set_state(state["data"])
    chan_gen.set_state(state["channel"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def sample_snr(cfg: TrainConfig, batch: int, generator: torch.Generator, device) -> float | torch.Tensor:
    """The training SNR: the fixed value, or one uniform draw in ``[lo, hi]`` per image ``(B,)``."""
    if isinstance(cfg.train_snr_db, list):
        lo, hi = cfg.train_snr_db
        return lo + (hi - lo) * torch.rand(batch, generator=generator, device=device)
    return cfg.train_snr_db


def epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """The seed of one random stream (data 0, channel 1, ...) of one rank in one epoch: a run restarted at an
    epoch draws what it would have drawn (also used by the prior trainer, :mod:`jscc.priors`)."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729 + stream) % 2**63


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    system: JSCCSystem,
    train_set: ImageSet,
    val_set: ImageSet,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train ``system`` and write ``last.pt``, ``best.pt``, ``log.csv``, ``history.json`` into ``out_dir``.

    Returns the history: one dict per epoch (loss, validation PSNR, lr, seconds, images/s); under
    ``torchrun`` only rank 0 records the epochs it ran.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    rank, world = _rank_world()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    data_gen = torch.Generator()
    chan_gen = torch.Generator(device=device)

    system.to(device)
    if cfg.channels_last:
        system.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(system, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else system
    model = system.model
    if cfg.train_layer is not None:
        if not model.sends_layers or model.video:
            raise ValueError(f"{model.registry_name} has no layers: train_layer applies to layered models")
        model.set_train_layer(cfg.train_layer)
    if cfg.train_agent:
        if not model.video:
            raise ValueError(f"{model.registry_name} has no allocation agent: train_agent applies to deepwive")
        if world > 1:
            raise ValueError("agent training runs in one process (no torchrun)")
        if model.policy != "agent":
            raise ValueError(f"agent training validates the agent: build the model with policy='agent' "
                             f"(--model-arg policy=agent), not {model.policy!r}")
        for p in system.parameters():
            p.requires_grad_(False)
        for p in model.agent.parameters():
            p.requires_grad_(True)
    optimizer = torch.optim.Adam([p for p in system.parameters() if p.requires_grad], lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg)
    loss_fn, loss_key = _loss_fn(model, cfg), _loss_key(cfg)
    train_info = {**cfg.extra, **{k: v for k, v in asdict(cfg).items() if k != "extra"}}

    start_epoch, history, best_psnr = 0, [], -math.inf
    if resume and (out / "last.pt").exists():
        state = read_checkpoint(out / "last.pt", map_location=device)
        if state["model"] != model.registry_name or state["config"] != model.config:
            raise ValueError(
                f"cannot resume: {out / 'last.pt'} holds {state['model']} {state['config']}, "
                f"this run builds {model.registry_name} {model.config}"
            )
        model.load_state_dict(state["state_dict"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], data_gen, chan_gen)
        start_epoch, history = state["epoch"], state["history"]
        best_psnr = max((h["val_psnr"] for h in history), default=-math.inf)
        if rank == 0:
            print(f"resuming {out} after epoch {start_epoch}")

    sampler = DistributedSampler(range(len(train_set)), num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    n_steps = len(sampler) // cfg.batch_size
    if n_steps == 0:
        raise ValueError(f"batch size {cfg.batch_size} x {world} process(es) exceeds the {len(train_set)} training images")
    for epoch in range(start_epoch, cfg.epochs):
        system.train()
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        data_gen.manual_seed(epoch_seed(cfg.seed, epoch, rank, 0))
        chan_gen.manual_seed(epoch_seed(cfg.seed, epoch, rank, 1))
        loss_sum = torch.zeros((), device=device)
        batches = iterate_batches(train_set, cfg.batch_size, indices=list(sampler), generator=data_gen, drop_last=True)
        bar = tqdm(batches, total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress or rank != 0, leave=False)
        for step, x in enumerate(bar):
            x = x.to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            snr = sample_snr(cfg, x.shape[0], chan_gen, device)
            if cfg.train_agent:  # the model steps the optimizer; its "loss" is the mean reward
                link = model.make_link(system, snr, x.shape[0], device, chan_gen)
                loss_sum += model.train_agent_step(x, link, optimizer)["reward"]
                continue
            loss = loss_fn(net(x, snr, generator=chan_gen), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if step % 50 == 49:
                bar.set_postfix(loss=f"{loss_sum.item() / (step + 1):.5f}")
        seconds = time.perf_counter() - t0
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if world > 1:
            dist.all_reduce(loss_sum)
            loss_sum /= world
            if rank != 0:
                dist.barrier()  # rank 0 validates and writes the checkpoint
                continue
        val = evaluate(system, val_set, [cfg.val_snr_db], n_channel_draws=cfg.val_draws, seed=cfg.seed, device=device)
        if cfg.train_layer is not None:
            val = val["per_prefix"][cfg.train_layer - 1]
        record = {
            "epoch": epoch + 1,
            loss_key: loss_sum.item() / n_steps * (-1 if loss_key == "train_psnr_db" else 1),
            "val_psnr": val["psnr"][0],
            "val_snr_db": cfg.val_snr_db,
            "lr": lr,
            "seconds": seconds,
            "images_per_s": n_steps * cfg.batch_size * world / seconds,
        }
        history.append(record)
        train_loss = {"train_reward_db": "train reward {:+.3f} dB", "train_psnr_db": "train PSNR {:.2f} dB",
                      "train_mse": "train mse {:.5f}"}[loss_key].format(record[loss_key])
        print(
            f"epoch {epoch + 1}/{cfg.epochs}  {train_loss}  "
            f"val PSNR {record['val_psnr']:.2f} dB @ {cfg.val_snr_db:g} dB  lr {lr:.2e}  "
            f"{seconds:.1f} s ({record['images_per_s']:.0f} img/s)",
            flush=True,
        )
        metrics = {"val_psnr": record["val_psnr"], "val_snr_db": cfg.val_snr_db, "epoch": epoch + 1}
        if record["val_psnr"] > best_psnr:
            best_psnr = record["val_psnr"]
            atomic_torch_save(model_checkpoint(model, train={**train_info, "epochs_done": epoch + 1}, metrics=metrics), out / "best.pt")
        state = model_checkpoint(model, train={**train_info, "epochs_done": epoch + 1}, metrics=metrics)
        state.update(
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            epoch=epoch + 1,
            rng=_rng_state(data_gen, chan_gen),
            history=history,
        )
        atomic_torch_save(state, out / "last.pt")
        write_logs(out, history)
        if world > 1:
            dist.barrier()
    return history


def _loss_fn(model, cfg: TrainConfig):
    if model.defines_loss:
        if cfg.loss != "mse":
            raise ValueError(f"{model.registry_name} has its own loss; loss={cfg.loss!r} applies to models without one")
        return model.loss
    if cfg.loss == "psnr":
        return lambda out, x: 10 * torch.log10((out["x_hat"] - x).square().flatten(1).mean(1).clamp_min(1e-10)).mean()
    return lambda out, x: F.mse_loss(out["x_hat"], x)


def _loss_key(cfg: TrainConfig) -> str:
    """The history's name for the epoch's mean training objective."""
    return "train_reward_db" if cfg.train_agent else {"mse": "train_mse", "psnr": "train_psnr_db"}[cfg.loss]


def write_logs(out: Path, history: list[dict]) -> None:
    """``out/log.csv`` and ``out/history.json`` from the per-epoch records, each replaced atomically."""
    tmp = out / ".log.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, out / "log.csv")
    tmp = out / ".history.json.tmp"
    tmp.write_text(json.dumps(history, indent=2))
    os.replace(tmp, out / "history.json")
