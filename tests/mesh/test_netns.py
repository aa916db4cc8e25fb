"""The namespace harness itself: hosts reach each other, CPU quotas hold, nothing stays."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.mesh.netns import Net, cgroup_version

BUSY = ("import time, json\n"
        "t0 = time.monotonic(); c0 = time.process_time()\n"
        "while time.monotonic() - t0 < 1.0: pass\n"
        "print(json.dumps({'cpu_share': (time.process_time() - c0) / (time.monotonic() - t0)}))\n")

LISTEN = ("import socket, json\n"
          "s = socket.create_server(('0.0.0.0', 9000))\n"
          "print(json.dumps({'listening': True}), flush=True)\n"
          "s.settimeout(20); c, _ = s.accept(); c.close()\n")
CONNECT = "import socket; socket.create_connection(('{}', 9000), timeout=5).close()"


def test_hosts_ping_each_other_and_teardown_leaves_nothing() -> None:
    with Net(2) as net:
        server = net.hosts[1].popen([sys.executable, "-c", LISTEN])
        server.wait_for(lambda line: line.get("listening") is True, 20.0)
        net.hosts[0].exec(sys.executable, "-c", CONNECT.format(net.hosts[1].address))
        server.stop()
        names = [net.bridge_ns, *(h.name for h in net.hosts)]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert not any(name in listed for name in names)


def test_cpu_quota_emulates_a_slower_node(make_net: Callable[[int], Net]) -> None:
    assert cgroup_version() in (1, 2)
    net = make_net(1)
    quota = net.hosts[0].popen([sys.executable, "-c", BUSY], cpu_quota=0.25)
    free = net.hosts[0].popen([sys.executable, "-c", BUSY])
    slow = quota.wait_for(lambda line: "cpu_share" in line, 20.0)["cpu_share"]
    fast = free.wait_for(lambda line: "cpu_share" in line, 20.0)["cpu_share"]
    assert slow < 0.4  # a quarter of a core, with a period's slack
    assert fast > slow * 1.5
