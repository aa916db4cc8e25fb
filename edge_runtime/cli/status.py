"""``edge-runtime status [CONFIG]``: ask the running daemon how it is doing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``status`` command."""
    parser = subparsers.add_parser(
        "status",
        help="show health, rates, drops and latency of the running daemon",
        description="Query the daemon started with CONFIG over its control socket "
        "(node.control_socket, default <state_dir>/control.sock), or the socket given "
        "with --socket.",
    )
    parser.add_argument("config", metavar="CONFIG", nargs="?", help="the daemon's config file")
    parser.add_argument("--socket", type=Path, default=None, help="control socket path")
    parser.add_argument("--json", action="store_true", help="print the full reply as JSON")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="reply timeout (s)")
    parser.set_defaults(handler=_status)


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _status(args: argparse.Namespace) -> int:
    from edge_runtime.control import request
    from edge_runtime.errors import CliUsageError

    if args.socket is not None:
        path = args.socket
    elif args.config is not None:
        from edge_runtime.config import load_config

        path = load_config(args.config).control_socket
    else:
        raise CliUsageError("give the daemon's CONFIG or --socket PATH")
    reply = request(path, "status", timeout_s=args.timeout_s)
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return 0
    print_status(reply)
    return 0


def print_status(reply: dict[str, Any]) -> None:
    """Print a daemon status reply (or a summary.json) for people."""
    h = reply.get("health", {})
    print(f"node {reply['node']} (pid {reply['pid']}), up {_fmt(reply['uptime_s'], ' s')}, "
          f"config generation {reply['generation']}, reloads {reply['reloads']} "
          f"(refused {reply['reload_errors']})")
    print(f"  cpu {_fmt(h.get('cpu_percent'), '%')}, load {_fmt(h.get('load_1m'), '', 2)}, "
          f"memory {_fmt(h.get('memory_percent'), '%')}, disk {_fmt(h.get('disk_percent'), '%')}, "
          f"temperature {_fmt(h.get('temperature_c'), ' C')}, throttled "
          f"{_fmt(h.get('throttled'))}, rss {_fmt(h.get('rss_mb'), ' MB')}")
    alarms = [r for r, st in reply.get("health_rules", {}).items() if st["active"]]
    if alarms:
        print(f"  health alarms: {', '.join(alarms)}")
    for name, p in reply.get("pipelines", {}).items():
        s = p["sampling"]
        lat = p["latency_ms"]
        src = p["source_stats"]
        print(f"  pipeline {name} <- {p['source']} ({p['model'] or 'no model'}): "
              f"rate {_fmt(s['rate_hz'], ' Hz', 2)} [{s['min_rate_hz']}-{s['max_rate_hz']}], "
              f"{p['samples']} samples, {p['inferences']} inferences, {p['gated']} gated, "
              f"{src['dropped']} dropped, {src['reconnects']} reconnects, "
              f"latency p50/p99 {_fmt(lat['p50'], '', 2)}/{_fmt(lat['p99'], ' ms', 2)}, "
              f"{p['errors']} errors")
        if src.get("shared"):
            print(f"    shares its source: {src.get('delivered', 0)} taken, "
                  f"{src.get('skipped', 0)} skipped at its own rate")
        if p.get("health") is not None:
            print(f"    device health {_fmt(p['health'], '/100', 0)}")
        active = [r for r, st in p["rules"].items() if st["active"]]
        if active:
            print(f"    active rules: {', '.join(active)}")
    for sid, shared in reply.get("sources", {}).items():
        print(f"  source {sid} (shared by {', '.join(shared['pipelines'])}): read at "
              f"{_fmt(shared['read_rate_hz'], ' Hz', 2)}, {shared['read']} samples read, "
              f"{shared.get('dropped', 0)} dropped, {shared.get('reconnects', 0)} reconnects")
