"""``edge-runtime run CONFIG``: the daemon (until SIGTERM/SIGINT; SIGHUP reloads)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="run the pipelines of a config file until stopped",
        description="Run the sources, pipelines, rules and actions of CONFIG until SIGTERM or "
        "SIGINT (clean stop within node.shutdown_timeout_s). SIGHUP reloads CONFIG; a config "
        "that does not validate is refused and the running one stays. A summary is written "
        "to <state_dir>/summary.json at exit. It prints one line when it is up and one per "
        "source that drops out or comes back; -v shows everything it does.",
    )
    parser.add_argument("config", metavar="CONFIG", help="TOML config file (see docs/config.md)")
    parser.add_argument("--duration-s", type=float, default=None, metavar="S",
                        help="stop by itself after S seconds (default: run until signalled)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import logging
    import os

    from edge_runtime.pipelines.daemon import NOTICE_LOGGER, run_daemon

    if not args.verbose:
        # Quiet by default, but not silent: one line when the daemon is up and one per
        # source that drops out or comes back (warnings and errors always show).
        logging.getLogger(NOTICE_LOGGER).setLevel(logging.INFO)
        # OpenCV and its FFmpeg write to stderr themselves, a few lines per reconnect
        # attempt of a camera that is gone; the notice above says it once. -v (or the
        # variables set by hand) brings them back.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    return run_daemon(args.config, duration_s=args.duration_s)
