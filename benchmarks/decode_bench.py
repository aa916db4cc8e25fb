"""Decoding cost per frame for each decoder, as a share of the model's own latency.

Run: ``nice python benchmarks/decode_bench.py [--seconds S]``; writes
``benchmarks/results/decode.json``. Target: decoding <= 10 % of the model's latency.

Each decoder is timed at realistic sizes on outputs shaped like a real detector's
(most candidates background, a few objects each found by a cluster of candidates):

- YOLOv8: ``(1, 84, 8400)`` (640 x 640 input, 80 classes), letterboxed 1280 x 720 frames;
- BlazeFace: 896 anchors, ``(1, 896, 16)`` + ``(1, 896, 1)``, weighted NMS;
- TFLite SSD: 100 already-decoded boxes (the detection post-process op's output);
- segmentation: ``(1, 256, 256, 21)`` (DeepLab's 21 VOC classes).

The model latency is that of a stand-in built here with onnx.helper and run by
onnxruntime on 1 thread, with exactly the real output tensors and the real input size,
and at most the real model's arithmetic (``standin_gmac`` in the results counts its
convolutions' multiply-adds):

- YOLOv8: a strided 3x3 conv backbone, 1x1 heads on the 80/40/20 grids concatenated to
  8400 columns; 0.58 G multiply-adds (1.15 GFLOP) against YOLOv8n's 8.7 GFLOP, so its
  share is an upper bound;
- BlazeFace: the real network's layers (MediaPipe's front model as laid out in
  hollance/BlazeFace-PyTorch) with random weights, 31 M multiply-adds like the real one;
- TFLite SSD: a strided 3x3 conv backbone of 1.0 G multiply-adds (2.0 GFLOP) against
  SSD MobileNet v1 COCO's 2.49 GFLOP (OpenVINO Open Model Zoo);
- segmentation: a strided 3x3 conv backbone of 0.64 G multiply-adds against DeepLabV3
  MobileNetV2's 2.75 G at 513 x 513 (TensorFlow DeepLab model zoo), 0.69 G at 256 x 256.

Decode and model are timed alternately in one run, by medians, because the machine is
shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import save

from edge_runtime.models import load_model
from edge_runtime.models.manifest import (
    AnchorConfig,
    DetectionPostprocessing,
    ImagePreprocessing,
    SegmentationPostprocessing,
)
from edge_runtime.models.preprocess import frame_geometry
from edge_runtime.models.types import TensorSpec
from edge_runtime.pipelines.postprocess import make_decoder

TARGET_PCT = 10.0
COCO = [f"class{i}" for i in range(80)]
VOC = [f"class{i}" for i in range(21)]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- stand-in models ----------------------------------------------------------------------


def _standin(path: Path, input_hw: int, channels: list[int],
             heads: Callable[[Any, list[str], list[Any]], list[Any]]) -> Path:
    """Strided 3x3 conv + Relu backbone; ``heads`` adds nodes from the feature maps."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes: list[Any] = []
    inits: list[Any] = []
    prev, prev_c = "x", 3
    feats = []
    for i, c in enumerate(channels):
        w = numpy_helper.from_array((rng.standard_normal((c, prev_c, 3, 3)) * 0.1)
                                    .astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1],
                                      strides=[2, 2]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"f{i}"]))
        prev, prev_c = f"f{i}", c
        feats.append((f"f{i}", c))
    outputs = heads(helper, nodes, [inits, feats, rng, numpy_helper, TensorProto])
    graph = helper.make_graph(
        nodes, "standin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, input_hw, input_hw])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _conv1x1(ctx: list[Any], nodes: list[Any], src: str, *, c_in: int, c_out: int,
             name: str) -> str:
    inits, _, rng, numpy_helper, _ = ctx
    from onnx import helper

    inits.append(numpy_helper.from_array((rng.standard_normal((c_out, c_in, 1, 1)) * 0.1)
                                         .astype(np.float32), f"{name}_w"))
    nodes.append(helper.make_node("Conv", [src, f"{name}_w"], [name]))
    return name


def _flatten(ctx: list[Any], nodes: list[Any], src: str, shape: list[int], name: str) -> str:
    inits, _, _, numpy_helper, _ = ctx
    from onnx import helper

    inits.append(numpy_helper.from_array(np.asarray(shape, np.int64), f"{name}_shape"))
    nodes.append(helper.make_node("Reshape", [src, f"{name}_shape"], [name]))
    return name


