"""``jscc`` console command: dispatches to the subcommand modules.

A user error raised by a subcommand (a bad value, a missing or unreadable file, LPIPS or a codec
unavailable) is printed as one line, ``jscc <cmd>: error: <message>``, with exit code 2; ``--debug``
anywhere on the command line (or ``JSCC_DEBUG=1``) shows the traceback instead. Argument errors are
one such line too (``experiments.args.ArgumentParser``, no usage block).
"""
from __future__ import annotations

import importlib
import os
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


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean a bad input or environment, not a bug (imported once a subcommand has run)."""
    from jscc.baselines.codecs import CodecUnavailableError
    from jscc.lpips_backbones import LPIPSUnavailableError

    return ValueError, OSError, LPIPSUnavailableError, CodecUnavailableError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("JSCC_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] == ["--version"]:
        from importlib.metadata import version

        print(f"jscc {version('jscc-sim')}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        names = ", ".join(SUBCOMMANDS)
        print(f"usage: jscc {{{names}}} [options] [--debug]\n       jscc --version\n\n"
              "Deep joint source-channel coding simulator. 'jscc SUBCOMMAND --help' for options.")
        if not argv:
            return 2  # nothing asked: not a success
        if argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown subcommand {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command = argv[0]
    module = importlib.import_module(SUBCOMMANDS[command])
    try:
        return module.main(argv[1:]) or 0
    except SystemExit as stop:
        if isinstance(stop.code, int) and stop.code and not debug:
            return stop.code  # an argument error: its one line is on stderr already (experiments.args.ArgumentParser)
        if debug or not isinstance(stop.code, str):
            raise
        message = stop.code.removeprefix("error: ")
    except _user_errors() as err:
        if debug:
            raise
        message = str(err).strip() or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message += f": {err.filename}"
    print(f"jscc {command}: error: {message.splitlines()[0] if message else ''}"
          + (" (more with --debug)" if "\n" in message else ""), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
