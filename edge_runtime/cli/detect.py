"""``edge-runtime detect``: score a ``timestamp,value`` CSV with the anomaly detector.

Writes ``timestamp,value,anomaly_score`` rows in input order (the NAB results format).
A bad input row stops the run with one line naming the file and line number (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

#: Seconds between progress lines.
PROGRESS_EVERY_S = 2.0


def register(subparsers: Any) -> None:
    """Add the ``detect`` sub-command."""
    p = subparsers.add_parser(
        "detect",
        help="score a timestamp,value CSV for anomalies (NAB results format)",
        description=(
            "Stream a CSV through the online anomaly detector, one row at a time, and write "
            "timestamp,value,anomaly_score."
        ),
    )
    p.add_argument("--input", required=True, type=Path, help="CSV with a timestamp column")
    p.add_argument("--output", required=True, type=Path, help="CSV to write ('-' for stdout)")
    p.add_argument("--channel", default=None, help="value column name (default: 'value')")
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
        raise CliUsageError(f"--input {src}: no such file")
    detector = AnomalyDetector()
    update = detector.update
    show = bool(args.progress or sys.stderr.isatty())
    rows: list[str] = []
    started = last_report = time.monotonic()
    try:
        with src.open(newline="", encoding="utf-8") as fh:
            for i, (_, text, t_s, value) in enumerate(
                iter_series(
                    fh, source=str(src), channel=args.channel, max_backstep_s=args.max_backstep_s
                )
            ):
                score = update(t_s, value)
                rows.append(f"{text},{value!r},{score:.6f}\n")
                if show and not i % 4096:
                    now = time.monotonic()
                    if now - last_report >= PROGRESS_EVERY_S:
                        last_report = now
                        print(f"detect: {i} rows, {now - started:.1f} s", file=sys.stderr)
    except UnicodeDecodeError as exc:
        raise DataError(f"{src}: not UTF-8 text ({exc.reason})", hint="give a CSV file") from None
    header = f"timestamp,{args.channel or 'value'},anomaly_score\n"
    if str(args.output) == "-":
        sys.stdout.write(header)
        sys.stdout.writelines(rows)
    else:
        out: Path = args.output
        tmp = out.with_name(out.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(header)
                fh.writelines(rows)
            tmp.replace(out)
        except OSError as exc:
            raise CliUsageError(f"--output {out}: cannot write ({exc.strerror})") from None
    if show:
        elapsed = time.monotonic() - started
        print(f"detect: {len(rows)} rows in {elapsed:.2f} s -> {args.output}", file=sys.stderr)
    return 0
