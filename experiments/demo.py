"""``jscc demo``: the whole pipeline offline in a few minutes on a laptop CPU.

Takes the shipped CIFAR-10 DeepJSCC (or, with ``--train`` or when the zoo is empty, trains a small
one briefly on random crops of scikit-image's sample photos), sweeps it over 0-20 dB AWGN on
photos it never saw, and writes a PSNR- and LPIPS-vs-SNR plot, an image grid and the results JSON.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from experiments.args import ArgumentParser, add_snr_args, default_threads, parse_snr_list, positive_int

# torch and jscc are imported after the arguments are parsed (a fast --help)

DEMO_MODEL = "deepjscc-cifar10-1_12-awgn-snr10"
TEST_PHOTOS = ("chelsea", "coffee")  # never used for --train
VAL_PHOTOS = ("stereo_motorcycle",)  # --train's validation photo: not trained on, not a test photo
GRID_SNRS = (0.0, 5.0, 10.0, 20.0)


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    p.add_argument("--train", action="store_true", help="train a small model instead of loading the zoo model")
    p.add_argument("--epochs", type=positive_int, default=12, help="--train epochs (default: %(default)s)")
    p.add_argument("--steps-per-epoch", type=positive_int, default=240, help="--train batches of 64 crops per epoch")
    add_snr_args(p)
    p.add_argument("--n-channel-draws", type=positive_int, default=5)
    p.add_argument("--crop", type=positive_int, default=256, help="test photos are centre-cropped to CROPxCROP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: the idle cores, see jscc sweep --help)")
    return p


def _train_small(out: Path, args):
    """A small DeepJSCC trained on the sample photos -> ``(model, best checkpoint path)``."""
    import torch

    from channels import AWGN
    from jscc.data import SAMPLE_PHOTOS, load_sample_photos
    from jscc.models import DeepJSCC
    from jscc.system import JSCCSystem
    from jscc.train import TrainConfig, train

    train_names = [n for n in SAMPLE_PHOTOS if n not in TEST_PHOTOS]
    photos = load_sample_photos(crop=32, names=train_names)
    # Sample crops with replacement so an "epoch" is a fixed number of steps.
    order = torch.randint(len(photos), (args.steps_per_epoch * 64,), generator=torch.Generator().manual_seed(args.seed))
    train_set = photos.subset(order)
    # Validation: 256 crops of a held-out photo (the same crops every epoch: evaluation seeds its data generator).
    val_set = load_sample_photos(crop=32, names=VAL_PHOTOS).subset([0] * 256)
    system = JSCCSystem(DeepJSCC(c=8), AWGN(10.0))
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=2e-3, train_snr_db=10.0, seed=args.seed,
                      extra={"dataset": "skimage-sample-photos (random 32x32 crops)", "channel": system.channel.channel_config()})
    train(system, train_set, val_set, cfg, out / "train", progress=False)
    return system.model, out / "train" / "best.pt"


def save_grid(system, images, snrs, path: Path, seed: int) -> Path:
    """Originals (first column) and reconstructions at each SNR, titled with their PSNR and LPIPS
    (``system``: a JSCCSystem; ``images``: float32 ``(B,3,H,W)``)."""
    import matplotlib
    import torch

    from jscc.metrics import load_lpips, lpips_distance, psnr

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(seed)
    rows, cols = images.shape[0], len(snrs) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    lpips = load_lpips()
    with torch.no_grad():
        recs = [system(images, snr, generator=gen)["x_hat"] for snr in snrs]
        perceptual = [lpips_distance(lpips, rec, images) for rec in recs]
    for r in range(rows):
        axes[r][0].imshow(images[r].permute(1, 2, 0).numpy())
        axes[r][0].set_title("original", fontsize=9)
        for c, (snr, rec, lp) in enumerate(zip(snrs, recs, perceptual), start=1):
            value = psnr(rec[r : r + 1], images[r : r + 1]).item()
            axes[r][c].imshow(rec[r].permute(1, 2, 0).clamp(0, 1).numpy())
            axes[r][c].set_title(f"{snr:g} dB SNR: {value:.1f} dB\nLPIPS {lp[r].item():.3f}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    t0 = time.perf_counter()
    import torch

    from channels import AWGN, seed_everything
    from experiments.plot import plot_results
    from jscc import zoo
    from jscc.checkpoint import load
    from jscc.data import SAMPLE_PHOTOS, load_sample_photos
    from jscc.evaluate import sweep_results
    from jscc.results import write_results
    from jscc.system import JSCCSystem

    torch.set_num_threads(args.threads or default_threads())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    snrs = parse_snr_list(args.snr)
    if args.train or DEMO_MODEL not in zoo.ZOO:
        print("training a small DeepJSCC (k/n = 1/12, AWGN 10 dB) on crops of scikit-image sample photos ...")
        model, checkpoint = _train_small(out, args)
        train_snr, label = 10.0, "demo-deepjscc-1_12-awgn-snr10 (trained on sample photos)"
        test_names = TEST_PHOTOS
    else:
        model, checkpoint = load(DEMO_MODEL), zoo.weight_path(DEMO_MODEL)
        train_snr, label = 10.0, f"{DEMO_MODEL} (zoo)"
        test_names = SAMPLE_PHOTOS
    system = JSCCSystem(model, AWGN()).eval()
    test_set = load_sample_photos(crop=args.crop, random_crop=False, names=test_names)
    command = "jscc demo " + shlex.join(sys.argv[2:] if argv is None else argv)
    results = sweep_results(system, test_set, snrs, name=label, n_channel_draws=args.n_channel_draws,
                            metrics=("psnr", "ssim", "lpips"), batch_size=8, seed=args.seed, train_snr_db=train_snr,
                            checkpoint_path=checkpoint, command=command)
    paths = [
        write_results(results, out / "results.json"),
        plot_results([results], ["psnr", "lpips"], out / "psnr_vs_snr.png", std=True,
                     title=f"DeepJSCC over AWGN on {len(test_set)} sample photos ({args.crop}x{args.crop})"),
        save_grid(system, test_set.batch(range(min(2, len(test_set)))), GRID_SNRS, out / "grid.png", args.seed),
    ]
    for snr, value, lp in zip(snrs, results["metrics"]["psnr"], results["metrics"]["lpips"]):
        print(f"  SNR {snr:5.1f} dB   PSNR {value:6.2f} dB   LPIPS {lp:.3f} (lower is better)")
    print(f"done in {time.perf_counter() - t0:.0f} s; wrote:")
    for path in paths:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
