"""A CRC-valid sample frame whose shape differs from the HELLO (a firmware update that
changed a channel's width behind an open port) is counted and dropped, a fresh HELLO
is asked for, and the stream carries on with the new layout; it used to kill the
source's sample pump for good while status said connected with 0 errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import tty
from dataclasses import replace

from firmware_bridge.client import BridgeClient
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.protocol import (
    Ack,
    ChannelInfo,
    GetHello,
    Heartbeat,
    Hello,
    Message,
    SampleBatch,
    encode_frame,
)

from .test_pty_e2e import FAST


class ScriptedDevice:
    """A device on a real pty that speaks the protocol from Python: it answers
    GET_HELLO with the current ``hello``, ACKs every command, and streams one sample
    frame of ``width`` values every 10 ms. ``update_firmware(width)`` changes the width
    of the frames at once and of the HELLO only when it is asked again."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.width = 1
        self.hello_width = 1
        self.hellos_asked = 0
        self._stop = threading.Event()
        self._seq = 0
        self._index = 0
        self._threads = [threading.Thread(target=self._rx, name="scripted-rx"),
                         threading.Thread(target=self._tx, name="scripted-tx")]

    def __enter__(self) -> ScriptedDevice:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        os.close(self.slave)
        for t in self._threads:
            t.join(5)
        os.close(self.master)

    def update_firmware(self, width: int) -> None:
        self.width = width

    def _send(self, msg: Message) -> None:
        self._seq = (self._seq + 1) % 65536
        with contextlib.suppress(OSError):  # the host closed the port
            os.write(self.master, encode_frame(msg, self._seq))

    def _hello(self) -> Hello:
        return Hello("scripted", "2.0", (
            ChannelInfo(0, "temp", "C", self.hello_width, 200.0, 100.0),))

    def _rx(self) -> None:
        decoder = FrameDecoder()
        os.set_blocking(self.master, False)
        while not self._stop.wait(0.005):
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                continue
            for frame in decoder.feed(data):
                if isinstance(frame.message, GetHello):
                    self.hellos_asked += 1
                    self.hello_width = self.width  # the new firmware describes itself
                    self._send(self._hello())
                elif not isinstance(frame.message, Heartbeat):
                    self._send(Ack(frame.seq, int(frame.message.TYPE)))

    def _tx(self) -> None:
        t_us = 0
        while not self._stop.wait(0.01):
            t_us += 10_000
            values = tuple(float(self._index + k) for k in range(self.width))
            self._send(SampleBatch(0, self._index, t_us, 10_000, 1, values))
            self._send(Heartbeat(t_us, 0))
            self._index += 1


def test_a_frame_of_another_width_is_dropped_and_a_new_hello_asked_for() -> None:
    timing = replace(FAST, liveness_timeout_s=5.0)

    async def body(device: ScriptedDevice) -> None:
        async with BridgeClient(port=device.path, timing=timing) as client:
            widths: list[int] = []
            async for batch in client.sample_batches(0):
                widths.append(len(batch[-1].values))
                if len(widths) == 5:
                    device.update_firmware(3)
                if widths[-1] == 3 and len(widths) >= 8:
                    break
            assert widths[:5] == [1] * 5 and widths[-1] == 3
            assert client.stats.frames_misfit >= 1
            assert client.hello is not None and client.hello.channels[0].width == 3
            # The misfit frames were never delivered, so no batch has a foreign width.
            assert set(widths) == {1, 3}

    with ScriptedDevice() as device:
        asyncio.run(asyncio.wait_for(body(device), 20))
        assert device.hellos_asked >= 2  # at connect, then after the misfit


def test_the_source_counts_a_layout_its_value_index_does_not_fit_and_recovers() -> None:
    from edge_runtime.sources.bridge import BridgeSource

    with ScriptedDevice() as device:
        device.update_firmware(3)
        device.hello_width = 3
        source = BridgeSource("t", port=device.path, channel="temp", value_index=2,
                              timing=replace(FAST, liveness_timeout_s=5.0))
        with source:
            first = source.read(timeout_s=5.0)
            assert first is not None and first.value is not None
            device.update_firmware(1)  # value_index 2 no longer exists
            deadline = 50
            while source.stats.errors == 0 and deadline:
                source.read(timeout_s=0.1)
                deadline -= 1
            assert source.stats.errors >= 1
            assert "value_index 2 is outside it" in (source.stats.last_error or "")
            assert source.stats.as_dict()["link"]["frames_misfit"] >= 1
            device.update_firmware(3)  # and back: samples flow again
            again = None
            for _ in range(50):
                again = source.read(timeout_s=0.1)
                if again is not None and again.seq > first.seq:
                    break
            assert again is not None and again.value is not None
