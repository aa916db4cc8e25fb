"""Decoders on models built here, in each layout, with known boxes encoded in the outputs.

Ground truth is encoded into the models' outputs (``decoder_models.py``), so each test
checks decoding, letterbox undoing and NMS against boxes it chose itself.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from edge_runtime.errors import ManifestError, ManifestMismatchError, PluginError
from edge_runtime.models import load_model
from edge_runtime.models.decoders.anchors import generate_anchors
from edge_runtime.models.decoders.nms import hard_nms, weighted_nms
from edge_runtime.models.manifest import AnchorConfig, ImagePreprocessing, load_manifest
from edge_runtime.models.preprocess import frame_geometry, image_preprocessor_with_geometry
from edge_runtime.models.verify import check_model
from edge_runtime.pipelines.postprocess import decoder_for_model
from tests.models.decoder_models import (
    BLAZEFACE_ANCHORS,
    blazeface_outputs,
    derived_outputs,
    write_model,
    yolo_v5_outputs,
    yolo_v8_outputs,
)

FACE_HEAD = """task = "detection"
description = "Face detector (BlazeFace-like test model)."
labels = ["face"]

[preprocessing]
type = "image"
size = [128, 128]
layout = "NHWC"
color = "RGB"
scale = 0.00784313725490196
mean = [1.0]
std = [1.0]
"""

FACE_POST = """
[postprocessing]
type = "detection"
style = "ssd_anchors"
score_threshold = 0.5
iou_threshold = 0.3
nms = "weighted"
num_keypoints = 6
""" + BLAZEFACE_ANCHORS

BRIGHT = np.full((128, 128, 3), 255, np.uint8)
BLACK = np.zeros((128, 128, 3), np.uint8)


def _face_model(tmp_path: Path, faces: list[tuple[int, tuple[float, float, float, float]]],
                post: str = FACE_POST, name: str = "face") -> Path:
    onnx_path = derived_outputs(tmp_path / f"{name}.onnx", [1, 128, 128, 3],
                                blazeface_outputs(faces), input_name="input")
    return write_model(tmp_path, name, onnx_path, FACE_HEAD + post)


def _run(manifest: Path, frame: np.ndarray) -> dict[str, Any]:
    model = load_model(manifest)
    decoder = decoder_for_model(model)
    assert decoder is not None
    assert model.manifest is not None
    recipe = model.manifest.preprocessing
    assert isinstance(recipe, ImagePreprocessing)
    x, geometry = image_preprocessor_with_geometry(recipe, model.inputs[0])(frame)
    return decoder.decoder.decode(model.run(x), geometry)


# -- anchors --------------------------------------------------------------------------


def test_blazeface_anchors_match_the_mediapipe_formula() -> None:
    cfg = msgspec.toml.decode(BLAZEFACE_ANCHORS.encode(), type=dict)["postprocessing"]["anchors"]
    anchors = generate_anchors(msgspec.convert(cfg, AnchorConfig))
    assert anchors.shape == (896, 4)  # 16x16x2 (stride 8) + 8x8x6 (three stride-16 layers)
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(anchors[1], [0.5 / 16, 0.5 / 16, 1, 1])  # 2 per cell
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16, 1, 1])  # next row
    np.testing.assert_allclose(anchors[512], [0.5 / 8, 0.5 / 8, 1, 1])
    np.testing.assert_allclose(anchors[512 + 6], [1.5 / 8, 0.5 / 8, 1, 1])  # 6 per cell
    palm = AnchorConfig(input_size=(192, 192), num_layers=4, strides=[8, 16, 16, 16],
                        min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True)
    assert generate_anchors(palm).shape == (2016, 4)


def test_anchor_sizes_scales_and_aspect_ratios() -> None:
    cfg = AnchorConfig(input_size=(300, 300), num_layers=6, strides=[8, 16, 32, 64, 128, 256],
                       min_scale=0.2, max_scale=0.95, aspect_ratios=[1.0, 2.0, 0.5])
    a = generate_anchors(cfg)
    # Layer 0: scale 0.2; ratios 1, 2, 0.5, then the interpolated sqrt(0.2 * 0.35) at 1.
    c = 0.5 / math.ceil(300 / 8)
    want = [[c, c, 0.2, 0.2], [c, c, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)],
            [c, c, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)],
            [c, c, math.sqrt(0.2 * 0.35), math.sqrt(0.2 * 0.35)]]
    np.testing.assert_allclose(a[:4], want, rtol=1e-6)
    # The last layer interpolates towards 1.0: sqrt(0.95 * 1.0).
    np.testing.assert_allclose(a[-1, 2], math.sqrt(0.95), rtol=1e-6)
    sizes = [math.ceil(300 / s) for s in cfg.strides]
    assert len(a) == sum(4 * s * s for s in sizes)
    reduced = generate_anchors(msgspec.structs.replace(cfg, reduce_boxes_in_lowest_layer=True))
    np.testing.assert_allclose(reduced[:3, 2:], [[0.1, 0.1], [0.2 * math.sqrt(2), 0.2 /
                               math.sqrt(2)], [0.2 / math.sqrt(2), 0.2 * math.sqrt(2)]],
                               rtol=1e-6)
    with pytest.raises(ManifestError, match="one stride per layer"):
        generate_anchors(msgspec.structs.replace(cfg, num_layers=5))


# -- anchor SSD (BlazeFace) ----------------------------------------------------------


def test_blazeface_boxes_and_keypoints_decoded_from_anchors(tmp_path: Path) -> None:
    box = (0.25, 0.125, 0.625, 0.5)
    manifest = _face_model(tmp_path, [(100, box), (700, (0.7, 0.7, 0.9, 0.95))])
    res = _run(manifest, BRIGHT)
    assert res["count"] == 2 and res["count_face"] == 2
    dets = sorted(res["detections"], key=lambda d: d["box"][0])
    np.testing.assert_allclose(dets[0]["box"], box, atol=1e-4)
    np.testing.assert_allclose(dets[0]["box_px"], [32, 16, 80, 64], atol=0.1)
    np.testing.assert_allclose(dets[1]["box"], [0.7, 0.7, 0.9, 0.95], atol=1e-4)
    assert dets[0]["score"] == pytest.approx(1 / (1 + math.exp(-10)), rel=1e-5)
    kps = np.asarray(dets[0]["keypoints"])
    assert kps.shape == (6, 2)
    np.testing.assert_allclose(kps[:, 0], 0.25, atol=1e-4)
    want_y = np.asarray([0.125 + 0.375 * k / 6 for k in range(6)])
    np.testing.assert_allclose(kps[:, 1], want_y, atol=1e-4)
    # The "21 faces on an all-black frame": a black frame has none.
    assert _run(manifest, BLACK)["count"] == 0


def test_weighted_nms_merges_a_cluster_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    extra = np.array([[[0, 0]], [[4, 4]], [[55, 55]]], np.float32)
    keep, merged, kps = weighted_nms(boxes, scores, 0.5, extra)
    assert keep == [0, 2]
    np.testing.assert_allclose(merged[0], [0.25, 0, 10.25, 10])  # (0.9*0 + 0.3*1) / 1.2
    np.testing.assert_allclose(merged[1], boxes[2])
    assert kps is not None
    np.testing.assert_allclose(kps[0], [[1.0, 1.0]])


def test_hard_nms_with_class_offsets() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert hard_nms(boxes, scores, 0.5) == [0]
    # Same place, other class: kept (the class offset keeps classes apart).
    assert hard_nms(boxes, scores, 0.5, np.array([0, 0, 1])) == [0, 2]
    assert hard_nms(boxes, scores, 0.5, np.array([0, 1, 2]), max_out=2) == [0, 1]


def test_two_faces_at_neighbouring_anchors_merge_into_one(tmp_path: Path) -> None:
    manifest = _face_model(tmp_path, [(100, (0.25, 0.25, 0.5, 0.5)),
                                      (101, (0.26, 0.25, 0.51, 0.5))])
    res = _run(manifest, BRIGHT)
    assert res["count"] == 1  # equal scores: the mean of the two boxes
    np.testing.assert_allclose(res["detections"][0]["box"],
                               [0.255, 0.25, 0.505, 0.5], atol=1e-4)


# -- YOLO --------------------------------------------------------------------------------

YOLO_HEAD = """task = "detection"
description = "YOLO-like test model."
labels = ["person", "car", "dog"]

