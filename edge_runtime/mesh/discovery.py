"""mDNS discovery of peers (python-zeroconf) and their liveness from a heartbeat.

Each node advertises ``_edge-infer._tcp.local.`` under a unique instance name (the node
name; on a conflict, the node name plus a short random suffix) with a TXT record of at
most :data:`TXT_MAX_BYTES` bytes: protocol version ``v``, node id ``id``, a short hash
of the models it serves ``m`` and a capacity figure ``c`` (inferences per second it can
take). It browses for the others and keeps a table of :class:`Peer`.

mDNS alone cannot tell a crashed peer from a quiet one: a PTR record lingers for its
TTL (75 minutes) after its owner died. So liveness comes from an application heartbeat,
a coroutine the caller supplies (``heartbeat(peer) -> bool``: the OIP client's
``live()``; in tests a TCP connect or an HTTP GET of ``/v2/health/live``), polled every
``heartbeat_interval_s`` under ``heartbeat_timeout_s``. A peer is ``up``; ``suspect``
after one miss; ``down`` after ``down_after_misses``; removed ``remove_after_s`` after
it went down. A goodbye (TTL 0 on a clean stop) removes it at once; :meth:`Discovery.aclose`
sends ours.

Threads and loops: one ``AsyncZeroconf`` per :class:`Discovery`, created by
:meth:`Discovery.start` on the caller's running loop (zeroconf then runs no thread of
its own). The browser's handler runs on the loop and only puts the name on a queue; a
task resolves it. Nothing here calls user code on the loop except the ``heartbeat``
coroutine, which must not block. Changes are published as :class:`PeerEvent` on queues
from :meth:`Discovery.subscribe` (bounded; a slow reader loses the oldest events, never
stalls discovery). zeroconf is imported by :meth:`Discovery.start`, not by this module.

Interfaces: by default those carrying the default route (``/proc/net/route``,
``/proc/net/ipv6_route``, read in an executor); or named (``interfaces=["eth0"]``).
``ip_version`` is ``"v4"``, ``"v6"`` or ``"all"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import importlib
import logging
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge_runtime.errors import DiscoveryError, DiscoveryInterfaceError, TxtRecordTooLargeError

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_edge-infer._tcp.local."
#: The mesh protocol version in the TXT record (``v``).
PROTOCOL_VERSION = "1"
#: The TXT record's size limit in bytes (wire format: a length byte before each entry).
TXT_MAX_BYTES = 200
#: How long a resolve of a newly seen name may take.
RESOLVE_TIMEOUT_S = 3.0
#: Events kept for a subscriber that does not read.
EVENT_QUEUE_SIZE = 256

IpVersion = Literal["v4", "v6", "all"]
_INSTANCE_OK = re.compile(r"[^A-Za-z0-9-]+")


class PeerState(enum.Enum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass
class Peer:
    """One other node, as discovery knows it. Times are monotonic seconds."""

    name: str  # the mDNS instance name, unique on the link
    node_id: str
    port: int
    addresses_v4: tuple[str, ...]
    addresses_v6: tuple[str, ...]
    txt: dict[str, str]
    first_seen_s: float
    last_seen_s: float
    state: PeerState = PeerState.UP
    misses: int = 0
    down_since_s: float | None = None
    rtt_s: float | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.addresses_v4 + self.addresses_v6

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "node_id": self.node_id, "port": self.port,
            "addresses_v4": list(self.addresses_v4), "addresses_v6": list(self.addresses_v6),
            "txt": dict(self.txt), "state": self.state.value, "misses": self.misses,
            "first_seen_s": round(self.first_seen_s, 3),
            "last_seen_s": round(self.last_seen_s, 3),
            "rtt_s": None if self.rtt_s is None else round(self.rtt_s, 6),
        }


class PeerEventKind(enum.Enum):
    ADDED = "added"
    UPDATED = "updated"
    STATE = "state"  # up / suspect / down
    REMOVED = "removed"


@dataclass(frozen=True)
class PeerEvent:
    kind: PeerEventKind
    peer: Peer
    at_s: float
    why: str = ""


Heartbeat = Callable[[Peer], Awaitable[bool]]


# --- TXT record and names -----------------------------------------------------------------


def models_hash(model_names: Collection[str]) -> str:
    """A short hash (8 hex digits) of the set of models a node serves."""
    digest = hashlib.sha256("\n".join(sorted(set(model_names))).encode()).hexdigest()
    return digest[:8]


def txt_properties(*, node_id: str, model_names: Collection[str],
                   capacity: float) -> dict[str, str]:
    """The TXT fields a node advertises."""
    return {"v": PROTOCOL_VERSION, "id": node_id, "m": models_hash(model_names),
            "c": f"{capacity:.4g}"}


def txt_wire_size(properties: dict[str, str]) -> int:
    """Bytes of the TXT record's wire format: each ``key=value`` after a length byte."""
    size = 0
    for key, value in properties.items():
        entry = len(key.encode()) + 1 + len(value.encode())
        if entry > 255:
            raise TxtRecordTooLargeError(
                f"TXT entry {key!r} is {entry} bytes (one entry holds at most 255)")
        size += 1 + entry
    return size


