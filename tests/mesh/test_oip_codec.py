"""Tensors to the wire and back, JSON and binary, for every datatype; strict refusals."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_runtime.errors import PeerProtocolError
from edge_runtime.mesh.oip import codec

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP16", "FP32", "FP64"]


def _arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    dtype = codec.DATATYPES[datatype]
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    elements = None
    if dtype.kind == "f":  # JSON has no NaN or infinity
        width: Any = dtype.itemsize * 8
        elements = st.floats(allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(dtype, shapes, elements=elements)


def _round_trip(arr: np.ndarray, binary: bool) -> np.ndarray:
    body, header_len = codec.encode_tensors({"id": "r"}, "inputs", {"t": arr}, binary)
    header, tail = codec.split_body(body, None if header_len is None else str(header_len))
    return codec.decode_tensors(header, tail, "inputs").tensors["t"]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), datatype=st.sampled_from(NUMERIC), binary=st.booleans())
def test_numeric_round_trip(data: st.DataObject, datatype: str, binary: bool) -> None:
    arr = data.draw(_arrays(datatype))
    back = _round_trip(arr, binary)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@settings(max_examples=30, deadline=None)
@given(items=st.lists(st.text(max_size=8), min_size=0, max_size=12), binary=st.booleans())
def test_bytes_round_trip(items: list[str], binary: bool) -> None:
    arr = np.array([s.encode() for s in items] or [], dtype=object).reshape(len(items))
    back = _round_trip(arr, binary)
    assert back.shape == (len(items),) and list(back) == [s.encode() for s in items]


def test_binary_bytes_may_hold_any_byte() -> None:
    arr = np.array([b"\x00\xff", b"", b"\r\n\r\n"], dtype=object).reshape(3, 1)
    assert list(_round_trip(arr, True).reshape(-1)) == list(arr.reshape(-1))


def test_nested_json_data_is_row_major() -> None:
    arr = codec.array_from_json([[1, 2, 3], [4, 5, 6]], (2, 3), "INT32", "t")
    np.testing.assert_array_equal(arr, [[1, 2, 3], [4, 5, 6]])


def test_datatype_names() -> None:
    assert codec.datatype_of(np.dtype(np.uint8)) == "UINT8"
    assert codec.datatype_of(np.dtype(np.float16)) == "FP16"
    assert codec.datatype_of(np.dtype("S3")) == "BYTES"
    with pytest.raises(PeerProtocolError, match="complex"):
        codec.datatype_of(np.dtype(np.complex64))


def _decode(header: dict[str, object], tail: bytes = b"") -> None:
    codec.decode_tensors(header, memoryview(tail), "inputs")


@pytest.mark.parametrize(("entry", "tail", "message"), [
    ({"name": "x", "shape": [2], "datatype": "BF16", "data": [1, 2]}, b"", "unknown datatype"),
    ({"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}, b"", "needs 3"),
    ({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 300]}, b"", "-128..127"),
    ({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 2.5]}, b"", "integers"),
    ({"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}, b"", "true or false"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [None]}, b"", "numbers"),
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], 2]}, b"", "mixes"),
    ({"name": "x", "shape": [-1], "datatype": "FP32", "data": []}, b"", "non-negative"),
    ({"name": "x", "shape": [1 << 20, 1 << 20], "datatype": "UINT8", "data": []}, b"",
     "more than"),
    ({"name": "x", "shape": [2], "datatype": "FP32"}, b"", "needs data"),
    ({"name": "x", "shape": [2], "datatype": "FP32",
      "parameters": {"binary_data_size": 4}}, b"\0" * 4, "does not match"),
    ({"name": "x", "shape": [2], "datatype": "FP32",
      "parameters": {"binary_data_size": 8}}, b"\0" * 4, "runs past"),
    ({"name": "x", "shape": [1], "datatype": "FP32",
      "parameters": {"binary_data_size": 4}}, b"\0" * 6, "after the binary"),
    ({"name": "x", "shape": [2], "datatype": "BYTES",
      "parameters": {"binary_data_size": 6}}, b"\x05\0\0\0ab", "runs past"),
    ({"name": "x", "shape": [2], "datatype": "BYTES",
      "parameters": {"binary_data_size": 5}}, b"\x01\0\0\0a", "needs 2"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
      "parameters": {"binary_data_size": 4}}, b"\0" * 4, "both"),
])
def test_bad_tensors_are_refused(entry: dict[str, object], tail: bytes, message: str) -> None:
    with pytest.raises(PeerProtocolError, match=message):
        _decode({"inputs": [entry]}, tail)


def test_bad_bodies_are_refused() -> None:
    with pytest.raises(PeerProtocolError, match="not valid JSON"):
        codec.split_body(b"{nope", None)
    with pytest.raises(PeerProtocolError, match="an object"):
        codec.split_body(b"[1]", None)
    with pytest.raises(PeerProtocolError, match="but the body has"):
        codec.split_body(b"{}", "99")
    with pytest.raises(PeerProtocolError, match="integer"):
        codec.split_body(b"{}", "two")
    with pytest.raises(PeerProtocolError, match="list 'inputs'"):
        _decode({})
    with pytest.raises(PeerProtocolError, match="twice"):
        _decode({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2})


def test_binary_layout_is_tritons() -> None:
    """The header's length goes in Inference-Header-Content-Length; tensors follow in
    header order, little-endian."""
    a = np.array([1, 2], dtype=np.int32)
    b = np.array([0.5], dtype=np.float32)
    body, n = codec.encode_tensors({}, "inputs", {"a": a, "b": b}, {"a": True, "b": True})
    assert n is not None
    header = msgspec.json.decode(body[:n])
    assert [e["parameters"]["binary_data_size"] for e in header["inputs"]] == [8, 4]
    assert body[n:] == a.astype("<i4").tobytes() + b.astype("<f4").tobytes()
    assert math.isclose(np.frombuffer(body[n + 8:], "<f4")[0], 0.5)
