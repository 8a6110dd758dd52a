"""Argument groups and parsers shared by the subcommands (one definition each)."""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from fractions import Fraction
from pathlib import Path

# A decimal --bandwidth-ratio within this distance of a fraction of denominator <= RATIO_SNAP_DENOMINATOR is
# taken as that fraction (0.08333333333333333 -> 1/12); two such fractions are >= 1e-8 apart, so it is unique.
RATIO_SNAP_TOLERANCE = 1e-9
RATIO_SNAP_DENOMINATOR = 10_000
MAX_SNR_POINTS, WARN_SNR_POINTS = 1000, 100  # an SNR grid larger than this is an error / a warning
_TORCH_DEFAULT_THREADS: list[int] = []  # torch's own choice, read before any --threads of this process changes it


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr, ``<prog>: error: <message>``
    (naming the option), exit code 2, without the usage block (``--help`` shows it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        """The help, with ``(default: ...)`` after every option that has a default and does not say it."""
        for action in self._actions:
            if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                    or action.help == argparse.SUPPRESS or "default" in (action.help or "").lower()):
                continue
            action.help = f"{action.help} (default: %(default)s)" if action.help else "(default: %(default)s)"
        return super().format_help()


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts, sizes, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def bandwidth_ratio(text: str) -> Fraction:
    """argparse type: a bandwidth ratio k/n > 0 as an exact Fraction, from ``a/b``, an integer or a
    decimal; a decimal within 1e-9 of a fraction of denominator <= 10^4 is that fraction (the float
    ``0.08333333333333333`` is 1/12)."""
    from jscc.results import parse_ratio

    try:
        frac = parse_ratio(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    near = frac.limit_denominator(RATIO_SNAP_DENOMINATOR)
    return near if abs(near - frac) <= RATIO_SNAP_TOLERANCE else frac


def parse_snr_list(values: list[str] | str) -> list[float]:
    """SNR list from ``a:b:s`` ranges (``b`` included), comma lists and several values.

    >>> parse_snr_list(["0:10:5", "13,19"])
    [0.0, 5.0, 10.0, 13.0, 19.0]
    """
    if isinstance(values, str):
        values = [values]
    out: list[float] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if ":" in part:
                    pieces = [float(p) for p in part.split(":")]
                    if len(pieces) != 3:
                        raise ValueError
                    start, stop, step = pieces
                    if step <= 0 or stop < start:
                        raise ValueError
                    n = int(math.floor((stop - start) / step + 1e-9)) + 1
                    if n > MAX_SNR_POINTS:
                        raise argparse.ArgumentTypeError(
                            f"SNR range {part!r} has {n} points (more than {MAX_SNR_POINTS}); each point is a pass "
                            "over the whole data: use a coarser step")
                    out += [round(start + i * step, 10) for i in range(n)]
                else:
                    out.append(float(part))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"bad SNR list {part!r}: use a:b:s (b included, s > 0), comma lists or numbers"
                ) from None
    if not out or not all(math.isfinite(s) for s in out):
        raise argparse.ArgumentTypeError(f"SNR list {values!r} is empty or not finite")
    if len(out) > WARN_SNR_POINTS:
        print(f"warning: {len(out)} SNR points; each is a pass over the whole data", file=sys.stderr)
    return out


DEFAULT_SNR_GRID = "0:20:2"  # jscc sweep and jscc baseline


def add_snr_args(parser: argparse.ArgumentParser, default: str = DEFAULT_SNR_GRID, help: str = "test SNRs in dB") -> None:
    """``--snr`` taking ranges, comma lists and several values, negative ones included."""
    # argparse takes "-5:5:1" for an option unless it is told such tokens are numbers.
    parser._negative_number_matcher = re.compile(r"^-\d[\d.:,e+-]*$|^-\.\d")
    parser.add_argument("--snr", nargs="+", default=[default],
                        help=f"{help}: a:b:s (b included), comma lists or several values (default {default})")


