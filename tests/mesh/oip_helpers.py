"""Real test doubles for the OIP tests: scripted models, a fleet of certificates, and a
server run on the test's own loop."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography import x509

from edge_runtime.mesh import fleet as fl
from edge_runtime.mesh.oip.server import DictModels, OipServer, make_app
from edge_runtime.models.types import TensorSpec


class ScriptedModel:
    """A served model whose outputs are ``fn(inputs)``; ``delay_s`` of work per call
    (waits on an event, so a test can also hold every call with ``gate``)."""

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                 fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                 delay_s: float = 0.0) -> None:
        self._inputs, self._outputs, self.fn, self.delay_s = list(inputs), list(outputs), \
            fn, delay_s
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self.calls += 1
        self.gate.wait(10.0)
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        return self.fn(inputs)


def identity(shape: tuple[int | None, ...] = (None, 4), dtype: Any = np.float32,
             delay_s: float = 0.0) -> ScriptedModel:
    """``y = x``."""
    return ScriptedModel([TensorSpec("x", shape, np.dtype(dtype))],
                         [TensorSpec("y", shape, np.dtype(dtype))],
                         lambda d: {"y": d["x"]}, delay_s)


def two_outputs() -> ScriptedModel:
    """``sum = a + b`` (float32), ``mask = a > b`` (bool), from two float32 inputs."""
    spec = TensorSpec("a", (None, 3), np.dtype(np.float32))
    return ScriptedModel(
        [spec, TensorSpec("b", (None, 3), np.dtype(np.float32))],
        [TensorSpec("sum", (None, 3), np.dtype(np.float32)),
         TensorSpec("mask", (None, 3), np.dtype(np.bool_))],
        lambda d: {"sum": d["a"] + d["b"], "mask": d["a"] > d["b"]})


@asynccontextmanager
async def running_server(models: dict[str, Any], *, ssl_context: Any = None,
                         **limits: Any) -> AsyncIterator[OipServer]:
    """An OIP server on 127.0.0.1 (any free port) on the running loop, closed after."""
    app = make_app(DictModels(models), **limits)
    server = OipServer(app, host="127.0.0.1", port=0, ssl_context=ssl_context)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@dataclass
class Node:
    """One node's TLS files."""

    files: fl.TlsFiles


def node(fleet: fl.Fleet, folder: Path, name: str, *, hosts: Sequence[str] = (
        "localhost", "127.0.0.1"), expired: bool = False) -> Node:
    """A node enrolled in ``fleet`` (its key made beside it, as on a real node);
    ``expired``: a certificate whose validity ended yesterday."""
    key, csr = folder / f"{name}.key", folder / f"{name}.csr"
    fl.make_csr(key, csr, name, hosts=list(hosts))
    cert = folder / f"{name}.pem"
    if expired:
        ca_key, ca_cert = fleet.load_ca()
        now = dt.datetime.now(dt.UTC)
        issued = fl.issue_certificate(ca_key, ca_cert, x509.load_pem_x509_csr(
            csr.read_bytes()), not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1))
        from cryptography.hazmat.primitives import serialization

        cert.write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    else:
        cert.write_bytes(fl.enroll(fleet, name, csr).read_bytes())
    return Node(fl.TlsFiles(cert=cert, key=key, ca=fleet.ca_cert_path, crl=fleet.crl_path))


def write_identity_onnx(path: Path, *, shape: Sequence[int | str], elem: str = "FLOAT"
                        ) -> Path:
    """An ONNX model ``y = Identity(x)`` (``elem``: an onnx TensorProto type name)."""
    import onnx
    from onnx import TensorProto, helper

    kind = getattr(TensorProto, elem)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", kind, list(shape))],
        [helper.make_tensor_value_info("y", kind, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
