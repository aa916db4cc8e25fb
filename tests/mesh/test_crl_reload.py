"""A running node picks up a new CRL: after ``fleet revoke`` and the copy of crl.pem, the
revoked peer is refused within a couple of seconds both ways, on new connections and on
the one it had open, while the others go on; a bad file keeps the list in use and says
so once (a properly signed but expired one refuses everyone, as at start)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge_runtime.config import load_config
from edge_runtime.errors import PeerTlsError
from edge_runtime.mesh import fleet as fl
from edge_runtime.mesh.node import mesh_plan
from edge_runtime.mesh.oip.client import OipClient
from edge_runtime.mesh.tls_reload import FollowingContext, ReloadingTls
from tests.mesh.oip_helpers import identity, node, running_server

X = np.ones((1, 4), np.float32)
#: The longest a change may take to be seen (the default poll is 1 s).
LATENCY_BOUND_S = 3.0
LOGGER = "edge_runtime.mesh.tls_reload"


def _own_crl(files: fl.TlsFiles, path: Path) -> fl.TlsFiles:
    """``files`` with a node-local copy of the CRL, as on a real node."""
    shutil.copyfile(files.crl, path)
    return dataclasses.replace(files, crl=path)


def _copy(src: Path, dst: Path) -> None:
    """The operator's copy: to a temporary name beside it, then renamed over it."""
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


async def _until(probe: Callable[[], Awaitable[bool]], bound_s: float = LATENCY_BOUND_S
                 ) -> float:
    """Seconds until ``probe()`` is true (fails past ``bound_s``)."""
    start = time.monotonic()
    while not await probe():
        if time.monotonic() - start > bound_s:
            pytest.fail(f"not within {bound_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _refused(peer: OipClient) -> bool:
    try:
        await peer.infer("id", {"x": X}, timeout_s=5)
    except PeerTlsError:
        return True
    return False


def test_a_running_server_refuses_a_client_revoked_after_it_started(tmp_path: Path) -> None:
    fleet = fl.init_fleet(tmp_path / "fleet")
    server_files = _own_crl(node(fleet, tmp_path / "n", "server").files,
                            tmp_path / "server-crl.pem")
    good = fl.client_context(node(fleet, tmp_path / "n", "laptop").files)
    stolen = fl.client_context(node(fleet, tmp_path / "n", "stolen").files)
    tls = ReloadingTls(server_files)  # the default poll: once a second

    async def main() -> float:
        async with running_server({"id": identity()}, ssl_context=tls.server) as server:
            url = f"https://localhost:{server.port}"
            async with OipClient(url, ssl=good) as ok, OipClient(url, ssl=stolen) as bad:
                for peer in (ok, bad):
                    assert (await peer.infer("id", {"x": X}, timeout_s=5))["y"].shape == (1, 4)
                assert len(server.connections) == 2  # both kept alive

                await asyncio.to_thread(fl.revoke, fleet, "stolen")
                await asyncio.to_thread(_copy, fleet.crl_path, server_files.crl)

                async def stolen_refused() -> bool:
                    await ok.infer("id", {"x": X}, timeout_s=5)  # never refused
                    return await _refused(bad)

                latency_s = await _until(stolen_refused)
                # Its open connection was closed, and every new one is refused.
                assert server.revoked_connections_closed == 1
                for _ in range(3):
                    assert await _refused(bad)
                    await ok.infer("id", {"x": X}, timeout_s=5)
                assert tls.generation == 1
                return latency_s

    latency_s = asyncio.run(main())
    print(f"server side: refused {latency_s:.2f} s after the CRL was copied")


def test_a_running_client_refuses_a_server_revoked_after_it_started(tmp_path: Path) -> None:
    fleet = fl.init_fleet(tmp_path / "fleet")
    server_ctx = fl.server_context(node(fleet, tmp_path / "n", "garage").files)
    files = _own_crl(node(fleet, tmp_path / "n", "pi").files, tmp_path / "pi-crl.pem")
    config = tmp_path / "pi.toml"
    config.write_text(f"""
[mesh]
tls_cert = "{files.cert}"
tls_key = "{files.key}"
tls_ca = "{files.ca}"
tls_crl = "{files.crl}"
""")
    plan = mesh_plan(load_config(config))  # what the daemon builds
    assert isinstance(plan.client_ssl, FollowingContext) and plan.tls is not None
    assert plan.server_ssl is plan.tls.server

    async def main() -> float:
        async with running_server({"id": identity()}, ssl_context=server_ctx) as server, \
                OipClient(f"https://localhost:{server.port}", ssl=plan.client_ssl) as peer:
            assert (await peer.infer("id", {"x": X}, timeout_s=5))["y"].shape == (1, 4)
            await asyncio.to_thread(fl.revoke, fleet, "garage")
            await asyncio.to_thread(_copy, fleet.crl_path, files.crl)
            latency_s = await _until(lambda: _refused(peer))
            with pytest.raises(PeerTlsError, match="revoked"):
                await peer.infer("id", {"x": X}, timeout_s=5)
            return latency_s

    latency_s = asyncio.run(main())
    print(f"client side: refused {latency_s:.2f} s after the CRL was copied")


def _expired_crl(fleet: fl.Fleet, path: Path) -> None:
    """The fleet's list re-signed by its CA, dated as ``write_crl`` dates it (so not older
    than the one in use), but expired a second ago."""
    ca_key, ca_cert = fleet.load_ca()
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now - dt.timedelta(seconds=1)))
    for entry in fleet.index().values():
        for serial in entry["revoked"]:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                .revocation_date(now).build())
    path.write_bytes(builder.sign(ca_key, None).public_bytes(serialization.Encoding.PEM))


