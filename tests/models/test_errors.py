"""Bad model files and bad input give typed errors that say what to do, never a crash."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import EdgeRuntimeError, load_model
from edge_runtime.errors import (
    CorruptModelError,
    InputError,
    IntegrityError,
    ModelCrashError,
    ModelNotFoundError,
    UnknownModelFormatError,
    UnsupportedModelError,
)

from . import onnx_builders as ob
from .conftest import MODELS


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(ModelNotFoundError, match=r"model file nowhere/m\.onnx does not exist"):
        load_model("nowhere/m.onnx")
    with pytest.raises(ModelNotFoundError, match="did you mean digits-int8-onnx") as info:
        load_model("digits-int8-onnxx")
    assert isinstance(info.value, FileNotFoundError)


def test_folder_empty_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        load_model(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(CorruptModelError, match="empty"):
        load_model(tmp_path / "empty.onnx")
    (tmp_path / "model.bin").write_bytes(b"\x08\x07" * 40)
    with pytest.raises(UnknownModelFormatError, match="unknown model format"):
        load_model(tmp_path / "model.bin")


@pytest.mark.parametrize("name", ["digits-int8.onnx", "digits-int8.tflite"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_files(tmp_path: Path, name: str, keep: float) -> None:
    data = (MODELS / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptModelError) as info:
        load_model(path)
    assert name in str(info.value) and "re-" in str(info.value)


def test_garbage_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for suffix in (".onnx", ".tflite"):
        path = tmp_path / f"garbage{suffix}"
        path.write_bytes(rng.bytes(4096))
        with pytest.raises(CorruptModelError):
            load_model(path)


def test_verdict_is_cached(tmp_path: Path, fresh_probe_cache: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model at all" * 10)
    with pytest.raises(CorruptModelError):
        load_model(path)
    verdicts = json.loads((fresh_probe_cache / "probe-verdicts.json").read_text())
    assert len(verdicts) == 1
    (entry,) = verdicts.values()
    assert entry["ok"] is False and entry["kind"] == "CorruptModelError"
    good = ob.dynamic_batch_linear(tmp_path / "good.onnx")
    load_model(good)
    verdicts = json.loads((fresh_probe_cache / "probe-verdicts.json").read_text())
    assert sorted(v["ok"] for v in verdicts.values()) == [False, True]
    with pytest.raises(CorruptModelError):  # answered from the cache, same error
        load_model(path)


def test_unsupported_operator(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        load_model(ob.unsupported_op(tmp_path / "custom.onnx"))
    assert "FancyOp" in str(info.value) or "com.example" in str(info.value)


def _tampered_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copy(MODELS / "digits-int8.onnx", folder / "digits-int8.onnx")
    manifest = (MODELS / "digits-int8-onnx.toml").read_text()
    (folder / "mine.toml").write_text(manifest.replace('"digits-int8-onnx"', '"my-digits"'))
    data = bytearray((folder / "digits-int8.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "digits-int8.onnx").write_bytes(bytes(data))
    monkeypatch.setenv("EDGE_RUNTIME_MODELS", str(folder))
    from edge_runtime.models import registry

    registry._manifests_in.cache_clear()
    return folder


def test_sha256_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _tampered_copy(tmp_path, monkeypatch)
    with pytest.raises(IntegrityError, match=r"my-digits.*sha256"):
        load_model("my-digits")
    with pytest.raises(IntegrityError):
        load_model(folder / "mine.toml")


def test_wrong_inputs_name_the_tensor() -> None:
    model = load_model("digits-int8-onnx")
    with pytest.raises(InputError, match=r"'input' expects shape \(\?, 1, 8, 8\)"):
        model.run(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(InputError, match="unknown input 'image'"):
        model.run({"image": np.zeros((1, 1, 8, 8))})
    with pytest.raises(InputError, match="expects float32 but got"):
        model.run(np.array([["a"] * 8] * 8).reshape(1, 1, 8, 8))
    tfl = load_model("digits-int8-tflite")
    too_big = np.zeros((1, 8, 8, 1), np.int64)
    too_big[0, 0, 0, 0] = 300
    with pytest.raises(InputError, match=r"values run from 0 to 300, outside -128\.\.127"):
        tfl.run(too_big)


def test_every_error_is_an_edge_runtime_error_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgeRuntimeError) as info:
        load_model(path)
    assert info.value.hint and str(info.value).endswith(info.value.hint)


def test_a_backend_crash_is_contained_in_the_probe(
        fresh_probe_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A native crash while loading (here a real SIGSEGV in the child, after it imported
    LiteRT: a read through a null pointer) kills only the probe child; the caller gets a
    ModelCrashError naming the signal, and the verdict is cached so no second child runs."""
    from edge_runtime.models import probe

    crasher = (
        "import ctypes, sys\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "Interpreter(model_path=sys.argv[1])\n"
        "ctypes.string_at(0)\n"
    )
    monkeypatch.setattr(probe, "_child_command",
                        lambda copy, fmt: [sys.executable, "-c", crasher, str(copy)])
    good = MODELS / "digits-int8.tflite"
    model = fresh_probe_cache.parent / "digits-copy.tflite"
    shutil.copyfile(good, model)
    with pytest.raises(ModelCrashError,
                       match=r"digits-copy\.tflite: the tflite backend crashed \(SIGSEGV\)"):
        load_model(model)
    verdicts = json.loads((fresh_probe_cache / "probe-verdicts.json").read_text())
    assert [v["kind"] for v in verdicts.values()] == ["ModelCrashError"]

    def no_child(*_: object) -> list[str]:
        raise AssertionError("a cached verdict must not start a new child")

    monkeypatch.setattr(probe, "_child_command", no_child)
    with pytest.raises(ModelCrashError):  # refused again from the cache
        load_model(model)


def test_a_fuzzed_file_that_corrupts_litert_is_refused_with_a_typed_error(
        fresh_probe_cache: Path) -> None:
    """tests/fixtures/crash/multi_io_mutated.tflite damages LiteRT's tensor table. What
    LiteRT then does depends on the machine's heap: on some it aborts (SIGABRT in the
    probe child: ModelCrashError), on others it refuses the table (CorruptModelError).
    Either way the caller gets a typed refusal (ModelCrashError is a CorruptModelError)
    and this process lives on."""
    crash = Path(__file__).resolve().parents[1] / "fixtures" / "crash" / "multi_io_mutated.tflite"
    with pytest.raises(CorruptModelError, match=r"multi_io_mutated\.tflite: ") as info:
        load_model(crash)
    assert info.value.hint
    verdicts = json.loads((fresh_probe_cache / "probe-verdicts.json").read_text())
    assert [v["ok"] for v in verdicts.values()] == [False]
