"""``jscc score``: PSNR / SSIM / MS-SSIM / LPIPS of reconstructions made elsewhere, against their references.

Examples::

    jscc score --ref ../shared/data/kodak --dist my_recons/ --metrics psnr ssim ms_ssim lpips --out scores.json
    jscc score --ref kodim01.png --dist kodim01_rec.png

Folders are paired by file name without the extension (``kodim01.png`` with ``kodim01.jpg``), in
sub-folders too; two single files are one pair. Metrics follow the project's conventions (PSNR with
peak 1, SSIM / MS-SSIM with ``data_range=1``, LPIPS v0.1 AlexNet with ``normalize=True``: lower is
better) and the same size rule as ``jscc sweep``: MS-SSIM needs a smaller side >= 161 px (else SSIM),
LPIPS >= 31 px (``lpips_vgg`` 16 px; else it is dropped, with a note). Prints one row per image and the
means (with the standard deviation over images and the standard error of the mean) and writes them
as JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from experiments.args import ArgumentParser, add_device_args, apply_device_args, positive_int

METRICS = ("psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg")
DEFAULT = ("psnr", "ssim", "lpips")
LOWER_IS_BETTER = ("lpips", "lpips_vgg")


def setup_args() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="jscc score", description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", required=True, help="reference image file or folder")
    p.add_argument("--dist", required=True, help="reconstructed (distorted) image file or folder")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT), choices=METRICS,
                   help="default: %(default)s (lpips: lower is better)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images scored together, per size (default 16)")
    p.add_argument("--out", default=None, help="JSON file for the per-image values and the means")
    add_device_args(p)
    return p


class ScoreError(ValueError):
    """A user error of ``jscc score``: printed as one line."""


def pair_files(ref: Path, dist: Path) -> list[tuple[str, Path, Path]]:
    """``[(name, ref file, dist file)]`` sorted by name; two files make one pair named after the reference.

    Raises:
        ScoreError: a path is missing, a folder meets a file, two files of one folder share a name,
            or files have no partner.
    """
    from jscc.data import list_image_files

    for path, what in ((ref, "--ref"), (dist, "--dist")):
        if not path.exists():
            raise ScoreError(f"{what} {path}: no such file or folder")
    if ref.is_file() != dist.is_file():
        raise ScoreError(f"--ref {ref} and --dist {dist} must both be files or both be folders")
    if ref.is_file():
        return [(ref.stem, ref, dist)]

    def by_name(folder: Path, what: str) -> dict[str, Path]:
        try:
            files = list_image_files(folder)
        except ValueError as err:
            raise ScoreError(f"{what} {err}") from None
        named: dict[str, Path] = {}
        for f in files:
            key = f.relative_to(folder).with_suffix("").as_posix()
            if key in named:
                raise ScoreError(f"{what}: {named[key]} and {f} have the same name; keep one")
            named[key] = f
        return named

    refs, dists = by_name(ref, "--ref"), by_name(dist, "--dist")
    for a, b, what in ((refs, dists, f"in --ref {ref} but not in --dist {dist}"),
                       (dists, refs, f"in --dist {dist} but not in --ref {ref}")):
        missing = sorted(set(a) - set(b))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ScoreError(f"{len(missing)} image(s) {what}: {shown}")
    return [(name, refs[name], dists[name]) for name in sorted(refs)]


def score_pairs(pairs, metrics, device="cpu", batch_size: int = 16) -> tuple[list[dict], list[str], list[str]]:
    """Per-image rows ``{"name", "ref", "dist", "height", "width", metric: value}``, the metrics kept, notes."""
    from jscc import metrics as M
    from jscc.data import read_image

    refs, dists = [], []
    for name, ref, dist in pairs:
        try:
            r, d = read_image(ref), read_image(dist)
        except ValueError as err:
            raise ScoreError(str(err)) from None
        if r.shape != d.shape:
            raise ScoreError(f"{name}: the reference {ref} is {r.shape[2]}x{r.shape[1]} px but {dist} is "
                             f"{d.shape[2]}x{d.shape[1]} px")
        refs.append(r.float().div(255).to(device))
        dists.append(d.float().div(255).to(device))
    kept, notes = M.metrics_for_sizes(metrics, (tuple(r.shape[1:]) for r in refs))
    values = M.per_image_metrics(dists, refs, kept, M.load_lpips_scorers(kept, device), batch_size=batch_size)
    if "psnr" in kept:  # float64, +inf for identical images (summarise and the JSON writer handle it)
        values["psnr"] = [M.psnr(d[None].double(), r[None].double()).item() for d, r in zip(dists, refs)]
    rows = [{"name": name, "ref": str(ref), "dist": str(dist), "height": int(r.shape[1]), "width": int(r.shape[2]),
             **{m: float(values[m][i]) for m in kept}} for i, ((name, ref, dist), r) in enumerate(zip(pairs, refs))]
    return rows, kept, notes


def summarise(rows: list[dict], metrics: list[str]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean", "std", "sem"}}`` over images (population std; sem = std / sqrt(n - 1), None
    for one image); PSNR over the finite values (identical images have infinite PSNR), with ``n_infinite``."""
    out = {}
    for m in metrics:
        v = [r[m] for r in rows if math.isfinite(r[m])]
        n = len(v)
        mean = sum(v) / n if n else None
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / n) if n else None
        out[m] = {"mean": mean, "std": std, "sem": std / math.sqrt(n - 1) if n > 1 else None}
        if n < len(rows):
            out[m]["n_infinite"] = len(rows) - n
    return out


def main(argv: list[str] | None = None) -> int:
    args = setup_args().parse_args(argv)
    try:
        apply_device_args(args)
        pairs = pair_files(Path(args.ref), Path(args.dist))
        rows, metrics, notes = score_pairs(pairs, list(dict.fromkeys(args.metrics)), args.device, args.batch_size)
    except ScoreError as err:
        print(f"jscc score: error: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    summary = summarise(rows, metrics)
    width = max(len("image"), *(len(r["name"]) for r in rows))
    labels = [m + (" (lower better)" if m in LOWER_IS_BETTER else "") for m in metrics]

    def line(first: str, second: str, values) -> str:
        cells = ("-" if v is None else f"{v:.4f}" for v in values)
        return f"{first:<{width}}  {second:>9}  " + "  ".join(f"{c:>{max(10, len(lab))}}" for c, lab in zip(cells, labels))

    print(f"{'image':<{width}}  {'size':>9}  " + "  ".join(f"{lab:>10}" for lab in labels))
    for r in rows:
        print(line(r["name"], f"{r['width']}x{r['height']}", (r[m] for m in metrics)))
    print(line("mean", f"{len(rows)} imgs", (summary[m]["mean"] for m in metrics)))
    print(line("± s.e.", "", (summary[m]["sem"] for m in metrics)))
    if args.out:
        from jscc import metrics as M
        from jscc.results import provenance, write_json

        out = {"schema": "jscc-score/1", "ref": args.ref, "dist": args.dist, "n_images": len(rows),
               "metrics": metrics, "mean": summary, "images": rows, "notes": notes,
               "provenance": provenance(command="jscc score " + shlex.join(sys.argv[2:] if argv is None else argv),
                                        device=args.device, lpips_backbones=M.lpips_backbone_sources(metrics))}
        # JSON has no infinity: identical pairs are written with PSNR null
        for r in out["images"]:
            if "psnr" in r and not math.isfinite(r["psnr"]):
                r["psnr"] = None
        print(f"wrote {write_json(out, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
