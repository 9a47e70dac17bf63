"""The ``supn-anomaly`` command. Each sub-command lives in its own module with
``add_parser(subparsers)`` and ``run(args) -> int``; this module only dispatches and turns
expected failures into one readable line and exit code 2.

The command modules import torch, napari and the image libraries inside ``run``, never at the
top: building the parser stays light, so ``--help`` answers at once (benchmarks/cli_startup.py).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from ..errors import USER_ERRORS
from ..process_memory import reuse_freed_memory

# sub-command name -> module inside this package
COMMANDS = {
    "models": "models_cmd",
    "train": "train_cmd",
    "score-cells": "score_cells_cmd",
    "detect": "detect_cmd",
    "demo": "demo_cmd",
    "evaluate": "evaluate_cmd",
    "train-scorer": "train_scorer_cmd",
    "summarize": "summarize_cmd",
}


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line, like every other failure, with where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="supn-anomaly", description=(
        "Find malaria parasites in red-cell images with a SUPN-VAE of healthy cells."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reuse_freed_memory()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("supn-anomaly: cancelled", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever a library wrote
        print(f"supn-anomaly {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():  # the program itself
            # its work is over (written, or its failure said): Ctrl-C while Python shuts down,
            # which takes torch a second, has nothing left to cancel, and killed the process
            # with no message or printed a traceback (benchmarks/fuzz_bad_input.py)
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
