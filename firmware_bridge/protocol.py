"""Messages of the bridge protocol and their codec (one frame <-> one message).

A frame before COBS is::

    version:u8  type:u8  seq:u16  payload:0..250 bytes  crc:u16

All integers are little-endian, floats are IEEE-754 binary32, strings are a u8 length
followed by UTF-8 bytes. The CRC is CRC-16/CCITT-FALSE over everything before it.
On the wire the frame is COBS-encoded with a 0x00 delimiter on each side.
PROTOCOL.md is the normative description; this module implements it.
"""

from __future__ import annotations

import enum
import math
import struct
from typing import Any, ClassVar, Self, TypeAlias

import msgspec

from firmware_bridge import cobs
from firmware_bridge.crc import crc16_ccitt_false
from firmware_bridge.errors import (
    BridgeConfigError,
    CrcError,
    FrameTooLongError,
    MalformedPayloadError,
    UnknownMessageError,
    UnsupportedVersionError,
)

#: The protocol version this library speaks (first byte of every frame).
PROTOCOL_VERSION = 1
HEADER_LEN = 4
CRC_LEN = 2
#: Longest payload of any message; keeps frames short enough for CRC-16 (PROTOCOL.md).
MAX_PAYLOAD_LEN = 250
MAX_FRAME_LEN = HEADER_LEN + MAX_PAYLOAD_LEN + CRC_LEN
#: Longest COBS-encoded frame, delimiter excluded.
MAX_ENCODED_LEN = cobs.max_encoded_len(MAX_FRAME_LEN)
SEQ_MODULO = 1 << 16
#: Slowest rate SET_RATE may ask for other than 0 (stop): one sample every 2000 s. A
#: device schedules on a 32-bit microsecond clock that wraps; periods must stay below
#: 2^31 us (35.8 min). ``FB_MIN_RATE_HZ`` in the firmware; both sides refuse less.
MIN_RATE_HZ = 0.0005

_HEADER = struct.Struct("<BBH")
_CRC = struct.Struct("<H")


class MessageType(enum.IntEnum):
    """Message type byte. 0x0_ device to host, 0x1_ host to device, HEARTBEAT both."""

    HELLO = 0x01
    SAMPLE = 0x02
    HEARTBEAT = 0x03
    ACK = 0x04
    NACK = 0x05
    SAMPLE_ENVELOPE = 0x06
    GET_HELLO = 0x10
    SET_RATE = 0x11
    GPIO_WRITE = 0x12
    SET_ENVELOPE = 0x13


class NackReason(enum.IntEnum):
    """Why a device refused a command (NACK reason byte)."""

    UNKNOWN_TYPE = 1
    BAD_PAYLOAD = 2
    UNKNOWN_CHANNEL = 3
    RATE_OUT_OF_RANGE = 4
    BAD_PIN = 5
    BAD_VERSION = 6
    BUSY = 7
    #: The device knows the command but this channel cannot do it (SET_ENVELOPE on a
    #: channel too wide for the build).
    UNSUPPORTED = 8


def _pack_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise MalformedPayloadError(f"string of {len(raw)} bytes does not fit a u8 length")
    return bytes((len(raw),)) + raw


