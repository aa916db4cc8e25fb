"""The mesh's TLS contexts, following their files: a running node picks up a new CRL (or a
renewed certificate) without a restart.

:class:`ReloadingTls` holds the contexts built from a node's
:class:`~edge_runtime.mesh.fleet.TlsFiles` and hands out two stable
:class:`FollowingContext` s, ``server`` and ``client``. They are what listeners and
clients are given (``mesh_plan``'s ``server_ssl``/``client_ssl``): every new TLS
connection made with one is wrapped by the *current* context of its side, so a reload
changes every later handshake, both ways, at once.

What reloads: :meth:`ReloadingTls.refresh` stats the four files (device, inode, size,
mtime); when any changed it reads them, checks the CRL and builds both contexts anew.
Who calls it: :class:`~edge_runtime.mesh.oip.server.OipServer` polls every
``poll_interval_s`` (:data:`POLL_INTERVAL_S`) and then closes the open connections of
peers the new list refuses; :class:`~edge_runtime.mesh.oip.client.OipClient` checks
before a request, at most once per ``poll_interval_s``, and never reuses a connection
made under an older context.

A new CRL that would open the door is not installed; the list in use stays, and one
warning line is logged per change of the files:

- not a readable PEM CRL (a copy still in progress, a truncated file);
- not signed by the fleet CA;
- issued before the list in use, or in the same second and listing fewer certificates
  (an old copy would un-revoke nodes revoked since);
- files that cannot be loaded together (a key that does not match its certificate).

A CRL that is properly signed but *expired* is installed, and every peer is refused
until a current one is copied (as at start; ``edge-runtime fleet crl`` re-signs it). The
list in use expiring while the node runs has the same effect, with one warning.

Threads: the constructor and :meth:`~ReloadingTls.refresh` block (stat, read, parse,
build): call them in an executor. :meth:`~ReloadingTls.async_refresh` runs on a loop
and does that part in ``asyncio.to_thread``. Reading the current contexts,
:meth:`~ReloadingTls.admits` and the contexts' ``wrap_bio`` do no I/O (loop-safe).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_runtime.errors import FleetError

if TYPE_CHECKING:
    from edge_runtime.mesh.fleet import TlsFiles

log = logging.getLogger(__name__)

#: How often the files are looked at (seconds): the longest a change waits.
POLL_INTERVAL_S = 1.0

_Signature = tuple[tuple[int, int, int, int] | None, ...]


class FollowingContext(ssl.SSLContext):
    """An ``SSLContext`` whose new connections use its :class:`ReloadingTls`'s current
    context of the same side. Configured like that context when made, so its settings
    read true; a ``check_hostname`` set on a client one is carried to later contexts."""

    _current: ssl.SSLContext | None = None
    #: The :class:`ReloadingTls` this context follows.
    reloader: ReloadingTls

    def current(self) -> ssl.SSLContext:
        """The context new connections use now (this one until the first reload)."""
        return self._current or self

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        target = self._current
        if target is None:
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                    session)
        return target.wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    # The stdlib's signature, positional arguments and all.
    def wrap_socket(self, sock: socket.socket, server_side: bool = False,  # noqa: PLR0917
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        target = self._current
        if target is None:
            return super().wrap_socket(sock, server_side, do_handshake_on_connect,
                                       suppress_ragged_eofs, server_hostname, session)
        return target.wrap_socket(sock, server_side, do_handshake_on_connect,
                                  suppress_ragged_eofs, server_hostname, session)


@dataclass(frozen=True)
class _Crl:
    """What the loaded revocation list says (None fields: it could not be read)."""

    revoked: frozenset[int]
    last_update: dt.datetime | None
    next_update: dt.datetime | None
    #: Why it refuses every peer whatever the date (not signed by the CA), else None.
    refuses_all: str | None
    ca_sha256: str


def _signature(files: TlsFiles) -> _Signature:
    out: list[tuple[int, int, int, int] | None] = []
    for path in (files.crl, files.ca, files.cert, files.key):
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _read_crl(files: TlsFiles) -> _Crl:
    """Read and check the CRL against the CA (blocking); FleetError when unusable."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        crl_pem, ca_pem = files.crl.read_bytes(), files.ca.read_bytes()
    except OSError as exc:
        raise FleetError(f"cannot read {exc.filename}: {exc.strerror or exc}") from exc
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as exc:
        raise FleetError(f"{files.crl} is not a PEM revocation list (a copy still in "
                         "progress, or a truncated file?)") from exc
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise FleetError(f"the fleet CA {files.ca} is not a PEM certificate") from exc
    try:
        signed = crl.issuer == ca.subject and crl.is_signature_valid(
            ca.public_key())  # type: ignore[arg-type]
    except (InvalidSignature, UnsupportedAlgorithm, TypeError):
        signed = False
    return _Crl(revoked=frozenset(r.serial_number for r in crl),
                last_update=crl.last_update_utc, next_update=crl.next_update_utc,
                refuses_all=None if signed else f"{files.crl} is not signed by the fleet "
                                                f"CA {files.ca}",
                ca_sha256=hashlib.sha256(ca_pem).hexdigest())


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "unknown"


