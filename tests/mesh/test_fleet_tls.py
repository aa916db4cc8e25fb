"""Fleet mutual TLS: the CA commands, and certificates from another CA, expired or revoked
refused in both directions (the server refuses the client; the client the server)."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import numpy as np
import numpy.testing  # imported here: a lazy import on the loop reads the disk
import pytest

from edge_runtime.cli import main
from edge_runtime.errors import FleetError, PeerTlsError
from edge_runtime.mesh import fleet as fl
from edge_runtime.mesh.oip.client import OipClient
from tests.mesh.oip_helpers import Node, identity, node, running_server
from tests.mesh.serve_helpers import serving


class World:
    """One fleet with good, expired and revoked nodes, and a rogue fleet."""

    def __init__(self, root: Path) -> None:
        self.fleet = fl.init_fleet(root / "fleet")
        rogue = fl.init_fleet(root / "rogue-fleet", key_type="p256")
        self.server = node(self.fleet, root / "n", "server")
        self.client = node(self.fleet, root / "n", "laptop")
        self.expired = node(self.fleet, root / "n", "old", expired=True)
        self.revoked = node(self.fleet, root / "n", "stolen")
        fl.revoke(self.fleet, "stolen")
        self.rogue = node(rogue, root / "r", "rogue")
        # A rogue node presenting our fleet's CA file still has a rogue certificate.
        self.rogue.files = fl.TlsFiles(cert=self.rogue.files.cert, key=self.rogue.files.key,
                                       ca=self.fleet.ca_cert_path, crl=self.fleet.crl_path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("tls"))


def _call(server_node: Node, client_node: Node) -> np.ndarray:
    """One inference from ``client_node`` to ``server_node`` (contexts loaded before the
    loop runs: they read files)."""
    server_ctx = fl.server_context(server_node.files)
    client_ctx = fl.client_context(client_node.files)

    async def go() -> np.ndarray:
        async with running_server({"id": identity()}, ssl_context=server_ctx) as server:
            url = f"https://localhost:{server.port}"
            async with OipClient(url, ssl=client_ctx) as peer:
                out = await peer.infer("id", {"x": np.ones((1, 4), np.float32)},
                                       timeout_s=5)
                return out["y"]

    return asyncio.run(go())


def test_fleet_nodes_talk(world: World) -> None:
    y = (_call(world.server, world.client))
    np.testing.assert_array_equal(y, np.ones((1, 4), np.float32))


@pytest.mark.parametrize("who", ["rogue", "expired", "revoked"])
def test_server_refuses_the_client(world: World, who: str) -> None:
    with pytest.raises(PeerTlsError) as caught:
        (_call(world.server, getattr(world, who)))
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize("who", ["rogue", "expired", "revoked"])
def test_client_refuses_the_server(world: World, who: str) -> None:
    with pytest.raises(PeerTlsError, match="certificate"):
        (_call(getattr(world, who), world.client))


def test_no_client_certificate_and_tls12_are_refused(world: World) -> None:
    server_ctx = fl.server_context(world.server.files)
    anonymous = ssl.create_default_context(cafile=str(world.fleet.ca_cert_path))
    old = fl.client_context(world.client.files)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2

    async def go() -> None:
        async with running_server({"id": identity()}, ssl_context=server_ctx) as server:
            url = f"https://localhost:{server.port}"
            for ctx in (anonymous, old):
                async with OipClient(url, ssl=ctx) as peer:
                    with pytest.raises(PeerTlsError):
                        await peer.live(timeout_s=5)

    asyncio.run(go())


def test_fleet_cli_makes_a_working_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    fleet = tmp_path / "fleet"
    assert main(["fleet", "init", "--fleet", str(fleet)]) == 0
    assert main(["fleet", "csr", "garage", "--out", str(tmp_path / "garage"),
                 "--host", "localhost"]) == 0
    key = tmp_path / "garage" / "garage.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((fleet / "ca.key").stat().st_mode) == 0o600
    assert main(["fleet", "enroll", "garage", "--csr",
                 str(tmp_path / "garage" / "garage.csr"), "--fleet", str(fleet)]) == 0
    assert (fleet / "nodes" / "garage.pem").is_file()
    # A CSR under another name, a second init, an unknown node: one-line errors.
    assert main(["fleet", "enroll", "shed", "--csr", str(tmp_path / "garage" / "garage.csr"),
                 "--fleet", str(fleet)]) == 2
    assert main(["fleet", "init", "--fleet", str(fleet)]) == 2
    assert main(["fleet", "revoke", "nobody", "--fleet", str(fleet)]) == 2
    assert main(["fleet", "csr", "garage", "--out", str(tmp_path / "garage")]) == 2
    assert main(["fleet", "revoke", "garage", "--fleet", str(fleet)]) == 0
    assert "lists 1 certificate" in capsys.readouterr().out
    with pytest.raises(FleetError, match="no fleet CA"):
        fl.Fleet(tmp_path / "none").load_ca()


def test_serve_over_mutual_tls(world: World, tmp_path: Path) -> None:
    files = world.server.files
    config = tmp_path / "serve.toml"
    config.write_text(f"""
[mesh]
listen = "127.0.0.1:0"
models = ["digits-heavy-int8-onnx"]
tls_cert = "{files.cert}"
tls_key = "{files.key}"
tls_ca = "{files.ca}"
tls_crl = "{files.crl}"
""")

    good_ctx = fl.client_context(world.client.files)
    revoked_ctx = fl.client_context(world.revoked.files)

    async def go(url: str) -> None:
        port = url.rsplit(":", 1)[1]
        ok = OipClient(f"https://localhost:{port}", ssl=good_ctx)
        async with ok:
            assert await ok.ready()
            meta = await ok.model_metadata("digits-heavy-int8-onnx")
            assert meta["outputs"][0]["name"] == "probs"
        bad = OipClient(f"https://localhost:{port}", ssl=revoked_ctx)
        async with bad:
            with pytest.raises(PeerTlsError):
                await bad.ready()

    with serving(config) as (url, _proc):
        assert url.startswith("https://")
        asyncio.run(go(url))


def test_plaintext_needs_saying_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[mesh]\nlisten = "127.0.0.1:0"\n')
    assert main(["serve", str(config)]) == 2
    assert "insecure_plaintext" in capsys.readouterr().err


def test_a_p256_fleet_works_too(tmp_path: Path) -> None:
    fleet = fl.init_fleet(tmp_path / "fleet", key_type="p256")
    key_types = []
    for name in ("server", "laptop"):
        key, csr = tmp_path / f"{name}.key", tmp_path / f"{name}.csr"
        fl.make_csr(key, csr, name, hosts=["localhost"], key_type="p256")
        key_types.append(key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY"))
        fl.enroll(fleet, name, csr)
    files = {n: fl.TlsFiles(cert=fleet.node_cert_path(n), key=tmp_path / f"{n}.key",
                            ca=fleet.ca_cert_path, crl=fleet.crl_path)
             for n in ("server", "laptop")}
    y = _call(Node(files["server"]), Node(files["laptop"]))
    assert y.shape == (1, 4) and all(key_types)