def check_txt(properties: dict[str, str]) -> int:
    """The TXT record's size; raises :class:`TxtRecordTooLargeError` over the limit."""
    size = txt_wire_size(properties)
    if size > TXT_MAX_BYTES:
        raise TxtRecordTooLargeError(
            f"the TXT record would be {size} bytes, over the {TXT_MAX_BYTES}-byte limit "
            f"(fields {sorted(properties)})")
    return size


def instance_name(node_name: str, suffix: str = "") -> str:
    """A DNS-safe instance label from the node name (at most 63 bytes with the suffix)."""
    base = _INSTANCE_OK.sub("-", node_name).strip("-") or "node"
    tail = f"-{suffix}" if suffix else ""
    return base[: 63 - len(tail)] + tail


# --- interfaces ---------------------------------------------------------------------------


def default_route_interfaces(proc_net: Path = Path("/proc/net")) -> tuple[list[str], list[str]]:
    """Names of the interfaces carrying the IPv4 and the IPv6 default route (blocking:
    reads /proc; call it in an executor)."""
    v4: list[str] = []
    v6: list[str] = []
    with contextlib.suppress(OSError):
        for line in (proc_net / "route").read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 7 and cols[1] == "00000000" and cols[7] == "00000000":
                v4.append(cols[0])
    with contextlib.suppress(OSError):
        for line in (proc_net / "ipv6_route").read_text().splitlines():
            cols = line.split()
            if len(cols) == 10 and cols[0] == "0" * 32 and cols[1] == "00" and cols[9] != "lo":
                v6.append(cols[9])
    return sorted(set(v4)), sorted(set(v6))


@dataclass(frozen=True)
class InterfaceChoice:
    """What zeroconf listens on, and the addresses advertised."""

    names: tuple[str, ...]
    zeroconf_interfaces: tuple[str | int, ...]  # IPv4 addresses and IPv6 interface indexes
    addresses_v4: tuple[str, ...]
    addresses_v6: tuple[str, ...]


