"""``style = "ssd"``: TFLite's detection post-process, or raw boxes + per-class scores.

Expected outputs (batch 1):

- TFLite ``TFLite_Detection_PostProcess``: boxes ``(1, N, 4)`` as ``ymin, xmin, ymax, xmax``
  fractions of the input, classes ``(1, N)``, scores ``(1, N)``, count ``(1,)``;
  classes and scores are told apart by name (``class``/``score`` in it), else taken in
  model order (classes first), or named by ``scores_output``;
- raw: boxes ``(1, N, 4)`` (same order) and scores ``(1, N, C)``, column 0 background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.models.decoders.base import (
    Decoder,
    Expectation,
    Outputs,
    Result,
    detection_result,
    find_output,
)
from edge_runtime.models.decoders.nms import hard_nms, weighted_nms
from edge_runtime.models.manifest import DetectionPostprocessing
from edge_runtime.models.preprocess import FrameGeometry
from edge_runtime.models.types import TensorSpec


class TFLiteSSDDecoder(Decoder):
    """Boxes already decoded by the model (TFLite detection post-process or raw SSD)."""

    name = "ssd"

    def __init__(self, spec: DetectionPostprocessing, labels: Sequence[str],
                 input_size: tuple[int, int]) -> None:
        super().__init__(labels, input_size)
        self.spec = spec
        self._boxes = ""
        self._classes: str | None = None
        self._scores = ""
        self._count: str | None = None

    def expectations(self) -> list[Expectation]:
        return [
            Expectation("boxes", "(1, N, 4)", "ymin, xmin, ymax, xmax as fractions of the input"),
            Expectation("classes", "(1, N)", "class indices"),
            Expectation("scores", "(1, N)", "or (1, N, C) per-class scores, column 0 background"),
            Expectation("count", "(1,)", "optional: how many of the N are valid"),
        ]

    def bind(self, outputs: Sequence[TensorSpec]) -> None:
        named = find_output(outputs, self.spec.boxes_output)
        if self.spec.boxes_output is not None and named is None:
            raise self.mismatch(outputs, f"no output named {self.spec.boxes_output!r}")
        boxes = named or next(
            (s for s in outputs if len(s.shape) == 3 and s.shape[-1] == 4), None)
        if boxes is None:
            advice = ""
            if any(len(s.shape) == 3 and (s.shape[-1] or 0) > 4 for s in outputs):
                advice = ("outputs like regressors (1, N, 4 + 2K) + classificators (1, N, 1) are "
                          "an anchor SSD (MediaPipe): use style = \"ssd_anchors\" with "
                          "[postprocessing.anchors]")
            if any(len(s.shape) == 4 for s in outputs):
                advice = ("an output of rank 4 (1, H, W, C) looks like a segmentation map: "
                          "use task = \"segmentation\" with [postprocessing] "
                          "type = \"segmentation\"")
            raise self.mismatch(outputs, "no boxes output of shape (1, N, 4)", advice)
        if boxes.shape[-1] != 4 or len(boxes.shape) != 3:
            raise self.mismatch(outputs, f"output {boxes.name!r} has shape {boxes.shape}, "
                                "not (1, N, 4)")
        n = boxes.shape[1]
        rest = [s for s in outputs if s is not boxes]
        per_class = [s for s in rest if len(s.shape) == 3 and s.shape[1] == n]
        named_scores = find_output(rest, self.spec.scores_output)
        self._boxes = boxes.name
        if named_scores is not None and len(named_scores.shape) == 3:
            per_class = [named_scores]
        if per_class:
            self._scores, self._classes, self._count = per_class[0].name, None, None
            return
        flat = [s for s in rest if len(s.shape) == 2 and s.shape[1] == n]
        if len(flat) < 2:
            raise self.mismatch(outputs, f"next to boxes {boxes.name!r} it needs classes and "
                                f"scores of shape (1, {n}) or scores (1, {n}, C)")
        scores = named_scores or next((s for s in flat if "score" in s.name.lower()), None)
        classes = next((s for s in flat if "class" in s.name.lower() and s is not scores), None)
        if scores is None and classes is None:
            classes, scores = flat[0], flat[1]
        elif scores is None:
            scores = next(s for s in flat if s is not classes)
        elif classes is None:
            classes = next(s for s in flat if s is not scores)
        assert scores is not None and classes is not None
        self._scores, self._classes = scores.name, classes.name
        count = next((s for s in rest if len(s.shape) == 1 and s.shape[0] in (1, None)), None)
        self._count = count.name if count is not None else None

    def decode(self, outputs: Outputs, geometry: FrameGeometry | None = None) -> Result:
        spec = self.spec
        yx = np.asarray(outputs[self._boxes], np.float32).reshape(-1, 4)
        n = yx.shape[0]
        raw_scores = np.asarray(outputs[self._scores], np.float32)
        if self._classes is None:
            per_class = raw_scores.reshape(n, -1)
            if per_class.shape[1] > 1:
                per_class = per_class[:, 1:]  # column 0 is background
            classes = np.argmax(per_class, axis=1).astype(np.int64)
            scores = per_class[np.arange(n), classes]
        else:
            classes = np.asarray(outputs[self._classes]).reshape(-1).astype(np.int64)
            scores = raw_scores.reshape(-1)
            if self._count is not None:
                m = int(np.asarray(outputs[self._count]).reshape(-1)[0])
                yx, scores, classes = yx[:m], scores[:m], classes[:m]
        keep_mask = scores >= spec.score_threshold
        w, h = self.input_size
        boxes = yx[keep_mask][:, [1, 0, 3, 2]] * np.asarray([w, h, w, h], np.float32)
        scores, classes = scores[keep_mask], classes[keep_mask]
        if spec.nms == "weighted":
            keep, boxes, _ = weighted_nms(boxes, scores, spec.iou_threshold,
                                          max_out=spec.max_detections)
        else:
            keep = hard_nms(boxes, scores, spec.iou_threshold, classes, spec.max_detections)
            boxes = boxes[keep]
        return detection_result(boxes, scores[keep], classes[keep], self.labels,
                                self.input_size, geometry=geometry)
