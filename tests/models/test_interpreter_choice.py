"""The TFLite interpreter is chosen in a fixed order: env var, LiteRT, tflite-runtime."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import MODELS

# Runs in a child so that hiding LiteRT does not leak into other tests. The stand-in
# tflite_runtime package exposes LiteRT's real Interpreter class under the old name,
# as an image with only tflite-runtime installed would.
PRELUDE = textwrap.dedent(
    """
    import sys, types, warnings
    import ai_edge_litert.interpreter as real
    stand_in = types.ModuleType("tflite_runtime")
    stand_in_interp = types.ModuleType("tflite_runtime.interpreter")
    stand_in_interp.Interpreter = real.Interpreter
    stand_in.interpreter = stand_in_interp
    sys.modules["tflite_runtime"] = stand_in
    sys.modules["tflite_runtime.interpreter"] = stand_in_interp
    """
)


def run_child(
    code: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_falls_back_to_tflite_runtime_with_a_warning() -> None:
    code = PRELUDE + textwrap.dedent(
        f"""
        sys.modules["ai_edge_litert.interpreter"] = None  # LiteRT not installed
        import numpy as np
        from edge_runtime import load_model
        from edge_runtime.models.tflite_backend import InterpreterFallbackWarning
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = load_model({str(MODELS / "digits-int8.tflite")!r})
        assert any(issubclass(w.category, InterpreterFallbackWarning) for w in caught), caught
        print(model.backend_name)
        print(model.run(np.zeros((1, 8, 8, 1), np.float32))["Identity"].shape)
        """
    )
    out = run_child(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["tflite-runtime", "(1, 10)"]


def test_env_var_forces_an_interpreter() -> None:
    code = PRELUDE + textwrap.dedent(
        f"""
        from edge_runtime import load_model
        print(load_model({str(MODELS / "digits-int8.tflite")!r}).backend_name)
        """
    )
    forced = run_child(code, {"EDGE_RUNTIME_TFLITE": "tflite-runtime"})
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == "tflite-runtime"
    default = run_child(code)
    assert default.stdout.strip().startswith("ai-edge-litert")


def test_missing_interpreter_is_a_clear_error() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["ai_edge_litert.interpreter"] = None
        sys.modules["tflite_runtime.interpreter"] = None
        from edge_runtime import load_model
        from edge_runtime.errors import BackendUnavailableError
        try:
            load_model({str(MODELS / "digits-int8.tflite")!r})
        except BackendUnavailableError as exc:
            print(exc)
        """
    )
    out = run_child(code)
    assert out.returncode == 0, out.stderr
    assert "no TFLite interpreter" in out.stdout and "install ai-edge-litert" in out.stdout
    bad = run_child(code.replace("load_model(", "0 or load_model("), {"EDGE_RUNTIME_TFLITE": "tfl"})
    assert "EDGE_RUNTIME_TFLITE='tfl' is not one of litert, tflite-runtime" in bad.stdout
