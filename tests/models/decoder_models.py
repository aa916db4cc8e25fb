"""Detector and segmenter models in each common layout, built with onnx.helper.

Each model ignores its input except for its brightest pixel ``m`` (0 for a black frame,
1 for a frame with anything bright on it): every output is ``base + gain * m`` with
constant tensors chosen by the test, so known boxes can be encoded in the outputs
and a black frame detects nothing. ``write_model`` saves the model and a manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.models.onnx_builders import save

BLAZEFACE_ANCHORS = """
[postprocessing.anchors]
input_size = [128, 128]
num_layers = 4
strides = [8, 16, 16, 16]
min_scale = 0.1484375
max_scale = 0.75
anchor_offset_x = 0.5
anchor_offset_y = 0.5
aspect_ratios = [1.0]
interpolated_scale_aspect_ratio = 1.0
fixed_anchor_size = true
"""


def derived_outputs(path: Path, input_shape: list[int | str],
                    outputs: dict[str, tuple[np.ndarray, np.ndarray | None]],
                    input_name: str = "image") -> Path:
    """A model with outputs ``name = base + gain * max(input)`` (gain None: constant)."""
    nodes = [helper.make_node("ReduceMax", [input_name], ["m"], keepdims=0)]
    inits = []
    outs = []
    for name, (base, gain) in outputs.items():
        inits.append(numpy_helper.from_array(base.astype(np.float32), f"{name}_base"))
        if gain is None:
            nodes.append(helper.make_node("Identity", [f"{name}_base"], [name]))
        else:
            inits.append(numpy_helper.from_array(gain.astype(np.float32), f"{name}_gain"))
            nodes.append(helper.make_node("Mul", [f"{name}_gain", "m"], [f"{name}_scaled"]))
            nodes.append(helper.make_node("Add", [f"{name}_base", f"{name}_scaled"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(base.shape)))
    graph = helper.make_graph(
        nodes, "derived",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        outs, initializer=inits,
    )
    return save(graph, path)


def write_model(folder: Path, name: str, model_path: Path, body: str) -> Path:
    """A manifest ``<name>.toml`` for ``model_path`` in ``folder`` (``body``: the rest)."""
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    manifest = folder / f"{name}.toml"
    manifest.write_text(
        f'name = "{name}"\nfile = "{model_path.name}"\nsha256 = "{digest}"\n' + body
    )
    return manifest


def blazeface_outputs(faces: list[tuple[int, tuple[float, float, float, float]]],
                      keypoints: int = 6) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """BlazeFace-like outputs with a face box (x1, y1, x2, y2 fractions of the 128 x 128
    input) encoded at each given anchor index; their logit is -10 + 20 * max(input)."""
    from edge_runtime.models.decoders.anchors import generate_anchors
    from edge_runtime.models.manifest import AnchorConfig

    anchors = generate_anchors(AnchorConfig(
        input_size=(128, 128), num_layers=4, strides=[8, 16, 16, 16], min_scale=0.1484375,
        max_scale=0.75, fixed_anchor_size=True))
    regressors = np.zeros((1, len(anchors), 4 + 2 * keypoints), np.float32)
    logits = np.full((1, len(anchors), 1), -10.0, np.float32)
    gain = np.zeros_like(logits)
    for index, (x1, y1, x2, y2) in faces:
        ax, ay, aw, ah = anchors[index]
        xc, yc = (x1 + x2) / 2, (y1 + y2) / 2
        regressors[0, index, :4] = [(xc - ax) / aw * 128, (yc - ay) / ah * 128,
                                    (x2 - x1) / aw * 128, (y2 - y1) / ah * 128]
        for k in range(keypoints):  # keypoint k at the box's left edge, k/6 of the way down
            kx, ky = x1, y1 + (y2 - y1) * k / keypoints
            regressors[0, index, 4 + 2 * k: 6 + 2 * k] = [(kx - ax) * 128, (ky - ay) * 128]
        gain[0, index, 0] = 20.0
    return {"regressors": (regressors, None), "classificators": (logits, gain)}


def yolo_v8_outputs(boxes_px: Sequence[tuple[int, float, float, float, float, float]],
                    num_classes: int, candidates: int = 64
                    ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``(1, 4 + C, N)``: each (class, score, cx, cy, w, h) in its own column; the score
    is ``score * max(input)``."""
    base = np.zeros((1, 4 + num_classes, candidates), np.float32)
    gain = np.zeros_like(base)
    for j, (cls, score, cx, cy, w, h) in enumerate(boxes_px):
        base[0, :4, j] = [cx, cy, w, h]
        gain[0, 4 + cls, j] = score
    return {"output0": (base, gain)}


def yolo_v5_outputs(rows: Sequence[tuple[int, float, float, float, float, float, float]],
                    num_classes: int, candidates: int = 64
                    ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``(1, N, 5 + C)``: rows (class, objectness, class score, cx, cy, w, h)."""
    base = np.zeros((1, candidates, 5 + num_classes), np.float32)
    gain = np.zeros_like(base)
    for j, (cls, obj, score, cx, cy, w, h) in enumerate(rows):
        base[0, j, :4] = [cx, cy, w, h]
        gain[0, j, 4] = obj
        base[0, j, 5 + cls] = score
    return {"output0": (base, gain)}
