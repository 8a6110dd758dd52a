"""A plain PyTorch training loop of the 2019 DeepJSCC against ``jscc train``'s own loop, side by side.

The plain loop is the simplest thing a researcher would write: the training images as one uint8
tensor in memory, fp32 eager, Adam, batch 64, power normalisation and AWGN at 10 dB written out
inline. ``jscc train``'s loop (:func:`jscc.train.train`) runs on the same images, for the same
number of steps, from the same initial weights, with each setting given by ``--variants``. The
runs alternate (plain, variant 1, variant 2, ..., plain, ...) so that a change of machine load hits
all of them alike; the table gives the median images/s of each, its ratio to the plain loop's,
and the validation PSNR (held-out images, 10 dB, fixed noise) after the steps. Compilation time
(``compile`` variants) is reported apart and excluded from images/s (one warm-up epoch per run).
Usage::

    python benchmarks/bench_train_loop.py --data ../shared/data/cifar10/train --steps 300 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from channels import AWGN
from jscc.data import ImageSet, load_dataset
from jscc.evaluate import evaluate
from jscc.models import DeepJSCC
from jscc.system import JSCCSystem
from jscc.train import TrainConfig, train

from bench_deepjscc import machine

SNR_DB = 10.0


def plain_loop(images: torch.Tensor, steps: int, batch: int, seed: int) -> tuple[float, JSCCSystem]:
    """The plainest loop: returns (images/s over ``steps`` steps, the trained system)."""
    torch.manual_seed(seed)
    model = DeepJSCC(c=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    noise_std = (10 ** (-SNR_DB / 10) / 2) ** 0.5  # per real dimension, unit symbol power
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=g)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = order[(step * batch) % (len(images) - batch + 1):][:batch]
        x = images[idx].float() / 255
        z = model.encode(x)
        z = z * (z.shape[1] ** 0.5) / z.abs().square().sum(1, keepdim=True).sqrt()
        noise = torch.complex(torch.randn(z.shape, generator=g), torch.randn(z.shape, generator=g)) * noise_std
        x_hat = model.decode(z + noise, x.shape[-2:])
        loss = F.mse_loss(x_hat, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0), JSCCSystem(model, AWGN(SNR_DB))


def jscc_loop(images: torch.Tensor, steps: int, batch: int, seed: int, options: dict) -> tuple[float, JSCCSystem]:
    """``jscc.train.train`` for one epoch of ``steps`` steps: (images/s of that epoch, the trained system)."""
    torch.manual_seed(seed)
    system = JSCCSystem(DeepJSCC(c=8), AWGN(SNR_DB))
    train_set = ImageSet(images[: steps * batch], "bench")
    val_set = ImageSet(images[:batch], "bench-val")  # validation of the loop itself (not the reported one)
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, lr_schedule="none", train_snr_db=SNR_DB, seed=seed,
                      **options)
    with tempfile.TemporaryDirectory() as out:
        history = train(system, train_set, val_set, cfg, out, progress=False)
    return history[-1]["images_per_s"], system


def val_psnr(system: JSCCSystem, val: ImageSet) -> float:
    return evaluate(system, val, [SNR_DB], n_channel_draws=1, seed=123)["psnr"][0]


VARIANTS = {
    "jscc-default": {},
    "jscc-channels_last": {"channels_last": True},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="training images (CIFAR-10 train folder)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--val", type=int, default=512, help="held-out images for the validation PSNR")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data, limit=args.steps * args.batch + args.val)
    images = data.images[: args.steps * args.batch].contiguous()
    val = ImageSet(data.images[args.steps * args.batch:], "val")
    print(machine(), f"| {args.steps} steps of {args.batch}, {args.rounds} rounds, {len(val)} validation images")
    speed: dict[str, list[float]] = {"plain": [], **{v: [] for v in args.variants}}
    quality: dict[str, list[float]] = {k: [] for k in speed}
    for r in range(args.rounds):
        for name in speed:
            if name == "plain":
                ips, system = plain_loop(images, args.steps, args.batch, seed=r)
            else:
                ips, system = jscc_loop(images, args.steps, args.batch, seed=r, options=VARIANTS[name])
            speed[name].append(ips)
            quality[name].append(val_psnr(system, val))
            print(f"round {r + 1} {name}: {ips:.0f} img/s, val PSNR {quality[name][-1]:.2f} dB", flush=True)
    base = statistics.median(speed["plain"])
    print(f"\n| loop | images/s (median of {args.rounds}) | ratio to plain | val PSNR after {args.steps} steps (mean) |")
    print("|---|---|---|---|")
    for name in speed:
        med = statistics.median(speed[name])
        print(f"| {name} | {med:,.0f} | {med / base:.2f}x | {statistics.mean(quality[name]):.2f} dB |")


if __name__ == "__main__":
    main()
