"""Training and inference speed of DeepJSCC on 32x32 batches (CPU or CUDA).

Reports images/s for fp32 (contiguous and channels_last) and bf16 autocast, and the accuracy
cost of bf16 (PSNR difference of the reconstructions against fp32, and training loss after the
same steps). Usage::

    python benchmarks/bench_deepjscc.py [--checkpoint runs/.../best.pt --data ../shared/data/cifar10/test]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

from channels import AWGN
from jscc.checkpoint import load
from jscc.data import load_dataset
from jscc.metrics import psnr
from jscc.models import DeepJSCC
from jscc.system import JSCCSystem

VARIANTS = {"fp32": (False, False), "fp32+channels_last": (True, False), "bf16-autocast": (False, True)}


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _autocast(device: str, bf16: bool):
    return torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def bench_train(c: int, batch: int, steps: int, device: str, channels_last: bool, bf16: bool, x: torch.Tensor):
    torch.manual_seed(0)
    system = JSCCSystem(DeepJSCC(c), AWGN(10.0)).to(device)
    if channels_last:
        system = system.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(system.parameters(), 1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    warmup = 10
    for i in range(steps + warmup):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        xb = x[(i * batch) % (len(x) - batch) :][:batch]
        with _autocast(device, bf16):
            x_hat = system(xb, generator=gen)["x_hat"]
        loss = F.mse_loss(x_hat.float(), xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0), loss.item()


@torch.no_grad()
def bench_infer(system: JSCCSystem, x: torch.Tensor, batch: int, device: str, channels_last: bool, bf16: bool, reps: int):
    system = system.to(device).eval()
    if channels_last:
        system = system.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    gen = torch.Generator(device=device).manual_seed(0)
    outs = []
    for r in range(reps + 1):
        if r == 1:
            _sync(device)
            t0 = time.perf_counter()
        outs = []
        for i in range(0, len(x), batch):
            with _autocast(device, bf16):
                outs.append(system(x[i : i + batch], 10.0, generator=gen)["x_hat"].float())
    _sync(device)
    return reps * len(x) / (time.perf_counter() - t0), torch.cat(outs)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--c", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", default=None, help="trained model for the bf16 accuracy check")
    p.add_argument("--data", default=None, help="test images (default: random 32x32 images)")
    p.add_argument("--n-images", type=int, default=1024)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()

    if args.data:
        x = load_dataset(args.data, train=False, limit=args.n_images).batch(range(args.n_images))
    else:
        x = torch.rand(args.n_images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = x.to(args.device)
    print(machine())
    report = {"machine": machine(), "device": args.device, "batch": args.batch, "c": args.c, "train": {}, "inference": {}}
    for name, (cl, bf16) in VARIANTS.items():
        ips, loss = bench_train(args.c, args.batch, args.steps, args.device, cl, bf16, x)
        report["train"][name] = {"images_per_s": round(ips, 1), "loss_after_steps": loss}
        print(f"train     {name:20s} {ips:8.0f} img/s   loss after {args.steps} steps {loss:.5f}")
    model = load(args.checkpoint) if args.checkpoint else DeepJSCC(args.c)
    system = JSCCSystem(model, AWGN())
    ref = None
    for name, (cl, bf16) in VARIANTS.items():
        ips, x_hat = bench_infer(system, x, 256, args.device, cl, bf16, reps=3)
        mean_psnr = psnr(x_hat.clamp(0, 1), x).mean().item()
        ref = mean_psnr if ref is None else ref
        report["inference"][name] = {"images_per_s": round(ips, 1), "psnr_db": round(mean_psnr, 3), "psnr_minus_fp32_db": round(mean_psnr - ref, 3)}
        print(f"inference {name:20s} {ips:8.0f} img/s   PSNR {mean_psnr:.3f} dB ({mean_psnr - ref:+.3f} vs fp32)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
