"""Training time and images/s of every zoo model, from its run's ``history.json``.

Each zoo entry records its training command; its ``--out`` folder holds ``history.json`` (one
record per epoch: ``seconds`` of training, without validation, and ``images_per_s``). Prints a
Markdown table; runs that are not on this machine are listed as missing. Usage::

    python benchmarks/training_times.py [--runs-root .]

The runs shared the machine with other jobs (see ``results/README.md``), so their images/s
vary with the load; ``bench_models.py`` measures the models on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from jscc.zoo import ZOO


def run_dir(command: str) -> str | None:
    """The ``--out`` folder of a ``jscc train`` command (None if absent)."""
    args = shlex.split(command)
    return args[args.index("--out") + 1] if "--out" in args[:-1] else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-root", default=".", help="folder the training commands ran in (default: .)")
    args = p.parse_args(argv)
    print("| zoo name | epochs | training time (min) | images/s (median epoch) | warm start |")
    print("|---|---|---|---|---|")
    for name, entry in sorted(ZOO.items()):
        out = run_dir(entry.get("train_command", ""))
        history = Path(args.runs_root, out, "history.json") if out else None
        init = entry.get("train_notes", "").partition("warm start from ")[2] or "—"
        if history is None or not history.exists():
            print(f"| `{name}` | — | (run folder {out} not here) | — | {init} |")
            continue
        records = json.loads(history.read_text())
        minutes = sum(r["seconds"] for r in records) / 60
        rate = statistics.median(r["images_per_s"] for r in records)
        print(f"| `{name}` | {len(records)} | {minutes:.1f} | {rate:,.0f} | {init} |")


if __name__ == "__main__":
    main()
