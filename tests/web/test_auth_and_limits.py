"""Safe by default, with real clients: the web server in-process (under the suite's loop
guards) with plain providers, reached by aiohttp's client and raw sockets.

Off loopback it listens on an address of this machine that is not loopback (its own
interface address, or a veth address from 198.18.0.0/15 created for the test and
removed after), over HTTPS with a certificate made here.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_runtime.config import WebConfig
from edge_runtime.errors import WebConfigError
from edge_runtime.web import server as web_server
from edge_runtime.web.auth import SESSION_COOKIE, is_loopback
from edge_runtime.web.server import WebServer

VETH = ("er-web0", "er-web1", "198.18.0.1")


def _status() -> dict[str, Any]:
    return {"node": "n1", "pid": 1, "uptime_s": 1.0, "generation": 1, "reloads": 0,
            "reload_errors": 0, "health": {}, "pipelines": {}, "upstream": None}


@pytest.fixture(scope="module")
def lan_address() -> Iterator[str]:
    """A non-loopback IPv4 address of this machine."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not ipaddress.ip_address(addr).is_loopback:
            yield addr
            return
    a, b, addr = VETH
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{addr}/30", "dev", a], check=True)
        subprocess.run(["ip", "link", "set", a, "up"], check=True)
        yield addr
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


def _certificate(folder: Path, address: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-runtime test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _server(listen: str, tmp_path: Path, reloads: list[int], **paths: Any) -> WebServer:
    return WebServer(WebConfig(enabled=True, listen=listen, actions=True),
                     node="n1", status_provider=_status, frame_provider=lambda _: None,
                     reload=lambda: reloads.append(1), token_path=tmp_path / "web.token",
                     **paths)


def test_off_loopback_without_tls_is_refused_with_one_clear_error(tmp_path: Path,
                                                                  lan_address: str) -> None:
    assert not is_loopback(lan_address)
    with pytest.raises(WebConfigError, match=r"not a loopback address.*HTTPS.*tls_cert"):
        _server(f"{lan_address}:0", tmp_path, [])
    with pytest.raises(WebConfigError):
        _server("0.0.0.0:0", tmp_path, [])


def test_off_loopback_needs_the_token_and_actions_need_same_origin_and_csrf(
        tmp_path: Path, lan_address: str) -> None:
    cert, key = _certificate(tmp_path, lan_address)
    trust = ssl.create_default_context(cafile=str(cert))
    reloads: list[int] = []

    async def main() -> None:
        srv = _server(f"{lan_address}:0", tmp_path, reloads, cert_path=cert, key_path=key)
        await srv.start()
        base = f"https://{lan_address}:{srv.port}"
        token = (await asyncio.to_thread((tmp_path / "web.token").read_text)).strip()
        try:
            async with aiohttp.ClientSession() as anon:
                for path in ("/", "/api/status", "/metrics", "/api/frame/x.jpg"):
                    async with anon.get(base + path, ssl=trust) as r:
                        assert r.status == 401, path
                        assert r.headers["WWW-Authenticate"].startswith("Bearer")
                async with anon.get(base + "/api/status", ssl=trust,
                                    headers={"Authorization": "Bearer wrong-token-123456"}) as r:
                    assert r.status == 401
                async with anon.get(base + "/?token=not-the-token", ssl=trust) as r:
                    assert r.status == 401
                async with anon.get(base + "/metrics", ssl=trust,
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200
                    assert "edge_runtime_info" in await r.text()
            jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address
            async with aiohttp.ClientSession(cookie_jar=jar) as browser:
                async with browser.get(f"{base}/?token={token}", ssl=trust,
                                       allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == "/"
                    morsel = r.cookies[SESSION_COOKIE]
                    assert morsel["httponly"] and morsel["secure"]
                    assert morsel["samesite"] == "Strict"
                async with browser.get(base + "/api/status", ssl=trust) as r:
                    assert r.status == 200
                    csrf = (await r.json())["web"]["csrf"]
                assert csrf
                url = base + "/api/actions/reload"
                refused = [
                    {"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
                    {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site", "Origin": base},
                    {"X-CSRF-Token": csrf},  # neither Origin nor Sec-Fetch-Site
                    {"Origin": base, "Sec-Fetch-Site": "same-origin"},  # no CSRF token
                    {"X-CSRF-Token": "0" * 32, "Origin": base},
                ]
                for headers in refused:
                    async with browser.post(url, ssl=trust, headers=headers) as r:
                        assert r.status == 403, headers
                        assert not (await r.json())["ok"]
                assert reloads == []
                async with browser.post(url, ssl=trust, headers={
                        "X-CSRF-Token": csrf, "Origin": base,
                        "Sec-Fetch-Site": "same-origin"}) as r:
                    assert r.status == 200, await r.text()
                assert reloads == [1]
        finally:
            await srv.close()

    asyncio.run(main())
    assert oct((tmp_path / "web.token").stat().st_mode & 0o777) == "0o600"


def test_bad_requests_cost_nothing_and_crash_nothing(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "HEAD_TIMEOUT_S", 0.5)
    monkeypatch.setattr(web_server, "SWEEP_INTERVAL_S", 0.1)

    async def main() -> None:
        srv = WebServer(WebConfig(enabled=True, listen="127.0.0.1:0"), node="n1",
                        status_provider=_status, frame_provider=lambda _: None)
        await srv.start()
        base = f"http://127.0.0.1:{srv.port}"
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/api/status") as r:
                    assert r.status == 200
                    assert (await r.json())["web"]["actions"] is False
                async with s.post(base + "/api/actions/reload",
                                  headers={"Origin": base}) as r:
                    assert r.status == 404  # read-only: no action routes at all
                async with s.get(base + "/no/such/path") as r:
                    assert r.status == 404
                async with s.get(base + "/static/../auth.py") as r:
                    assert r.status == 404
                async with s.get(base + "/api/status", headers={"Host": "evil.example"}) as r:
                    assert r.status == 421  # DNS rebinding onto loopback gets nothing
                # A slow client: half a request head, then silence.
                reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
                writer.write(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                await writer.drain()
                async with s.get(base + "/api/status") as r:
                    assert r.status == 200  # others are served meanwhile
                assert await asyncio.wait_for(reader.read(), 5.0) == b""  # disconnected
                writer.close()
                assert srv.slow_clients_dropped == 1
                # Huge headers are refused by the parser; the server goes on.
                reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
                writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000
                             + b"\r\n\r\n")
                await writer.drain()
                reply = await asyncio.wait_for(reader.read(200), 5.0)
                assert reply.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), reply
                writer.close()
                big = {"X-Big": "a" * 20_000}
                async with s.post(base + "/api/status", data=b"x" * 200_000,
                                  headers=big) as r:
                    assert r.status in (400, 413, 431)
                async with s.get(base + "/api/status") as r:
                    assert r.status == 200
        finally:
            await srv.close()

    asyncio.run(main())
