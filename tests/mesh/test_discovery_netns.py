"""Discovery between real processes in network namespaces: no addresses configured,
mDNS on a bridge, liveness from the HTTP heartbeat (tests/mesh/netns.py)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.mesh.netns import Host, Net, Process

#: Heartbeat every 0.5 s, down after 3 misses.
INTERVAL_S = 0.5
MISSES = 3
#: Time for three interpreters to start and import on a noisy 2-core machine.
START_S = 15.0


def _probe(host: Host, name: str, *extra: str) -> Process:
    return host.popen([sys.executable, "-m", "edge_runtime.mesh._probe", "--name", name,
                       "--port", "8001", "--serve-health",
                       "--heartbeat-interval-s", str(INTERVAL_S),
                       "--down-after-misses", str(MISSES), *extra])


def _sees(names: set[str], state: str = "up") -> Callable[[dict[str, Any]], bool]:
    def ok(line: dict[str, Any]) -> bool:
        peers = {p["node_id"]: p["state"] for p in line.get("peers", ())}
        return "peers" in line and set(peers) == names and all(
            s == state for s in peers.values())
    return ok


def _start_three(net: Net) -> list[Process]:
    procs = [_probe(h, f"n{h.index}") for h in net.hosts]
    for p in procs:
        p.wait_for(lambda line: line["event"] == "registered", START_S)
    return procs


def test_three_nodes_discover_each_other_without_addresses(make_net: Callable[[int], Net]
                                                           ) -> None:
    net = make_net(3)
    procs = _start_three(net)
    registered_s = max(next(line for line in p.lines if line["event"] == "registered")
                       ["_received_s"] for p in procs)
    for p in procs:
        others = {f"n{i}" for i in (1, 2, 3)} - {f"n{p.host.index}"}
        line = p.wait_for(_sees(others), 10.0)
        assert line["_received_s"] - registered_s < 5.0
        table = {peer["node_id"]: peer for peer in line["peers"]}
        for other in others:
            index = int(other[1:])
            assert table[other]["addresses_v4"] == [net.hosts[index - 1].address]
            assert table[other]["port"] == 8001
            assert table[other]["txt"]["v"] == "1"
            assert len(table[other]["txt"]["m"]) == 8


def test_killed_peer_is_marked_down_by_the_heartbeat(make_net: Callable[[int], Net]) -> None:
    net = make_net(3)
    procs = _start_three(net)
    for p in procs[:2]:
        p.wait_for(_sees({"n1", "n2", "n3"} - {f"n{p.host.index}"}), 10.0)
    marks = [len(p.lines) for p in procs[:2]]
    procs[2].kill(signal.SIGKILL)  # no goodbye: its mDNS records linger
    killed_s = time.monotonic()
    for p, mark in zip(procs[:2], marks, strict=True):
        down = p.wait_for(lambda line: line["event"] == "state"
                          and line["peer"]["node_id"] == "n3"
                          and line["peer"]["state"] == "down", 10.0, start=mark)
        # the first miss within one interval, down after MISSES; slack for a busy machine
        seen = [line["peer"]["state"] for line in p.lines[mark:]
                if line["event"] == "state" and line["peer"]["node_id"] == "n3"]
        assert seen[-1] == "down" and set(seen) <= {"suspect", "down"}
        assert down["_received_s"] - killed_s < (MISSES + 1) * INTERVAL_S + 1.5
        # still in the table (the record lingers), marked down, the other one up
        states = {peer["node_id"]: peer["state"] for peer in down["peers"]}
        assert states["n3"] == "down"


def test_clean_stop_sends_goodbyes_and_peers_drop_it_at_once(
        make_net: Callable[[int], Net]) -> None:
    net = make_net(3)
    procs = _start_three(net)
    for p in procs[:2]:
        p.wait_for(_sees({"n1", "n2", "n3"} - {f"n{p.host.index}"}), 10.0)
    marks = [len(p.lines) for p in procs[:2]]
    stopped_s = time.monotonic()
    assert procs[2].stop() == 0
    assert procs[2].lines[-1]["event"] == "closed"
    for p, mark in zip(procs[:2], marks, strict=True):
        gone = p.wait_for(lambda line: line["event"] == "removed"
                          and line["peer"]["node_id"] == "n3", 5.0, start=mark)
        assert gone["why"] == "goodbye"
        # before a heartbeat could have noticed: faster than MISSES intervals
        assert gone["_received_s"] - stopped_s < MISSES * INTERVAL_S + 0.5
        assert not any(line["event"] == "state" and line["peer"]["node_id"] == "n3"
                       and line["peer"]["state"] == "down" for line in p.lines[mark:])


def test_same_name_on_two_hosts_gets_a_random_suffix(make_net: Callable[[int], Net]) -> None:
    net = make_net(2)
    first = _probe(net.hosts[0], "twin")
    reg_first = first.wait_for(lambda line: line["event"] == "registered", START_S)
    second = _probe(net.hosts[1], "twin")
    reg = second.wait_for(lambda line: line["event"] == "registered", START_S)
    assert reg_first["instance"] == "twin._edge-infer._tcp.local."
    label = reg["instance"].split(".")[0]
    assert label.startswith("twin-") and len(label) == len("twin-") + 4
    # each sees the other, under its own instance name
    first.wait_for(lambda line: [p["name"] for p in line.get("peers", ())] == [reg["instance"]],
                   10.0)
    second.wait_for(lambda line: [p["name"] for p in line.get("peers", ())]
                    == ["twin._edge-infer._tcp.local."], 10.0)


def test_ipv6_only_discovery_on_the_default_route(make_net: Callable[[int], Net]) -> None:
    net = make_net(2)
    procs = [_probe(h, f"n{h.index}", "--ip-version", "v6") for h in net.hosts]
    for p in procs:
        p.wait_for(lambda line: line["event"] == "registered", START_S)
    for p, other in zip(procs, net.hosts[::-1], strict=True):
        line = p.wait_for(_sees({f"n{other.index}"}), 10.0)
        peer = line["peers"][0]
        assert peer["addresses_v4"] == []
        assert other.address_v6 in peer["addresses_v6"]
