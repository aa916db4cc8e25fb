"""Serial transport: a pyserial port driven by the asyncio loop without blocking it.

pyserial opens the tty with ``O_NONBLOCK`` and configures it (raw mode, baud rate);
after that this module only uses the file descriptor: ``loop.add_reader`` calls back
when bytes arrive and writes go straight to the fd, with ``loop.add_writer`` draining
whatever the kernel did not take at once. Opening runs in an executor thread because
a USB CDC device can take a while to answer the open.

Port discovery (:func:`locate_port`) follows a fixed order: an explicit path (a
``/dev/serial/by-id/...`` symlink survives re-enumeration), else the first port whose
USB vendor:product[:serial] matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import serial
from serial.tools import list_ports

from firmware_bridge.errors import (
    BridgeConfigError,
    DeviceDisconnectedError,
    PortNotFoundError,
    PortOpenError,
)

_log = logging.getLogger(__name__)

#: Read size per wake-up; larger than a pty or USB CDC buffer burst.
_READ_SIZE = 65536
#: Unsent bytes allowed before write() reports the device as not keeping up.
MAX_PENDING_WRITE = 64 * 1024


@dataclass(frozen=True, slots=True)
class UsbId:
    """A USB device identity: vendor id, product id and optionally its serial number."""

    vid: int
    pid: int
    serial_number: str | None = None

    @classmethod
    def parse(cls, text: str) -> UsbId:
        """Parse ``"2e8a:000a"`` or ``"2e8a:000a:E6614C311B"`` (hex ids, as lsusb prints)."""
        parts = text.split(":", 2)
        try:
            vid, pid = int(parts[0], 16), int(parts[1], 16)
        except (ValueError, IndexError) as exc:
            raise BridgeConfigError(
                f"USB id {text!r} is not VID:PID[:SERIAL]",
                hint="write it as lsusb prints it, e.g. 2e8a:000a",
            ) from exc
        return cls(vid, pid, parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        base = f"{self.vid:04x}:{self.pid:04x}"
        return f"{base}:{self.serial_number}" if self.serial_number else base


class PortInfo(Protocol):
    """What :func:`locate_port` needs of a ``serial.tools.list_ports`` entry."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None


def _system_comports() -> Sequence[PortInfo]:
    ports: Sequence[PortInfo] = list_ports.comports()
    return ports


def locate_port(
    *,
    port: str | None,
    usb_id: UsbId | None,
    comports: Callable[[], Sequence[PortInfo]] = _system_comports,
) -> str:
    """Return the tty path to open now; raises PortNotFoundError if there is none.

    Blocking (it may scan sysfs): call it from an executor thread.
    """
    if port is not None:
        if not os.path.exists(port):
            raise PortNotFoundError(f"serial port {port} does not exist")
        return port
    if usb_id is None:
        raise BridgeConfigError("exactly one of port or usb_id must be set")
    for info in comports():
        if (
            info.vid == usb_id.vid
            and info.pid == usb_id.pid
            and usb_id.serial_number in (None, info.serial_number)
        ):
            return info.device
    raise PortNotFoundError(f"no serial port with USB id {usb_id}")


class SerialTransport:
    """An open tty whose reads and writes are driven by the running asyncio loop.

    ``on_data(bytes)`` is called on the loop for every read; ``lost`` is set (with
    :attr:`lost_reason`) when the device goes away. Use :meth:`open` to make one.
    """

    def __init__(self, serial_port: Any, on_data: Callable[[bytes], None]) -> None:
        self._serial = serial_port
        self._fd: int = serial_port.fileno()
        self._on_data = on_data
        self._loop = asyncio.get_running_loop()
        self._pending = bytearray()
        self._writer_armed = False
        self.path: str = serial_port.port
        self.lost = asyncio.Event()
        self.lost_reason: BaseException | None = None
        self._loop.add_reader(self._fd, self._read_ready)

    @classmethod
    async def open(
        cls, path: str, on_data: Callable[[bytes], None], *, baudrate: int = 115200
    ) -> SerialTransport:
        """Open and configure ``path`` in an executor thread, then attach to the loop."""
        loop = asyncio.get_running_loop()
        port = await loop.run_in_executor(None, _open_serial, path, baudrate)
        try:
            return cls(port, on_data)
        except BaseException:
            port.close()
            raise

    @property
    def is_open(self) -> bool:
        """False once closed or lost."""
        return not self.lost.is_set()

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: the pty master closed or the USB device was unplugged.
            self._mark_lost(exc)
            return
        if not data:
            self._mark_lost(None)
            return
        self._on_data(data)

    def _mark_lost(self, exc: BaseException | None) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = exc
        self._detach()
        self.lost.set()

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the device without blocking; raises if the link is gone."""
        if self.lost.is_set():
            raise DeviceDisconnectedError(f"serial port {self.path} is closed")
        if self._pending:
            self._queue(data)
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._mark_lost(exc)
            raise DeviceDisconnectedError(f"writing to {self.path} failed: {exc}") from exc
        if sent < len(data):
            self._queue(data[sent:])

    def _queue(self, data: bytes) -> None:
        if len(self._pending) + len(data) > MAX_PENDING_WRITE:
            raise DeviceDisconnectedError(
                f"device on {self.path} does not read its input",
                hint="the firmware may be stalled; reset the device",
            )
        self._pending += data
        if not self._writer_armed:
            self._loop.add_writer(self._fd, self._write_ready)
            self._writer_armed = True

    def _write_ready(self) -> None:
        try:
            sent = os.write(self._fd, self._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._mark_lost(exc)
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)
            self._writer_armed = False

    def _detach(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        if self._writer_armed:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._fd)
            self._writer_armed = False

    def close(self) -> None:
        """Detach from the loop and close the port (idempotent)."""
        if not self.lost.is_set():
            self._detach()
            self.lost_reason = None
            self.lost.set()
        with contextlib.suppress(Exception):
            self._serial.close()


def _open_serial(path: str, baudrate: int) -> Any:
    try:
        return serial.Serial(port=path, baudrate=baudrate, timeout=0, write_timeout=0)
    except serial.SerialException as exc:
        if getattr(exc, "errno", None) == errno.ENOENT or not os.path.exists(path):
            raise PortNotFoundError(f"serial port {path} does not exist") from exc
        raise PortOpenError(f"cannot open serial port {path}: {exc}") from exc
    except OSError as exc:  # termios errors on odd devices
        raise PortOpenError(f"cannot configure serial port {path}: {exc}") from exc
    except ValueError as exc:  # pyserial refuses a setting (baudrate=-5): not worth a retry
        raise BridgeConfigError(
            f"cannot open serial port {path}: {exc}", hint="fix the baudrate"
        ) from exc


__all__ = ["MAX_PENDING_WRITE", "PortInfo", "SerialTransport", "UsbId", "locate_port"]
