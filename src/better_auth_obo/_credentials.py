"""The app's client credentials: a secret, or a certificate that signs client assertions.

Each credential gives the ``ClientAuthenticator`` the exchange client uses, through
``credential.authenticator(client_id, token_endpoint)``; several of them, labelled, can
be passed to ``EntraClient(authenticators=...)`` so a rotation never stops the service.
``credential_expiry_warnings`` says, ahead of time, which of them is about to expire.

Certificate assertions follow Microsoft's "Microsoft identity platform application
authentication certificate credentials" (certificate-credentials): header ``alg``,
``typ=JWT``, ``x5t#S256`` (PS256) or the legacy SHA-1 ``x5t`` (RS256), optional ``x5c``;
claims ``aud`` = token endpoint, ``iss`` = ``sub`` = client id, ``jti``, ``iat``, ``nbf``,
``exp`` at most 10 minutes on. Key material never reaches a repr, a message or a log.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeGuard

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12

from ._entra_auth import (
    ClientAuthenticator,
    client_assertion_authenticator,
    client_secret_authenticator,
    require_text,
)
from ._secretless import FederatedAssertion, HttpSource, ManagedIdentityAssertion, WatchedFile

__all__ = [
    "CREDENTIAL_TYPES",
    "CertificateFile",
    "ClientCertificate",
    "ClientSecret",
    "Credential",
    "FederatedAssertion",
    "ManagedIdentityAssertion",
    "credential_expiry_warnings",
    "is_credential",
    "labelled_credentials",
]

#: Lifetime of a signed client assertion: the doc recommends at most 10 minutes.
ASSERTION_LIFETIME = 600


@dataclass(frozen=True, slots=True, repr=False)
class ClientSecret:
    """A client secret of the app registration; its repr never shows it.

    Example::

        secret = ClientSecret(secret_value, expires_at=datetime(2026, 6, 1, tzinfo=UTC))
        auth = secret.authenticator(client_id, token_endpoint)

    ``method``: ``post`` sends it in the body (as MSAL does), ``basic`` as HTTP Basic.
    ``expires_at`` (the expiry shown in the portal, timezone-aware) lets
    ``credential_expiry_warnings`` warn ahead of it.
    """

    secret: str = field(repr=False)
    _: KW_ONLY
    method: Literal["post", "basic"] = "post"
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        require_text("secret", self.secret)
        if self.method not in ("post", "basic"):
            raise ValueError(f"method must be 'post' or 'basic', not {self.method!r}")
        _check_aware("expires_at", self.expires_at)

    def __repr__(self) -> str:
        return f"ClientSecret('********', method={self.method!r}, expires_at={self.expires_at!r})"

    def authenticator(
        self, client_id: str, token_endpoint: str | None = None, *, http: HttpSource | None = None
    ) -> ClientAuthenticator:
        """Adds the secret to each token request (``token_endpoint``, ``http``: not needed)."""
        return client_secret_authenticator(client_id, self.secret, method=self.method)


class ClientCertificate:
    """A certificate registered on the app, with its private key: signs client assertions.

    Example::

        certificate = ClientCertificate(
            private_key_pem=Path("app.key").read_bytes(),
            certificate_pem=Path("app.crt").read_bytes(),
        )
        auth = certificate.authenticator(client_id, token_endpoint)

    ``algorithm``: ``PS256`` with the SHA-256 thumbprint (``x5t#S256``, what Microsoft
    documents today) or ``RS256`` with the SHA-1 one (``x5t``, older clients).
    ``send_certificate_chain`` adds ``x5c`` (every certificate of ``certificate_pem``,
    leaf first), needed for subject name / issuer ("SNI") authentication. The key must be
    RSA and must belong to the first certificate. Thumbprints are upper-case hex, as the
    portal shows them. ``from_pfx`` takes a PKCS#12 (PFX) file's bytes; ``from_path`` a
    PEM or PFX file, re-read on the next use after it changes (rotation without restart).
    """

    __slots__ = (
        "_header",
        "_key",
        "algorithm",
        "not_after",
        "not_before",
        "send_certificate_chain",
        "subject",
        "thumbprint_sha1",
        "thumbprint_sha256",
    )

    def __init__(
        self,
        *,
        private_key_pem: str | bytes,
        certificate_pem: str | bytes,
        password: bytes | None = None,
        algorithm: Literal["PS256", "RS256"] = "PS256",
        send_certificate_chain: bool = False,
    ) -> None:
        if password is not None and not isinstance(password, bytes):
            raise TypeError("password must be bytes or None")
        self._setup(
            _load_key(private_key_pem, password),
            _load_chain(certificate_pem),
            algorithm,
            send_certificate_chain,
        )

    @classmethod
    def from_pfx(
        cls,
        data: bytes,
        password: bytes | str | None = None,
        *,
        algorithm: Literal["PS256", "RS256"] = "PS256",
        send_certificate_chain: bool = False,
    ) -> ClientCertificate:
        """The key and certificate of a PKCS#12 (PFX / .p12) file's bytes, e.g. the one
        Key Vault or the portal exports. Example::

            ClientCertificate.from_pfx(Path("app.pfx").read_bytes(), password=os.environ["P"])
        """
        if not isinstance(data, bytes):
            raise TypeError(f"data must be the PFX file's bytes, not {type(data).__name__}")
        key, chain = _load_pfx(data, _password_bytes(password))
        certificate = cls.__new__(cls)
        certificate._setup(key, chain, algorithm, send_certificate_chain)
        return certificate

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        password: bytes | str | None = None,
        *,
        algorithm: Literal["PS256", "RS256"] = "PS256",
        send_certificate_chain: bool = False,
    ) -> CertificateFile:
        """A PEM (key and certificate in one file) or PFX file, read now and re-read on the
        next use after it changes: write the renewed certificate over it, no restart.

        Example::

            ClientCertificate.from_path("/mnt/secrets/app.pem")
        """
        return CertificateFile(
            path,
            password=password,
            algorithm=algorithm,
            send_certificate_chain=send_certificate_chain,
        )

    def _setup(
        self,
        key: RSAPrivateKey,
        chain: list[x509.Certificate],
        algorithm: Literal["PS256", "RS256"],
        send_certificate_chain: bool,
    ) -> None:
        if algorithm not in ("PS256", "RS256"):
            raise ValueError(f"algorithm must be 'PS256' or 'RS256', not {algorithm!r}")
        leaf = chain[0]
        if _spki(leaf.public_key()) != _spki(key.public_key()):
            raise ValueError(
                "the private key does not belong to the certificate (the first one in "
                "certificate_pem): give the key the certificate was issued for"
            )
        der = leaf.public_bytes(serialization.Encoding.DER)
        # SHA-1 here is an identifier Entra looks the certificate up by (x5t), not a signature.
        sha1 = _digest(der, hashes.SHA1())  # noqa: S303
        sha256 = _digest(der, hashes.SHA256())
        self._key = key
        self.algorithm = algorithm
        self.send_certificate_chain = bool(send_certificate_chain)
        self.thumbprint_sha1 = sha1.hex().upper()
        self.thumbprint_sha256 = sha256.hex().upper()
        self.not_before: datetime = leaf.not_valid_before_utc
        self.not_after: datetime = leaf.not_valid_after_utc
        self.subject = leaf.subject.rfc4514_string()
        # RFC 7515 §4.1.7-4.1.8: base64url thumbprints; §4.1.6: x5c is standard base64 DER.
        header: dict[str, object] = (
            {"x5t#S256": _b64url(sha256)} if algorithm == "PS256" else {"x5t": _b64url(sha1)}
        )
        if self.send_certificate_chain:
            header["x5c"] = [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
                for c in chain
            ]
        self._header = header

    def __repr__(self) -> str:
        return (
            f"ClientCertificate(thumbprint_sha1={self.thumbprint_sha1!r}, "
            f"algorithm={self.algorithm!r}, not_after={self.not_after.isoformat()!r})"
        )

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_header"):
            raise AttributeError(f"ClientCertificate is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    def sign_assertion(self, client_id: str, token_endpoint: str, *, now: float) -> str:
        """A fresh client assertion JWT for one request to ``token_endpoint``.

        Example::

            jwt = certificate.sign_assertion(client_id, token_endpoint, now=time.time())
        """
        require_text("client_id", client_id)
        require_text("token_endpoint", token_endpoint)
        issued = int(now)
        claims = {
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        # PyJWT sets "alg" and "typ": "JWT" itself; the thumbprint (and x5c) come from here.
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=self._header)

    def authenticator(
        self,
        client_id: str,
        token_endpoint: str,
        *,
        clock: Callable[[], float] = time.time,
        http: HttpSource | None = None,
    ) -> ClientAuthenticator:
        """Signs a new assertion for every token request (``aud`` = ``token_endpoint``)."""
        return _signing_authenticator(self.sign_assertion, client_id, token_endpoint, clock)


class CertificateFile:
    """``ClientCertificate.from_path``: a PEM or PFX file followed across rotations.

    Each use reads the file and loads it again when its content changed; a file
    that cannot be read or loaded keeps the last good certificate and logs a warning (the
    path and what failed, never key material). ``current`` is the certificate in use; its
    thumbprints, expiry and subject are shown here too.
    """

    __slots__ = ("_file",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        password: bytes | str | None = None,
        algorithm: Literal["PS256", "RS256"] = "PS256",
        send_certificate_chain: bool = False,
    ) -> None:
        secret = _password_bytes(password)
        if algorithm not in ("PS256", "RS256"):
            raise ValueError(f"algorithm must be 'PS256' or 'RS256', not {algorithm!r}")

        def load(data: bytes) -> ClientCertificate:
            return _certificate_from_file(data, secret, algorithm, send_certificate_chain)

        self._file = WatchedFile(path, load, "certificate file")
        self._file.read()  # a file that cannot be used fails now, at start-up

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def current(self) -> ClientCertificate:
        """The certificate in the file now (re-read if the file changed)."""
        return self._file.read()

    @property
    def thumbprint_sha1(self) -> str:
        return self.current.thumbprint_sha1

    @property
    def thumbprint_sha256(self) -> str:
        return self.current.thumbprint_sha256

    @property
    def not_after(self) -> datetime:
        return self.current.not_after

    @property
    def subject(self) -> str:
        return self.current.subject

    def __repr__(self) -> str:
        current = self.current
        return (
            f"ClientCertificate.from_path({self.path!r}, thumbprint_sha1="
            f"{current.thumbprint_sha1!r}, not_after={current.not_after.isoformat()!r})"
        )

    def sign_assertion(self, client_id: str, token_endpoint: str, *, now: float) -> str:
        """A client assertion signed by the file's current certificate."""
        return self.current.sign_assertion(client_id, token_endpoint, now=now)

    def authenticator(
        self,
        client_id: str,
        token_endpoint: str,
        *,
        clock: Callable[[], float] = time.time,
        http: HttpSource | None = None,
    ) -> ClientAuthenticator:
        """Signs each request with the certificate in the file at that moment."""
        return _signing_authenticator(self.sign_assertion, client_id, token_endpoint, clock)