def choose_interfaces(names: Sequence[str] | None, ip_version: IpVersion) -> InterfaceChoice:
    """Resolve interface names (None: those with the default route) to addresses
    (blocking: call it in an executor)."""
    import ifaddr  # zeroconf's own dependency

    want_v4 = ip_version in ("v4", "all")
    want_v6 = ip_version in ("v6", "all")
    if names:
        chosen = list(names)
    else:
        v4, v6 = default_route_interfaces()
        chosen = sorted(set((v4 if want_v4 else []) + (v6 if want_v6 else [])))
        if not chosen:
            raise DiscoveryInterfaceError(
                "no interface carries a default route, so discovery does not know where "
                "to look for peers")
    adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
    missing = [n for n in chosen if n not in adapters]
    if missing:
        raise DiscoveryInterfaceError(
            f"no network interface called {', '.join(missing)} "
            f"(present: {', '.join(sorted(adapters))})")
    zc: list[str | int] = []
    addr_v4: list[str] = []
    addr_v6: list[str] = []
    for n in chosen:
        adapter = adapters[n]
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and want_v4:
                addr_v4.append(ip.ip)
                zc.append(ip.ip)
            elif isinstance(ip.ip, tuple) and want_v6:
                addr_v6.append(ip.ip[0])
        if want_v6 and any(isinstance(ip.ip, tuple) for ip in adapter.ips):
            zc.append(adapter.index if adapter.index is not None else socket.if_nametoindex(n))
    if not zc:
        raise DiscoveryInterfaceError(
            f"interface(s) {', '.join(chosen)} have no IP{ip_version} address")
    return InterfaceChoice(tuple(chosen), tuple(zc), tuple(addr_v4), tuple(addr_v6))


# --- discovery ----------------------------------------------------------------------------


@dataclass
class _Resolve:
    name: str
    removed: bool


@dataclass
class DiscoveryStats:
    resolves: int = 0
    resolve_failures: int = 0
    heartbeats: int = 0
    heartbeat_misses: int = 0
    events_dropped: int = 0
    name_conflicts: int = 0


