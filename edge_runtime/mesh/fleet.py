"""The fleet's certificate authority and the mutual-TLS contexts of the mesh.

A fleet folder (made by ``edge-runtime fleet init``, kept on the operator's machine):

- ``ca.key`` (0600): the CA's private key; never copied to a node;
- ``ca.pem``: the CA certificate, copied to every node;
- ``crl.pem``: the CA-signed revocation list, copied to every node (re-copy after each
  ``fleet revoke``: a running node picks it up within a second or two, see
  :mod:`edge_runtime.mesh.tls_reload`; it is valid for :data:`CRL_VALID_DAYS`,
  ``fleet crl`` re-signs it);
- ``nodes.json``: node name -> certificate serial and whether it is revoked;
- ``nodes/NODE.pem``: each issued node certificate.

A node makes its own key and a certificate signing request (``fleet csr``; the key is
written 0600 and never leaves the node), the operator issues the certificate from the
CSR (``fleet enroll NODE --csr FILE``). Keys are Ed25519 by default (OpenSSL 3 does TLS
1.3 client authentication with Ed25519, checked by the tests); ``p256`` is there for
peers whose TLS stack lacks Ed25519.

:func:`server_context` and :func:`client_context` build ``ssl.SSLContext`` s: TLS 1.3
only, a certificate required from the other side, verified against the fleet CA, the
leaf checked against the CRL (``VERIFY_CRL_CHECK_LEAF``: a node without a current CRL
refuses every peer, which is the safe way to fail); :func:`load_into` configures a
context made elsewhere the same way (the reloading contexts). All functions here block (files,
key generation): call them in an executor from async code.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_runtime.errors import FleetError
from edge_runtime.files import write_atomic

KeyType = Literal["ed25519", "p256"]
_Ctx = TypeVar("_Ctx", bound=ssl.SSLContext)
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

CA_VALID_DAYS = 3650
NODE_VALID_DAYS = 397
CRL_VALID_DAYS = 365
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_node(name: str) -> str:
    if not _NODE_NAME.match(name):
        raise FleetError(f"node name {name!r} is not usable",
                         hint="use letters, digits, '.', '_' and '-' (at most 63)")
    return name


def generate_key(key_type: KeyType = "ed25519") -> PrivateKey:
    """A new private key of ``key_type``."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise FleetError(f"unknown key type {key_type!r}", hint="use ed25519 or p256")


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` created 0600 (never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(obj: x509.Certificate | x509.CertificateRevocationList
         | x509.CertificateSigningRequest) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Fleet:
    """A fleet folder (see the module docstring)."""

    folder: Path

    @property
    def ca_key_path(self) -> Path:
        return self.folder / "ca.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def crl_path(self) -> Path:
        return self.folder / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.folder / "nodes.json"

    def node_cert_path(self, node: str) -> Path:
        return self.folder / "nodes" / f"{node}.pem"

    def load_ca(self) -> tuple[PrivateKey, x509.Certificate]:
        """The CA's key and certificate; FleetError when the folder holds none."""
        try:
            key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        except FileNotFoundError as exc:
            raise FleetError(f"{self.folder} holds no fleet CA ({exc.filename} is missing)",
                             hint="run 'edge-runtime fleet init' first, or pass --fleet "
                                  "with the folder it made") from exc
        except ValueError as exc:
            raise FleetError(f"{self.folder}: the CA files cannot be read: {exc}") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise FleetError(f"{self.ca_key_path}: not an Ed25519 or P-256 key")
        return key, cert

    def index(self) -> dict[str, dict[str, list[str]]]:
        """Node -> ``{"serials": [hex...], "revoked": [hex...]}``."""
        try:
            data = json.loads(self.index_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise FleetError(f"{self.index_path} is not valid JSON: {exc}",
                             hint="restore it from a backup of the fleet folder") from exc
        ok = isinstance(data, dict) and all(
            isinstance(e, dict) and all(isinstance(e.get(k), list) and all(
                isinstance(s, str) for s in e[k]) for k in ("serials", "revoked"))
            for e in data.values())
        if not ok:
            raise FleetError(f"{self.index_path} is not a fleet index",
                             hint="restore it from a backup of the fleet folder")
        return data  # type: ignore[no-any-return]

    def _save_index(self, data: dict[str, dict[str, list[str]]]) -> None:
        _write_public(self.index_path, json.dumps(data, indent=2, sort_keys=True).encode())


def init_fleet(folder: Path, *, name: str = "edge-runtime fleet",
               key_type: KeyType = "ed25519", valid_days: int = CA_VALID_DAYS) -> Fleet:
    """Create the CA in ``folder`` (refused if one is there) and an empty CRL."""
    fleet = Fleet(folder)
    if fleet.ca_key_path.exists():
        raise FleetError(f"{folder} already holds a fleet CA",
                         hint="use another folder; a new CA invalidates every node's "
                              "certificate")
    key = generate_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, _hash_for(key)))
    write_private(fleet.ca_key_path, _key_pem(key))
    _write_public(fleet.ca_cert_path, _pem(cert))
    fleet._save_index({})
    write_crl(fleet)
    return fleet


def make_csr(key_path: Path, csr_path: Path, node: str, *, hosts: list[str] | None = None,
             key_type: KeyType = "ed25519") -> None:
    """On the node: a new key (0600 at ``key_path``; refused if one exists) and its CSR
    for ``node``, naming ``hosts`` (names or IPs peers dial) as subject alternative
    names (default: the node name and ``NODE.local``)."""
    _check_node(node)
    if key_path.exists():
        raise FleetError(f"{key_path} exists; a new key would orphan its certificate",
                         hint="remove it first if you mean to replace this node's key")
    key = generate_key(key_type)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
           .add_extension(x509.SubjectAlternativeName(_san(hosts or [node, f"{node}.local"])),
                          critical=False)
           .sign(key, _hash_for(key)))
    write_private(key_path, _key_pem(key))
    _write_public(csr_path, _pem(csr))


def _san(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_certificate(ca_key: PrivateKey, ca_cert: x509.Certificate,
                      csr: x509.CertificateSigningRequest, *, not_before: dt.datetime,
                      not_after: dt.datetime) -> x509.Certificate:
    """A node certificate for ``csr``, usable as TLS server and client (both directions
    of the mesh), with the CSR's subject alternative names."""
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    return (x509.CertificateBuilder().subject_name(csr.subject)
            .issuer_name(ca_cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(sans, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, _hash_for(ca_key)))


def enroll(fleet: Fleet, node: str, csr_path: Path, *, valid_days: int = NODE_VALID_DAYS
           ) -> Path:
    """Issue ``node``'s certificate from its CSR; returns the certificate's path."""
    _check_node(node)
    ca_key, ca_cert = fleet.load_ca()
    try:
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    except FileNotFoundError as exc:
        raise FleetError(f"CSR {csr_path} does not exist",
                         hint="make it on the node with 'edge-runtime fleet csr'") from exc
    except ValueError as exc:
        raise FleetError(f"{csr_path} is not a PEM certificate signing request",
                         hint="make it on the node with 'edge-runtime fleet csr'") from exc
    try:
        signed = csr.is_signature_valid
    except InvalidSignature:
        signed = False
    if not signed:
        raise FleetError(f"{csr_path}: the CSR's signature does not verify",
                         hint="make it again on the node with 'edge-runtime fleet csr'")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != node:
        got = cns[0].value if cns else None
        raise FleetError(f"{csr_path} is for node {got!r}, not {node!r}",
                         hint="enroll it under the name it was made for")
    index = fleet.index()
    now = _now()
    cert = issue_certificate(ca_key, ca_cert, csr, not_before=now - dt.timedelta(minutes=5),
                             not_after=now + dt.timedelta(days=valid_days))
    path = fleet.node_cert_path(node)
    _write_public(path, _pem(cert))
    entry = index.setdefault(node, {"serials": [], "revoked": []})
    entry["serials"].append(format(cert.serial_number, "x"))
    fleet._save_index(index)
    return path


def revoke(fleet: Fleet, node: str) -> int:
    """Revoke every certificate issued to ``node`` and re-sign the CRL; returns how many
    serials the CRL now lists."""
    index = fleet.index()
    entry = index.get(node)
    if entry is None:
        raise FleetError(f"no node {node!r} was enrolled in {fleet.folder}",
                         hint=f"known: {', '.join(sorted(index)) or 'none'}")
    entry["revoked"] = list(entry["serials"])
    fleet._save_index(index)
    return write_crl(fleet)


def write_crl(fleet: Fleet, *, valid_days: int = CRL_VALID_DAYS) -> int:
    """Sign and write ``crl.pem`` listing every revoked serial; returns their count."""
    ca_key, ca_cert = fleet.load_ca()
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=valid_days)))
    count = 0
    for entry in fleet.index().values():
        for serial in entry["revoked"]:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(str(serial), 16))
                .revocation_date(now).build())
            count += 1
    crl = builder.sign(ca_key, _hash_for(ca_key))
    _write_public(fleet.crl_path, _pem(crl))
    return count


# --- TLS contexts ---------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """The four files a node needs for the mesh's mutual TLS."""

    cert: Path
    key: Path
    ca: Path
    crl: Path


def _context(purpose: int, files: TlsFiles) -> ssl.SSLContext:
    return load_into(ssl.SSLContext(purpose), files)


def load_into(ctx: _Ctx, files: TlsFiles) -> _Ctx:
    """Configure the new context ``ctx`` (either purpose) for the mesh: TLS 1.3 only,
    ``files``' certificate and key, the fleet CA and CRL, a certificate required from
    the other side, the leaf checked against the CRL. Returns ``ctx``."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    for what, path in (("certificate", files.cert), ("key", files.key),
                       ("fleet CA", files.ca), ("CRL", files.crl)):
        if not path.is_file():
            raise FleetError(f"the mesh's TLS {what} {path} does not exist",
                             hint="see docs/mesh.md: 'edge-runtime fleet csr' on the node, "
                                  "'fleet enroll' on the operator's machine, then copy "
                                  "ca.pem, crl.pem and the certificate to the node")
    try:
        ctx.load_cert_chain(files.cert, files.key)
        ctx.load_verify_locations(cafile=str(files.ca))
        ctx.load_verify_locations(cafile=str(files.crl))
    except (ssl.SSLError, ValueError) as exc:
        raise FleetError(f"cannot load the mesh's TLS files ({files.cert}, {files.key}, "
                         f"{files.ca}, {files.crl}): {exc}",
                         hint="give PEM files made by 'edge-runtime fleet'; the key must be "
                              "the one the certificate was issued for") from exc
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    return ctx


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The serving side: TLS 1.3, a fleet client certificate required, CRL checked."""
    return _context(ssl.PROTOCOL_TLS_SERVER, files)


def client_context(files: TlsFiles, *, check_hostname: bool = True) -> ssl.SSLContext:
    """The calling side: TLS 1.3, presents this node's certificate, verifies the peer's
    against the fleet CA and CRL, and (by default) its name against the URL's host."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, files)
    ctx.check_hostname = check_hostname
    return ctx