class ReloadingTls:
    """A node's mesh TLS contexts, rebuilt when its files change (module docstring).

    ``files``: the node's four files; ``check_hostname``: the client side checks the
    server's name against the URL; ``poll_interval_s``: the least time between two looks
    at the files. Blocking (reads the files); FleetError when they cannot be loaded.
    """

    def __init__(self, files: TlsFiles, *, check_hostname: bool = True,
                 poll_interval_s: float = POLL_INTERVAL_S) -> None:
        from edge_runtime.mesh.fleet import load_into

        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be positive, got {poll_interval_s}")
        self.files = files
        self.poll_interval_s = poll_interval_s
        #: Bumped at every reload that changed the contexts.
        self.generation = 0
        self._lock = threading.Lock()
        self._next_check_s = 0.0
        self._signature = _signature(files)
        self.server = load_into(FollowingContext(ssl.PROTOCOL_TLS_SERVER), files)
        self.client = load_into(FollowingContext(ssl.PROTOCOL_TLS_CLIENT), files)
        self.client.check_hostname = check_hostname
        self.server.reloader = self.client.reloader = self
        try:
            self._crl = _read_crl(files)
        except FleetError as exc:  # OpenSSL loaded it; refuse as it will
            self._crl = _Crl(frozenset(), None, None, exc.message, "")
        self._expiry_warned = False
        if self._crl.refuses_all is not None:
            log.warning("mesh TLS: %s: every peer is refused until the fleet's crl.pem is "
                        "copied", self._crl.refuses_all)
        self._warn_if_expired()

    # -- on the loop (no I/O) ---------------------------------------------------------

    def admits(self, serial: int | None) -> bool:
        """Whether the list in use lets a peer with certificate ``serial`` in (None: a
        peer without a certificate, never let in)."""
        crl = self._crl
        if serial is None or crl.refuses_all is not None or serial in crl.revoked:
            return False
        return crl.next_update is None or crl.next_update > dt.datetime.now(dt.UTC)

    async def async_refresh(self, *, force: bool = False) -> bool:
        """:meth:`refresh` in a thread, unless the files were looked at less than
        ``poll_interval_s`` ago (``force``: look anyway). True when the contexts changed."""
        now = time.monotonic()
        if not force and now < self._next_check_s:
            return False
        self._next_check_s = now + self.poll_interval_s
        return await asyncio.to_thread(self.refresh)

    # -- blocking -----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Reload when the files changed (blocking). True when the contexts changed."""
        with self._lock:
            signature = _signature(self.files)
            if signature == self._signature:
                self._warn_if_expired()
                return False
            try:
                installed = self._reload()
            except Exception as exc:  # never let a bad file stop the watching
                log.warning("mesh TLS: the files changed but cannot be loaded: %s; still "
                            "using %s", exc.message if isinstance(exc, FleetError) else exc,
                            self._in_use())
                installed = False
            if _signature(self.files) != signature:
                return installed  # changed while read: judged again at the next look
            self._signature = signature
            return installed

    def _reload(self) -> bool:
        from edge_runtime.mesh.fleet import client_context, server_context

        try:
            crl = _read_crl(self.files)
        except FleetError as exc:
            log.warning("mesh TLS: %s; still using %s", exc.message, self._in_use())
            return False
        if crl.refuses_all is not None:
            log.warning("mesh TLS: %s; still using %s", crl.refuses_all, self._in_use())
            return False
        old = self._crl
        if old.last_update is not None and crl.last_update is not None and \
                crl.ca_sha256 == old.ca_sha256 and (crl.last_update < old.last_update or (
                    crl.last_update == old.last_update and not crl.revoked >= old.revoked)):
            # Older, or as old (CRL times are whole seconds) and listing fewer.
            log.warning("mesh TLS: %s is older than the list in use (issued %s, %s; "
                        "it lists %d certificate(s)): an old copy would let back nodes "
                        "revoked since; still using %s", self.files.crl,
                        _when(crl.last_update), "the same second" if
                        crl.last_update == old.last_update else "before", len(crl.revoked),
                        self._in_use())
            return False
        server = server_context(self.files)
        client = client_context(self.files, check_hostname=self.client.check_hostname)
        # Swapped before the list, so admits() is never laxer than the new handshakes.
        self.server._current, self.client._current = server, client
        self._crl = crl
        self._expiry_warned = False
        self.generation += 1
        log.info("mesh TLS: loaded %s (issued %s): %d certificate(s) revoked",
                 self.files.crl, _when(crl.last_update), len(crl.revoked))
        self._warn_if_expired()
        return True

    def _in_use(self) -> str:
        crl = self._crl
        return (f"the list issued {_when(crl.last_update)}, which revokes {len(crl.revoked)} "
                "certificate(s)")

    def _warn_if_expired(self) -> None:
        next_update = self._crl.next_update
        if self._expiry_warned or next_update is None or \
                next_update > dt.datetime.now(dt.UTC):
            return
        self._expiry_warned = True
        log.warning("mesh TLS: the CRL in use (%s) expired at %s: every peer is refused "
                    "until a current one is copied ('edge-runtime fleet crl' re-signs it)",
                    self.files.crl, _when(next_update))


def peer_serial(peercert: object) -> int | None:
    """The serial number in an ``ssl`` peer certificate dict (``getpeercert()``)."""
    if not isinstance(peercert, dict):
        return None
    text = peercert.get("serialNumber")
    try:
        return int(text, 16) if isinstance(text, str) else None
    except ValueError:
        return None


__all__ = ["POLL_INTERVAL_S", "FollowingContext", "ReloadingTls", "peer_serial"]
