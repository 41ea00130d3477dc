"""Credentials without secrets, end to end: a Microsoft sign-in through better-auth-server,
then On-Behalf-Of exchanges the emulator authenticates with a PFX certificate, a PEM file
rotated in place, a federated token file rotated in place (Kubernetes workload identity),
a federated token from a callable, and a managed identity through the App Service protocol
(``IDENTITY_ENDPOINT`` pointed at the emulator's loopback server). And the refusals:
Entra's AADSTS code reaches the plugin's error.

Nothing here patches the plugin; IMDS is only ever answered by an ``httpx.MockTransport``
(no traffic leaves 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from better_auth import APIError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tests._leaks import register
from tests.conftest import MakeAuth
from tests.test_e2e import World, _plugin_with, sign_in, world

from better_auth_obo import (
    ClientCertificate,
    ConfigurationError,
    FederatedAssertion,
    ManagedIdentityAssertion,
)
from better_auth_obo._credentials import CertificateFile
from better_auth_obo.testing import Certificate

__all__ = ["world"]

SUBJECT = "system:serviceaccount:payments:middle-tier"
PFX_PASSWORD = "pfx-password-for-the-test"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def pfx_bytes(certificate: Certificate, password: str | None) -> bytes:
    key = serialization.load_pem_private_key(certificate.private_key_pem.encode(), None)
    cert = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        b"middle-tier",
        key,  # type: ignore[arg-type]
        cert,
        None,
        encryption,
    )


def obo_requests(world: World) -> list[Any]:
    return [r for r in world.entra.token_requests if r.grant_type == JWT_BEARER]


async def exchange(world: World, plugin: Any, user_id: str, *, force: bool = False) -> str:
    token = await plugin.get_obo_token(
        user_id=user_id, application_name="graph", force_refresh=force
    )
    register(token["accessToken"])
    return str(token["accessToken"])


def appidacr(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["appidacr"])


# --- certificates -----------------------------------------------------------------------------


async def test_pfx_certificate(world: World, make_auth: MakeAuth) -> None:
    certificate = world.api.add_certificate()
    credential = ClientCertificate.from_pfx(pfx_bytes(certificate, PFX_PASSWORD), PFX_PASSWORD)
    register(PFX_PASSWORD)
    assert credential.thumbprint_sha1 == certificate.thumbprint
    assert PFX_PASSWORD not in repr(credential)
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    token = await exchange(world, plugin, user_id)
    assert appidacr(token) == "2"  # a certificate, not the provider's secret
    assert [r.auth_method for r in obo_requests(world)] == ["private_key_jwt"]


async def test_pem_file_rotated_without_restart(
    world: World, make_auth: MakeAuth, tmp_path: Path
) -> None:
    old = world.api.add_certificate()
    path = tmp_path / "app.pem"
    path.write_bytes(old.pem_bundle)
    credential = ClientCertificate.from_path(path)
    assert isinstance(credential, CertificateFile)
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    await exchange(world, plugin, user_id)

    new = world.api.add_certificate()
    path.write_bytes(new.pem_bundle)  # rewritten in place, as a secret store sync does
    world.api.remove_certificate(old)  # the old one no longer works at Entra
    await exchange(world, plugin, user_id, force=True)
    assert [r.error_code for r in obo_requests(world)] == [None, None]
    assert credential.thumbprint_sha1 == new.thumbprint
    assert str(path) in repr(credential)


async def test_an_unreadable_certificate_file_keeps_the_last_good_one(
    world: World, make_auth: MakeAuth, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certificate = world.api.add_certificate()
    path = tmp_path / "app.pfx"
    path.write_bytes(pfx_bytes(certificate, None))  # a PFX found by content, not by name
    credential = ClientCertificate.from_path(path)
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    path.write_bytes(b"half-written")
    await exchange(world, plugin, user_id)
    path.unlink()
    await exchange(world, plugin, user_id, force=True)
    assert [r.error_code for r in obo_requests(world)] == [None, None]
    warnings = [r.getMessage() for r in caplog.records if "keeping the one" in r.getMessage()]
    assert len(warnings) == 2
    assert str(path) in warnings[0]
    assert "PRIVATE KEY" not in caplog.text


def test_certificate_files_that_cannot_be_used(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        ClientCertificate.from_path(tmp_path / "missing.pem")
    (tmp_path / "junk.pfx").write_bytes(b"not a pfx")
    with pytest.raises(ConfigurationError, match="PKCS#12"):
        ClientCertificate.from_path(tmp_path / "junk.pfx")
    with pytest.raises(ValueError, match="password right"):
        ClientCertificate.from_pfx(b"not a pfx", "wrong")


# --- federated tokens -------------------------------------------------------------------------


async def test_federated_token_file_rotated_without_restart(
    world: World, make_auth: MakeAuth, tmp_path: Path
) -> None:
    k8s = world.entra.add_external_issuer()
    world.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT)
    path = tmp_path / "azure-identity-token"

    def project(**options: Any) -> None:  # what the kubelet does, hourly
        token = k8s.issue_token(subject=SUBJECT, **options)
        register(token)
        path.write_text(token)

    project()
    credential = FederatedAssertion.from_file(path)
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    token = await exchange(world, plugin, user_id)
    assert appidacr(token) == "2"

    now = world.entra._directory.clock()
    project(lifetime=600, issued_at=now - 3600)  # a token the kubelet failed to renew
    with pytest.raises(APIError) as info:
        await exchange(world, plugin, user_id, force=True)
    assert info.value.extra is not None
    assert info.value.extra["error_codes"] == [700024]

    project()  # renewed: the next exchange reads it, no restart
    await exchange(world, plugin, user_id, force=True)
    assert [r.error_code for r in obo_requests(world)] == [None, 700024, None]


async def test_federated_token_file_from_the_environment(
    world: World, make_auth: MakeAuth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s = world.entra.add_external_issuer()
    world.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT)
    path = tmp_path / "token"
    token = k8s.issue_token(subject=SUBJECT)
    register(token)
    path.write_text(token + "\n")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(path))
    credential = FederatedAssertion()
    assert repr(credential) == f"FederatedAssertion.from_file({str(path)!r})"
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    await exchange(world, plugin, user_id)

    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE")
    with pytest.raises(ConfigurationError, match="AZURE_FEDERATED_TOKEN_FILE"):
        FederatedAssertion()


async def test_federated_token_from_a_callable(world: World, make_auth: MakeAuth) -> None:
    issuer = world.entra.add_external_issuer()
    world.api.add_federated_credential(issuer=issuer.issuer, subject="repo:contoso/api:main")
    calls = 0

    async def github_oidc_token() -> str:
        nonlocal calls
        calls += 1
        token = issuer.issue_token(subject="repo:contoso/api:main")
        register(token)
        return token

    credential = FederatedAssertion(get_token=github_oidc_token)
    assert "github_oidc_token" in repr(credential)
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    await exchange(world, plugin, user_id)
    await exchange(world, plugin, user_id, force=True)
    assert calls == 2  # asked for each exchange: the source decides what to cache


@pytest.mark.parametrize(
    ("trust", "audience", "code"),
    [
        (None, "api://AzureADTokenExchange", 70021),
        ("system:serviceaccount:payments:other", "api://AzureADTokenExchange", 700213),
        (SUBJECT, "https://kubernetes.default.svc", 700212),
    ],
    ids=["no-federated-credential", "other-subject", "wrong-audience"],
)
async def test_federated_refusals_reach_the_plugins_error(
    world: World,
    make_auth: MakeAuth,
    caplog: pytest.LogCaptureFixture,
    trust: str | None,
    audience: str,
    code: int,
) -> None:
    k8s = world.entra.add_external_issuer()
    if trust is not None:
        world.api.add_federated_credential(issuer=k8s.issuer, subject=trust)
    token = k8s.issue_token(subject=SUBJECT, audience=audience)
    register(token)

    async def get_token() -> str:
        return token

    user_id = await sign_in(world)
    plugin = await _plugin_with(
        world, make_auth, credentials=[FederatedAssertion(get_token=get_token)]
    )
    with pytest.raises(APIError) as info:
        await exchange(world, plugin, user_id)
    extra = info.value.extra
    assert extra is not None
    assert (info.value.code, extra["reason"], extra["error_codes"]) == (
        "OBO_EXCHANGE_FAILED",
        "client_credential_invalid",
        [code],
    )
    assert f"AADSTS{code}" in info.value.message


async def test_a_refused_federated_token_gives_way_to_the_next_credential(
    world: World, make_auth: MakeAuth
) -> None:
    k8s = world.entra.add_external_issuer()  # no federated credential on the app yet

    async def get_token() -> str:
        token = k8s.issue_token(subject=SUBJECT)
        register(token)
        return token

    certificate = world.api.add_certificate()
    credentials = [
        ("workload-identity", FederatedAssertion(get_token=get_token)),
        ("certificate", ClientCertificate.from_pfx(pfx_bytes(certificate, None))),
    ]
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=credentials)
    await exchange(world, plugin, user_id)
    assert [r.error_code for r in obo_requests(world)] == [70021, None]


# --- managed identity -------------------------------------------------------------------------


async def test_managed_identity_through_the_app_service_endpoint(
    world: World, make_auth: MakeAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = world.entra.add_managed_identity("middle-tier-identity")
    register(identity.identity_header)
    world.api.add_federated_credential(issuer=identity.issuer, subject=identity.subject)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.identity_header)
    fetched: list[httpx.Request] = []
    app_client_saw: list[httpx.Request] = []

    async def note(request: httpx.Request) -> None:
        if str(request.url).startswith(identity.identity_endpoint):
            fetched.append(request)

    async def app_note(request: httpx.Request) -> None:
        if str(request.url).startswith(identity.identity_endpoint):
            app_client_saw.append(request)

    # The emulator serves the identity endpoint over TLS with its own CA (Azure's is plain
    # http on localhost): a client trusting it, without proxies from the environment.
    mi_http = httpx.AsyncClient(
        verify=world.entra.ssl_context(), trust_env=False, event_hooks={"request": [note]}
    )
    credential = ManagedIdentityAssertion(client_id=identity.client_id, http_client=mi_http)
    assert credential.protocol == "app_service"
    assert identity.identity_header not in repr(credential)
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    world.auth.http.event_hooks["request"].append(app_note)  # the app's client: never used
    async with mi_http:
        token = await exchange(world, plugin, user_id)
        await exchange(world, plugin, user_id, force=True)
    assert app_client_saw == []
    assert appidacr(token) == "2"
    assert len(fetched) == 1  # the identity's token is kept until 5 minutes before expiry
    assert credential.expires_at is not None
    assert [r.error_code for r in obo_requests(world)] == [None, None]


async def test_concurrent_exchanges_fetch_the_identity_token_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = world.entra.add_managed_identity("middle-tier-identity")
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.identity_header)
    requests: list[httpx.Request] = []
    async with httpx.AsyncClient(
        verify=world.entra.ssl_context(),
        event_hooks={"request": [lambda r: _note(requests, r)]},
    ) as http:
        credential = ManagedIdentityAssertion(http_client=http)
        tokens = await asyncio.gather(*(credential.assertion() for _ in range(50)))
    assert len(set(tokens)) == 1
    assert len(requests) == 1
    register(tokens[0])
    query = requests[0].url.params
    assert (query["api-version"], query["resource"]) == ("2019-08-01", "api://AzureADTokenExchange")
    assert "client_id" not in query  # system-assigned: no client_id sent


async def _note(requests: list[httpx.Request], request: httpx.Request) -> None:
    requests.append(request)


async def test_managed_identity_refused_by_its_endpoint(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = world.entra.add_managed_identity("middle-tier-identity")
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "a-wrong-identity-header")
    async with httpx.AsyncClient(verify=world.entra.ssl_context(), trust_env=False) as http:
        credential = ManagedIdentityAssertion(client_id=identity.client_id, http_client=http)
        with pytest.raises(ConfigurationError, match=r"HTTP 401, error 'unauthorized'") as info:
            await credential.assertion()
    assert "a-wrong-identity-header" not in str(info.value)


# --- IMDS, on the wire only (never 169.254.169.254 for real) ------------------------------------


async def test_imds_request_and_caching_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    monkeypatch.delenv("IDENTITY_HEADER", raising=False)
    now = [1_800_000_000.0]
    seen: list[httpx.Request] = []

    def imds(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        token = f"imds-token-{len(seen)}-" + "x" * 40
        register(token)
        return httpx.Response(
            200,
            json={"access_token": token, "expires_in": "3600", "expires_on": "ignored",
                  "resource": "api://AzureADTokenExchange", "token_type": "Bearer"},
        )  # fmt: skip

    transport = httpx.MockTransport(imds)
    async with httpx.AsyncClient(transport=transport) as http:
        credential = ManagedIdentityAssertion(
            client_id="c0ffee00-0000-4000-8000-000000000001", http_client=http
        )
        assert credential.protocol == "imds"
        first = await credential.assertion()
        now[0] += 3600 - 301
        assert await credential.assertion() == first  # still more than 5 minutes left
        credential_clocked = ManagedIdentityAssertion(
            client_id="c0ffee00-0000-4000-8000-000000000001", http_client=http, clock=lambda: now[0]
        )
        a = await credential_clocked.assertion()
        now[0] += 3600 - 299  # within 5 minutes of expiry: fetched again
        b = await credential_clocked.assertion()
    assert a != b
    request = seen[0]
    assert request.method == "GET"
    assert str(request.url).startswith("http://169.254.169.254/metadata/identity/oauth2/token?")
    assert request.headers["metadata"] == "true"
    assert dict(request.url.params) == {
        "api-version": "2018-02-01",
        "resource": "api://AzureADTokenExchange",
        "client_id": "c0ffee00-0000-4000-8000-000000000001",
    }
    assert len(seen) == 3


async def test_imds_unreachable_is_entra_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to host", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        credential = ManagedIdentityAssertion(http_client=http)
        if credential.protocol != "imds":
            pytest.skip("IDENTITY_ENDPOINT is set in this environment")
        from better_auth_obo import EntraUnavailableError

        with pytest.raises(EntraUnavailableError, match="IMDS"):
            await credential.assertion()


def test_reprs_hold_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/MSI/token/")
    monkeypatch.setenv("IDENTITY_HEADER", "identity-header-secret-value")
    register("identity-header-secret-value")
    credential = ManagedIdentityAssertion()
    assert "identity-header-secret-value" not in repr(credential)
    assert credential.endpoint == "http://127.0.0.1:41741/MSI/token/"
    token_file = tmp_path / "t"
    token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig-secret-part")
    federated = FederatedAssertion.from_file(token_file)
    assert "sig-secret-part" not in repr(federated)
    assert os.fspath(token_file) in repr(federated)
    logging.getLogger("better_auth_obo").info("%r %r", credential, federated)


def test_credentials_name_every_accepted_kind() -> None:
    from better_auth_obo import OBOPlugin

    with pytest.raises(TypeError, match="FederatedAssertion, ManagedIdentityAssertion"):
        OBOPlugin(applications={"graph": {"scope": ["User.Read"]}}, credentials=["a secret"])  # type: ignore[list-item]


async def test_the_identity_request_never_uses_the_apps_client_or_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy in the environment (httpx sends even localhost through it) never sees the
    X-IDENTITY-HEADER: the app's client is not used, and ours ignores the environment."""
    proxied: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxied.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    async def identity(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = json.dumps({"access_token": "mi." + "x" * 40, "expires_on": "9" * 400}).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    identity_server = await asyncio.start_server(identity, "127.0.0.1", 0)
    port = identity_server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_server.sockets[0].getsockname()[1]}")
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "identity-header-secret-value")
    register("identity-header-secret-value")
    try:
        credential = ManagedIdentityAssertion()
        async with httpx.AsyncClient() as app_client:  # reads HTTP_PROXY from the environment
            token = await credential.assertion(app_client)
    finally:
        proxy_server.close()
        identity_server.close()
    assert token.startswith("mi.") and proxied == []
    # An absurd expires_on is not believed: kept a day at most.
    assert credential.expires_at is not None
    assert credential.expires_at.timestamp() <= time.time() + 24 * 3600 + 5


@pytest.mark.parametrize(
    "endpoint", ["http://169.254.169.254.example.com/msi", "http://10.0.0.4/msi"]
)
def test_a_plain_http_identity_endpoint_elsewhere_is_refused(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "h")
    with pytest.raises(ConfigurationError, match="on this machine"):
        ManagedIdentityAssertion()
