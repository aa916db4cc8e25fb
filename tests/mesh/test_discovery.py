"""Discovery's pure parts (TXT record, names, interfaces) and one in-process node on the
test network, under the suite's loop and thread guards."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_runtime.errors import DiscoveryError, DiscoveryInterfaceError, TxtRecordTooLargeError
from edge_runtime.mesh.discovery import (
    TXT_MAX_BYTES,
    Discovery,
    Peer,
    PeerEvent,
    PeerEventKind,
    PeerState,
    check_txt,
    choose_interfaces,
    default_route_interfaces,
    instance_name,
    models_hash,
    tcp_heartbeat,
    txt_properties,
    txt_wire_size,
)
from tests.mesh.netns import Net


async def _never(_peer: Peer) -> bool:
    return False


def test_txt_record_fields_and_size() -> None:
    props = txt_properties(node_id="kitchen-pi", model_names=["b", "a"], capacity=12.5)
    assert props == {"v": "1", "id": "kitchen-pi", "m": models_hash(["a", "b"]), "c": "12.5"}
    # wire format: a length byte, then key=value
    assert txt_wire_size({"v": "1"}) == 4
    assert check_txt(props) == txt_wire_size(props) < TXT_MAX_BYTES


def test_txt_record_over_200_bytes_is_refused() -> None:
    check_txt({"id": "x" * (TXT_MAX_BYTES - 4)})  # 1 + 3 + 196 = 200: fits
    with pytest.raises(TxtRecordTooLargeError, match="201 bytes, over the 200-byte limit"):
        check_txt({"id": "x" * (TXT_MAX_BYTES - 3)})
    with pytest.raises(TxtRecordTooLargeError, match="one entry holds at most 255"):
        txt_wire_size({"id": "x" * 300})
    with pytest.raises(TxtRecordTooLargeError):
        Discovery(node_name="n", node_id="y" * 190, port=8001, heartbeat=_never)


def test_models_hash_is_short_and_order_free() -> None:
    assert models_hash(["a", "b"]) == models_hash(["b", "a", "a"]) != models_hash(["a"])
    assert len(models_hash([])) == 8


def test_instance_name_is_dns_safe_and_bounded() -> None:
    assert instance_name("kitchen pi_2") == "kitchen-pi-2"
    assert instance_name("n1", "ab12") == "n1-ab12"
    assert len(instance_name("x" * 100, "ab12")) == 63
    assert instance_name("...") == "node"


def test_default_route_interfaces_from_proc(tmp_path: Path) -> None:
    (tmp_path / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n"
        "wlan0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n")
    (tmp_path / "ipv6_route").write_text(
        f"{'0' * 32} 00 {'0' * 32} 00 fe800000000000000000000000000001 00000400 "
        "00000001 00000000 00000003 wlan0\n"
        f"{'0' * 32} 00 {'0' * 32} 00 {'0' * 32} ffffffff 00000001 00000000 00200200 lo\n")
    assert default_route_interfaces(tmp_path) == (["eth0"], ["wlan0"])
    assert default_route_interfaces(tmp_path / "missing") == ([], [])


def test_unknown_interface_is_a_typed_error_naming_it() -> None:
    with pytest.raises(DiscoveryInterfaceError, match="no network interface called nope0"):
        choose_interfaces(["nope0"], "v4")


def test_bad_settings_are_typed_errors() -> None:
    with pytest.raises(DiscoveryError, match="port"):
        Discovery(node_name="n", port=0, heartbeat=_never)
    with pytest.raises(DiscoveryError, match="heartbeat settings"):
        Discovery(node_name="n", port=1, heartbeat=_never, heartbeat_interval_s=1.0,
                  heartbeat_timeout_s=2.0)
    with pytest.raises(DiscoveryError, match="ip_version"):
        Discovery(node_name="n", port=1, heartbeat=_never, ip_version="v5")  # type: ignore[arg-type]


def test_in_process_node_finds_a_namespace_peer_and_sees_it_go(
        make_net: Callable[[int], Net]) -> None:
    """Discovery on this test's own loop (the guards fail any blocking call on it and any
    thread it leaves behind) against a probe process in a namespace.

    Names carry the net's tag: the root namespace's mDNS sockets hear every root veth,
    so a parallel run's nodes may show up too; only ours are checked."""
    net = make_net(1)
    iface = net.attach_root()
    far, near = f"far-{net.tag}", f"near-{net.tag}"
    probe = net.hosts[0].popen([sys.executable, "-m", "edge_runtime.mesh._probe",
                                "--name", far, "--port", "8001", "--serve-health"])
    probe.wait_for(lambda line: line["event"] == "registered", 15.0)

    async def ours(events: asyncio.Queue[PeerEvent]) -> PeerEvent:
        while True:
            event = await asyncio.wait_for(events.get(), 10.0)
            if event.peer.node_id == far:
                return event

    async def scenario() -> None:
        async with Discovery(node_name=near, port=8002, heartbeat=tcp_heartbeat,
                             interfaces=[iface], heartbeat_interval_s=0.3,
                             down_after_misses=2, remove_after_s=0.6) as d:
            assert d.interface_choice is not None
            assert d.interface_choice.addresses_v4 == (net.root_address,)
            events = d.subscribe()
            added = await ours(events)
            assert added.kind is PeerEventKind.ADDED
            assert added.peer.addresses_v4 == (net.hosts[0].address,)
            # the probe sees us too (it browses on the same bridge)
            await asyncio.get_running_loop().run_in_executor(None, lambda: probe.wait_for(
                lambda line: any(p["node_id"] == near for p in line.get("peers", ())),
                10.0))
            await asyncio.sleep(0.7)  # a few heartbeats
            peer = next(p for p in d.peers if p.node_id == far)
            assert peer.state is PeerState.UP and peer.rtt_s is not None
            probe.kill()  # SIGKILL: no goodbye
            kinds: list[tuple[PeerEventKind, str]] = []
            while not kinds or kinds[-1][0] is not PeerEventKind.REMOVED:
                e = await ours(events)
                kinds.append((e.kind, e.why))
            assert kinds == [(PeerEventKind.STATE, "up -> suspect"),
                             (PeerEventKind.STATE, "suspect -> down"),
                             (PeerEventKind.REMOVED, "down too long")]
            assert not any(p.node_id == far for p in d.peers)

    asyncio.run(scenario())
