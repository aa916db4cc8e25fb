"""``[mesh]`` in the config: bounded numbers, peer URLs, TLS all or none, and no mesh
without TLS unless insecure_plaintext says so; errors name the key."""

from __future__ import annotations

import pytest

from edge_runtime.config import check_config, decode_config
from edge_runtime.errors import ConfigError

TLS = ('tls_cert = "n.pem"\ntls_key = "n.key"\ntls_ca = "ca.pem"\n'
       'tls_crl = "crl.pem"\n')


def _check(text: str) -> None:
    check_config(decode_config(text))


def test_defaults_need_nothing() -> None:
    config = decode_config("")
    check_config(config)
    assert config.mesh.listen == "127.0.0.1:8001" and not config.mesh.insecure_plaintext


@pytest.mark.parametrize(("text", "message"), [
    ('[mesh]\npeers = ["garage:8001"]\n' + TLS, r"mesh.peers\[0\].*not a peer URL"),
    ('[mesh]\npeers = ["https://garage:8001/v2"]\n' + TLS, "no path"),
    ('[mesh]\npeers = ["https://garage:8001"]\ntls_cert = "n.pem"\n', "mesh.tls_key"),
    ('[mesh]\nmodels = ["digits-int8-onnx"]\n', "insecure_plaintext"),
    ('[mesh]\npeers = ["https://garage:8001"]\ninsecure_plaintext = true\n', "is https"),
    ('[mesh]\nlisten = "nowhere"\n', "mesh.listen"),
    ("[mesh]\nqueue_limit = 5000\n", "mesh.queue_limit"),
    ("[mesh]\nmax_concurrency_per_peer = 0\n", "mesh.max_concurrency_per_peer"),
    ("[mesh]\nrequest_timeout_s = inf\n", "mesh.request_timeout_s"),
])
def test_bad_mesh_sections(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _check(text)


def test_a_plaintext_mesh_said_so_and_a_tls_one_pass() -> None:
    _check('[mesh]\npeers = ["http://triton:8000"]\ninsecure_plaintext = true\n')
    _check('[mesh]\npeers = ["https://garage:8001", "http://triton:8000"]\n'
           'models = ["digits-int8-onnx"]\n' + TLS)
