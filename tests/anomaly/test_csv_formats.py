"""``edge-runtime detect`` and :mod:`edge_runtime.anomaly.csvio` on the CSVs people have:
other delimiters, a byte order mark, other column names and cases, missing points."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import pytest

from edge_runtime.anomaly.csvio import iter_series, sniff_delimiter
from edge_runtime.cli import main
from edge_runtime.errors import DataError


def _rows(n: int = 400, spike_at: int = 300) -> list[tuple[str, float]]:
    rng = random.Random(4)
    out = []
    for i in range(n):
        v = 10.0 + rng.gauss(0.0, 0.5) + (30.0 if i == spike_at else 0.0)
        out.append((f"2024-03-01T{i // 12 % 24:02d}:{i % 12 * 5:02d}:00+00:00"
                    if i < 288 else f"2024-03-02T{(i - 288) // 12:02d}:{i % 12 * 5:02d}:00+00:00",
                    v))
    return out


def _detect(tmp_path: Path, text: str, *extra: str, encoding: str = "utf-8") -> tuple[
        int, list[list[str]], str]:
    src = tmp_path / "in.csv"
    src.write_bytes(text.encode(encoding))
    out = tmp_path / "out.csv"
    code = main(["detect", "--input", str(src), "--output", str(out), *extra])
    rows = [ln.split(",") for ln in out.read_text().splitlines()] if out.exists() else []
    return code, rows, ""


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_bom_and_header_case_are_found_by_themselves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], delimiter: str) -> None:
    body = "".join(f"{t}{delimiter}{v!r}\n" for t, v in _rows())
    text = f"\ufeffTimeStamp{delimiter}Temperature_C\n" + body
    code, rows, _ = _detect(tmp_path, text)
    assert code == 0
    assert rows[0] == ["timestamp", "value", "anomaly_score", "alarm"]
    assert len(rows) == 401
    alarms = [i for i, r in enumerate(rows[1:]) if r[3] == "1"]
    assert 300 in alarms
    closing = capsys.readouterr().err.strip().splitlines()[-1]
    assert "400 rows read" in closing and f"{len(alarms)} alarms" in closing
    assert _rows()[300][0] in closing  # the spike is among the top-scoring times


def test_named_columns_missing_points_and_decimal_commas(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["id;Zeit;Wert;other"]
    for k, (t, v) in enumerate(_rows()):
        cell = "" if k == 100 else "NaN" if k == 101 else f"{v:.3f}".replace(".", ",")
        lines.append(f"{k};{t};{cell};x")
    code, rows, _ = _detect(tmp_path, "\n".join(lines) + "\n",
                            "--time-column", "ZEIT", "--value-column", "wert")
    assert code == 0
    assert rows[0] == ["timestamp", "wert", "anomaly_score", "alarm"]
    assert rows[101][1:] == ["", "0.000000", "0"] and rows[102][1:] == ["", "0.000000", "0"]
    assert float(rows[1][1]) == pytest.approx(_rows()[0][1], abs=1e-3)
    assert rows[301][3] == "1"
    assert "(2 missing)" in capsys.readouterr().err


def test_tab_file_with_one_value_column_besides_time(tmp_path: Path) -> None:
    text = "date\tload\n" + "".join(f"{t}\t{v}\n" for t, v in _rows())
    code, rows, _ = _detect(tmp_path, text)
    assert code == 0 and rows[0][1] == "value" and len(rows) == 401


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("", "file is empty", "first line names its columns"),
        ("\ufeff\n", "file is empty", "first line"),
        ("a|b\n1|2\n", "no 'timestamp' column", "delimiter"),
        ("time,a,b\n0,1,2\n", "no 'value' column", "--value-column"),
        ("time,value\n0,1\n", "", ""),
    ],
)
def test_header_errors_carry_a_fitting_hint(text: str, message: str, hint: str) -> None:
    stream = io.StringIO(text)
    if not message:
        assert [v for *_, v in iter_series(stream, source="s.csv")] == [1.0]
        return
    with pytest.raises(DataError) as err:
        list(iter_series(stream, source="s.csv"))
    assert message in str(err.value)
    assert hint in err.value.hint


def test_bad_named_column_names_the_option(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _detect(tmp_path, "timestamp,value\n0,1\n", "--value-column", "temp")
    assert code == 2
    err = capsys.readouterr().err
    assert "no column 'temp'" in err and "--value-column" in err


def test_missing_points_are_errors_unless_allowed() -> None:
    text = "timestamp,value\n0,1\n60,\n120,nan\n"
    with pytest.raises(DataError, match=":3: value is ''"):
        list(iter_series(io.StringIO(text), source="s.csv"))
    values = [v for *_, v in iter_series(io.StringIO(text), source="s.csv", allow_missing=True)]
    assert values[0] == 1.0 and math.isnan(values[1]) and math.isnan(values[2])


def test_sniff_delimiter() -> None:
    assert sniff_delimiter("a,b\n") == ","
    assert sniff_delimiter("a;b;c\n") == ";"
    assert sniff_delimiter("a\tb\n") == "\t"
    assert sniff_delimiter("value\n") == ","
