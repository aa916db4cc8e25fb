"""The command line on detectors and odd models built here: decoded ``infer`` with
``--draw``, ``check`` / ``models verify`` refusing a manifest that does not fit its
model, ``models info`` / ``list``, ``bench --shape``, ``.npz`` inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from onnx import TensorProto, helper

from tests.models.decoder_models import derived_outputs, write_model, yolo_v8_outputs
from tests.models.onnx_builders import multi_io_int64, save
from tests.models.test_cli import cli
from tests.models.test_decoders import FACE_POST, YOLO_HEAD, _face_model

YOLO_POST = '\n[postprocessing]\ntype = "detection"\nstyle = "yolov8"\nscore_threshold = 0.5\n'


def _yolo_zoo(tmp_path: Path) -> Path:
    # Source box (200, 100)-(400, 300) of a 1280x720 frame, letterboxed into 640x640.
    path = derived_outputs(tmp_path / "y8.onnx", [1, 3, 640, 640],
                           yolo_v8_outputs([(0, 0.9, 150, 240, 100, 100),
                                            (1, 0.8, 450, 400, 60, 40)], 3))
    return write_model(tmp_path, "y8", path, YOLO_HEAD + YOLO_POST)


def _read(path: str) -> np.ndarray:
    image = cv2.imread(path)
    assert image is not None, path
    return image


def _frame_png(tmp_path: Path) -> Path:
    frame = np.full((720, 1280, 3), 40, np.uint8)
    frame[600:700, 1100:1200] = 255  # something bright: the test model's boxes fire
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), frame)
    return png


def test_infer_decodes_and_draws_boxes_in_source_coordinates(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    manifest = _yolo_zoo(tmp_path)
    png = _frame_png(tmp_path)
    out_png = tmp_path / "drawn.png"
    out = cli("infer", str(manifest), str(png), "--json", "--draw", str(out_png), env=cli_env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    result = doc["result"]
    assert result["count"] == 2 and result["count_person"] == 1 and result["count_car"] == 1
    person = result["detections"][0]
    assert person["label"] == "person"
    np.testing.assert_allclose(person["box_px"], [200, 100, 400, 300], atol=0.1)
    car = result["detections"][1]  # input (420, 380)-(480, 420) -> source (840, 480)-(960, 560)
    np.testing.assert_allclose(car["box_px"], [840, 480, 960, 560], atol=0.1)
    assert "values" not in doc["outputs"]["output0"] and doc["decode_ms"] >= 0
    drawn = _read(str(out_png))
    assert drawn.shape == (720, 1280, 3)
    green, red = (0, 255, 0), (0, 0, 255)  # class 0 and class 1 colours (BGR)
    assert tuple(drawn[200, 200]) == green and tuple(drawn[300, 400]) == green
    assert tuple(drawn[520, 960]) == red and tuple(drawn[480, 900]) == red
    assert tuple(drawn[200, 300]) == (40, 40, 40)  # inside the box: untouched
    assert not list(tmp_path.glob(".drawn.png.*"))  # the temporary file was renamed
    human = cli("infer", str(manifest), str(png), "--draw", str(tmp_path / "d.jpg"),
                env=cli_env)
    assert human.returncode == 0, human.stderr
    assert "person  0.900  box (200, 100)-(400, 300) px" in human.stdout
    assert "count_person=1" in human.stdout
    jpg = _read(str(tmp_path / "d.jpg")).astype(int)
    assert abs(jpg[100, 300] - [0, 255, 0]).max() < 60  # top edge of the person box
    raw = cli("infer", str(manifest), str(png), "--json", "--raw", env=cli_env)
    doc = json.loads(raw.stdout)
    assert "result" not in doc and np.shape(doc["outputs"]["output0"]["values"]) == (1, 7, 64)


def test_infer_draws_segmentation_masks(cli_env: dict[str, str], tmp_path: Path) -> None:
    scores = np.zeros((1, 32, 32, 2), np.float32)
    scores[0, :16, :, 1] = 1.0  # top half: water
    path = derived_outputs(tmp_path / "seg.onnx", [1, 32, 32, 3], {"logits": (scores, None)})
    manifest = write_model(tmp_path, "seg", path, 'task = "segmentation"\ndescription = "d"\n'
                           'labels = ["background", "water"]\n[preprocessing]\ntype = "image"\n'
                           'size = [32, 32]\n[postprocessing]\ntype = "segmentation"\n')
    png = tmp_path / "f.png"
    cv2.imwrite(str(png), np.zeros((64, 64, 3), np.uint8))
    out = cli("infer", str(manifest), str(png), "--json", "--draw", str(tmp_path / "m.png"),
              env=cli_env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]
    assert result["fraction_water"] == 0.5 and result["mask"]["shape"] == [32, 32]
    drawn = _read(str(tmp_path / "m.png"))
    assert drawn[10, 10, 2] > 100 and drawn[10, 10, 0] == 0  # water: class 1 is red
    assert drawn[50, 10].tolist() == [0, 0, 0]  # background left clear


def _config(tmp_path: Path, model: Path) -> Path:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "t"
state_dir = "state"

[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"

[[pipelines]]
id = "faces"
source = "cam"
model = "{model}"
[[pipelines.rules]]
id = "face"
field = "count_face"
above = 1.0
actions = ["event"]

[[actions]]
type = "event"
id = "event"
""")
    return cfg


