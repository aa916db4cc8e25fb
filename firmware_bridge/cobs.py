"""Consistent Overhead Byte Stuffing (COBS).

COBS rewrites a frame so that it contains no 0x00 byte; 0x00 then delimits frames on
the wire. The overhead is one byte per 254 bytes of frame (plus one), which makes the
longest encoding of an ``n``-byte frame ``n + n // 254 + 1`` bytes.

The decoder only visits code bytes, never every byte: the host decodes every frame
in Python (see benchmarks/bridge_bench.py for the throughput).
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
    # Fast path: without 0xFF blocks, decoding only turns every code byte after the
    # first into 0x00 and drops the first one.
    out = bytearray(data)
    pos = 0
    while True:
        code = data[pos]
        if code == 0xFF:
            return _decode_blocks(data)
        pos += code
        if pos >= length:
            break
        out[pos] = 0
    if pos != length:
        raise CobsError("COBS code byte points past the end of the frame")
    del out[0]
    return bytes(out)


def _decode_blocks(data: bytes | bytearray) -> bytes:
    """General decoder, block by block (frames with runs of 254 non-zero bytes)."""
    length = len(data)
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