class _Reader:
    """Cursor over a payload that raises MalformedPayloadError instead of struct.error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: struct.Struct) -> tuple[int | float, ...]:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise MalformedPayloadError("payload too short for its message type")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def string(self) -> str:
        (length,) = self.take(_U8)
        end = self.pos + int(length)
        if end > len(self.data):
            raise MalformedPayloadError("string runs past the end of the payload")
        raw = self.data[self.pos : end]
        self.pos = end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPayloadError("string is not valid UTF-8") from exc

    def done(self) -> None:
        if self.pos != len(self.data):
            raise MalformedPayloadError(
                f"{len(self.data) - self.pos} unexpected trailing payload byte(s)"
            )


_U8 = struct.Struct("<B")


# --- messages ---------------------------------------------------------------------------


class ChannelInfo(msgspec.Struct, frozen=True):
    """One sensor channel as announced in HELLO."""

    channel: int
    name: str
    unit: str
    #: Values per sample (1 for a thermometer, 3 for an accelerometer).
    width: int
    max_rate_hz: float
    #: Rate the channel samples at when the HELLO was sent (0 = stopped).
    rate_hz: float

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BBff")


class Hello(msgspec.Struct, frozen=True):
    """Device identity and channel list; sent at boot and in answer to GET_HELLO."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    firmware: str
    firmware_version: str
    channels: tuple[ChannelInfo, ...]

    def encode_payload(self) -> bytes:
        parts = [_pack_str(self.firmware), _pack_str(self.firmware_version)]
        parts.append(bytes((len(self.channels),)))
        for ch in self.channels:
            parts.append(ChannelInfo._FIXED.pack(ch.channel, ch.width, ch.max_rate_hz, ch.rate_hz))
            parts.append(_pack_str(ch.name))
            parts.append(_pack_str(ch.unit))
        return b"".join(parts)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Hello:
        r = _Reader(payload)
        firmware = r.string()
        version = r.string()
        (count,) = r.take(_U8)
        channels = []
        for _ in range(int(count)):
            channel, width, max_rate, rate = r.take(ChannelInfo._FIXED)
            name = r.string()
            unit = r.string()
            channels.append(
                ChannelInfo(int(channel), name, unit, int(width), float(max_rate), float(rate))
            )
        r.done()
        return cls(firmware, version, tuple(channels))

    def channel(self, key: int | str) -> ChannelInfo | None:
        """Return the channel with this id or name, or None."""
        for ch in self.channels:
            if key in (ch.channel, ch.name):
                return ch
        return None


_BATCH_HEADER = struct.Struct("<BBIII")


def _decode_batch(
    payload: bytes, name: str, item_bytes: int, items: str
) -> tuple[int, int, int, int, int, tuple[float, ...]]:
    """Header fields and the flat f32s of a SAMPLE-like payload.

    Returns ``(channel, count, first_index, t_first_us, interval_us, floats)``; refuses a
    payload whose body is not a whole number of ``item_bytes`` items per sample.
    """
    if len(payload) < _BATCH_HEADER.size:
        raise MalformedPayloadError(f"{name} payload shorter than its 14-byte header")
    channel, count, first_index, t_first, interval = _BATCH_HEADER.unpack_from(payload)
    rest = len(payload) - _BATCH_HEADER.size
    n_items, remainder = divmod(rest, item_bytes)
    if count == 0 or remainder or n_items == 0 or n_items % count:
        raise MalformedPayloadError(
            f"{name} with {count} sample(s) cannot carry {rest} bytes of {items}"
        )
    floats = struct.unpack_from(f"<{rest // 4}f", payload, _BATCH_HEADER.size)
    return channel, count, first_index, t_first, interval, floats


class SampleBatch(msgspec.Struct, frozen=True):
    """``count`` consecutive samples of one channel, evenly spaced in device time.

    ``values`` is flat: sample ``i`` is ``values[i * width : (i + 1) * width]``.
    """

    TYPE: ClassVar[MessageType] = MessageType.SAMPLE
    channel: int
    #: Per-channel index of the first sample (counts from 0 at boot; gaps = lost samples).
    first_index: int
    #: Device clock (microseconds, wraps at 2**32) of the first sample.
    t_first_us: int
    #: Device time between consecutive samples of this batch, microseconds.
    interval_us: int
    count: int
    values: tuple[float, ...]

    _FIXED: ClassVar[struct.Struct] = _BATCH_HEADER

    @property
    def width(self) -> int:
        """Values per sample."""
        return len(self.values) // self.count if self.count else 0

    def encode_payload(self) -> bytes:
        head = self._FIXED.pack(
            self.channel, self.count, self.first_index, self.t_first_us, self.interval_us
        )
        return head + struct.pack(f"<{len(self.values)}f", *self.values)

    @classmethod
    def decode_payload(cls, payload: bytes) -> SampleBatch:
        channel, count, first_index, t_first, interval, values = _decode_batch(
            payload, "SAMPLE", 4, "values"
        )
        return cls(channel, first_index, t_first, interval, count, values)


