"""``jscc reproduce FIGURE``: regenerate a DeepJSCC paper figure from the shipped zoo weights.

Each figure sweeps every zoo model of its family over the test SNRs (a fixed 1,000-image subset
by default, ``--full`` for all images) and puts JPEG2000 over a capacity-achieving link designed
for the same training SNRs beside them (the cliff), or, for the ``adaptive-*`` figures, the
SNR-adaptive model beside the per-SNR models and their envelope (the best per-SNR model at each
test SNR). PSNR and LPIPS are reported, a panel each. Results files and the PNG go to
``--out`` (default ``results/<FIGURE>/``). Zoo models a figure expects but the zoo lacks are
listed, not hidden.

Example::

    jscc reproduce awgn-cifar10-1_12 --data ../shared/data/cifar10/test
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from channels import build_channel
from experiments.args import ArgumentParser, add_snr_args, default_threads, parse_snr_list, positive_int, summary_line
from experiments import reproduce_generative
from experiments.plot import expand_prefixes, plot_results, plot_vs_bandwidth
from jscc.baselines.separate import SeparateBaseline, baseline_results
from jscc.checkpoint import load, resolve_checkpoint
from jscc.data import load_dataset
from jscc.evaluate import sweep_results
from jscc.metrics import metrics_for_sizes
from jscc.results import write_results
from jscc.system import JSCCSystem
from jscc.zoo import ZOO

SUBSET_SIZE = 1000


@dataclass(frozen=True)
class Figure:
    """Zoo models ``<prefix>-snr<S>`` for each training SNR (or the explicit ``models``), their
    channel and bandwidth ratio."""

    title: str
    prefix: str
    train_snrs: tuple[float, ...]
    bandwidth_ratio: str
    channel: str = "awgn"
    baseline: bool = True
    adaptive: str | None = None  # zoo name of an SNR-adaptive model drawn against the per-SNR envelope
    models: tuple[str, ...] = ()  # explicit zoo names instead of prefix + train SNRs
    bandwidth_plot_snr: float | None = None  # also draw PSNR vs cumulative bandwidth at this SNR (layered)
    stop_psnrs: tuple[float, ...] = ()  # variable-length runs of models sending layer by layer (files only)
    dataset: str = "cifar10-test (JPEG copy)"  # default --data-name

    def model_names(self) -> list[str]:
        if self.models:
            return list(self.models)
        return [f"{self.prefix}-snr{s:g}" for s in self.train_snrs] + ([self.adaptive] if self.adaptive else [])


FIGURES = {
    "awgn-cifar10-1_12": Figure("DeepJSCC vs JPEG2000 + capacity, CIFAR-10, k/n = 1/12, AWGN",
                                "deepjscc-cifar10-1_12-awgn", (1, 4, 7, 10, 13, 19), "1/12"),
    "awgn-cifar10-1_6": Figure("DeepJSCC vs JPEG2000 + capacity, CIFAR-10, k/n = 1/6, AWGN",
                               "deepjscc-cifar10-1_6-awgn", (1, 4, 7, 10, 13, 19), "1/6"),
    "rayleigh-cifar10-1_6": Figure("DeepJSCC (no CSI) vs JPEG2000 + capacity (outage), CIFAR-10, k/n = 1/6, slow Rayleigh",
                                   "deepjscc-cifar10-1_6-rayleigh", (1, 10, 19), "1/6", channel="rayleigh"),
    "adaptive-cifar10-1_12": Figure("ADJSCC (one model, SNR-adaptive) vs per-SNR DeepJSCC, CIFAR-10, k/n = 1/12, AWGN",
                                    "deepjscc-cifar10-1_12-awgn", (1, 4, 7, 10, 13, 19), "1/12", baseline=False,
                                    adaptive="adjscc-cifar10-1_12-awgn"),
    "adaptive-cifar10-1_6": Figure("ADJSCC (one model, SNR-adaptive) vs per-SNR DeepJSCC, CIFAR-10, k/n = 1/6, AWGN",
                                   "deepjscc-cifar10-1_6-awgn", (1, 4, 7, 10, 13, 19), "1/6", baseline=False,
                                   adaptive="adjscc-cifar10-1_6-awgn"),
    "layered-cifar10": Figure("DeepJSCC-l / DeepJSCC-f (2 layers of k/n = 1/12) vs single-layer DeepJSCC, CIFAR-10, AWGN",
                              "", (10,), "1/6", baseline=False, bandwidth_plot_snr=10.0, models=(
                                  "deepjscc-l-multi-cifar10-1_6-awgn-snr10", "deepjscc-l-masked-cifar10-1_6-awgn-snr10",
                                  "deepjscc-l-residual-cifar10-1_6-awgn-snr10",
                                  "deepjscc-l-residual-lbl-cifar10-1_6-awgn-snr10", "deepjscc-f-cifar10-1_6-awgn-snr10",
                                  "deepjscc-f-fb20dB-cifar10-1_6-awgn-snr10", "deepjscc-cifar10-1_12-awgn-snr10",
                                  "deepjscc-cifar10-1_6-awgn-snr10"), stop_psnrs=(25.0, 28.0)),
    "kodak-1_16": Figure("DeepJSCC (trained on photo crops) vs JPEG2000 + capacity, Kodak at native size, k/n = 1/16, AWGN",
                         "deepjscc-photos-1_16-awgn", (10,), "1/16", dataset="kodak"),
}


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("figure", choices=sorted([*FIGURES, *reproduce_generative.GENERATIVE_FIGURES]))
    p.add_argument("--data", required=True, help="test images (folder / ImageFolder tree): the CIFAR-10 test set, "
                                                 "or Kodak for kodak-1_16")
    p.add_argument("--data-name", default=None, help="dataset name recorded in results (default: the figure's)")
    p.add_argument("--full", action="store_true", help=f"all images (default: a fixed {SUBSET_SIZE}-image subset)")
    add_snr_args(p, default="0:25:1")
    p.add_argument("--n-channel-draws", type=positive_int, default=10)
    p.add_argument("--no-baseline", action="store_true", help="skip JPEG2000 + capacity")
    p.add_argument("--workers", type=positive_int, default=2, help="processes for JPEG2000 coding")
    p.add_argument("--out", default=None, help="output folder (default results/FIGURE)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: the idle cores, see jscc sweep --help)")
    reproduce_generative.add_arguments(p)
    return p


def envelope(results: list[dict], *, name: str) -> dict:
    """The best of several results at each SNR point (same SNRs, dataset and bandwidth ratio):
    every metric that all results report (PSNR, LPIPS, ...) and its std from the model of highest PSNR
    there; ``notes`` names the model per SNR."""
    snrs = results[0]["snr_db"]
    if any(r["snr_db"] != snrs or r["k"] != results[0]["k"] for r in results):
        raise ValueError("an envelope needs results over the same SNRs and bandwidth")
    best = [max(results, key=lambda r: r["metrics"]["psnr"][i]) for i in range(len(snrs))]
    env = {key: results[0][key] for key in ("schema", "dataset", "channel", "k", "bandwidth_ratio",
                                            "bandwidth_ratio_str", "snr_db", "n_channel_draws", "provenance")}
    shared = [m for m in results[0]["metrics"] if m != "psnr_of_mean_mse" and m != "perceptual"
              and all(m in r["metrics"] for r in results)]
    env.update(name=name, method="envelope", train_snr_db=None, metrics={
        m: [b["metrics"][m][i] for i, b in enumerate(best)] for m in shared
    }, notes="best model per SNR: " + ", ".join(f"{s:g} dB {b['name']}" for s, b in zip(snrs, best)))
    env["provenance"] = {**env["provenance"], "checkpoint_sha256": None}
    return env


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    torch.set_num_threads(args.threads or default_threads())
    fig = FIGURES.get(args.figure) or reproduce_generative.GENERATIVE_FIGURES[args.figure]
    snrs = parse_snr_list(args.snr)
    out = Path(args.out or Path("results") / args.figure)
    data_name = args.data_name or fig.dataset
    dataset = load_dataset(args.data, train=False, name=data_name)
    command = "jscc reproduce " + shlex.join(sys.argv[2:] if argv is None else argv)
    if args.figure in reproduce_generative.GENERATIVE_FIGURES:
        return reproduce_generative.main(args, fig, dataset, snrs, out, command)
    if not args.full and len(dataset) > SUBSET_SIZE:
        step = len(dataset) // SUBSET_SIZE  # every step-th image: all classes of a class-sorted folder
        dataset = dataset.subset(range(0, step * SUBSET_SIZE, step))
        dataset.name = f"{data_name}, every {step}th image ({SUBSET_SIZE})"
    metrics, notes = metrics_for_sizes(("psnr", "lpips"), (dataset.image_size(i) for i in range(len(dataset))))
    names = fig.model_names()
    missing = [n for n in names if n not in ZOO]
    results = []
    for name in (n for n in names if n in ZOO):
        channel = build_channel(fig.channel, **({} if fig.channel == "awgn" else {"csi": "none"}))
        system = JSCCSystem(load(name), channel)
        res = sweep_results(system, dataset, snrs, name=name, n_channel_draws=args.n_channel_draws,
                            metrics=metrics, train_snr_db=ZOO[name]["train_snr_db"],
                            checkpoint_path=resolve_checkpoint(name), command=command, notes=notes)
        results.append(res)
        write_results(res, out / f"{name}.json")
        print(summary_line(res))
        for target in fig.stop_psnrs if system.model.variable_length else ():
            res = sweep_results(system, dataset, snrs, name=f"{name}-stop{target:g}dB", n_channel_draws=args.n_channel_draws,
                                metrics=metrics, train_snr_db=ZOO[name]["train_snr_db"], stop_psnr_db=target,
                                checkpoint_path=resolve_checkpoint(name), command=command, notes=notes)
            write_results(res, out / f"{res['name']}.json")
            print(summary_line(res))
    per_snr = [r for r in results if r["name"] != fig.adaptive]
    if fig.adaptive and len(per_snr) > 1:
        res = envelope(per_snr, name=f"{fig.prefix} per-SNR envelope")
        results.append(res)
        write_results(res, out / "per-snr-envelope.json")
    if fig.baseline and not args.no_baseline:
        baseline = SeparateBaseline(dataset, codec="jpeg2000", link="capacity", channel=fig.channel,
                                    bandwidth_ratio=fig.bandwidth_ratio, accounting="full", workers=args.workers,
                                    metrics=metrics)
        for design in fig.train_snrs:
            res = baseline_results(baseline, snrs, float(design), n_channel_draws=args.n_channel_draws, command=command)
            results.append(res)
            write_results(res, out / f"{res['name']}.json")
    if not results:
        raise SystemExit(f"error: none of {names} is in the zoo yet")
    layered = any("metrics_per_prefix" in r for r in results)
    png = plot_results(expand_prefixes(results) if layered else results, [m for m in metrics if m != "ssim"],
                       out.with_suffix(".png"), title=fig.title)
    if fig.bandwidth_plot_snr is not None and any(abs(s - fig.bandwidth_plot_snr) < 1e-9 for s in snrs):
        plot_vs_bandwidth(results, "psnr", fig.bandwidth_plot_snr, out.parent / f"{out.name}-bandwidth.png", title=fig.title)
    if missing:
        print(f"not in the zoo yet (left out of the figure): {', '.join(missing)}")
    print(f"wrote {len(results)} results files to {out}/ and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