def _signing_authenticator(
    sign_assertion: Callable[..., str],
    client_id: str,
    token_endpoint: str,
    clock: Callable[[], float],
) -> ClientAuthenticator:
    require_text("client_id", client_id)
    require_text("token_endpoint", token_endpoint)

    async def sign() -> str:
        # An RSA signature costs about a millisecond of CPU (and a rotated file's loading
        # more): off the event loop, so a cold stampede does not stall the app.
        return await asyncio.to_thread(sign_assertion, client_id, token_endpoint, now=clock())

    return client_assertion_authenticator(client_id, sign)


#: Every kind of client credential.
Credential = (
    ClientSecret
    | ClientCertificate
    | CertificateFile
    | FederatedAssertion
    | ManagedIdentityAssertion
)
#: What ``credentials=[...]`` accepts; a new credential type joins both this tuple and
#: ``Credential``, and has ``authenticator(client_id, endpoint, *, http=None)``.
CREDENTIAL_TYPES: tuple[type, ...] = (
    ClientSecret,
    ClientCertificate,
    CertificateFile,
    FederatedAssertion,
    ManagedIdentityAssertion,
)


_KINDS = "ClientSecret, ClientCertificate, FederatedAssertion, ManagedIdentityAssertion"


def is_credential(value: object) -> TypeGuard[Credential]:
    return isinstance(value, CREDENTIAL_TYPES)


