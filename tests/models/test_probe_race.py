"""The crash-safe probe holds when the file changes under it (hash, probe and load see
the same bytes), and a probe that runs out of memory says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edge_runtime.errors import CorruptModelError, ModelError
from edge_runtime.models.manifest import sha256_file
from edge_runtime.models.model import engine_id, load_model
from edge_runtime.models.probe import check_model_file
from tests.models.onnx_builders import image_identity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CRASH = FIXTURES / "crash" / "multi_io_mutated.tflite"
GOOD = FIXTURES / "tflite" / "multi_io.tflite"


def _verdicts(cache: Path) -> dict[str, dict[str, object]]:
    path = cache / "probe-verdicts.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_file_replaced_after_hashing_never_gets_a_verdict_under_the_old_hash(
        fresh_probe_cache: Path, tmp_path: Path) -> None:
    """The caller hashed the good file; by the time the probe child reads it, a crashing
    file sits at that path. Today's main cached the child's verdict under the caller's
    hash; now the child sees the bytes are not the ones hashed, nothing is cached, and
    the caller is told."""
    model = tmp_path / "model.tflite"
    shutil.copyfile(GOOD, model)
    good_sha = sha256_file(model)
    shutil.copyfile(CRASH, model)  # replaced before the child reads it
    engine = engine_id("tflite")
    with pytest.raises(ModelError, match="changed while it was being loaded"):
        check_model_file(model, "tflite", good_sha, engine)
    assert _verdicts(fresh_probe_cache) == {}
    # The other way round: the crashing file hashed, a good one probed: no "ok" is ever
    # recorded for the crashing file's hash, so loading it later is still refused.
    shutil.copyfile(CRASH, model)
    crash_sha = sha256_file(model)
    shutil.copyfile(GOOD, model)
    with pytest.raises(ModelError, match="changed while"):
        check_model_file(model, "tflite", crash_sha, engine)
    assert _verdicts(fresh_probe_cache) == {}
    shutil.copyfile(CRASH, model)
    # Refused: a crash in the probe (ModelCrashError), or LiteRT's own refusal of the
    # damaged table when the heap happens to survive it (its base, CorruptModelError).
    with pytest.raises(CorruptModelError):
        load_model(model)


def test_the_probe_checks_a_private_copy_and_caches_under_its_hash(
        fresh_probe_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.tflite"
    shutil.copyfile(GOOD, model)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the private copy goes
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    engine = engine_id("tflite")
    check_model_file(model, "tflite", sha256_file(model), engine)
    assert _verdicts(fresh_probe_cache) == {f"{sha256_file(GOOD)}|{engine}": {"ok": True}}
    assert list(scratch.iterdir()) == []  # the copy is gone


def test_a_probe_that_runs_out_of_memory_says_so(tmp_path: Path) -> None:
    """A model whose input is absurdly large for the device (1x3x30000x30000 float32,
    10.8 GB; the child capped at 2 GiB of address space, as a small board would be) is
    reported as out of memory, not as a malformed or crashing file."""
    model = image_identity(tmp_path / "huge.onnx", [1, 3, 30000, 30000])
    script = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY))\n"
        "sys.argv = ['probe', *sys.argv[1:]]\n"
        "runpy.run_module('edge_runtime.models.probe', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(model), "onnx"],
                         capture_output=True, text=True, check=True, timeout=120)
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert reply["ok"] is False and reply["kind"] == "ModelError", reply
    assert "ran out of memory" in str(reply["message"])
