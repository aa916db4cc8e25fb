"""The minisign formats (https://jedisct1.github.io/minisign/), with ``cryptography``.

A **public key** file is two lines: ``untrusted comment: ...`` and the base64 of
``b"Ed"`` + key id (8 bytes) + the 32-byte Ed25519 key. A **signature** file
(``FILE.minisig``) is four lines:

1. ``untrusted comment: ...`` (anyone may change it; never trusted);
2. base64 of the algorithm (``b"Ed"``: Ed25519 over the file; ``b"ED"``: over the file's
   BLAKE2b-512 digest, minisign's default) + key id + the 64-byte signature;
3. ``trusted comment: ...``: here ``name=NAME version=N`` (which artefact, which version);
4. base64 of the *global* signature over the signature bytes + the trusted comment,
   so the comment cannot be changed without the secret key.

A **secret key** file is read and written unencrypted only (``minisign -G -W`` makes
one): algorithm, KDF ``b"\\0\\0"`` (none), checksum algorithm ``b"B2"``, salt and limits
(unused), then key id + the 64-byte secret key + a BLAKE2b-256 checksum.
Everything here is pure computation and small file reads (blocking: executor in async
code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_runtime.errors import SignatureError
from edge_runtime.files import write_atomic

_UNTRUSTED = "untrusted comment: "
_TRUSTED = "trusted comment: "
_LEGACY, _PREHASHED = b"Ed", b"ED"


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key and its 8-byte minisign key id."""

    key_id: bytes
    key: Ed25519PublicKey

    @property
    def key_id_hex(self) -> str:
        """The key id as minisign prints it (16 upper-case hex digits, little-endian)."""
        return self.key_id[::-1].hex().upper()

    def to_text(self) -> str:
        """The public key file's text."""
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return (f"{_UNTRUSTED}minisign public key {self.key_id_hex}\n"
                f"{base64.b64encode(_LEGACY + self.key_id + raw).decode()}\n")


@dataclass(frozen=True)
class SecretKey:
    """An Ed25519 secret key and its key id."""

    key_id: bytes
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SecretKey:
        """A new random key pair."""
        return cls(os.urandom(8), Ed25519PrivateKey.generate())

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key_id, self.key.public_key())

    def to_text(self) -> str:
        """The unencrypted secret key file's text (``minisign -S`` reads it)."""
        seed = self.key.private_bytes(serialization.Encoding.Raw,
                                      serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())
        pub = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
        secret = seed + pub
        check = hashlib.blake2b(_LEGACY + self.key_id + secret, digest_size=32).digest()
        blob = (_LEGACY + b"\0\0" + b"B2" + bytes(32) + bytes(16) + self.key_id + secret
                + check)
        return (f"{_UNTRUSTED}minisign encrypted secret key\n"
                f"{base64.b64encode(blob).decode()}\n")


@dataclass(frozen=True)
class Signature:
    """A parsed signature file."""

    algorithm: bytes  # b"Ed" or b"ED"
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes

    def fields(self) -> dict[str, str]:
        """The trusted comment's ``key=value`` words (``name``, ``version``, ...)."""
        out: dict[str, str] = {}
        for word in self.trusted_comment.split():
            key, sep, value = word.partition("=")
            if sep:
                out[key] = value
        return out


