"""The control socket's path is handled safely: nothing that is not a stale socket is
ever deleted, a squattable folder or an impossible path is one clear error, and a
stopping daemon removes only its own socket."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.control import remove_socket_file, request, start_server
from edge_runtime.errors import DaemonError


async def _echo(req: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "cmd": req.get("cmd")}


async def _serve_once(path: Path) -> dict[str, Any]:
    server = await start_server(path, _echo)
    try:
        return await asyncio.to_thread(request, path)
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.to_thread(remove_socket_file, path)


def test_a_regular_file_at_the_path_is_never_deleted(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("precious")
    with pytest.raises(DaemonError, match="is a file that is not a socket"):
        asyncio.run(_serve_once(path))
    assert path.read_text() == "precious"


def test_a_folder_or_symlink_at_the_path_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "control.sock"
    folder.mkdir()
    with pytest.raises(DaemonError, match="is a folder"):
        asyncio.run(_serve_once(folder))
    link = tmp_path / "link.sock"
    target = tmp_path / "elsewhere"
    target.write_text("x")
    link.symlink_to(target)
    with pytest.raises(DaemonError, match="is a symlink"):
        asyncio.run(_serve_once(link))
    assert link.is_symlink() and target.read_text() == "x"


def test_a_path_too_long_for_a_socket_says_so(tmp_path: Path) -> None:
    path = tmp_path / ("s" * 120 + ".sock")
    with pytest.raises(DaemonError, match=r"over the 107 a Unix socket may have"):
        asyncio.run(_serve_once(path))


def test_a_world_writable_folder_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: another user could squat the path first
    with pytest.raises(DaemonError, match="may be written by every user"):
        asyncio.run(_serve_once(shared / "control.sock"))


def test_a_stale_socket_is_replaced_and_the_folder_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "control.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crashed daemon's socket: nobody listens
    assert asyncio.run(_serve_once(path)) == {"ok": True, "cmd": "status"}
    assert not path.exists()
    fresh = tmp_path / "new" / "control.sock"
    old = os.umask(0o022)
    try:
        asyncio.run(_serve_once(fresh))
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o750


def test_stopping_removes_only_its_own_socket(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"

    async def body() -> None:
        server = await start_server(path, _echo)
        server.close()
        await server.wait_closed()
        # Meanwhile another daemon took the path over (its own socket file).
        await asyncio.to_thread(path.unlink)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await asyncio.to_thread(other.bind, str(path))
            await asyncio.to_thread(remove_socket_file, path)
            assert await asyncio.to_thread(path.exists)  # not ours: left alone
        finally:
            other.close()

    asyncio.run(body())


def test_summary_and_event_log_are_private_in_a_0750_state_folder(tmp_path: Path) -> None:
    from edge_runtime.config import decode_config
    from edge_runtime.pipelines.daemon import _write_summary

    config = decode_config('[node]\nstate_dir = "st"\n', base_dir=tmp_path)
    old = os.umask(0o022)
    try:
        _write_summary(config, {"stopped": True})
    finally:
        os.umask(old)
    state = tmp_path / "st"
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    assert stat.S_IMODE((state / "summary.json").stat().st_mode) == 0o600
    # A state folder an operator gave to another group: its files are group-readable.
    # (Giving a folder to a group one is not in takes root, which CI is.)
    if os.geteuid() == 0:
        os.chown(state, -1, os.getegid() + 1)
        (state / "summary.json").unlink()
        _write_summary(config, {"stopped": True})
        assert stat.S_IMODE((state / "summary.json").stat().st_mode) == 0o640


def _hostile_server(path: Path, behaviour: str) -> tuple[socket.socket, threading.Thread]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            try:
                if behaviour == "endless":
                    block = b"x" * 65536
                    for _ in range(400):  # 25 MiB at most, never a newline
                        conn.sendall(block)
                else:  # "drip": one byte every 50 ms, for ever (until the client leaves)
                    for _ in range(200):
                        conn.sendall(b"{")
                        time.sleep(0.05)
            except OSError:
                pass  # the client gave up: that is the point

    thread = threading.Thread(target=serve)
    thread.start()
    return server, thread


@pytest.mark.parametrize("behaviour", ["endless", "drip"])
def test_the_status_client_is_bounded_whatever_answers(tmp_path: Path, behaviour: str) -> None:
    path = tmp_path / "control.sock"
    server, thread = _hostile_server(path, behaviour)
    started = time.monotonic()
    try:
        with pytest.raises(DaemonError, match=r"over 16 MiB|cannot talk"):
            request(path, timeout_s=1.0)
    finally:
        elapsed_s = time.monotonic() - started
        thread.join(15)
        server.close()
    assert elapsed_s < 5.0
