"""``edge-runtime bridge probe PORT``: ask a microcontroller for its HELLO and print it."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``bridge`` command and its ``probe`` sub-command."""
    parser = subparsers.add_parser(
        "bridge",
        help="talk to sensors on a microcontroller (USB serial / UART)",
        description="Commands for microcontrollers running the edge bridge firmware "
        "(firmware_bridge/PROTOCOL.md).",
    )
    sub = parser.add_subparsers(dest="bridge_command", metavar="SUBCOMMAND", required=True)
    probe = sub.add_parser(
        "probe",
        help="print the device's HELLO: firmware, channels, units and rates",
        description="Open PORT, ask for HELLO and print it. PORT is a tty path "
        "(/dev/ttyACM0, /dev/serial/by-id/...) or usb:VID:PID[:SERIAL].",
    )
    probe.add_argument("port", metavar="PORT", help="tty path or usb:VID:PID[:SERIAL]")
    probe.add_argument(
        "--timeout-s",
        type=float,
        default=3.0,
        metavar="S",
        help="give up when no HELLO came within S seconds (default: 3)",
    )
    probe.add_argument("--baudrate", type=int, default=115200, help="default: 115200")
    probe.add_argument("--json", action="store_true", help="print the HELLO as JSON")
    probe.set_defaults(handler=_probe)


def _probe(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses

    import msgspec

    from edge_runtime.cli.printable import printable
    from edge_runtime.errors import CliUsageError
    from edge_runtime.sources.bridge import translate_error
    from firmware_bridge.client import BridgeClient
    from firmware_bridge.errors import BridgeError
    from firmware_bridge.protocol import PROTOCOL_VERSION, Hello
    from firmware_bridge.timing import DEFAULT_TIMING

    if not args.timeout_s > 0:
        raise CliUsageError(f"--timeout-s must be positive, got {args.timeout_s}")
    usb = args.port.startswith("usb:")
    port, usb_id = (None, args.port[4:]) if usb else (args.port, None)
    timing = dataclasses.replace(
        DEFAULT_TIMING,
        connect_timeout_s=args.timeout_s,
        hello_timeout_s=min(DEFAULT_TIMING.hello_timeout_s, args.timeout_s),
    )

    async def probe() -> tuple[Hello, str]:
        client = BridgeClient(
            port=port, usb_id=usb_id, baudrate=args.baudrate, timing=timing, reconnect=False
        )
        async with client as dev:
            return dev.hello, dev.port_path or args.port

    try:
        hello, path = asyncio.run(probe())
    except BridgeError as exc:
        raise translate_error(exc) from exc

    if args.json:
        doc = {"port": path, "protocol_version": PROTOCOL_VERSION, **msgspec.to_builtins(hello)}
        print(json.dumps(doc, indent=2))
        return 0
    # Every string here came from the device: escaped, so it cannot drive the terminal.
    print(f"port      {printable(path)}")
    print(f"firmware  {printable(hello.firmware)} {printable(hello.firmware_version)}")
    print(f"protocol  {PROTOCOL_VERSION}")
    print("channels:")
    names = [printable(c.name) for c in hello.channels]
    width = max((len(n) for n in names), default=4)
    for c, name in zip(hello.channels, names, strict=True):
        values = "" if c.width == 1 else f" x{c.width}"
        print(
            f"  {c.channel:3d}  {name:<{width}}  {printable(c.unit)}{values}  "
            f"rate {c.rate_hz:g} Hz (max {c.max_rate_hz:g} Hz)"
        )
    return 0
