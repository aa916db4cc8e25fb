"""``edge-runtime detect`` on a real NAB file and on bad CSVs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.cli import main

NAB_FILE = "realKnownCause/ec2_request_latency_system_failure.csv"


def test_detect_writes_nab_results_format(nab_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert main(["detect", "--input", str(nab_root / "data" / NAB_FILE), "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    src = (nab_root / "data" / NAB_FILE).read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,alarm"
    assert len(lines) == len(src)
    assert [ln.split(",")[0] for ln in lines[1:]] == [ln.split(",")[0] for ln in src[1:]]
    assert all(0.0 <= float(ln.split(",")[2]) <= 1.0 for ln in lines[1:])
    # alarm is the score at the shipped default threshold (the detector's alarm level)
    from edge_runtime.anomaly import DetectorConfig

    level = DetectorConfig().alarm_level
    assert all(ln.split(",")[3] == str(int(float(ln.split(",")[2]) >= level)) for ln in lines[1:])
    assert any(ln.endswith(",1") for ln in lines[1:])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("when,value\n2020-01-01 00:00:00,1\n", ":1: no 'timestamp' column"),
        ("", ": file is empty"),
        ("timestamp,value\n", ": no data rows"),
        ("timestamp,other,more\n2020-01-01 00:00:00,1,2\n", ":1: no 'value' column"),
        ("timestamp,value\n2020-01-01 00:00:00,1\nyesterday,2\n", ":3: unparsable timestamp"),
        ("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,inf\n", ":3: value is 'inf'"),
        ("timestamp,value\n2020-01-02 00:00:00,1\n2020-01-01 00:00:00,2\n", ":3: timestamp"),
        ("timestamp,value\n2020-01-01 00:00:00,abc\n", ":2: unparsable value"),
    ],
)
def test_bad_csv_gives_one_line_with_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(body)
    assert main(["detect", "--input", str(bad), "--output", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{bad}{message}" in err
    assert not (tmp_path / "o.csv").exists()


def test_detect_scores_equal_the_benchmark_detector(nab_root: Path, tmp_path: Path) -> None:
    """The CLI and ``benchmarks/nab_bench.py`` run the same detector on the same points."""
    import numpy as np

    from benchmarks.nab.corpus import Series
    from benchmarks.nab_bench import run_detector
    from edge_runtime.anomaly import AnomalyDetector
    from edge_runtime.anomaly.csvio import read_series
    from edge_runtime.anomaly.nab import prepare_series

    _, times, values = read_series(nab_root / "data" / NAB_FILE)
    prep = prepare_series(NAB_FILE, times, [])
    path = nab_root / "data" / NAB_FILE
    series = Series(NAB_FILE, path, np.asarray(times), np.asarray(values), prep)
    bench_scores, _ = run_detector(AnomalyDetector, [series])
    out = tmp_path / "out.csv"
    assert main(["detect", "--input", str(nab_root / "data" / NAB_FILE), "--output", str(out)]) == 0
    cli = [float(ln.split(",")[2]) for ln in out.read_text().splitlines()[1:]]
    expected = bench_scores[NAB_FILE].tolist()
    assert len(cli) == len(expected)
    assert max(abs(a - b) for a, b in zip(cli, expected, strict=True)) <= 5e-7  # 6 decimals
    assert sum(1 for s in expected if s > 0.0) > 0  # the file does alarm
