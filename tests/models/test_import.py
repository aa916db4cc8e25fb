"""Importing edge_runtime is cheap and has no side effects."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, edge_runtime\n"
        "heavy = ['cv2', 'zeroconf', 'paho', 'onnxruntime', 'ai_edge_litert', 'numpy', 'serial']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_does_not_import_backends() -> None:
    code = (
        "import sys\n"
        "from edge_runtime.cli import build_parser\n"
        "build_parser()\n"
        "heavy = ['cv2', 'zeroconf', 'paho', 'onnxruntime', 'ai_edge_litert', 'gpiozero']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_attributes_resolve() -> None:
    import edge_runtime

    assert callable(edge_runtime.load_model)
    assert edge_runtime.Model.__name__ == "Model"
