"""Stream decoder: bytes from the tty in, decoded frames out, errors counted.

The decoder splits the byte stream at 0x00 delimiters and decodes each chunk. A chunk
that fails (garbage, a torn frame, a bad CRC, an oversized run) is counted and
dropped; the next delimiter starts a fresh frame, so the decoder is back in sync
within one frame. It never raises for bad input and holds at most
``MAX_ENCODED_LEN`` bytes of unfinished frame, whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import (
    CobsError,
    CrcError,
    FrameError,
    FrameTooLongError,
)
from firmware_bridge.protocol import MAX_ENCODED_LEN, Frame, decode_frame


@dataclass(slots=True)
class DecoderStats:
    """Counters of one :class:`FrameDecoder` (since it was made)."""

    bytes_received: int = 0
    frames_decoded: int = 0
    #: Chunks that were not valid COBS (garbage, torn frames).
    cobs_errors: int = 0
    crc_errors: int = 0
    #: Runs longer than the longest legal frame without a delimiter.
    oversize_frames: int = 0
    #: Good CRC but unknown version, unknown type or bad payload.
    malformed_frames: int = 0
    #: Every dropped chunk, whatever the reason: how often the decoder resynchronised.
    resyncs: int = 0


class FrameDecoder:
    """Incremental decoder of the delimited, COBS-encoded frame stream."""

    __slots__ = ("_discarding", "_max_encoded_len", "_rest", "stats")

    def __init__(self, *, max_encoded_len: int = MAX_ENCODED_LEN) -> None:
        self._max_encoded_len = max_encoded_len
        self._rest = b""
        # True while skipping the tail of an oversized run up to its next delimiter.
        self._discarding = False
        self.stats = DecoderStats()

    @property
    def buffered_len(self) -> int:
        """Bytes held for an unfinished frame (bounded by ``max_encoded_len``)."""
        return len(self._rest)

    def reset(self) -> None:
        """Forget any partial frame (after reopening the port)."""
        self._rest = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the frames it completed, in order."""
        stats = self.stats
        stats.bytes_received += len(data)
        joined = self._rest + data if self._rest else data
        chunks = joined.split(b"\x00")
        rest = chunks.pop()
        frames: list[Frame] = []
        limit = self._max_encoded_len
        for chunk in chunks:
            if self._discarding:
                self._discarding = False
                continue
            if not chunk:
                continue  # back-to-back delimiters are legal padding
            if len(chunk) > limit:
                stats.oversize_frames += 1
                stats.resyncs += 1
                continue
            try:
                frames.append(decode_frame(chunk))
            except CrcError:
                stats.crc_errors += 1
                stats.resyncs += 1
            except CobsError:
                stats.cobs_errors += 1
                stats.resyncs += 1
            except FrameTooLongError:
                stats.oversize_frames += 1
                stats.resyncs += 1
            except FrameError:
                stats.malformed_frames += 1
                stats.resyncs += 1
        if len(rest) > limit:
            if not self._discarding:
                stats.oversize_frames += 1
                stats.resyncs += 1
            self._discarding = True
            rest = b""
        self._rest = rest
        stats.frames_decoded += len(frames)
        return frames
