"""``edge-runtime peers CONFIG``: the peers of a node, their trust and the books."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``peers`` command."""
    parser = subparsers.add_parser(
        "peers",
        help="list the mesh's peers: state, RTT, models, trust and shared work",
        description="Ask the daemon started with CONFIG for its peers (found by mDNS or "
        "listed in [mesh] peers): state, round-trip time, the models they take, trust "
        "(quarantined peers are never used) and the books of work shared both ways. "
        "Without a running daemon, the trust list and books on disk are shown. "
        "--clear NODE takes a quarantined peer off the list (the daemon picks it up "
        "within seconds).",
    )
    parser.add_argument("config", metavar="CONFIG", help="the node's config file")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.add_argument("--clear", metavar="NODE", default=None,
                        help="clear the quarantine of peer NODE")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="reply timeout (s)")
    parser.set_defaults(handler=_peers)


def _peers(args: argparse.Namespace) -> int:
    from edge_runtime.config import load_config
    from edge_runtime.errors import DaemonError
    from edge_runtime.mesh.service import mesh_folder

    config = load_config(args.config)
    if args.clear is not None:
        return _clear(config, args.clear)
    try:
        from edge_runtime.control import request

        reply = request(config.control_socket, "status", timeout_s=args.timeout_s)
        mesh = reply.get("mesh")
        if mesh is None:
            mesh = {"node": config.node.name, "peers": {}, "models": {}, "running": True,
                    "note": "the daemon runs without the mesh ([mesh] is not in use)"}
        else:
            mesh["running"] = True
    except DaemonError:
        mesh = _offline(config)
        mesh["note"] = (f"no daemon answers at {config.control_socket}: the trust list "
                        f"and books on disk ({mesh_folder(config)})")
    if args.json:
        print(json.dumps(mesh, indent=2, sort_keys=True))
        return 0
    print_peers(mesh)
    return 0


def _clear(config: Any, node: str) -> int:
    from edge_runtime.errors import ConfigError
    from edge_runtime.mesh.service import mesh_folder
    from edge_runtime.mesh.trust import TrustStore

    store = TrustStore(mesh_folder(config)).load()
    if not store.is_quarantined(node):
        listed = ", ".join(store.entries()) or "none"
        raise ConfigError(f"peer {node!r} is not quarantined (quarantined: {listed})",
                          hint="see 'edge-runtime peers CONFIG'")
    store.clear(node)
    print(f"peer {node} cleared; a running daemon uses it again within a few seconds")
    return 0


def _offline(config: Any) -> dict[str, Any]:
    from edge_runtime.mesh.ledger import Ledger
    from edge_runtime.mesh.service import mesh_folder
    from edge_runtime.mesh.trust import TrustStore

    folder = mesh_folder(config)
    store = TrustStore(folder).load()
    trust = store.entries()
    books = Ledger(folder).load().as_dict()
    peers: dict[str, Any] = {}
    for url in config.mesh.peers:
        peers[url] = {"url": url, "origin": "static", "state": "unknown"}
    for peer, entry in trust.items():
        peers.setdefault(peer, {"state": "unknown"})["quarantine"] = entry
    for peer, b in books.items():
        peers.setdefault(peer, {"state": "unknown"})["books"] = b
    for peer, row in peers.items():
        row["trust"] = "quarantined" if peer in trust else "trusted"
    return {"node": config.node.name, "running": False, "peers": peers, "models": {},
            "trust_damaged": store.damaged}


def _mb(n: Any) -> str:
    return f"{n / 1e6:.1f} MB" if isinstance(n, int | float) else "-"


def print_peers(mesh: dict[str, Any]) -> None:
    """The table ``peers`` prints (times in ms and s, sizes in MB)."""
    note = mesh.get("note")
    print(f"node {mesh.get('node')}" + (f" ({note})" if note else ""))
    if mesh.get("trust_damaged"):
        print(f"TRUST LIST DAMAGED: {mesh['trust_damaged']}; no peer is used until it is "
              "mended, or deleted to trust every fleet member again")
    peers = mesh.get("peers") or {}
    if not peers:
        print("no peers yet")
    else:
        print(f"{'PEER':<18} {'STATE':<8} {'TRUST':<12} {'RTT':>9}  {'MODELS':<24} "
              f"{'SENT THERE':<26} {'SERVED FOR IT':<26}")
        for peer, row in sorted(peers.items()):
            b = row.get("books") or {}
            rtt = row.get("rtt_ms")
            sent = (f"{b.get('consumed_requests', 0)} req, "
                    f"{b.get('consumed_compute_s', 0):.2f} s, {_mb(b.get('consumed_bytes', 0))}"
                    if b else "-")
            served = (f"{b.get('served_requests', 0)} req, "
                      f"{b.get('served_compute_s', 0):.2f} s, {_mb(b.get('served_bytes', 0))}"
                      if b else "-")
            print(f"{peer[:18]:<18} {row.get('state', '?'):<8} {row.get('trust', '?'):<12} "
                  f"{'-' if rtt is None else f'{rtt:.2f} ms':>9}  "
                  f"{','.join(row.get('models') or []) or '-':<24} {sent:<26} {served:<26}")
            q = row.get("quarantine")
            if q:
                print(f"  quarantined: {q.get('reason')} (clear: edge-runtime peers CONFIG "
                      f"--clear {peer})")
            if row.get("last_error") and row.get("state") != "up":
                print(f"  last error: {row['last_error']}")
    for name, m in sorted((mesh.get("models") or {}).items()):
        mape = m.get("prediction_mape_percent")
        print(f"model {name}: {m.get('requests', 0)} requests, {m.get('local', 0)} here, "
              f"{m.get('offloaded', 0)} on peers, {m.get('failovers', 0)} failovers, "
              f"{m.get('verified', 0)} spot checks ({m.get('disagreements', 0)} disagreed), "
              f"prediction error {'n/a' if mape is None else f'{mape:.1f} %'}")
