"""Who may look and who may act: loopback, the bearer token, the session cookie, CSRF.

The rules (docs/web.md):

- On a loopback address nothing is asked, but the ``Host`` header must name a loopback
  host, so a web page that rebinds its DNS name to 127.0.0.1 gets nothing.
- On any other address every request needs the token: ``Authorization: Bearer TOKEN``
  (Prometheus, scripts), or the session cookie that ``/?token=TOKEN`` sets (a browser;
  ``edge-runtime web token`` prints that link). The cookie is ``SID.SIGNATURE``, signed
  with the token, so rotating the token logs every browser out.
- A POST action also needs a same-origin request (``Sec-Fetch-Site`` when the browser
  sends it, else ``Origin`` equal to the server's own) and the session's CSRF token in
  ``X-CSRF-Token`` (an HMAC of the session id; the page reads it from ``/api/status``).

Everything here is plain functions over strings and bytes; the token file is read and
written by blocking helpers the server runs in an executor.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from edge_runtime.errors import WebConfigError, WebTokenError
from edge_runtime.files import write_atomic

#: Name of the session cookie (HttpOnly, SameSite=Strict; Secure over HTTPS).
SESSION_COOKIE = "edge_session"
#: Header that carries the CSRF token of a POST.
CSRF_HEADER = "X-CSRF-Token"
#: Bytes of randomness in a new token (printed as 43 URL-safe characters).
TOKEN_BYTES = 32
#: A token file is read up to this size (a token is one short line).
MAX_TOKEN_FILE_BYTES = 4096


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) as ``(host, port)``."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise WebConfigError(f"web.listen = {listen!r} is not host:port",
                             hint="write it like 127.0.0.1:8080 or [::1]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise WebConfigError(f"web.listen = {listen!r}: port {port} is out of range",
                             hint="use a port from 1 to 65535 (0: any free port)")
    return host, port


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs (127.0.0.0/8, ::1); any other name or
    address (``0.0.0.0``: every interface) is not."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


# -- the token file (blocking: run in an executor) --------------------------------------


def read_token(path: Path) -> str | None:
    """The token stored in ``path`` (first line), None if the file does not exist."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TOKEN_FILE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WebTokenError(f"cannot read the web token {path}: {exc.strerror}") from exc
    token = data.decode("utf-8", "replace").strip().splitlines()[0] if data.strip() else ""
    if len(token) < 16:
        raise WebTokenError(f"the web token in {path} is shorter than 16 characters",
                            hint="run 'edge-runtime web token --new CONFIG' for a new one")
    return token


def create_token(path: Path) -> str:
    """Write a new random token to ``path`` (mode 0600, atomically); returns it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (token + "\n").encode(), mode=0o600)
    except OSError as exc:
        raise WebTokenError(f"cannot write the web token {path}: {exc}") from exc
    return token


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``, created first if missing; ``(token, created)``."""
    token = read_token(path)
    if token is not None:
        return token, False
    return create_token(path), True


# -- sessions and CSRF ------------------------------------------------------------------


class Guard:
    """Decides, per request, whether it is authenticated and whether a POST may act.

    ``token``: the bearer token (None: nobody is asked for one, which only a loopback
    server allows). ``key``: what signs session cookies and CSRF tokens (the token when
    there is one, else random bytes for this process).
    """

    def __init__(self, *, token: str | None, required: bool) -> None:
        if required and token is None:
            raise WebConfigError("a web server off loopback needs a token")
        self.required = required
        self._token = token
        self._key = token.encode() if token is not None else secrets.token_bytes(32)

    def _sign(self, purpose: str, value: str) -> str:
        mac = hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def token_ok(self, given: str | None) -> bool:
        """Whether ``given`` is the token (constant time)."""
        if self._token is None or not given:
            return False
        return hmac.compare_digest(given.encode(), self._token.encode())

    def new_session(self) -> str:
        """A fresh cookie value ``SID.SIGNATURE``."""
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{self._sign('session', sid)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid cookie value, else None."""
        if not cookie or "." not in cookie or len(cookie) > 200:
            return None
        sid, _, sig = cookie.partition(".")
        return sid if hmac.compare_digest(sig, self._sign("session", sid)) else None

    def csrf_token(self, sid: str) -> str:
        """The CSRF token of session ``sid``."""
        return self._sign("csrf", sid)

    def authenticated(self, authorization: str | None, cookie: str | None) -> bool:
        """Whether a request with these headers may read (always, when not required)."""
        if not self.required:
            return True
        if authorization and authorization[:7].lower() == "bearer ":
            return self.token_ok(authorization[7:].strip())
        return self.session_id(cookie) is not None

    def may_act(self, *, cookie: str | None, csrf: str | None, origin: str | None,
                fetch_site: str | None, own_origin: str) -> str | None:
        """None if a POST with these headers may act, else why not (one sentence)."""
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return f"a {fetch_site} request may not act (Sec-Fetch-Site)"
        if origin is None and fetch_site is None:
            return "a request without Origin or Sec-Fetch-Site may not act"
        if origin is not None and origin != own_origin:
            return f"a request from origin {origin} may not act"
        sid = self.session_id(cookie)
        if sid is None:
            return "no session: load the page first"
        if not csrf or not hmac.compare_digest(csrf, self.csrf_token(sid)):
            return "the CSRF token is missing or wrong: reload the page"
        return None


def host_allowed(host_header: str | None, *, required: bool, listen_host: str) -> bool:
    """Whether the ``Host`` header is acceptable: anything when a token is required (the
    token is the defence), else a loopback name or the address listened on."""
    if required:
        return True
    if not host_header:
        return False
    host = host_of(host_header)
    return is_loopback(host) or host == listen_host


def token_file_mode_ok(path: Path) -> bool:
    """Blocking: whether only the owner may read the token file."""
    try:
        return os.stat(path).st_mode & 0o077 == 0
    except OSError:
        return False
