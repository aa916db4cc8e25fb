"""``style = "yolov8" | "yolov5" | "yolo"``: Ultralytics exports.

- YOLOv8 / v11 (and v9, v10 ``one2many``): one output ``(1, 4 + C, N)`` (``(1, N, 4 + C)``
  accepted), rows ``cx, cy, w, h`` then C class scores, no objectness;
- YOLOv5: one output ``(1, N, 5 + C)``: ``cx, cy, w, h, objectness`` then C class
  scores; a box's score is ``objectness * class score``;
- ``yolo``: whichever of the two the output's shape is.

Boxes are in input pixels (``coordinates = "pixels"``, what Ultralytics writes) or
fractions. C comes from ``labels``, which is why YOLO manifests must list them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.errors import ManifestError
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


class YoloDecoder(Decoder):
    """Ultralytics YOLO outputs, v5 (objectness) or v8/v11 (none)."""

    def __init__(self, spec: DetectionPostprocessing, labels: Sequence[str],
                 input_size: tuple[int, int]) -> None:
        super().__init__(labels, input_size)
        if not labels:
            raise ManifestError(
                f"style = {spec.style!r} needs `labels` (one per class, in training order): "
                "they say how many class columns the output has"
            )
        self.spec = spec
        self.name = spec.style
        self.num_classes = len(labels)
        self._output = ""
        #: "v8" (channels first), "v8t" (v8 rows), "v5"
        self.layout = ""

    def expectations(self) -> list[Expectation]:
        c = self.num_classes
        v8 = Expectation("predictions", f"(1, {4 + c}, N)",
                         f"YOLOv8/11: cx, cy, w, h, {c} class scores per column")
        v5 = Expectation("predictions", f"(1, N, {5 + c})",
                         f"YOLOv5: cx, cy, w, h, objectness, {c} class scores per row")
        if self.spec.style == "yolov8":
            return [v8]
        if self.spec.style == "yolov5":
            return [v5]
        return [v8, v5]

    def bind(self, outputs: Sequence[TensorSpec]) -> None:
        c = self.num_classes
        named = find_output(outputs, self.spec.boxes_output)
        if self.spec.boxes_output is not None and named is None:
            raise self.mismatch(outputs, f"no output named {self.spec.boxes_output!r}")
        if named is None and len(outputs) != 1:
            raise self.mismatch(
                outputs, f"YOLO exports have one output, the model has {len(outputs)}",
                "two outputs like regressors + classificators are an anchor SSD (MediaPipe): "
                "use style = \"ssd_anchors\"" if len(outputs) == 2 else
                "name the predictions with boxes_output")
        out = named or outputs[0]
        shape = out.shape[1:] if len(out.shape) == 3 and out.shape[0] in (1, None) else None
        if shape is None:
            advice = ("an output of rank 4 (1, H, W, C) looks like a segmentation map: use "
                      "task = \"segmentation\"") if len(out.shape) == 4 else ""
            raise self.mismatch(outputs, f"output {out.name!r} is not of rank 3", advice)
        rows, cols = shape
        style = self.spec.style
        if style in ("yolov8", "yolo") and rows == 4 + c:
            self.layout = "v8"
        elif style in ("yolov8", "yolo") and cols == 4 + c and rows != 5 + c:
            self.layout = "v8t"
        elif style in ("yolov5", "yolo") and cols == 5 + c:
            self.layout = "v5"
        else:
            raise self.mismatch(
                outputs, f"output {out.name!r} {out.shape} does not fit {c} label(s)",
                "check that `labels` lists every class the model was trained on")
        self._output = out.name

    def decode(self, outputs: Outputs, geometry: FrameGeometry | None = None) -> Result:
        spec = self.spec
        pred = np.asarray(outputs[self._output], np.float32)
        pred = pred.reshape(pred.shape[-2], pred.shape[-1])
        if self.layout == "v5":
            objectness = pred[:, 4]
            # score = objectness * class <= objectness: drop most rows before the argmax.
            rows = pred[objectness >= spec.score_threshold]
            cls_scores = rows[:, 5:] * rows[:, 4:5]
            classes = np.argmax(cls_scores, axis=1)
            scores = cls_scores[np.arange(rows.shape[0]), classes]
            geometry_rows = rows[:, :4]
        else:
            by_class = pred[4:] if self.layout == "v8" else pred[:, 4:].T  # (C, N)
            best = by_class.max(axis=0)
            picked = np.flatnonzero(best >= spec.score_threshold)
            classes = np.argmax(by_class[:, picked], axis=0)
            scores = best[picked]
            geometry_rows = (pred[:4, picked].T if self.layout == "v8" else pred[picked, :4])
        keep_mask = scores >= spec.score_threshold
        xywh, scores = geometry_rows[keep_mask], scores[keep_mask]
        classes = classes[keep_mask].astype(np.int64)
        if spec.coordinates == "fractions":
            w_in, h_in = self.input_size
            xywh = xywh * np.asarray([w_in, h_in, w_in, h_in], np.float32)
        half = xywh[:, 2:4] / 2
        boxes = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
        if spec.nms == "weighted":
            keep, boxes, _ = weighted_nms(boxes, scores, spec.iou_threshold,
                                          max_out=spec.max_detections)
        else:
            keep = hard_nms(boxes, scores, spec.iou_threshold, classes, spec.max_detections)
            boxes = boxes[keep]
        return detection_result(boxes, scores[keep], classes[keep], self.labels,
                                self.input_size, geometry=geometry)