class EnvelopeBatch(msgspec.Struct, frozen=True):
    """``count`` consecutive reported samples of a channel in peak-hold envelope mode.

    Same header as :class:`SampleBatch`. Sample ``i``, element ``j`` (flat position
    ``p = i * width + j``) has the latest measurement ``values[p]`` and the smallest and
    largest of every measurement since the previous reported sample, inclusive:
    ``mins[p] <= values[p] <= maxs[p]`` (for numbers). On the wire the three are
    interleaved: ``value min max`` per element, 12 bytes (PROTOCOL.md).
    """

    TYPE: ClassVar[MessageType] = MessageType.SAMPLE_ENVELOPE
    channel: int
    #: Per-channel index of the first *reported* sample (gaps = lost samples).
    first_index: int
    #: Device clock (microseconds, wraps at 2**32) of the first reported sample.
    t_first_us: int
    #: Device time between consecutive reported samples, microseconds.
    interval_us: int
    count: int
    values: tuple[float, ...]
    mins: tuple[float, ...]
    maxs: tuple[float, ...]

    _FIXED: ClassVar[struct.Struct] = SampleBatch._FIXED

    @property
    def width(self) -> int:
        """Values per sample."""
        return len(self.values) // self.count if self.count else 0

    def encode_payload(self) -> bytes:
        if not len(self.values) == len(self.mins) == len(self.maxs):
            raise MalformedPayloadError(
                f"SAMPLE_ENVELOPE needs as many mins and maxs as values, got "
                f"{len(self.values)}/{len(self.mins)}/{len(self.maxs)}"
            )
        head = self._FIXED.pack(
            self.channel, self.count, self.first_index, self.t_first_us, self.interval_us
        )
        flat = [x for triple in zip(self.values, self.mins, self.maxs, strict=True) for x in triple]
        return head + struct.pack(f"<{len(flat)}f", *flat)

    @classmethod
    def decode_payload(cls, payload: bytes) -> EnvelopeBatch:
        channel, count, first_index, t_first, interval, flat = _decode_batch(
            payload, "SAMPLE_ENVELOPE", 12, "value/min/max triples"
        )
        return cls(
            channel, first_index, t_first, interval, count, flat[0::3], flat[1::3], flat[2::3]
        )


class _FixedPayload(msgspec.Struct, frozen=True):
    """A message whose payload is exactly ``_FIXED`` packed from its fields, in order."""

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<")

    def encode_payload(self) -> bytes:
        return self._FIXED.pack(*msgspec.structs.astuple(self))

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        return cls(*_unpack_exact(payload, cls._FIXED))


def _unpack_exact(payload: bytes, fmt: struct.Struct) -> tuple[Any, ...]:
    """``payload`` read as exactly one ``fmt``; MalformedPayloadError otherwise."""
    r = _Reader(payload)
    values = r.take(fmt)
    r.done()
    return values


class Heartbeat(_FixedPayload, frozen=True):
    """Liveness message, both directions; also a clock reference for the host."""

    TYPE: ClassVar[MessageType] = MessageType.HEARTBEAT
    #: Sender's clock when the heartbeat was built, microseconds (wraps at 2**32).
    uptime_us: int
    #: Frames the sender built but could not transmit (TX buffer full) since boot.
    tx_dropped: int

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<II")


class Ack(_FixedPayload, frozen=True):
    """The command with sequence number ``acked_seq`` was carried out."""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    acked_seq: int
    acked_type: int

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<HB")


class Nack(_FixedPayload, frozen=True):
    """The command with sequence number ``acked_seq`` was refused for ``reason``."""

    TYPE: ClassVar[MessageType] = MessageType.NACK
    acked_seq: int
    acked_type: int
    reason: int

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<HBB")


class GetHello(_FixedPayload, frozen=True):
    """Ask the device to send HELLO (the host does this after opening the port)."""

    TYPE: ClassVar[MessageType] = MessageType.GET_HELLO


_F32 = struct.Struct("<f")
_F32_MAX = 3.4028234663852886e38
_MIN_RATE_F32: float = _F32.unpack(_F32.pack(MIN_RATE_HZ))[0]


