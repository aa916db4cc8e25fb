"""The mesh stays out of the way until used: no aiohttp, cryptography or gevent for
``--help``, and the runtime never imports tritonclient's gevent."""

from __future__ import annotations

import subprocess
import sys


def _imported(code: str, modules: list[str]) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"print(','.join(m for m in {modules!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_cli_help_imports_no_mesh_dependency() -> None:
    assert _imported("from edge_runtime.cli import build_parser; build_parser()",
                     ["aiohttp", "cryptography", "gevent", "tritonclient", "msgspec.json"]) == []


def test_the_mesh_never_imports_gevent() -> None:
    code = ("import edge_runtime.mesh.oip.server, edge_runtime.mesh.oip.client, "
            "edge_runtime.mesh.fleet, edge_runtime.models.remote_backend, "
            "edge_runtime.cli.serve")
    assert _imported(code, ["gevent", "geventhttpclient", "tritonclient"]) == []
