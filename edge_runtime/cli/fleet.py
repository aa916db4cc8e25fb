"""``edge-runtime fleet``: the fleet CA for the mesh's mutual TLS (docs/mesh.md).

``init`` (operator: a CA and an empty CRL), ``csr`` (on the node: its key, 0600, and a
signing request), ``enroll NODE --csr FILE`` (operator: the node's certificate),
``revoke NODE`` and ``crl`` (operator: re-sign the CRL the nodes load).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``fleet`` command."""
    parser = subparsers.add_parser(
        "fleet", help="the fleet CA: mutual TLS between peers",
        description="Certificates for the mesh. On the operator's machine: 'init' once, "
        "'enroll' per node, 'revoke' to shut one out. On each node: 'csr' (its key never "
        "leaves it). See docs/mesh.md.")
    sub = parser.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)

    def fleet_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--fleet", type=Path, default=Path("fleet"), metavar="DIR",
                       help="the fleet folder (default ./fleet)")

    init = sub.add_parser("init", help="create the fleet CA and an empty CRL")
    fleet_dir(init)
    init.add_argument("--name", default="edge-runtime fleet", help="the CA's common name")
    init.add_argument("--key-type", choices=("ed25519", "p256"), default="ed25519",
                      help="the CA key (default ed25519; p256 for older TLS stacks)")
    init.set_defaults(handler=_init)

    csr = sub.add_parser("csr", help="on the node: make its key (0600) and a CSR")
    csr.add_argument("node", metavar="NODE", help="this node's name")
    csr.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                     help="where NODE.key and NODE.csr go (default .)")
    csr.add_argument("--host", action="append", dest="hosts", metavar="NAME_OR_IP",
                     help="a name or address peers dial (repeatable; default NODE and "
                          "NODE.local)")
    csr.add_argument("--key-type", choices=("ed25519", "p256"), default="ed25519")
    csr.set_defaults(handler=_csr)

    enroll = sub.add_parser("enroll", help="issue NODE's certificate from its CSR")
    enroll.add_argument("node", metavar="NODE")
    enroll.add_argument("--csr", type=Path, required=True, metavar="FILE")
    enroll.add_argument("--days", type=int, default=397, help="validity (default 397)")
    fleet_dir(enroll)
    enroll.set_defaults(handler=_enroll)

    revoke = sub.add_parser("revoke", help="revoke NODE's certificates; re-sign the CRL")
    revoke.add_argument("node", metavar="NODE")
    fleet_dir(revoke)
    revoke.set_defaults(handler=_revoke)

    crl = sub.add_parser("crl", help="re-sign the CRL (it is valid for a year)")
    fleet_dir(crl)
    crl.set_defaults(handler=_crl)


def _init(args: argparse.Namespace) -> int:
    from edge_runtime.mesh.fleet import init_fleet

    fleet = init_fleet(args.fleet, name=args.name, key_type=args.key_type)
    print(f"fleet CA in {fleet.folder}: copy {fleet.ca_cert_path.name} and "
          f"{fleet.crl_path.name} to every node; {fleet.ca_key_path.name} stays here")
    return 0


def _csr(args: argparse.Namespace) -> int:
    from edge_runtime.mesh.fleet import make_csr

    key, request = args.out / f"{args.node}.key", args.out / f"{args.node}.csr"
    make_csr(key, request, args.node, hosts=args.hosts, key_type=args.key_type)
    print(f"key {key} (0600, stays on this node); send {request} to the operator for "
          f"'edge-runtime fleet enroll {args.node} --csr {request.name}'")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from edge_runtime.errors import CliUsageError
    from edge_runtime.mesh.fleet import Fleet, enroll

    if not 1 <= args.days <= 3650:
        raise CliUsageError(f"--days must be 1 to 3650, got {args.days}",
                            hint="see 'edge-runtime fleet enroll --help'")
    path = enroll(Fleet(args.fleet), args.node, args.csr, valid_days=args.days)
    print(f"certificate {path}: copy it to {args.node} with ca.pem and crl.pem")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from edge_runtime.mesh.fleet import Fleet, revoke

    fleet = Fleet(args.fleet)
    count = revoke(fleet, args.node)
    print(f"{args.node} revoked; {fleet.crl_path} lists {count} certificate(s): copy it to "
          "every node (they load it at start)")
    return 0


def _crl(args: argparse.Namespace) -> int:
    from edge_runtime.mesh.fleet import Fleet, write_crl

    fleet = Fleet(args.fleet)
    count = write_crl(fleet)
    print(f"{fleet.crl_path} re-signed ({count} revoked): copy it to every node")
    return 0
