"""``jscc`` console command: dispatches to the subcommand modules."""
from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "train": "experiments.train",
    "train-prior": "experiments.train_prior",
    "sweep": "experiments.sweep",
    "plot": "experiments.plot",
    "demo": "experiments.demo",
    "zoo": "experiments.zoo",
    "baseline": "experiments.baseline",
    "score": "experiments.score",
    "reproduce": "experiments.reproduce",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        names = ", ".join(SUBCOMMANDS)
        print(f"usage: jscc {{{names}}} [options]\n\nDeep joint source-channel coding simulator. "
              "'jscc SUBCOMMAND --help' for options.")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown subcommand {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(SUBCOMMANDS[argv[0]])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
