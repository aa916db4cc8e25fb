"""A node's ``[mesh]`` section turned into what the server and clients use: the listen
address, the TLS contexts, the static peers. Checked once, with errors naming the key.

Blocking (reads the PEM files): call :func:`mesh_plan` in an executor from async code.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edge_runtime.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge_runtime.mesh.oip.server import ModelProvider, OipServer
    from edge_runtime.mesh.tls_reload import ReloadingTls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshPlan:
    """Where to listen and how to talk TLS; ``*_ssl`` are None in plaintext mode.

    Under TLS, ``server_ssl`` and ``client_ssl`` are ``tls``'s following contexts: new
    connections made with them use the current files (a new CRL is picked up without a
    restart; :mod:`edge_runtime.mesh.tls_reload`)."""

    host: str
    port: int
    server_ssl: ssl.SSLContext | None
    client_ssl: ssl.SSLContext | None
    peers: tuple[str, ...]
    #: What reloads the contexts (None in plaintext mode).
    tls: ReloadingTls | None = None


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8001``) as ``(host, port)``."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"mesh.listen = {listen!r} is not host:port",
                          hint="write it like 127.0.0.1:8001 or [::1]:8001")
    return host.strip("[]"), int(port_text)


def check_peer_url(url: str, where: str) -> str:
    """A peer URL: ``https://host:port`` (or ``http://`` for plaintext), no path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
            or parts.query:
        raise ConfigError(f"{where} = {url!r} is not a peer URL",
                          hint="write it like https://garage:8001 (no path)")
    return url.rstrip("/")


def tls_files(config: Any) -> Any:
    """The ``[mesh] tls_*`` files as :class:`~edge_runtime.mesh.fleet.TlsFiles`, or None
    when none is set; ConfigError when only some are."""
    from edge_runtime.mesh.fleet import TlsFiles

    mesh = config.mesh
    keys = {"tls_cert": mesh.tls_cert, "tls_key": mesh.tls_key, "tls_ca": mesh.tls_ca,
            "tls_crl": mesh.tls_crl}
    given = [k for k, v in keys.items() if v]
    if not given:
        return None
    if len(given) != 4:
        missing = [k for k in keys if k not in given]
        raise ConfigError(f"mesh.{missing[0]}: the mesh's TLS needs all of tls_cert, "
                          "tls_key, tls_ca and tls_crl",
                          hint="see docs/mesh.md for the fleet CA how-to")
    paths: dict[str, Path] = {k: config.resolve(v) for k, v in keys.items() if v}
    return TlsFiles(cert=paths["tls_cert"], key=paths["tls_key"], ca=paths["tls_ca"],
                    crl=paths["tls_crl"])


def mesh_wanted(config: Any) -> bool:
    """Whether this config uses the mesh: it serves models, names peers, discovers, or a
    pipeline offloads (``edge-runtime run`` then starts it; TLS is then required)."""
    mesh = config.mesh
    return bool(mesh.models or mesh.peers or mesh.discovery.enabled
                or any(p.offload for p in config.pipelines))


async def start_server(config: Any, plan: MeshPlan, models: ModelProvider, *,
                       on_served: Callable[[str, str, float, int], None] | None = None
                       ) -> OipServer:
    """The OIP server for ``models`` (a ``ModelProvider``) with ``[mesh]``'s limits, on
    ``plan``'s address and TLS, listening; a port that cannot be bound is a
    :class:`ConfigError` naming ``mesh.listen``."""
    from edge_runtime._version import __version__
    from edge_runtime.mesh.oip.server import OipServer, make_app

    mesh = config.mesh
    app = make_app(models, max_body_bytes=mesh.max_body_bytes,
                   max_concurrency_per_peer=mesh.max_concurrency_per_peer,
                   queue_limit=mesh.queue_limit, workers=mesh.workers,
                   default_deadline_ms=mesh.request_timeout_s * 1e3,
                   server_name=config.node.name, server_version=__version__,
                   on_served=on_served)
    server = OipServer(app, host=plan.host, port=plan.port, ssl_context=plan.server_ssl)
    try:
        await server.start()
    except OSError as exc:
        await server.close()
        raise ConfigError(f"mesh.listen = {plan.host}:{plan.port}: cannot listen: "
                          f"{exc.strerror or exc}",
                          hint="pick a free port, or stop what holds it") from exc
    return server


def check_mesh(config: Any) -> None:
    """What ``edge-runtime check`` can tell about ``[mesh]`` without reading files: the
    listen address, peer URLs, the TLS files all or none, and TLS (or
    ``insecure_plaintext``) once the section serves models or names peers."""
    mesh = config.mesh
    parse_listen(mesh.listen)
    for i, url in enumerate(mesh.peers):
        check_peer_url(url, f"mesh.peers[{i}]")
    has_tls = tls_files(config) is not None
    if mesh_wanted(config) and not has_tls and not mesh.insecure_plaintext:
        raise ConfigError(
            "mesh: peers, models, discovery or offloading are set but no TLS files, and "
            "the mesh without TLS "
            "lets anyone on the network run models",
            hint="set mesh.tls_cert, tls_key, tls_ca and tls_crl (docs/mesh.md), or "
                 "mesh.insecure_plaintext = true on a network you trust")
    https = [p for p in mesh.peers if p.startswith("https://")]
    if https and not has_tls:
        raise ConfigError(f"mesh.peers: {https[0]} is https but no TLS files are set",
                          hint="set the mesh.tls_* files, or use http:// for a plaintext "
                               "peer")


def mesh_plan(config: Any, listen: str | None = None) -> MeshPlan:
    """Check ``config.mesh`` and build the contexts; warns when plaintext is on."""
    from edge_runtime.errors import FleetError
    from edge_runtime.mesh.tls_reload import ReloadingTls

    mesh = config.mesh
    host, port = parse_listen(listen or mesh.listen)
    peers = tuple(check_peer_url(u, f"mesh.peers[{i}]") for i, u in enumerate(mesh.peers))
    files = tls_files(config)
    if files is None:
        if not mesh.insecure_plaintext:
            raise ConfigError(
                "mesh: no TLS files are set, and serving or calling peers without TLS "
                "lets anyone on the network run models",
                hint="set mesh.tls_cert, tls_key, tls_ca and tls_crl (docs/mesh.md), or "
                     "mesh.insecure_plaintext = true on a network you trust")
        check_mesh(config)
        log.warning("mesh: insecure_plaintext = true: no TLS, no authentication of peers")
        return MeshPlan(host, port, None, None, peers)
    try:
        tls = ReloadingTls(files)
        return MeshPlan(host, port, tls.server, tls.client, peers, tls)
    except FleetError as exc:
        raise ConfigError(f"mesh.tls_*: {exc.message}", hint=exc.hint) from exc