def check_rate(rate_hz: float, max_rate_hz: float, channel: str) -> float:
    """``rate_hz`` as the f32 a device gets, if a device can schedule it on ``channel``.

    A rate is 0 (stop) or from :data:`MIN_RATE_HZ` to the channel's ``max_rate_hz``;
    anything else (NaN, inf, negative, too slow for the device's 32-bit microsecond
    clock, faster than the channel) raises :class:`BridgeConfigError`, as the device
    would refuse it with ``RATE_OUT_OF_RANGE``.
    """
    wire = _F32.unpack(_F32.pack(rate_hz))[0] if abs(rate_hz) <= _F32_MAX else math.inf
    if wire == 0.0 or _MIN_RATE_F32 <= wire <= max_rate_hz:
        return float(wire)
    raise BridgeConfigError(
        f"rate_hz={rate_hz} cannot be set on channel {channel!r}: a rate is 0 (stop) or "
        f"from {MIN_RATE_HZ} Hz (one sample every {1 / MIN_RATE_HZ:.0f} s) "
        f"to {max_rate_hz:g} Hz",
        hint=f"ask for 0 to stop the channel or for {MIN_RATE_HZ}..{max_rate_hz:g} Hz")


class SetRate(_FixedPayload, frozen=True):
    """Set a channel's sampling rate; 0 stops the channel.

    The codec encodes any f32 (so tests can probe a device's refusals); what a device
    accepts is checked by :func:`check_rate` before the client sends one.
    """

    TYPE: ClassVar[MessageType] = MessageType.SET_RATE
    channel: int
    rate_hz: float

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<Bf")


class GpioWrite(_FixedPayload, frozen=True):
    """Drive a GPIO pin of the microcontroller (0 = low, 1 = high)."""

    TYPE: ClassVar[MessageType] = MessageType.GPIO_WRITE
    pin: int
    value: int

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BB")


class SetEnvelope(_FixedPayload, frozen=True):
    """Turn a channel's peak-hold envelope on or off (SAMPLE_ENVELOPE frames while on)."""

    TYPE: ClassVar[MessageType] = MessageType.SET_ENVELOPE
    channel: int
    enabled: bool

    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BB")

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        channel, enabled = _unpack_exact(payload, cls._FIXED)
        if enabled not in (0, 1):
            raise MalformedPayloadError(f"SET_ENVELOPE enabled must be 0 or 1, got {enabled}")
        return cls(channel, bool(enabled))


Message: TypeAlias = (
    Hello
    | SampleBatch
    | EnvelopeBatch
    | Heartbeat
    | Ack
    | Nack
    | GetHello
    | SetRate
    | GpioWrite
    | SetEnvelope
)

_DECODERS = {
    cls.TYPE: cls.decode_payload
    for cls in (
        Hello,
        SampleBatch,
        EnvelopeBatch,
        Heartbeat,
        Ack,
        Nack,
        GetHello,
        SetRate,
        GpioWrite,
        SetEnvelope,
    )
}


class Frame(msgspec.Struct, frozen=True):
    """One decoded frame: the sender's sequence number and the message."""

    seq: int
    message: Message


# --- frame codec ------------------------------------------------------------------------


def encode_raw(msg: Message, seq: int) -> bytes:
    """Return the frame of ``msg`` before COBS: header, payload and CRC."""
    payload = msg.encode_payload()
    if len(payload) > MAX_PAYLOAD_LEN:
        raise MalformedPayloadError(
            f"{msg.TYPE.name} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LEN}",
            hint="send fewer channels or fewer samples per frame",
        )
    body = _HEADER.pack(PROTOCOL_VERSION, msg.TYPE, seq % SEQ_MODULO) + payload
    return body + _CRC.pack(crc16_ccitt_false(body))


def encode_frame(msg: Message, seq: int) -> bytes:
    """Return ``msg`` as it goes on the wire: 0x00, the COBS-encoded frame, 0x00.

    The leading delimiter ends any garbage or torn frame that came before, so damage
    on the wire never spills into the next good frame (PROTOCOL.md, "Framing").
    """
    return b"\x00" + cobs.encode(encode_raw(msg, seq)) + b"\x00"


