"""A real RTSP camera for tests: gst-rtsp-server in a child process on 127.0.0.1.

The server itself is ``rtsp_server.py`` beside this file, run by Debian's system Python
because the GStreamer bindings are Debian packages (``tests/system-packages.sh`` installs
them; the list is :data:`APT_PACKAGES`). :class:`RTSPServer` starts it on a free loopback
port, stops it (the camera sees its stream drop, as when a camera reboots), starts it
again on the same port, and can freeze it (SIGSTOP: the connection stays up but goes
silent, as when a camera loses power or the Wi-Fi drops without a TCP reset).

A missing package is an error that names the package, never a skip.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

#: The interpreter that has the GObject bindings (the project's venv does not).
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
#: Debian packages the server needs (gstreamer1.0-plugins-bad, with openh264enc, comes
#: with gir1.2-gst-rtsp-server-1.0 as a dependency).
APT_PACKAGES = ("python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-base",
                "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad")
#: Exit code of ``rtsp_server.py`` when a package is missing.
EXIT_MISSING = 3


class RTSPServerUnavailableError(RuntimeError):
    """The RTSP test server could not start; the message says what to install."""


def _install_hint(package: str) -> str:
    return (f"install it with `apt-get install -y --no-install-recommends {package}` "
            "(tests/system-packages.sh installs everything the tests need: "
            f"{' '.join(APT_PACKAGES)})")


class RTSPServer:
    """An RTSP server on 127.0.0.1 streaming a moving ball, ``width`` x ``height`` pixels.

    ``encoding`` is ``"h264"`` (what most IP cameras send) or ``"jpeg"`` (RTP/JPEG).
    ``gop`` is the H.264 keyframe interval in frames. With ``transport="tcp"`` the server
    refuses RTP over UDP, so a client must interleave RTP in the RTSP TCP connection.
    """

    def __init__(self, *, encoding: str = "h264", width: int = 320, height: int = 240,
                 fps: int = 15, gop: int | None = None, transport: str = "tcp",
                 python_flags: tuple[str, ...] = ()) -> None:
        self.encoding = encoding
        self.width = width
        self.height = height
        self.fps = fps
        self.gop = gop or fps
        self.transport = transport
        #: Extra interpreter flags, for testing the missing-package message (``-S``).
        self.python_flags = python_flags
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("start the RTSP server first: its port is picked on start")
        return f"rtsp://127.0.0.1:{self.port}/stream"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start serving (on the previous port after a :meth:`stop`); wait until it listens."""
        if self.running:
            return
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise RTSPServerUnavailableError(
                f"RTSP test server: no {SYSTEM_PYTHON}; {_install_hint('python3-gi')}")
        if self._log is None:
            # Kept across stop/start so a failure can show the whole log; close() ends it.
            self._log = tempfile.TemporaryFile(  # noqa: SIM115
                "w+", prefix="rtsp-server-", suffix=".log")
        cmd = [SYSTEM_PYTHON, *self.python_flags, str(SERVER_SCRIPT), "--port", str(self.port),
               "--encoding", self.encoding, "--width", str(self.width),
               "--height", str(self.height), "--fps", str(self.fps), "--gop", str(self.gop),
               "--transport", self.transport]
        # A clean environment: the venv's PYTHONPATH/PYTHONHOME must not leak into it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                      stdin=subprocess.DEVNULL, text=True, env=env)
        line = self._first_line(timeout_s)
        if line.startswith("READY "):
            self.port = int(line.split()[1])
            return
        self.stop()
        if line.startswith("MISSING "):
            package, _, what = line.removeprefix("MISSING ").partition(": ")
            raise RTSPServerUnavailableError(
                f"RTSP test server needs the Debian package {package} ({what}); "
                f"{_install_hint(package)}")
        raise RTSPServerUnavailableError(
            f"RTSP test server did not start: {line or 'no output'}; its log:\n{self.log()}")

    def _first_line(self, timeout_s: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if sel.select(remaining):
                    return self._proc.stdout.readline().strip()
        return f"no READY line within {timeout_s:.0f} s"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server process; every client sees its connection close."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a frozen server cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if proc.stdout is not None:
            proc.stdout.close()

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing more arrives."""
        assert self._proc is not None, "start the server first"
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Undo :meth:`freeze`."""
        assert self._proc is not None, "start the server first"
        self._proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        """What the server wrote to stderr so far (GStreamer warnings), for failures."""
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read()
        self._log.seek(0, os.SEEK_END)
        return text

    def close(self) -> None:
        """Stop the server and drop its log."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RTSPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
