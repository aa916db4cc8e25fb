"""``edge-runtime demo``: see the runtime work with no camera, broker or network."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run shipped models on generated camera frames and a sensor recording",
        description="Run the shipped digit classifier on generated camera frames and the "
        "machine-temperature forecaster on a replayed real sensor recording, and print what "
        "they see. Needs no camera, broker or network.",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=20,
        metavar="N",
        help="camera frames to generate (default: 20)",
    )
    parser.add_argument(
        "--backend",
        choices=("onnx", "tflite"),
        default="onnx",
        help="which format of the shipped models to run (default: onnx)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for the frames")
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="run the built-in config through the 'run' daemon instead (camera clip, mock "
        "PIR, replayed recording; rules and actions) and print its summary",
    )
    parser.add_argument("--duration-s", type=float, default=15.0, metavar="S",
                        help="how long the --daemon demo runs (default: 15)")
    parser.add_argument("--dir", default=None, metavar="DIR",
                        help="folder for the --daemon demo's files (default: a temporary one)")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from edge_runtime.demo import run_demo
    from edge_runtime.errors import CliUsageError

    if args.frames < 1:
        raise CliUsageError(f"--frames must be at least 1, got {args.frames}")
    if args.daemon:
        return _daemon_demo(args)
    run_demo(frames=args.frames, fmt=args.backend, seed=args.seed)
    return 0


def _daemon_demo(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from edge_runtime.cli.status import print_status
    from edge_runtime.pipelines.demo_config import run_daemon_demo

    if args.dir is not None:
        summary = run_daemon_demo(Path(args.dir), duration_s=args.duration_s)
        print_status(summary)
        print(f"events and summaries: {Path(args.dir) / 'state' / 'upstream.jsonl'}")
        return 0
    with tempfile.TemporaryDirectory(prefix="edge-runtime-demo-") as tmp:
        summary = run_daemon_demo(Path(tmp), duration_s=args.duration_s)
        print_status(summary)
        print(f"events written: {summary['events_written']}")
    return 0