[preprocessing]
type = "image"
size = [640, 640]
layout = "NCHW"
color = "RGB"
resize = "letterbox"
"""


def _frame(width: int, height: int) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:8, :8] = 255  # max(input) = 1: every encoded box fires
    return frame


def test_yolov8_letterbox_round_trip_to_source_pixels(tmp_path: Path) -> None:
    # A 1280x720 frame letterboxed into 640x640: scale 0.5, 140 px of padding on top.
    geometry = frame_geometry(ImagePreprocessing(size=(640, 640), resize="letterbox"), 1280, 720)
    assert (geometry.scale_x, geometry.offset_x_px, geometry.offset_y_px) == (0.5, 0, 140)
    # Source box (200, 100)-(400, 300) is input (100, 190)-(200, 290).
    boxes = [(0, 0.9, 150, 240, 100, 100),
             (0, 0.6, 155, 240, 100, 100),  # same class, overlapping: suppressed
             (1, 0.7, 150, 240, 100, 100),  # other class, same place: kept
             (2, 0.3, 400, 400, 50, 50)]  # under the threshold
    path = derived_outputs(tmp_path / "y8.onnx", [1, 3, 640, 640], yolo_v8_outputs(boxes, 3))
    post = '\n[postprocessing]\ntype = "detection"\nstyle = "yolov8"\nscore_threshold = 0.5\n'
    manifest = write_model(tmp_path, "y8", path, YOLO_HEAD + post)
    res = _run(manifest, _frame(1280, 720))
    assert res["count"] == 2 and res["count_person"] == 1 and res["count_car"] == 1
    assert res["count_dog"] == 0
    best = res["detections"][0]
    assert best["label"] == "person" and best["score"] == pytest.approx(0.9)
    np.testing.assert_allclose(best["box_px"], [200, 100, 400, 300], atol=0.1)
    np.testing.assert_allclose(best["box"], [200 / 1280, 100 / 720, 400 / 1280, 300 / 720],
                               atol=1e-4)


def test_yolov5_objectness_times_class_score(tmp_path: Path) -> None:
    rows = [(1, 0.9, 0.8, 320, 320, 64, 32), (0, 0.4, 0.99, 100, 100, 10, 10)]
    path = derived_outputs(tmp_path / "y5.onnx", [1, 3, 640, 640], yolo_v5_outputs(rows, 3))
    post = '\n[postprocessing]\ntype = "detection"\nstyle = "yolo"\nscore_threshold = 0.5\n'
    manifest = write_model(tmp_path, "y5", path, YOLO_HEAD + post)
    res = _run(manifest, _frame(640, 640))
    assert res["count"] == 1
    det = res["detections"][0]
    assert det["label"] == "car" and det["score"] == pytest.approx(0.72)
    np.testing.assert_allclose(det["box_px"], [288, 304, 352, 336], atol=0.1)


# -- segmentation -----------------------------------------------------------------------


def test_segmentation_fractions_leave_letterbox_padding_out(tmp_path: Path) -> None:
    scores = np.zeros((1, 64, 64, 2), np.float32)
    scores[..., 0] = 1.0
    scores[0, 16:32, :, 1] = 2.0  # water over a quarter of the map's rows
    path = derived_outputs(tmp_path / "seg.onnx", [1, 64, 64, 3], {"logits": (scores, None)})
    body = """task = "segmentation"
