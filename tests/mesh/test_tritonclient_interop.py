"""Interop with NVIDIA's own client: tritonclient[http] against ``edge-runtime serve``,
and Triton's encoders and decoders against ours."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton  # type: ignore[import-untyped]

from edge_runtime.mesh import fleet as fl
from edge_runtime.mesh.oip import codec
from edge_runtime.models import load_model
from tests.mesh.oip_helpers import node, write_identity_onnx
from tests.mesh.serve_helpers import serving

HEAVY = "digits-heavy-int8-onnx"


@pytest.fixture
def served_config(tmp_path: Path) -> Path:
    write_identity_onnx(tmp_path / "ident.onnx", shape=["n", 4], elem="FLOAT")
    write_identity_onnx(tmp_path / "ident8.onnx", shape=[2, 3], elem="UINT8")
    config = tmp_path / "serve.toml"
    config.write_text(f"""
[node]
name = "gpu-box"
[mesh]
listen = "127.0.0.1:0"
insecure_plaintext = true
models = ["{HEAVY}", "{tmp_path / 'ident.onnx'}", "{tmp_path / 'ident8.onnx'}"]
""")
    return config


def test_tritonclient_talks_to_serve(served_config: Path) -> None:
    with serving(served_config) as (url, _proc):
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        try:
            assert client.is_server_live() and client.is_server_ready()
            meta = client.get_server_metadata()
            assert meta["name"] == "gpu-box" and "binary_tensor_data" in meta["extensions"]
            model_meta = client.get_model_metadata(HEAVY)
            assert model_meta["inputs"][0]["name"] == "input"
            assert model_meta["inputs"][0]["shape"] == [-1, 1, 32, 32]
            assert client.is_model_ready(HEAVY)
            assert not client.is_model_ready("nope")

            x = np.random.default_rng(1).random((2, 1, 32, 32), dtype=np.float32)
            local = load_model(HEAVY).run({"input": x})["probs"]
            for binary in (True, False):
                tin = triton.InferInput("input", list(x.shape), "FP32")
                tin.set_data_from_numpy(x, binary_data=binary)
                tout = triton.InferRequestedOutput("probs", binary_data=binary)
                result = client.infer(HEAVY, [tin], outputs=[tout], request_id="t-1")
                np.testing.assert_array_equal(result.as_numpy("probs"), local)
                assert result.get_response()["id"] == "t-1"

            v = np.arange(8, dtype=np.float32).reshape(2, 4)
            tin = triton.InferInput("x", [2, 4], "FP32")
            tin.set_data_from_numpy(v, binary_data=True)
            np.testing.assert_array_equal(client.infer("ident", [tin]).as_numpy("y"), v)
            u = np.array([[0, 1, 255], [7, 8, 9]], dtype=np.uint8)
            tin = triton.InferInput("x", [2, 3], "UINT8")
            tin.set_data_from_numpy(u, binary_data=False)
            np.testing.assert_array_equal(client.infer("ident8", [tin]).as_numpy("y"), u)

            bad = triton.InferInput("x", [2, 5], "FP32")
            bad.set_data_from_numpy(np.zeros((2, 5), np.float32))
            with pytest.raises(triton.InferenceServerException, match="expects shape"):
                client.infer("ident", [bad])
        finally:
            client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_tritons_request_bodies_decode_here(binary: bool) -> None:
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    s = np.array([b"ab", b"\xffz"], dtype=np.object_) if binary else \
        np.array([b"ab", b"cd"], dtype=np.object_)
    inputs = []
    for name, arr, datatype in (("a", a, "INT16"), ("s", s, "BYTES")):
        tin = triton.InferInput(name, list(arr.shape), datatype)
        tin.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(tin)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=[triton.InferRequestedOutput("y", binary_data=binary)],
        request_id="r9")
    header, tail = codec.split_body(body, None if json_size is None else str(json_size))
    decoded = codec.decode_tensors(header, tail, "inputs")
    np.testing.assert_array_equal(decoded.tensors["a"], a)
    assert list(decoded.tensors["s"]) == list(s)
    assert header["id"] == "r9"


@pytest.mark.parametrize("binary", [True, False])
def test_our_answers_parse_in_triton(binary: bool) -> None:
    y = np.linspace(0, 1, 6, dtype=np.float32).reshape(3, 2)
    flags = np.array([True, False])
    body, header_len = codec.encode_tensors({"model_name": "m", "id": "q"}, "outputs",
                                            {"y": y, "flags": flags}, binary)
    result = triton.InferResult.from_response_body(body, header_length=header_len)
    np.testing.assert_array_equal(result.as_numpy("y"), y)
    np.testing.assert_array_equal(result.as_numpy("flags"), flags)


def _gevent_fleet_context(files: fl.TlsFiles) -> Any:
    """The fleet's client context, built as gevent's SSLContext (tritonclient's sockets
    are gevent's)."""
    import gevent.ssl  # type: ignore[import-untyped]

    ctx = gevent.ssl.SSLContext(gevent.ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = gevent.ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(files.cert, files.key)
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.load_verify_locations(cafile=str(files.crl))
    ctx.verify_flags |= gevent.ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def test_tritonclient_over_fleet_mutual_tls(tmp_path: Path) -> None:
    fleet = fl.init_fleet(tmp_path / "fleet")
    server = node(fleet, tmp_path / "n", "gpu-box")
    laptop = node(fleet, tmp_path / "n", "laptop")
    thief = node(fleet, tmp_path / "n", "thief")
    fl.revoke(fleet, "thief")
    f = server.files
    config = tmp_path / "serve.toml"
    config.write_text(f'[mesh]\nlisten = "127.0.0.1:0"\nmodels = ["{HEAVY}"]\n'
                      f'tls_cert = "{f.cert}"\ntls_key = "{f.key}"\n'
                      f'tls_ca = "{f.ca}"\ntls_crl = "{f.crl}"\n')
    with serving(config) as (url, _proc):
        where = "localhost:" + url.rsplit(":", 1)[1]
        good = _gevent_fleet_context(laptop.files)
        client = triton.InferenceServerClient(where, ssl=True,
                                              ssl_context_factory=lambda **_kw: good)
        try:
            assert client.is_server_ready()
            x = np.zeros((1, 1, 32, 32), np.float32)
            tin = triton.InferInput("input", [1, 1, 32, 32], "FP32")
            tin.set_data_from_numpy(x)
            assert client.infer(HEAVY, [tin]).as_numpy("probs").shape == (1, 10)
        finally:
            client.close()
        bad = _gevent_fleet_context(thief.files)
        refused = triton.InferenceServerClient(where, ssl=True,
                                               ssl_context_factory=lambda **_kw: bad)
        try:
            # TLS 1.3: the server refuses the revoked certificate after the client's
            # handshake, so Triton's client sees the connection close.
            with pytest.raises(http.client.HTTPException, match="closed"):
                refused.is_server_ready()
        finally:
            refused.close()