def yolo_standin(path: Path) -> Path:
    """640 x 640 -> (1, 84, 8400) from 1x1 heads on the 80, 40 and 20 grids."""
    def heads(helper: Any, nodes: list[Any], ctx: list[Any]) -> list[Any]:
        feats = ctx[1]
        parts = []
        for (name, c), grid in zip(feats[2:5], (80, 40, 20), strict=True):
            h = _conv1x1(ctx, nodes, name, c_in=c, c_out=84, name=f"head{grid}")
            parts.append(_flatten(ctx, nodes, h, [1, 84, grid * grid], f"flat{grid}"))
        nodes.append(helper.make_node("Concat", parts, ["raw"], axis=2))
        nodes.append(helper.make_node("Sigmoid", ["raw"], ["output0"]))
        return [helper.make_tensor_value_info("output0", ctx[4].FLOAT, [1, 84, 8400])]
    return _standin(path, 640, [16, 32, 64, 128, 256], heads)


#: MediaPipe's BlazeFace (front, short range) as hollance/BlazeFace-PyTorch lays it out
#: (blazeface.py, converted from face_detection_front.tflite): (in, out, stride) per
#: BlazeBlock, a 3x3 depthwise conv + 1x1 conv with a (max-pooled, zero-padded) skip.
BLAZEFACE_BLOCKS = [(24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1),
                    (42, 48, 2), (48, 56, 1), (56, 64, 1), (64, 72, 1), (72, 80, 1),
                    (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1), (96, 96, 1),
                    (96, 96, 1)]


def blazeface_standin(path: Path) -> Path:
    """128 x 128 -> regressors (1, 896, 16), classificators (1, 896, 1).

    The real network's layers with random weights: a 5x5 stride-2 conv to 24 channels,
    the 16 BlazeBlocks above, and the 1x1 heads on the 16 x 16 (88 channels, 2 anchors)
    and 8 x 8 (96 channels, 6 anchors) maps: 31 M multiply-adds, as the real model.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def conv(src: str, c_in: int, c_out: int, *, k: int, stride: int, pads: list[int],
             name: str, group: int = 1) -> str:
        w = const(f"{name}_w", (rng.standard_normal((c_out, c_in // group, k, k)) * 0.1)
                  .astype(np.float32))
        b = const(f"{name}_b", np.zeros(c_out, np.float32))
        nodes.append(helper.make_node("Conv", [src, w, b], [name], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=pads, group=group))
        return name

    x = conv("x", 3, 24, k=5, stride=2, pads=[1, 1, 2, 2], name="stem")
    nodes.append(helper.make_node("Relu", [x], ["stem_r"]))
    x, feat16 = "stem_r", ""
    for i, (c_in, c_out, stride) in enumerate(BLAZEFACE_BLOCKS):
        if stride == 2:  # TFLite's padding: none before, 2 after; the skip is max-pooled
            h = conv(x, c_in, c_in, k=3, stride=2, pads=[0, 0, 2, 2], name=f"b{i}dw", group=c_in)
            nodes.append(helper.make_node("MaxPool", [x], [f"b{i}mp"], kernel_shape=[2, 2],
                                          strides=[2, 2]))
            skip = f"b{i}mp"
        else:
            h = conv(x, c_in, c_in, k=3, stride=1, pads=[1, 1, 1, 1], name=f"b{i}dw", group=c_in)
            skip = x
        h = conv(h, c_in, c_out, k=1, stride=1, pads=[0, 0, 0, 0], name=f"b{i}pw")
        if c_out > c_in:  # the skip's extra channels are zeros
            pads = const(f"b{i}pads", np.asarray([0, 0, 0, 0, 0, c_out - c_in, 0, 0], np.int64))
            nodes.append(helper.make_node("Pad", [skip, pads], [f"b{i}sp"]))
            skip = f"b{i}sp"
        nodes.append(helper.make_node("Add", [h, skip], [f"b{i}add"]))
        nodes.append(helper.make_node("Relu", [f"b{i}add"], [f"b{i}out"]))
        x = f"b{i}out"
        if i == 10:
            feat16 = x
    outputs = []
    for out, per in (("regressors", 16), ("classificators", 1)):
        parts = []
        for src, c_in, anchors, grid in ((feat16, 88, 2, 16), (x, 96, 6, 8)):
            h = conv(src, c_in, anchors * per, k=1, stride=1, pads=[0, 0, 0, 0],
                     name=f"{out}{grid}")
            nodes.append(helper.make_node("Transpose", [h], [f"{h}_t"], perm=[0, 2, 3, 1]))
            shape = const(f"{h}_shape", np.asarray([1, grid * grid * anchors, per], np.int64))
            nodes.append(helper.make_node("Reshape", [f"{h}_t", shape], [f"{h}_flat"]))
            parts.append(f"{h}_flat")
        nodes.append(helper.make_node("Concat", parts, [out], axis=1))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 896, per]))
    graph = helper.make_graph(
        nodes, "blazeface_standin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 128, 128])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def ssd_standin(path: Path) -> Path:
    """304 x 304 -> a 100-box head; decoding is the post-process op's.

    About 1.0 G multiply-adds (2.0 GFLOP): below SSD MobileNet v1 COCO's 2.49 GFLOP
    (OpenVINO Open Model Zoo, ``models/public/ssd_mobilenet_v1_coco``).
    """
    def heads(helper: Any, nodes: list[Any], ctx: list[Any]) -> list[Any]:
        name, c = ctx[1][-1]
        h = _conv1x1(ctx, nodes, name, c_in=c, c_out=4, name="boxes_conv")
        nodes.append(helper.make_node("GlobalAveragePool", [h], ["boxes"]))
        return [helper.make_tensor_value_info("boxes", ctx[4].FLOAT, [1, 4, 1, 1])]
    return _standin(path, 304, [48, 96, 192, 384, 768], heads)


def seg_standin(path: Path) -> Path:
    """256 x 256 -> (1, 256, 256, 21): 1x1 conv on the 32 x 32 map, upsampled, NHWC.

    About 0.64 G multiply-adds: below DeepLabV3 MobileNetV2's 2.75 G at 513 x 513
    (TensorFlow DeepLab model zoo, ``mobilenetv2_coco_voc_trainaug``, output stride 16),
    which is 0.69 G at 256 x 256.
    """
    def heads(helper: Any, nodes: list[Any], ctx: list[Any]) -> list[Any]:
        inits, feats, _, numpy_helper, tp = ctx
        name, c = feats[2]
        h = _conv1x1(ctx, nodes, name, c_in=c, c_out=21, name="logits32")
        inits.append(numpy_helper.from_array(np.asarray([1, 1, 8, 8], np.float32), "scales"))
        nodes.append(helper.make_node("Resize", [h, "", "scales"], ["up"], mode="linear"))
        nodes.append(helper.make_node("Transpose", ["up"], ["logits"], perm=[0, 2, 3, 1]))
        return [helper.make_tensor_value_info("logits", tp.FLOAT, [1, 256, 256, 21])]
    return _standin(path, 256, [64, 128, 256], heads)


# -- realistic outputs --------------------------------------------------------------------


def yolo_outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Background everywhere (class scores < 0.05), 5 objects found by 20 candidates each."""
    pred = np.empty((1, 84, 8400), np.float32)
    pred[0, :2] = rng.uniform(0, 640, (2, 8400))
    pred[0, 2:4] = rng.uniform(8, 200, (2, 8400))
    pred[0, 4:] = rng.uniform(0, 0.05, (80, 8400))
    for k in range(5):
        cols = rng.choice(8400, 20, replace=False)
        cx, cy = rng.uniform(100, 540, 2)
        pred[0, 0, cols] = cx + rng.normal(0, 3, 20)
        pred[0, 1, cols] = cy + rng.normal(0, 3, 20)
        pred[0, 2:4][:, cols] = 120 + rng.normal(0, 4, (2, 20))
        pred[0, 4 + 7 * k, cols] = rng.uniform(0.3, 0.9, 20)
    return {"output0": pred}


