"""``jscc reproduce generative-cifar10``: DeepJSCC vs InverseJSCC vs GenerativeJSCC where DeepJSCC is blurry.

The setting of DeepJSCC-perception (Erdemir et al., JSAC 2023) at CPU scale: CIFAR-10 (the prior's
domain), k/n = 1/48, AWGN 0-5 dB. Three receivers of the same bandwidth, each swept over the same
channel draws:

* ``deepjscc``: the MSE-trained DeepJSCC (the base);
* ``inverse-jscc``: that DeepJSCC's reconstruction inverted into the StyleGAN2 prior's W+ space at
  the receiver (``alpha MSE + beta perceptual`` to the base reconstruction, ``--inversion-steps``);
* ``generative-jscc``: an encoder trained end to end through the channel with the prior as decoder.

Metrics: PSNR, SSIM (MS-SSIM is undefined at 32x32) and LPIPS (v0.1, AlexNet; lower is better).
InverseJSCC's objective is ``1 * MSE + beta * LPIPS`` as in the paper (``--perceptual lpips-alex``,
the default); a substitute distance (``--perceptual disc-features``: the prior's own discriminator
features, or ``ssim``) can be used instead and is then also reported under its own name
(``metrics.perceptual``). The prior's projection PSNR on the same images (W+ inversion of the
originals, MSE) is the ceiling of what it can represent: InverseJSCC cannot beat it in PSNR.

Writes ``results/generative-cifar10/*.json`` (one results file per receiver), ``projection.json``,
``results/generative-cifar10.png`` (PSNR, SSIM, LPIPS vs SNR) and
``results/generative-cifar10-grid.png`` (originals and the three reconstructions at the lowest and
highest test SNR, same channel draw).

Example::

    jscc reproduce generative-cifar10 --data ../shared/data/cifar10/test --snr 0:5:1 --n-channel-draws 2
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from channels import AWGN
from experiments.args import positive_int, summary_line
from experiments.plot import plot_results
from jscc.checkpoint import load, resolve_checkpoint
from jscc.data import ImageSet
from jscc.evaluate import sweep_results
from jscc.metrics import LPIPS_MIN_SIDE, lpips_supported, metrics_for_sizes
from jscc.models.generative import InverseJSCC
from jscc.perceptual import build_perceptual
from jscc.priors import load_prior, projection_psnr
from jscc.zoo import resolve_prior
from jscc.results import sha256_file, write_json, write_results
from jscc.system import JSCCSystem


@dataclass(frozen=True)
class GenerativeFigure:
    """Zoo names of the base DeepJSCC, the StyleGAN2 prior and the GenerativeJSCC of one figure."""

    title: str
    base: str
    prior: str
    generative: str
    train_snr_db: tuple[float, float]
    held_out: int  # the first images of the test folder: the prior's validation set, never reported
    n_images: int = 256  # default subset (InverseJSCC runs an optimiser per image)
    dataset: str = "cifar10-test (JPEG copy)"


GENERATIVE_FIGURES = {
    "generative-cifar10": GenerativeFigure(
        "DeepJSCC vs InverseJSCC vs GenerativeJSCC (StyleGAN2 prior), CIFAR-10, k/n = 1/48, AWGN",
        base="deepjscc-cifar10-1_48-awgn-snr0-5", prior="stylegan2-cifar10-32",
        generative="generative-jscc-cifar10-1_48-awgn-snr0-5", train_snr_db=(0.0, 5.0), held_out=64),
}


# InverseJSCC's LPIPS weight, chosen on 64 held-out *training* images (results/README.md, generative section):
# of 0, 0.001, 0.003, 0.01, 0.03, 0.1 and 1, 0 gave the lowest LPIPS at 0 and 5 dB
INVERSION_BETA_LPIPS = 0.0


def add_arguments(p) -> None:
    """Options of the generative figures (``jscc reproduce`` parser)."""
    g = p.add_argument_group("generative-* figures")
    g.add_argument("--base", default=None, help="DeepJSCC checkpoint or zoo name (default: the figure's)")
    g.add_argument("--prior", default=None, help="StyleGAN2 prior checkpoint or zoo name (default: the figure's)")
    g.add_argument("--generative", default=None, help="GenerativeJSCC checkpoint or zoo name (default: the figure's)")
    g.add_argument("--n-images", type=positive_int, default=None,
                   help="held-out test images (default 256; --full: all but the prior's validation images)")
    g.add_argument("--held-out", type=int, default=None,
                   help="skip the first N test images: the prior's validation set (default: the figure's, 64)")
    g.add_argument("--inversion-steps", type=positive_int, default=100, help="InverseJSCC: Adam steps per batch (default: %(default)s)")
    g.add_argument("--inversion-lr", type=float, default=0.05, help="InverseJSCC: learning rate (default: %(default)s)")
    g.add_argument("--inversion-beta", type=float, default=None,
                   help="InverseJSCC: weight of the perceptual term beside MSE (weight 1; default: "
                        f"{INVERSION_BETA_LPIPS:g} with LPIPS, else GenerativeJSCC's beta)")
    g.add_argument("--perceptual", default="lpips-alex", choices=["lpips-alex", "lpips-vgg", "disc-features", "ssim"],
                   help="perceptual distance of the inversion (default: %(default)s); a substitute (disc-features: "
                        "the prior's discriminator; ssim) is also reported under its own name beside LPIPS")
    g.add_argument("--grid-images", type=positive_int, default=8, help="images in the picture grid (default: %(default)s)")


def held_out_subset(dataset: ImageSet, held_out: int, n_images: int | None) -> ImageSet:
    """Every step-th image after the first ``held_out`` ones (all classes of a class-sorted folder);
    all of them when ``n_images`` is None."""
    available = len(dataset) - held_out
    if available < 1:
        raise SystemExit(f"error: the test set has {len(dataset)} images, {held_out} of which are held out")
    n = available if n_images is None else min(n_images, available)
    step = available // n
    subset = dataset.subset(range(held_out, held_out + step * n, step))
    subset.name = f"{dataset.name}, every {step}th image after the first {held_out} ({n})"
    return subset


def main(args, fig: GenerativeFigure, dataset: ImageSet, snrs: list[float], out: Path, command: str) -> int:
    base, prior_name, generative = args.base or fig.base, args.prior or fig.prior, args.generative or fig.generative
    held_out = fig.held_out if args.held_out is None else args.held_out
    dataset = held_out_subset(dataset, held_out, None if args.full else (args.n_images or fig.n_images))
    generative_model = load(generative)
    lpips_objective = args.perceptual.startswith("lpips-")
    beta = args.inversion_beta if args.inversion_beta is not None else (
        INVERSION_BETA_LPIPS if lpips_objective else generative_model.config["beta"])
    perceptual_args = {"discriminator": prior_name} if args.perceptual == "disc-features" else {}
    perceptual = build_perceptual(args.perceptual, **perceptual_args)
    metrics, notes = metrics_for_sizes(("psnr", "ssim", "lpips") + (() if args.perceptual == "lpips-alex" else ("perceptual",)),
                                       (dataset.image_size(i) for i in range(len(dataset))))
    net = args.perceptual.split("-")[-1]
    if lpips_objective and not all(lpips_supported(*dataset.image_size(i), net) for i in range(len(dataset))):
        raise SystemExit(f"error: --perceptual {args.perceptual} needs images of at least {LPIPS_MIN_SIDE[net]} px: "
                         "use a substitute (--perceptual disc-features or ssim) for smaller ones")
    base_path, prior_path = resolve_checkpoint(base), resolve_prior(prior_name)
    inverse = InverseJSCC.from_checkpoints(base_path, prior_path, steps=args.inversion_steps, lr=args.inversion_lr,
                                           alpha=1.0, beta=beta, perceptual=args.perceptual,
                                           perceptual_args=perceptual_args)
    inverse_note = (f"InverseJSCC: base {base} + prior {prior_name} (sha256 {sha256_file(prior_path)}); "
                    f"{args.inversion_steps} Adam steps at lr {args.inversion_lr:g} on W+ of 1 * MSE + {beta:g} * "
                    f"{perceptual.name} to the base reconstruction, latent weight {inverse.config['latent_weight']:g}")
    receivers = [(_label(base), load(base_path), base_path, ""),
                 (f"inverse-jscc-{args.inversion_steps}steps", inverse, base_path, inverse_note),
                 (_label(generative), generative_model, resolve_checkpoint(generative), "")]
    results = []
    for name, model, path, note in receivers:
        res = sweep_results(JSCCSystem(model, AWGN()), dataset, snrs, name=name, n_channel_draws=args.n_channel_draws,
                            metrics=metrics, perceptual_model=perceptual,
                            train_snr_db=list(fig.train_snr_db), checkpoint_path=path, command=command,
                            progress=True, notes=notes + ([note] if note else []))
        write_results(res, out / f"{name}.json")
        results.append(res)
        print(summary_line(res))
    projection = projection_psnr(load_prior(prior_path), dataset, steps=args.inversion_steps, lr=args.inversion_lr)
    projection.update(prior=prior_name, dataset=dataset.name, steps=args.inversion_steps, lr=args.inversion_lr,
                      command=command)
    write_json(projection, out / "projection.json")
    print(f"prior projection PSNR on these images: {projection['psnr']:.2f} dB ({args.inversion_steps} steps)")
    png = plot_results(results, [m for m in metrics if m != "perceptual"], out.with_suffix(".png"), title=fig.title)
    grid = picture_grid([(r["name"], m) for r, (_, m, _, _) in zip(results, receivers)], dataset,
                        [snrs[0], snrs[-1]] if len(snrs) > 1 else snrs, args.grid_images,
                        out.parent / f"{out.name}-grid.png")
    print(f"wrote {len(results)} results files to {out}/, {png} and {grid}")
    return 0


def _label(name_or_path: str) -> str:
    """Result name of a receiver: the zoo name, or a checkpoint file's stem."""
    return Path(name_or_path).stem if Path(name_or_path).exists() else name_or_path


def picture_grid(receivers: list[tuple[str, torch.nn.Module]], dataset: ImageSet, snrs: list[float], n: int,
                 out: Path, seed: int = 0) -> Path:
    """Rows: the originals, then each receiver at each SNR of ``snrs`` (one channel draw, the same
    noise for every receiver: equal seeds, equal symbol counts); columns: the first ``n`` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = dataset.batch(range(min(n, len(dataset))))
    rows = [("original", x)]
    for snr in snrs:
        for name, model in receivers:
            system = JSCCSystem(model, AWGN()).eval()
            with torch.no_grad():
                out_ = system(x, snr, generator=torch.Generator().manual_seed(seed))
            rows.append((f"{name}\n{snr:g} dB", out_["x_hat"]))
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.1 * len(x) + 2.2, 1.15 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(len(x)):
            ax = axes[r][c]
            ax.imshow(images[c].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=6)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
