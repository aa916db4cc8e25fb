"""The model-backend interface that every format implementation follows.

A backend wraps one loaded model file of one format and does the least possible:
it reports the model's tensors and runs already-validated inputs. Everything that is
the same across formats (input checking, quantization, statistics, warm-up) lives
in :class:`edge_runtime.models.model.Model`.

Implementers **must** set ``_inputs``, ``_outputs`` and :attr:`name` and provide
:meth:`run`, and make :meth:`run` safe to call from several threads (lock inside
if the engine is not); they **may** override :meth:`close`.
Implementations sit side by side: ``onnx_backend.py`` (onnxruntime),
``tflite_backend.py`` (LiteRT, falling back to tflite-runtime). A peer backend
(``remote``) will join them for offloading.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.models.types import TensorSpec

#: Model file suffix -> backend format name.
FORMATS: dict[str, str] = {".onnx": "onnx", ".tflite": "tflite"}


class Backend(ABC):
    """One loaded model, run by one inference engine."""

    #: Engine name reported to users, e.g. ``"onnxruntime 1.20.1"``.
    name: str = ""

    #: Set by each implementation's ``__init__``: the model's inputs, in the order
    #: :meth:`run` takes them, and its outputs, in the order :meth:`run` returns them.
    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs, in the order :meth:`run` takes them."""
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """The model's outputs, in the order :meth:`run` returns them."""
        return self._outputs

    @abstractmethod
    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one inference on arrays of exactly the input dtypes, in input order.

        Shapes are checked against :attr:`inputs` by the caller; dynamic dimensions
        may differ from call to call. Returns new arrays the caller may keep.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release the engine's resources."""


def detect_format(path: Path) -> str:
    """Return ``"onnx"`` or ``"tflite"`` for a model file, by suffix, else by content.

    TFLite flatbuffers carry the identifier ``TFL3`` at byte 4; ONNX protobufs have no
    magic number, so an unknown suffix is only accepted for TFLite.
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    from edge_runtime.errors import UnknownModelFormatError

    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise UnknownModelFormatError(f"cannot read {path}: {exc.strerror}") from exc
    if head[4:8] == b"TFL3":
        return "tflite"
    raise UnknownModelFormatError(
        f"{path.name}: unknown model format (suffix {path.suffix or 'none'!r})"
    )


def open_backend(fmt: str, path: Path, num_threads: int | None) -> Backend:
    """Load ``path`` with the backend for ``fmt``; imports the engine only now."""
    if fmt == "onnx":
        from edge_runtime.models.onnx_backend import OnnxBackend

        return OnnxBackend(path, num_threads=num_threads)
    if fmt == "tflite":
        from edge_runtime.models.tflite_backend import TFLiteBackend

        return TFLiteBackend(path, num_threads=num_threads)
    from edge_runtime.errors import UnknownModelFormatError

    raise UnknownModelFormatError(f"no backend for format {fmt!r}")


def engine_id(fmt: str) -> str:
    """Name and version of the engine that would run ``fmt`` (for the probe cache key)."""
    if fmt == "onnx":
        from edge_runtime.models.onnx_backend import engine_version

        return engine_version()
    from edge_runtime.models.tflite_backend import engine_version as tfl_version

    return tfl_version()


def zeros_for(specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    """Zero-filled arrays for each spec, dynamic dimensions set to 1 (warm-up, probing)."""
    return [
        np.zeros(tuple(1 if d is None else d for d in spec.shape), dtype=spec.dtype)
        for spec in specs
    ]
