"""``edge-runtime update``: install a new model or config safely, and sign artefacts.

The steps (stage, verify sha256 and signature, refuse replays, self-test, swap with the
previous kept, health check, roll back) are in :mod:`edge_runtime.deploy.updates`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: The installed node's config (deploy/install.sh puts it there).
NODE_CONFIG = Path("/etc/edge-runtime/config.toml")


def register(subparsers: Any) -> None:
    """Add the ``update`` command."""
    parser = subparsers.add_parser(
        "update",
        help="install a new model or config (verified, self-tested, rolled back if bad)",
        description="Install a new model (into <state_dir>/models/NAME.EXT) or a new node "
        "config. The file is staged, its sha256 and minisign signature (FILE.minisig, by "
        "the fleet key fleet.pub beside the node config) are checked, an older signed "
        "version is refused, the model is loaded and run once (a config is checked like "
        "'edge-runtime check'), then it replaces the installed one atomically, keeping the "
        "previous as TARGET.previous. A running daemon is reloaded; if it does not come "
        "up with the new version within --health-timeout-s, the previous one is put back. "
        "--keygen and --sign make fleet keys and signatures (minisign-compatible).",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", type=Path, metavar="FILE", help="a new .onnx/.tflite model")
    what.add_argument("--config", type=Path, metavar="FILE", help="a new node config")
    what.add_argument("--keygen", type=Path, metavar="DIR",
                      help="write a new fleet key pair DIR/fleet.key, DIR/fleet.pub")
    what.add_argument("--sign", type=Path, metavar="FILE",
                      help="write FILE.minisig with --key, --name and --version")
    parser.add_argument("--node-config", type=Path, default=NODE_CONFIG,
                        help=f"the node's config file (default {NODE_CONFIG})")
    parser.add_argument("--signature", type=Path, default=None,
                        help="signature file (default FILE.minisig)")
    parser.add_argument("--sha256", default=None, help="expected sha256 of FILE")
    parser.add_argument("--name", default=None,
                        help="artefact name (default: the signature's name=, else the "
                        "file name without suffix)")
    parser.add_argument("--version", dest="artefact_version", default=None,
                        help="with --sign: the version to sign (N or N.N.N)")
    parser.add_argument("--key", type=Path, default=None,
                        help="with --sign: the unencrypted secret key file")
    parser.add_argument("--public-key", type=Path, default=None,
                        help="fleet public key (default: fleet.pub beside the node config)")
    parser.add_argument("--health-timeout-s", type=float, default=None,
                        help="how long the daemon gets to reload with the new version "
                        "(default 60 s)")
    parser.set_defaults(handler=_update)


def _update(args: argparse.Namespace) -> int:
    from edge_runtime.deploy import minisign, updates
    from edge_runtime.errors import CliUsageError
    from edge_runtime.files import write_atomic

    if args.keygen is not None:
        args.keygen.mkdir(parents=True, exist_ok=True)
        secret, public = args.keygen / "fleet.key", args.keygen / "fleet.pub"
        if secret.exists():
            raise CliUsageError(f"{secret} exists", hint="keep it, or remove it first")
        key = minisign.write_key_pair(secret, public)
        print(f"fleet key {key.public.key_id_hex}: secret {secret} (keep it off the nodes), "
              f"public {public} (copy it to /etc/edge-runtime/fleet.pub on each node)")
        return 0
    if args.sign is not None:
        if args.key is None or args.name is None or args.artefact_version is None:
            raise CliUsageError("--sign needs --key, --name and --version")
        updates.version_key(args.artefact_version, "--version")
        key = minisign.parse_secret_key(args.key.read_text(), str(args.key))
        comment = f"name={args.name} version={args.artefact_version}"
        out = args.sign.with_name(args.sign.name + ".minisig")
        write_atomic(out, minisign.sign(args.sign.read_bytes(), key, comment).encode())
        print(f"{out}: signed {comment} with key {key.public.key_id_hex}")
        return 0
    timeout_s = updates.HEALTH_TIMEOUT_S if args.health_timeout_s is None \
        else args.health_timeout_s
    updater = updates.Updater(args.node_config, public_key=args.public_key,
                              health_timeout_s=timeout_s)
    kind, artefact = ("model", args.model) if args.model is not None else ("config", args.config)
    result = updater.update(kind, artefact, signature=args.signature, sha256=args.sha256,
                            name=args.name)
    print(result.message)
    return 0
