"""Strings a device announces are printed with control characters escaped: a HELLO
carrying terminal escape sequences cannot clear the operator's screen or hide text."""

from __future__ import annotations

import json

import pytest

from edge_runtime.cli import main
from edge_runtime.cli.printable import printable
from firmware_bridge.protocol import ChannelInfo, Hello

from .test_misfit_frames import ScriptedDevice

EVIL_FIRMWARE = "\x1b[2J\x1b]0;pwned\x07fw"
EVIL_NAME = "temp\u202eevil"


class HostileDevice(ScriptedDevice):
    def _hello(self) -> Hello:
        return Hello(EVIL_FIRMWARE, "1.0\r\n", (
            ChannelInfo(0, EVIL_NAME, "\x9bC", 1, 200.0, 100.0),))


def test_bridge_probe_escapes_what_the_device_says(capsys: pytest.CaptureFixture[str]) -> None:
    with HostileDevice() as device:
        assert main(["bridge", "probe", device.path, "--timeout-s", "2"]) == 0
        text = capsys.readouterr().out
        assert main(["bridge", "probe", device.path, "--timeout-s", "2", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\x9b" not in text and "\r" not in text
    assert "\\x1b[2J\\x1b]0;pwned\\x07fw" in text and "temp\\u202eevil" in text
    # JSON keeps the exact string (escaped by the JSON encoding itself).
    assert doc["firmware"] == EVIL_FIRMWARE and doc["channels"][0]["name"] == EVIL_NAME


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text", "plain text"),
    ("tab\there", "tab\\x09here"),
    ("\x00\x7f", "\\x00\\x7f"),
    ("\U000e0001tag", "\\U000e0001tag"),
    ("naïve ünïcode", "naïve ünïcode"),
])
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown
