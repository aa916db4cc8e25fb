"""The backend registry (models/backends.py): the interface imports no implementation,
and a new backend is one module plus one registry line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import UnknownModelFormatError
from edge_runtime.models import backends
from edge_runtime.models.backend import Backend, zeros_for

#: A whole backend in one file: echoes its float input (what a peer backend's test
#: double could look like).
ECHO_BACKEND = '''
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.models.backend import Backend
from edge_runtime.models.types import TensorSpec


class EchoBackend(Backend):
    @classmethod
    def engine_version(cls) -> str:
        return "echo 1.0"

    def __init__(self, path: Path, *, num_threads: int | None = None) -> None:
        self.name = self.engine_version()
        self.num_threads = num_threads
        spec = TensorSpec(name="x", shape=(None, 3), dtype=np.dtype(np.float32))
        self._inputs = [spec]
        self._outputs = [spec]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.array(a, copy=True) for a in arrays]
'''


def test_the_interface_imports_no_implementation() -> None:
    code = ("import sys, edge_runtime.models.backend\n"
            "print(','.join(m for m in sys.modules if m.endswith('_backend')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_a_new_backend_is_one_module_and_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"echo_backend_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(ECHO_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(backends.BACKENDS, "echo", f"{module}:EchoBackend")
    backend = backends.open_backend("echo", tmp_path / "model.echo", 2)
    assert isinstance(backend, Backend) and backend.name == "echo 1.0"
    assert backends.engine_id("echo") == "echo 1.0"
    x = zeros_for(backend.inputs)[0] + 1.5
    assert np.array_equal(backend.run([x])[0], x)


def test_shipped_formats_and_unknown_ones() -> None:
    assert backends.backend_class("onnx").__name__ == "OnnxBackend"
    assert backends.backend_class("tflite").__name__ == "TFLiteBackend"
    assert backends.engine_id("onnx").startswith("onnxruntime ")
    with pytest.raises(UnknownModelFormatError,
                       match=r"no backend for format 'pte' \(known: onnx, tflite, remote\)"):
        backends.open_backend("pte", Path("model.pte"), None)