# channels.ofdm's OFDM_MODELS and OFDM_INTERPOLATIONS, repeated so that --help needs no torch (a test checks them)
OFDM_MODEL_CHOICES = ("tdl-a", "tdl-b", "tdl-c", "tdl-d", "tdl-e", "flat", "none")
OFDM_INTERPOLATION_CHOICES = ("nn", "lin", "lin_time_avg")


# The sweep's vocabularies, repeated for the same reason (jscc.evaluate.IMAGE_METRICS, jscc.metrics.DEFAULT_METRICS,
# jscc.models.video.POLICIES; checked by the same test)
IMAGE_METRIC_CHOICES = ("psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg", "perceptual")
DEFAULT_METRIC_CHOICES = ("psnr", "ssim", "lpips")
POLICY_CHOICES = ("uniform", "random", "oracle", "agent")
# jscc baseline's (jscc.baselines.codecs.list_codecs() + video_codecs.VIDEO_CODECS, separate.LINKS,
# separate.BASELINE_METRICS, codecs.ACCOUNTING_MODES, codecs.FALLBACK_MODES + video_codecs.VIDEO_FALLBACK_MODES,
# channels.links.BLER_BUDGETS)
CODEC_CHOICES = ("avif", "heif", "jpeg", "jpeg2000", "webp", "h264", "h265")
LINK_CHOICES = ("capacity", "ldpc")
BASELINE_METRIC_CHOICES = ("psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg")
ACCOUNTING_CHOICES = ("full", "payload")
FALLBACK_CHOICES = ("image_mean", "dataset_mean", "clip_mean")
BLER_BUDGET_CHOICES = ("fast", "standard")


def add_channel_args(parser: argparse.ArgumentParser, *, default: str | None = "awgn") -> None:
    g = parser.add_argument_group("channel")
    g.add_argument("--channel", default=default, choices=["awgn", "rayleigh", "ofdm", "mimo"],
                   help="channel model (default: %(default)s)")
    g.add_argument("--block-length", type=int, default=None,
                   help="Rayleigh: symbols per fading block; omit for one h per image (slow fading), 1 = fast fading; "
                        "MIMO: time slots per channel draw")
    g.add_argument("--csi", default=None, choices=["none", "receiver", "transmitter", "perfect", "ls"],
                   help="Rayleigh: none or receiver (default none); OFDM: perfect, ls (pilot-based least squares, "
                        "the default) or none (raw data REs); MIMO: receiver (spatial multiplexing, the default) or transmitter (SVD precoding)")
    g.add_argument("--equalization", default=None, choices=["zf", "mmse", "side"],
                   help="Rayleigh with --csi receiver: zero-forcing, MMSE, or h given to the decoder (side); "
                        "OFDM: zf, mmse (default) or side (raw data REs, the true or LS-estimated channel to the "
                        "decoder: a model with --model-arg csi_side_input=true)")
    g.add_argument("--ofdm-model", default=None, choices=OFDM_MODEL_CHOICES,
                   help="OFDM: 3GPP TDL profile, flat Rayleigh per grid, or none (default tdl-a)")
    g.add_argument("--delay-spread", type=float, default=None, metavar="NS",
                   help="OFDM TDL: RMS delay spread in ns (default 100)")
    g.add_argument("--speed", type=float, default=None, metavar="M_S", help="OFDM TDL: UE speed in m/s (default 3)")
    g.add_argument("--fft-size", type=positive_int, default=None,
                   help="OFDM: subcarriers (default 72: 864 data + 144 pilot REs per 14-symbol grid)")
    g.add_argument("--interpolation", default=None, choices=OFDM_INTERPOLATION_CHOICES,
                   help="OFDM --csi ls: interpolation of the pilot estimates (default lin)")
    g.add_argument("--clip-db", type=float, default=None, metavar="DB",
                   help="OFDM: clip each OFDM symbol at DB above its RMS amplitude (PAPR reduction; default off)")
    g.add_argument("--antennas", default=None, metavar="NRxNT", help="MIMO: receive x transmit antennas (default 2x2)")
    g.add_argument("--power-allocation", default=None, choices=["equal", "waterfilling"],
                   help="MIMO --csi transmitter: power over the eigenmodes (default equal)")


