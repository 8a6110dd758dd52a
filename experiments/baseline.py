"""``jscc baseline``: separate source-channel coding (a real codec over a digital link) -> results JSON.

Examples::

    jscc baseline --codec jpeg2000 --link capacity --channel awgn --design-snr 10 --snr 0:25:1 \
        --bandwidth-ratio 1/12 --data ../shared/data/cifar10/test --out results/j2k-capacity-snr10.json
    jscc baseline --codec jpeg2000 --link ldpc --design-snr 5 10 15 --design oracle --snr 0:20:1 \
        --bandwidth-ratio 1/16 --data ../shared/data/kodak --out results/kodak-ldpc/
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from experiments.args import add_data_args, add_snr_args, parse_key_values, parse_snr_list, summary_line
from jscc.baselines.codecs import ACCOUNTING_MODES, FALLBACK_MODES, get_codec, list_codecs
from jscc.baselines.separate import LINKS, SeparateBaseline, baseline_results
from jscc.data import load_dataset
from jscc.results import parse_ratio, write_results


def setup_args() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jscc baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--codec", default="jpeg2000", choices=list_codecs(), help="source codec (default: %(default)s)")
    p.add_argument("--codec-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="codec option, e.g. num_resolutions=6 keep_comment=true (Pillow's JPEG2000 defaults)")
    p.add_argument("--link", default="capacity", choices=LINKS, help="capacity-achieving code or 5G LDPC + QAM")
    p.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh"],
                   help="AWGN or slow Rayleigh fading (h known at the digital receiver)")
    p.add_argument("--design-snr", type=float, nargs="*", default=[], help="design SNR(s) in dB: one result per value")
    p.add_argument("--design", nargs="*", default=[], choices=["oracle", "match"],
                   help="also: oracle = best operating point per test SNR (envelope / rate chosen over the outage); "
                        "match = design SNR equal to the test SNR (R = C(snr_avg))")
    p.add_argument("--mcs", nargs="*", default=[], help="LDPC: also fixed MCSs, e.g. QPSK-r1/2 16QAM-r3/4")
    add_snr_args(p, default="0:25:1")
    p.add_argument("--bandwidth-ratio", default="1/12", help="k/n as a fraction (default: %(default)s)")
    p.add_argument("--byte-accounting", default="full", choices=ACCOUNTING_MODES)
    p.add_argument("--fallback", default="image_mean", choices=FALLBACK_MODES)
    p.add_argument("--n-channel-draws", type=int, default=10)
    p.add_argument("--ldpc-mode", default="cached", choices=["cached", "exact"],
                   help="LDPC: cached BLER curves (fast) or the exact bit-level chain with the codec's bytes")
    p.add_argument("--bler-blocks", type=int, default=1000, help="LDPC: Monte-Carlo blocks per SNR of a BLER table")
    p.add_argument("--workers", type=int, default=2, help="processes for source coding")
    add_data_args(p, default="sample", help_suffix="; test images (one pixel count)")
    p.add_argument("--crop", type=int, default=None, help="centre-crop test images to CROPxCROP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="result name (one policy only; default from codec, link, channel, policy)")
    p.add_argument("--out", required=True, help="results JSON file, or a folder when several policies are given")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    try:
        snrs = parse_snr_list(args.snr)
        ratio = parse_ratio(args.bandwidth_ratio)
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if args.mcs and args.link != "ldpc":
        raise SystemExit("error: --mcs applies to --link ldpc only")
    policies = [*args.design_snr, *args.design, *args.mcs]
    if not policies:
        raise SystemExit("error: give --design-snr VALUE(S), --design oracle|match or --mcs NAME(S)")
    dataset = load_dataset(args.data, data_root=args.data_root, download=args.download, train=False,
                           limit=args.limit, crop=args.crop, random_crop=False, name=args.data_name)
    codec = get_codec(args.codec, **parse_key_values(args.codec_arg, "--codec-arg"))
    baseline = SeparateBaseline(dataset, codec=codec, link=args.link, channel=args.channel, bandwidth_ratio=ratio,
                                accounting=args.byte_accounting, fallback=args.fallback, workers=args.workers,
                                ldpc_mode=args.ldpc_mode, table_kwargs={"n_blocks": args.bler_blocks},
                                progress=not args.quiet)
    command = "jscc baseline " + shlex.join(sys.argv[2:] if argv is None else argv)
    out = Path(args.out)
    for policy in policies:
        results = baseline_results(baseline, snrs, policy, n_channel_draws=args.n_channel_draws, seed=args.seed,
                                   command=command, name=args.name if len(policies) == 1 else None)
        path = write_results(results, out / f"{results['name']}.json" if len(policies) > 1 else out)
        print(summary_line(results))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
