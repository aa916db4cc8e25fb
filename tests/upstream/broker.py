"""A real mosquitto for the upstream tests, and a separate paho subscriber.

:class:`Mosquitto` writes a config (password file made with ``mosquitto_passwd``, an
ACL, TLS and mutual-TLS listeners with a CA made here with ``cryptography``), starts the
broker on free loopback ports and can stop and restart it on the same ports.
:class:`Subscriber` records everything it receives. Both are blocking: call them from
the test thread or through ``asyncio.to_thread``, never on the loop.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Users of the test broker: name -> password.
USERS = {"node": "node-secret", "limited": "limited-secret", "watcher": "watcher-secret"}

ACL = """\
user node
topic readwrite edge/#
topic readwrite homeassistant/#

user limited
topic write edge/+/status
topic write edge/+/summary/#

user watcher
topic read #
topic readwrite homeassistant/status
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("edge test CA"))
          .issuer_name(name("edge test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": folder / "ca.crt"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(cn: str, usage: Any, san: list[Any] | None) -> tuple[Path, Path]:
        k = key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 ca_key.public_key()), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        crt, kp = folder / f"{cn}.crt", folder / f"{cn}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(k, kp)
        return crt, kp

    out["server_cert"], out["server_key"] = leaf(
        "server", ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    out["client_cert"], out["client_key"] = leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH,
                                                 None)
    return out


class Mosquitto:
    """A mosquitto process on loopback: ``port`` (plain), ``tls_port``, ``mtls_port``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port, self.mtls_port = free_port(), free_port(), free_port()
        self.pki = make_pki(folder)
        passwd = folder / "passwd"
        for i, (user, pw) in enumerate(USERS.items()):
            args = ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd),
                    user, pw]
            subprocess.run(args, check=True, capture_output=True, timeout=10)
        (folder / "acl").write_text(ACL)
        tls = (f"cafile {self.pki['ca']}\ncertfile {self.pki['server_cert']}\n"
               f"keyfile {self.pki['server_key']}\n")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            # Persistence keeps the subscriber's session (and its queued messages) across
            # a broker restart, as a real deployment would.
            f"per_listener_settings false\nallow_anonymous false\npersistence true\n"
            f"persistence_location {folder}/\nmax_queued_messages 1000000\n"
            f"max_inflight_messages 20\n"
            f"password_file {passwd}\nacl_file {folder / 'acl'}\n"
            f"user {getpass.getuser()}\nlog_dest file {folder / 'mosquitto.log'}\n"
            f"log_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\n{tls}"
            f"listener {self.mtls_port} 127.0.0.1\n{tls}require_certificate true\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"mosquitto exited: {err}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError("mosquitto did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log(self) -> str:
        p = self.folder / "mosquitto.log"
        return p.read_text() if p.exists() else ""


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A separate paho client (user ``watcher``) recording what it receives."""

    def __init__(self, broker: Mosquitto, topics: tuple[str, ...] = ("#",)) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []  # appended by paho's thread; list ops are atomic
        self._subscribed = threading.Event()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{os.getpid()}"
                                  f"-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.username_pw_set("watcher", USERS["watcher"])
        self.client.on_message = lambda c, u, m: self.messages.append(
            Received(m.topic, bytes(m.payload), bool(m.retain)))
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(t, 1) for t in topics])
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # messages wait for us while we reconnect
        self.client.connect("127.0.0.1", broker.port, keepalive=10, clean_start=False,
                            properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError("subscriber did not subscribe")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def ids(self, prefix: str = "edge/") -> list[str]:
        """Message ids received under ``prefix``, in arrival order (with duplicates)."""
        out = []
        for m in list(self.messages):
            if m.topic.startswith(prefix) and "/snapshot/" not in m.topic:
                body = m.json()
                if body.get("seq"):
                    out.append(body["id"])
        return out
