"""The remote backend: a shipped model run on a served peer matches a local run exactly,
over the fleet's mutual TLS; its errors are typed; its thread is joined."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import numpy.testing  # imported here: a lazy import on the loop reads the disk
import pytest

from edge_runtime.errors import InferenceError, PeerTimeoutError, UnsupportedModelError
from edge_runtime.mesh import fleet as fl
from edge_runtime.models import backends, load_model
from edge_runtime.models.registry import data_file
from edge_runtime.models.remote_backend import (
    RemoteBackend,
    load_remote_model,
    split_model_url,
)
from tests.mesh.oip_helpers import identity, node, running_server
from tests.mesh.serve_helpers import serving

HEAVY = "digits-heavy-int8-onnx"
#: int8 in and out, with scale and zero point: the quantization travels in the metadata.
QUANTIZED = "digits-heavy-int8-tflite"


def test_registry_names_the_remote_backend() -> None:
    assert backends.backend_class("remote") is RemoteBackend


def test_model_urls() -> None:
    assert split_model_url("https://garage:8001/v2/models/m") == ("https://garage:8001", "m")
    # What pathlib makes of it when open_backend passes a Path.
    assert split_model_url(str(Path("https://garage:8001/v2/models/m"))) == \
        ("https://garage:8001", "m")
    for bad in ("garage:8001/v2/models/m", "https://garage:8001/", "https://g/x/v2/models/m",
                "ftp://g/v2/models/m"):
        with pytest.raises(UnsupportedModelError):
            split_model_url(bad)


def test_heavy_model_on_a_peer_matches_a_local_run(tmp_path: Path) -> None:
    fleet = fl.init_fleet(tmp_path / "fleet")
    server = node(fleet, tmp_path / "n", "gpu-box")
    client = node(fleet, tmp_path / "n", "pi")
    f = server.files
    config = tmp_path / "serve.toml"
    config.write_text(f"""
[mesh]
listen = "127.0.0.1:0"
models = ["{HEAVY}", "{QUANTIZED}"]
tls_cert = "{f.cert}"
tls_key = "{f.key}"
tls_ca = "{f.ca}"
tls_crl = "{f.crl}"
""")
    digits = np.load(data_file("digits_heldout.npz"))["images"][:16]  # 8x8, 0..16
    x = (np.kron(digits, np.ones((4, 4))) / 16.0).astype(np.float32).reshape(-1, 1, 32, 32)
    local = load_model(HEAVY)
    threads_before = set(threading.enumerate())
    with serving(config) as (url, _proc):
        port = url.rsplit(":", 1)[1]
        remote = load_remote_model(f"https://localhost:{port}/v2/models/{HEAVY}",
                                   ssl_context=fl.client_context(client.files))
        try:
            assert [s.shape for s in remote.inputs] == [s.shape for s in local.inputs]
            assert remote.inputs[0].layout == local.inputs[0].layout == "NCHW"
            assert remote.format == "remote" and remote.backend_name.startswith("remote")
            for i in range(0, len(x), 4):
                batch = x[i:i + 4]
                got = remote.run({"input": batch})["probs"]
                np.testing.assert_array_equal(got, local.run({"input": batch})["probs"])
            one = remote.run(x[:1])  # a single array, like a local model
            assert one["probs"].shape == (1, 10)
            quantized = load_remote_model(f"https://localhost:{port}/v2/models/{QUANTIZED}",
                                          ssl_context=fl.client_context(client.files))
            local_q = load_model(QUANTIZED)
            try:
                assert quantized.inputs == local_q.inputs  # int8 with its scale and zero
                assert quantized.outputs == local_q.outputs
                frames = x.transpose(0, 2, 3, 1)  # NHWC floats: quantized here, as locally
                for frame in frames[:6]:
                    got_q = quantized.run(frame[None])
                    want_q = local_q.run(frame[None])
                    np.testing.assert_array_equal(got_q["Identity"], want_q["Identity"])
                    assert got_q["Identity"].dtype == np.float32  # dequantized here
            finally:
                quantized.close()
                local_q.close()
        finally:
            remote.close()
    local.close()
    assert set(threading.enumerate()) <= threads_before


def test_run_refused_on_its_own_loop_and_timeouts_are_typed() -> None:
    slow = identity()

    async def main() -> None:
        async with running_server({"id": slow}) as server:
            loop = asyncio.get_running_loop()
            url = f"{server.url}/v2/models/id"
            backend = await loop.run_in_executor(
                None, lambda: RemoteBackend(url, loop=loop, timeout_s=0.3))
            x = np.ones((1, 4), np.float32)
            with pytest.raises(InferenceError, match="loop it uses"):
                backend.run([x])
            got = await loop.run_in_executor(None, backend.run, [x])
            np.testing.assert_array_equal(got[0], x)
            slow.gate.clear()
            with pytest.raises(PeerTimeoutError):
                await loop.run_in_executor(None, backend.run, [x])
            slow.gate.set()
            await loop.run_in_executor(None, backend.close)

    asyncio.run(main())
