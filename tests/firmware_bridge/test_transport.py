"""Port discovery and constructor checks (no device needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_bridge import BridgeClient, UsbId
from firmware_bridge.errors import BridgeConfigError, PortNotFoundError
from firmware_bridge.transport import locate_port


@dataclass
class FakePort:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None


PORTS = [
    FakePort("/dev/ttyAMA0", None, None, None),
    FakePort("/dev/ttyACM0", 0x2341, 0x0043, "A1"),
    FakePort("/dev/ttyACM1", 0x2E8A, 0x000A, "E661"),
    FakePort("/dev/ttyACM2", 0x2E8A, 0x000A, "F00D"),
]


def test_usb_id_parse_and_str() -> None:
    assert UsbId.parse("2e8a:000a") == UsbId(0x2E8A, 0x000A)
    assert str(UsbId.parse("2E8A:000A:F00D")) == "2e8a:000a:F00D"
    with pytest.raises(BridgeConfigError, match="VID:PID"):
        UsbId.parse("arduino")


def test_locate_by_usb_id_and_serial() -> None:
    assert locate_port(port=None, usb_id=UsbId(0x2E8A, 0x000A), comports=lambda: PORTS) == (
        "/dev/ttyACM1"
    )
    by_serial = UsbId(0x2E8A, 0x000A, "F00D")
    assert locate_port(port=None, usb_id=by_serial, comports=lambda: PORTS) == "/dev/ttyACM2"
    with pytest.raises(PortNotFoundError, match="1234:5678"):
        locate_port(port=None, usb_id=UsbId(0x1234, 0x5678), comports=lambda: PORTS)


def test_locate_by_path(tmp_path: Path) -> None:
    tty = tmp_path / "ttyX"
    tty.touch()
    assert locate_port(port=str(tty), usb_id=None) == str(tty)
    with pytest.raises(PortNotFoundError, match="does not exist"):
        locate_port(port=str(tmp_path / "gone"), usb_id=None)


def test_client_needs_exactly_one_target() -> None:
    with pytest.raises(BridgeConfigError, match="exactly one"):
        BridgeClient()
    with pytest.raises(BridgeConfigError, match="exactly one"):
        BridgeClient(port="/dev/ttyACM0", usb_id="2e8a:000a")
