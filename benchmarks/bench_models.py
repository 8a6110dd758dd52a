"""Training and inference speed of every model family on 32x32 batches (fp32, CPU or CUDA).

One row per model at the settings of the zoo (k/n = 1/12 single-layer, 2 x 1/12 layered):
training images/s (Adam step through the AWGN channel, the model's own loss) and inference
images/s (end to end, no grad). Usage::

    python benchmarks/bench_models.py [--steps 60] [--json benchmarks/models_cpu_2core.json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from benchmarks.bench_deepjscc import machine
from channels import AWGN
from jscc.registry import build_model
from jscc.system import JSCCSystem

MODELS = {
    "deepjscc (c=8, 1/12)": ("deepjscc", {"c": 8}),
    "deepjscc (c=16, 1/6)": ("deepjscc", {"c": 16}),
    "deepjscc GDN-256 (c=8, 1/12; official DeepJSCC-f/ADJSCC network)": ("deepjscc", {"c": 8, "hidden": [256] * 4, "norm": "gdn"}),
    "adjscc (c=8, 1/12)": ("adjscc", {"c": 8}),
    "deepjscc-l-multi (2 x 1/12)": ("deepjscc-l-multi", {"c": 8, "layers": 2}),
    "deepjscc-l-masked (2 x 1/12)": ("deepjscc-l-masked", {"c": 8, "layers": 2}),
    "deepjscc-l-residual (2 x 1/12)": ("deepjscc-l-residual", {"c": 8, "layers": 2}),
    "deepjscc-f (2 x 1/12)": ("deepjscc-f", {"c": 8, "layers": 2}),
    "deepjscc-f, feedback 20 dB (2 x 1/12)": ("deepjscc-f", {"c": 8, "layers": 2, "feedback_snr_db": 20.0}),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(name: str, config: dict, batch: int, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    model = build_model(name, **config)
    system = JSCCSystem(model, AWGN(10.0)).to(device)
    x = torch.rand(batch * 4, 3, 32, 32, device=device)
    loss_fn = getattr(model, "loss", None) or (lambda out, xb: F.mse_loss(out["x_hat"], xb))
    opt = torch.optim.Adam(system.parameters(), 1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    for i in range(steps + 5):
        if i == 5:
            _sync(device)
            t0 = time.perf_counter()
        xb = x[(i % 4) * batch:][:batch]
        loss = loss_fn(system(xb, generator=gen), xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    train = steps * batch / (time.perf_counter() - t0)
    system.eval()
    with torch.no_grad():
        xi = torch.rand(256, 3, 32, 32, device=device)
        system(xi, generator=gen)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(8):
            system(xi, generator=gen)
        _sync(device)
    infer = 8 * 256 / (time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    return {"train_img_s": round(train), "inference_img_s": round(infer), "parameters": params}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    print(machine())
    rows = {}
    print(f"{'model':40s} {'params':>8s} {'train img/s':>12s} {'inference img/s':>16s}")
    for label, (name, config) in MODELS.items():
        rows[label] = bench(name, config, args.batch, args.steps, args.device)
        r = rows[label]
        print(f"{label:40s} {r['parameters']:8d} {r['train_img_s']:12d} {r['inference_img_s']:16d}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "batch": args.batch, "steps": args.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
