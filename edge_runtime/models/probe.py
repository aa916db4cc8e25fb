"""Load a model file for the first time in a short-lived child process.

ONNX Runtime and TFLite have known bugs where a malformed file kills the process
(segmentation fault, abort) instead of raising. A device must not die because
someone copied a bad model onto it, so the first load of a file that is not yet
known to be good is tried in a child process: it loads the model and runs it once
on zeros. A crash there becomes a :class:`~edge_runtime.errors.ModelCrashError`;
a clean refusal keeps its typed error. The verdict is cached by the file's sha256
and the engine version, so the probe costs its ~0.3 s once per file.

The child hashes the bytes it reads and probes a private copy of exactly those, and
only when they are the bytes the caller hashed; so a file replaced while it is being
checked can never leave a verdict for bytes that were not probed. ``load_model`` hashes
the file again after the engine has loaded it, for the same reason.

The cache is a JSON file in ``EDGE_RUNTIME_CACHE_DIR``, else
``$XDG_CACHE_HOME/edge-runtime``, else ``~/.cache/edge-runtime``; writes are atomic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge_runtime import errors
from edge_runtime.errors import ModelCrashError, ModelError

ENV_CACHE_DIR = "EDGE_RUNTIME_CACHE_DIR"
#: How long a child may take to load and run a model once before it is killed.
PROBE_TIMEOUT_S = 60.0
_CACHE_FILE = "probe-verdicts.json"
_MAX_ENTRIES = 512


def cache_dir() -> Path:
    """The folder that holds the verdict cache (not created here)."""
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-runtime"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / _CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(entries: dict[str, Any]) -> None:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if len(entries) > _MAX_ENTRIES:  # bounded: drop the oldest verdicts
            entries = dict(list(entries.items())[-_MAX_ENTRIES:])
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".verdicts-")
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh)
        os.replace(tmp, folder / _CACHE_FILE)
    except OSError:
        pass  # a read-only home is no reason to refuse a model: we just probe again


def _error_from(kind: str, message: str) -> ModelError:
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, ModelError)):
        cls = ModelError
    err: ModelError = cls(message)
    return err


def check_model_file(
    path: Path, fmt: str, sha256: str, engine: str, *, timeout_s: float = PROBE_TIMEOUT_S
) -> None:
    """Raise a typed error if loading ``path`` fails or crashes; cache the verdict."""
    key = f"{sha256}|{engine}"
    cache = _read_cache()
    verdict = cache.get(key)
    if isinstance(verdict, dict):
        if verdict.get("ok"):
            return
        raise _error_from(str(verdict.get("kind")), str(verdict.get("message")))

    cmd = [sys.executable, "-m", "edge_runtime.models.probe", str(path), fmt, sha256]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        # Not cached: a slow board under load may do better next time.
        raise ModelError(
            f"{path.name}: loading took longer than {timeout_s:.0f} s in the safety probe",
            hint="the model may be too large for this device; try a smaller or quantized model",
        ) from exc
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        result: dict[str, Any] = {
            "ok": False,
            "kind": "ModelCrashError",
            "message": f"{path.name}: the {fmt} backend crashed ({sig}) loading this file",
        }
    else:
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {
                "ok": False,
                "kind": "ModelCrashError",
                "message": f"{path.name}: the {fmt} backend exited with code "
                f"{proc.returncode} loading this file",
            }
    if result.pop("sha256", sha256) != sha256:
        # The file changed between the caller's hash and the child's read: nothing was
        # probed, and nothing is cached for either set of bytes.
        raise changed_while_loading(path)
    cache[key] = result
    _write_cache(cache)
    if not result.get("ok"):
        if result.get("kind") == "ModelCrashError":
            raise ModelCrashError(str(result["message"]))
        raise _error_from(str(result.get("kind")), str(result.get("message")))


def changed_while_loading(path: Path) -> ModelError:
    """The error for a model file whose bytes changed while it was being checked."""
    return ModelError(
        f"{path.name} changed while it was being loaded (it is being copied or replaced)",
        hint="wait until the copy is complete, then load it again; copy new models to a "
        "temporary name and rename them into place")


def _invoke_bare_tflite(path: Path) -> None:
    """Set zero inputs and invoke, the way a user's script would, ignoring Python errors.

    The TFLite backend reads the whole tensor table before it ever invokes, so it
    refuses some damaged files early; LiteRT itself would invoke them and corrupt its
    heap (see tests/fixtures/crash). The probe's job is to find such crashes.
    """
    import numpy as np

    from edge_runtime.models.tflite_backend import new_interpreter

    with contextlib.suppress(Exception):
        interpreter = new_interpreter(path, 1)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()


def _child(path: Path, fmt: str, expected_sha256: str) -> dict[str, Any]:
    """Load and run once; report a typed refusal, or ok. A crash never returns.

    The file is read once and a private copy of those bytes is probed; the reply
    carries their sha256 so the parent caches the verdict for what was probed.
    """
    import hashlib

    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        return {"ok": False, "sha256": digest}  # not probed: the parent hashed other bytes
    with tempfile.TemporaryDirectory(prefix="edge-probe-") as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(data)
        del data
        try:
            verdict = _probe(copy, fmt)
        except MemoryError:
            verdict = {"ok": False, "kind": "ModelError",
                       "message": f"{path.name}: ran out of memory loading or running this "
                       "model once (the safety probe)"}
    return {**verdict, "sha256": digest}


def _probe(path: Path, fmt: str) -> dict[str, Any]:
    from edge_runtime.models.backend import zeros_for
    from edge_runtime.models.backends import open_backend

    if fmt == "tflite":
        _invoke_bare_tflite(path)
    try:
        backend = open_backend(fmt, path, num_threads=1)
    except ModelError as exc:
        return {"ok": False, "kind": type(exc).__name__, "message": exc.message}
    # Zeros are not a valid input for every model (a shape that must be > 1, say);
    # a typed refusal still means the file ran without crashing, which is what we probe.
    with contextlib.suppress(ModelError):
        backend.run(zeros_for(backend.inputs))
    return {"ok": True}


def main(argv: list[str]) -> int:
    """Child entry point: ``python -m edge_runtime.models.probe PATH FORMAT SHA256``."""
    path, fmt, sha256 = Path(argv[0]), argv[1], argv[2]
    print(json.dumps(_child(path, fmt, sha256)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