class Discovery:
    """Advertise this node, browse for peers, keep the peer table live.

    Use as ``async with Discovery(...) as d:`` or ``await d.start()`` ... ``await
    d.aclose()``, on one loop.
    """

    def __init__(
        self,
        *,
        node_name: str,
        port: int,
        heartbeat: Heartbeat,
        node_id: str | None = None,
        model_names: Collection[str] = (),
        capacity: float = 1.0,
        interfaces: Sequence[str] | None = None,
        ip_version: IpVersion = "v4",
        heartbeat_interval_s: float = 1.0,
        heartbeat_timeout_s: float | None = None,
        down_after_misses: int = 3,
        remove_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < port < 65536:
            raise DiscoveryError(f"port {port} is not a TCP port",
                                 hint="advertise the port 'edge-runtime serve' listens on")
        if ip_version not in ("v4", "v6", "all"):
            raise DiscoveryError(f"ip_version {ip_version!r} is not v4, v6 or all",
                                 hint="set ip_version to 'v4', 'v6' or 'all'")
        timeout_s = heartbeat_timeout_s if heartbeat_timeout_s is not None else (
            0.8 * heartbeat_interval_s)
        if not (0 < timeout_s <= heartbeat_interval_s and down_after_misses >= 1
                and remove_after_s >= 0):
            raise DiscoveryError(
                "heartbeat settings do not fit: 0 < heartbeat_timeout_s <= "
                "heartbeat_interval_s, down_after_misses >= 1, remove_after_s >= 0",
                hint="e.g. interval 1 s, timeout 0.8 s, 3 misses, removal after 60 s")
        self.node_name = node_name
        self.node_id = node_id or node_name
        self.port = port
        self.properties = txt_properties(node_id=self.node_id, model_names=model_names,
                                         capacity=capacity)
        check_txt(self.properties)
        self._heartbeat = heartbeat
        self._interfaces = list(interfaces) if interfaces else None
        self.ip_version: IpVersion = ip_version
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_timeout_s = timeout_s
        self.down_after_misses = down_after_misses
        self.remove_after_s = remove_after_s
        self._clock = clock
        self.stats = DiscoveryStats()
        self.instance: str | None = None  # our advertised instance name, once registered
        self.interface_choice: InterfaceChoice | None = None
        self._peers: dict[str, Peer] = {}
        self._subscribers: list[asyncio.Queue[PeerEvent]] = []
        self._resolve_queue: asyncio.Queue[_Resolve] = asyncio.Queue()
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # --- the table ----------------------------------------------------------------------

    @property
    def peers(self) -> list[Peer]:
        """A snapshot of the peer table, by instance name."""
        return [self._peers[n] for n in sorted(self._peers)]

    def peer(self, name: str) -> Peer | None:
        return self._peers.get(name)

    def subscribe(self) -> asyncio.Queue[PeerEvent]:
        """A queue that gets every later :class:`PeerEvent` (oldest dropped when full)."""
        q: asyncio.Queue[PeerEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._subscribers.append(q)
        return q

    def _publish(self, kind: PeerEventKind, peer: Peer, why: str = "") -> None:
        event = PeerEvent(kind, peer, self._clock(), why)
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
                self.stats.events_dropped += 1
            q.put_nowait(event)

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Discovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open zeroconf on the running loop, advertise, browse, start the heartbeat."""
        if self._aiozc is not None or self._closed:
            raise DiscoveryError("this Discovery was already started",
                                 hint="make one Discovery per start")
        loop = asyncio.get_running_loop()
        # The first import of zeroconf blocks (ifaddr's ctypes looks for libc): off the loop.
        await loop.run_in_executor(None, importlib.import_module, "zeroconf.asyncio")
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

        choice = await loop.run_in_executor(None, choose_interfaces, self._interfaces,
                                            self.ip_version)
        self.interface_choice = choice
        version = {"v4": IPVersion.V4Only, "v6": IPVersion.V6Only, "all": IPVersion.All}
        try:
            self._aiozc = AsyncZeroconf(interfaces=list(choice.zeroconf_interfaces),
                                        ip_version=version[self.ip_version])
        except OSError as e:
            raise DiscoveryInterfaceError(
                f"cannot open mDNS sockets on {', '.join(choice.names)}: {e}") from e
        try:
            await self._register(choice)
            self._tasks = [
                asyncio.create_task(self._resolver(), name="discovery-resolver"),
                asyncio.create_task(self._heartbeats(), name="discovery-heartbeat"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._task_done)
            self._browser = AsyncServiceBrowser(self._aiozc.zeroconf, SERVICE_TYPE,
                                                handlers=[self._on_service_state_change])
        except BaseException:
            await self.aclose()
            raise

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("discovery task %s died: %s", task.get_name(), task.exception(),
                      exc_info=task.exception())

    async def _register(self, choice: InterfaceChoice) -> None:
        from zeroconf import NonUniqueNameException
        from zeroconf.asyncio import AsyncServiceInfo

        assert self._aiozc is not None
        suffix = ""
        for _attempt in range(5):
            label = instance_name(self.node_name, suffix)
            info = AsyncServiceInfo(
                SERVICE_TYPE, f"{label}.{SERVICE_TYPE}", port=self.port,
                properties=dict(self.properties), server=f"{label}.local.",
                parsed_addresses=list(choice.addresses_v4 + choice.addresses_v6))
            try:
                await self._aiozc.async_register_service(info)
            except NonUniqueNameException:
                self.stats.name_conflicts += 1
                log.info("mDNS name %s is taken; trying another suffix", label)
                suffix = secrets.token_hex(2)
                continue
            self.instance = f"{label}.{SERVICE_TYPE}"
            return
        raise DiscoveryError(f"no free mDNS instance name for {self.node_name!r} after 5 tries",
                             hint="give the node a unique [node] name")

    async def aclose(self) -> None:
        """Send goodbyes, stop browsing and heartbeats, close zeroconf (idempotent)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._aiozc is not None:
            aiozc, self._aiozc = self._aiozc, None
            with contextlib.suppress(Exception):
                await aiozc.async_unregister_all_services()  # the goodbyes
            await aiozc.async_close()

    # --- browsing -----------------------------------------------------------------------

    def _on_service_state_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                                 state_change: ServiceStateChange) -> None:
        """On the loop, from the browser: only queue the name (no work here)."""
        from zeroconf import ServiceStateChange

        if name == self.instance:
            return
        self._resolve_queue.put_nowait(
            _Resolve(name, state_change is ServiceStateChange.Removed))

    async def _resolver(self) -> None:
        while True:
            item = await self._resolve_queue.get()
            if item.removed:
                peer = self._peers.pop(item.name, None)
                if peer is not None:
                    self._publish(PeerEventKind.REMOVED, peer, "goodbye")
                continue
            await self._resolve(item.name)

    async def _resolve(self, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        assert self._aiozc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        self.stats.resolves += 1
        if not await info.async_request(self._aiozc.zeroconf, int(RESOLVE_TIMEOUT_S * 1000)):
            self.stats.resolve_failures += 1
            log.info("could not resolve peer %s within %.1f s", name, RESOLVE_TIMEOUT_S)
            return
        self._upsert(name, info)

    def _upsert(self, name: str, info: AsyncServiceInfo) -> None:
        from zeroconf import IPVersion

        txt = {k: v or "" for k, v in info.decoded_properties.items()}
        v4 = tuple(info.parsed_scoped_addresses(IPVersion.V4Only))
        v6 = tuple(info.parsed_scoped_addresses(IPVersion.V6Only))
        if self.ip_version == "v4":
            v6 = ()
        elif self.ip_version == "v6":
            v4 = ()
        now = self._clock()
        peer = self._peers.get(name)
        if peer is None:
            peer = Peer(name=name, node_id=txt.get("id", name), port=info.port or 0,
                        addresses_v4=v4, addresses_v6=v6, txt=txt,
                        first_seen_s=now, last_seen_s=now)
            self._peers[name] = peer
            self._publish(PeerEventKind.ADDED, peer)
            return
        peer.node_id = txt.get("id", peer.node_id)
        peer.port = info.port or peer.port
        peer.addresses_v4, peer.addresses_v6, peer.txt = v4, v6, txt
        self._publish(PeerEventKind.UPDATED, peer)

    # --- liveness -----------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            peers = list(self._peers.values())
            if peers:
                await asyncio.gather(*(self._beat(p) for p in peers))
            await asyncio.sleep(max(0.0, self.heartbeat_interval_s - (loop.time() - started)))

    async def _beat(self, peer: Peer) -> None:
        started = self._clock()
        try:
            async with asyncio.timeout(self.heartbeat_timeout_s):
                alive = await self._heartbeat(peer)
        except (TimeoutError, OSError) as e:
            log.debug("heartbeat to %s failed: %r", peer.name, e)
            alive = False
        except Exception:
            log.exception("heartbeat callback raised for %s; counted as a miss", peer.name)
            alive = False
        self.stats.heartbeats += 1
        self.observe_heartbeat(peer, alive=alive, started_s=started)

    def observe_heartbeat(self, peer: Peer, *, alive: bool, started_s: float) -> None:
        """Apply one heartbeat's result to ``peer`` (also for callers with their own
        evidence: an answered request is a heartbeat)."""
        if self._peers.get(peer.name) is not peer:
            return  # removed meanwhile
        now = self._clock()
        before = peer.state
        if alive:
            peer.misses = 0
            peer.last_seen_s = now
            peer.rtt_s = now - started_s
            peer.state = PeerState.UP
            peer.down_since_s = None
        else:
            self.stats.heartbeat_misses += 1
            peer.misses += 1
            if peer.misses >= self.down_after_misses:
                if peer.state is not PeerState.DOWN:
                    peer.down_since_s = now
                peer.state = PeerState.DOWN
            else:
                peer.state = PeerState.SUSPECT
        if peer.state is not before:
            self._publish(PeerEventKind.STATE, peer, f"{before.value} -> {peer.state.value}")
        if (peer.state is PeerState.DOWN and peer.down_since_s is not None
                and now - peer.down_since_s >= self.remove_after_s):
            del self._peers[peer.name]
            self._publish(PeerEventKind.REMOVED, peer, "down too long")


async def tcp_heartbeat(peer: Peer) -> bool:
    """A heartbeat that only checks the peer's port accepts a TCP connection."""
    for address in peer.addresses:
        try:
            _reader, writer = await asyncio.open_connection(address, peer.port)
        except OSError:
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
