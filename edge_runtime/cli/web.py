"""``edge-runtime web token [CONFIG]``: print (creating it if needed) the web page's token."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``web`` command."""
    parser = subparsers.add_parser(
        "web", help="the node's web page: print its access token",
        description="The [web] page needs a token when it listens on a non-loopback "
        "address. 'token' prints it and the link that logs a browser in; the token is kept "
        "in <state_dir>/<web.token_file> (mode 0600) and created on first use.")
    sub = parser.add_subparsers(dest="web_command", metavar="COMMAND", required=True)
    token = sub.add_parser("token", help="print the token (create it if there is none)")
    token.add_argument("config", metavar="CONFIG", nargs="?", default="config.toml",
                       help="the daemon's config file (default ./config.toml)")
    token.add_argument("--new", action="store_true",
                       help="replace the token (every browser and scraper must log in again; "
                            "restart the daemon to use it)")
    token.set_defaults(handler=_token)


def _token(args: argparse.Namespace) -> int:
    from edge_runtime.config import load_config
    from edge_runtime.web import web_paths
    from edge_runtime.web.auth import (
        create_token,
        is_loopback,
        load_or_create_token,
        parse_listen,
    )

    config = load_config(args.config)
    path = web_paths(config)["token_path"]
    assert path is not None
    if args.new:
        token, created = create_token(path), True
    else:
        token, created = load_or_create_token(path)
    print(token)
    host, port = parse_listen(config.web.listen)
    scheme = "https" if config.web.tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    where = "a name or address of this node" if host in ("0.0.0.0", "::") else shown
    note = "" if config.web.enabled else " ([web] enabled = false: the page is off)"
    print(f"# {'new token written to' if created else 'token in'} {path}{note}")
    if is_loopback(host):
        print(f"# {scheme}://{shown}:{port}/ listens on loopback and needs no token")
    else:
        print(f"# open {scheme}://{where}:{port}/?token={token} (sets a session cookie), "
              f"or send 'Authorization: Bearer <token>'")
    return 0
