"""Reading and writing ``timestamp,value[,anomaly_score]`` CSV files (the NAB format),
and the CSVs people have: another delimiter, a byte order mark, other column names,
missing points.

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
    "MISSING",
    "TIME_COLUMNS",
    "format_timestamp",
    "iter_series",
    "parse_timestamp",
    "read_series",
    "sniff_delimiter",
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


#: Header names taken as the time column when none is named (case-insensitive).
TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "ts", "time_s", "t")
#: Cell texts read as a missing point (case-insensitive), besides an empty cell.
MISSING = frozenset({"nan", "na", "n/a", "null", "none", "-"})
_DELIMITERS = (",", ";", "\t")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a CSV from its header line: comma, semicolon or tab, whichever
    occurs most (comma on a tie or when none occurs)."""
    counts = [(header_line.count(d), -k, d) for k, d in enumerate(_DELIMITERS)]
    best = max(counts)
    return best[2] if best[0] > 0 else ","


def _pick_columns(
    names: list[str], source: str, time_column: str | None, value_column: str | None
) -> tuple[int, int]:
    """Indices of the time and value columns (names compared case-insensitively)."""
    lowered = [n.lower() for n in names]
    shown = ", ".join(repr(n) for n in names)

    def find(wanted: str, option: str) -> int:
        if wanted.lower() not in lowered:
            raise DataError(f"{source}:1: no column {wanted!r} in header ({shown})",
                            hint=f"name one of the header's columns with {option}")
        return lowered.index(wanted.lower())

    if time_column is not None:
        t_col = find(time_column, "--time-column")
    else:
        found = [lowered.index(c) for c in TIME_COLUMNS if c in lowered]
        if not found:
            raise DataError(
                f"{source}:1: no 'timestamp' column in header ({shown})",
                hint="name the time column with --time-column"
                + ("; the header has one column: is the delimiter a comma, semicolon "
                   "or tab?" if len(names) == 1 else ""))
        t_col = found[0]
    if value_column is not None:
        v_col = find(value_column, "--value-column")
    elif "value" in lowered:
        v_col = lowered.index("value")
    else:
        others = [k for k, n in enumerate(names) if k != t_col and n]
        if len(others) != 1:
            raise DataError(
                f"{source}:1: no 'value' column in header ({shown})",
                hint="name the value column with --value-column")
        v_col = others[0]
    if v_col == t_col:
        raise DataError(f"{source}:1: time and value are the same column {names[t_col]!r}",
                        hint="give two different columns")
    return t_col, v_col


def iter_series(
    stream: TextIO,
    *,
    source: str,
    channel: str | None = None,
    time_column: str | None = None,
    max_backstep_s: float = DEFAULT_MAX_BACKSTEP_S,
    allow_missing: bool = False,
) -> Iterator[tuple[int, str, float, float]]:
    """Yield ``(line_number, timestamp_text, t_s, value)`` from a CSV with a header.

    The delimiter (comma, semicolon or tab) is taken from the header line; a UTF-8 byte
    order mark is dropped; header names are compared case-insensitively. ``time_column``
    names the time column (default: the first of :data:`TIME_COLUMNS` present);
    ``channel`` the value column (default ``value``, or the only other column). With a
    semicolon delimiter a decimal comma (``1,5``) is read as a decimal point.

    With ``allow_missing``, an empty cell or one of :data:`MISSING` is a missing point
    and yields NaN; otherwise it is an error. Rows keep file order; time may repeat, or
    step back by at most ``max_backstep_s`` (a clock adjustment), measured from the
    latest time seen. Raises :class:`DataError` naming the line on a missing column, an
    unparsable timestamp or value, an infinite value or time going back too far.
    """
    first = stream.readline()
    if first.startswith("\ufeff"):
        first = first[1:]
    if not first.strip():
        raise DataError(f"{source}: file is empty, expected a header such as 'timestamp,value'",
                        hint="give a CSV whose first line names its columns")
    delimiter = sniff_delimiter(first)
    header = next(csv.reader([first], delimiter=delimiter))
    names = [h.strip() for h in header]
    t_col, v_col = _pick_columns(names, source, time_column, channel)
    decimal_comma = delimiter == ";"
    reader = csv.reader(stream, delimiter=delimiter)
    need = max(t_col, v_col) + 1
    last_t = -math.inf
    for row in reader:
        line = reader.line_num + 1  # the header was read before the reader started
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < need:
            raise DataError(f"{source}:{line}: expected {need} columns, got {len(row)}",
                            hint=f"every row needs the {names[t_col]!r} and "
                                 f"{names[v_col]!r} columns")
        t_text = row[t_col].strip()
        try:
            t_s = parse_timestamp(t_text)
        except ValueError:
            raise DataError(f"{source}:{line}: unparsable timestamp {t_text!r}",
                            hint="use ISO 8601 times or POSIX seconds") from None
        cell = row[v_col].strip()
        if not cell or cell.lower() in MISSING:
            if not allow_missing:
                raise DataError(
                    f"{source}:{line}: value is {cell!r}, not a finite number",
                    hint="drop the row or fill it before detection "
                         "(edge_runtime.anomaly.cleaning)")
            value = math.nan
        else:
            try:
                value = float(cell)
            except ValueError:
                try:
                    if not decimal_comma:
                        raise
                    value = float(cell.replace(",", "."))
                except ValueError:
                    raise DataError(f"{source}:{line}: unparsable value {cell!r}",
                                    hint="values must be numbers") from None
            if not math.isfinite(value):
                raise DataError(
                    f"{source}:{line}: value is {cell!r}, not a finite number",
                    hint="drop the row or fill it before detection "
                         "(edge_runtime.anomaly.cleaning)")
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
        with path.open(newline="", encoding="utf-8-sig") as fh:
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
