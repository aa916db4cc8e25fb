"""``edge-runtime detect``: score a time-series CSV with the anomaly detector.

Writes ``timestamp,<value column>,anomaly_score,alarm`` rows in input order (the NAB
results format plus an ``alarm`` column: 1 where the score reaches the detector's
shipped default threshold, its alarm level). The input may use a comma, semicolon or
tab, carry a UTF-8 byte order mark, name its columns in any case and leave points out
(an empty cell or ``nan``: written back empty, score 0). A bad input row stops the run
with one line naming the file and line number (exit 2). A closing line on stderr gives
the rows read, the alarms and the top-scoring times.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from pathlib import Path
from typing import Any

#: Seconds between progress lines.
PROGRESS_EVERY_S = 2.0
#: Top-scoring alarm times named in the closing line.
TOP_ALARMS = 3


def register(subparsers: Any) -> None:
    """Add the ``detect`` sub-command."""
    p = subparsers.add_parser(
        "detect",
        help="score a time-series CSV for anomalies (NAB results format)",
        description=(
            "Stream a CSV through the online anomaly detector, one row at a time, and write "
            "timestamp,value,anomaly_score,alarm."
        ),
    )
    p.add_argument("--input", required=True, type=Path, help="CSV with a time column")
    p.add_argument("--output", required=True, type=Path, help="CSV to write ('-' for stdout)")
    p.add_argument("--time-column", default=None,
                   help="time column name (default: timestamp, time, datetime, date, ...)")
    p.add_argument("--value-column", "--channel", dest="value_column", default=None,
                   help="value column name (default: 'value', or the only other column)")
    p.add_argument(
        "--max-backstep-s",
        type=float,
        default=3600.0,
        help="allow time to step back this much (clock changes); 0 = strictly in order",
    )
    p.add_argument(
        "--progress", action="store_true", help="print progress on stderr (default: on a TTY)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``edge-runtime detect``."""
    from edge_runtime.anomaly.csvio import iter_series
    from edge_runtime.anomaly.detector import AnomalyDetector
    from edge_runtime.errors import CliUsageError, DataError

    src: Path = args.input
    if not src.is_file():
        raise CliUsageError(f"--input {src}: no such file", hint="check the path")
    detector = AnomalyDetector()
    threshold = detector.config.alarm_level
    update = detector.update
    show = bool(args.progress or sys.stderr.isatty())
    rows: list[str] = []
    alarms = missing = 0
    top: list[tuple[float, int, str]] = []  # min-heap of (score, -row, time text)
    value_name = args.value_column or "value"
    started = last_report = time.monotonic()
    try:
        with src.open(newline="", encoding="utf-8-sig") as fh:
            for i, (_, text, t_s, value) in enumerate(
                iter_series(
                    fh, source=str(src), channel=args.value_column,
                    time_column=args.time_column, max_backstep_s=args.max_backstep_s,
                    allow_missing=True,
                )
            ):
                if math.isnan(value):
                    missing += 1
                    rows.append(f"{text},,0.000000,0\n")
                    continue
                score = update(t_s, value)
                alarm = score >= threshold
                if alarm:
                    alarms += 1
                    heapq.heappush(top, (score, -i, text))
                    if len(top) > TOP_ALARMS:
                        heapq.heappop(top)
                rows.append(f"{text},{value!r},{score:.6f},{int(alarm)}\n")
                if show and not i % 4096:
                    now = time.monotonic()
                    if now - last_report >= PROGRESS_EVERY_S:
                        last_report = now
                        print(f"detect: {i} rows, {now - started:.1f} s", file=sys.stderr)
    except UnicodeDecodeError as exc:
        raise DataError(f"{src}: not UTF-8 text ({exc.reason})",
                        hint="save the file as UTF-8 CSV") from None
    if not rows:
        raise DataError(f"{src}: no data rows after the header",
                        hint="give a CSV with at least one row")
    header = f"timestamp,{value_name},anomaly_score,alarm\n"
    if str(args.output) == "-":
        sys.stdout.write(header)
        sys.stdout.writelines(rows)
    else:
        from edge_runtime.files import write_atomic

        # A FIFO or device is written through, a symlink followed, a folder refused.
        write_atomic(args.output, (header + "".join(rows)).encode("utf-8"))
    elapsed = time.monotonic() - started
    best = ", ".join(f"{t} ({s:.2f})" for s, _, t in sorted(top, reverse=True))
    print(f"detect: {len(rows)} rows read ({missing} missing), {alarms} alarms at score >= "
          f"{threshold:g}{'; top: ' + best if best else ''}; {elapsed:.2f} s -> {args.output}",
          file=sys.stderr)
    return 0
