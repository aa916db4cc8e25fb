"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.models.bare import bare_runner
from edge_runtime.models.manifest import ImagePreprocessing
from edge_runtime.models.preprocess import image_preprocessor
from edge_runtime.models.registry import data_file, find_model

from .conftest import MODELS, TFLITE_FIXTURES


def cli(
    *args: str, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_runtime", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


def test_version_and_help_on_every_command(cli_env: dict[str, str]) -> None:
    from edge_runtime import __version__
    from edge_runtime.cli import build_parser

    out = cli("--version", env=cli_env)
    assert out.returncode == 0 and out.stdout.strip() == f"edge-runtime {__version__}"
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"demo", "models", "infer", "bench"} <= set(commands)
    for name in commands:
        result = cli(name, "--help", env=cli_env)
        assert result.returncode == 0, (name, result.stderr)
        assert "usage: edge-runtime" in result.stdout
    for sub in ("list", "info", "verify"):
        assert cli("models", sub, "--help", env=cli_env).returncode == 0


def test_models_list_and_info(cli_env: dict[str, str]) -> None:
    out = cli("models", "list", "--json", env=cli_env)
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert {"digits-int8-onnx", "digits-int8-tflite"} <= {r["name"] for r in rows}
    info = cli("models", "info", "digits-int8-tflite", env=cli_env)
    assert info.returncode == 0
    assert "int8[1,8,8,1] NHWC (scale" in info.stdout and "KB" in info.stdout


def test_models_verify_ok_and_mismatch(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = cli("models", "verify", env=cli_env)
    assert out.returncode == 0 and "match their manifests" in out.stdout
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "digits-int8.onnx").write_bytes((MODELS / "digits-int8.onnx").read_bytes()[:-1] + b"x")
    manifest = (MODELS / "digits-int8-onnx.toml").read_text()
    (zoo / "t.toml").write_text(manifest.replace('"digits-int8-onnx"', '"tampered"'))
    bad = cli("models", "verify", "tampered", env={**cli_env, "EDGE_RUNTIME_MODELS": str(zoo)})
    assert bad.returncode == 2 and "MISMATCH" in bad.stdout


def _digit_png(tmp_path: Path) -> tuple[Path, int]:
    with np.load(data_file("digits_heldout.npz")) as data:
        image, label = data["images"][0], int(data["labels"][0])
    path = tmp_path / "digit.png"
    cv2.imwrite(str(path), np.kron(image, np.ones((4, 4), np.uint8)))
    return path, label


@pytest.mark.parametrize("name", ["digits-int8-onnx", "digits-int8-tflite"])
def test_infer_image_equals_bare_backend(
    cli_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    png, label = _digit_png(tmp_path)
    out = cli("infer", name, str(png), "--json", "--raw", env=cli_env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    manifest = find_model(name)
    assert isinstance(manifest.preprocessing, ImagePreprocessing)
    from edge_runtime import load_model

    model = load_model(name)
    x = image_preprocessor(manifest.preprocessing, model.inputs[0])(cv2.imread(str(png)))
    arrays = model.prepare(x)
    expected = bare_runner(manifest.model_path, model.format, None)(arrays)
    (output,) = doc["outputs"].values()
    np.testing.assert_array_equal(np.asarray(output["values"], dtype=output["dtype"]), expected[0])
    human = cli("infer", name, str(png), env=cli_env)
    assert human.returncode == 0
    assert human.stdout.splitlines()[1].split()[0] == str(label)


def test_infer_numbers_and_npy_on_third_party_models(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = cli(
        "infer",
        str(TFLITE_FIXTURES / "dynamic_batch.tflite"),
        "1,2,3,4,5,6,7,8,9,10",
        "--json",
        env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    values = np.asarray(json.loads(out.stdout)["outputs"]["PartitionedCall:0"]["values"])
    x = np.arange(1, 11, dtype=np.float32).reshape(2, 5)
    want = bare_runner(TFLITE_FIXTURES / "dynamic_batch.tflite", "tflite")([x])[0]
    np.testing.assert_array_equal(values.astype(np.float32), want)
    npy = tmp_path / "ids.npy"
    np.save(npy, np.array([1, 2, 3, 4, 5, 6], np.int64))  # batch dim added by the CLI
    out = cli("infer", str(TFLITE_FIXTURES / "int64_input.tflite"), str(npy), "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    want = bare_runner(TFLITE_FIXTURES / "int64_input.tflite", "tflite")(
        [np.arange(1, 7, dtype=np.int64).reshape(1, 6)]
    )[0]
    got = json.loads(out.stdout)["outputs"]["PartitionedCall:0"]["values"]
    np.testing.assert_array_equal(np.asarray(got, np.float32), want)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["infer", "no-such-model", "1,2"], "no model file or shipped model named 'no-such-model'"),
        (["infer", "digits-int8-onnx", "1,2,3"], "3 numbers do not fill the model's input shape"),
        (["infer", "digits-int8-onnx", "missing.png"], "input file missing.png does not exist"),
        (["infer", "digits-int8-onnx", "a,b"], "neither an image, a .npy file nor comma-separated"),
        (["bench", "digits-int8-onnx", "--seconds", "0"], "--seconds must be positive"),
        (["models", "info", "nope.tflite"], "model file nope.tflite does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    cli_env: dict[str, str], args: list[str], message: str
) -> None:
    out = cli(*args, env=cli_env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("edge-runtime: error: ") and message in lines[0]
    assert "; " in lines[0]  # ... followed by what to do


def test_corrupt_model_via_cli(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes((MODELS / "digits-int8.tflite").read_bytes()[:500])
    out = cli("infer", str(path), "1", env=cli_env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "broken.tflite" in out.stderr


def test_bench_prints_both_sides(cli_env: dict[str, str]) -> None:
    out = cli("bench", "digits-int8-onnx", "--seconds", "0.5", "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for side in ("runtime", "bare"):
        t = doc[side]
        assert t["runs"] > 10 and 0 < t["p50_ms"] <= t["p95_ms"] <= t["p99_ms"]
        assert t["throughput_per_s"] > 0
    human = cli("bench", "digits-int8-tflite", "--seconds", "0.3", env=cli_env)
    assert human.returncode == 0 and "p50 ms" in human.stdout and "inferences/s" in human.stdout


def test_demo_runs_on_built_in_defaults(cli_env: dict[str, str]) -> None:
    out = cli("demo", "--frames", "10", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "frames right" in out.stdout and "ms" in out.stdout
    right = int(out.stdout.split("frames right")[0].split()[-1].split("/")[0])
    assert right >= 8
    # The sensor part's alarms fall in NAB's labelled failure window, not outside it.
    line = next(x for x in out.stdout.splitlines() if "labelled failure window" in x)
    inside = int(line.split(": ")[1].split()[0])
    outside = int(line.split("), ")[1].split()[0])
    assert inside > 10 * max(outside, 1)
