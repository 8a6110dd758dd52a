"""``jscc sweep``: a trained model over a list of test SNRs -> one results JSON file.

Example::

    jscc sweep runs/deepjscc-1_12/best.pt --data ../shared/data/cifar10/test --snr 0:20:2 \
        --n-channel-draws 10 --out results/deepjscc-cifar10-1_12-awgn-snr10.json
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from experiments.args import (DEFAULT_METRIC_CHOICES, IMAGE_METRIC_CHOICES, POLICY_CHOICES, ArgumentParser,
                              add_channel_args, add_data_args, add_device_args, add_snr_args, apply_device_args,
                              bandwidth_ratio, channel_from_args, check_output, parse_snr_list, positive_int,
                              summary_line)

# torch and jscc are imported after the arguments are parsed (a fast --help, argument errors first)


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="checkpoint path or zoo name")
    add_data_args(p, default="sample", help_suffix="; test images")
    add_snr_args(p)
    p.add_argument("--frames", type=positive_int, default=None, metavar="T",
                   help="video models: --data is a folder of clips; evaluate the first T frames of each (default: "
                        "the longest 1 + G*m that every clip holds)")
    p.add_argument("--allocation-policy", default=None, choices=POLICY_CHOICES,
                   help="deepwive: bandwidth allocation among a GOP's frames (default: the model's policy)")
    p.add_argument("--intra-only", action="store_true",
                   help="deepwive: the per-frame reference, every frame coded alone by the key-frame codec "
                        "at the same bandwidth (chunks of the allocation policy)")
    p.add_argument("--bandwidth-ratio", type=bandwidth_ratio, default=None,
                   help="rate-adaptive models (swinjscc): the k/n to send, one the model serves (default: as trained)")
    p.add_argument("--n-channel-draws", type=positive_int, default=10, help="channel realisations per image and SNR (default 10)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRIC_CHOICES), choices=IMAGE_METRIC_CHOICES,
                   help="metrics (default: %(default)s; lpips = LPIPS v0.1 AlexNet, lower is better, offline; "
                        "ms_ssim needs images >= 161 px, else SSIM; lpips needs >= 31 px (lpips_vgg 16 px), else "
                        "it is dropped with a note)")
    p.add_argument("--perceptual", default="ssim", metavar="NAME",
                   help="with --metrics perceptual: ssim (1 - SSIM), lpips-alex, or disc-features=SOURCE (a "
                        "train-prior prior.pt or last.pt, or a zoo prior name); recorded under its own name (default ssim)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    add_channel_args(p, default=None)
    p.add_argument("--stop-psnr", type=float, default=None, metavar="DB",
                   help="layered models sending layer by layer (deepjscc-f, deepjscc-l-residual): variable-length "
                        "mode, each image stops once the transmitter's estimate reaches DB")
    p.add_argument("--feedback-snr", default=None, metavar="DB",
                   help="deepjscc-f: evaluate with this feedback SNR in dB, or 'noiseless' (default: as trained)")
    p.add_argument("--name", default=None, help="result name (default: from the checkpoint and channel)")
    p.add_argument("--out", required=True, help="results JSON file")
    p.add_argument("--quiet", action="store_true")
    add_device_args(p)
    return p


def default_name(model: str, channel: str) -> str:
    """``<run folder>-<channel>`` for ``runs/<run>/best.pt``, ``<file stem or zoo name>-<channel>`` otherwise."""
    path = Path(model)
    stem = path.parent.name if path.suffix == ".pt" and path.stem in ("best", "last") and path.parent.name else path.stem
    return f"{stem}-{channel}"


def first_frames(clips, gop_size: int, model_name: str):
    """Without ``--frames``: the clips cut to their first ``T = 1 + G*m`` frames, the longest such T
    that every clip holds (a video model codes an initial key frame, then GOPs of ``G`` frames)."""
    from jscc.video import VideoSet

    shortest = min(clips.num_frames(i) for i in range(len(clips)))
    frames = 1 + gop_size * ((shortest - 1) // gop_size)
    if frames == 1:
        raise SystemExit(f"error: --frames: {model_name} codes clips of 1 + {gop_size}m frames (m >= 1), the shortest "
                         f"clip of {clips.name} has {shortest}")
    print(f"note: no --frames: coding the first {frames} frames of each clip (1 + {gop_size}m; the shortest has "
          f"{shortest})", file=sys.stderr)
    return VideoSet(clips.clips, clips.name, frames=frames, random_crop=False, clip_names=clips.clip_names)


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    check_output(args.out)
    apply_device_args(args)
    try:
        snrs = parse_snr_list(args.snr)
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"error: {err}")
    from jscc.checkpoint import load, resolve_checkpoint
    from jscc.data import load_dataset
    from jscc.evaluate import sweep_results
    from jscc.metrics import metrics_for_sizes
    from jscc.results import write_results
    from jscc.system import JSCCSystem

    model, ckpt = load(args.model, return_checkpoint=True)
    video = model.video
    if args.frames is not None and not video:
        raise SystemExit(f"error: --frames is for video models; {args.model} is an image model ({model.registry_name})")
    train_info = ckpt.get("train", {})
    channel = channel_from_args(args, fallback=train_info.get("channel"))
    if args.feedback_snr is not None:
        if not model.has_feedback:
            raise SystemExit(f"error: --feedback-snr applies to deepjscc-f, not {model.registry_name}")
        model.feedback_snr_db = None if args.feedback_snr == "noiseless" else float(args.feedback_snr)
    if args.bandwidth_ratio is not None:
        if not model.rate_adaptive:
            raise SystemExit(f"error: --bandwidth-ratio: {model.registry_name} sends one ratio "
                             f"({model.bandwidth_ratio(32, 32)}); only rate-adaptive models (swinjscc) take it")
        try:
            model.set_bandwidth_ratio(args.bandwidth_ratio)
        except ValueError as err:
            raise SystemExit(f"error: --bandwidth-ratio: {err}") from None
    if args.allocation_policy is not None:
        if not model.video:
            raise SystemExit(f"error: --allocation-policy applies to deepwive, not {model.registry_name}")
        model.policy = args.allocation_policy
    if args.intra_only:
        if not model.video:
            raise SystemExit(f"error: --intra-only applies to deepwive, not {model.registry_name}")
        model.intra_only = True
    system = JSCCSystem(model, channel).to(args.device)
    if args.stop_psnr is not None and not model.variable_length:
        raise SystemExit(f"error: --stop-psnr needs a model that sends layer by layer, not {model.registry_name}")
    if video:  # clips of T frames at native size (first T frames of each clip)
        from jscc.video import load_video_folder

        if args.data in (None, "sample", "cifar10"):
            raise SystemExit(f"error: --data: {args.model} is a video model; give a folder of clips "
                             "(frame folders or video files)")
        dataset = load_video_folder(args.data, frames=args.frames, random_crop=False, limit=args.limit, name=args.data_name)
        if args.frames is None:
            dataset = first_frames(dataset, model.gop_size, args.model)
    else:
        dataset = load_dataset(args.data, data_root=args.data_root, download=args.download, train=False,
                               limit=args.limit, name=args.data_name, multiple=model.size_multiple)
    metrics, notes = metrics_for_sizes(args.metrics, (dataset.image_size(i) for i in range(len(dataset))))
    notes = [*getattr(dataset, "notes", []), *notes]
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    perceptual_model = None
    if "perceptual" in metrics:
        from jscc.perceptual import build_perceptual

        name, _, source = args.perceptual.partition("=")
        perceptual_model = build_perceptual(name, **({"discriminator": source} if source else {})).to(args.device)
    snr_train = train_info.get("train_snr_db")
    name = args.name or default_name(args.model, channel.channel_config()["name"])
    if args.name is None:  # video variants get their own legend entries
        name += "".join(f"-{s}" for s in (args.allocation_policy, "intra" if args.intra_only else None) if s)
    command = "jscc sweep " + shlex.join(sys.argv[2:] if argv is None else argv)
    checkpoint_path = resolve_checkpoint(args.model)
    results = sweep_results(
        system, dataset, snrs, name=name, n_channel_draws=args.n_channel_draws, metrics=metrics,
        batch_size=args.batch_size, seed=args.seed, device=args.device, train_snr_db=snr_train,
        checkpoint_path=checkpoint_path, command=command, progress=not args.quiet,
        stop_psnr_db=args.stop_psnr, perceptual_model=perceptual_model, notes=notes,
    )
    path = write_results(results, args.out)
    print(summary_line(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
