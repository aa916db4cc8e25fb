"""``style = "ssd_anchors"``: MediaPipe-style SSD (BlazeFace, palm detection).

Outputs: ``regressors (1, N, 4 + 2K)`` (box then K keypoints, relative to an anchor) and
``classificators (1, N, C)`` (logits, usually C = 1). The N anchors are generated from
``[postprocessing.anchors]`` exactly as MediaPipe's ``SsdAnchorsCalculator`` does and
decoded as its ``TensorsToDetectionsCalculator`` does:

``x_center = raw_x / x_scale * anchor_w + anchor_x`` (same for y),
``w = raw_w / w_scale * anchor_w`` (or ``exp(raw_w / w_scale) * anchor_w`` with
``apply_exponential_on_box_size``), keypoints like the centre; scores are
``sigmoid(clip(raw, +-score_clipping_thresh))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge_runtime.errors import ManifestError
from edge_runtime.models.decoders.base import (
    Decoder,
    Expectation,
    FloatArray,
    Outputs,
    Result,
    detection_result,
    find_output,
    rows_detection_result,
    sigmoid,
)
from edge_runtime.models.decoders.nms import hard_nms, weighted_nms_rows
from edge_runtime.models.manifest import AnchorConfig, DetectionPostprocessing
from edge_runtime.models.preprocess import FrameGeometry
from edge_runtime.models.types import TensorSpec


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def generate_anchors(cfg: AnchorConfig) -> FloatArray:
    """Anchors ``(N, 4)``: x_center, y_center, width, height as fractions of the input."""
    if cfg.num_layers < 1 or len(cfg.strides) != cfg.num_layers:
        raise ManifestError(
            f"postprocessing.anchors: num_layers is {cfg.num_layers} but strides has "
            f"{len(cfg.strides)} entries; give one stride per layer"
        )
    if cfg.feature_map_width and (len(cfg.feature_map_width) != cfg.num_layers
                                  or len(cfg.feature_map_height) != cfg.num_layers):
        raise ManifestError("postprocessing.anchors: feature_map_width and feature_map_height "
                            "need one entry per layer")
    input_w, input_h = cfg.input_size
    strides = cfg.strides
    parts: list[FloatArray] = []
    layer = 0
    while layer < cfg.num_layers:
        heights: list[float] = []
        widths: list[float] = []
        ratios: list[float] = []
        scales: list[float] = []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _scale(cfg.min_scale, cfg.max_scale, last, len(strides))
            if last == 0 and cfg.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in cfg.aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                if cfg.interpolated_scale_aspect_ratio > 0.0:
                    scale_next = 1.0 if last == len(strides) - 1 else _scale(
                        cfg.min_scale, cfg.max_scale, last + 1, len(strides))
                    scales.append(math.sqrt(scale * scale_next))
                    ratios.append(cfg.interpolated_scale_aspect_ratio)
            last += 1
        for ratio, scale in zip(ratios, scales, strict=True):
            root = math.sqrt(ratio)
            heights.append(scale / root)
            widths.append(scale * root)
        if cfg.feature_map_width:
            fm_w, fm_h = cfg.feature_map_width[layer], cfg.feature_map_height[layer]
        else:
            fm_w = math.ceil(input_w / strides[layer])
            fm_h = math.ceil(input_h / strides[layer])
        ys, xs = np.meshgrid(np.arange(fm_h), np.arange(fm_w), indexing="ij")
        k = len(heights)
        xc = np.repeat(((xs + cfg.anchor_offset_x) / fm_w).reshape(-1), k)
        yc = np.repeat(((ys + cfg.anchor_offset_y) / fm_h).reshape(-1), k)
        if cfg.fixed_anchor_size:
            aw = np.ones_like(xc)
            ah = np.ones_like(yc)
        else:
            aw = np.tile(np.asarray(widths), fm_w * fm_h)
            ah = np.tile(np.asarray(heights), fm_w * fm_h)
        parts.append(np.stack([xc, yc, aw, ah], axis=1).astype(np.float32))
        layer = last
    return np.concatenate(parts, axis=0)


class AnchorSSDDecoder(Decoder):
    """MediaPipe BlazeFace / palm style: regressors relative to generated anchors."""

    name = "ssd_anchors"

    def __init__(self, spec: DetectionPostprocessing, labels: Sequence[str],
                 input_size: tuple[int, int]) -> None:
        super().__init__(labels, input_size)
        if spec.anchors is None:
            raise ManifestError(
                "postprocessing.anchors is missing: style = \"ssd_anchors\" generates its "
                "anchors from it (strides, min_scale, max_scale...; see docs/models.md)"
            )
        self.spec = spec
        self.anchors = generate_anchors(spec.anchors)
        aw, ah = spec.anchors.input_size
        self._scales = np.asarray([spec.x_scale or aw, spec.y_scale or ah,
                                   spec.w_scale or aw, spec.h_scale or ah], np.float32)
        self._values = 4 + 2 * spec.num_keypoints
        self._boxes = ""
        self._scores = ""
        # Per-call work is numpy call overhead, not arithmetic: everything that does not
        # depend on the outputs is laid out here once, per anchor and per regressor
        # column, so a frame is one gather, one divide, one multiply and one add.
        v, k = self._values, spec.num_keypoints
        if spec.reverse_output_order:
            columns = list(range(v))
        else:  # y, x, h, w and (y, x) keypoints -> x, y, w, h and (x, y)
            columns = [1, 0, 3, 2] + [4 + 2 * j + d for j in range(k) for d in (1, 0)]
        #: regressor columns in x, y, w, h, kx0, ky0, ... order
        self._columns = np.asarray(columns, np.intp)
        self._identity_columns = columns == list(range(v))
        xs, ys, ws, hs = (float(a) for a in self._scales)
        self._divisors = np.asarray([xs, ys, ws, hs] + [xs, ys] * k, np.float32)
        cx, cy, cw, ch = (self.anchors[:, i] for i in range(4))
        #: (N, V): what each column is multiplied by (anchor width or height) ...
        self._anchor_mul = np.stack([cw, ch, cw, ch] + [cw, ch] * k, axis=1).astype(np.float32)
        #: ... and what is added after (anchor centre; 0 for width and height)
        zero = np.zeros_like(cx)
        self._anchor_add = np.stack([cx, cy, zero, zero] + [cx, cy] * k,
                                    axis=1).astype(np.float32)
        in_w, in_h = input_size
        self._box_size = np.asarray([in_w, in_h, in_w, in_h], np.float32)
        self._kp_size = np.asarray([in_w, in_h] * k, np.float32)
        t = min(max(spec.score_threshold, 1e-7), 1 - 1e-7)
        self._logit_threshold = math.log(t / (1 - t))
        self._empty: Result | None = None

    def expectations(self) -> list[Expectation]:
        n, v = len(self.anchors), self._values
        order = "x, y, w, h" if self.spec.reverse_output_order else "y, x, h, w"
        return [
            Expectation("regressors", f"(1, {n}, {v})",
                        f"{order} then {self.spec.num_keypoints} keypoints (x, y), per anchor"),
            Expectation("classificators", f"(1, {n}, C)", "score logits per anchor"),
        ]

    def bind(self, outputs: Sequence[TensorSpec]) -> None:
        n = len(self.anchors)
        spec = self.spec
        for wanted in (spec.boxes_output, spec.scores_output):
            if wanted is not None and find_output(outputs, wanted) is None:
                raise self.mismatch(outputs, f"no output named {wanted!r}")
        boxes = find_output(outputs, spec.boxes_output) or next(
            (s for s in outputs if len(s.shape) == 3 and (s.shape[-1] or 0) >= 4
             and s.shape[-1] != 1), None)
        if boxes is None:
            raise self.mismatch(outputs, "no regressors output of rank 3 with >= 4 values per "
                                "anchor")
        scores = find_output(outputs, spec.scores_output) or next(
            (s for s in outputs if s is not boxes and len(s.shape) in (2, 3)
             and s.shape[1] == boxes.shape[1]), None)
        if scores is None:
            raise self.mismatch(outputs, f"no classificators output next to {boxes.name!r}")
        if len(boxes.shape) != 3 or boxes.shape[1] not in (n, None):
            raise self.mismatch(
                outputs, f"output {boxes.name!r} has {boxes.shape[1]} boxes but "
                f"[postprocessing.anchors] generates {n} anchors",
                "check strides, num_layers and input_size against the model's own "
                "anchor options (MediaPipe's graph .pbtxt)")
        if boxes.shape[2] != self._values:
            k = ((boxes.shape[2] or 4) - 4) / 2
            advice = f"set num_keypoints = {int(k)}" if k == int(k) and k >= 0 else ""
            raise self.mismatch(
                outputs, f"output {boxes.name!r} has {boxes.shape[2]} values per anchor, "
                f"4 + 2 x num_keypoints = {self._values} expected", advice)
        if scores.shape[1] not in (n, None):
            raise self.mismatch(outputs, f"output {scores.name!r} has {scores.shape[1]} "
                                f"scores, {n} expected (one per anchor)")
        self._boxes, self._scores = boxes.name, scores.name

    def decode(self, outputs: Outputs, geometry: FrameGeometry | None = None) -> Result:
        spec = self.spec
        n = len(self.anchors)
        logits = np.asarray(outputs[self._scores], np.float32).reshape(n, -1)
        if logits.shape[1] > 1:
            classes = np.argmax(logits, axis=1)
            best = logits[np.arange(n), classes]
        else:
            classes = None
            best = logits[:, 0]
        if spec.sigmoid_score:
            # The sigmoid is monotonic: threshold the logits, squash only what is kept.
            picked = (best >= self._logit_threshold).nonzero()[0]
        else:
            picked = (best >= spec.score_threshold).nonzero()[0]
        if picked.size == 0:
            return self._empty_result()
        if spec.sigmoid_score:
            scores = sigmoid(best[picked], spec.score_clipping_thresh)
        else:
            scores = best[picked]
        kept_classes = (classes[picked].astype(np.int64) if classes is not None
                        else None)
        raw = np.asarray(outputs[self._boxes], np.float32).reshape(n, -1)[picked]
        if not self._identity_columns:
            raw = raw[:, self._columns]
        # x = raw_x / x_scale * anchor_w + anchor_x (and y, keypoints); w = raw_w / w_scale
        # * anchor_w (+ 0): the same float32 operations, in the same order, per column.
        decoded = raw / self._divisors
        decoded *= self._anchor_mul[picked]
        decoded += self._anchor_add[picked]
        if spec.apply_exponential_on_box_size:
            decoded[:, 2:4] = (np.exp(raw[:, 2:4] / self._divisors[2:4])
                               * self._anchor_mul[picked, 2:4])
        # Box corners then keypoints, side by side in one (n, 4 + 2K) array, so NMS and
        # the result handle them in one call each.
        rows = np.empty_like(decoded)
        centre, half = decoded[:, 0:2], decoded[:, 2:4] / 2
        np.subtract(centre, half, out=rows[:, 0:2])
        np.add(centre, half, out=rows[:, 2:4])
        rows[:, 0:4] *= self._box_size
        if spec.num_keypoints:
            np.multiply(decoded[:, 4:self._values], self._kp_size, out=rows[:, 4:])
        if spec.nms == "weighted":
            keep, rows = weighted_nms_rows(rows, scores, spec.iou_threshold,
                                           spec.max_detections)
        else:
            keep = hard_nms(rows[:, 0:4], scores, spec.iou_threshold, kept_classes,
                            spec.max_detections)
            rows = rows[keep]
        return rows_detection_result(rows, scores[keep],
                                     None if kept_classes is None else kept_classes[keep],
                                     self.labels, self.input_size, geometry=geometry,
                                     num_keypoints=spec.num_keypoints)

    def _empty_result(self) -> Result:
        """What a frame with no candidate decodes to (a fresh dict each time)."""
        if self._empty is None:
            none = np.zeros((0, 4), np.float32)
            self._empty = detection_result(
                none, np.zeros(0, np.float32), np.zeros(0, np.int64), self.labels,
                self.input_size, geometry=None,
                keypoints_input_px=(np.zeros((0, self.spec.num_keypoints, 2), np.float32)
                                    if self.spec.num_keypoints else None))
        return {**self._empty, "detections": []}