def test_bad_crl_files_keep_the_list_in_use_and_warn_once_each(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fleet = fl.init_fleet(tmp_path / "fleet")
    empty_crl = tmp_path / "empty-crl.pem"
    shutil.copyfile(fleet.crl_path, empty_crl)  # before anyone was revoked
    rogue = fl.init_fleet(tmp_path / "rogue")
    server_files = node(fleet, tmp_path / "n", "server").files
    good = fl.client_context(node(fleet, tmp_path / "n", "laptop").files)
    stolen = fl.client_context(node(fleet, tmp_path / "n", "stolen").files)
    fl.revoke(fleet, "stolen")
    server_files = _own_crl(server_files, tmp_path / "server-crl.pem")
    tls = ReloadingTls(server_files, poll_interval_s=0.1)
    crl = server_files.crl
    good_crl = crl.read_bytes()

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == LOGGER and r.levelno == logging.WARNING]

    async def main() -> None:
        async with running_server({"id": identity()}, ssl_context=tls.server) as server:
            url = f"https://localhost:{server.port}"
            async with OipClient(url, ssl=good) as ok, OipClient(url, ssl=stolen) as bad:
                await ok.infer("id", {"x": X}, timeout_s=5)
                assert await _refused(bad)

                async def one_warning_then_unchanged(write: Callable[[], object], says: str
                                                     ) -> None:
                    before = len(warnings())
                    await asyncio.to_thread(write)

                    async def warned() -> bool:
                        return len(warnings()) > before

                    await _until(warned)
                    await asyncio.sleep(0.5)  # five more looks: no second line
                    assert len(warnings()) == before + 1, warnings()[before:]
                    assert says in warnings()[-1] and str(crl) in warnings()[-1]
                    await ok.infer("id", {"x": X}, timeout_s=5)
                    assert await _refused(bad)
                    assert tls.generation == 0

                # Half a file (a copy still in progress), written in place.
                await one_warning_then_unchanged(
                    lambda: crl.write_bytes(good_crl[:len(good_crl) // 2]),
                    "not a PEM revocation list")
                # Another fleet's CRL.
                await one_warning_then_unchanged(lambda: _copy(rogue.crl_path, crl),
                                                 "not signed by the fleet CA")
                # An old copy, from before 'stolen' was revoked: it would let it back in.
                await one_warning_then_unchanged(lambda: _copy(empty_crl, crl),
                                                 "older than the list in use")
                # Signed, newer, expired: installed, and everyone is refused.
                before = len(warnings())
                await asyncio.to_thread(_expired_crl, fleet, crl)
                await _until(lambda: _refused(ok))
                assert tls.generation == 1
                assert len(warnings()) == before + 1 and "expired" in warnings()[-1]
                # A current list lets the good peer back, not the revoked one.
                await asyncio.to_thread(fl.write_crl, fleet)
                await asyncio.to_thread(_copy, fleet.crl_path, crl)

                async def served() -> bool:
                    return not await _refused(ok)

                await _until(served)
                assert await _refused(bad)
                assert tls.generation == 2

    asyncio.run(main())
