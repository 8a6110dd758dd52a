"""``jscc plot``: results JSON files -> a metric-vs-SNR figure (PNG or PDF).

One curve per file, labelled with the result's name; separate-coding baselines (results with a
``codec``) are dashed, so the cliff effect reads at a glance. Layered results (DeepJSCC-l/-f) can
be drawn per prefix of layers (``--per-prefix``), or as the metric vs cumulative bandwidth ratio
at one SNR (``--x bandwidth --at-snr 10``), where single-layer results are single points.

Example::

    jscc plot results/*.json --metric psnr --out results/psnr_vs_snr.png
    jscc plot layered.json single_1_12.json single_1_6.json --x bandwidth --at-snr 10 --out bw.png
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from experiments.args import ArgumentParser
from jscc.results import read_results

METRIC_LABELS = {
    "psnr": "PSNR (dB)",
    "psnr_of_mean_mse": "PSNR of mean MSE (dB)",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS, AlexNet (lower is better)",
    "lpips_vgg": "LPIPS, VGG16 (lower is better)",
    "perceptual": "perceptual distance (lower is better)",  # named per result: metrics.perceptual.name
}


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc plot", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results JSON files")
    p.add_argument("--metric", nargs="+", default=["psnr"], choices=sorted(METRIC_LABELS),
                   help="metric(s); several draw one panel each, side by side (default: psnr)")
    p.add_argument("--std", action="store_true", help="shade +-1 standard deviation across images and draws")
    p.add_argument("--per-prefix", action="store_true", help="layered results: one curve per prefix of layers")
    p.add_argument("--x", choices=["snr", "bandwidth"], default="snr",
                   help="x axis: test SNR (default) or cumulative bandwidth ratio k/n at --at-snr")
    p.add_argument("--at-snr", type=float, default=None, help="with --x bandwidth: the test SNR (dB) to plot")
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, help="output figure (.png or .pdf)")
    return p


def expand_prefixes(results: list[dict]) -> list[dict]:
    """Replace each layered result by one result per prefix of its layers (named ``<name> [1..i]``,
    with the prefix's cumulative bandwidth ratio); other results pass through unchanged."""
    from jscc.results import bandwidth_ratio_str

    expanded = []
    for res in results:
        if "metrics_per_prefix" not in res:
            expanded.append(res)
            continue
        n = round(res["k"] / res["bandwidth_ratio"])
        for i, (layer, metrics) in enumerate(zip(res["layers"], res["metrics_per_prefix"])):
            k = sum(layer["k"] for layer in res["layers"][: i + 1])
            expanded.append({**res, "name": f"{res['name']} [layers 1..{i + 1}]", "metrics": metrics, "k": k,
                             "bandwidth_ratio": k / n, "bandwidth_ratio_str": bandwidth_ratio_str(k, n)})
    return expanded


def _new_figure(out: str | Path, wide: bool, panels: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"--out must end in .png or .pdf, got {out.name!r}")
    fig, axes = plt.subplots(1, panels, figsize=((9.6 if wide else 6.4) + 4.8 * (panels - 1), 4.4), squeeze=False)
    return out, plt, fig, list(axes[0])


def _finish(out: Path, plt, fig, axes: list, *, many: bool, title: str | None) -> Path:
    """Grid on every panel, the legend on the last, the title over all; save and close."""
    for ax in axes:
        ax.grid(True, alpha=0.3)
    # one legend, of the panel with the most curves (a panel may leave out results without its metric)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[0]))
    if many or len(axes) > 1:  # outside the last panel: several panels leave no free corner
        axes[-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        axes[-1].legend(handles, labels, fontsize=8)
    if title:
        text = "\n".join(textwrap.wrap(title, 64 * len(axes)))
        (fig.suptitle(text, fontsize=10) if len(axes) > 1 else axes[0].set_title(text, fontsize=10))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def plot_vs_bandwidth(results: list[dict], metric: str, snr_db: float, out: str | Path, *, title: str | None = None) -> Path:
    """Draw ``metric`` at test SNR ``snr_db`` vs cumulative bandwidth ratio: a line through the
    prefixes of each layered result, a single point for each single-layer result."""
    out, plt, fig, (ax,) = _new_figure(out, len(results) > 6)
    for res in results:
        if not any(abs(s - snr_db) < 1e-9 for s in res["snr_db"]):
            raise ValueError(f"result {res['name']!r} has no SNR point at {snr_db:g} dB (it has {res['snr_db']})")
        j = next(i for i, s in enumerate(res["snr_db"]) if abs(s - snr_db) < 1e-9)
        sets = res.get("metrics_per_prefix", [res["metrics"]])
        if any(metric not in m for m in sets):
            raise ValueError(f"result {res['name']!r} has no metric {metric!r}")
        ratios = [layer["cumulative_bandwidth_ratio"] for layer in res["layers"]] if "layers" in res else [res["bandwidth_ratio"]]
        ax.plot(ratios, [m[metric][j] for m in sets], "--" if "codec" in res else "-", marker="o", markersize=5,
                label=res["name"])
    ax.set_xlabel("cumulative bandwidth ratio k/n")
    ax.set_ylabel(f"{METRIC_LABELS[metric]} at {snr_db:g} dB")
    return _finish(out, plt, fig, [ax], many=len(results) > 6, title=title)


def plot_results(results: list[dict], metric: str | list[str], out: str | Path, *, title: str | None = None,
                 std: bool = False) -> Path:
    """Draw ``metric`` vs ``snr_db`` for each results dict and save the figure to ``out``; several
    metrics (e.g. ``["psnr", "lpips"]``) draw one panel each, side by side, with one legend. A result
    without a metric is an error for a single panel, and left out of that panel (with a line on
    stderr) when there are several."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    many = len(results) > 6
    out, plt, fig, axes = _new_figure(out, many, len(metrics))
    colors = _colors(plt, results)
    try:
        for m, ax in zip(metrics, axes):
            shown = results
            if len(metrics) > 1:
                shown = [r for r in results if m in r["metrics"]]
                for r in results:
                    if m not in r["metrics"]:
                        print(f"note: {r['name']} has no {m}: left out of the {m} panel", file=sys.stderr)
            _draw_metric(ax, shown, m, std, colors)
    except ValueError:
        plt.close(fig)
        raise
    return _finish(out, plt, fig, axes, many=many, title=title)


def _colors(plt, results: list[dict]) -> dict[int, str]:
    """Colour of each result (by ``id``), the same in every panel: models, then baselines, each by
    training / design SNR; the i-th baseline takes the i-th model's colour, so a model and the
    baseline designed for its training SNR match."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    used = {False: 0, True: 0}
    colors = {}
    for res in sorted(results, key=_order):
        baseline = "codec" in res
        colors[id(res)] = cycle[used[baseline] % len(cycle)]
        used[baseline] += 1
    return colors


def _draw_metric(ax, results: list[dict], metric: str, std: bool, colors: dict[int, str]) -> None:
    """One panel: ``metric`` vs SNR of every result, coloured by :func:`_colors`."""
    perceptual_names = set()
    for res in sorted(results, key=_order):
        values = res["metrics"].get(metric)
        if values is None:
            raise ValueError(f"result {res['name']!r} has no metric {metric!r} (it has {sorted(res['metrics'])})")
        if metric == "perceptual":  # {"name", "values"}: only results of one distance share an axis
            perceptual_names.add(values["name"])
            values = values["values"]
        baseline = "codec" in res
        label = f"{res['name']} (k/n={res['bandwidth_ratio_str']})"
        (line,) = ax.plot(res["snr_db"], values, "--" if baseline else "-", marker="o" if not baseline else "s",
                          markersize=3.5, label=label, color=colors[id(res)])
        spread = res["metrics"].get(f"{metric}_std")
        if std and spread is not None:
            lo = [v - s for v, s in zip(values, spread)]
            hi = [v + s for v, s in zip(values, spread)]
            ax.fill_between(res["snr_db"], lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("channel SNR (dB, Es/N0 per complex channel use)")
    if len(perceptual_names) > 1:
        raise ValueError(f"results measure different perceptual distances {sorted(perceptual_names)}: plot them apart")
    ax.set_ylabel(f"{perceptual_names.pop()} (lower is better)" if perceptual_names else METRIC_LABELS[metric])


def _order(res: dict) -> tuple:
    snr = res.get("design_snr_db") if "codec" in res else res.get("train_snr_db")
    return ("codec" in res, snr if isinstance(snr, (int, float)) else float("inf"))


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    results = [read_results(p) for p in args.results]
    if args.x == "bandwidth":
        if args.at_snr is None:
            raise SystemExit("error: --x bandwidth needs --at-snr")
        if len(args.metric) > 1:
            raise SystemExit("error: --x bandwidth draws one --metric")
        try:
            path = plot_vs_bandwidth(results, args.metric[0], args.at_snr, args.out, title=args.title)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
    else:
        path = plot_results(expand_prefixes(results) if args.per_prefix else results, args.metric, args.out,
                            title=args.title, std=args.std)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
