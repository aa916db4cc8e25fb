"""systemd's notification protocol (``sd_notify``), by hand: one datagram per message.

The unit (``deploy/systemd/edge-runtime.service``) is ``Type=notify`` with a
``WatchdogSec=``; systemd then passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and ``WATCHDOG_USEC`` (with ``WATCHDOG_PID``). The daemon sends:

- ``READY=1`` with a ``STATUS=`` line once its pipelines are built and the control
  socket listens (a ``systemctl start`` returns then, not before);
- ``WATCHDOG=1`` every half of ``WATCHDOG_USEC``, from a task on the event loop, so a
  blocked loop stops the pings by itself; pings also stop while a pipeline is wedged
  (its worker has been inside one read or inference for longer than the watchdog
  interval: a camera driver or a model that never returns), with a ``STATUS=`` saying
  which. systemd then kills the process and ``Restart=on-failure`` starts it again;
- ``STOPPING=1`` when a stop begins.

Without ``NOTIFY_SOCKET`` (a shell, the tests) nothing is sent. Sending never blocks
and never raises: a datagram systemd cannot take is dropped (the next one comes soon).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: Pings per watchdog interval (systemd recommends pinging at half the interval).
PINGS_PER_INTERVAL = 2


class Notifier:
    """The service manager's notification socket, or nothing when there is none.

    ``address``: ``NOTIFY_SOCKET`` (``@`` starts an abstract-namespace name);
    ``watchdog_usec``/``watchdog_pid``: ``WATCHDOG_USEC``/``WATCHDOG_PID`` (a watchdog
    meant for another process is ignored). Use :meth:`from_env` in the daemon.
    """

    def __init__(self, address: str | None, *, watchdog_usec: str | None = None,
                 watchdog_pid: str | None = None) -> None:
        self.address: str | bytes | None = None
        if address:
            # Abstract namespace: a leading NUL byte instead of the '@'.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        #: The watchdog interval in seconds; None when systemd runs no watchdog for us.
        self.watchdog_s: float | None = None
        if watchdog_usec and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            with contextlib.suppress(ValueError):
                usec = int(watchdog_usec)
                if usec > 0:
                    self.watchdog_s = usec / 1e6
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through the environment."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=env.get("WATCHDOG_USEC"),
                   watchdog_pid=env.get("WATCHDOG_PID"))

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if sent.

        Non-blocking; a failure is logged once and otherwise ignored.
        """
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as exc:  # BlockingIOError (queue full) included: drop this one
            if not self._failed:
                log.warning("cannot notify the service manager at %r: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later :meth:`send` opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def run_watchdog(notifier: Notifier, stopping: asyncio.Event,
                       wedged: Callable[[float], str | None]) -> None:
    """Ping the watchdog until ``stopping`` is set, then send ``STOPPING=1``.

    Runs on the loop (a blocked loop stops the pings). ``wedged(limit_s)`` returns why the
    node is stuck (a pipeline busy in one step for more than ``limit_s``) or None; while
    it says something, no ping is sent and ``STATUS=`` says why.
    """
    try:
        if notifier.watchdog_s is None:
            await stopping.wait()
            return
        period_s = notifier.watchdog_s / PINGS_PER_INTERVAL
        was_wedged: str | None = None
        while not stopping.is_set():
            why = wedged(notifier.watchdog_s)
            if why is None:
                notifier.send("WATCHDOG=1", *(("STATUS=running",) if was_wedged else ()))
            elif why != was_wedged:
                log.error("%s: not pinging the watchdog (systemd restarts the service after "
                          "%.0f s)", why, notifier.watchdog_s)
                notifier.send(f"STATUS=wedged: {why}")
            was_wedged = why
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), period_s)
    finally:
        if stopping.is_set():
            notifier.send("STOPPING=1", "STATUS=stopping")


def wedged_workers(workers: list[tuple[str, float | None]], limit_s: float,
                   now_s: float | None = None) -> str | None:
    """Why the node is wedged, from ``(pipeline id, busy since (monotonic s) or None)``
    of each worker: the first pipeline busy in one read or inference for > ``limit_s``."""
    now = time.monotonic() if now_s is None else now_s
    for pipeline_id, busy_since_s in workers:
        if busy_since_s is not None and now - busy_since_s > limit_s:
            return (f"pipeline {pipeline_id!r} has been stuck in one read or inference for "
                    f"{now - busy_since_s:.0f} s")
    return None
