"""The asyncio client: one microcontroller, its samples and its commands.

::

    async with BridgeClient(port="/dev/serial/by-id/usb-...") as dev:
        print(dev.hello)
        await dev.set_rate("accel", 100.0)
        async for sample in dev.samples():
            ...

Background work lives in one :class:`asyncio.TaskGroup` per client, held by one root
task (``firmware_bridge.client``) on the loop that called :meth:`BridgeClient.start`.
Its named tasks: ``firmware_bridge.supervisor`` finds the port, opens it, asks for
HELLO, re-applies the rates the host asked for (a device that rebooted or was unplugged
comes back at its own defaults), sends heartbeats, and when the device goes away (a
link error: read error, EOF, or no frame for ``liveness_timeout_s``) closes the port
and tries again with capped, jittered backoff; ``firmware_bridge.reapply_settings``
re-applies them after an unasked HELLO (a reboot behind an open port). Sample
iterators survive reconnects. The reader is the transport's ``add_reader`` callback.

A task that fails with anything but a link error takes the whole client down, loudly:
the error is logged, :meth:`BridgeClient.start`, sample iterators and commands raise
it (a non-bridge error wrapped in :class:`~firmware_bridge.errors.BackgroundTaskError`,
``from`` the original) and :attr:`BridgeClient.closed` holds it. There is no
half-alive client.

Everything runs on the loop and nothing blocks it: reads and writes are non-blocking
and only opening the port and listing USB ports run in executor threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from firmware_bridge.clock import DeviceClock
from firmware_bridge.errors import (
    BackgroundTaskError,
    BridgeConfigError,
    BridgeError,
    CommandRejectedError,
    CommandTimeoutError,
    DeviceDisconnectedError,
    HelloTimeoutError,
    LinkError,
    UnknownChannelError,
)
from firmware_bridge.framing import DecoderStats, FrameDecoder
from firmware_bridge.protocol import (
    SEQ_MODULO,
    Ack,
    ChannelInfo,
    EnvelopeBatch,
    Frame,
    GetHello,
    GpioWrite,
    Heartbeat,
    Hello,
    Message,
    Nack,
    NackReason,
    SampleBatch,
    SetEnvelope,
    SetRate,
    check_rate,
    encode_frame,
)
from firmware_bridge.timing import DEFAULT_TIMING, Timing
from firmware_bridge.transport import PortInfo, SerialTransport, UsbId, locate_port

_log = logging.getLogger(__name__)

#: Sample batches (frames) a subscriber may fall behind before the oldest are dropped.
DEFAULT_QUEUE_BATCHES = 1024


class Sample(msgspec.Struct, frozen=True):
    """One sample of one channel, with device and host timestamps.

    With the channel's peak-hold envelope on (:meth:`BridgeClient.set_envelope`),
    ``mins`` and ``maxs`` hold, per element, the smallest and largest value the device
    measured since the previous sample of this channel, this one included, so a spike
    between two samples still shows. Without it (or on a device that lacks the mode)
    they are None.
    """

    channel: int
    channel_name: str
    #: Per-channel counter from the device (restarts at 0 when the device boots).
    index: int
    #: Device clock, microseconds since its boot (unwrapped, no 2**32 wrap).
    device_time_us: int
    #: The same instant on the host's ``time.monotonic()`` clock, seconds.
    host_time_s: float
    values: tuple[float, ...]
    mins: tuple[float, ...] | None = None
    maxs: tuple[float, ...] | None = None


@dataclass(slots=True)
class ChannelStats:
    """Counters of one channel since the client started."""

    frames_received: int = 0
    samples_received: int = 0
    #: Samples missing from the device's per-channel index sequence (lost on the link).
    samples_lost: int = 0
    #: Samples dropped on the host because a subscriber did not keep up.
    samples_dropped_host: int = 0
    #: Index expected next; None right after (re)connecting.
    next_index: int | None = None


@dataclass(slots=True)
class BridgeStats:
    """Link and channel counters of one client.

    Frame-level errors (CRC, COBS, oversize) cannot be charged to a channel, since the
    channel byte of a damaged frame is not trustworthy; they are link counters in
    :attr:`decoder`. Per-channel loss is counted exactly from sample indices.
    """

    decoder: DecoderStats
    #: Frames missing from the device's sequence numbers (includes damaged ones).
    frames_lost: int = 0
    #: Successful connections after the first one.
    reconnects: int = 0
    #: HELLOs that arrived unasked: the device rebooted without the port closing.
    device_restarts: int = 0
    #: Frames the device reported it could not send (its TX buffer was full).
    device_tx_dropped: int = 0
    commands_sent: int = 0
    command_retries: int = 0
    #: Sample frames that do not fit the device's HELLO (another width, or a channel it
    #: did not announce): not delivered. The firmware changed under an open port, so a
    #: fresh HELLO is asked for (at most once a second) and taken as a restart.
    frames_misfit: int = 0
    channels: dict[int, ChannelStats] = field(default_factory=dict)

    def channel(self, channel: int) -> ChannelStats:
        """Return (creating if needed) the counters of ``channel``."""
        stats = self.channels.get(channel)
        if stats is None:
            stats = self.channels[channel] = ChannelStats()
        return stats


_Batch = tuple[Sample, ...]


class _Subscriber:
    __slots__ = ("channel", "queue")

    def __init__(self, channel: int | None, maxsize: int) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize)


class BridgeClient:
    """Async client of one device speaking the bridge protocol over a serial port."""

    def __init__(
        self,
        *,
        port: str | None = None,
        usb_id: str | UsbId | None = None,
        baudrate: int = 115200,
        timing: Timing = DEFAULT_TIMING,
        reconnect: bool = True,
        queue_batches: int = DEFAULT_QUEUE_BATCHES,
        comports: Callable[[], Sequence[PortInfo]] | None = None,
    ) -> None:
        if (port is None) == (usb_id is None):
            raise BridgeConfigError(
                "exactly one of port or usb_id must be set",
                hint="give port='/dev/ttyACM0' or usb_id='2e8a:000a'",
            )
        if queue_batches < 1:
            raise BridgeConfigError(f"queue_batches must be >= 1, got {queue_batches}")
        self._port = port
        self._usb_id = UsbId.parse(usb_id) if isinstance(usb_id, str) else usb_id
        self._baudrate = baudrate
        self._timing = timing
        self._reconnect = reconnect
        self._queue_batches = queue_batches
        self._comports = comports
        self._decoder = FrameDecoder()
        self.stats = BridgeStats(self._decoder.stats)
        self._clock = DeviceClock()
        self._transport: SerialTransport | None = None
        self._hello: Hello | None = None
        self._hello_waiter: asyncio.Future[Hello] | None = None
        #: When a HELLO was last asked for because frames did not fit (monotonic s).
        self._hello_asked_s = -math.inf
        self._connected = asyncio.Event()
        #: The root task holding the task group; None until start().
        self._root: asyncio.Task[None] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._closed: asyncio.Future[None] | None = None
        #: Why the client stopped on its own (a failed background task), else None.
        self._failure: BridgeError | None = None
        self._started = False
        self._closing = False
        self._last_error: BaseException | None = None
        self._expected_seq: int | None = None
        self._tx_seq = 0
        self._pending: dict[int, asyncio.Future[Ack]] = {}
        self._subscribers: list[_Subscriber] = []
        #: Rates the host asked for, re-applied after every (re)connect.
        self._desired_rates: dict[int, float] = {}
        #: Rates the device acknowledged (or announced in HELLO).
        self._rates: dict[int, float] = {}
        #: Envelope settings the host asked for, re-applied like rates.
        self._desired_envelopes: dict[int, bool] = {}
        #: Envelope settings the device acknowledged since its HELLO (absent: unknown).
        self._envelopes: dict[int, bool] = {}
        #: False once this device answered SET_ENVELOPE with NACK UNKNOWN_TYPE (older
        #: firmware); None until it was asked. Reset by every HELLO (it may be reflashed).
        self._envelope_support: bool | None = None
        #: Channels that refused the envelope (NACK UNSUPPORTED) since the last HELLO.
        self._envelope_refused: set[int] = set()
        #: (firmware, channel or None) already logged as lacking the envelope: log once.
        self._envelope_logged: set[tuple[str, int | None]] = set()
        self._last_rx_s = 0.0
        self._sessions = 0

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> BridgeClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the background tasks on the running loop and wait for the first HELLO.

        Raises the last link error (PortNotFoundError, PortOpenError, ...) or
        HelloTimeoutError if no HELLO came within ``timing.connect_timeout_s``, and at
        once any other error a background task failed with (see the module docstring).
        The client is closed when this raises.
        """
        if self._root is not None:
            raise BridgeConfigError("BridgeClient.start() was already called")
        loop = asyncio.get_running_loop()
        closed = self._closed = loop.create_future()
        # The error is also logged and raised to every consumer: retrieving it here keeps
        # asyncio from reporting it a second time when nobody awaits `closed`.
        closed.add_done_callback(lambda f: f.cancelled() or f.exception())
        root = self._root = loop.create_task(self._run(), name="firmware_bridge.client")
        connected = loop.create_task(self._connected.wait(), name="firmware_bridge.start")
        try:
            done, _ = await asyncio.wait(
                {connected, root},
                timeout=self._timing.connect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # the caller was cancelled: leave nothing running
            connected.cancel()
            await self.close()
            raise
        connected.cancel()
        await asyncio.wait({connected})
        if connected in done and self.connected:
            self._started = True
            return
        failure, error = self._failure, self._last_error
        await self.close()
        if failure is not None:
            raise failure
        if isinstance(error, BridgeError):
            raise error
        raise HelloTimeoutError(
            f"no HELLO from {self._target()} within {self._timing.connect_timeout_s:g} s"
        ) from error

    async def close(self) -> None:
        """Stop the background tasks, close the port and end every sample iterator.

        Safe to call twice. Does not raise a background task's failure (that is in
        :attr:`closed`), but does re-raise the caller's own cancellation: the client
        is shut down all the same.
        """
        self._closing = True
        root = self._root
        try:
            if root is not None and not root.done():
                root.cancel()
                # asyncio.wait does not raise root's outcome, only our own CancelledError.
                await asyncio.wait({root})
        finally:
            self._shut_down()

    @property
    def closed(self) -> asyncio.Future[None]:
        """Done once the client has stopped: None after :meth:`close` (or after the one
        session of a client without ``reconnect``), the error when a background task
        failed. Await it to learn that a client died."""
        if self._closed is None:
            raise BridgeConfigError("BridgeClient.start() was not called")
        return self._closed

    async def _run(self) -> None:
        """The root task: the task group of every background task, and its outcome."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._spawn(self._supervise(), "firmware_bridge.supervisor")
        except asyncio.CancelledError:
            pass  # close(): a clean stop
        except BaseExceptionGroup as group:
            failure = _first_failure(group)
            self._failure = failure
            if self._started:  # start() raises it to its caller instead
                _log.error(
                    "firmware bridge %s stopped: %s", self._target(), failure, exc_info=failure
                )
        finally:
            self._tasks = None
            self._shut_down()
            closed = self._closed
            if closed is not None and not closed.done():
                if self._failure is not None:
                    closed.set_exception(self._failure)
                else:
                    closed.set_result(None)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a named task of the group (dropped once the client stops)."""
        tasks = self._tasks
        if tasks is None or self._closing:
            coro.close()
            return
        try:
            tasks.create_task(self._guard(coro, name), name=name)
        except RuntimeError:  # the group is shutting down: the client is stopping
            coro.close()

    async def _guard(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Name the task in an unexpected error, keeping the error as its cause."""
        try:
            await coro
        except BridgeError:
            raise
        except Exception as exc:
            raise BackgroundTaskError(
                f"firmware bridge {self._target()}: task {name} failed: "
                f"{type(exc).__name__}: {exc}",
                task=name,
            ) from exc

    def _shut_down(self) -> None:
        """Synchronous end of the client: port closed, consumers woken (idempotent)."""
        self._closing = True
        self._drop_transport()
        for sub in self._subscribers:
            self._offer(sub, None)

    # --- public state ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a port is open and the device answered HELLO on it."""
        return self._connected.is_set()

    @property
    def hello(self) -> Hello:
        """The device's latest HELLO; raises DeviceDisconnectedError before the first."""
        if self._hello is None:
            raise DeviceDisconnectedError(f"no HELLO received from {self._target()} yet")
        return self._hello

    @property
    def port_path(self) -> str | None:
        """The tty path currently open, or None while disconnected."""
        return self._transport.path if self._transport is not None else None

    def rate_hz(self, channel: int | str) -> float:
        """The rate the device last confirmed for ``channel`` (HELLO or ACK), in Hz."""
        ch = self._channel(channel)
        return self._rates.get(ch.channel, ch.rate_hz)

    @property
    def envelope_supported(self) -> bool | None:
        """Whether the device has the peak-hold envelope mode: None until a
        SET_ENVELOPE was answered, False for a firmware that does not know it."""
        return self._envelope_support

    def envelope_on(self, channel: int | str) -> bool:
        """True when the device acknowledged the envelope on for ``channel``."""
        return self._envelopes.get(self._channel(channel).channel, False)

    def envelope_unavailable(self, channel: int | str) -> bool:
        """True when this device cannot run ``channel``'s envelope: its firmware
        predates the mode (NACK UNKNOWN_TYPE) or the channel is too wide for its build
        (NACK UNSUPPORTED). The channel then sends plain samples."""
        ch = self._channel(channel).channel
        return self._envelope_support is False or ch in self._envelope_refused

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until connected; raises DeviceDisconnectedError after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError as exc:
            raise DeviceDisconnectedError(
                f"{self._target()} did not come back within {timeout_s:g} s"
            ) from exc

    # --- commands ----------------------------------------------------------------------

    async def set_rate(self, channel: int | str, rate_hz: float) -> None:
        """Set the sampling rate of ``channel`` (id or name); 0 stops it.

        The rate is remembered and re-applied whenever the device reconnects or
        reboots, even if this call raises DeviceDisconnectedError. Raises
        BridgeConfigError for a rate a device cannot schedule (see
        :func:`~firmware_bridge.protocol.check_rate`), CommandRejectedError on
        NACK and CommandTimeoutError when the device does not answer.
        """
        ch = self._channel(channel)
        wire_rate = check_rate(rate_hz, ch.max_rate_hz, ch.name)
        self._desired_rates[ch.channel] = wire_rate
        if self._rates.get(ch.channel) == wire_rate and self.connected:
            return
        await self._command(SetRate(ch.channel, wire_rate))
        self._rates[ch.channel] = wire_rate

    async def set_envelope(self, channel: int | str, enabled: bool) -> bool:
        """Turn the peak-hold envelope of ``channel`` (id or name) on or off.

        With it on, the device measures at the channel's ``max_rate_hz`` and each sample
        it sends carries the min and max since the previous one (:class:`Sample`
        ``mins``/``maxs``; PROTOCOL.md). Returns True when the channel now sends its
        envelope. A device without the mode (NACK UNKNOWN_TYPE: older firmware; NACK
        UNSUPPORTED: too wide a channel for its build) is not an error: this returns
        False, logs it once and the channel keeps sending plain samples. Like a rate,
        the setting is remembered and re-applied after a reconnect or a device reboot,
        even if this call raises DeviceDisconnectedError. Raises CommandRejectedError
        on another NACK and CommandTimeoutError when the device does not answer.
        """
        ch = self._channel(channel)
        enabled = bool(enabled)
        self._desired_envelopes[ch.channel] = enabled
        if self._envelopes.get(ch.channel) == enabled and self.connected:
            return enabled
        return await self._send_envelope(ch.channel, enabled)

    async def _send_envelope(self, channel: int, enabled: bool) -> bool:
        if self._envelope_support is not False and channel not in self._envelope_refused:
            try:
                await self._command(SetEnvelope(channel, enabled))
            except CommandRejectedError as exc:
                if exc.reason == NackReason.UNKNOWN_TYPE:
                    self._envelope_support = False
                elif exc.reason == NackReason.UNSUPPORTED:
                    self._envelope_refused.add(channel)
                else:
                    raise
            else:
                self._envelope_support = True
                self._envelopes[channel] = enabled
                return enabled
        # The device lacks the mode: it sends plain samples, which is all "off" asks.
        self._envelopes[channel] = False
        if enabled:
            self._envelope_unavailable(channel)
        return False

    def _envelope_unavailable(self, channel: int) -> None:
        hello = self._hello
        firmware = f"{hello.firmware} {hello.firmware_version}" if hello is not None else "?"
        if self._envelope_support is False:
            key: tuple[str, int | None] = (firmware, None)
            why = "its firmware predates the mode"
        else:
            key = (firmware, channel)
            why = f"channel {channel} is too wide for its build"
        if key in self._envelope_logged:
            return
        self._envelope_logged.add(key)
        _log.warning(
            "firmware bridge %s: device %s has no peak-hold envelope (%s); plain samples only",
            self._target(),
            firmware,
            why,
        )

    async def gpio_write(self, pin: int, value: int | bool) -> None:
        """Drive GPIO ``pin`` of the microcontroller low (0) or high (1)."""
        if not 0 <= pin <= 255:
            raise BridgeConfigError(f"pin={pin} is outside 0..255")
        await self._command(GpioWrite(pin, int(bool(value))))

    async def _command(self, msg: Message) -> Ack:
        timing = self._timing
        for attempt in range(timing.command_retries + 1):
            transport = self._transport
            if self._failure is not None:
                raise self._failure
            if transport is None or not self.connected:
                raise DeviceDisconnectedError(f"{self._target()} is not connected")
            seq = self._next_seq()
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            self._pending[seq] = future
            try:
                transport.write(encode_frame(msg, seq))
                self.stats.commands_sent += 1
                if attempt:
                    self.stats.command_retries += 1
                return await asyncio.wait_for(future, timing.command_timeout_s)
            except TimeoutError:
                continue
            finally:
                self._pending.pop(seq, None)
        raise CommandTimeoutError(
            f"{msg.TYPE.name} got no ACK from {self._target()} after "
            f"{timing.command_retries + 1} tries"
        )

    # --- samples -----------------------------------------------------------------------

    async def sample_batches(self, channel: int | str | None = None) -> AsyncIterator[_Batch]:
        """Yield the samples of each received frame, as a tuple, until :meth:`close`.

        With ``channel`` (id or name) only that channel's. If the consumer falls
        ``queue_batches`` frames behind, the oldest are dropped and counted in
        ``stats.channel(ch).samples_dropped_host``. Raises the client's failure if a
        background task took it down (see the module docstring).
        """
        channel_id = None if channel is None else self._channel(channel).channel
        sub = _Subscriber(channel_id, self._queue_batches)
        self._subscribers.append(sub)
        try:
            while True:
                batch = await sub.queue.get()
                if batch is None:
                    if self._failure is not None:
                        raise self._failure
                    return
                yield batch
        finally:
            self._subscribers.remove(sub)

    async def samples(self, channel: int | str | None = None) -> AsyncIterator[Sample]:
        """Yield samples one by one (see :meth:`sample_batches`)."""
        async for batch in self.sample_batches(channel):
            for sample in batch:
                yield sample

    # --- supervisor --------------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        timing = self._timing
        delay_s = timing.backoff_initial_s
        while not self._closing:
            # Only link errors are worth another try; anything else (a bad argument, a
            # bug) ends this task and so the client (see _run).
            try:
                path = await loop.run_in_executor(None, self._locate)
                transport = await SerialTransport.open(path, self._on_data, baudrate=self._baudrate)
            except LinkError as exc:
                self._note_error(exc)
            else:
                try:
                    await self._session(transport)
                    delay_s = timing.backoff_initial_s
                except LinkError as exc:
                    self._note_error(exc)
                finally:
                    self._drop_transport()
            if not self._reconnect and self._sessions:
                return
            jitter = 1.0 + timing.backoff_jitter * (2.0 * random.random() - 1.0)
            await asyncio.sleep(delay_s * jitter)
            delay_s = min(delay_s * 2.0, timing.backoff_max_s)

    def _note_error(self, exc: BaseException) -> None:
        if type(exc) is not type(self._last_error):
            _log.warning("firmware bridge %s: %s", self._target(), exc)
        self._last_error = exc

    def _locate(self) -> str:
        if self._comports is None:
            return locate_port(port=self._port, usb_id=self._usb_id)
        return locate_port(port=self._port, usb_id=self._usb_id, comports=self._comports)

    async def _session(self, transport: SerialTransport) -> None:
        timing = self._timing
        self._transport = transport
        self._decoder.reset()
        self._expected_seq = None
        self._clock.reset()
        for stats in self.stats.channels.values():
            stats.next_index = None
        hello = await self._await_hello(transport)
        self._install_hello(hello)
        self._last_rx_s = time.monotonic()
        self._sessions += 1
        if self._sessions > 1:
            self.stats.reconnects += 1
        self._connected.set()
        self._last_error = None
        _log.info("firmware bridge connected on %s: %s", transport.path, hello.firmware)
        await self._apply_desired()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(transport.lost.wait(), timing.heartbeat_interval_s)
            if transport.lost.is_set():
                raise DeviceDisconnectedError(
                    f"{transport.path} went away ({transport.lost_reason or 'end of file'})"
                )
            if time.monotonic() - self._last_rx_s > timing.liveness_timeout_s:
                raise DeviceDisconnectedError(
                    f"no frame from {transport.path} for {timing.liveness_timeout_s:g} s"
                )
            uptime_us = int(time.monotonic() * 1e6) % (1 << 32)
            transport.write(encode_frame(Heartbeat(uptime_us, 0), self._next_seq()))

    async def _await_hello(self, transport: SerialTransport) -> Hello:
        timing = self._timing
        waiter: asyncio.Future[Hello] = asyncio.get_running_loop().create_future()
        self._hello_waiter = waiter
        deadline = time.monotonic() + timing.hello_timeout_s
        try:
            while True:
                transport.write(encode_frame(GetHello(), self._next_seq()))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.wait({waiter}, timeout=min(timing.hello_retry_s, remaining))
                if waiter.done():
                    return waiter.result()
                if transport.lost.is_set():
                    raise DeviceDisconnectedError(f"{transport.path} closed before HELLO")
        finally:
            self._hello_waiter = None
        raise HelloTimeoutError(
            f"no HELLO from {transport.path} within {timing.hello_timeout_s:g} s"
        )

    def _install_hello(self, hello: Hello) -> None:
        self._hello = hello
        self._rates = {ch.channel: ch.rate_hz for ch in hello.channels}
        # A new HELLO may be a rebooted or reflashed device: envelope state is unknown.
        self._envelopes = {}
        self._envelope_support = None
        self._envelope_refused = set()

    async def _apply_desired(self) -> None:
        for channel, rate_hz in list(self._desired_rates.items()):
            if self._rates.get(channel) == rate_hz:
                continue
            try:
                await self._command(SetRate(channel, rate_hz))
                self._rates[channel] = rate_hz
            except BridgeError as exc:
                _log.warning("re-applying %g Hz to channel %d failed: %s", rate_hz, channel, exc)
        for channel, enabled in list(self._desired_envelopes.items()):
            if self._envelopes.get(channel) == enabled:
                continue
            try:
                await self._send_envelope(channel, enabled)
            except BridgeError as exc:
                _log.warning(
                    "re-applying envelope %s to channel %d failed: %s",
                    "on" if enabled else "off",
                    channel,
                    exc,
                )

    def _drop_transport(self) -> None:
        self._connected.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeviceDisconnectedError(f"{self._target()} went away"))
        self._pending.clear()

    # --- receive path (runs on the loop, from the transport's reader callback) ---------

    def _on_data(self, data: bytes) -> None:
        now_s = time.monotonic()
        for frame in self._decoder.feed(data):
            self._last_rx_s = now_s
            try:
                self._dispatch(frame, now_s)
            except Exception:  # a bug here must not kill the reader
                _log.exception("firmware bridge: handling %s failed", frame.message.TYPE.name)

    def _track_seq(self, seq: int) -> None:
        expected = self._expected_seq
        if expected is not None:
            gap = (seq - expected) % SEQ_MODULO
            if gap < SEQ_MODULO // 2:
                self.stats.frames_lost += gap
        self._expected_seq = (seq + 1) % SEQ_MODULO

    def _dispatch(self, frame: Frame, now_s: float) -> None:
        msg = frame.message
        if isinstance(msg, Hello):
            self._expected_seq = (frame.seq + 1) % SEQ_MODULO
            self._on_hello(msg)
            return
        self._track_seq(frame.seq)
        if isinstance(msg, SampleBatch | EnvelopeBatch):
            self._on_samples(msg, now_s)
        elif isinstance(msg, Heartbeat):
            self._clock.observe(msg.uptime_us, now_s)
            self.stats.device_tx_dropped = msg.tx_dropped
        elif isinstance(msg, Ack | Nack):
            future = self._pending.get(msg.acked_seq)
            if future is None or future.done():
                return  # answer to a retried or abandoned command
            if isinstance(msg, Ack):
                future.set_result(msg)
            else:
                future.set_exception(_rejection(msg))
        # Host-to-device types echoed back are ignored.

    def _on_hello(self, hello: Hello) -> None:
        waiter = self._hello_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(hello)
            return
        if not self.connected:
            return
        # Unasked HELLO: the device rebooted behind an open port.
        self.stats.device_restarts += 1
        self._clock.reset()
        for stats in self.stats.channels.values():
            stats.next_index = None
        self._install_hello(hello)
        self._spawn(self._apply_desired(), "firmware_bridge.reapply_settings")

    def _on_samples(self, msg: SampleBatch | EnvelopeBatch, now_s: float) -> None:
        hello = self._hello
        if hello is not None:
            announced = hello.channel(msg.channel)
            if announced is None or announced.width != msg.width:
                self._misfit(msg, announced)
                return
        stats = self.stats.channel(msg.channel)
        stats.frames_received += 1
        stats.samples_received += msg.count
        if stats.next_index is not None:
            gap = (msg.first_index - stats.next_index) % (1 << 32)
            if gap < (1 << 31):
                stats.samples_lost += gap
        stats.next_index = (msg.first_index + msg.count) % (1 << 32)
        last_us = (msg.t_first_us + msg.interval_us * (msg.count - 1)) % (1 << 32)
        clock = self._clock
        clock.observe(last_us, now_s)
        if not self._subscribers:
            return
        width = msg.width
        hello = self._hello
        info = hello.channel(msg.channel) if hello is not None else None
        name = info.name if info is not None else str(msg.channel)
        base_us = clock.unwrap(msg.t_first_us)
        base_s = clock.to_host(msg.t_first_us)
        fit = clock.fit
        slope = fit.slope if fit is not None else 1.0
        values = msg.values
        mins = maxs = None
        if isinstance(msg, EnvelopeBatch):
            mins, maxs = msg.mins, msg.maxs
        batch = tuple(
            Sample(
                msg.channel,
                name,
                msg.first_index + i,
                base_us + i * msg.interval_us,
                min(base_s + slope * i * msg.interval_us * 1e-6, now_s),
                values[i * width : (i + 1) * width],
                None if mins is None else mins[i * width : (i + 1) * width],
                None if maxs is None else maxs[i * width : (i + 1) * width],
            )
            for i in range(msg.count)
        )
        for sub in self._subscribers:
            if sub.channel is None or sub.channel == msg.channel:
                self._offer(sub, batch)

    def _misfit(self, msg: SampleBatch | EnvelopeBatch, announced: ChannelInfo | None) -> None:
        """A sample frame the HELLO does not describe: count it, say so (rate-limited),
        and ask the device to describe itself again."""
        self.stats.frames_misfit += 1
        n = self.stats.frames_misfit
        if n == 1 or n % 100 == 0:
            said = (f"{announced.width} values per sample" if announced is not None
                    else "no such channel")
            _log.warning("%s: channel %d sent %d values per sample but its HELLO says %s "
                         "(firmware changed?); %d such frame(s) dropped, asking for a new "
                         "HELLO", self._target(), msg.channel, msg.width, said, n)
        now = time.monotonic()
        transport = self._transport
        if transport is not None and now - self._hello_asked_s >= 1.0:
            self._hello_asked_s = now
            transport.write(encode_frame(GetHello(), self._next_seq()))

    def _offer(self, sub: _Subscriber, batch: _Batch | None) -> None:
        queue = sub.queue
        while queue.full():
            dropped = queue.get_nowait()
            if dropped:
                self.stats.channel(dropped[0].channel).samples_dropped_host += len(dropped)
        queue.put_nowait(batch)

    # --- helpers ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._tx_seq
        self._tx_seq = (seq + 1) % SEQ_MODULO
        return seq

    def _target(self) -> str:
        return self._port if self._port is not None else f"USB device {self._usb_id}"

    def _channel(self, key: int | str) -> ChannelInfo:
        info = self.hello.channel(key)
        if info is None:
            names = ", ".join(f"{c.channel}:{c.name}" for c in self.hello.channels)
            raise UnknownChannelError(f"device has no channel {key!r} (it has {names})")
        return info


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BridgeError:
    """The error a task group failed with, as a bridge error (its first leaf)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, BridgeError):
        return exc
    # Not from a task (_guard wraps those): the group itself failed.
    error = BackgroundTaskError(
        f"firmware bridge client failed: {type(exc).__name__}: {exc}", task="firmware_bridge.client"
    )
    error.__cause__ = exc
    return error


def _rejection(msg: Nack) -> CommandRejectedError:
    try:
        reason = NackReason(msg.reason).name
    except ValueError:
        reason = f"reason {msg.reason}"
    return CommandRejectedError(
        f"device refused command seq {msg.acked_seq}: {reason}", reason=msg.reason
    )


__all__ = ["BridgeClient", "BridgeStats", "ChannelStats", "Sample"]
