"""``edge-runtime record CONFIG SOURCE OUT``: record one configured source to a file."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``record`` command."""
    parser = subparsers.add_parser(
        "record",
        help="record a source of a config to CSV, NPY or video",
        description="Record source SOURCE of CONFIG into OUT (.csv or .npy for sensors, "
        ".avi for cameras) for --duration-s seconds. The result replays with a replay "
        "source (sensors) or a camera source with path= (video).",
    )
    parser.add_argument("config", metavar="CONFIG", help="TOML config file")
    parser.add_argument("source", metavar="SOURCE", help="id of a [[sources]] entry")
    parser.add_argument("out", metavar="OUT", help="output file (.csv, .npy, .avi)")
    parser.add_argument("--duration-s", type=float, default=10.0, metavar="S",
                        help="how long to record (default 10)")
    parser.add_argument("--rate-hz", type=float, default=None, metavar="HZ",
                        help="poll sensors at this rate (default: the source's max rate)")
    parser.set_defaults(handler=_record)


def _record(args: argparse.Namespace) -> int:
    from edge_runtime.config import load_config
    from edge_runtime.errors import CliUsageError
    from edge_runtime.pipelines.build import make_source
    from edge_runtime.sources.recorder import record_source

    config = load_config(args.config)
    try:
        cfg = config.source(args.source)
    except StopIteration:
        known = ", ".join(s.id for s in config.sources) or "none"
        raise CliUsageError(f"no source {args.source!r} in {args.config} (known: {known})"
                            ) from None
    source = make_source(cfg, config)
    rate_hz = args.rate_hz if args.rate_hz is not None else (
        None if source.kind == "frame" else cfg.max_rate_hz)
    count = record_source(source, args.out, duration_s=args.duration_s, rate_hz=rate_hz)
    print(f"recorded {count} samples of {args.source!r} to {args.out}")
    return 0
