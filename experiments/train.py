"""``jscc train``: train a registered model end to end through a differentiable channel.

Example (the DeepJSCC paper's 1/12, AWGN, 10 dB setting)::

    jscc train --data ../shared/data/cifar10/train --val-data ../shared/data/cifar10/test --val-size 1000 \
        --bandwidth-ratio 1/12 --channel awgn --train-snr 10 --epochs 40 --out runs/deepjscc-1_12-awgn-snr10
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from pathlib import Path

from experiments.args import (ArgumentParser, add_channel_args, add_data_args, add_device_args, apply_device_args,
                              bandwidth_ratio, channel_from_args, check_output, parse_key_values, positive_int)
from jscc.registry import list_models

# torch, the channels and the rest of jscc are imported after the arguments are parsed (a fast --help,
# argument errors before the heavy imports).


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="deepjscc", help=f"registered model ({', '.join(list_models())})")
    p.add_argument("--bandwidth-ratio", type=bandwidth_ratio, default="1/12",
                   help="k/n as a fraction, e.g. 1/12 (DeepJSCC: c = 96 k/n)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model option, VALUE parsed as JSON (e.g. hidden=[32,64,64,64]); repeatable")
    add_data_args(p, default="sample", help_suffix="; training images", streaming=True)
    p.add_argument("--crop", type=positive_int, default=None, help="train on random CROPxCROP patches (large images)")
    p.add_argument("--flip", action="store_true", help="with --crop: mirror each training crop left-right with "
                   "probability 1/2 (drawn from the data generator: reproducible)")
    p.add_argument("--samples-per-epoch", type=positive_int, default=None,
                   help="with --crop: random crops per epoch (each image repeated evenly; default one per image)")
    p.add_argument("--frames", type=positive_int, default=None, metavar="T",
                   help="video models (deepwive): clips of T frames (1 + 4m); --data is a folder of clips (frame "
                        "folders, video files, UCF-101) unless --synthetic-motion")
    p.add_argument("--synthetic-motion", action="store_true",
                   help="with --frames and --crop: clips of random pans/zooms/rotations over the still images of --data")
    p.add_argument("--val-data", default=None, help="validation images (default: hold out --val-size training images)")
    p.add_argument("--val-size", type=positive_int, default=1000, help="validation images (default: %(default)s)")
    add_channel_args(p)
    snr = p.add_mutually_exclusive_group()
    snr.add_argument("--train-snr", type=float, default=None, help="training SNR in dB (default 10)")
    snr.add_argument("--train-snr-range", type=float, nargs=2, metavar=("LO", "HI"), help="uniform training SNR range in dB")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="cosine", choices=["none", "cosine", "step"])
    p.add_argument("--loss", default="mse", choices=["mse", "psnr"],
                   help="objective of models without their own loss: mse (default) or psnr (minus the mean "
                        "per-image PSNR, which keeps low-SNR errors from dominating a --train-snr-range run)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    run.add_argument("--overwrite", action="store_true",
                     help="start a new run in an OUT that holds one (its files are replaced as the new run "
                          "writes them)")
    p.add_argument("--train-layer", type=int, default=None, metavar="I",
                   help="layered models: train only layer I (1-based) with earlier layers frozen, on prefix I's "
                        "loss (layer-by-layer schedule; warm-start with --init from the previous stage)")
    p.add_argument("--train-agent", action="store_true",
                   help="deepwive: train only the bandwidth-allocation agent (REINFORCE), everything else frozen; "
                        "start from the trained codec with --init and --model-arg policy=agent")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="warm start: initial weights from a checkpoint or zoo name of the same model and config "
                        "(or a backbone the model can warm-start from, e.g. deepjscc for adjscc)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_args(p)
    return p


RUN_FILES = ("best.pt", "last.pt", "log.csv", "history.json")  # what jscc.train.train writes into --out


def check_run_folder(args) -> None:
    """Before any work: refuse to train over an existing run without ``--resume`` / ``--overwrite``,
    and ``--resume`` without ``OUT/last.pt``; say what ``--resume`` with another ``--epochs`` does."""
    from jscc.checkpoint import read_checkpoint

    out = check_output(args.out, folder=True)
    if args.resume:
        last = out / "last.pt"
        if not last.is_file():
            raise SystemExit(f"error: --resume: there is no {last} to resume from (drop --resume to start a new run)")
        if int(os.environ.get("RANK", "0")) == 0:
            note = resume_note(read_checkpoint(last), args.epochs, last)
            if note:
                print(f"note: {note}", file=sys.stderr)
    elif not args.overwrite:
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found:
            raise SystemExit(f"error: --out {out} already holds a run ({', '.join(found)}): pass --resume to continue "
                             "it or --overwrite to replace it")


def resume_note(state: dict, epochs: int, path) -> str | None:
    """One line on what ``--resume --epochs epochs`` does with the training checkpoint ``state`` at
    ``path`` (None when ``epochs`` is the run's own). The learning-rate scheduler is restored from the
    checkpoint, so its schedule keeps the length the run started with."""
    done, planned = int(state["epoch"]), state.get("train", {}).get("epochs")
    schedule = state.get("train", {}).get("lr_schedule", "cosine")
    if epochs <= done:
        return f"--resume: {path} has done {done} epochs >= --epochs {epochs}: nothing to train, the run stays as it is"
    if planned is None or epochs == planned:
        return None
    head = f"--resume: {path} was started for {planned} epochs ({done} done); it trains on to epoch {epochs}"
    if schedule == "none":
        return head + " at its constant learning rate"
    if epochs < planned:
        return head + f", stopping before its {planned}-epoch {schedule} learning-rate schedule ends (not compressed)"
    after = ("the learning rate rises again after epoch" if schedule == "cosine"
             else "the learning rate stays at its last step after epoch")
    return head + f" on its {planned}-epoch {schedule} learning-rate schedule (not stretched): {after} {planned}"


def build_datasets(args):
    """``(train_set, val_set)`` ImageSets (or clip sets) of the data arguments."""
    from jscc.data import ImageSet, holdout_split, load_dataset

    if args.frames is not None:
        return build_video_datasets(args)
    if args.synthetic_motion:
        raise SystemExit("error: --synthetic-motion needs --frames")
    kw = dict(data_root=args.data_root, download=args.download, crop=args.crop)
    train_set = load_dataset(args.data, train=True, limit=args.limit, name=args.data_name, stream=args.stream, **kw)
    if args.val_data is not None:
        val_set = load_dataset(args.val_data, train=False, **kw)
        val_set = val_set.subset(range(min(args.val_size, len(val_set))))
    else:
        if len(train_set) < 2:
            raise SystemExit("error: need >= 2 training images to hold out validation images (or pass --val-data)")
        val_idx, train_idx = holdout_split(len(train_set), args.val_size, args.seed)
        val_set, train_set = train_set.subset(val_idx), train_set.subset(train_idx)
    if args.samples_per_epoch is not None:
        if args.crop is None:
            raise SystemExit("error: --samples-per-epoch needs --crop")
        train_set = train_set.subset([i % len(train_set) for i in range(args.samples_per_epoch)])
    if args.flip:
        if args.crop is None:
            raise SystemExit("error: --flip needs --crop")
        train_set.flip = True
    for note in dict.fromkeys([*train_set.notes, *val_set.notes]):
        print(f"note: {note}", file=sys.stderr)
    return train_set, ImageSet(val_set.images, val_set.name, val_set.crop, random_crop=False)


def build_video_datasets(args):
    """Training and validation clips: frame folders / video files, or synthetic motion over stills."""
    from jscc.data import holdout_split, load_dataset
    from jscc.video import SyntheticMotion, load_video_folder

    if args.synthetic_motion:
        if args.crop is None:
            raise SystemExit("error: --synthetic-motion needs --crop (the frame size)")
        stills = load_dataset(args.data, train=True, limit=args.limit, name=args.data_name,
                              data_root=args.data_root, download=args.download)
        if len(stills) < 2:
            raise SystemExit("error: need >= 2 still images to hold out validation sources")
        val_idx, train_idx = holdout_split(len(stills), args.val_size, args.seed)
        val = [stills.images[i] for i in val_idx]
        train = [stills.images[i] for i in train_idx]
        if args.samples_per_epoch is not None:
            train = [train[i % len(train)] for i in range(args.samples_per_epoch)]
        name = f"synthetic-motion({stills.name})"
        return (SyntheticMotion(train, args.frames, args.crop, name=name),
                SyntheticMotion(val, args.frames, args.crop, name=f"{name} held out"))
    clips = load_video_folder(args.data, frames=args.frames, crop=args.crop, limit=args.limit, name=args.data_name)
    if args.val_data is not None:
        val = load_video_folder(args.val_data, frames=args.frames, crop=args.crop, random_crop=False)
        return clips, val.subset(range(min(args.val_size, len(val))))
    if len(clips) < 2:
        raise SystemExit("error: need >= 2 clips to hold out validation clips (or pass --val-data)")
    val_idx, train_idx = holdout_split(len(clips), args.val_size, args.seed)
    val = clips.subset(val_idx)
    val.random_crop = False
    return clips.subset(train_idx), val


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    check_run_folder(args)
    from channels import seed_everything
    from jscc.checkpoint import read_checkpoint, resolve_checkpoint
    from jscc.registry import get_model_class
    from jscc.results import sha256_file
    from jscc.system import JSCCSystem
    from jscc.train import TrainConfig, train

    apply_device_args(args)
    seed_everything(args.seed)  # before the model is built: --seed fixes the initial weights
    model_cls = get_model_class(args.model)
    model = model_cls.from_bandwidth_ratio(args.bandwidth_ratio, **parse_key_values(args.model_arg, "--model-arg"))
    video = model.video
    if args.frames is not None and not video:
        raise SystemExit(f"error: --frames is for video models; {args.model} is an image model")
    if video and args.frames is None:
        raise SystemExit(f"error: {args.model} is a video model: give --frames T (clips of T frames)")
    channel = channel_from_args(args)
    init = None
    if args.init is not None:
        path = resolve_checkpoint(args.init)
        ckpt = read_checkpoint(path)
        if ckpt["model"] == args.model and ckpt["config"] == model.config:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        else:  # e.g. adjscc or a layered model from a deepjscc backbone; ValueError if the model cannot
            try:
                model.warm_start(ckpt)
            except ValueError as err:
                raise SystemExit(f"error: --init {args.init}: {err}") from None
        init = {"checkpoint": str(args.init), "sha256": sha256_file(path)}
    system = JSCCSystem(model, channel)
    train_set, val_set = build_datasets(args)
    snr = args.train_snr_range if args.train_snr_range is not None else (args.train_snr if args.train_snr is not None else 10.0)
    command = "jscc train " + shlex.join(sys.argv[2:] if argv is None else argv)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        loss=args.loss, train_snr_db=snr, seed=args.seed, device=args.device, channels_last=args.channels_last,
        train_layer=args.train_layer, train_agent=args.train_agent,
        extra={"dataset": train_set.name, "n_train_images": len(train_set), "val_dataset": val_set.name,
               "n_val_images": len(val_set), "crop": args.crop, "flip": args.flip, "channel": channel.channel_config(),
               "bandwidth_ratio": str(args.bandwidth_ratio), "init": init, "command": command},
    )
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:
        print(f"{args.model} {model.config}  k/n = {args.bandwidth_ratio}  channel {channel.channel_config()}  "
              f"train {len(train_set)} / val {len(val_set)} images  out {args.out}")
    with distributed(cfg), removed_if_left_empty(args.out):
        train(system, train_set, val_set, cfg, args.out, resume=args.resume, progress=not args.quiet)
    if main_process:
        print(f"best checkpoint: {args.out}/best.pt  last: {args.out}/last.pt")
    return 0


@contextlib.contextmanager
def removed_if_left_empty(folder):
    """A run that fails leaves no empty run folder: ``folder`` and the parents made for it are removed
    if the block raises while they are empty (a folder that existed before is kept)."""
    missing = [p for p in (Path(folder), *Path(folder).parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for p in missing:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()  # only an empty folder
        raise


@contextlib.contextmanager
def distributed(cfg):
    """Under ``torchrun`` (WORLD_SIZE > 1): a process group (nccl on CUDA, gloo on CPU), one GPU per
    local rank (``cfg``: the :class:`jscc.train.TrainConfig`, its device set here); otherwise nothing."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    cuda = cfg.device.startswith("cuda")
    if cuda:
        cfg.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(cfg.device)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
