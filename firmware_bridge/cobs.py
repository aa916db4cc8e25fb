"""Consistent Overhead Byte Stuffing (COBS).

COBS rewrites a frame so that it contains no 0x00 byte; 0x00 then delimits frames on
the wire. The overhead is one byte per 254 bytes of frame (plus one), which makes the
longest encoding of an ``n``-byte frame ``n + n // 254 + 1`` bytes.

The decoder works block by block with slices rather than byte by byte: the host
decodes every frame in Python, and this keeps it at several hundred thousand frames
per second (see benchmarks/bridge_bench.py).
"""

from __future__ import annotations

from firmware_bridge.errors import CobsError


def max_encoded_len(raw_len: int) -> int:
    """Return the longest COBS encoding (without delimiter) of ``raw_len`` bytes."""
    return raw_len + raw_len // 254 + 1


def encode(data: bytes | bytearray) -> bytes:
    """Return the COBS encoding of ``data`` (no trailing delimiter)."""
    out = bytearray()
    start = 0
    length = len(data)
    while True:
        zero = data.find(0, start, start + 254)
        if zero < 0:
            block_end = min(start + 254, length)
            out.append(block_end - start + 1)
            out += data[start:block_end]
            if block_end == length:
                # A full 254-byte block at the very end still needs no extra code
                # byte only when nothing follows; the decoder treats a trailing 0xFF
                # block as "no zero follows".
                break
            start = block_end
        else:
            out.append(zero - start + 1)
            out += data[start:zero]
            start = zero + 1
            if start == length:
                out.append(1)
                break
    return bytes(out)


def decode(data: bytes | bytearray) -> bytes:
    """Return the frame encoded by ``data`` (one COBS block run, no delimiter).

    Raises :class:`~firmware_bridge.errors.CobsError` when ``data`` is empty, contains
    a 0x00 byte, or a code byte points past its end.
    """
    length = len(data)
    if length == 0:
        raise CobsError("empty COBS frame")
    if data.find(0) >= 0:
        raise CobsError("0x00 byte inside a COBS frame")
    parts: list[bytes | bytearray] = []
    pos = 0
    while pos < length:
        code = data[pos]
        end = pos + code
        if end > length:
            raise CobsError(f"COBS code byte at {pos} points past the end of the frame")
        parts.append(data[pos + 1 : end])
        pos = end
        if code != 0xFF and pos < length:
            parts.append(b"\x00")
    return b"".join(parts)
