"""``jscc baseline``: separate source-channel coding (a real codec over a digital link) -> results JSON.

Examples::

    jscc baseline --codec jpeg2000 --link capacity --channel awgn --design-snr 10 --snr 0:25:1 \
        --bandwidth-ratio 1/12 --data ../shared/data/cifar10/test --out results/j2k-capacity-snr10.json
    jscc baseline --codec jpeg2000 --link ldpc --design-snr 5 10 15 --design oracle --snr 0:20:1 \
        --bandwidth-ratio 1/16 --data ../shared/data/kodak --out results/kodak-ldpc/

Video (``--frames T`` / ``--gop`` / ``--codec h264|h265``: --data is a folder of clips, frame folders or
video files; the first T frames of each at native size; k and k/n per clip, n = 3HWT)::

    jscc baseline --codec h264 --frames 9 --gop 4 --link capacity --design-snr 10 --snr 0:20:2 \
        --bandwidth-ratio 1/12 --data ../shared/data/video --out results/h264-capacity-snr10.json
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from experiments.args import (ACCOUNTING_CHOICES, BASELINE_METRIC_CHOICES, BLER_BUDGET_CHOICES, CODEC_CHOICES,
                              DEFAULT_METRIC_CHOICES, FALLBACK_CHOICES, LINK_CHOICES, ArgumentParser,
                              add_channel_args, add_data_args, add_device_args, add_snr_args, apply_device_args,
                              bandwidth_ratio, channel_from_args, check_output, parse_key_values, parse_snr_list,
                              positive_int, summary_line)

# torch, the codecs and the links are imported after the arguments are parsed (a fast --help)


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--codec", default="jpeg2000", choices=CODEC_CHOICES,
                   help="source codec (default: %(default)s); h264 / h265 code clips (video)")
    p.add_argument("--codec-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="codec option, e.g. num_resolutions=6 keep_comment=true (Pillow's JPEG2000 defaults); "
                        "video: preset=slow, rate_mode=crf, chroma=444, ... (VideoCodec)")
    p.add_argument("--frames", type=positive_int, default=None, metavar="T",
                   help="video: --data is a folder of clips (frame folders or video files); the first T frames of each")
    p.add_argument("--gop", type=positive_int, default=None,
                   help="video: frames per GOP, an IDR frame every GOP frames (default 4; >= T: one GOP)")
    p.add_argument("--link", default="capacity", choices=LINK_CHOICES, help="capacity-achieving code or 5G LDPC + QAM")
    p.add_argument("--design-snr", type=float, nargs="*", default=[], help="design SNR(s) in dB: one result per value")
    p.add_argument("--design", nargs="*", default=[], choices=["oracle", "match"],
                   help="also: oracle = best operating point per test SNR (envelope / rate chosen over the outage); "
                        "match = design SNR equal to the test SNR (R = C(snr_avg))")
    p.add_argument("--mcs", nargs="*", default=[], help="LDPC: also fixed MCSs, e.g. QPSK-r1/2 16QAM-r3/4")
    add_snr_args(p)  # the same default grid as jscc sweep
    add_channel_args(p)  # awgn, rayleigh (slow fading, h known at the receiver); ofdm, mimo (see link_channel)
    p.add_argument("--bandwidth-ratio", type=bandwidth_ratio, default="1/12", help="k/n as a fraction (default: 1/12)")
    p.add_argument("--byte-accounting", default=None, choices=ACCOUNTING_CHOICES,
                   help="default: full for images, payload (slice NAL units) for video")
    p.add_argument("--fallback", default=None, choices=FALLBACK_CHOICES,
                   help="default: image_mean for images, clip_mean for video")
    p.add_argument("--n-channel-draws", type=positive_int, default=10)
    p.add_argument("--ldpc-mode", default="cached", choices=["cached", "exact"],
                   help="LDPC: cached BLER curves (fast) or the exact bit-level chain with the codec's bytes")
    p.add_argument("--bler-blocks", type=positive_int, default=1000, help="LDPC: Monte-Carlo blocks per SNR of a BLER table")
    p.add_argument("--bler-budget", default="standard", choices=BLER_BUDGET_CHOICES,
                   help="LDPC: Monte-Carlo budget of the BLER tables: standard (--bler-blocks, 100 errors, 0.25 dB "
                        "grid) or fast (300 blocks, 20 errors, 0.1 dB grid from the Shannon limit: ~3x cheaper for "
                        "large images, threshold within ~0.1 dB; channels.links.bler_table; ignores --bler-blocks)")
    p.add_argument("--workers", type=positive_int, default=2, help="processes for source coding")
    add_data_args(p, default="sample", help_suffix="; test images (one pixel count)")
    p.add_argument("--crop", type=positive_int, default=None, help="centre-crop test images (video: frames) to CROPxCROP")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRIC_CHOICES), choices=BASELINE_METRIC_CHOICES,
                   help="metrics of the reconstructions (default: %(default)s; same size rules as jscc sweep: "
                        "ms_ssim >= 161 px else SSIM, lpips >= 31 px else dropped); video clips always report PSNR and "
                        "MS-SSIM (SSIM below 161 px), and LPIPS if asked")
    add_device_args(p)
    p.add_argument("--name", default=None, help="result name (one policy only; default from codec, link, channel, policy)")
    p.add_argument("--out", required=True, help="results JSON file, or a folder when several policies are given")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    from jscc.baselines.codecs import shared_worker_pools

    with shared_worker_pools():  # --workers N: one set of spawned source-coding processes for the whole run
        return _main(args, argv)


def _main(args, argv: list[str] | None) -> int:
    from jscc.baselines.codecs import FALLBACK_MODES, get_codec
    from jscc.baselines.separate import SeparateBaseline, baseline_results
    from jscc.baselines.video_codecs import VIDEO_CODECS
    from jscc.data import load_dataset
    from jscc.results import write_results

    apply_device_args(args)
    try:
        snrs = parse_snr_list(args.snr)
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"error: {err}")
    ratio = args.bandwidth_ratio
    if args.mcs and args.link != "ldpc":
        raise SystemExit("error: --mcs applies to --link ldpc only")
    policies = [*args.design_snr, *args.design, *args.mcs]
    if not policies:
        raise SystemExit("error: give --design-snr VALUE(S), --design oracle|match or --mcs NAME(S)")
    check_output(args.out, folder=len(policies) > 1)  # before any computing
    command = "jscc baseline " + shlex.join(sys.argv[2:] if argv is None else argv)
    if args.frames is not None or args.gop is not None or args.codec in VIDEO_CODECS:
        return _main_video(args, snrs, ratio, policies, command)
    if args.fallback not in (None, *FALLBACK_MODES):
        raise SystemExit(f"error: --fallback {args.fallback} applies to video clips; images take {FALLBACK_MODES}")
    args.fallback = args.fallback or "image_mean"
    args.byte_accounting = args.byte_accounting or "full"
    dataset = load_dataset(args.data, data_root=args.data_root, download=args.download, train=False,
                           limit=args.limit, crop=args.crop, random_crop=False, name=args.data_name)
    codec = get_codec(args.codec, **parse_key_values(args.codec_arg, "--codec-arg"))
    baseline = SeparateBaseline(dataset, codec=codec, link=args.link, channel=link_channel(args), bandwidth_ratio=ratio,
                                accounting=args.byte_accounting, fallback=args.fallback, workers=args.workers,
                                ldpc_mode=args.ldpc_mode, table_kwargs=bler_table_kwargs(args),
                                progress=not args.quiet, metrics=args.metrics, device=args.device)
    for note in baseline.metric_notes:
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.out)
    for policy in policies:
        results = baseline_results(baseline, snrs, policy, n_channel_draws=args.n_channel_draws, seed=args.seed,
                                   command=command, name=args.name if len(policies) == 1 else None)
        report(results, write_results(results, out / f"{results['name']}.json" if len(policies) > 1 else out))
    return 0


def report(results: dict, path: Path) -> None:
    """Console lines of one written baseline result; a warning when the fallback was all it ever showed."""
    print(summary_line(results))
    delivery = results.get("delivery")
    if delivery and not any(delivery["delivered"]):
        print(f"warning: {results['name']}: every {delivery['unit']} fell back to the {results['fallback']} at every "
              "SNR (no codestream fitted the budget or got through): the curve is the fallback's", file=sys.stderr)
    print(f"wrote {path}")


def link_channel(args):
    """The channel of the image baseline: ``awgn`` / ``rayleigh`` (slow fading, ``h`` known at the digital
    receiver: no options), or an OFDM / MIMO Module with zero-forcing equalisation (the receiver's LLRs
    come from unbiased symbols and their post-equalisation noise variance)."""
    if args.channel in ("awgn", "rayleigh"):
        if args.block_length is not None or args.csi is not None or args.equalization is not None:
            raise SystemExit("error: --block-length/--csi/--equalization: the digital baseline over awgn / rayleigh "
                             "takes none (slow fading, h known at the receiver)")
        channel_from_args(args)  # OFDM / MIMO options given with another channel: one clear error
        return args.channel
    if args.equalization not in (None, "zf"):
        raise SystemExit(f"error: --equalization {args.equalization}: the digital receiver equalises with zf")
    args.equalization = "zf"
    return channel_from_args(args)


def bler_table_kwargs(args) -> dict:
    """``table_kwargs`` of the LDPC link from ``--bler-budget`` / ``--bler-blocks``."""
    from channels.links import BLER_BUDGETS

    return {"n_blocks": args.bler_blocks, **BLER_BUDGETS[args.bler_budget]}


def _main_video(args, snrs, ratio, policies, command) -> int:
    """The video branch: H.264 / H.265 clips (``--frames``, ``--gop``) over the link."""
    from jscc.baselines.codecs import CodecUnavailableError
    from jscc.baselines.video_codecs import VIDEO_CODECS, VIDEO_FALLBACK_MODES, VideoCodec
    from jscc.baselines.video_separate import VideoSeparateBaseline, video_baseline_results
    from jscc.results import write_results
    from jscc.video import load_video_folder

    if args.codec not in VIDEO_CODECS:
        raise SystemExit(f"error: --frames / --gop code video clips: use --codec {' or '.join(VIDEO_CODECS)}, "
                         f"not {args.codec}")
    if args.fallback not in (None, *VIDEO_FALLBACK_MODES):
        raise SystemExit(f"error: --fallback {args.fallback} applies to images; clips take {VIDEO_FALLBACK_MODES}")
    if args.data is None or args.data == "sample":
        raise SystemExit("error: video needs --data: a folder of clips (frame folders or video files)")
    if args.ldpc_mode != "cached":
        raise SystemExit("error: video clips use the cached BLER tables (--ldpc-mode cached)")
    if args.channel not in ("awgn", "rayleigh"):
        raise SystemExit(f"error: --channel {args.channel}: the video baseline runs over awgn or rayleigh")
    gop = 4 if args.gop is None else args.gop
    try:
        codec = VideoCodec(args.codec, **parse_key_values(args.codec_arg, "--codec-arg"))
        clips = load_video_folder(args.data, frames=args.frames, crop=args.crop, random_crop=False,
                                  max_frames=args.frames, limit=args.limit, name=args.data_name)  # first T frames
        baseline = VideoSeparateBaseline(clips, codec=codec, link=args.link, channel=args.channel,
                                         bandwidth_ratio=ratio, gop=gop, accounting=args.byte_accounting or "payload",
                                         fallback=args.fallback or "clip_mean", workers=args.workers,
                                         table_kwargs=bler_table_kwargs(args), progress=not args.quiet,
                                         metrics=[m for m in args.metrics if m == "lpips"], device=args.device)
    except (FileNotFoundError, ValueError, TypeError, CodecUnavailableError) as err:
        raise SystemExit(f"error: {err}")
    out = Path(args.out)
    for policy in policies:
        results = video_baseline_results(baseline, snrs, policy, n_channel_draws=args.n_channel_draws,
                                         seed=args.seed, command=command,
                                         name=args.name if len(policies) == 1 else None)
        report(results, write_results(results, out / f"{results['name']}.json" if len(policies) > 1 else out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
