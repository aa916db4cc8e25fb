"""A small network of hosts made of Linux network namespaces, for the mesh tests.

``Net(3)`` builds namespaces ``<tag>-br`` (a bridge ``br0``, 198.18.X.254/24) and
``<tag>-h1`` .. ``<tag>-h3``, each with ``eth0`` (198.18.X.N/24 and fdc6:1818::N/64,
default routes via the bridge, .254 and ::fe) joined to the bridge by a veth pair. Multicast is on
and the bridge does not snoop IGMP, so mDNS reaches every host. ``host.popen(cmd)``
runs a process inside a host (``ip netns exec``), optionally under a CPU quota
(cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, whichever the machine has) to
emulate a Pi-class node. ``attach_root()`` gives the test process itself an interface
on the bridge (a veth in the root namespace, 198.18.X.100/24) so that a test can run
discovery in-process, under the suite's loop and thread guards.

Every name carries a random tag, so parallel runs never collide; ``close()`` (also
called by the fixture after a failed test, and idempotent) kills the processes it
started, deletes the namespaces (which deletes their veths) and the cgroups.

Traffic stays in 198.18.0.0/15 (RFC 2544 benchmarking space) and in fdc6:1818::/64.
Each net takes a /24 of it (``198.18.X``, ``X`` random among those no interface of the
root namespace uses), so that nets of parallel runs that attach the root never clash.
Needs root and ``ip`` (iproute2, in tests/system-packages.sh).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BRIDGE_HOST = 254
ROOT_HOST = 100
V6_PREFIX = "fdc6:1818::"
BRIDGE_ADDRESS_V6 = "fdc6:1818::fe"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def _free_prefix() -> str:
    """``198.18.X.`` or ``198.19.X.`` for a /24 that no root-namespace address is in."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                          check=True, timeout=30).stdout
    taken = set(re.findall(r"inet (198\.1[89]\.\d+)\.", used))
    free = [f"198.{b}.{c}" for b in (18, 19) for c in range(256)
            if f"198.{b}.{c}" not in taken]
    return f"{secrets.choice(free)}."


def cgroup_version() -> int | None:
    """2 with a cgroup v2 cpu controller, 1 with a v1 cpu hierarchy, None without."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return 2
    if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists():
        return 1
    return None


class Process:
    """A process running in a host; its stdout's JSON lines are collected by a thread."""

    def __init__(self, host: Host, cmd: Sequence[str], popen: subprocess.Popen[str],
                 cgroup: Path | None) -> None:
        self.host = host
        self.cmd = list(cmd)
        self.popen = popen
        self.cgroup = cgroup
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"netns-reader-{host.name}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                obj = {"event": "text", "text": raw.rstrip("\n")}
            obj["_received_s"] = time.monotonic()
            with self._cond:
                self.lines.append(obj)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float,
                 *, start: int = 0) -> dict[str, Any]:
        """The first line (from index ``start``) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (not self._reader.is_alive() and self.popen.poll() is not None):
                    raise AssertionError(
                        f"{self.host.name}: no matching line within {timeout_s} s after line "
                        f"{start}; lines: {self.summary()}; stderr: {self.stderr_tail()}")
                self._cond.wait(min(left, 0.1))

    def summary(self) -> list[tuple[Any, ...]]:
        """(t, event, why, peer node id, its state) of every line, for failure messages."""
        return [(line.get("t"), line.get("event"), line.get("why"),
                 line.get("peer", {}).get("node_id"), line.get("peer", {}).get("state"))
                for line in self.lines]

    def stderr_tail(self) -> str:
        if self.popen.stderr is None:
            return ""
        if self.popen.poll() is None:
            self.kill(signal.SIGKILL)
            self.popen.wait(10)
        return self.popen.stderr.read()[-2000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if it does not end; joins the reader."""
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(timeout_s)
        self._reader.join(timeout_s)
        return self.popen.returncode


class Host:
    """One namespace with ``eth0`` on the bridge."""

    def __init__(self, net: Net, index: int) -> None:
        self.net = net
        self.index = index
        self.name = f"{net.tag}-h{index}"
        self.address = f"{net.prefix}{index}"
        self.address_v6 = f"{V6_PREFIX}{index:x}"

    def exec(self, *cmd: str) -> None:
        _run("ip", "netns", "exec", self.name, *cmd)

    def popen(self, cmd: Sequence[str], *, cpu_quota: float | None = None,
              env: dict[str, str] | None = None) -> Process:
        """Start ``cmd`` inside this host; ``cpu_quota``: share of one core (0.25 = a
        quarter), enforced by a cgroup of its own."""
        cgroup = self.net._new_cgroup(cpu_quota) if cpu_quota is not None else None
        argv = ["ip", "netns", "exec", self.name, *cmd]
        if cgroup is not None:
            procs = cgroup / "cgroup.procs"
            argv = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**os.environ, **(env or {})},
                                 start_new_session=True)
        proc = Process(self, cmd, popen, cgroup)
        self.net.processes.append(proc)
        return proc


