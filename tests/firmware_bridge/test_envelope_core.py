"""The C core's peak-hold envelope arithmetic, on a scripted clock (``host/script_main.c``).

The script's channel 0 ("a") has max_rate_hz 1000 and width 1; channel 1 ("b") has
max_rate_hz 100 and width 3. Measurement ``m`` of a channel reads ``m + 1000 * element``,
so the expected value, min and max of every reported sample follow from ``k`` alone.
Frames are decoded by the Python codec: both sides are checked against each other.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from firmware_bridge import cobs
from firmware_bridge.crc import crc16_ccitt_false
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.protocol import (
    Ack,
    EnvelopeBatch,
    Message,
    MessageType,
    Nack,
    NackReason,
    SampleBatch,
    SetEnvelope,
    SetRate,
    encode_frame,
)

from .conftest import Binaries

AVR = ["-DFB_MAX_PAYLOAD=96u", "-DFB_BATCH_MAX_VALUES=8u"]


def rx(msg: Message, seq: int = 1) -> str:
    return f"rx {encode_frame(msg, seq).hex()}"


def run_script(binary: Path, lines: list[str]) -> list[Message]:
    """Run the scripted core; return what it sent, HELLO and HEARTBEAT left out."""
    result = subprocess.run(
        [str(binary)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
    )
    decoder = FrameDecoder()
    out: list[Message] = []
    for line in result.stdout.splitlines():
        assert line.startswith("TX ")
        for frame in decoder.feed(bytes.fromhex(line[3:])):
            if frame.message.TYPE not in (MessageType.HELLO, MessageType.HEARTBEAT):
                out.append(frame.message)
    assert decoder.stats.resyncs == 0
    return out


def reported(messages: list[Message], channel: int) -> list[tuple[int, int, float, float, float]]:
    """Flatten envelope frames: (index, device time, value, min, max) per element 0."""
    rows = []
    for msg in messages:
        if isinstance(msg, EnvelopeBatch) and msg.channel == channel:
            w = msg.width
            for i in range(msg.count):
                p = i * w
                t = msg.t_first_us + i * msg.interval_us
                rows.append((msg.first_index + i, t, msg.values[p], msg.mins[p], msg.maxs[p]))
    return rows


def test_decimation_value_min_max_index_and_interval(binaries: Binaries) -> None:
    # Envelope on, then 100 Hz reported from a 1000 Hz grid: k = 10, from t = 0.
    out = run_script(
        binaries.script,
        [
            rx(SetEnvelope(0, True), 1),
            rx(SetRate(0, 100.0), 2),
            "spike 0 23 1e6",  # between reports: measurement 23 of the window 20..29
            "run 100500",
            "flush",
        ],
    )
    assert out[:2] == [Ack(1, MessageType.SET_ENVELOPE), Ack(2, MessageType.SET_RATE)]
    frames = [m for m in out if isinstance(m, EnvelopeBatch)]
    assert frames and not any(isinstance(m, SampleBatch) for m in out)
    # interval_us is the real spacing of reports: k * round(1e6 / max_rate_hz).
    assert {f.interval_us for f in frames if f.count > 1} == {10_000}
    rows = reported(out, 0)
    assert [r[0] for r in rows] == list(range(10))  # first_index counts reports
    for w, (_index, t_us, value, lo, hi) in enumerate(rows):
        last = 10 * w + 9  # the k-th measurement of window w is reported
        assert t_us == last * 1000
        assert value == last
        assert lo == 10 * w
        assert hi == (1e6 if w == 2 else last)
    assert all(r[2] != 1e6 for r in rows)  # the spike was never a reported value


def test_a_rate_change_keeps_the_unfinished_window(binaries: Binaries) -> None:
    # k = 10 (100 Hz from 1000 Hz); a spike at measurement 23, then at 25.5 ms the host
    # slows to 50 Hz (k = 20). The window 20..25 is not dropped: the next report, 20
    # measurements after 20, still carries the spike in its max.
    out = run_script(
        binaries.script,
        [
            rx(SetEnvelope(0, True), 1),
            rx(SetRate(0, 100.0), 2),
            "spike 0 23 1e6",
            "run 25500",
            rx(SetRate(0, 50.0), 3),
            "run 100500",
            "flush",
        ],
    )
    rows = reported(out, 0)
    assert [r[2] for r in rows[:2]] == [9, 19]  # the two windows before the change
    value, lo, hi = rows[2][2:]
    assert (lo, hi) == (20, 1e6)  # min/max since the previous report, spike included
    assert value == 39  # 6 measurements before the change + 14 after it: k = 20
    assert rows[3][3:] == (40, 59)  # then whole windows of 20


def test_wide_channel_rounds_k_half_up_and_interleaves_elements(binaries: Binaries) -> None:
    # 100 Hz grid, 40 Hz asked: k = round_half_up(2.5) = 3 (PROTOCOL.md), reports 30 ms apart.
    out = run_script(
        binaries.script,
        [
            "latency 1000000",  # batch by size only
            rx(SetRate(1, 40.0), 1),
            rx(SetEnvelope(1, True), 2),
            "run 200000",
            "flush",
        ],
    )
    assert out[:2] == [Ack(1, MessageType.SET_RATE), Ack(2, MessageType.SET_ENVELOPE)]
    frames = [m for m in out if isinstance(m, EnvelopeBatch)]
    # 32 floats per batch on this build = 3 samples of 3 x (value, min, max).
    assert max(f.count for f in frames) == 3
    assert {f.interval_us for f in frames if f.count > 1} == {30_000}
    index = 0
    for f in frames:
        assert f.first_index == index
        for i in range(f.count):
            w = f.first_index + i
            for j in range(3):
                p = 3 * i + j
                assert (f.values[p], f.mins[p], f.maxs[p]) == (
                    3 * w + 2 + 1000 * j,
                    3 * w + 1000 * j,
                    3 * w + 2 + 1000 * j,
                )
        index += f.count
    assert index == 7  # 21 measurements (t = 0 to 200 ms), every 3rd reported


def test_turning_the_envelope_off_and_rate_zero(binaries: Binaries) -> None:
    out = run_script(
        binaries.script,
        [
            rx(SetEnvelope(0, True), 1),
            rx(SetRate(0, 250.0), 2),  # k = 4
            "run 10000",
            rx(SetEnvelope(0, True), 3),  # re-sent: idempotent, keeps the grid
            "run 10000",
            rx(SetEnvelope(0, False), 4),  # flushes, plain 250 Hz from here
            "run 20000",
            rx(SetEnvelope(0, True), 5),
            "run 8000",
            rx(SetRate(0, 0.0), 6),  # stops the channel, envelope or not
            "run 50000",
            "flush",
        ],
    )
    acks = [m for m in out if isinstance(m, Ack | Nack)]
    assert all(isinstance(a, Ack) for a in acks) and len(acks) == 6
    samples = [m for m in out if isinstance(m, SampleBatch | EnvelopeBatch)]
    kinds = [type(m).__name__ for m in samples]
    assert kinds == ["EnvelopeBatch", "SampleBatch", "EnvelopeBatch"], kinds
    env1, plain, env2 = samples
    assert env1.count == 5  # 20 ms at k = 4 on a 1 ms grid, across the idempotent resend
    assert env1.mins == tuple(float(4 * w) for w in range(5))
    # The plain grid restarts at the switch (t = 20 ms): 20, 24, ..., 40 ms.
    assert plain.first_index == 5 and plain.count == 6 and plain.interval_us == 4000
    assert env2.first_index == 11 and env2.count == 2  # 8 ms at k = 4 after the switch
    # After rate 0 nothing more was measured or sent.
    assert samples[-1] is env2


def test_bad_set_envelope_commands_are_refused(binaries: Binaries) -> None:
    bad_flag = bytes((0, 2))
    out = run_script(
        binaries.script,
        [
            rx(SetEnvelope(9, True), 1),
            # enabled=2 cannot be encoded by the codec: hand-build the frame.
            "rx " + _raw_frame(MessageType.SET_ENVELOPE, 2, bad_flag).hex(),
            "rx " + _raw_frame(MessageType.SET_ENVELOPE, 3, b"\x00").hex(),
        ],
    )
    assert out == [
        Nack(1, MessageType.SET_ENVELOPE, NackReason.UNKNOWN_CHANNEL),
        Nack(2, MessageType.SET_ENVELOPE, NackReason.BAD_PAYLOAD),
        Nack(3, MessageType.SET_ENVELOPE, NackReason.BAD_PAYLOAD),
    ]


def _raw_frame(mtype: int, seq: int, payload: bytes) -> bytes:
    body = bytes((1, mtype)) + struct.pack("<H", seq) + payload
    return b"\x00" + cobs.encode(body + struct.pack("<H", crc16_ccitt_false(body))) + b"\x00"


def test_avr_sizes_fit_and_refuse_a_too_wide_channel(binaries: Binaries) -> None:
    script = binaries.variant("fb_script_avr", "script_main.c", AVR)
    out = run_script(
        script,
        [
            rx(SetEnvelope(1, True), 1),  # 3 x 3 floats > FB_BATCH_MAX_VALUES = 8
            rx(SetEnvelope(0, True), 2),
            rx(SetRate(0, 1000.0), 3),  # k = 1: every measurement is reported
            "run 30000",
            "flush",
        ],
    )
    assert out[:3] == [
        Nack(1, MessageType.SET_ENVELOPE, NackReason.UNSUPPORTED),
        Ack(2, MessageType.SET_ENVELOPE),
        Ack(3, MessageType.SET_RATE),
    ]
    frames = [m for m in out if isinstance(m, EnvelopeBatch)]
    assert max(f.count for f in frames) == 2  # 8 floats = 2 x (value, min, max)
    assert all(len(f.encode_payload()) <= 96 for f in frames)
    rows = reported(out, 0)
    assert [r[2:] for r in rows[:3]] == [(0, 0, 0), (1, 1, 1), (2, 2, 2)]


def test_a_core_without_the_mode_answers_unknown_type(binaries: Binaries) -> None:
    script = binaries.variant("fb_script_old", "script_main.c", ["-DFB_ENVELOPE=0"])
    out = run_script(script, [rx(SetEnvelope(0, True), 1), rx(SetRate(0, 100.0), 2), "run 30000"])
    assert out[0] == Nack(1, MessageType.SET_ENVELOPE, NackReason.UNKNOWN_TYPE)
    assert out[1] == Ack(2, MessageType.SET_RATE)
    assert all(isinstance(m, SampleBatch) for m in out[2:]) and len(out) > 2