#: The OFDM options of :func:`add_channel_args` -> (constructor argument, divisor to its unit).
_OFDM_OPTIONS = {"ofdm_model": ("model", None), "delay_spread": ("delay_spread", 1e9), "speed": ("speed", None),
                 "fft_size": ("fft_size", None), "interpolation": ("interpolation", None),
                 "clip_db": ("clip_db", None)}


def channel_from_args(args: argparse.Namespace, fallback: dict | None = None):
    """Build the channel Module from ``--channel`` options; unset options come from ``fallback``
    (a checkpoint's recorded channel config), then the defaults."""
    from channels import build_channel

    fallback = dict(fallback or {})
    name = args.channel or fallback.pop("name", "awgn")
    if name != fallback.get("name", name):
        fallback = {}
    fallback.pop("name", None)
    ofdm_given = [f"--{o.replace('_', '-')}" for o in _OFDM_OPTIONS if getattr(args, o, None) is not None]
    if name != "ofdm" and ofdm_given:
        raise ValueError(f"{'/'.join(ofdm_given)} apply to --channel ofdm only")
    mimo_given = [f"--{o.replace('_', '-')}" for o in ("antennas", "power_allocation") if getattr(args, o, None)]
    if name != "mimo" and mimo_given:
        raise ValueError(f"{'/'.join(mimo_given)} apply to --channel mimo only")
    if name == "awgn":
        if args.block_length is not None or args.csi not in (None, "none") or args.equalization is not None:
            raise ValueError("--block-length/--csi/--equalization apply to --channel rayleigh only")
        return build_channel("awgn")
    if name == "ofdm":
        if args.block_length is not None or args.csi == "receiver":
            raise ValueError("--channel ofdm takes --csi perfect|ls|none and --equalization zf|mmse|side "
                             "(no --block-length)")
        opts = {key: fallback[key] for key in ("model", "delay_spread", "speed", "carrier_frequency", "fft_size",
                                               "num_ofdm_symbols", "subcarrier_spacing", "cyclic_prefix_length",
                                               "pilot_ofdm_symbols", "interpolation", "clip_db", "csi", "equalization")
                if key in fallback}
        for option, (key, divisor) in _OFDM_OPTIONS.items():
            value = getattr(args, option, None)
            if value is not None:
                opts[key] = value / divisor if divisor else value
        opts.update({key: getattr(args, key) for key in ("csi", "equalization") if getattr(args, key) is not None})
        return build_channel("ofdm", **opts)
    if name == "mimo":
        if args.csi not in (None, "receiver", "transmitter") or args.equalization == "side":
            raise ValueError("--channel mimo takes --csi receiver|transmitter and --equalization zf|mmse")
        opts = {key: fallback[key] for key in ("antennas", "csi", "equalization", "power_allocation", "block_length")
                if key in fallback}
        opts.update({key: getattr(args, key) for key in ("antennas", "csi", "equalization", "power_allocation",
                                                         "block_length") if getattr(args, key, None) is not None})
        return build_channel("mimo", **opts)
    if args.csi in ("perfect", "ls", "transmitter"):
        raise ValueError(f"--csi {args.csi} applies to --channel {'mimo' if args.csi == 'transmitter' else 'ofdm'}; "
                         "Rayleigh takes --csi none|receiver")
    opts = {
        "block_length": args.block_length if args.block_length is not None else fallback.get("block_length"),
        "csi": args.csi or fallback.get("csi", "none"),
        "equalization": args.equalization or fallback.get("equalization"),
    }
    return build_channel(name, **opts)


