"""Source adapter for sensors behind a microcontroller running the edge bridge firmware.

Thin on purpose (library vs integration): the protocol, reconnects, loss counting and
clock mapping live in the standalone ``firmware_bridge`` library; this module only

- runs one :class:`firmware_bridge.client.BridgeClient` per source, one device channel,
  on the loop that opens it: an :class:`~edge_runtime.sources.base.AsyncSource`, the
  daemon awaits ``aopen``/``aread``/``aclose`` and the client lives on the daemon's own
  loop (no thread per device). ``edge-runtime record`` and tests use the blocking
  methods, which run it on a private loop until ``close`` (the thin sync adapter);
- hands the newest sample to ``read`` ("latest wins", older ones count as dropped),
  with ``Sample.envelope`` = (min, max) of every value since the previous sample the
  consumer got: the device's peak-hold envelope (SET_ENVELOPE, turned on at open unless
  the config says ``envelope = false``) widened by the samples the consumer skipped, so
  neither the device's decimation nor a slow reader hides a spike;
- forwards :meth:`BridgeSource.set_rate` from the rate controller as SET_RATE, so the
  microcontroller sends fewer samples (and, with the envelope off, also measures fewer:
  energy saved at the source);
- translates ``firmware_bridge`` errors into edge-runtime's (:func:`translate_error`).

``firmware_bridge`` is imported when a source opens, not when this module is imported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from edge_runtime.errors import (
    BridgeCommandError,
    BridgePortNotFoundError,
    BridgeTimeoutError,
    BridgeUnavailableError,
    ConfigError,
    EdgeRuntimeError,
)
from edge_runtime.sources.base import AsyncSource, LatestSlot, Sample, SourceStats

if TYPE_CHECKING:
    from firmware_bridge.client import BridgeClient

_log = logging.getLogger(__name__)


def translate_error(exc: BaseException) -> EdgeRuntimeError:
    """Map a ``firmware_bridge`` error to the matching edge-runtime error."""
    from firmware_bridge import errors as fb

    message = str(getattr(exc, "message", exc))
    hint = getattr(exc, "hint", None) or None
    if isinstance(exc, fb.PortNotFoundError):
        return BridgePortNotFoundError(message, hint=hint)
    if isinstance(exc, fb.HelloTimeoutError | fb.CommandTimeoutError | TimeoutError):
        return BridgeTimeoutError(message, hint=hint)
    if isinstance(exc, fb.CommandRejectedError):
        return BridgeCommandError(message, hint=hint)
    if isinstance(exc, fb.UnknownChannelError):
        # The library's hint names its own API; a runtime user has the CLI.
        return ConfigError(message, hint="use a channel id or name that 'edge-runtime bridge "
                                         "probe' lists for the device")
    if isinstance(exc, fb.BridgeConfigError):
        return ConfigError(message, hint=hint)
    return BridgeUnavailableError(message, hint=hint)


EnvelopeState = Literal["on", "off", "pending", "unsupported"]


@dataclass(slots=True)
class BridgeSourceStats(SourceStats):
    """Source counters plus the link's loss counters (``firmware_bridge`` client stats).

    ``envelope`` is the device's peak-hold envelope for this channel: ``on``, ``off``
    (the config turned it off), ``pending`` (asked, not acknowledged yet, e.g. while
    disconnected) or ``unsupported`` (the device's firmware lacks the mode, or the
    channel is too wide for it: the envelope then only covers the samples the host
    received and the consumer skipped).
    """

    link: dict[str, int] = field(default_factory=dict)
    envelope: EnvelopeState = "off"

    def as_dict(self) -> dict[str, object]:
        return {**SourceStats.as_dict(self), "link": dict(self.link), "envelope": self.envelope}


def _widen(envelope: tuple[float, float] | None, lo: float, hi: float) -> tuple[float, float]:
    """``envelope`` widened to include ``lo``..``hi``; a NaN never wins over a number
    (as on the device), so one dead reading does not blank the rest."""
    if envelope is None:
        return (lo, hi)
    a, b = envelope
    return (lo if math.isnan(a) or lo < a else a, hi if math.isnan(b) or hi > b else b)


class EnvelopeSlot(LatestSlot):
    """A :class:`LatestSlot` that folds the envelope of an unread sample it replaces
    into the new one, so the consumer's next sample still shows what it skipped.

    The bridge source only touches it on its loop (its lock is never contended there)."""

    def put(self, sample: Sample) -> None:
        with self._cond:  # re-entrant: get() cannot take the older sample meanwhile
            older = self._sample
            if older is not None and older.envelope is not None:
                lo, hi = older.envelope
                own = sample.envelope
                if own is None and sample.value is not None:
                    own = (sample.value, sample.value)
                sample = replace(sample, envelope=_widen(own, lo, hi))
            LatestSlot.put(self, sample)


def link_counters(client: BridgeClient, channel: int) -> dict[str, int]:
    """What the link lost and survived, for status: frames, this channel's samples,
    damaged frames, reconnects and device reboots. Read-only: may run off the loop."""
    from firmware_bridge.client import ChannelStats

    stats = client.stats
    ch = stats.channels.get(channel) or ChannelStats()
    return {
        "frames_lost": stats.frames_lost,
        "frames_misfit": stats.frames_misfit,
        "samples_received": ch.samples_received,
        "samples_lost": ch.samples_lost,
        "samples_dropped_host": ch.samples_dropped_host,
        "crc_errors": stats.decoder.crc_errors,
        "resyncs": stats.decoder.resyncs,
        "device_restarts": stats.device_restarts,
        "device_tx_dropped": stats.device_tx_dropped,
        "reconnects": stats.reconnects,
    }


class BridgeSource(AsyncSource):
    """One channel of a bridge device as a scalar source.

    ``channel`` is the channel id or name from the device's HELLO; for multi-value
    channels (an accelerometer) ``value_index`` picks the value. Exactly one of
    ``port`` (a tty path, ideally /dev/serial/by-id/...) and ``usb_id`` (VID:PID[:SERIAL]).
    ``envelope`` turns the device's peak-hold envelope on at open (see the module
    docstring); a device without the mode is reported in ``stats.envelope``, not an error.
    """

    kind = "scalar"
    can_set_rate = True

    def __init__(
        self,
        source_id: str,
        *,
        channel: int | str,
        port: str | None = None,
        usb_id: str | None = None,
        value_index: int = 0,
        baudrate: int = 115200,
        envelope: bool = True,
        open_timeout_s: float = 5.0,
        command_timeout_s: float = 2.0,
        timing: Any = None,
    ) -> None:
        super().__init__(source_id)
        self.stats: BridgeSourceStats = BridgeSourceStats()
        if (port is None) == (usb_id is None):
            raise ConfigError(f"source {source_id!r}: set exactly one of port or usb_id")
        self._channel_key = channel
        self._port = port
        self._usb_id = usb_id
        self._value_index = value_index
        self._baudrate = baudrate
        self._envelope = envelope
        self._open_timeout_s = open_timeout_s
        self._command_timeout_s = command_timeout_s
        self._timing = timing
        self._slot = EnvelopeSlot(self.stats)
        #: Set by the pump for every sample it puts in the slot (loop only).
        self._arrived: asyncio.Event | None = None
        self._client: BridgeClient | None = None
        self._channel_id = -1
        self._max_rate_hz = 0.0
        self._pump_task: asyncio.Task[None] | None = None
        #: Why the pump stopped on its own (the client died), raised by reads.
        self._failure: EdgeRuntimeError | None = None

    @property
    def envelope_requested(self) -> bool:
        """Whether this source asks the device for the peak-hold envelope (config
        ``envelope``); ``stats.envelope`` says what the device actually does."""
        return self._envelope

    @property
    def client(self) -> BridgeClient:
        """The underlying library client (for health reports: ``client.stats``)."""
        if self._client is None:
            raise BridgeUnavailableError(f"source {self.source_id!r} is not open")
        return self._client

    async def _aopen(self) -> None:
        from firmware_bridge.client import BridgeClient
        from firmware_bridge.errors import BridgeError
        from firmware_bridge.timing import DEFAULT_TIMING

        self._slot.reopen()
        self._arrived = asyncio.Event()
        self._failure = None
        timing = self._timing or DEFAULT_TIMING
        client = BridgeClient(
            port=self._port,
            usb_id=self._usb_id,
            baudrate=self._baudrate,
            timing=timing,
        )
        self._client = client
        timeout_s = self._open_timeout_s + timing.connect_timeout_s
        try:
            await asyncio.wait_for(self._start(client), timeout_s)
        except BaseException as exc:
            self._client = None
            await client.close()  # start() closed it already unless _start failed later
            if isinstance(exc, BridgeError):
                raise translate_error(exc) from exc
            if isinstance(exc, TimeoutError):
                raise BridgeTimeoutError(
                    f"source {self.source_id!r}: bridge did not answer within {timeout_s:g} s"
                ) from exc
            raise

    async def _start(self, client: BridgeClient) -> None:
        await client.start()
        info = client.hello.channel(self._channel_key)
        if info is None:
            names = ", ".join(c.name for c in client.hello.channels)
            await client.close()
            raise ConfigError(
                f"source {self.source_id!r}: device has no channel {self._channel_key!r} "
                f"(it has {names})"
            )
        if not 0 <= self._value_index < info.width:
            await client.close()
            raise ConfigError(
                f"source {self.source_id!r}: value_index {self._value_index} is outside "
                f"0..{info.width - 1} for channel {info.name!r}"
            )
        self._channel_id = info.channel
        self._max_rate_hz = info.max_rate_hz
        self.stats.rate_hz = client.rate_hz(info.channel)
        if self._envelope:
            await self._enable_envelope(client)
        task = asyncio.get_running_loop().create_task(
            self._pump(client), name=f"bridge-{self.source_id}-pump"
        )
        task.add_done_callback(self._pump_ended)
        self._pump_task = task

    async def _enable_envelope(self, client: BridgeClient) -> None:
        """Ask for the device's envelope; a device without it is a status, not an error."""
        from firmware_bridge.errors import BridgeError

        try:
            await client.set_envelope(self._channel_id, True)
        except BridgeError as exc:
            # Remembered by the client and re-applied when the device answers again.
            error = translate_error(exc)
            self.stats.errors += 1
            self.stats.last_error = str(error)
            _log.warning("source %s: peak-hold envelope not applied yet: %s", self.source_id, error)
        self._update_envelope_state(client)

    def _update_envelope_state(self, client: BridgeClient) -> None:
        if not self._envelope:
            state: EnvelopeState = "off"
        elif client.envelope_on(self._channel_id):
            state = "on"
        elif client.envelope_unavailable(self._channel_id):
            state = "unsupported"
        else:
            state = "pending"
        self.stats.envelope = state

    async def _pump(self, client: BridgeClient) -> None:
        stats = self.stats
        vi = self._value_index
        async for batch in client.sample_batches(self._channel_id):
            if len(batch[-1].values) <= vi:
                # A new HELLO (changed firmware) made the channel narrower than the
                # configured value_index: count it and wait for a layout that fits.
                stats.errors += 1
                stats.last_error = (f"channel has {len(batch[-1].values)} value(s) per "
                                    f"sample now; value_index {vi} is outside it")
                if stats.errors == 1 or stats.errors % 100 == 0:
                    _log.warning("source %r: %s", self.source_id, stats.last_error)
                continue
            newest = batch[-1]
            # Latest wins: only the newest of a frame is offered; the rest count as dropped,
            # but their values (or the device's min/max of them) widen its envelope.
            envelope: tuple[float, float] | None = None
            for s in batch:
                if s.mins is not None and s.maxs is not None:
                    envelope = _widen(envelope, s.mins[vi], s.maxs[vi])
                else:
                    envelope = _widen(envelope, s.values[vi], s.values[vi])
            skipped = len(batch) - 1
            stats.produced += skipped
            stats.dropped += skipped
            self._seq += skipped
            stats.connected = client.connected
            stats.reconnects = client.stats.reconnects
            stats.link = link_counters(client, self._channel_id)
            self._update_envelope_state(client)
            self._slot.put(
                Sample(
                    self.source_id,
                    newest.host_time_s,
                    self._next_seq(),
                    value=newest.values[vi],
                    envelope=envelope,
                )
            )
            if self._arrived is not None:
                self._arrived.set()

    def _pump_ended(self, task: asyncio.Task[None]) -> None:
        """The client's sample stream ended: by close(), or because the client died."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        from firmware_bridge.errors import BridgeError

        error = translate_error(exc) if isinstance(exc, BridgeError) else BridgeUnavailableError(
            f"source {self.source_id!r}: reading the bridge failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._failure = error
        self.stats.errors += 1
        self.stats.last_error = str(error)
        self.stats.connected = False
        if self._arrived is not None:
            self._arrived.set()  # wake a waiting read: it raises the failure

    async def _aread(self, timeout_s: float) -> Sample | None:
        slot, arrived = self._slot, self._arrived
        sample = slot.get(0.0)  # the loop is the only user of the slot: never waits
        if sample is None and timeout_s > 0 and arrived is not None and self._failure is None:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout_s)
            sample = slot.get(0.0)
        client = self._client
        if client is not None:
            self.stats.connected = client.connected
            if self._channel_id >= 0:
                self.stats.link = link_counters(client, self._channel_id)
                self._update_envelope_state(client)
        if sample is None and self._failure is not None:
            raise self._failure
        return sample

    def set_rate(self, rate_hz: float) -> None:
        """Have the microcontroller sample at ``rate_hz`` (clamped to its maximum).

        Returns at once, from any thread: the rate controller calls this on the
        daemon's event loop, which must never wait on a serial link. The request runs
        as a task on the source's loop; a refusal or a timeout is logged and counted in
        ``stats.errors``. While the device is unplugged the rate is remembered and
        applied when it comes back.
        """
        client = self.client
        rate_hz = self._clamp(rate_hz)
        future = self.run_soon(self._request_rate(client, rate_hz))
        future.add_done_callback(lambda done: self._rate_request_done(rate_hz, done))

    async def _aset_rate(self, rate_hz: float) -> None:
        """:meth:`set_rate`, waiting for the device's answer; raises its refusal (or
        BridgeTimeoutError). An unplugged device keeps the rate for its return."""
        from firmware_bridge.errors import BridgeError, DeviceDisconnectedError

        rate_hz = self._clamp(rate_hz)
        try:
            await self._request_rate(self.client, rate_hz)
        except DeviceDisconnectedError:
            _log.debug("source %s: rate %g Hz kept for reconnect", self.source_id, rate_hz)
        except BridgeError as exc:
            raise translate_error(exc) from exc
        except TimeoutError as exc:
            raise self._rate_timeout(rate_hz) from exc

    def _clamp(self, rate_hz: float) -> float:
        rate_hz = min(max(rate_hz, 0.0), self._max_rate_hz)
        self.stats.rate_hz = rate_hz
        return rate_hz

    async def _request_rate(self, client: BridgeClient, rate_hz: float) -> None:
        await asyncio.wait_for(client.set_rate(self._channel_id, rate_hz), self._command_timeout_s)

    def _rate_timeout(self, rate_hz: float) -> BridgeTimeoutError:
        return BridgeTimeoutError(
            f"source {self.source_id!r}: no answer to SET_RATE {rate_hz:g} Hz "
            f"within {self._command_timeout_s:g} s"
        )

    def _rate_request_done(self, rate_hz: float, future: concurrent.futures.Future[Any]) -> None:
        from firmware_bridge.errors import BridgeError, DeviceDisconnectedError

        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            return
        if isinstance(exc, DeviceDisconnectedError):
            _log.debug("source %s: rate %g Hz kept for reconnect", self.source_id, rate_hz)
            return
        error: BaseException = exc
        if isinstance(exc, BridgeError):
            error = translate_error(exc)
        elif isinstance(exc, TimeoutError):
            error = self._rate_timeout(rate_hz)
        self.stats.errors += 1
        self.stats.last_error = str(error)
        _log.warning("source %s: rate %g Hz not applied: %s", self.source_id, rate_hz, error)

    async def _aclose(self) -> None:
        pump, self._pump_task = self._pump_task, None
        client, self._client = self._client, None
        try:
            if pump is not None and not pump.done():
                pump.cancel()
                await asyncio.wait({pump})  # re-raises only our own cancellation
            if client is not None:
                await client.close()
        finally:
            self._slot.close()
            if self._arrived is not None:
                self._arrived.set()
            self.stats.connected = False
