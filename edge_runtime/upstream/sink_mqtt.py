"""The MQTT sink (paho-mqtt, MQTT v5, QoS 1), with optional Home Assistant discovery.

Rules it keeps (facts measured with paho-mqtt 2.2 and mosquitto 2.0):

- A row is confirmed **only** from ``on_publish``'s reason code (PUBACK). paho's
  ``wait_for_publish()``/``is_published()`` report success even for a publish the broker
  refused (reason code 135, not authorized); a failure reason code is a refusal: the row
  stays in the outbox and is retried after a backoff.
- Nothing is published while disconnected: paho would queue it in memory. Each
  connection is a fresh paho client (clean start, no session), so paho's memory is never
  the record; on connect the driver resends what the outbox still holds, in order.
- Delivery uses only what MQTT 3.1.1 also has (QoS 1, PUBACK, retained messages, a last
  will), so bridges and clusters upstream work; v5 reason codes are a bonus.
- Reconnects use our own capped, jittered backoff (paho's reconnect is off). Wrong
  credentials, a TLS failure, an unreachable host give one clear log line (repeats are
  rate-limited) and a retry schedule, never a crash.
- ``<prefix>/<node>/status`` is retained: ``online`` when connected, ``offline`` on a
  clean close and as the last will.

Threads: none of paho's own. The client runs in paho's "external event loop" mode on
the asyncio loop (as aiomqtt does): the loop watches its non-blocking socket and calls
``loop_read``/``loop_write``, plus ``loop_misc`` every second, so every paho call and
callback happens on the loop thread and no lock is ever contended there. Only
connecting (DNS, TCP, TLS handshake, loading certificates) runs on this sink's own
one-thread executor, joined by :meth:`MqttSink.close`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_runtime.upstream.backoff import Backoff, RateLimitedLog
from edge_runtime.upstream.ha_discovery import PipelineInfo, discovery_configs
from edge_runtime.upstream.outbox import Row
from edge_runtime.upstream.schema import MessageFactory, Status, encode
from edge_runtime.upstream.sink import SinkLink
from edge_runtime.upstream.topics import Topics

log = logging.getLogger(__name__)

#: A connection that lasted this long resets the reconnect backoff.
STABLE_CONNECTION_S = 10.0


def describe_connect_error(exc: BaseException) -> str:
    """A short, specific reason for a failed connection attempt."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "connection timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class MqttSink:
    """Publishes outbox rows to an MQTT broker; see the module docstring."""

    max_batch = 200

    def __init__(self, *, node: str, host: str, port: int, factory: MessageFactory,
                 tls: bool = False, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, username: str | None = None,
                 password: str | None = None, client_id: str | None = None,
                 topic_prefix: str = "edge", keepalive_s: int = 30,
                 connect_timeout_s: float = 5.0, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 60.0, max_in_flight: int = 100,
                 snapshot_dir: Path | None = None, io_executor: concurrent.futures.Executor
                 | None = None, home_assistant: bool = False,
                 ha_prefix: str = "homeassistant", pipelines: Sequence[PipelineInfo] = (),
                 status_extra: Callable[[], dict[str, Any]] | None = None,
                 name: str = "mqtt") -> None:
        self.name = name
        self.node = node
        self.host, self.port = host, port
        self.factory = factory
        self.tls, self.ca_file, self.cert_file, self.key_file = tls, ca_file, cert_file, key_file
        self.username, self.password = username, password
        self.client_id = client_id or f"edge-runtime-{node}"
        self.topics = Topics(topic_prefix, node)
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self.max_in_flight = max_in_flight
        self.snapshot_dir = snapshot_dir
        self.home_assistant = home_assistant
        self.ha_prefix = ha_prefix
        self.pipelines = list(pipelines)
        self.status_extra = status_extra
        self._io = io_executor
        self._connect_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"upstream-{name}-connect")
        self._link: SinkLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._sock: Any = None
        self._connecting: Any = None
        self._misc: asyncio.TimerHandle | None = None
        self._loop_tid = -1
        self._gen = 0
        self._connected = False
        self._closing = False
        self._mids: dict[int, Row] = {}
        self._connack: asyncio.Future[Any] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._control: dict[int, asyncio.Future[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._rlog = RateLimitedLog(log)
        self.url = f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"
        self.discovery_published = 0
        self.last_connect_error: str | None = None

    # -- Sink interface --------------------------------------------------------------------

    async def start(self, link: SinkLink) -> None:
        self._link = link
        self._loop = asyncio.get_running_loop()
        self._loop_tid = threading.get_ident()
        self._task = self._loop.create_task(self._supervise(), name=f"upstream-{self.name}")
        self._task.add_done_callback(self._task_done)

    def ready(self) -> bool:
        return self._connected and not self._closing

    async def send(self, rows: Sequence[Row]) -> None:
        for row in rows:
            if not self.ready():
                return  # the driver forgets what is in flight on disconnect
            topic = self.topics.for_kind(row.kind, row.pipeline)
            payload: bytes | None = bytes(row.body)
            retain = False
            if row.kind == "snapshot":
                payload = await self._snapshot_bytes(row)
                retain = True
                if payload is None:  # the file went (cap): nothing left to publish
                    assert self._link is not None
                    self._link.confirmed([row])
                    continue
                if not self.ready():
                    return
            info = self._client.publish(topic, payload, qos=1, retain=retain)
            self._mids[info.mid] = row

    async def close(self, timeout_s: float) -> None:
        self._closing = True
        self._wakeup.set()
        client = self._client
        if client is not None and self._connected:
            try:
                mid = client.publish(self.topics.status, self._status_payload("offline"),
                                     qos=1, retain=True).mid
                await asyncio.wait_for(self._control_future(mid), timeout_s / 2)
            except (TimeoutError, RuntimeError, ValueError):
                pass
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout_s / 2)
        await self._stop_client()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._connect_pool.shutdown, True)
        late = self._connecting
        if late is not None and late is not self._client:
            # close() came while a connect was under way: nobody else will close it.
            self._gen += 1
            self._unwatch()
            sock = late.socket()
            if sock is not None:
                sock.close()

    def status(self) -> dict[str, Any]:
        return {"type": "mqtt", "url": self.url, "client_id": self.client_id,
                "topics": f"{self.topics.base}/#", "paho_in_flight": len(self._mids),
                "home_assistant": self.home_assistant,
                "discovery_published": self.discovery_published}

    # -- connection supervisor (loop) ------------------------------------------------------

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("upstream sink %s supervisor died: %r", self.name, task.exception())

    async def _supervise(self) -> None:
        assert self._link is not None and self._loop is not None
        link, loop = self._link, self._loop
        while not self._closing:
            self._gen += 1
            gen = self._gen
            self._connack = loop.create_future()
            self._lost = loop.create_future()
            try:
                client = await loop.run_in_executor(self._connect_pool, self._connect, gen)
            except asyncio.CancelledError:
                raise
            except (OSError, ValueError) as exc:
                self._connect_failed(describe_connect_error(exc))
                await self._sleep(self.backoff.next_delay_s())
                continue
            self._client = client
            self._misc = loop.call_later(1.0, self._tick, gen)
            try:
                reason, _props = await asyncio.wait_for(asyncio.shield(self._connack),
                                                       self.connect_timeout_s)
            except TimeoutError:
                reason, _props = None, None
            if reason is None or reason.is_failure:
                why = ("no CONNACK from the broker" if reason is None
                       else f"the broker refused the connection: {reason.getName()} "
                            f"(reason code {reason.value})")
                if reason is not None and reason.value in (134, 135):
                    why += "; check upstream.mqtt username/password (and the broker's ACL)"
                await self._stop_client()
                self._connect_failed(why)
                await self._sleep(self.backoff.next_delay_s())
                continue
            up_since = time.monotonic()
            self._connected = True
            self.last_connect_error = None
            self._rlog.forget("connect")
            log.info("upstream %s connected to %s as %s", self.name, self.url, self.client_id)
            client.publish(self.topics.status, self._status_payload("online"), qos=1,
                           retain=True)
            if self.home_assistant:
                client.subscribe(f"{self.ha_prefix}/status", qos=1)
                self._publish_discovery()
            link.connected()
            why_lost = await self._lost
            self._connected = False
            self._mids.clear()
            if not self._closing:
                link.disconnected(why_lost)
            await self._stop_client()
            if time.monotonic() - up_since >= STABLE_CONNECTION_S:
                self.backoff.reset()
            if not self._closing:
                await self._sleep(self.backoff.next_delay_s())

    def _connect_failed(self, why: str) -> None:
        assert self._link is not None
        self.last_connect_error = why
        self._link.disconnected(why)
        self._rlog.log(logging.WARNING, "connect",
                       "upstream %s cannot connect to %s: %s; retrying with backoff "
                       "(up to %.1f s), messages keep filling the outbox",
                       self.name, self.url, why, self.backoff.max_s)

    async def _sleep(self, delay_s: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), delay_s)

    async def _stop_client(self) -> None:
        client = self._client
        self._client = None
        self._connected = False
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if client is None:
            return
        self._gen += 1  # late callbacks of this client are ignored from now on
        client.disconnect()
        client.loop_write()  # the DISCONNECT, if the socket takes it now
        self._unwatch()
        sock = client.socket()
        if sock is not None:
            sock.close()

    # -- the socket, watched by the loop ---------------------------------------------------

    def _watch(self, client: Any, sock: Any) -> None:
        assert self._loop is not None
        self._unwatch()
        self._sock = sock
        pending = getattr(sock, "pending", None)

        def readable() -> None:
            client.loop_read()
            # TLS may hold decrypted bytes the selector cannot see.
            while pending is not None and self._sock is sock and pending() > 0:
                client.loop_read()

        self._loop.add_reader(sock, readable)

    def _watch_write(self, client: Any, sock: Any, on: bool) -> None:
        assert self._loop is not None
        if sock is not self._sock:
            return
        if on:
            self._loop.add_writer(sock, client.loop_write)
        else:
            self._loop.remove_writer(sock)

    def _unwatch(self, sock: Any = None) -> None:
        if self._sock is None or (sock is not None and sock is not self._sock):
            return
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
        self._sock = None

    def _tick(self, gen: int) -> None:
        """Keep-alive pings and paho's timeouts, once a second."""
        if gen != self._gen or self._client is None or self._loop is None:
            return
        self._client.loop_misc()
        self._misc = self._loop.call_later(1.0, self._tick, gen)

    # -- the paho client (built and connected on the connect thread) -----------------------

    def _connect(self, gen: int) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file,
                           keyfile=self.key_file, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.will_set(self.topics.status, self._status_payload("offline"), qos=1,
                        retain=True)
        client.connect_timeout = self.connect_timeout_s
        # paho keeps the rest of a window beyond this in memory while connected: fine,
        # the outbox stays the record. 20 is mosquitto's default receive maximum.
        client.max_inflight_messages_set(min(self.max_in_flight, 20))
        # External event loop: the asyncio loop does the socket I/O (see the docstring).
        client.on_socket_open = lambda c, u, sock: self._hop(gen, self._watch, c, sock)
        client.on_socket_close = lambda c, u, sock: self._hop(gen, self._unwatch, sock)
        client.on_socket_register_write = lambda c, u, sock: self._hop(
            gen, self._watch_write, c, sock, True)
        client.on_socket_unregister_write = lambda c, u, sock: self._hop(
            gen, self._watch_write, c, sock, False)
        client.on_connect = lambda c, u, flags, rc, props: self._hop(
            gen, self._on_connack, rc, props)
        client.on_disconnect = lambda c, u, flags, rc, props: self._hop(
            gen, self._on_lost, f"{rc.getName()} (reason code {rc.value})"
            if getattr(rc, "value", 0) else "connection lost")
        client.on_publish = lambda c, u, mid, rc, props: self._hop(gen, self._on_puback,
                                                                   mid, rc)
        client.on_message = lambda c, u, msg: self._hop(gen, self._on_message, msg.topic,
                                                        msg.payload)
        self._connecting = client
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        client.connect(self.host, self.port, keepalive=self.keepalive_s, clean_start=True,
                       properties=props)
        return client

    def _hop(self, gen: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on the loop (at once when already there, as paho's callbacks are
        once connected); callbacks of an old client are dropped."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_tid:
            if gen == self._gen:
                fn(*args)
            return

        def run() -> None:
            if gen == self._gen:
                fn(*args)

        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(run)

    # -- callbacks, on the loop ------------------------------------------------------------

    def _on_connack(self, reason: Any, props: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((reason, props))

    def _on_lost(self, why: str) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((None, None))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)

    def _on_puback(self, mid: int, reason: Any) -> None:
        control = self._control.pop(mid, None)
        if control is not None:
            if not control.done():
                control.set_result(reason)
            return
        row = self._mids.pop(mid, None)
        if row is None or self._link is None:
            return  # the status or a discovery config
        if reason.is_failure:
            self._link.refused([row], f"{reason.getName()} (reason code {reason.value}) on "
                                      f"{self.topics.for_kind(row.kind, row.pipeline)}")
        else:
            self._link.confirmed([row])

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == f"{self.ha_prefix}/status" and payload.strip() == b"online":
            log.info("Home Assistant came online: re-sending the discovery configs")
            self._publish_discovery()

    def _control_future(self, mid: int) -> asyncio.Future[Any]:
        assert self._loop is not None
        fut = self._loop.create_future()
        self._control[mid] = fut
        return fut

    def _publish_discovery(self) -> None:
        if not self.ready():
            return
        for topic, payload in discovery_configs(node=self.node, topics=self.topics,
                                                pipelines=self.pipelines,
                                                ha_prefix=self.ha_prefix):
            self._client.publish(topic, json.dumps(payload), qos=1, retain=True)
            self.discovery_published += 1

    def _status_payload(self, state: str) -> bytes:
        # Live statuses are not stored in the outbox: seq 0 says so.
        extra = self.status_extra() if self.status_extra and state == "online" else {}
        return encode(Status(**self.factory.header(), state=state,
                             sinks=extra.get("sinks", {}), lost=extra.get("lost", {}),
                             version=extra.get("version", "")))

    async def _snapshot_bytes(self, row: Row) -> bytes | None:
        if self.snapshot_dir is None:
            return None
        name = json.loads(row.body).get("file", "")
        path = self.snapshot_dir / Path(name).name

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except OSError:
                return None

        return await asyncio.get_running_loop().run_in_executor(self._io, read)