def add_data_args(parser: argparse.ArgumentParser, *, default: str | None = None, help_suffix: str = "",
                  streaming: bool = False) -> None:
    """The data options; ``streaming`` adds ``--stream/--no-stream`` (commands that train)."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=default,
                   help="folder of images / ImageFolder tree, 'sample' (scikit-image photos) or 'cifar10' "
                   f"(torchvision, with --data-root){help_suffix}")
    g.add_argument("--data-root", default=None, help="torchvision dataset root (for --data cifar10)")
    g.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR-10 into --data-root")
    g.add_argument("--limit", type=positive_int, default=None, help="use N images: a seeded random subset (seed 0, file order kept, recorded in the dataset name)")
    if streaming:
        g.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                       help="decode an image folder batch by batch from disk instead of holding it in memory "
                            "(default: only folders whose decoded images exceed 4 GiB)")
    g.add_argument("--data-name", default=None, help="dataset name recorded in results (default: the path)")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch intra-op threads (default: the idle cores, i.e. torch's count less the 1-minute "
                             "load average, at least 1: torch's own choice oversubscribes a shared machine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every RNG (default: %(default)s)")


def _torch_default_threads() -> int:
    import torch

    if not _TORCH_DEFAULT_THREADS:
        _TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    return _TORCH_DEFAULT_THREADS[0]


def default_threads() -> int:
    """Intra-op threads for a machine that may be shared: torch's default (the physical cores) less the
    1-minute load average (rounded), at least 1."""
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average (Windows)
        busy = 0
    return max(1, _torch_default_threads() - busy)


def apply_device_args(args: argparse.Namespace) -> None:
    """``--threads`` (or :func:`default_threads`) and the ``--device`` check."""
    import torch

    _torch_default_threads()
    torch.set_num_threads(args.threads if args.threads is not None else default_threads())
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but CUDA is not available")


def parse_key_values(pairs: list[str], option: str) -> dict:
    """``KEY=VALUE`` strings -> dict, each VALUE parsed as JSON when it is JSON (else kept as a string);
    a VALUE that starts like a JSON list, object or string (``[``, ``{``, ``"``) must be valid JSON."""
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {option} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as err:
            if value.lstrip()[:1] in ("[", "{", '"'):
                problem = f"{err.msg} at character {err.pos}"
                raise SystemExit(f"error: {option} {key}: bad JSON {value!r} ({problem})") from None
            out[key] = value
    return out


def check_output(path: str | os.PathLike, *, folder: bool = False, option: str = "--out") -> Path:
    """Fail fast, before any computing, when ``path`` cannot be written: a file (``folder=False``) that
    is an existing folder, a folder that is an existing file, a file standing where a parent folder
    must go, or a nearest existing folder we may not create files in (read-only). Creates nothing.

    Returns ``path`` as a Path; raises SystemExit (one line naming ``option`` and the path) otherwise.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise SystemExit(f"error: {option} {path} is an existing {'folder' if path.is_dir() else 'file'}; "
                         f"it must be a {'folder' if folder else 'file'}")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SystemExit(f"error: {option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"error: {option} {path}: the folder {existing} is not writable")
    return path


def summary_line(results: dict) -> str:
    """Terminal summary of a results dict: name, k, ratio, images and PSNR per SNR on one line; layered
    prefixes, channel uses and a baseline's delivered / fell-back counts on further lines."""
    def per_snr(values, fmt=".2f"):
        return ", ".join(f"{s:g}: {v:{fmt}}" for s, v in zip(results["snr_db"], values))

    line = (f"{results['name']}  k={results['k']} ({results['bandwidth_ratio_str']})  "
            f"{results['dataset']['name']} x{results['dataset']['n_images']}  PSNR (dB) {per_snr(results['metrics']['psnr'])}")
    for layer, prefix in zip(results.get("layers", []), results.get("metrics_per_prefix", [])):
        line += f"\n  first layers to k/n={layer['cumulative_bandwidth_ratio']:.4g}: PSNR {per_snr(prefix['psnr'])}"
    if "stop_psnr_db" in results:
        line += f"\n  mean channel uses per image: {per_snr(results['metrics']['channel_uses'], '.1f')}"
    if "delivery" in results:  # separate baselines: codec reconstructions shown / all, per SNR
        d = results["delivery"]
        shown = ", ".join(f"{s:g}: {n}/{n + f}" for s, n, f in zip(results["snr_db"], d["delivered"], d["fell_back"]))
        line += f"\n  delivered (the rest fell back), per {d['unit']}: {shown}"
    return line