description = "Water segmenter (test model)."
labels = ["background", "water"]

[preprocessing]
type = "image"
size = [64, 64]
resize = "letterbox"

[postprocessing]
type = "segmentation"
"""
    manifest = write_model(tmp_path, "seg", path, body)
    # 128x64 frame -> 64x32 image with 16 px padding above and below: the image is rows
    # 16..48, of which 16..32 are water: half of what shows the frame.
    res = _run(manifest, np.zeros((64, 128, 3), np.uint8))
    assert res["fraction_water"] == pytest.approx(0.5)
    assert res["fraction_background"] == pytest.approx(0.5)
    assert res["mask"].shape == (64, 64)
    # Without letterbox every row counts.
    stretch = manifest.read_text().replace('resize = "letterbox"', 'resize = "stretch"')
    manifest.write_text(stretch)
    assert _run(manifest, np.zeros((64, 128, 3), np.uint8))["fraction_water"] == 0.25


# -- manifest against model --------------------------------------------------------------


def test_mediapipe_face_detector_with_style_ssd_is_refused_naming_tensors(
        tmp_path: Path) -> None:
    manifest = _face_model(tmp_path, [(100, (0.2, 0.2, 0.4, 0.4))],
                           post='\n[postprocessing]\ntype = "detection"\nstyle = "ssd"\n')
    with pytest.raises(ManifestMismatchError) as info:
        check_model(manifest)
    text = str(info.value)
    assert "no boxes output of shape (1, N, 4)" in text
    assert "regressors: float32[1,896,16]" in text and 'style = "ssd_anchors"' in text


def test_mediapipe_face_detector_with_style_yolo_is_refused(tmp_path: Path) -> None:
    manifest = _face_model(tmp_path, [(100, (0.2, 0.2, 0.4, 0.4))],
                           post='\n[postprocessing]\ntype = "detection"\nstyle = "yolo"\n')
    with pytest.raises(ManifestMismatchError, match=r"YOLO exports have one output, the model "
                       r"has 2.*ssd_anchors"):
        check_model(manifest)


@pytest.mark.parametrize(("change", "message"), [
    (("strides = [8, 16, 16, 16]", "strides = [8, 16, 32, 32]"),
     "'regressors' has 896 boxes but \\[postprocessing.anchors\\] generates 704 anchors"),
    (("num_keypoints = 6", "num_keypoints = 0"),
     "'regressors' has 16 values per anchor.*set num_keypoints = 6"),
    (('nms = "weighted"', 'nms = "weighted"\nscores_output = "scores"'),
     "no output named 'scores'"),
])
def test_anchor_manifest_mismatches_name_the_tensor(tmp_path: Path, change: tuple[str, str],
                                                    message: str) -> None:
    manifest = _face_model(tmp_path, [(1, (0.2, 0.2, 0.4, 0.4))],
                           post=FACE_POST.replace(*change))
    with pytest.raises(ManifestMismatchError, match=message):
        check_model(manifest)


def test_yolo_label_count_must_fit_the_output(tmp_path: Path) -> None:
    path = derived_outputs(tmp_path / "y.onnx", [1, 3, 640, 640],
                           yolo_v8_outputs([(0, 0.9, 1, 1, 1, 1)], 80))
    post = '\n[postprocessing]\ntype = "detection"\nstyle = "yolov8"\n'
    manifest = write_model(tmp_path, "y", path, YOLO_HEAD + post)
    with pytest.raises(ManifestMismatchError, match=r"output 'output0' \(1, 84, 64\) does not "
                       "fit 3 label"):
        check_model(manifest)
    manifest.write_text(manifest.read_text().replace('labels = ["person", "car", "dog"]\n', ""))
    with pytest.raises(ManifestError, match="needs `labels`"):
        check_model(manifest)


def test_segmentation_model_with_a_detection_manifest_is_refused(tmp_path: Path) -> None:
    path = derived_outputs(tmp_path / "seg.onnx", [1, 256, 256, 3],
                           {"seg": (np.zeros((1, 256, 256, 21), np.float32), None)})
    body = 'task = "detection"\ndescription = "d"\nlabels = ["a"]\n'
    for post, message in [('style = "ssd"', "looks like a segmentation map"),
                          ('style = "yolov8"', "looks like a segmentation map")]:
        manifest = write_model(tmp_path, "s", path,
                               body + f'[postprocessing]\ntype = "detection"\n{post}\n')
        with pytest.raises(ManifestMismatchError, match=message):
            check_model(manifest)
    classifier = write_model(tmp_path, "s", path, 'task = "classification"\n'
                             'description = "d"\n')
    with pytest.raises(ManifestMismatchError, match=r"a classifier gives \(1, C\).*segmentation"):
        check_model(classifier)


@pytest.mark.parametrize(("body", "message"), [
    ('task = "detection"\ndescription = "d"\n', "`postprocessing` is missing"),
    ('task = "detection"\ndescription = "d"\n[postprocessing]\ntype = "detection"\n',
     "missing required field `style` - at `\\$.postprocessing`"),
    ('task = "detection"\n', "missing required field `description`"),
    ('task = "segmentation"\ndescription = "d"\n[postprocessing]\ntype = "classes"\n',
     "needs type = 'segmentation' or 'plugin'"),
])
def test_manifest_fields_refused_with_key_path(tmp_path: Path, body: str, message: str) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'name = "m"\nfile = "m.onnx"\nsha256 = "0"\n{body}')
    with pytest.raises(ManifestError, match=message):
        load_manifest(manifest)


# -- plugin hook --------------------------------------------------------------------------

PLUGIN = '''
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_runtime.models.decoders.base import DecodeContext


def decode(outputs: Mapping[str, np.ndarray], context: DecodeContext) -> dict[str, Any]:
    logits = outputs["classificators"].reshape(-1)
    return {"faces": int((logits > context.options["logit"]).sum()),
            "labels": list(context.labels), "size": list(context.input_size)}


def too_few(outputs):
    return {}


NOT_CALLABLE = 3
'''


def test_plugin_hook_decodes_and_is_checked(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_decoders.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_decoders", raising=False)
    post = '\n[postprocessing]\ntype = "plugin"\nfunction = "my_decoders:decode"\n' \
           '[postprocessing.options]\nlogit = 0.0\n'
    manifest = _face_model(tmp_path, [(3, (0.1, 0.1, 0.2, 0.2)), (9, (0.1, 0.1, 0.2, 0.2))],
                           post=post)
    res = _run(manifest, BRIGHT)
    assert res == {"faces": 2, "labels": ["face"], "size": [128, 128]}
    short = _face_model(tmp_path, [], post='\npostprocessing = "my_decoders:decode"\n',
                        name="short")
    # The short form is a top-level key: it must come before the tables.
    text = short.read_text().replace('\npostprocessing = "my_decoders:decode"\n', "")
    short.write_text(text.replace('task = "detection"', 'postprocessing = "my_decoders:decode"\n'
                                  'task = "detection"'))
    assert load_manifest(short).postprocessing.function == "my_decoders:decode"  # type: ignore
    for target, message in [("my_decoders:too_few", r"cannot be called as too_few\(outputs, "
                             r"context\)"),
                            ("my_decoders:NOT_CALLABLE", "is a int, not a function"),
                            ("my_decoders:nope", "has no 'nope'"),
                            ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
                            ("my_decoders", 'give it as "package.module:function"')]:
        manifest.write_text(manifest.read_text().replace(
            manifest.read_text().split('function = "')[1].split('"')[0], target, 1))
        with pytest.raises(PluginError, match=message):
            check_model(manifest)
    assert "my_decoders" in sys.modules
    del sys.modules["my_decoders"]  # another test's my_decoders must not find this one
