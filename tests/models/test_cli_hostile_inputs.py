"""`edge-runtime infer` refuses hostile inputs with one line and exit 2: an image whose
header claims an absurd size (refused from the header, before anything is allocated),
and a `--top-k` below 1."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from edge_runtime.cli import main


def _png_header_only(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(60000, 60000), (20000, 20000)])
def test_an_image_claiming_an_absurd_size_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], width: int, height: int) -> None:
    png = _png_header_only(tmp_path / "huge.png", width, height)
    assert main(["infer", "digits-int8-onnx", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"claims {width} x {height}, more than the 67108864 pixels" in err


def test_a_jpeg_claiming_an_absurd_size_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok
    jpg = bytearray(data.tobytes())
    sof = jpg.index(b"\xff\xc0")  # baseline frame header: height and width after 5 bytes
    jpg[sof + 5:sof + 9] = struct.pack(">HH", 50000, 50000)
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(jpg))
    assert main(["infer", "digits-int8-onnx", str(path)]) == 2
    assert "claims 50000 x 50000" in capsys.readouterr().err


@pytest.mark.parametrize("k", ["0", "-1"])
def test_top_k_below_one_is_refused(capsys: pytest.CaptureFixture[str], k: str) -> None:
    values = ",".join(["0.5"] * 64)
    assert main(["infer", "digits-int8-onnx", values, "--top-k", k]) == 2
    assert f"--top-k must be at least 1, got {k}" in capsys.readouterr().err
