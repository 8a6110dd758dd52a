"""``jscc train-prior``: train a StyleGAN2 image prior (for InverseJSCC / GenerativeJSCC) on a CPU.

Writes OUT/prior.pt (the G_ema generator, load it with ``jscc.priors.load_prior``), OUT/last.pt
(everything needed to ``--resume``), OUT/best.pt (best validation projection PSNR), a sample grid
per epoch under OUT/samples/, OUT/log.csv and OUT/history.json.

Example (a 32x32 CIFAR-10 prior; 10,000 images per epoch, 100 epochs = 1,000 kimg)::

    jscc train-prior --data ../shared/data/cifar10/train --resolution 32 --mirror \
        --samples-per-epoch 10000 --epochs 100 --threads 1 --out runs/prior-cifar10-32
"""
from __future__ import annotations

import argparse
import shlex
import sys


from channels import seed_everything
from experiments.args import ArgumentParser, add_data_args, add_device_args, apply_device_args, positive_int
from jscc.data import ImageSet, holdout_split, load_dataset
from jscc.priors import PriorTrainConfig, train_prior

DEFAULTS = PriorTrainConfig()


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc train-prior", description=__doc__.split("\n\n")[0])
    add_data_args(p, help_suffix="; training images (required)")
    p.add_argument("--crop", type=positive_int, default=None,
                   help="train on random CROPxCROP patches of larger photos (CROP = --resolution)")
    p.add_argument("--val-data", default=None, help="held-out images (default: hold out --val-size training images)")
    p.add_argument("--val-size", type=int, default=64,
                   help="held-out images for the per-epoch projection PSNR; 0 = none (default: %(default)s)")
    p.add_argument("--val-steps", type=int, default=DEFAULTS.val_steps,
                   help="Adam steps of that projection (default: %(default)s)")
    p.add_argument("--val-lr", type=float, default=DEFAULTS.val_lr, help="its learning rate (default: %(default)s)")
    size = p.add_argument_group("model size")
    size.add_argument("--resolution", type=int, default=DEFAULTS.resolution, help="image side, a power of two (default: %(default)s)")
    size.add_argument("--channel-base", type=int, default=DEFAULTS.channel_base,
                      help="width at resolution r: min(BASE // r, MAX) (default: %(default)s)")
    size.add_argument("--channel-max", type=int, default=DEFAULTS.channel_max, help="(default: %(default)s)")
    size.add_argument("--d-channel-base", type=int, default=None, help="discriminator widths (default: as G)")
    size.add_argument("--d-channel-max", type=int, default=None)
    size.add_argument("--w-dim", type=int, default=DEFAULTS.w_dim, help="latent width (default: %(default)s)")
    size.add_argument("--n-mapping", type=int, default=DEFAULTS.n_mapping, help="mapping layers (default: %(default)s)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs)
    t.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size)
    t.add_argument("--samples-per-epoch", type=positive_int, default=None,
                   help="real images per epoch (default: the training set; one checkpoint per epoch)")
    t.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam lr of G and D (default: %(default)s)")
    t.add_argument("--r1-gamma", type=float, default=DEFAULTS.r1_gamma, help="R1 weight, 0 = off (default: %(default)s)")
    t.add_argument("--r1-interval", type=int, default=DEFAULTS.r1_interval, help="lazy R1 every N steps (default: %(default)s)")
    t.add_argument("--pl-weight", type=float, default=DEFAULTS.pl_weight,
                   help="path-length regularisation weight, 0 = off (StyleGAN2 FFHQ: 2) (default: %(default)s)")
    t.add_argument("--ema-kimg", type=float, default=DEFAULTS.ema_kimg,
                   help="G_ema half-life in thousands of images (default: %(default)s)")
    t.add_argument("--style-mixing", type=float, default=DEFAULTS.style_mixing_prob,
                   help="style mixing probability, 0 = off (default: %(default)s)")
    t.add_argument("--mirror", action="store_true", help="random horizontal flips of the training images")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, samples)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init-from", default=None, metavar="PRIOR",
                   help="start from a trained prior (prior.pt / best.pt or a zoo prior name, same model size): "
                        "its G_ema and D weights, fresh optimizers, kimg continued")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_args(p)
    return p


def build_datasets(args) -> tuple[ImageSet, ImageSet | None]:
    """Training images and the held-out validation images (None with ``--val-size 0``)."""
    if args.data is None:
        raise SystemExit("error: --data PATH is required (a folder of images or an ImageFolder tree)")
    if args.crop is not None and args.crop != args.resolution:
        raise SystemExit(f"error: --crop {args.crop} must equal --resolution {args.resolution}")
    kw = dict(data_root=args.data_root, download=args.download, crop=args.crop)
    train_set = load_dataset(args.data, train=True, limit=args.limit, name=args.data_name, **kw)
    val_set = None
    if args.val_size > 0:
        if args.val_data is not None:
            val_set = load_dataset(args.val_data, train=False, **kw)
            val_set = val_set.subset(range(min(args.val_size, len(val_set))))
        else:
            if len(train_set) < 2:
                raise SystemExit("error: need >= 2 training images to hold some out (or --val-size 0 / --val-data)")
            val_idx, train_idx = holdout_split(len(train_set), args.val_size, args.seed)
            val_set, train_set = train_set.subset(val_idx), train_set.subset(train_idx)
        val_set = ImageSet(val_set.images, val_set.name, val_set.crop, random_crop=False)
    return train_set, val_set


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    apply_device_args(args)
    seed_everything(args.seed)
    train_set, val_set = build_datasets(args)
    command = "jscc train-prior " + shlex.join(sys.argv[2:] if argv is None else argv)
    try:
        cfg = PriorTrainConfig(
            resolution=args.resolution, channel_base=args.channel_base, channel_max=args.channel_max,
            d_channel_base=args.d_channel_base, d_channel_max=args.d_channel_max, w_dim=args.w_dim,
            n_mapping=args.n_mapping, batch_size=args.batch_size, lr=args.lr, r1_gamma=args.r1_gamma,
            r1_interval=args.r1_interval, pl_weight=args.pl_weight, ema_kimg=args.ema_kimg,
            style_mixing_prob=args.style_mixing, mirror=args.mirror, epochs=args.epochs,
            images_per_epoch=args.samples_per_epoch, seed=args.seed, device=args.device,
            val_steps=args.val_steps, val_lr=args.val_lr,
            extra={"dataset": train_set.name, "n_train_images": len(train_set),
                   "val_dataset": None if val_set is None else val_set.name,
                   "n_val_images": 0 if val_set is None else len(val_set), "crop": args.crop, "command": command},
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    per_epoch = cfg.images_per_epoch or len(train_set)
    print(f"stylegan2 prior {cfg.resolution}x{cfg.resolution}  G {cfg.generator_config()}  "
          f"train {len(train_set)} / val {0 if val_set is None else len(val_set)} images  "
          f"{per_epoch} images/epoch x {cfg.epochs} epochs = {per_epoch * cfg.epochs / 1000:g} kimg  out {args.out}")
    try:
        train_prior(train_set, cfg, args.out, resume=args.resume, progress=not args.quiet, val_set=val_set,
                    init_from=args.init_from)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"prior: {args.out}/prior.pt  training state: {args.out}/last.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
