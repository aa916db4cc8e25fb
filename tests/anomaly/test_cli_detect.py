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
    assert lines[0] == "timestamp,value,anomaly_score"
    assert len(lines) == len(src)
    assert [ln.split(",")[0] for ln in lines[1:]] == [ln.split(",")[0] for ln in src[1:]]
    assert all(0.0 <= float(ln.split(",")[2]) <= 1.0 for ln in lines[1:])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("time,value\n2020-01-01 00:00:00,1\n", ":1: no 'timestamp' column"),
        ("timestamp,other,more\n2020-01-01 00:00:00,1,2\n", ":1: no 'value' column"),
        ("timestamp,value\n2020-01-01 00:00:00,1\nyesterday,2\n", ":3: unparsable timestamp"),
        ("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,nan\n", ":3: value is 'nan'"),
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
