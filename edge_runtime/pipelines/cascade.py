"""The cascade stage: a small local classifier answers first, and only the frames it is
unsure of go to the pipeline's own (heavy, perhaps offloaded) model.

``[pipelines.cascade] model = "digits-int8-onnx", threshold = 0.9``: the small model
runs on every frame the gate lets through, here, with its own manifest's
preprocessing; when its top class scores at least ``threshold`` its answer is the
result (``"cascade": "small"``), otherwise the frame goes on to the pipeline's model.
The decision and the counts are :class:`edge_runtime.mesh.scheduler.Cascade`'s.

Threads: :meth:`CascadeStage.answer` runs in the pipeline's worker thread(s), several at
once with ``inflight`` (the counts are locked); :meth:`state` anywhere.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.errors import ConfigError
from edge_runtime.mesh.scheduler import Cascade
from edge_runtime.models.manifest import ClassificationPostprocessing
from edge_runtime.pipelines import postprocess
from edge_runtime.pipelines.preprocess import frame_preprocessor

if TYPE_CHECKING:
    from edge_runtime.models.model import Model


class CascadeStage:
    """See the module docstring."""

    def __init__(self, small: Model, threshold: float) -> None:
        post = small.manifest.postprocessing if small.manifest is not None else None
        if post is not None and not isinstance(post, ClassificationPostprocessing):
            raise ConfigError(f"cascade model {small.name} is not a classifier (its "
                              "confidence is its top class's score)",
                              hint="use a classification model as the small model")
        self.small = small
        self._spec = post if post is not None else ClassificationPostprocessing()
        self._labels = small.labels
        self._fn = frame_preprocessor(small)
        self._gate = Cascade(threshold)
        self._lock = threading.Lock()

    def answer(self, frame: np.ndarray[Any, Any]) -> dict[str, Any] | None:
        """The small model's result when it is sure enough, else None (blocking)."""
        result = postprocess.classify(self.small.run(self._fn(frame)), self._spec,
                                      self._labels)
        with self._lock:
            heavy = self._gate.needs_heavy(float(result.get("score", float("nan"))))
        if heavy:
            return None
        result["cascade"] = "small"
        return result

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"model": self.small.name, "threshold": self._gate.threshold,
                    "answered_small": self._gate.answered_small,
                    "escalated": self._gate.escalated,
                    "escalated_fraction": round(self._gate.escalated_fraction, 4)}

    def close(self) -> None:
        self.small.close()
