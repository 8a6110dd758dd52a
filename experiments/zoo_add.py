"""Maintainers' script: put a trained checkpoint into the zoo (weights, sha256, measured metrics).

JSCC models: copies the model part of the checkpoint (model, config, state_dict, train, metrics:
no optimizer) to ``jscc/zoo_weights/NAME.pt``, sweeps it with ``jscc sweep`` over ``--snr`` on
``--data`` (``--n-channel-draws``, PSNR) into ``results/zoo/NAME.json`` and writes the zoo table row.
StyleGAN2 priors (``prior.pt`` of ``jscc train-prior``): copies the file (G_ema and its
discriminator) and records the projection PSNR of the first ``--n-images`` images of ``--data``.

Example::

    python -m experiments.zoo_add deepjscc-cifar10-1_48-awgn-snr0-5 runs/dj48/best.pt --snr 0,2.5,5 \\
        --data ../shared/data/cifar10/test --train-command "jscc train ..." --train-notes "best.pt (epoch 30 of 30)"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments import sweep as sweep_cli
from experiments.args import ArgumentParser, parse_snr_list, positive_int
from jscc.checkpoint import atomic_torch_save, load, read_checkpoint
from jscc.data import load_dataset
from jscc.results import read_results, sha256_file, write_json
from jscc.zoo import WEIGHTS_DIR

ZOO_TABLE = WEIGHTS_DIR / "zoo.json"
RESULTS_DIR = Path("results") / "zoo"


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m experiments.zoo_add", description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="zoo name, <model>-<dataset>-<k/n>-<channel>-snr<train SNR>")
    p.add_argument("checkpoint", help="trained checkpoint (best.pt / prior.pt)")
    p.add_argument("--data", required=True, help="test images of the reported metrics")
    p.add_argument("--data-name", default="cifar10-test (JPEG copy)")
    p.add_argument("--snr", default="10", help="JSCC models: test SNRs (default: %(default)s)")
    p.add_argument("--n-channel-draws", type=positive_int, default=10)
    p.add_argument("--frames", type=positive_int, default=None, help="video models: frames per clip of the sweep")
    p.add_argument("--n-images", type=positive_int, default=256, help="priors: images projected (default: %(default)s)")
    p.add_argument("--skip", type=int, default=64, help="priors: first images left out (its validation set)")
    p.add_argument("--projection-steps", type=int, default=100)
    p.add_argument("--train-command", required=True)
    p.add_argument("--train-notes", default="")
    return p


def add_jscc_model(args) -> dict:
    model, ckpt = load(args.checkpoint, return_checkpoint=True)
    path = WEIGHTS_DIR / f"{args.name}.pt"
    atomic_torch_save({k: ckpt[k] for k in ("format", "model", "config", "state_dict", "train", "metrics") if k in ckpt},
                      path)
    out = RESULTS_DIR / f"{args.name}.json"
    snrs = parse_snr_list(args.snr)
    sweep_cli.main([str(path), "--data", args.data, "--data-name", args.data_name, "--snr", *map(str, snrs),
                    "--n-channel-draws", str(args.n_channel_draws), "--metrics", "psnr", "--name", args.name,
                    "--quiet", "--out", str(out), *(["--frames", str(args.frames)] if args.frames else [])])
    res = read_results(out)
    one = len(snrs) == 1
    return {
        "model": ckpt["model"], "config": ckpt["config"], "file": path.name, "sha256": sha256_file(path),
        # the model's own ratio: per GOP for video (the sweep's is per clip, initial key frame included)
        "bandwidth_ratio": str(model.bandwidth_ratio(32, 32)), "channel": res["channel"]["name"],
        "train_snr_db": ckpt.get("train", {}).get("train_snr_db"),
        "train_command": args.train_command, "train_notes": args.train_notes,
        "metrics": {"dataset": res["dataset"]["name"], "n_images": res["dataset"]["n_images"],
                    "snr_db": res["snr_db"][0] if one else res["snr_db"],
                    "psnr": round(res["metrics"]["psnr"][0], 3) if one else [round(v, 3) for v in res["metrics"]["psnr"]],
                    "n_channel_draws": res["n_channel_draws"], "results": str(out)},
    }


def add_prior(args) -> dict:
    from jscc.priors import load_prior, projection_psnr

    generator, ckpt = load_prior(args.checkpoint, return_checkpoint=True)
    if "discriminator" not in ckpt:
        raise SystemExit("error: the prior has no discriminator (the disc-features distance needs it): use a "
                         "prior.pt written by this version of jscc train-prior")
    path = WEIGHTS_DIR / f"{args.name}.pt"
    atomic_torch_save(ckpt, path)
    data = load_dataset(args.data, train=False, name=args.data_name)
    data = data.subset(range(args.skip, min(len(data), args.skip + args.n_images)))
    proj = projection_psnr(generator, data, steps=args.projection_steps)
    return {
        "model": "stylegan2", "config": ckpt["config"], "file": path.name, "sha256": sha256_file(path),
        "train_command": args.train_command, "train_notes": args.train_notes,
        "metrics": {"dataset": f"{args.data_name}, images {args.skip}..{args.skip + len(data) - 1}",
                    "n_images": len(data), "projection_psnr": round(proj["psnr"], 3),
                    "projection_psnr_std": round(proj["psnr_std"], 3), "projection_steps": args.projection_steps,
                    "projection_lr": proj["lr"], "epochs": ckpt["train"].get("epochs_done"),
                    "kimg": ckpt["train"].get("kimg")},
    }


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    model = read_checkpoint(args.checkpoint)["model"]  # a clear error for anything but a jscc checkpoint
    entry = add_prior(args) if model == "stylegan2" else add_jscc_model(args)
    table = json.loads(ZOO_TABLE.read_text())
    table[args.name] = entry
    write_json(dict(sorted(table.items())), ZOO_TABLE)
    print(f"zoo entry {args.name}: {json.dumps(entry['metrics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
