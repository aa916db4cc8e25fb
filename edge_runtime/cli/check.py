"""``edge-runtime check CONFIG``: validate a config without running it."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``check`` command."""
    parser = subparsers.add_parser(
        "check",
        help="validate a config file without running it",
        description="Validate CONFIG: schema, cross references (sources, actions, models), "
        "files it names. Exit code 0 when valid, 2 with the offending key path otherwise.",
    )
    parser.add_argument("config", metavar="CONFIG", help="TOML config file")
    parser.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from edge_runtime.config import load_config

    config = load_config(args.config)
    print(f"{args.config}: ok ({len(config.sources)} source(s), {len(config.pipelines)} "
          f"pipeline(s), {len(config.actions)} action(s))")
    return 0
