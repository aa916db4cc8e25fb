"""MQTT topic names, and the checks a configured prefix or node name must pass.

``<prefix>/<node>/summary/<pipeline>``, ``<prefix>/<node>/event/<pipeline>`` (node-wide
events: ``<prefix>/<node>/event``), ``<prefix>/<node>/status`` (retained online/offline,
the last will) and ``<prefix>/<node>/snapshot/<pipeline>`` (the latest JPEG, retained).
``<prefix>/<node>/#`` receives everything a node sends. The default prefix is ``edge``.
"""

from __future__ import annotations


def topic_problem(topic: str, *, what: str = "topic") -> str | None:
    """Why ``topic`` cannot be used as a publish topic (prefix), or None if it can."""
    if not topic:
        return f"{what} must not be empty"
    if any(c in topic for c in "+#"):
        return f"{what} {topic!r} must not contain the wildcards + or #"
    if "\0" in topic:
        return f"{what} {topic!r} must not contain NUL"
    if topic.startswith("/") or topic.endswith("/") or "//" in topic:
        return f"{what} {topic!r} must not start or end with / or have empty levels"
    if topic.startswith("$"):
        return f"{what} {topic!r} must not start with $ (reserved by brokers)"
    if len(topic.encode()) > 1024:
        return f"{what} is longer than 1024 bytes"
    return None


def level_problem(level: str, *, what: str) -> str | None:
    """Why ``level`` cannot be one topic level (a node or pipeline id), or None."""
    problem = topic_problem(level, what=what)
    if problem is None and "/" in level:
        problem = f"{what} {level!r} must not contain /"
    return problem


class Topics:
    """The topics of one node under ``prefix``."""

    def __init__(self, prefix: str, node: str) -> None:
        self.prefix = prefix
        self.node = node
        self.base = f"{prefix}/{node}"
        self.status = f"{self.base}/status"

    def summary(self, pipeline: str | None) -> str:
        return f"{self.base}/summary/{pipeline}" if pipeline else f"{self.base}/summary"

    def event(self, pipeline: str | None) -> str:
        return f"{self.base}/event/{pipeline}" if pipeline else f"{self.base}/event"

    def snapshot(self, pipeline: str | None) -> str:
        return f"{self.base}/snapshot/{pipeline or '_node'}"

    def for_kind(self, kind: str, pipeline: str | None) -> str:
        if kind == "summary":
            return self.summary(pipeline)
        if kind == "event":
            return self.event(pipeline)
        if kind == "snapshot":
            return self.snapshot(pipeline)
        return self.status


def parse_broker_url(url: str) -> tuple[bool, str, int]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> (tls, host, port);
    ValueError saying what is wrong otherwise."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a broker URL ({exc})") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if parts.username or parts.password:
        raise ValueError(f"{url!r}: put credentials in username/password_file, not the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a broker URL has no path, query or fragment")
    tls = parts.scheme == "mqtts"
    return tls, parts.hostname, port if port is not None else (8883 if tls else 1883)