def test_check_and_verify_refuse_a_manifest_that_does_not_fit(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "clip.avi").write_bytes(b"")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    good = _face_model(zoo, [(100, (0.2, 0.2, 0.4, 0.4))])
    assert cli("check", str(_config(tmp_path, good)), env=cli_env).returncode == 0
    bad = _face_model(zoo, [(100, (0.2, 0.2, 0.4, 0.4))], name="bad",
                      post='\n[postprocessing]\ntype = "detection"\nstyle = "ssd"\n')
    out = cli("check", str(_config(tmp_path, bad)), env=cli_env)
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"pipelines[0].model '{bad}': postprocessing 'ssd'" in lines[0]
    assert "regressors: float32[1,896,16]" in lines[0] and "ssd_anchors" in lines[0]
    env = {**cli_env, "EDGE_RUNTIME_MODELS": str(zoo)}
    verify = cli("models", "verify", "face", "bad", env=env)
    assert verify.returncode == 2
    assert "[1/2] face: ok" in verify.stdout
    assert "[2/2] bad: MANIFEST DOES NOT FIT THE MODEL: postprocessing 'ssd'" in verify.stdout
    nodesc = tmp_path / "nodesc.toml"
    nodesc.write_text(good.read_text().replace('description = "Face detector (BlazeFace-like '
                                               'test model)."\n', ""))
    out = cli("check", str(_config(tmp_path, nodesc)), env=cli_env)
    assert out.returncode == 2 and "missing required field `description`" in out.stderr


def test_models_info_shows_processing_and_decoder_expectations(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    manifest = _face_model(tmp_path, [(100, (0.2, 0.2, 0.4, 0.4))])
    text = manifest.read_text().replace('labels = ["face"]', 'labels = ["face"]\n'
                                        'quantization = "int8"')
    manifest.write_text(text)
    out = cli("models", "info", str(manifest), env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "quantization  float32" in out.stdout
    assert "the manifest says int8; the file decides" in out.stdout
    assert "preprocessing type=image, size=[128, 128], layout=NHWC" in out.stdout
    assert "postprocessing type=detection, style=ssd_anchors" in out.stdout
    assert "  anchors     input_size=[128, 128], num_layers=4, strides=[8, 16, 16, 16]" \
        in out.stdout
    assert "decoder needs regressors (1, 896, 16)" in out.stdout
    assert "decoder fits  yes" in out.stdout
    listing = cli("models", "list", "--json",
                  env={**cli_env, "EDGE_RUNTIME_MODELS": str(tmp_path)})
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["face"]["quantization"] == "float32"
    assert rows["digits-int8-onnx"]["quantization"] == "int8"
    assert FACE_POST  # the manifest the docs describe


def _fails_at_one(path: Path) -> Path:
    """x: float[1, T] reshaped to (-1, 64): T = 1 (the default) fails, 512 works."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "vad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 64])],
    )
    return save(graph, path)


def test_bench_shapes_and_warm_up_failure(cli_env: dict[str, str], tmp_path: Path) -> None:
    model = _fails_at_one(tmp_path / "vad.onnx")
    out = cli("bench", str(model), "--seconds", "0.2", env=cli_env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # no traceback, no engine log lines
    assert "vad fails on its warm-up input (x=1x1)" in lines[0] and "--shape" in lines[0]
    out = cli("bench", str(model), "--seconds", "0.2", "--shape", "x=1x512", "--json",
              env=cli_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["input_shapes"] == {"x": [1, 512]}
    human = cli("bench", "digits-int8-onnx", "--seconds", "0.2", env=cli_env)
    assert "input shapes: input=1x1x8x8 (open dimensions of input set to 1" in human.stdout
    bad = cli("bench", str(model), "--shape", "x=2x512", env=cli_env)
    assert bad.returncode == 2 and "(1, 512) does not fit" not in bad.stderr
    assert "input 'x' is (1, ?)" in bad.stderr


def test_npz_feeds_several_inputs(cli_env: dict[str, str], tmp_path: Path) -> None:
    model = multi_io_int64(tmp_path / "multi.onnx")
    npz = tmp_path / "in.npz"
    np.savez(npz, a=np.array([1.0, 2.0], np.float32), ids=np.array([1, 2, 3]),
             scale=np.array(3.0, np.float32))
    out = cli("infer", str(model), str(npz), "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    outputs = json.loads(out.stdout)["outputs"]
    assert outputs["s"]["values"] == [3.0, 6.0] and outputs["n"]["values"] == [2, 4, 6]
    bench = cli("bench", str(model), "--input", str(npz), "--seconds", "0.2", "--json",
                env=cli_env)
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["input_shapes"] == {"a": [2], "ids": [3], "scale": []}
    np.savez(npz, a=np.array([1.0, 2.0], np.float32))
    out = cli("infer", str(model), str(npz), env=cli_env)
    assert out.returncode == 2 and "(missing: ids, scale)" in out.stderr
