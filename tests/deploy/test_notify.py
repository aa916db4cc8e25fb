"""sd_notify (edge_runtime/notify.py) against a real datagram socket the test binds:
READY after start, watchdog pings at half of WATCHDOG_USEC, no pings while the loop is
blocked or a pipeline is wedged, STOPPING at a stop.

Blocking on purpose happens in child processes (the suite's blockbuster guard only
watches this process): a script that sleeps on its loop, and a daemon whose user
detector never returns. Timing bounds are loose: the machine is shared.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.notify import Notifier, wedged_workers
from tests.helpers.media import write_csv

REPO = Path(__file__).resolve().parents[2]


class Receiver:
    """The service manager's end: a bound datagram socket that timestamps messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.address = address
        self.messages: list[tuple[float, str]] = []

    def collect(self, duration_s: float, *, until: str | None = None) -> list[tuple[float, str]]:
        """Messages received within ``duration_s`` (stops early after one with ``until``)."""
        got: list[tuple[float, str]] = []
        deadline = time.monotonic() + duration_s
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            got.append((time.monotonic(), data.decode()))
            if until is not None and until in data.decode():
                break
        self.messages += got
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (a Unix socket path has at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ntf-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def pings(messages: list[tuple[float, str]]) -> list[float]:
    return [t for t, m in messages if "WATCHDOG=1" in m.split("\n")]


def test_nothing_without_notify_socket_and_abstract_sockets_work() -> None:
    assert not Notifier.from_env({}).send("READY=1")
    name = f"@edge-runtime-test-{os.getpid()}"
    receiver = Receiver(name)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000",
                                      "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_s == 3.0
        assert notifier.send("READY=1", "STATUS=up\nsecond line")
        assert receiver.collect(2.0, until="READY")[0][1] == "READY=1\nSTATUS=up second line"
        notifier.close()
    finally:
        receiver.close()
    # A watchdog meant for another process is not ours.
    assert Notifier("@x", watchdog_usec="1000", watchdog_pid="1").watchdog_s is None


def test_wedged_workers_names_the_stuck_pipeline() -> None:
    assert wedged_workers([("a", None), ("b", 99.0)], 2.0, now_s=100.0) is None
    why = wedged_workers([("a", None), ("b", 90.0)], 2.0, now_s=100.0)
    assert why is not None and "'b'" in why


def test_pings_stop_while_the_loop_is_blocked() -> None:
    """The pings come from a task on the loop: a loop blocked for 1 s sends none."""
    name = f"@edge-runtime-test-loop-{os.getpid()}"
    receiver = Receiver(name)
    script = textwrap.dedent("""
        import asyncio, time
        from edge_runtime.notify import Notifier, run_watchdog

        async def main():
            stop = asyncio.Event()
            task = asyncio.create_task(run_watchdog(Notifier.from_env(), stop, lambda s: None))
            await asyncio.sleep(0.8)
            time.sleep(1.2)   # deliberately blocks the loop: no pings may go out
            await asyncio.sleep(0.8)
            stop.set()
            await task

        asyncio.run(main())
    """)
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000",
           "PYTHONPATH": str(REPO)}
    env.pop("WATCHDOG_PID", None)
    try:
        child = subprocess.Popen([sys.executable, "-c", script], env=env)
        got = receiver.collect(15.0, until="STOPPING=1")
        assert child.wait(10) == 0
    finally:
        receiver.close()
    times = pings(got)
    assert len(times) >= 6, got  # ~0.1 s apart before and after the block
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 1.0, gaps  # the block
    assert sorted(gaps)[len(gaps) // 2] < 0.3, gaps  # otherwise every ~0.1 s
    assert "STOPPING=1" in got[-1][1]


WEDGE = '''
import os, time
from edge_runtime.anomaly.protocols import DetectorBase

class WedgeDetector(DetectorBase):
    """Scores 0 until the file ``flag`` exists, then never returns (30 s)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def update(self, t_s: float, value: float) -> float:
        if os.path.exists(self.flag):
            time.sleep(30)
        return 0.0
'''


def test_daemon_ready_pings_wedge_and_stopping(short_dir: Path) -> None:
    (short_dir / "wedge_detector.py").write_text(WEDGE)
    write_csv(short_dir / "s.csv", [1.0] * 5000, period_s=0.01)
    flag = short_dir / "wedge"
    cfg = short_dir / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "notify-test"
state_dir = "state"
shutdown_timeout_s = 1
[budget]
enabled = false
[health]
check_throttling = false
[[sources]]
type = "replay"
id = "s"
path = "s.csv"
min_rate_hz = 20
max_rate_hz = 20
[[pipelines]]
id = "p"
source = "s"
detector = "wedge_detector:WedgeDetector"
detector_params = {{ flag = "{flag}" }}
""")
    sock = short_dir / "notify.sock"
    receiver = Receiver(str(sock))
    env = {**os.environ, "NOTIFY_SOCKET": str(sock), "WATCHDOG_USEC": "400000",
           "PYTHONPATH": f"{REPO}:{short_dir}"}
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                             cwd=short_dir, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        ready = receiver.collect(60.0, until="READY=1")
        assert ready and "READY=1" in ready[-1][1], ready
        assert "STATUS=node 'notify-test': 1 pipeline(s) running" in ready[-1][1]
        # Pings every WATCHDOG_USEC / 2 = 0.2 s: about 10 in 2 s.
        assert 5 <= len(pings(receiver.collect(2.0))) <= 15
        flag.touch()
        wedged = receiver.collect(10.0, until="STATUS=wedged")
        assert "STATUS=wedged: pipeline 'p'" in wedged[-1][1], wedged
        assert pings(receiver.collect(1.5)) == []  # systemd would restart it now
        child.send_signal(signal.SIGTERM)
        stopping = receiver.collect(10.0, until="STOPPING=1")
        assert "STOPPING=1" in stopping[-1][1], stopping
        child.wait(20)  # the stuck worker is abandoned after shutdown_timeout_s
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        receiver.close()
        stderr = child.stderr.read().decode() if child.stderr else ""
    assert child.returncode == 0, stderr
