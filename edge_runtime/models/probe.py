"""Load a model file for the first time in a short-lived child process.

ONNX Runtime and TFLite have known bugs where a malformed file kills the process
(segmentation fault, abort) instead of raising. A device must not die because
someone copied a bad model onto it, so the first load of a file that is not yet
known to be good is tried in a child process: it loads the model and runs it once
on zeros. A crash there becomes a :class:`~edge_runtime.errors.ModelCrashError`;
a clean refusal keeps its typed error. The verdict is cached by the file's sha256
and the engine version, so the probe costs its ~0.3 s once per file.

The file is copied to a private folder while it is hashed, and the child probes that
copy, only when its bytes are the ones the caller hashed: a file replaced while it is
being checked can never leave a verdict for bytes that were not probed. ``load_model``
hashes the file again after the engine has loaded it, for the same reason.

The cache is a JSON file in ``EDGE_RUNTIME_CACHE_DIR``, else
``$XDG_CACHE_HOME/edge-runtime``, else ``~/.cache/edge-runtime``; writes are atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
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

    with tempfile.TemporaryDirectory(prefix="edge-probe-") as folder:
        copy = Path(folder) / path.name
        if _copy_and_hash(path, copy) != sha256:
            # Not the bytes the caller hashed (being copied or replaced): nothing is
            # probed, nothing cached for either.
            raise changed_while_loading(path)
        proc = _run_child(copy, path, fmt, timeout_s)
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
    cache[key] = result
    _write_cache(cache)
    if not result.get("ok"):
        if result.get("kind") == "ModelCrashError":
            raise ModelCrashError(str(result["message"]))
        raise _error_from(str(result.get("kind")), str(result.get("message")))


def _copy_and_hash(src: Path, dst: Path, chunk_bytes: int = 1 << 20) -> str:
    """Copy ``src`` to ``dst`` and return the sha256 of exactly the bytes copied."""
    digest = hashlib.sha256()
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            while chunk := fin.read(chunk_bytes):
                digest.update(chunk)
                fout.write(chunk)
    except OSError as exc:
        raise ModelError(f"{src.name}: cannot copy it for the safety probe ({exc.strerror})",
                         hint="check the free space in the temporary folder ($TMPDIR)"
                         ) from exc
    return digest.hexdigest()


def _child_command(copy: Path, fmt: str) -> list[str]:
    """The command line of the probe child (this module run as a script)."""
    return [sys.executable, "-m", "edge_runtime.models.probe", str(copy), fmt]


def _run_child(copy: Path, path: Path, fmt: str, timeout_s: float
               ) -> subprocess.CompletedProcess[str]:
    cmd = _child_command(copy, fmt)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        # Not cached: a slow board under load may do better next time.
        raise ModelError(
            f"{path.name}: loading took longer than {timeout_s:.0f} s in the safety probe",
            hint="the model may be too large for this device; try a smaller or quantized model",
        ) from exc


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


def _child(path: Path, fmt: str) -> dict[str, Any]:
    """Load and run once; report a typed refusal, or ok. A crash never returns."""
    try:
        return _probe(path, fmt)
    except MemoryError:
        return {"ok": False, "kind": "ModelError",
                "message": f"{path.name}: ran out of memory loading or running this model "
                "once (the safety probe)"}


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
    """Child entry point: ``python -m edge_runtime.models.probe PATH FORMAT``."""
    path, fmt = Path(argv[0]), argv[1]
    print(json.dumps(_child(path, fmt)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
