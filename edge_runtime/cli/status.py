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
        "with --socket. Without either, the installed node's config "
        "(/etc/edge-runtime/config.toml), ./config.toml, /var/lib/edge-runtime/control.sock "
        "and ./state/control.sock are tried in this order.",
    )
    parser.add_argument("config", metavar="CONFIG", nargs="?", help="the daemon's config file")
    parser.add_argument("--socket", type=Path, default=None, help="control socket path")
    parser.add_argument("--json", action="store_true", help="print the full reply as JSON")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="reply timeout (s)")
    parser.add_argument("--watch", action="store_true",
                        help="refresh every --interval-s until Ctrl-C (in place on a terminal)")
    parser.add_argument("--interval-s", type=float, default=1.0,
                        help="seconds between refreshes with --watch (default 1)")
    parser.set_defaults(handler=_status)


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


#: Where ``status`` without CONFIG or --socket looks, in this order: the configs first
#: (their node.control_socket), then the sockets. deploy/ installs the config in /etc and
#: the systemd unit's state folder is /var/lib/edge-runtime; a config in the current
#: folder with the default state_dir listens on state/control.sock.
DEFAULT_CONFIGS = (Path("/etc/edge-runtime/config.toml"), Path("config.toml"))
DEFAULT_SOCKETS = (Path("/var/lib/edge-runtime/control.sock"), Path("state/control.sock"))


def find_daemon(timeout_s: float) -> dict[str, Any]:
    """The status reply of the first daemon that answers at a default location.

    Raises :class:`DaemonError` naming every path tried when none answers.
    """
    from edge_runtime.config import load_config
    from edge_runtime.control import request
    from edge_runtime.errors import DaemonError, EdgeRuntimeError

    candidates: list[tuple[Path, str]] = []
    tried: list[str] = []
    for cfg in DEFAULT_CONFIGS:
        if not cfg.is_file():
            tried.append(f"{cfg.absolute()} (no such config)")
            continue
        try:
            sock = load_config(cfg).control_socket
        except EdgeRuntimeError:
            tried.append(f"{cfg.absolute()} (does not validate)")
            continue
        candidates.append((sock, f"{sock} (from {cfg.absolute()})"))
    candidates += [(sock.absolute(), str(sock.absolute())) for sock in DEFAULT_SOCKETS]
    seen: set[Path] = set()
    for sock, label in candidates:
        if sock in seen:
            continue
        seen.add(sock)
        if not sock.exists():
            tried.append(f"{label} (no socket)")
            continue
        try:
            return request(sock, "status", timeout_s=timeout_s)
        except DaemonError:
            tried.append(f"{label} (not answering)")
    raise DaemonError(f"no running daemon found; tried {', '.join(tried)}",
                      hint="give its config, 'edge-runtime status CONFIG', or its socket, "
                           "'edge-runtime status --socket PATH'")


