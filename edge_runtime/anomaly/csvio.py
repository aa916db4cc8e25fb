"""Reading and writing ``timestamp,value[,anomaly_score]`` CSV files (the NAB format).

Rows are checked as they are read; the first bad row raises
:class:`~edge_runtime.errors.DataError` naming the file and its line number, so a
user can fix the file rather than guess.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from edge_runtime.errors import DataError

__all__ = [
    "DEFAULT_MAX_BACKSTEP_S",
    "format_timestamp",
    "iter_series",
    "parse_timestamp",
    "read_series",
]


def parse_timestamp(text: str) -> float:
    """Parse an ISO 8601 timestamp (naive ones are taken as UTC) to POSIX seconds.

    A bare number is accepted as POSIX seconds. Raises ``ValueError`` otherwise.
    """
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"not a finite time: {text!r}") from None
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def format_timestamp(t_s: float) -> str:
    """Format POSIX seconds the way NAB files write time: ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(t_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


#: Time may step back by up to this much (s) without an error: a clock set back by
#: an hour (daylight saving) does that in real logs, NAB's machine-temperature file too.
DEFAULT_MAX_BACKSTEP_S = 3600.0


def iter_series(
    stream: TextIO,
    *,
    source: str,
    channel: str | None = None,
    max_backstep_s: float = DEFAULT_MAX_BACKSTEP_S,
) -> Iterator[tuple[int, str, float, float]]:
    """Yield ``(line_number, timestamp_text, t_s, value)`` from a CSV with a header.

    ``channel`` names the value column (default ``value``, or the only column besides
    ``timestamp``). Rows keep file order; time may repeat, or step back by at most
    ``max_backstep_s`` (a clock adjustment), measured from the latest time seen.
    Raises :class:`DataError` on a missing column, an unparsable timestamp or value,
    a NaN/infinite value or time going back by more than ``max_backstep_s``.
    """
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{source}: file is empty, expected a 'timestamp,value' header") from None
    names = [h.strip() for h in header]
    if "timestamp" not in names:
        raise DataError(f"{source}:1: no 'timestamp' column in header {names}")
    t_col = names.index("timestamp")
    if channel is None:
        others = [n for n in names if n != "timestamp"]
        if "value" in names:
            channel = "value"
        elif len(others) == 1:
            channel = others[0]
        else:
            raise DataError(
                f"{source}:1: no 'value' column in header {names}",
                hint="name the value column with --channel",
            )
    if channel not in names:
        raise DataError(f"{source}:1: no column {channel!r} in header {names}")
    v_col = names.index(channel)
    need = max(t_col, v_col) + 1
    last_t = -math.inf
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < need:
            raise DataError(f"{source}:{line}: expected {need} columns, got {len(row)}")
        t_text = row[t_col].strip()
        try:
            t_s = parse_timestamp(t_text)
        except ValueError:
            raise DataError(f"{source}:{line}: unparsable timestamp {t_text!r}") from None
        try:
            value = float(row[v_col])
        except ValueError:
            raise DataError(f"{source}:{line}: unparsable value {row[v_col]!r}") from None
        if not math.isfinite(value):
            raise DataError(
                f"{source}:{line}: value is {row[v_col].strip()!r}, not a finite number",
                hint="drop the row or fill it before detection (edge_runtime.anomaly.cleaning)",
            )
        if t_s < last_t - max_backstep_s:
            raise DataError(
                f"{source}:{line}: timestamp {t_text!r} is {last_t - t_s:.0f} s before an "
                f"earlier row's (more than the {max_backstep_s:.0f} s allowed for clock changes)",
                hint="sort the file by time",
            )
        last_t = max(last_t, t_s)
        yield line, t_text, t_s, value


def read_series(
    path: Path, channel: str | None = None, max_backstep_s: float = DEFAULT_MAX_BACKSTEP_S
) -> tuple[list[str], list[float], list[float]]:
    """Read a whole CSV: timestamp texts, times in seconds and values (see :func:`iter_series`)."""
    texts: list[str] = []
    times: list[float] = []
    values: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for _, text, t_s, value in iter_series(
                fh, source=str(path), channel=channel, max_backstep_s=max_backstep_s
            ):
                texts.append(text)
                times.append(t_s)
                values.append(value)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file", hint="check the path") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})", hint="give a CSV file") from None
    return texts, times, values
