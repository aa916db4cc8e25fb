"""The ``edge-runtime`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function
``(args) -> int``. Modules keep heavy imports inside their handlers so that
``edge-runtime --help`` stays fast.

Errors: every :class:`~edge_runtime.errors.EdgeRuntimeError` is printed as one line
(what is wrong; what to do) and the process exits with code 2, like argparse does for
usage errors. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from edge_runtime._version import __version__
from edge_runtime.errors import CliUsageError, EdgeRuntimeError

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "models_cmd",
    "infer",
    "bench",
    "run",
    "check",
    "status",
    "record",
    "detect",
    "bridge",
    "update",
    "web",
    "serve",
    "fleet",
    "peers",
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="edge-runtime",
        description="Run quantized ONNX and TFLite models on local camera and sensor input.",
    )
    parser.add_argument("--version", action="version", version=f"edge-runtime {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"edge_runtime.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-runtime`` console script; returns the exit code."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if words[:1] == ["run"]:
        # Before anything slow: a SIGTERM or SIGHUP while starting must not be fatal.
        from edge_runtime.cli.run import catch_early_signals

        catch_early_signals()
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # TensorFlow / LiteRT's C++ log lines only with -v (read when the engine loads).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except EdgeRuntimeError as exc:
        if isinstance(exc, CliUsageError) and "hint" not in vars(exc):
            # The class's hint cannot know the command; this one can.
            exc.hint = f"see 'edge-runtime {args.command} --help'"
        print(f"edge-runtime: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("edge-runtime: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into 'head' and closed early: not an error of ours.
        return EXIT_OK
