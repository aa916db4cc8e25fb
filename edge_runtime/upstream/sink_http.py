"""The HTTP(S) webhook sink (aiohttp's client): POSTs batches of messages as JSON.

Body: ``{"node": ..., "messages": [message, ...]}`` (each message as in
docs/reporting.md), header ``Idempotency-Key`` = the first and last message ids. A batch
is confirmed on a 2xx answer only; any other status, a timeout or a connection error
refuses the batch: its rows stay in the outbox and the driver retries them after a
capped, jittered backoff. Snapshot rows are sent as their metadata (no JPEG bytes).
Runs entirely on the loop (aiohttp is asyncio-native).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge_runtime.upstream.outbox import Row
from edge_runtime.upstream.sink import SinkLink


class HttpSink:
    """POSTs batches to ``url``; see the module docstring."""

    def __init__(self, *, url: str, node: str, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 10.0, max_batch: int = 100, ca_file: str | None = None,
                 name: str = "http") -> None:
        self.name = name
        self.url = url
        self.node = node
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.max_in_flight = max_batch  # one batch at a time keeps the order
        self.ca_file = ca_file
        self._session: Any = None
        self._link: SinkLink | None = None
        self._ssl: Any = None
        self.posts = 0
        self.last_status: int | None = None

    async def start(self, link: SinkLink) -> None:
        import aiohttp

        self._link = link
        if self.ca_file:
            import asyncio
            import ssl

            # Loading a CA file reads the disk: off the loop.
            self._ssl = await asyncio.get_running_loop().run_in_executor(
                None, lambda: ssl.create_default_context(cafile=self.ca_file))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"Content-Type": "application/json", **self.headers})
        link.connected()

    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    async def send(self, rows: Sequence[Row]) -> None:

        import aiohttp

        assert self._link is not None
        body = (b'{"node":' + _json_str(self.node) + b',"messages":['
                + b",".join(bytes(r.body) for r in rows) + b"]}")
        key = rows[0].id if len(rows) == 1 else f"{rows[0].id}..{rows[-1].id}"
        try:
            async with self._session.post(self.url, data=body, ssl=self._ssl,
                                          headers={"Idempotency-Key": key}) as resp:
                self.posts += 1
                self.last_status = resp.status
                await resp.read()
                if 200 <= resp.status < 300:
                    self._link.confirmed(rows)
                else:
                    self._link.refused(rows, f"HTTP {resp.status} {resp.reason} from "
                                             f"{self.url}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._link.refused(rows, f"POST {self.url} failed: {exc!r}")

    async def close(self, timeout_s: float) -> None:
        if self._session is not None:
            await self._session.close()

    def status(self) -> dict[str, Any]:
        return {"type": "http", "url": self.url, "posts": self.posts,
                "last_http_status": self.last_status}


def _json_str(text: str) -> bytes:
    import json

    return json.dumps(text).encode()