def credential_expiry_warnings(
    credentials: Iterable[Credential | tuple[str, Credential]],
    *,
    now: datetime,
    within_days: float = 30,
) -> list[str]:
    """One message per credential expired or expiring within ``within_days`` of ``now``.

    Certificates always know their expiry; a secret only with ``expires_at``. Credentials
    may be labelled ``(label, credential)`` as for ``EntraClient(authenticators=...)``.

    Example::

        for message in credential_expiry_warnings(credentials, now=datetime.now(UTC)):
            warnings.warn(message, OBOConfigurationWarning, stacklevel=2)
    """
    if now is None:
        raise TypeError("now must be a timezone-aware datetime")
    _check_aware("now", now)
    horizon = now + timedelta(days=within_days)
    messages: list[str] = []
    for position, item in enumerate(credentials, start=1):
        label, credential = item if isinstance(item, tuple) else (None, item)
        if isinstance(credential, (ClientCertificate, CertificateFile)):
            expiry, fix, refused = credential.not_after, _CERTIFICATE_FIX, "AADSTS700027"
            who = f"Certificate {label!r}" if label else "Certificate"
            name = f"{who} (SHA-1 thumbprint {credential.thumbprint_sha1}, {credential.subject})"
        elif isinstance(credential, ClientSecret):
            if credential.expires_at is None:
                continue
            expiry, fix, refused = credential.expires_at, _SECRET_FIX, "AADSTS7000222"
            name = f"Client secret {label!r}" if label else f"Client secret #{position}"
        elif isinstance(credential, (FederatedAssertion, ManagedIdentityAssertion)):
            continue  # short-lived tokens, renewed by their source: no date to warn about
        else:
            raise TypeError(f"not a client credential: {type(credential).__name__}")
        when = f"{expiry.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
        if expiry <= now:
            messages.append(f"{name} expired on {when}: Entra ID refuses it ({refused}). {fix}")
        elif expiry <= horizon:
            days = (expiry - now).days
            messages.append(f"{name} expires on {when} (in {days} days). {fix}")
    return messages