def _b64(line: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{what}: not base64") from exc
    if size is not None and len(raw) != size:
        raise SignatureError(f"{what}: {len(raw)} bytes where {size} were expected")
    return raw


def parse_public_key(text: str, where: str = "public key") -> PublicKey:
    """A public key from a key file's text (or the bare base64 line)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(_UNTRUSTED)]
    if len(lines) != 1:
        raise SignatureError(f"{where}: not a minisign public key file",
                             hint="give the .pub file minisign -G or 'edge-runtime "
                             "update --keygen' made")
    raw = _b64(lines[0], where, 42)
    if raw[:2] != _LEGACY:
        raise SignatureError(f"{where}: unknown key algorithm {raw[:2]!r}")
    return PublicKey(raw[2:10], Ed25519PublicKey.from_public_bytes(raw[10:]))


def parse_secret_key(text: str, where: str = "secret key") -> SecretKey:
    """An unencrypted secret key (``minisign -G -W`` or :meth:`SecretKey.to_text`)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(_UNTRUSTED)]
    if len(lines) != 1:
        raise SignatureError(f"{where}: not a minisign secret key file")
    raw = _b64(lines[0], where, 158)
    if raw[:2] != _LEGACY or raw[4:6] != b"B2":
        raise SignatureError(f"{where}: unknown key or checksum algorithm")
    if raw[2:4] != b"\0\0":
        raise SignatureError(f"{where}: the key is encrypted with a password",
                             hint="sign with 'minisign -S', or make a key without a "
                             "password (minisign -G -W) for unattended signing")
    key_id, secret, check = raw[54:62], raw[62:126], raw[126:158]
    # minisign -W leaves the checksum zero (it only checks it after decrypting).
    if any(check) and hashlib.blake2b(_LEGACY + key_id + secret,
                                      digest_size=32).digest() != check:
        raise SignatureError(f"{where}: checksum mismatch (damaged key file)")
    key = Ed25519PrivateKey.from_private_bytes(secret[:32])
    if key.public_key().public_bytes(serialization.Encoding.Raw,
                                     serialization.PublicFormat.Raw) != secret[32:]:
        raise SignatureError(f"{where}: the secret and public halves do not match")
    return SecretKey(key_id, key)


def parse_signature(text: str, where: str = "signature") -> Signature:
    """A signature file's four lines."""
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].startswith(_UNTRUSTED) \
            or not lines[2].startswith(_TRUSTED):
        raise SignatureError(f"{where}: not a minisign signature file",
                             hint="give the .minisig file made by minisign -S or "
                             "'edge-runtime update --sign'")
    raw = _b64(lines[1], where, 74)
    if raw[:2] not in (_LEGACY, _PREHASHED):
        raise SignatureError(f"{where}: unknown signature algorithm {raw[:2]!r}")
    return Signature(raw[:2], raw[2:10], raw[10:], lines[2][len(_TRUSTED):],
                     _b64(lines[3], where, 64))


def _message(algorithm: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=64).digest() if algorithm == _PREHASHED else data


def verify(data: bytes, signature: Signature, key: PublicKey, where: str = "file") -> None:
    """Check ``signature`` (and its trusted comment) over ``data``; SignatureError if bad."""
    if signature.key_id != key.key_id:
        raise SignatureError(f"{where} is signed by key {signature.key_id[::-1].hex().upper()}"
                             f", not by the fleet key {key.key_id_hex}",
                             hint="sign it with the fleet's secret key")
    try:
        key.key.verify(signature.signature, _message(signature.algorithm, data))
    except InvalidSignature as exc:
        raise SignatureError(f"{where}: the signature does not match the file (changed or "
                             "damaged)", hint="download the file and its .minisig again") \
            from exc
    try:
        key.key.verify(signature.global_signature,
                       signature.signature + signature.trusted_comment.encode())
    except InvalidSignature as exc:
        raise SignatureError(f"{where}: the trusted comment was changed after signing",
                             hint="sign the file again") from exc


def sign(data: bytes, key: SecretKey, trusted_comment: str, *, prehash: bool = True,
         untrusted_comment: str = "signature from edge-runtime") -> str:
    """The text of a signature file for ``data`` (minisign's default: prehashed)."""
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise SignatureError("a trusted comment is one line")
    algorithm = _PREHASHED if prehash else _LEGACY
    sig = key.key.sign(_message(algorithm, data))
    global_sig = key.key.sign(sig + trusted_comment.encode())
    return (f"{_UNTRUSTED}{untrusted_comment}\n"
            f"{base64.b64encode(algorithm + key.key_id + sig).decode()}\n"
            f"{_TRUSTED}{trusted_comment}\n{base64.b64encode(global_sig).decode()}\n")


def write_key_pair(secret_path: Path, public_path: Path) -> SecretKey:
    """Make a key pair and write both files (the secret one mode 0600)."""
    key = SecretKey.generate()
    write_atomic(secret_path, key.to_text().encode(), mode=0o600)
    write_atomic(public_path, key.public.to_text().encode(), mode=0o644)
    return key
