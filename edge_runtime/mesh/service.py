"""The daemon's half of the mesh: serve models to peers, find peers, offload to them.

:class:`MeshService` is started by the daemon (``edge-runtime run``) when ``[mesh]``
serves models, discovers peers, names static peers or a pipeline offloads. It runs, on
the daemon's loop:

- the OIP server (:mod:`edge_runtime.mesh.oip.server`) for ``[mesh] models``, whose
  served requests go into the books (:class:`~edge_runtime.mesh.ledger.Ledger`);
- discovery (:class:`~edge_runtime.mesh.discovery.Discovery`), whose heartbeat is the
  peer's OIP ``/v2/health/live`` over mutual TLS, so a peer is *up* only when a fleet
  member answers; a peer found by mDNS is dialled at its address and its certificate
  must carry its node id;
- a heartbeat for each static peer (``[mesh] peers``: a garage box, a Triton);
- the :class:`~edge_runtime.mesh.offload.Offloader` that routes the runs of pipelines
  with ``offload = true``;
- a housekeeping task: the books written every few seconds while they change, and the
  trust file re-read when an operator changes it.

``[mesh]`` is read at start; a reload (SIGHUP) re-attaches the new pipelines' models but
keeps the listener, discovery and peers (a ``[mesh]`` change needs a restart; it is said
in the log).

Threads: everything on the daemon's loop; file reads and writes in executors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import EdgeRuntimeError, MeshError
from edge_runtime.mesh.ledger import Ledger
from edge_runtime.mesh.offload import Offloader, PeerLink, VerifyPolicy
from edge_runtime.mesh.scheduler import HedgePolicy
from edge_runtime.mesh.trust import TrustStore

if TYPE_CHECKING:
    from edge_runtime.config import Config
    from edge_runtime.mesh.discovery import Discovery, Peer, PeerEvent
    from edge_runtime.mesh.node import MeshPlan
    from edge_runtime.mesh.oip.client import OipClient
    from edge_runtime.mesh.oip.server import OipServer
    from edge_runtime.mesh.served import ManifestModels
    from edge_runtime.pipelines.build import Runtime

log = logging.getLogger(__name__)

#: How often the books are written while they change, and the trust file is checked.
HOUSEKEEPING_S = 2.0


def mesh_folder(config: Config) -> Path:
    """Where the mesh keeps its books and trust list (under the state folder)."""
    return config.state_dir / "mesh"


class MeshService:
    """See the module docstring. ``await start()``, ``attach(runtime)``, ``await aclose()``."""

    def __init__(self, config: Config, folder: Path, *,
                 on_security_event: Callable[[str, str, dict[str, Any]], None] | None = None
                 ) -> None:
        """``folder``: where the books and trust list live (:func:`mesh_folder`, which
        resolves paths: compute it off the loop)."""
        self.config = config
        self.plan: MeshPlan | None = None
        self.trust = TrustStore(folder)
        self.ledger = Ledger(folder)
        mesh = config.mesh
        hedge = HedgePolicy(budget_fraction=mesh.hedge_budget_fraction) if mesh.hedge \
            else None
        self.offloader = Offloader(
            trust=self.trust, ledger=self.ledger,
            verify=VerifyPolicy(fraction=mesh.verify_fraction, compare=mesh.verify_compare,
                                tolerance=mesh.verify_tolerance),
            attempt_timeout_s=mesh.attempt_timeout_s,
            request_timeout_s=mesh.request_timeout_s, hedge=hedge,
            on_security_event=on_security_event)
        self.server: OipServer | None = None
        self.provider: ManifestModels | None = None
        self.discovery: Discovery | None = None
        self._static: dict[str, PeerLink] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started_s = time.monotonic()

    # --- start and stop -----------------------------------------------------------------

    async def start(self) -> None:
        """Load the books and trust list, listen, discover, reach static peers."""
        from edge_runtime.mesh.node import mesh_plan, start_server
        from edge_runtime.mesh.served import ManifestModels

        config, mesh = self.config, self.config.mesh
        loop = asyncio.get_running_loop()
        self.plan = plan = await loop.run_in_executor(None, mesh_plan, config)
        await asyncio.to_thread(self.trust.load)
        if self.trust.damaged is not None:
            log.error("mesh: the trust list cannot be read (%s): no peer is trusted until "
                      "it is mended, or deleted to trust every fleet member again",
                      self.trust.damaged)
        await asyncio.to_thread(self.ledger.load)
        try:
            if mesh.models or mesh.discovery.enabled:
                specs = list(mesh.models)
                self.provider = await loop.run_in_executor(None, lambda: ManifestModels(specs))
                self.server = await start_server(config, plan, self.provider,
                                                 on_served=self._served)
                log.info("mesh: serving %s at %s", ", ".join(self.provider.names()) or
                         "no models", self.server.url)
            for url in plan.peers:
                link = PeerLink(url, url, self._client(url, None), "static")
                self._static[url] = link
                self.offloader.add_peer(link)
            if self._static:
                self._tasks.append(loop.create_task(self._static_heartbeats(),
                                                    name="mesh-static-heartbeat"))
            if mesh.discovery.enabled:
                await self._start_discovery()
            self._tasks.append(loop.create_task(self._housekeeping(), name="mesh-books"))
        except BaseException:
            await self.aclose()
            raise

    async def _start_discovery(self) -> None:
        from edge_runtime.mesh.discovery import Discovery

        assert self.server is not None and self.provider is not None
        disc = self.config.mesh.discovery
        port = self.server.port
        self.discovery = Discovery(
            node_name=self.config.node.name, port=port, heartbeat=self._heartbeat,
            model_names=list(self.provider.names()),
            capacity=float(self.config.mesh.workers),
            interfaces=disc.interfaces or None, ip_version=disc.ip_version,
            heartbeat_interval_s=disc.heartbeat_interval_s,
            heartbeat_timeout_s=disc.heartbeat_timeout_s,
            down_after_misses=disc.down_after_misses, remove_after_s=disc.remove_after_s)
        events = self.discovery.subscribe()
        await self.discovery.start()
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._follow(events), name="mesh-discovery-events"))

    async def aclose(self) -> None:
        """Goodbyes, then the server, the peers, and the books written."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        if self.discovery is not None:
            with contextlib.suppress(Exception):
                await self.discovery.aclose()
            self.discovery = None
        await self.offloader.aclose()
        if self.server is not None:
            await self.server.close()
            self.server = None
        if self.provider is not None:
            await asyncio.to_thread(self.provider.close)
            self.provider = None
        try:
            await asyncio.to_thread(self.ledger.write, self.ledger.snapshot())
        except OSError as exc:
            log.warning("mesh: could not write the books to %s: %s", self.ledger.path, exc)

    # --- pipelines ----------------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        """Route the models of the pipelines with ``offload = true`` (on the loop)."""
        by_id = {p.id: p for p in self.config.pipelines}
        attached: set[str] = set()
        for pipe in runtime.pipelines:
            cfg = by_id.get(pipe.pipeline_id)
            if cfg is None or not cfg.offload or pipe.model is None or cfg.model is None:
                continue
            name = pipe.model.manifest.name if pipe.model.manifest is not None \
                else Path(cfg.model).stem
            if self.offloader.attach(name, pipe.model, share=name in attached) is None:
                continue
            attached.add(name)
            log.info("mesh: pipeline %r offloads %s", pipe.pipeline_id, name)
        self.offloader.detach_others(attached)

    def reconfigure(self, config: Config) -> None:
        """A reload: the new pipelines are attached by :meth:`attach`; ``[mesh]`` itself
        is kept as it was started (said once when it changed)."""
        if config.mesh != self.config.mesh:
            log.warning("mesh: [mesh] changed; the change takes effect at the next restart")
        self.config = _with_pipelines(self.config, config)

    # --- peers --------------------------------------------------------------------------

    def _client(self, url: str, server_hostname: str | None) -> OipClient:
        from edge_runtime.mesh.oip.client import OipClient

        assert self.plan is not None
        ssl = self.plan.client_ssl if url.startswith("https://") else None
        return OipClient(url, ssl=ssl, server_hostname=server_hostname)

    def _url_of(self, peer: Peer) -> str | None:
        if not peer.addresses:
            return None
        address = peer.addresses[0]
        host = f"[{address}]" if ":" in address else address
        scheme = "https" if self.plan is not None and self.plan.client_ssl else "http"
        return f"{scheme}://{host}:{peer.port}"

    def _link_for(self, peer: Peer) -> PeerLink | None:
        """The link to a discovered peer (made on first sight). Another record claiming
        the same node id elsewhere never displaces a link that answers: only a link that
        is not up moves to a new address (the peer moved), so a stranger announcing a
        fleet member's id cannot knock it out (it would still fail the TLS check)."""
        url = self._url_of(peer)
        if url is None:
            return None
        link = self.offloader.peers.get(peer.node_id)
        if link is not None and (link.url == url or link.up):
            return link if link.url == url else None
        # Not up until it answers a heartbeat over the fleet's TLS: mDNS is hearsay.
        link = PeerLink(peer.node_id, url, self._client(url, peer.node_id), "mdns", up=False)
        self.offloader.add_peer(link)
        return link

    async def _heartbeat(self, peer: Peer) -> bool:
        """Discovery's liveness probe: the peer's OIP live endpoint over mutual TLS."""
        if peer.node_id == self.config.node.name:
            return False  # another process under our own name: never a peer
        link = self._link_for(peer)
        if link is None:
            return False
        return await self._ping(link, self.config.mesh.discovery.heartbeat_timeout_s)

    async def _ping(self, link: PeerLink, timeout_s: float) -> bool:
        started = time.monotonic()
        try:
            alive = await link.client.live(timeout_s=timeout_s)
        except MeshError as exc:
            link.last_error = str(exc)
            return False
        if alive:
            self.offloader.observe_rtt(link.peer_id, time.monotonic() - started)
            self.offloader.set_peer_up(link.peer_id, True)
            self.offloader.recheck(link.peer_id)
        return alive

    async def _follow(self, events: asyncio.Queue[PeerEvent]) -> None:
        from edge_runtime.mesh.discovery import PeerEventKind, PeerState

        while True:
            event = await events.get()
            peer = event.peer
            if peer.node_id == self.config.node.name:
                continue
            current = self.offloader.peers.get(peer.node_id)
            if current is not None and current.url != self._url_of(peer) and current.up:
                continue  # another record under a live peer's id: not that peer's news
            if event.kind is PeerEventKind.REMOVED:
                self.offloader.remove_peer(peer.node_id)
                log.info("mesh: peer %s left (%s)", peer.node_id, event.why or "goodbye")
                continue
            link = self._link_for(peer)
            if link is None:
                continue
            if event.kind is PeerEventKind.STATE:
                log.info("mesh: peer %s is %s", peer.node_id, peer.state.value)
            if peer.state is not PeerState.UP:
                self.offloader.set_peer_up(peer.node_id, False)
            # Up again is the heartbeat's word (_ping), not an mDNS record's.

    async def _static_heartbeats(self) -> None:
        disc = self.config.mesh.discovery
        misses: dict[str, int] = {}
        while True:
            for url, link in self._static.items():
                alive = await self._ping(link, disc.heartbeat_timeout_s)
                misses[url] = 0 if alive else misses.get(url, 0) + 1
                self.offloader.set_peer_up(link.peer_id,
                                           misses[url] < disc.down_after_misses)
            await asyncio.sleep(disc.heartbeat_interval_s)

    def _served(self, peer: str, model: str, compute_s: float, bytes_total: int) -> None:
        del model
        # The server names a peer by its certificate ("cn:garage"): the same id its
        # mDNS record and the books of work sent there use.
        self.ledger.served(peer.removeprefix("cn:"), compute_s=compute_s,
                           bytes_total=bytes_total)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                if self.ledger.dirty:
                    await asyncio.to_thread(self.ledger.write, self.ledger.snapshot())
                if await asyncio.to_thread(self.trust.reload_if_changed):
                    log.info("mesh: the trust list changed on disk; quarantined now: %s",
                             ", ".join(self.trust.entries()) or "nobody")
                    self.offloader.trust_changed()
            except (OSError, EdgeRuntimeError) as exc:
                log.warning("mesh: books or trust list: %s", exc)

    # --- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The mesh part of ``edge-runtime status`` (and of ``peers``)."""
        quarantined = self.trust.entries()
        books = self.ledger.as_dict()
        discovered = {p.node_id: p for p in self.discovery.peers} \
            if self.discovery is not None else {}
        peers: dict[str, Any] = {}
        for peer_id, link in self.offloader.peers.items():
            found = discovered.get(peer_id)
            state = found.state.value if found is not None else ("up" if link.up else "down")
            if state == "up" and not link.up:
                state = "unverified"  # announced, not yet answered over the fleet's TLS
            peers[peer_id] = {
                "url": link.url, "origin": link.origin, "state": state,
                "rtt_ms": None if link.rtt_s is None else round(link.rtt_s * 1e3, 3),
                "models": sorted(m for m, ok in link.models.items() if ok),
                "trust": "quarantined" if peer_id in quarantined else "trusted",
                "last_error": link.last_error,
                "books": books.get(peer_id),
            }
        for peer_id, entry in quarantined.items():
            peers.setdefault(peer_id, {"state": "unknown", "trust": "quarantined",
                                       "books": books.get(peer_id)})["quarantine"] = entry
        for peer_id, b in books.items():
            peers.setdefault(peer_id, {"state": "unknown", "trust": "trusted", "books": b})
        server = None
        if self.server is not None:
            s = self.server.stats
            server = {"url": self.server.url, "inferences": s.inferences,
                      "busy_refused": s.busy, "deadline_expired": s.deadline_expired,
                      "bad_requests": s.bad_requests}
        return {"node": self.config.node.name, "server": server,
                "trust_damaged": self.trust.damaged,
                "discovery": self.discovery is not None,
                "instance": self.discovery.instance if self.discovery is not None else None,
                "peers": peers, **self.offloader.status()}


def _with_pipelines(old: Config, new: Config) -> Config:
    """``old`` with ``new``'s pipelines (the mesh keeps its started ``[mesh]``)."""
    import msgspec

    return msgspec.structs.replace(old, pipelines=new.pipelines)
