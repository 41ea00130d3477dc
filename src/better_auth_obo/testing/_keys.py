"""RSA signing keys: generation, self-signed certificates, JWKS, rotation.

Entra publishes its keys with ``kid`` = ``x5t`` = base64url(SHA-1 of the certificate's
DER) and an ``x5c`` chain (docs: access-tokens.md, "Validate the signature").
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ._models import Certificate
from ._wire import b64url

__all__ = ["KeySet", "SigningKey", "load_certificate", "make_certificate"]


def _self_signed(key: rsa.RSAPrivateKey, subject: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One of the emulator's token-signing keys."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate_der: bytes = field(repr=False)
    kid: str
    #: Made once: verifying a token must not rebuild the key object each time.
    public_key: rsa.RSAPublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", self.private_key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        key = _new_key()
        der = _self_signed(key, "emulated-login.microsoftonline.com").public_bytes(
            serialization.Encoding.DER
        )
        return cls(key, der, b64url(hashlib.sha1(der).digest()))  # noqa: S324 - x5t is SHA-1

    @classmethod
    def from_pem(cls, private_key_pem: bytes, certificate_pem: bytes) -> SigningKey:
        """A key saved by ``to_pem`` (the standalone server's state): same ``kid``, so
        tokens signed before a restart still verify."""
        # The emulator wrote this key itself: skip the RSA consistency check (~30 ms a key,
        # most of a restart) meant for keys from untrusted sources.
        key = serialization.load_pem_private_key(
            private_key_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a signing key must be an RSA private key")
        der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(
            serialization.Encoding.DER
        )
        return cls(key, der, b64url(hashlib.sha1(der).digest()))  # noqa: S324 - x5t is SHA-1

    def to_pem(self) -> tuple[bytes, bytes]:
        """(private key PKCS#8 PEM, certificate PEM), for ``from_pem``."""
        private = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert = x509.load_der_x509_certificate(self.certificate_der)
        return private, cert.public_bytes(serialization.Encoding.PEM)

    def jwk(self, issuer: str) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes(3, "big")),
            "x5c": [base64.b64encode(self.certificate_der).decode()],
            "issuer": issuer,
        }


class KeySet:
    """The published keys; the newest signs. Thread-safe."""

    def __init__(self, keys: Sequence[SigningKey] = ()) -> None:
        """``keys`` (oldest first; the last signs) are kept keys; none: a new one."""
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = list(keys) or [SigningKey.generate()]
        self._initial = tuple(self._keys)

    @property
    def current(self) -> SigningKey:
        with self._lock:
            return self._keys[-1]

    def rotate(self, *, keep_previous: bool) -> SigningKey:
        key = SigningKey.generate()
        with self._lock:
            self._keys = [*self._keys, key] if keep_previous else [key]
        return key

    def reset(self) -> None:
        with self._lock:
            self._keys = list(self._initial)

    def find(self, kid: str) -> SigningKey | None:
        with self._lock:
            return next((k for k in self._keys if k.kid == kid), None)

    def jwks(self, issuer: str) -> dict[str, Any]:
        with self._lock:
            keys = list(reversed(self._keys))
        return {"keys": [k.jwk(issuer) for k in keys]}

    def sign(self, claims: dict[str, Any], *, extra_headers: dict[str, Any] | None = None) -> str:
        key = self.current
        headers = {"typ": "JWT", "x5t": key.kid, "kid": key.kid, **(extra_headers or {})}
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)


def make_certificate(subject: str) -> tuple[Certificate, Any]:
    """A new client certificate (RSA 2048, self-signed) and its public key."""
    key = _new_key()
    return _record(_self_signed(key, subject), key), key.public_key()


def load_certificate(certificate_pem: str, private_key_pem: str) -> Certificate:
    """A client certificate kept as PEM (the standalone server's state)."""
    key = serialization.load_pem_private_key(
        private_key_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
    )  # written by the emulator (state file): the ~30 ms consistency check buys nothing
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a client certificate's key must be an RSA private key")
    return _record(x509.load_pem_x509_certificate(certificate_pem.encode()), key)


def _record(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> Certificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    sha1, sha256 = hashlib.sha1(der).digest(), hashlib.sha256(der).digest()  # noqa: S324
    return Certificate(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        thumbprint=sha1.hex().upper(),
        thumbprint_sha256=sha256.hex().upper(),
        x5t=b64url(sha1),
        x5t_s256=b64url(sha256),
    )
