"""Client credentials: secrets, certificates signing client assertions, expiry warnings.

Certificates are made here with cryptography; assertions are checked byte for byte and
verified with the certificate's public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from tests.test_entra import ASSERTION, CLIENT_ID, ENDPOINT, NOW, SCOPES, _load, ok

from better_auth_obo._credentials import (
    ClientCertificate,
    ClientSecret,
    credential_expiry_warnings,
)
from better_auth_obo._entra import CLIENT_ASSERTION_TYPE_JWT, EntraClient
from better_auth_obo._errors import EntraError

UTC = timezone.utc
NOW_DT = datetime.fromtimestamp(NOW, UTC)
SECRET = "Zr8Q~another.secret-value_0123456789abcdef"
PASSWORD = b"correct horse battery staple"


@dataclass
class Issued:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key_pem: bytes
    cert_pem: bytes

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def issue(
    name: str = "middle-tier",
    *,
    days: float = 365,
    issuer: Issued | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> Issued:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW_DT - timedelta(days=10))
        .not_valid_after(NOW_DT + timedelta(days=days))
    )
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issued(key, cert, key_pem, cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def app() -> Issued:
    return issue()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def verify(token: str, issued: Issued, algorithm: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        issued.key.public_key(),
        algorithms=[algorithm],
        audience=ENDPOINT,
        issuer=CLIENT_ID,
        options={"require": ["aud", "iss", "sub", "jti", "iat", "nbf", "exp"], "verify_exp": False},
    )
    return claims


def certificate(issued: Issued, **kwargs: Any) -> ClientCertificate:
    return ClientCertificate(
        private_key_pem=issued.key_pem, certificate_pem=issued.cert_pem, **kwargs
    )


# --- certificates ---


def test_ps256_assertion_has_the_sha256_thumbprint(app: Issued) -> None:
    token = certificate(app).sign_assertion(CLIENT_ID, ENDPOINT, now=NOW + 0.7)
    assert header(token) == {
        "alg": "PS256",
        "typ": "JWT",
        "x5t#S256": b64url(hashlib.sha256(app.der).digest()),
    }
    claims = verify(token, app, "PS256")
    jti = claims.pop("jti")
    assert uuid.UUID(jti).version == 4
    assert claims == {
        "aud": ENDPOINT,
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
    }


def test_rs256_assertion_has_the_sha1_thumbprint(app: Issued) -> None:
    token = certificate(app, algorithm="RS256").sign_assertion(CLIENT_ID, ENDPOINT, now=NOW)
    assert header(token) == {
        "alg": "RS256",
        "typ": "JWT",
        "x5t": b64url(hashlib.sha1(app.der).digest()),
    }
    verify(token, app, "RS256")
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(token, app, "PS256")


def test_the_certificate_chain_is_sent_on_request() -> None:
    ca = issue("issuing-ca", days=3650)
    leaf = issue("middle-tier", issuer=ca)
    credential = ClientCertificate(
        private_key_pem=leaf.key_pem,
        certificate_pem=leaf.cert_pem + ca.cert_pem,
        send_certificate_chain=True,
    )
    token = credential.sign_assertion(CLIENT_ID, ENDPOINT, now=NOW)
    assert header(token)["x5c"] == [
        base64.b64encode(leaf.der).decode(),
        base64.b64encode(ca.der).decode(),
    ]
    verify(token, leaf, "PS256")
    assert "x5c" not in header(certificate(leaf).sign_assertion(CLIENT_ID, ENDPOINT, now=NOW))


def test_thumbprints_expiry_and_subject(app: Issued) -> None:
    credential = certificate(app)
    assert credential.thumbprint_sha1 == app.cert.fingerprint(hashes.SHA1()).hex().upper()
    assert credential.thumbprint_sha256 == app.cert.fingerprint(hashes.SHA256()).hex().upper()
    assert credential.not_after == app.cert.not_valid_after_utc
    assert credential.not_before == app.cert.not_valid_before_utc
    assert credential.subject == "CN=middle-tier"


def test_text_pem_and_an_encrypted_key(app: Issued) -> None:
    encrypted = app.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD),
    )
    credential = ClientCertificate(
        private_key_pem=encrypted.decode(), certificate_pem=app.cert_pem.decode(), password=PASSWORD
    )
    verify(credential.sign_assertion(CLIENT_ID, ENDPOINT, now=NOW), app, "PS256")
    with pytest.raises(ValueError, match="password"):
        ClientCertificate(private_key_pem=encrypted, certificate_pem=app.cert_pem, password=b"no")
    with pytest.raises(TypeError, match="encrypted"):
        ClientCertificate(private_key_pem=encrypted, certificate_pem=app.cert_pem)
    with pytest.raises(TypeError, match="not encrypted"):
        certificate(app, password=PASSWORD)


def test_a_combined_pem_file_works_for_both(app: Issued) -> None:
    both = app.key_pem + app.cert_pem
    credential = ClientCertificate(private_key_pem=both, certificate_pem=both)
    assert credential.thumbprint_sha1 == certificate(app).thumbprint_sha1


def test_the_key_must_match_the_certificate(app: Issued) -> None:
    other = issue("someone-else")
    with pytest.raises(ValueError, match="does not belong"):
        ClientCertificate(private_key_pem=other.key_pem, certificate_pem=app.cert_pem)


def test_the_key_must_be_rsa(app: Issued) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="not RSA"):
        ClientCertificate(private_key_pem=pem, certificate_pem=app.cert_pem)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (
            {"private_key_pem": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            ValueError,
        ),
        ({"private_key_pem": ""}, ValueError),
        ({"private_key_pem": 5}, TypeError),
        ({"certificate_pem": b"not a certificate"}, ValueError),
        ({"certificate_pem": None}, TypeError),
        ({"algorithm": "ES256"}, ValueError),
        ({"password": "text"}, TypeError),
    ],
)
def test_certificate_validation(
    app: Issued, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    options: dict[str, Any] = {"private_key_pem": app.key_pem, "certificate_pem": app.cert_pem}
    with pytest.raises(error) as info:
        ClientCertificate(**(options | kwargs))
    body = b"".join(app.key_pem.splitlines()[1:-1]).decode()
    for fragment in ("AAAA", body[:24], "not a certificate"):  # no PEM content in the message
        assert fragment not in str(info.value)
    assert info.value.__cause__ is None


def test_no_key_material_in_repr_or_attributes(app: Issued) -> None:
    credential = certificate(app)
    text = repr(credential) + str(credential)
    body = b"".join(app.key_pem.splitlines()[1:-1]).decode()
    for fragment in ("BEGIN", body[:24], body[-24:]):
        assert fragment not in text
    assert credential.thumbprint_sha1 in repr(credential)
    with pytest.raises(AttributeError):
        credential.algorithm = "RS256"  # type: ignore[misc]
    assert not hasattr(credential, "__dict__")


def test_sign_assertion_validation(app: Issued) -> None:
    with pytest.raises(ValueError, match="client_id"):
        certificate(app).sign_assertion("", ENDPOINT, now=NOW)
    with pytest.raises(TypeError):
        certificate(app).authenticator(CLIENT_ID, None)  # type: ignore[arg-type]


# --- through the exchange client ---


@pytest.fixture
async def http_clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


def client_for(http_clients: list[httpx.AsyncClient], handler: Any, **kwargs: Any) -> EntraClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    http_clients.append(http)
    return EntraClient(
        http=http, token_endpoint=ENDPOINT, client_id=CLIENT_ID, clock=lambda: NOW, **kwargs
    )


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode(), strict_parsing=True))


async def test_each_request_carries_a_fresh_signed_assertion(
    app: Issued, http_clients: list[httpx.AsyncClient]
) -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(form(request))
        return ok()

    ticks = iter([NOW, NOW + 30])
    auth = certificate(app).authenticator(CLIENT_ID, ENDPOINT, clock=lambda: next(ticks))
    client = client_for(http_clients, handler, authenticate=auth)
    await client.exchange(ASSERTION, SCOPES)
    await client.exchange(ASSERTION, SCOPES)
    first, second = (verify(f["client_assertion"], app, "PS256") for f in seen)
    assert seen[0]["client_assertion_type"] == CLIENT_ASSERTION_TYPE_JWT
    assert seen[0]["client_id"] == CLIENT_ID
    assert "client_secret" not in seen[0]
    assert first["jti"] != second["jti"]
    assert (first["iat"], second["iat"]) == (int(NOW), int(NOW) + 30)


async def test_a_refused_certificate_gives_way_to_the_new_one(
    app: Issued, http_clients: list[httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    new = issue("middle-tier-2026")
    old_thumb = b64url(hashlib.sha256(app.der).digest())
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assertion = form(request)["client_assertion"]
        sent.append(assertion)
        if header(assertion)["x5t#S256"] == old_thumb:
            body = _load("bad_client_assertion_700027")["body"]
            body["error_description"] += f" assertion={assertion}"  # echoed: must not leak
            return httpx.Response(401, json=body)
        return ok()

    client = client_for(
        http_clients,
        handler,
        authenticators=[
            ("cert-2025", certificate(app).authenticator(CLIENT_ID, ENDPOINT)),
            ("cert-2026", certificate(new).authenticator(CLIENT_ID, ENDPOINT)),
        ],
    )
    await client.exchange(ASSERTION, SCOPES)
    assert client.credential == "cert-2026"
    assert len(sent) == 2
    assert "credential cert-2025 was refused (AADSTS700027)" in caplog.text
    for value in [*sent, app.key_pem.decode(), new.key_pem.decode()]:
        assert value not in caplog.text


async def test_an_echoed_assertion_never_reaches_the_error(
    app: Issued, http_clients: list[httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(form(request)["client_assertion"])
        body = _load("bad_client_assertion_700027")["body"]
        body["error_description"] = f"AADSTS700027: bad {sent[-1]} and key {app.key_pem!r}"
        return httpx.Response(401, json=body)

    client = client_for(
        http_clients, handler, authenticate=certificate(app).authenticator(CLIENT_ID, ENDPOINT)
    )
    with pytest.raises(EntraError) as info:
        await client.exchange(ASSERTION, SCOPES)
    assert info.value.reason == "client_credential_invalid"
    haystack = str(info.value) + repr(info.value) + json.dumps(info.value.to_extra()) + caplog.text
    assert sent[0] not in haystack
    assert sent[0].split(".")[2] not in haystack  # not even the signature


# --- secrets ---


async def test_secret_credential_authenticates(http_clients: list[httpx.AsyncClient]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok()

    for method in ("post", "basic"):
        auth = ClientSecret(SECRET, method=method).authenticator(CLIENT_ID, ENDPOINT)
        await client_for(http_clients, handler, authenticate=auth).exchange(ASSERTION, SCOPES)
    assert form(seen[0])["client_secret"] == SECRET
    assert "client_secret" not in form(seen[1])
    assert seen[1].headers["authorization"].startswith("Basic ")


def test_secret_repr_is_masked() -> None:
    secret = ClientSecret(SECRET, expires_at=NOW_DT)
    assert SECRET not in repr(secret)
    assert SECRET not in str(secret)
    assert "********" in repr(secret)
    with pytest.raises(AttributeError):
        secret.secret = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("",), {}, ValueError),
        ((5,), {}, TypeError),
        ((SECRET,), {"method": "jwt"}, ValueError),
        ((SECRET,), {"expires_at": datetime(2030, 1, 1)}, ValueError),  # naive
        ((SECRET,), {"expires_at": "2030-01-01"}, TypeError),
    ],
)
def test_secret_validation(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        ClientSecret(*args, **kwargs)
    assert SECRET not in str(info.value)


# --- expiry warnings ---


def test_expiry_warnings(app: Issued) -> None:
    soon = issue("soon", days=10, key=app.key)
    gone = issue("gone", days=-2, key=app.key)
    credentials: list[Any] = [
        ("cert-current", certificate(app)),  # a year left: nothing to say
        ("cert-soon", certificate(soon)),
        certificate(gone),
        ("primary", ClientSecret(SECRET, expires_at=NOW_DT + timedelta(days=5))),
        ClientSecret(SECRET, expires_at=NOW_DT - timedelta(hours=1)),
        ClientSecret(SECRET),  # expiry unknown: nothing to say
    ]
    messages = credential_expiry_warnings(credentials, now=NOW_DT)
    assert len(messages) == 4
    cert_soon, cert_gone, secret_soon, secret_gone = messages
    assert cert_soon.startswith(
        f"Certificate 'cert-soon' (SHA-1 thumbprint {certificate(soon).thumbprint_sha1}"
    )
    assert "(in 10 days)" in cert_soon
    assert "Upload a new certificate" in cert_soon
    assert cert_gone.startswith("Certificate (SHA-1 thumbprint")
    assert "expired on" in cert_gone
    assert "AADSTS700027" in cert_gone
    assert secret_soon.startswith("Client secret 'primary' expires on")
    assert "(in 4 days)" in secret_soon or "(in 5 days)" in secret_soon
    assert "Create a new client secret" in secret_soon
    assert secret_gone.startswith("Client secret #5 expired on")
    assert "AADSTS7000222" in secret_gone
    for message in messages:
        assert SECRET not in message


def test_expiry_window_is_configurable(app: Issued) -> None:
    assert credential_expiry_warnings([certificate(app)], now=NOW_DT) == []
    [message] = credential_expiry_warnings([certificate(app)], now=NOW_DT, within_days=400)
    assert "expires on" in message


def test_expiry_warnings_validation(app: Issued) -> None:
    with pytest.raises(ValueError, match="timezone"):
        credential_expiry_warnings([certificate(app)], now=datetime(2030, 1, 1))
    with pytest.raises(TypeError):
        credential_expiry_warnings([certificate(app)], now=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        credential_expiry_warnings(["secret"], now=NOW_DT)  # type: ignore[list-item]
