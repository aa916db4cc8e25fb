"""The node's models as an OIP server's :class:`~edge_runtime.mesh.oip.server.ModelProvider`.

The integration side of the OIP library: models are loaded with
:func:`edge_runtime.models.load_model` on first use and kept. They run *raw*
(``dequantize=False``): a quantized output goes back as its integers, with the scale and
zero point in the model metadata, so a peer's :class:`~edge_runtime.models.model.Model`
(de)quantizes exactly as a local run would.

Threads: :meth:`ManifestModels.load` and ``run`` run in the server's executor;
``names``/``loaded`` on the loop (dictionary reads).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.errors import ModelNotFoundError
from edge_runtime.models.model import Model
from edge_runtime.models.types import TensorSpec


class RawModel:
    """A :class:`Model` served raw (see the module docstring)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self.model.inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self.model.outputs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(inputs, dequantize=False)


def served_name(spec: str) -> str:
    """The name a model is served under: a shipped model's name, a manifest's ``name``,
    a model file's stem (blocking: reads a manifest)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".toml":
        from edge_runtime.models.manifest import load_manifest

        return load_manifest(path).name
    if path.suffix.lower() in (".onnx", ".tflite"):
        return path.stem
    return spec


class ManifestModels:
    """Serves ``specs`` (shipped model names, manifest paths, model files), each under
    :func:`served_name`, loaded once on first use with ``num_threads`` engine threads.
    Construct it off the loop (it reads manifests); :meth:`close` releases the models."""

    def __init__(self, specs: Sequence[str], *, num_threads: int | None = None) -> None:
        self._specs = {served_name(s): s for s in specs}
        self._names = list(self._specs)
        self._num_threads = num_threads
        self._models: dict[str, RawModel] = {}
        self._lock = threading.Lock()

    def names(self) -> Sequence[str]:
        return self._names

    def loaded(self, name: str) -> RawModel | None:
        return self._models.get(name)

    def load(self, name: str) -> RawModel:
        if name not in self._names:
            raise ModelNotFoundError(f"model {name!r} is not served here")
        with self._lock:
            found = self._models.get(name)
            if found is None:
                from edge_runtime.models import load_model

                found = self._models[name] = RawModel(load_model(
                    self._specs[name], self._num_threads))
            return found

    def close(self) -> None:
        """Release every loaded model (blocking: in an executor)."""
        with self._lock:
            for served in self._models.values():
                served.model.close()
            self._models.clear()
