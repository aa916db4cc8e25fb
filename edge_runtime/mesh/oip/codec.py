"""Tensors on the wire: the Open Inference Protocol's JSON form and Triton's binary form.

JSON (KServe v2 REST): a tensor is ``{"name", "shape", "datatype", "data"}`` with
``data`` the elements in row-major order (flat, or nested as the shape says). Binary
(Triton's binary tensor data extension): the JSON header carries
``"parameters": {"binary_data_size": N}`` instead of ``data``; the body is the JSON header
(its length in the ``Inference-Header-Content-Length`` HTTP header) followed by each
binary tensor's raw little-endian bytes, in the order the header lists them. ``BYTES``
elements are a 4-byte little-endian length and the bytes, one after another.

Everything is checked: element counts against the shape, byte sizes against shape x
datatype, the sum of ``binary_data_size`` against the body. A violation raises
:class:`~edge_runtime.errors.PeerProtocolError` (the server answers 400 with
``{"error": message}``). Pure functions; run anywhere (the server runs them on the loop:
they are memory copies, no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from edge_runtime.errors import PeerProtocolError

#: The HTTP header that says how many body bytes are the JSON header.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: Content type of a body with binary tensors (Triton's clients send and expect this).
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"

#: Protocol datatype -> numpy dtype (little-endian). BYTES is an object array of bytes.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items()
                 if name != "BYTES"}
#: The most elements one tensor may have: 2**31 (a 2 GiB uint8 tensor; far past any body
#: limit, and it keeps ``prod(shape)`` from overflowing into nonsense).
MAX_ELEMENTS = 1 << 31
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol datatype of a numpy dtype (``uint8`` -> ``UINT8``, str/bytes -> BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    name = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise PeerProtocolError(f"no protocol datatype for numpy {dtype.name}",
                                hint="send bool, (u)int8..64, float16/32/64 or bytes")
    return name


def dtype_of(datatype: Any, where: str) -> np.dtype[Any]:
    """The numpy dtype of a protocol datatype; refuses unknown ones (BF16 included)."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise PeerProtocolError(f"{where}: unknown datatype {datatype!r} (known: "
                                f"{', '.join(DATATYPES)})") from None


def _shape_of(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            type(d) is int and 0 <= d <= MAX_ELEMENTS for d in value):
        raise PeerProtocolError(f"{where}: shape must be a list of non-negative integers, "
                                f"got {value!r}"[:300])
    shape = tuple(value)
    if math.prod(shape) > MAX_ELEMENTS:
        raise PeerProtocolError(f"{where}: shape {list(shape)} has more than "
                                f"{MAX_ELEMENTS} elements")
    return shape


def _nbytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return math.prod(shape) * dtype.itemsize


# --- one tensor ------------------------------------------------------------------------


def array_from_json(data: Any, shape: tuple[int, ...], datatype: str, where: str
                    ) -> np.ndarray:
    """A tensor's ``data`` (flat or nested lists) as an array of ``shape``, strictly:
    integers for integer types (in range), numbers for floats, booleans for BOOL,
    strings for BYTES."""
    dtype = dtype_of(datatype, where)
    count = math.prod(shape)
    flat = _flatten(data, where)
    if len(flat) != count:
        raise PeerProtocolError(f"{where}: shape {list(shape)} needs {count} element(s), "
                                f"data has {len(flat)}")
    if datatype == "BYTES":
        if not all(type(v) is str for v in flat):
            raise PeerProtocolError(f"{where}: BYTES data in JSON must be strings")
        arr = np.empty(count, dtype=object)
        arr[:] = [v.encode() for v in flat]
        return arr.reshape(shape)
    if datatype == "BOOL":
        if not all(type(v) is bool for v in flat):
            raise PeerProtocolError(f"{where}: BOOL data must be true or false")
        return np.array(flat, dtype=np.bool_).reshape(shape)
    if dtype.kind in "iu":
        if not all(type(v) is int for v in flat):
            raise PeerProtocolError(f"{where}: {datatype} data must be integers")
        info = np.iinfo(dtype)
        if flat and (min(flat) < info.min or max(flat) > info.max):
            raise PeerProtocolError(f"{where}: {datatype} values must lie in "
                                    f"{info.min}..{info.max}")
        return np.array(flat, dtype=dtype).reshape(shape)
    if not all(type(v) in (int, float) for v in flat):
        raise PeerProtocolError(f"{where}: {datatype} data must be numbers "
                                "(NaN and infinity are not JSON: send binary tensors)")
    return np.array(flat, dtype=dtype).reshape(shape)