_CERTIFICATE_FIX = (
    "Upload a new certificate to the app registration (Certificates & secrets), add it "
    "beside this one in the credentials, then remove the old one once Entra accepts the new."
)
_SECRET_FIX = (
    "Create a new client secret in the app registration (Certificates & secrets), add it "
    "beside this one in the credentials, then delete the old one."
)


def _load_key(data: str | bytes, password: bytes | None) -> RSAPrivateKey:
    pem = _pem_bytes("private_key_pem", data)
    try:
        key = serialization.load_pem_private_key(pem, password)
    except TypeError:
        # cryptography: a password for a clear key, or none for an encrypted one.
        what = "is encrypted: give its password" if password is None else "is not encrypted"
        raise TypeError(f"private_key_pem {what}") from None
    except ValueError:
        # The message names the problem only: the PEM itself is key material.
        raise ValueError(
            "private_key_pem could not be loaded: it must be a PEM private key "
            "(BEGIN PRIVATE KEY / BEGIN RSA PRIVATE KEY), and the password right"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(
            f"the private key is {type(key).__name__.removeprefix('_')}, not RSA: "
            "Entra ID certificate credentials sign with RSA (PS256 or RS256)"
        )
    return key


def _password_bytes(password: bytes | str | None) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    if isinstance(password, str):
        return password.encode("utf-8")
    raise TypeError(f"password must be bytes, str or None, not {type(password).__name__}")


def _load_pfx(data: bytes, password: bytes | None) -> tuple[RSAPrivateKey, list[x509.Certificate]]:
    try:
        key, leaf, others = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        # cryptography's message says "invalid password or PKCS12 data": never the data.
        raise ValueError(
            "the PFX could not be loaded: it must be a PKCS#12 file, and the password right"
        ) from None
    if key is None or leaf is None:
        raise ValueError("the PFX holds no private key and certificate pair")
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(
            f"the PFX's key is {type(key).__name__.removeprefix('_')}, not RSA: Entra ID "
            "certificate credentials sign with RSA (PS256 or RS256)"
        )
    return key, [leaf, *others]


def _certificate_from_file(
    data: bytes, password: bytes | None, algorithm: Literal["PS256", "RS256"], send_chain: bool
) -> ClientCertificate:
    """A PEM (``-----BEGIN``: key and certificates in one file) or else a PFX file's bytes."""
    if b"-----BEGIN" in data:
        key, chain = _load_key(data, password), _load_chain(data)
    else:
        key, chain = _load_pfx(data, password)
    certificate = ClientCertificate.__new__(ClientCertificate)
    certificate._setup(key, chain, algorithm, send_chain)
    return certificate


def _load_chain(data: str | bytes) -> list[x509.Certificate]:
    pem = _pem_bytes("certificate_pem", data)
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError(
            "certificate_pem could not be loaded: it must hold PEM certificates "
            "(BEGIN CERTIFICATE), the app's own first"
        ) from None
    return chain


def _pem_bytes(name: str, data: object) -> bytes:
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    if not isinstance(data, bytes):
        raise TypeError(f"{name} must be PEM text (str or bytes), not {type(data).__name__}")
    if not data.strip():
        raise ValueError(f"{name} is empty")
    return data


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _digest(data: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check_aware(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, e.g. datetime(..., tzinfo=UTC)")


def labelled_credentials(
    credentials: Sequence[Credential | tuple[str, Credential]] | None,
) -> list[tuple[str, Credential]]:
    """Credentials as ``(label, credential)``; a bare one is labelled by kind and position."""
    if credentials is None:
        return []
    if not isinstance(credentials, (list, tuple)):
        raise TypeError(f"credentials must be a list of {_KINDS}")
    labelled: list[tuple[str, Credential]] = []
    for index, item in enumerate(credentials):
        label, credential = item if isinstance(item, tuple) else (None, item)
        if not is_credential(credential):
            raise TypeError(
                f"credentials[{index}] must be one of {_KINDS}, got {type(credential).__name__}"
            )
        labelled.append((label or f"{type(credential).__name__.lower()}-{index}", credential))
    return labelled