def blazeface_outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Logits around -8 except 2 faces found by 6 anchors each."""
    regressors = rng.normal(0, 2, (1, 896, 16)).astype(np.float32)
    logits = rng.normal(-8, 1.5, (1, 896, 1)).astype(np.float32)
    for start in (200, 600):
        logits[0, start:start + 6, 0] = rng.uniform(1, 4, 6)
        regressors[0, start:start + 6, 2:4] = 30 + rng.normal(0, 1, (6, 2))
    return {"regressors": regressors, "classificators": logits}


def ssd_outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    y1x1 = rng.uniform(0, 0.7, (1, 100, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.3, (1, 100, 2))], axis=2)
    scores = np.sort(rng.uniform(0, 1, (1, 100)) ** 3)[:, ::-1]
    return {"boxes": boxes.astype(np.float32),
            "classes": rng.integers(0, 80, (1, 100)).astype(np.float32),
            "scores": scores.astype(np.float32), "count": np.array([100], np.float32)}


def seg_outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    logits = rng.normal(0, 1, (1, 256, 256, 21)).astype(np.float32)
    logits[0, 64:192, 64:192, 15] += 5  # a person in the middle
    return {"logits": logits}


def _specs(outputs: dict[str, np.ndarray]) -> list[TensorSpec]:
    return [TensorSpec(n, tuple(a.shape), a.dtype) for n, a in outputs.items()]


CASES: list[dict[str, Any]] = [
    {"name": "yolov8", "standin": yolo_standin, "outputs": yolo_outputs, "labels": COCO,
     "size": (640, 640), "frame": (1280, 720), "resize": "letterbox",
     "post": DetectionPostprocessing(style="yolov8", score_threshold=0.25)},
    {"name": "blazeface_ssd_anchors", "standin": blazeface_standin, "outputs": blazeface_outputs,
     "labels": ["face"], "size": (128, 128), "frame": (640, 480), "resize": "stretch",
     "post": DetectionPostprocessing(
         style="ssd_anchors", nms="weighted", iou_threshold=0.3, num_keypoints=6,
         anchors=AnchorConfig(input_size=(128, 128), num_layers=4, strides=[8, 16, 16, 16],
                              min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True))},
    {"name": "tflite_ssd", "standin": ssd_standin, "outputs": ssd_outputs, "labels": COCO,
     "size": (300, 300), "frame": (640, 480), "resize": "stretch",
     "post": DetectionPostprocessing(style="ssd", score_threshold=0.5)},
    {"name": "segmentation", "standin": seg_standin, "outputs": seg_outputs, "labels": VOC,
     "size": (256, 256), "frame": (640, 480), "resize": "letterbox",
     "post": SegmentationPostprocessing()},
]


def conv_gmac(path: Path) -> float:
    """Multiply-adds of a model's Conv nodes, in billions (shapes from onnx inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            _, c_in_per_group, kh, kw = weights[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * c_in_per_group * kh * kw
    return total / 1e9


