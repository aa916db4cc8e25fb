"""Classification top-k, SSD/YOLO decoding with NMS, forecast anomaly scores."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.models.manifest import (
    ClassificationPostprocessing,
    DetectionPostprocessing,
    ForecastPostprocessing,
)
from edge_runtime.pipelines import postprocess as pp


def test_classify_top_k_with_labels_and_softmax() -> None:
    out = {"logits": np.array([[1.0, 3.0, 2.0]], np.float32)}
    res = pp.classify(out, ClassificationPostprocessing(softmax=True, top_k=2), ["a", "b", "c"])
    assert res["label"] == "b" and res["class_index"] == 1
    assert [lbl for lbl, _ in res["top_k"]] == ["b", "c"]
    assert sum(pp.softmax(out["logits"][0])) == pytest.approx(1.0)
    assert pp.classify(out, ClassificationPostprocessing(top_k=9))["top_k"][2] == ("0", 1.0)


def test_nms_keeps_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array([[0, 0, 1, 1], [0.05, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert pp.nms(boxes, scores, 0.5) == [0, 3]
    classes = np.array([0, 0, 1, 0])
    assert pp.nms(boxes, scores, 0.5, classes) == [0, 2, 3]


def test_ssd_postprocess_layout() -> None:
    outputs = {
        "boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [0.1, 0.2, 0.5, 0.61], [0, 0, 0.2, 0.2]]],
                          np.float32),
        "classes": np.array([[1, 1, 2]], np.float32),
        "scores": np.array([[0.9, 0.85, 0.3]], np.float32),
        "count": np.array([3], np.float32),
    }
    res = pp.detect(outputs, DetectionPostprocessing(style="ssd", score_threshold=0.5),
                    ["bg", "person", "cat"])
    assert res["count"] == 1
    det = res["detections"][0]
    assert det["label"] == "person" and det["box"] == [0.2, 0.1, 0.6, 0.5]


def test_ssd_raw_class_scores() -> None:
    outputs = {"boxes": np.array([[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], np.float32),
               "scores": np.array([[[0.1, 0.9, 0.0], [0.9, 0.05, 0.05]]], np.float32)}
    res = pp.detect(outputs, DetectionPostprocessing(style="ssd", score_threshold=0.5))
    assert res["count"] == 1 and res["detections"][0]["class_index"] == 0


@pytest.mark.parametrize("transposed", [False, True])
def test_yolo_v8_decoding_in_pixels(transposed: bool) -> None:
    # Two overlapping boxes of class 1 and one of class 0, 4 + 2 columns, 64x64 input.
    pred = np.array([[32, 32, 20, 20, 0.1, 0.9],
                     [33, 32, 20, 20, 0.1, 0.8],
                     [10, 10, 8, 8, 0.7, 0.2]], np.float32)[None]
    if transposed:
        pred = pred.transpose(0, 2, 1)
    res = pp.detect({"out": pred}, DetectionPostprocessing(style="yolo"), ["a", "b"], (64, 64))
    assert res["count"] == 2
    assert res["detections"][0]["label"] == "b"
    assert res["detections"][0]["box"] == pytest.approx([22 / 64, 22 / 64, 42 / 64, 42 / 64],
                                                        abs=1e-4)
    assert res["max_score"] == pytest.approx(0.9)


def test_yolo_v5_objectness() -> None:
    pred = np.array([[[0.5, 0.5, 0.2, 0.2, 0.5, 0.9, 0.1]]], np.float32)
    res = pp.detect({"o": pred}, DetectionPostprocessing(style="yolo", score_threshold=0.4,
                                                      coordinates="fractions"),
                    ["x", "y"])
    assert res["count"] == 1 and res["max_score"] == pytest.approx(0.45)


def test_forecast_score_is_half_at_threshold() -> None:
    spec = ForecastPostprocessing(residual_threshold=0.5)
    res = pp.forecast_score({"y": np.array([[1.0]], np.float32)}, spec, 1.5, mean=10.0, std=2.0)
    assert res["score"] == pytest.approx(0.5)
    assert res["forecast"] == pytest.approx(12.0)
