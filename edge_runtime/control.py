"""The daemon's local control socket: ``edge-runtime status`` talks to ``run`` over it.

Protocol: the client connects to a Unix socket, sends one JSON line
(``{"cmd": "status"}``) and reads one JSON line back (the reply, or
``{"error": "..."}``). JSON is encoded with msgspec. The socket file is created with
mode 0600 (only the daemon's user may ask), and a stale file from a crashed daemon
is replaced; a live daemon on the same path is an error.

:func:`start_server` runs on the loop; everything it does to the filesystem (the folder,
the stale-file check, bind and chmod) runs in an executor. :func:`request` is the
blocking client (the CLI's; from a loop, call it in an executor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from edge_runtime.errors import DaemonError

log = logging.getLogger(__name__)

#: Longest request line the server reads (bytes).
MAX_REQUEST_BYTES = 4096
#: How long the server waits for a client to send its request.
REQUEST_TIMEOUT_S = 2.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


#: Longest socket path the kernel takes (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH_BYTES = 107


def _bind(path: Path) -> socket.socket:
    """Blocking (executor): a Unix socket bound to ``path`` with mode 0600, not listening.

    Makes the folder (0750) and replaces a stale socket a crashed daemon left. Refuses,
    with one clear error each: a path the kernel cannot bind (over 107 bytes), a folder
    other users may write to (they could squat the path), and anything at the path that
    is not a socket (a regular file is never deleted; a symlink is never followed or
    removed). The mode is set before ``listen``, and a socket that does not listen
    refuses every connection, so there is no moment when another user could talk to it
    (and no process-wide umask to change under threads).
    """
    hint = "set node.control_socket to a path in a folder only this user may write"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise DaemonError(f"control socket path {path} is {len(os.fsencode(path))} bytes, "
                          f"over the {MAX_SOCKET_PATH_BYTES} a Unix socket may have",
                          hint="set node.control_socket to a shorter path")
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        folder = path.parent.stat()
    except OSError as exc:
        raise DaemonError(f"cannot create the control socket's folder {path.parent}: "
                          f"{exc.strerror}", hint=hint) from exc
    if folder.st_mode & stat.S_IWOTH:
        raise DaemonError(f"the control socket's folder {path.parent} may be written by "
                          "every user (another could put its own socket there)", hint=hint)
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        kind = existing.st_mode
        if stat.S_ISSOCK(kind):
            if _socket_alive(path):
                raise DaemonError(f"another daemon is already listening on {path}",
                                  hint="stop it first, or give this one another "
                                  "node.control_socket")
            path.unlink()  # a stale socket of a daemon that died
        else:
            what = ("a folder" if stat.S_ISDIR(kind) else "a symlink" if stat.S_ISLNK(kind)
                    else "a file that is not a socket")
            raise DaemonError(f"{path} is {what}; the control socket will not replace it",
                              hint="move it away, or set node.control_socket elsewhere")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        st = path.lstat()
        _bound[str(path)] = (st.st_dev, st.st_ino, st.st_ctime_ns)
    except OSError as exc:
        sock.close()
        raise DaemonError(f"cannot create the control socket {path}: {exc.strerror}",
                          hint=hint) from exc
    except BaseException:
        sock.close()
        raise
    return sock


#: The socket files this process bound, path -> (device, inode, ctime): only those are
#: removed (the ctime tells a new file from ours when the inode number is reused).
_bound: dict[str, tuple[int, int, int]] = {}


def remove_socket_file(path: Path) -> None:
    """Blocking (executor): remove the socket file a stopped server leaves behind, if it
    is still the one this process bound (never another daemon's that replaced it)."""
    identity = _bound.pop(str(path), None)
    with contextlib.suppress(OSError):
        st = path.lstat()
        if identity == (st.st_dev, st.st_ino, st.st_ctime_ns):
            path.unlink()


async def start_server(path: Path, handler: Handler) -> asyncio.Server:
    """Serve ``handler`` on the Unix socket ``path``; close the returned server to stop.

    The socket file stays after the server closes (remove it with
    :func:`remove_socket_file`); a later server replaces it.
    """
    sock = await asyncio.get_running_loop().run_in_executor(None, _bind, path)
    encoder = msgspec.json.Encoder()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            if len(line) > MAX_REQUEST_BYTES:
                reply: dict[str, Any] = {"error": "request too long"}
            else:
                try:
                    request = msgspec.json.decode(line or b"{}")
                    if not isinstance(request, dict):
                        raise TypeError("request must be a JSON object")
                    reply = await handler(request)
                except (msgspec.DecodeError, TypeError) as exc:
                    reply = {"error": f"bad request: {exc}"}
            writer.write(encoder.encode(reply) + b"\n")
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (TimeoutError, ConnectionError) as exc:
            log.debug("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT_S)

    try:
        return await asyncio.start_unix_server(on_client, sock=sock, limit=MAX_REQUEST_BYTES * 2)
    except BaseException:
        sock.close()
        raise


#: Longest reply the client reads (bytes): a status of hundreds of pipelines is well
#: under 1 MiB; whatever sends more is not a daemon of ours.
MAX_REPLY_BYTES = 16 << 20


def request(path: str | Path, cmd: str = "status", *, timeout_s: float = 3.0,
            **params: Any) -> dict[str, Any]:
    """Send one command to a running daemon and return its reply (blocking client).

    Bounded: the whole exchange takes at most ``timeout_s`` and a reply at most
    :data:`MAX_REPLY_BYTES`, whatever is listening on the socket.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
            s.sendall(msgspec.json.encode({"cmd": cmd, **params}) + b"\n")
            chunks: list[bytes] = []
            size = 0
            while not chunks or not chunks[-1].endswith(b"\n"):
                s.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise DaemonError(f"the daemon at {path} sent a reply over "
                                      f"{MAX_REPLY_BYTES >> 20} MiB; is it an edge-runtime "
                                      "daemon?")
        except FileNotFoundError as exc:
            raise DaemonError(f"no daemon control socket at {path}") from exc
        except (ConnectionRefusedError, TimeoutError, OSError) as exc:
            raise DaemonError(f"cannot talk to the daemon at {path}: {exc}") from exc
    try:
        reply = msgspec.json.decode(b"".join(chunks))
    except msgspec.DecodeError as exc:
        raise DaemonError(f"the daemon at {path} sent an unreadable reply") from exc
    if not isinstance(reply, dict):
        raise DaemonError(f"the daemon at {path} sent an unexpected reply")
    if "error" in reply:
        raise DaemonError(f"the daemon refused {cmd!r}: {reply['error']}")
    return reply
