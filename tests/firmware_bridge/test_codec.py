"""COBS, CRC and message codec, checked against the shared test vectors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import firmware_bridge
from firmware_bridge import cobs
from firmware_bridge.crc import crc16_ccitt_false
from firmware_bridge.errors import (
    CobsError,
    CrcError,
    FrameError,
    FrameTooLongError,
    MalformedPayloadError,
    UnknownMessageError,
    UnsupportedVersionError,
)
from firmware_bridge.protocol import (
    MAX_PAYLOAD_LEN,
    ChannelInfo,
    EnvelopeBatch,
    Hello,
    MessageType,
    SampleBatch,
    SetEnvelope,
    SetRate,
    decode_frame,
    describe,
    encode_frame,
)

VECTORS = Path(firmware_bridge.__file__).parent / "firmware" / "test_vectors.txt"
EXPECTED_ERRORS: dict[str, type[FrameError]] = {
    "cobs": CobsError,
    "crc": CrcError,
    "version": UnsupportedVersionError,
    "type": UnknownMessageError,
    "payload": MalformedPayloadError,
    "oversize": FrameTooLongError,
}


def load_vectors() -> list[tuple[str, str, bytes, str]]:
    rows = []
    for line in VECTORS.read_text().splitlines():
        if line.startswith("#") or not line:
            continue
        name, expect, wire, canonical = line.split("|", 3)
        rows.append((name, expect, bytes.fromhex(wire), canonical))
    return rows


def test_crc_check_value() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_cobs_known_encodings(raw: bytes, encoded: bytes) -> None:
    assert cobs.encode(raw) == encoded
    assert cobs.decode(encoded) == raw


@given(st.binary(max_size=1200))
def test_cobs_round_trip(raw: bytes) -> None:
    encoded = cobs.encode(raw)
    assert b"\x00" not in encoded
    assert len(encoded) <= cobs.max_encoded_len(len(raw))
    assert cobs.decode(encoded) == raw


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda v: v[0])
def test_vectors(vector: tuple[str, str, bytes, str]) -> None:
    _name, expect, wire, canonical = vector
    assert wire[0] == 0 and wire[-1] == 0 and wire.count(0) == 2
    if expect == "ok":
        frame = decode_frame(wire[1:-1])
        assert describe(frame) == canonical
        assert encode_frame(frame.message, frame.seq) == wire
    else:
        with pytest.raises(EXPECTED_ERRORS[expect]):
            decode_frame(wire[1:-1])


def test_vectors_cover_every_message_type() -> None:
    names = {canonical.split()[0] for _, expect, _, canonical in load_vectors() if expect == "ok"}
    expected = {"HELLO", "SAMPLE", "HEARTBEAT", "ACK", "NACK", "GET_HELLO", "SET_RATE"}
    assert names >= expected | {"GPIO_WRITE", "SAMPLE_ENVELOPE", "SET_ENVELOPE"}
    assert names == {t.name for t in MessageType}


def test_vectors_reject_bad_payloads_of_the_envelope_types() -> None:
    bad = {name for name, expect, _, _ in load_vectors() if expect == "payload"}
    assert {
        "bad_set_envelope_short",
        "bad_set_envelope_flag",
        "bad_sample_envelope_ragged",
        "bad_sample_envelope_split_triple",
        "bad_sample_envelope_no_values",
    } <= bad


def test_payload_limit_is_enforced_on_encode() -> None:
    too_many = SampleBatch(0, 0, 0, 0, 60, tuple([0.0] * 60))
    assert len(too_many.encode_payload()) > MAX_PAYLOAD_LEN
    with pytest.raises(MalformedPayloadError, match="exceeds"):
        encode_frame(too_many, 0)
    # Envelope samples take 12 bytes per element: 19 of width 1 fit, 20 do not.
    fits = EnvelopeBatch(0, 0, 0, 0, 19, (0.0,) * 19, (0.0,) * 19, (0.0,) * 19)
    assert len(fits.encode_payload()) == 14 + 19 * 12 <= MAX_PAYLOAD_LEN
    with pytest.raises(MalformedPayloadError, match="exceeds"):
        encode_frame(EnvelopeBatch(0, 0, 0, 0, 20, (0.0,) * 20, (0.0,) * 20, (0.0,) * 20), 0)
    with pytest.raises(MalformedPayloadError, match="mins and maxs"):
        EnvelopeBatch(0, 0, 0, 0, 1, (1.0,), (), (1.0,)).encode_payload()


names = st.text(st.characters(codec="utf-8", exclude_characters='"|\n'), max_size=12)
f32 = st.floats(width=32, allow_nan=False)


@given(
    st.builds(
        Hello,
        names,
        names,
        st.lists(
            st.builds(
                ChannelInfo, st.integers(0, 255), names, names, st.integers(0, 255), f32, f32
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.integers(0, 65535),
)
def test_hello_round_trip(hello: Hello, seq: int) -> None:
    frame = decode_frame(encode_frame(hello, seq)[1:-1])
    assert frame.seq == seq
    assert frame.message == hello


@given(st.integers(0, 255), f32, st.integers(0, 65535))
def test_set_rate_round_trip(channel: int, rate_hz: float, seq: int) -> None:
    frame = decode_frame(encode_frame(SetRate(channel, rate_hz), seq)[1:-1])
    assert frame.message == SetRate(channel, rate_hz)


u32 = st.integers(0, 2**32 - 1)


@given(st.tuples(st.integers(0, 255), u32, u32, u32), st.integers(1, 3), st.data())
def test_envelope_batch_round_trip(
    head: tuple[int, int, int, int], width: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1, 19 // width))
    flat = st.lists(f32, min_size=count * width, max_size=count * width).map(tuple)
    channel, first, t_us, interval_us = head
    msg = EnvelopeBatch(
        channel, first, t_us, interval_us, count, data.draw(flat), data.draw(flat), data.draw(flat)
    )
    frame = decode_frame(encode_frame(msg, 7)[1:-1])
    assert frame.message == msg
    assert isinstance(frame.message, EnvelopeBatch) and frame.message.width == width


@given(st.integers(0, 255), st.booleans(), st.integers(0, 65535))
def test_set_envelope_round_trip(channel: int, enabled: bool, seq: int) -> None:
    frame = decode_frame(encode_frame(SetEnvelope(channel, enabled), seq)[1:-1])
    assert frame.seq == seq
    assert frame.message == SetEnvelope(channel, enabled)
