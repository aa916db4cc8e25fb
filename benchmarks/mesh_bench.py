"""What offloading costs on the wire: the OIP round trip over mutual TLS, part 1.

A peer (``edge-runtime serve``, a child process, fleet mutual TLS on loopback) serves an
identity ONNX model on a 224x224x3 uint8 frame; this process sends frames with
:class:`~edge_runtime.mesh.oip.client.OipClient`, one at a time, and times each call
end to end (encode, TLS, HTTP, decode). The peer reports its own compute per call
(``Server-Timing``); the figure of merit is the median of *round trip minus the
peer's compute*: what the mesh adds. Target: at most 2 ms with binary tensors. JSON
tensors, and binary ones without TLS (what mutual TLS costs), are measured the same way.

Run it with ``nice``: ``nice python benchmarks/mesh_bench.py``. Writes
``benchmarks/results/mesh.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.machine import save  # noqa: E402
from edge_runtime.mesh import fleet as fl  # noqa: E402
from edge_runtime.mesh.oip.client import OipClient  # noqa: E402
from tests.mesh.oip_helpers import node, write_identity_onnx  # noqa: E402
from tests.mesh.serve_helpers import serving  # noqa: E402

FRAME = (224, 224, 3)
TARGET_MS = 2.0


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 3),
            "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
            "min": round(ordered[0], 3)}


async def _measure(url: str, ctx: Any, runs: int, binary: bool) -> dict[str, Any]:
    frame = np.random.default_rng(0).integers(0, 256, FRAME, dtype=np.uint8)
    rtt_ms: list[float] = []
    compute_ms: list[float] = []
    async with OipClient(url, ssl=ctx) as peer:
        for _ in range(5):  # warm-up: connection, TLS session, the model's first runs
            await peer.infer("identity", {"x": frame}, binary=binary, timeout_s=30)
        for _ in range(runs):
            start = time.perf_counter()
            out = await peer.infer("identity", {"x": frame}, binary=binary, timeout_s=30)
            rtt_ms.append((time.perf_counter() - start) * 1e3)
            compute_ms.append((out.server_compute_s or 0.0) * 1e3)
            if not np.array_equal(out["y"], frame):
                raise AssertionError("the identity model changed the frame")
    overhead = [r - c for r, c in zip(rtt_ms, compute_ms, strict=True)]
    return {"runs": runs, "round_trip_ms": _quantiles(rtt_ms),
            "peer_compute_ms": _quantiles(compute_ms), "overhead_ms": _quantiles(overhead)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="binary calls (default 300)")
    parser.add_argument("--json-runs", type=int, default=60, help="JSON calls (default 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        model = write_identity_onnx(tmp / "identity.onnx", shape=list(FRAME), elem="UINT8")
        fleet = fl.init_fleet(tmp / "fleet")
        server, client = node(fleet, tmp / "n", "peer"), node(fleet, tmp / "n", "pi")
        f = server.files
        config = tmp / "serve.toml"
        config.write_text(f'[mesh]\nlisten = "127.0.0.1:0"\nmodels = ["{model}"]\n'
                          f'tls_cert = "{f.cert}"\ntls_key = "{f.key}"\n'
                          f'tls_ca = "{f.ca}"\ntls_crl = "{f.crl}"\n')
        ctx = fl.client_context(client.files)
        with serving(config) as (url, _proc):
            target = "https://localhost:" + url.rsplit(":", 1)[1]
            binary = asyncio.run(_measure(target, ctx, args.runs, True))
            as_json = asyncio.run(_measure(target, ctx, args.json_runs, False))
        # The same without TLS: what mutual TLS itself costs per call.
        plain = tmp / "plain.toml"
        plain.write_text(f'[mesh]\nlisten = "127.0.0.1:0"\nmodels = ["{model}"]\n'
                         'insecure_plaintext = true\n')
        with serving(plain) as (url, _proc):
            plaintext = asyncio.run(_measure(url, None, args.runs, True))
    frame_bytes = int(np.prod(FRAME))
    results = {
        "what": "OIP round trip over fleet mutual TLS (TLS 1.3) on loopback, identity ONNX "
                "model on a 224x224x3 uint8 frame; edge-runtime serve in a child process",
        "frame_bytes": frame_bytes, "target_overhead_ms": TARGET_MS,
        "binary": binary, "json": as_json, "binary_plaintext": plaintext,
        "tls_cost_ms": round(binary["overhead_ms"]["median"]
                             - plaintext["overhead_ms"]["median"], 3),
        "binary_meets_target": binary["overhead_ms"]["median"] <= TARGET_MS,
        "json_over_binary": round(as_json["overhead_ms"]["median"]
                                  / max(binary["overhead_ms"]["median"], 1e-6), 1),
    }
    path = save("mesh", results)
    print(f"binary: round trip {binary['round_trip_ms']['median']} ms, peer compute "
          f"{binary['peer_compute_ms']['median']} ms, overhead "
          f"{binary['overhead_ms']['median']} ms (target {TARGET_MS} ms)")
    print(f"json:   round trip {as_json['round_trip_ms']['median']} ms, overhead "
          f"{as_json['overhead_ms']['median']} ms ({results['json_over_binary']}x binary)")
    print(f"plaintext binary overhead {plaintext['overhead_ms']['median']} ms (mutual TLS "
          f"adds {results['tls_cost_ms']} ms)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
