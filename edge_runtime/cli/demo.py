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
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from edge_runtime.demo import run_demo
    from edge_runtime.errors import CliUsageError

    if args.frames < 1:
        raise CliUsageError(f"--frames must be at least 1, got {args.frames}")
    run_demo(frames=args.frames, fmt=args.backend, seed=args.seed)
    return 0
