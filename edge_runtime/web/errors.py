"""The web room's typed errors (rooted at :class:`~edge_runtime.errors.EdgeRuntimeError`)."""

from __future__ import annotations

from edge_runtime.errors import EdgeRuntimeError


class WebError(EdgeRuntimeError):
    """Base of every error about the node's web server."""


class WebConfigError(WebError, ValueError):
    """``[web]`` asks for something unsafe or impossible (a LAN address without HTTPS)."""

    hint = "see docs/web.md for [web] listen, tls_cert and tls_key"


class WebStartError(WebError, OSError):
    """The web server could not listen (address in use, a certificate that does not load)."""

    hint = "pick another [web] listen port, or stop what holds it"


class WebTokenError(WebError, OSError):
    """The token file cannot be read or written."""

    hint = "check that the state folder is writable by the daemon's user"