def measure(case: dict[str, Any], folder: Path, seconds: float) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    outputs = case["outputs"](rng)
    decoder = make_decoder(case["post"], case["labels"], case["size"])
    assert decoder is not None
    decoder.bind(_specs(outputs))
    geometry = frame_geometry(ImagePreprocessing(size=case["size"], resize=case["resize"]),
                              *case["frame"])
    model_path = case["standin"](folder / f"{case['name']}.onnx")
    model = load_model(model_path, num_threads=1)
    x = np.random.default_rng(2).random(tuple(d or 1 for d in model.inputs[0].shape)
                                        ).astype(np.float32)
    result = decoder.decode(outputs, geometry)
    model_s: list[float] = []
    decode_s: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while clock() < deadline or len(model_s) < 20:
        t0 = clock()
        model.run(x)
        t1 = clock()
        decoder.decode(outputs, geometry)
        t2 = clock()
        model_s.append(t1 - t0)
        decode_s.append(t2 - t1)
    model_ms = statistics.median(model_s) * 1e3
    decode_ms = statistics.median(decode_s) * 1e3
    share = 100.0 * decode_ms / model_ms
    found = result.get("count", result.get("label"))
    return {
        "decoder": case["name"],
        "outputs": {n: list(a.shape) for n, a in outputs.items()},
        "found": found,
        "runs": len(model_s),
        "decode_p50_ms": round(decode_ms, 4),
        "decode_p95_ms": round(float(np.percentile(decode_s, 95)) * 1e3, 4),
        "standin_model_p50_ms": round(model_ms, 3),
        "standin_gmac": round(conv_gmac(model_path), 3),
        "decode_share_pct": round(share, 2),
        "within_target": share <= TARGET_PCT,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per decoder (default 4)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            progress(f"[decode] {case['name']} ({args.seconds:g} s)")
            row = measure(case, Path(tmp), args.seconds)
            progress(f"  decode {row['decode_p50_ms']:.3f} ms, stand-in model "
                     f"{row['standin_model_p50_ms']:.2f} ms: {row['decode_share_pct']:.2f} %")
            rows.append(row)
    path = save("decode", {
        "decoders": rows,
        "targets": {"decode_share_pct_max": TARGET_PCT,
                    "all_met": all(r["within_target"] for r in rows)},
        "reference_model": "onnx.helper stand-ins with the real input and output tensors and "
                           "at most the real model's arithmetic (standin_gmac): YOLO 0.58 G "
                           "multiply-adds vs YOLOv8n's 4.35 (8.7 GFLOP), an upper-bound share; "
                           "BlazeFace the real layer structure, 31 M like the real one; SSD "
                           "1.0 G vs SSD MobileNet v1's 1.25 (2.49 GFLOP, OpenVINO Open Model "
                           "Zoo); segmentation 0.64 G vs DeepLabV3 MobileNetV2's 0.69 at "
                           "256 x 256 (2.75 G at 513, TensorFlow DeepLab model zoo)",
        "method": "decode and stand-in model alternate call by call, medians; stand-ins "
                  "run by onnxruntime on 1 thread",
    })
    progress(f"wrote {path}")
    return 0 if all(r["within_target"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
