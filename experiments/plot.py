"""``jscc plot``: results JSON files -> a metric-vs-SNR figure (PNG or PDF).

One curve per file, labelled with the result's name; separate-coding baselines (results with a
``codec``) are dashed, so the cliff effect reads at a glance.

Example::

    jscc plot results/*.json --metric psnr --out results/psnr_vs_snr.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jscc.results import read_results

METRIC_LABELS = {
    "psnr": "PSNR (dB)",
    "psnr_of_mean_mse": "PSNR of mean MSE (dB)",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS (lower is better)",
}


def setup_args() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jscc plot", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results JSON files")
    p.add_argument("--metric", default="psnr", choices=sorted(METRIC_LABELS))
    p.add_argument("--std", action="store_true", help="shade +-1 standard deviation across images and draws")
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, help="output figure (.png or .pdf)")
    return p


def plot_results(results: list[dict], metric: str, out: str | Path, *, title: str | None = None, std: bool = False) -> Path:
    """Draw ``metric`` vs ``snr_db`` for each results dict and save the figure to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"--out must end in .png or .pdf, got {out.name!r}")
    many = len(results) > 6
    fig, ax = plt.subplots(figsize=(9.6 if many else 6.4, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    used = {False: 0, True: 0}
    # Models, then baselines, each by training / design SNR; the i-th baseline takes the i-th model's
    # colour, so a model and the baseline designed for its training SNR match.
    for res in sorted(results, key=_order):
        values = res["metrics"].get(metric)
        if values is None:
            raise ValueError(f"result {res['name']!r} has no metric {metric!r} (it has {sorted(res['metrics'])})")
        baseline = "codec" in res
        label = f"{res['name']} (k/n={res['bandwidth_ratio_str']})"
        color = colors[used[baseline] % len(colors)]
        used[baseline] += 1
        (line,) = ax.plot(res["snr_db"], values, "--" if baseline else "-", marker="o" if not baseline else "s",
                          markersize=3.5, label=label, color=color)
        spread = res["metrics"].get(f"{metric}_std")
        if std and spread is not None:
            lo = [v - s for v, s in zip(values, spread)]
            hi = [v + s for v, s in zip(values, spread)]
            ax.fill_between(res["snr_db"], lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("channel SNR (dB, Es/N0 per complex channel use)")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.grid(True, alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def _order(res: dict) -> tuple:
    snr = res.get("design_snr_db") if "codec" in res else res.get("train_snr_db")
    return ("codec" in res, snr if isinstance(snr, (int, float)) else float("inf"))


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    results = [read_results(p) for p in args.results]
    path = plot_results(results, args.metric, args.out, title=args.title, std=args.std)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