def decode_raw(raw: bytes) -> Frame:
    """Decode a frame already stripped of COBS; raises a FrameError subclass if bad."""
    if len(raw) < HEADER_LEN + CRC_LEN:
        raise MalformedPayloadError(f"frame of {len(raw)} bytes is shorter than header + CRC")
    if len(raw) > MAX_FRAME_LEN:
        raise FrameTooLongError(f"frame of {len(raw)} bytes exceeds {MAX_FRAME_LEN}")
    body_len = len(raw) - CRC_LEN
    (crc,) = _CRC.unpack_from(raw, body_len)
    if crc != crc16_ccitt_false(memoryview(raw)[:body_len]):
        raise CrcError("frame CRC mismatch")
    version, mtype, seq = _HEADER.unpack_from(raw)
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersionError(
            f"frame has protocol version {version}, this library speaks {PROTOCOL_VERSION}"
        )
    decoder = _DECODERS.get(mtype)
    if decoder is None:
        raise UnknownMessageError(f"unknown message type 0x{mtype:02x}")
    return Frame(seq, decoder(raw[HEADER_LEN:body_len]))


def decode_frame(encoded: bytes) -> Frame:
    """Decode one COBS-encoded frame (delimiter stripped); raises a FrameError if bad."""
    if len(encoded) > MAX_ENCODED_LEN:
        raise FrameTooLongError(f"encoded frame of {len(encoded)} bytes exceeds {MAX_ENCODED_LEN}")
    return decode_raw(cobs.decode(encoded))


# --- canonical text (shared with the C tests through test_vectors.txt) -------------------


def _g(value: float) -> str:
    return format(value, ".9g")


def describe(frame: Frame) -> str:
    """Return the canonical one-line text of a frame, as used in test_vectors.txt.

    The C vector test prints the same text for the same bytes, with ``%.9g`` for floats.
    """
    msg = frame.message
    head = f"{msg.TYPE.name} seq={frame.seq}"
    if isinstance(msg, Hello):
        chans = "".join(
            f' ch={c.channel},{c.width},{_g(c.max_rate_hz)},{_g(c.rate_hz)},"{c.name}","{c.unit}"'
            for c in msg.channels
        )
        return f'{head} fw="{msg.firmware}" ver="{msg.firmware_version}"{chans}'
    if isinstance(msg, SampleBatch):
        vals = ",".join(_g(v) for v in msg.values)
        return (
            f"{head} channel={msg.channel} count={msg.count} first_index={msg.first_index}"
            f" t_first_us={msg.t_first_us} interval_us={msg.interval_us} values={vals}"
        )
    if isinstance(msg, EnvelopeBatch):
        return (
            f"{head} channel={msg.channel} count={msg.count} first_index={msg.first_index}"
            f" t_first_us={msg.t_first_us} interval_us={msg.interval_us}"
            f" values={','.join(map(_g, msg.values))} mins={','.join(map(_g, msg.mins))}"
            f" maxs={','.join(map(_g, msg.maxs))}"
        )
    if isinstance(msg, Heartbeat):
        return f"{head} uptime_us={msg.uptime_us} tx_dropped={msg.tx_dropped}"
    if isinstance(msg, Ack):
        return f"{head} acked_seq={msg.acked_seq} acked_type={msg.acked_type}"
    if isinstance(msg, Nack):
        return f"{head} acked_seq={msg.acked_seq} acked_type={msg.acked_type} reason={msg.reason}"
    if isinstance(msg, GetHello):
        return head
    if isinstance(msg, SetRate):
        return f"{head} channel={msg.channel} rate_hz={_g(msg.rate_hz)}"
    if isinstance(msg, SetEnvelope):
        return f"{head} channel={msg.channel} enabled={int(msg.enabled)}"
    return f"{head} pin={msg.pin} value={msg.value}"


__all__ = [
    "MAX_ENCODED_LEN",
    "MAX_FRAME_LEN",
    "MAX_PAYLOAD_LEN",
    "PROTOCOL_VERSION",
    "Ack",
    "ChannelInfo",
    "EnvelopeBatch",
    "Frame",
    "GetHello",
    "GpioWrite",
    "Heartbeat",
    "Hello",
    "Message",
    "MessageType",
    "Nack",
    "NackReason",
    "SampleBatch",
    "SetEnvelope",
    "SetRate",
    "decode_frame",
    "decode_raw",
    "describe",
    "encode_frame",
    "encode_raw",
]