def _flatten(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise PeerProtocolError(f"{where}: data must be a list")
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    stack = [data]
    while stack:  # row-major, depth-first; refuse ragged or mixed nesting
        item = stack.pop()
        if item and isinstance(item[0], list):
            if not all(isinstance(x, list) for x in item):
                raise PeerProtocolError(f"{where}: data mixes lists and values")
            stack.extend(reversed(item))
        else:
            if any(isinstance(x, list) for x in item):
                raise PeerProtocolError(f"{where}: data mixes lists and values")
            out.extend(item)
    return out


def array_to_json(arr: np.ndarray) -> list[Any]:
    """Flat row-major ``data`` for JSON (BYTES as UTF-8 text; raises if not UTF-8)."""
    if arr.dtype.kind in "OSU":
        try:
            return [_as_bytes(v).decode() for v in arr.reshape(-1)]
        except UnicodeDecodeError as exc:
            raise PeerProtocolError("a BYTES tensor that is not UTF-8 cannot be sent as "
                                    "JSON", hint="send it as a binary tensor") from exc
    out: list[Any] = arr.reshape(-1).tolist()
    return out


def array_from_bytes(buf: memoryview, shape: tuple[int, ...], datatype: str, where: str
                     ) -> np.ndarray:
    """A binary tensor from exactly its bytes (a copy, so the body can be freed)."""
    dtype = dtype_of(datatype, where)
    if datatype == "BYTES":
        return _bytes_tensor(buf, shape, where)
    need = _nbytes(shape, dtype)
    if len(buf) != need:
        raise PeerProtocolError(f"{where}: binary_data_size {len(buf)} does not match shape "
                                f"{list(shape)} x {datatype} = {need} bytes")
    return np.frombuffer(buf, dtype=dtype).reshape(shape).copy()


def _bytes_tensor(buf: memoryview, shape: tuple[int, ...], where: str) -> np.ndarray:
    count = math.prod(shape)
    items: list[bytes] = []
    pos = 0
    while pos < len(buf) and len(items) < count:
        if pos + 4 > len(buf):
            break
        n = int.from_bytes(buf[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(buf):
            raise PeerProtocolError(f"{where}: a BYTES element of {n} bytes runs past the "
                                    "tensor's binary_data_size")
        items.append(bytes(buf[pos:pos + n]))
        pos += n
    if len(items) != count or pos != len(buf):
        raise PeerProtocolError(f"{where}: binary BYTES data holds {len(items)} element(s) "
                                f"in {pos} of {len(buf)} bytes; shape {list(shape)} needs "
                                f"{count}")
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def array_to_bytes(arr: np.ndarray) -> bytes:
    """A tensor's binary form: raw little-endian elements, or length-prefixed BYTES."""
    if arr.dtype.kind in "OSU":
        parts: list[bytes] = []
        for v in arr.reshape(-1):
            b = _as_bytes(v)
            parts += (len(b).to_bytes(4, "little"), b)
        return b"".join(parts)
    want = DATATYPES[datatype_of(arr.dtype)]
    return np.ascontiguousarray(arr, dtype=want).tobytes()


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    raise PeerProtocolError(f"a BYTES element must be bytes or str, got {type(v).__name__}")


# --- whole bodies -------------------------------------------------------------------------


@dataclass(slots=True)
class Decoded:
    """A decoded request or response body: the JSON header and its tensors by name."""

    header: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header (an object) and the binary tail of a body."""
    view = memoryview(body)
    if header_length is None:
        json_part, tail = view, view[len(view):]
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise PeerProtocolError(f"{HEADER_LENGTH} must be an integer, got "
                                    f"{header_length[:40]!r}") from None
        if not 0 < n <= len(view):
            raise PeerProtocolError(f"{HEADER_LENGTH} is {n} but the body has {len(view)} "
                                    "bytes")
        json_part, tail = view[:n], view[n:]
    try:
        header = _decoder.decode(json_part)
    except msgspec.DecodeError as exc:
        raise PeerProtocolError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise PeerProtocolError("the JSON body must be an object")
    return header, tail


def decode_tensors(header: dict[str, Any], tail: memoryview, key: str) -> Decoded:
    """Decode the tensors listed under ``header[key]`` (``inputs`` or ``outputs``), taking
    binary ones from ``tail`` in order; the tail must be used up exactly."""
    entries = header.get(key)
    if not isinstance(entries, list):
        raise PeerProtocolError(f"the body needs a list {key!r}")
    out = Decoded(header)
    pos = 0
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise PeerProtocolError(f"{where} must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise PeerProtocolError(f"{where} needs a name")
        where = f"{key}[{i}] {name!r}"[:200]
        if name in out.tensors:
            raise PeerProtocolError(f"{where}: the tensor is listed twice")
        shape = _shape_of(entry.get("shape"), where)
        datatype = entry.get("datatype")
        dtype_of(datatype, where)
        assert isinstance(datatype, str)
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise PeerProtocolError(f"{where}: parameters must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise PeerProtocolError(f"{where}: binary_data_size must be a non-negative "
                                        "integer")
            if "data" in entry:
                raise PeerProtocolError(f"{where}: has both data and binary_data_size")
            if pos + size > len(tail):
                raise PeerProtocolError(f"{where}: binary_data_size {size} runs past the "
                                        f"body ({len(tail) - pos} bytes left)")
            arr = array_from_bytes(tail[pos:pos + size], shape, datatype, where)
            pos += size
        else:
            if "data" not in entry:
                raise PeerProtocolError(f"{where}: needs data or parameters.binary_data_size")
            arr = array_from_json(entry["data"], shape, datatype, where)
        out.tensors[name] = arr
    if pos != len(tail):
        raise PeerProtocolError(f"the body has {len(tail) - pos} byte(s) after the binary "
                                "tensors its header announces")
    return out


def encode_tensors(header: dict[str, Any], key: str, tensors: Mapping[str, np.ndarray],
                   binary: Mapping[str, bool] | bool) -> tuple[bytes, int | None]:
    """Body bytes for ``header`` plus ``tensors`` under ``header[key]``; returns the body
    and the JSON header's length (None when every tensor is JSON: a plain JSON body)."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr in tensors.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(arr.dtype),
                                 "shape": list(arr.shape)}
        as_binary = binary if isinstance(binary, bool) else binary.get(name, False)
        if as_binary:
            blob = array_to_bytes(arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array_to_json(arr)
        entries.append(entry)
    head = _encoder.encode({**header, key: entries})
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def tensor_metadata(name: str, dtype: np.dtype[Any], shape: Sequence[int | None],
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One tensor of a model's metadata (``-1`` for a dynamic dimension)."""
    meta: dict[str, Any] = {"name": name, "datatype": datatype_of(dtype),
                            "shape": [-1 if d is None else d for d in shape]}
    if extra:
        meta["parameters"] = dict(extra)
    return meta