def _status(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch(args)
    return _status_once(args)


#: Home the cursor and clear the screen (only written to a terminal).
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def _watch(args: argparse.Namespace) -> int:
    """Print the status every ``--interval-s`` until Ctrl-C (exit 0). On a terminal each
    refresh replaces the last; otherwise refreshes follow one another. A daemon that
    stops answering (a restart) is one line per refresh until it is back."""
    import sys
    import time

    from edge_runtime.errors import EdgeRuntimeError

    tty = sys.stdout.isatty()
    interval_s = max(0.1, args.interval_s)
    try:
        while True:
            started = time.monotonic()
            if tty:
                sys.stdout.write(CLEAR_SCREEN)
            try:
                _status_once(args)
            except EdgeRuntimeError as exc:
                print(f"edge-runtime status: {exc} (retrying every {interval_s:g} s)")
            print(f"-- {time.strftime('%H:%M:%S')}, every {interval_s:g} s; Ctrl-C ends"
                  + ("" if tty else "\n"), flush=True)
            time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0


def _status_once(args: argparse.Namespace) -> int:
    from edge_runtime.control import request

    if args.socket is not None:
        reply = request(args.socket, "status", timeout_s=args.timeout_s)
    elif args.config is not None:
        from edge_runtime.config import load_config

        reply = request(load_config(args.config).control_socket, "status",
                        timeout_s=args.timeout_s)
    else:
        reply = find_daemon(args.timeout_s)
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return 0
    print_status(reply)
    return 0


_STATE_WORDS = {"up": "source up", "disconnected": "source DISCONNECTED",
                "silent": "source SILENT", "ended": "source ended"}


def _liveness(p: dict[str, Any]) -> str:
    """``, source up, last sample 0.05 s ago`` (empty for replies that predate it)."""
    state = p.get("source_state")
    if state is None:
        return ""
    age = p.get("last_sample_age_s")
    last = "no sample yet" if age is None else f"last sample {_fmt(age, ' s', 2)} ago"
    return f", {_STATE_WORDS.get(state, state)}, {last}"


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
        print(f"  pipeline {name} <- {p['source']} ({p['model'] or 'no model'}){_liveness(p)}: "
              f"rate {_fmt(s['rate_hz'], ' Hz', 2)} [{s['min_rate_hz']}-{s['max_rate_hz']}], "
              f"{p['samples']} samples, {p['inferences']} inferences, {p['gated']} gated, "
              f"{src['dropped']} dropped, {src['reconnects']} reconnects, "
              f"latency p50/p99 {_fmt(lat['p50'], '', 2)}/{_fmt(lat['p99'], ' ms', 2)}, "
              f"{p['errors']} errors")
        if p.get("stale"):
            error = src.get("last_error") or p.get("last_error")
            print(f"    STALE: its source has stopped delivering (stale after "
                  f"{_fmt(p.get('stale_after_s'), ' s')} without a sample); its rules hold "
                  f"what they last saw; source errors {src.get('errors', 'n/a')}"
                  + (f", last: {error}" if error else ""))
        if src.get("shared"):
            print(f"    shares its source: {src.get('delivered', 0)} taken, "
                  f"{src.get('skipped', 0)} skipped at its own rate")
        if p.get("health") is not None:
            print(f"    device health {_fmt(p['health'], '/100', 0)}")
        active = [r for r, st in p["rules"].items() if st["active"]]
        if active:
            print(f"    active rules{' (stale)' if p.get('stale') else ''}: {', '.join(active)}")
    _print_upstream(reply.get("upstream"))
    for sid, shared in reply.get("sources", {}).items():
        print(f"  source {sid} (shared by {', '.join(shared['pipelines'])}): read at "
              f"{_fmt(shared['read_rate_hz'], ' Hz', 2)}, {shared['read']} samples read, "
              f"{shared.get('dropped', 0)} dropped, {shared.get('reconnects', 0)} reconnects"
              f"{_liveness(shared)}")


def _print_upstream(up: dict[str, Any] | None) -> None:
    """One line for the outbox, one per sink (state, backlog, last error)."""
    if not up:
        return
    box = up.get("outbox", {})
    lost = sum((up.get("lost") or {}).values())
    print(f"  upstream{'' if up.get('running', True) else ' (stopped)'}: outbox "
          f"{box.get('rows', 0)} messages, {_fmt(box.get('stored_bytes', 0) / 1e6, ' MB', 2)}"
          f" of {_fmt(box.get('max_bytes', 0) / 1e6, ' MB', 0)}, {lost} lost, written "
          f"{_fmt(up.get('written_bytes_per_day', 0) / 1e6, ' MB/day', 1)}; "
          f"this run stored {up.get('events_published', 0)} events and "
          f"{up.get('summaries_published', 0)} summaries")
    for name, sink in up.get("sinks", {}).items():
        where = sink.get("url") or sink.get("path") or ""
        error = sink.get("last_error")
        print(f"    sink {name}{f' ({where})' if where else ''}: {sink.get('state')}, "
              f"backlog {sink.get('backlog', 0)}, in flight {sink.get('in_flight', 0)}, "
              f"delivered {sink.get('delivered', 0)}"
              + (f", last error: {error}" if error else ""))
