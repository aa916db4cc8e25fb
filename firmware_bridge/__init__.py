"""firmware_bridge: talk to sensors on a microcontroller over USB serial or UART.

A standalone library (it does not import edge_runtime). The wire protocol is
described in PROTOCOL.md beside this file; the reference C firmware is in firmware/.

    from firmware_bridge import BridgeClient

    async with BridgeClient(port="/dev/serial/by-id/usb-...") as dev:
        await dev.set_rate("accel", 100.0)
        async for sample in dev.samples("accel"):
            ...

Importing this package opens nothing and starts nothing.
"""

from firmware_bridge.client import BridgeClient, BridgeStats, ChannelStats, Sample
from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import PROTOCOL_VERSION, ChannelInfo, Hello
from firmware_bridge.timing import DEFAULT_TIMING, Timing
from firmware_bridge.transport import UsbId

__all__ = [
    "DEFAULT_TIMING",
    "PROTOCOL_VERSION",
    "BridgeClient",
    "BridgeError",
    "BridgeStats",
    "ChannelInfo",
    "ChannelStats",
    "Hello",
    "Sample",
    "Timing",
    "UsbId",
]