class Net:
    """N hosts on one bridge; see the module docstring."""

    def __init__(self, n_hosts: int, *, tag: str | None = None) -> None:
        if not 1 <= n_hosts <= 99:
            raise ValueError("1 to 99 hosts")
        self.tag = tag or f"ert{secrets.token_hex(3)}"
        self.bridge_ns = f"{self.tag}-br"
        self.prefix = _free_prefix()
        self.bridge_address = f"{self.prefix}{BRIDGE_HOST}"
        self.root_address = f"{self.prefix}{ROOT_HOST}"
        self.hosts: list[Host] = []
        self.processes: list[Process] = []
        self._cgroups: list[Path] = []
        self._namespaces: list[str] = []
        self._root_veth: str | None = None
        self._closed = False
        try:
            self._build(n_hosts)
        except BaseException:
            self.close()
            raise

    def _add_ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _build(self, n_hosts: int) -> None:
        br = self.bridge_ns
        self._add_ns(br)
        _run("ip", "-n", br, "link", "add", "br0", "type", "bridge",
             "mcast_snooping", "0", "stp_state", "0", "forward_delay", "0")
        _run("ip", "-n", br, "addr", "add", f"{self.bridge_address}/24", "dev", "br0")
        _run("ip", "-n", br, "-6", "addr", "add", f"{BRIDGE_ADDRESS_V6}/64", "dev", "br0",
             "nodad")
        _run("ip", "-n", br, "link", "set", "br0", "up")
        for i in range(1, n_hosts + 1):
            host = Host(self, i)
            self._add_ns(host.name)
            _run("ip", "-n", host.name, "link", "add", "eth0", "type", "veth",
                 "peer", "name", f"v{i}", "netns", br)
            _run("ip", "-n", br, "link", "set", f"v{i}", "master", "br0", "up")
            host.exec("sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad")
            _run("ip", "-n", host.name, "link", "set", "eth0", "multicast", "on", "up")
            _run("ip", "-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run("ip", "-n", host.name, "-6", "addr", "add", f"{host.address_v6}/64",
                 "dev", "eth0", "nodad")
            _run("ip", "-n", host.name, "route", "add", "default", "via", self.bridge_address)
            _run("ip", "-n", host.name, "-6", "route", "add", "default", "via",
                 BRIDGE_ADDRESS_V6)
            self.hosts.append(host)

    def attach_root(self) -> str:
        """A veth from the root namespace onto the bridge; returns its interface name."""
        name = f"{self.tag}r"  # at most 15 bytes: "ert" + 6 hex + "r"
        _run("ip", "link", "add", name, "type", "veth", "peer", "name", "vroot",
             "netns", self.bridge_ns)
        self._root_veth = name
        _run("ip", "-n", self.bridge_ns, "link", "set", "vroot", "master", "br0", "up")
        _run("ip", "link", "set", name, "multicast", "on", "up")
        _run("ip", "addr", "add", f"{self.root_address}/24", "dev", name)
        return name

    def _new_cgroup(self, cpu_quota: float) -> Path:
        version = cgroup_version()
        quota_us = max(1000, int(cpu_quota * CPU_PERIOD_US))
        if version == 2:
            path = CGROUP_ROOT / f"{self.tag}-{len(self._cgroups)}"
            path.mkdir()
            (path / "cpu.max").write_text(f"{quota_us} {CPU_PERIOD_US}\n")
        elif version == 1:
            path = CGROUP_ROOT / "cpu" / f"{self.tag}-{len(self._cgroups)}"
            path.mkdir()
            (path / "cpu.cfs_period_us").write_text(f"{CPU_PERIOD_US}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
        else:
            raise RuntimeError("no cgroup cpu controller on this machine: no CPU quotas")
        self._cgroups.append(path)
        return path

    def close(self) -> None:
        """Stop every process, delete namespaces, root veth and cgroups (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.kill(signal.SIGKILL)
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.popen.wait(10)
                proc._reader.join(10)
        if self._root_veth is not None:
            subprocess.run(["ip", "link", "del", self._root_veth], capture_output=True,
                           timeout=30, check=False)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30,
                           check=False)
        for path in self._cgroups:
            for _ in range(50):  # a killed task leaves its cgroup a moment later
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
