"""``edge-runtime run CONFIG``: the daemon (until SIGTERM/SIGINT; SIGHUP reloads)."""

from __future__ import annotations

import argparse
import signal
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


class _EarlySignals:
    """Catches SIGTERM, SIGINT and SIGHUP from the command's first moments until the
    daemon's loop takes them over: importing the engines and building the pipelines
    takes a while, and a SIGHUP's default action would kill the process (a SIGTERM's
    would skip the clean stop)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.pending: list[int] = []
        self._previous = {sig: signal.signal(sig, self._catch) for sig in self.SIGNALS}

    def _catch(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def take(self) -> list[int]:
        """The signals caught so far (the daemon's loop handles the next ones)."""
        pending, self.pending = self.pending, []
        return pending

    def restore(self) -> None:
        """Put back the handlers there were before (the daemon has ended)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


_early: _EarlySignals | None = None


def catch_early_signals() -> None:
    """Start catching the stop and reload signals now (the CLI's ``main`` calls this
    first thing when the command is ``run``, before parsing and imports)."""
    global _early  # noqa: PLW0603 - one catcher per process, handed to the daemon
    if _early is None:
        _early = _EarlySignals()


def _run(args: argparse.Namespace) -> int:
    global _early
    catch_early_signals()
    early, _early = _early, None
    assert early is not None
    try:
        return _start_daemon(args, early)
    finally:
        early.restore()


def _start_daemon(args: argparse.Namespace, early: _EarlySignals) -> int:
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
    return run_daemon(args.config, duration_s=args.duration_s, early_signals=early.take)
