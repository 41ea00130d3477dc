"""End to end: a real Microsoft sign-in through better-auth-server against the emulator,
then OBO exchanges the emulator validates, on every storage backend.

Everything crosses real loopback sockets with TLS: the app's outbound calls (code
redemption, refresh, OBO) go through ``BetterAuth(http_client=...)`` trusting the
emulator's CA; the downstream calls go to the emulator's fake Graph and API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from better_auth import APIError, BetterAuth, MemoryAdapter
from better_auth.adapters.base import Where
from better_auth.config import AccountOptions
from better_auth.crypto import is_likely_encrypted, symmetric_decrypt
from better_auth.integrations.fastapi import BetterAuthFastAPI
from fastapi import FastAPI
from tests._leaks import register
from tests.conftest import SECRET, MakeAuth

from better_auth_obo import OBOConfigurationWarning, OBOPlugin
from better_auth_obo.testing import App, EntraEmulator, User

GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"
OIDC = ["openid", "profile", "email", "offline_access"]


@dataclass
class World:
    entra: EntraEmulator
    api: App
    downstream: App
    user: User
    auth: BetterAuth
    plugin: OBOPlugin
    app_client: httpx.AsyncClient
    entra_client: httpx.AsyncClient

    def exchanges(self) -> int:
        return self.grants("urn:ietf:params:oauth:grant-type:jwt-bearer")

    def grants(self, grant_type: str) -> int:
        return sum(1 for r in self.entra.token_requests if r.grant_type == grant_type)


def microsoft(entra: EntraEmulator, api: App, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "client_id": api.client_id,
        "client_secret": api.client_secret,
        "tenant_id": entra.tenant_id,
        "authority": entra.authority,
        "disable_profile_photo": True,
        "scopes": [*OIDC, f"{api.client_id}/access_as_user"],
    }
    config.update(overrides)
    return config


@pytest.fixture
async def world(entra: EntraEmulator, make_auth: MakeAuth) -> AsyncIterator[World]:
    async with built_world(entra, make_auth) as built:
        yield built


@asynccontextmanager
async def built_world(
    entra: EntraEmulator, make_auth: MakeAuth, **plugin_options: Any
) -> AsyncIterator[World]:
    """The ``world`` fixture's world, with options for its plugin."""
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    downstream = entra.register_app("downstream", scopes=["Files.Read"])
    entra.grant_consent(api, GRAPH_USER_READ, downstream.scope("Files.Read"))
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in(user)
    register(api.client_secret, downstream.client_secret, SECRET)
    plugin = OBOPlugin(
        applications={
            "graph": {"scope": [GRAPH_USER_READ]},
            "files": {"scope": [downstream.scope("Files.Read")]},
        },
        **plugin_options,
    )
    outbound = httpx.AsyncClient(verify=entra.ssl_context(), timeout=10)
    auth = await make_auth(
        social_providers={"microsoft": microsoft(entra, api)},
        plugins=[plugin],
        http_client=outbound,
        account=AccountOptions(encrypt_oauth_tokens=True),
    )
    async with outbound, clients(auth, entra) as (app_client, entra_client):
        yield World(entra, api, downstream, user, auth, plugin, app_client, entra_client)


@asynccontextmanager
async def clients(
    auth: BetterAuth, entra: EntraEmulator
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The browser's two sides: the app (FastAPI over ASGI) and the emulator (TLS)."""
    app = FastAPI()
    app.include_router(BetterAuthFastAPI(auth).router)
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"origin": "http://testserver"},
        ) as app_client,
        httpx.AsyncClient(verify=entra.ssl_context(), timeout=10) as entra_client,
    ):
        yield app_client, entra_client


async def sign_in(world: World, **body: Any) -> str:
    """The browser's part of a Microsoft sign-in, scripted; returns the Better Auth user id."""
    response = await world.app_client.post(
        "/api/auth/sign-in/social", json={"provider": "microsoft", "callbackURL": "/", **body}
    )
    assert response.status_code == 200, response.text
    authorize = await world.entra_client.get(response.json()["url"])
    assert authorize.status_code in (302, 303), authorize.text
    callback = await world.app_client.get(authorize.headers["location"])
    assert callback.status_code in (302, 303), callback.text
    assert "error" not in callback.headers["location"], callback.headers["location"]
    session = await world.app_client.get("/api/auth/get-session")
    user_id = str(session.json()["user"]["id"])
    rows = await world.auth.adapter.find_many(
        "account", [Where("userId", user_id), Where("providerId", "microsoft")]
    )
    for row in rows:  # the stored Microsoft tokens are secrets for the leak check
        for column in ("accessToken", "refreshToken", "idToken"):
            value = row.get(column)
            if value and is_likely_encrypted(value):
                value = symmetric_decrypt(world.auth.secret, value)
            register(value)
    return user_id


async def test_sign_in_then_obo_for_two_applications(world: World) -> None:
    user_id = await sign_in(world)

    graph = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    files = await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert world.exchanges() == 2

    async with httpx.AsyncClient(verify=world.entra.ssl_context()) as http:
        me = await http.get(
            f"{world.entra.graph_url}/v1.0/me",
            headers={"Authorization": f"Bearer {graph['accessToken']}"},
        )
        assert me.status_code == 200, me.text
        assert me.json()["id"] == world.user.oid
        assert me.json()["userPrincipalName"] == world.user.upn
        wrong = await http.get(
            f"{world.entra.graph_url}/v1.0/me",
            headers={"Authorization": f"Bearer {files['accessToken']}"},
        )
        assert wrong.status_code == 401  # a token for the files API is not a Graph token

    again = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert again["accessToken"] == graph["accessToken"]
    assert world.exchanges() == 2
    rows = await world.auth.adapter.find_many("account", [Where("userId", user_id)])
    providers = sorted(r["providerId"] for r in rows)
    assert providers == ["microsoft", "microsoft:files", "microsoft:graph"]
    assert all(graph["accessToken"] != r["accessToken"] for r in rows)  # encrypted at rest


async def test_cache_survives_a_new_plugin_instance_only_while_bound(world: World) -> None:
    user_id = await sign_in(world)
    first = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    await sign_in(world)  # a new sign-in stores a new Microsoft token
    second = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert second["accessToken"] != first["accessToken"]
    assert second["accountId"] != first["accountId"]
    assert world.exchanges() == 2


async def test_default_provider_scopes_give_a_graph_token_that_is_refused(
    entra: EntraEmulator,
) -> None:
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    user = entra.add_user("Grace Hopper", "grace@contoso.example")
    entra.auto_sign_in(user)
    plugin = OBOPlugin(applications={"graph": {"scope": [GRAPH_USER_READ]}})
    config = microsoft(entra, api)
    del config["scopes"]
    outbound = httpx.AsyncClient(verify=entra.ssl_context())
    with pytest.warns(OBOConfigurationWarning) as warned:
        auth = BetterAuth(
            secret=SECRET,
            base_url="http://testserver",
            adapter=MemoryAdapter(),
            social_providers={"microsoft": config},
            plugins=[plugin],
            http_client=outbound,
        )
    assert any("Graph" in str(w.message) for w in warned)
    async with outbound, clients(auth, entra) as (app_client, entra_client):
        world = World(entra, api, api, user, auth, plugin, app_client, entra_client)
        user_id = await sign_in(world)
        before = len(entra.token_requests)
        with pytest.raises(APIError) as info:
            await plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert info.value.code == "INVALID_ASSERTION"
    assert len(entra.token_requests) == before  # never sent


async def test_stored_token_near_expiry_is_refreshed_first(world: World) -> None:
    world.entra.set_token_lifetime(120, resource=world.api)  # inside the 5 min margin
    user_id = await sign_in(world)
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert world.grants("refresh_token") == 1
    assert world.exchanges() == 1
    assert token["accessTokenExpiresAt"].timestamp() > time.time() + 600


async def test_revoked_sign_in_requires_reauthentication(world: World) -> None:
    world.entra.set_token_lifetime(120, resource=world.api)
    user_id = await sign_in(world)
    world.entra.revoke_sessions(world.user)
    with pytest.raises(APIError) as info:
        await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert (info.value.status, info.value.code) == (401, "MICROSOFT_REAUTHENTICATION_REQUIRED")
    assert info.value.extra is not None
    assert info.value.extra["error_codes"] == [50173]
    assert world.exchanges() == 0


async def test_mfa_policy_surfaces_the_claims_challenge(world: World) -> None:
    user_id = await sign_in(world)
    world.entra.require_mfa(world.user, resource=GRAPH_USER_READ.rsplit("/", 1)[0])
    with pytest.raises(APIError) as info:
        await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    extra = info.value.extra
    assert (info.value.status, info.value.code) == (502, "OBO_EXCHANGE_FAILED")
    assert extra is not None
    assert extra["reason"] == "interaction_required"
    assert extra["claims"].startswith("{")
    assert extra["trace_id"]
    assert extra["correlation_id"]


async def test_missing_consent_is_classified(world: World) -> None:
    user_id = await sign_in(world)
    world.entra.revoke_consent(world.api, world.downstream.scope("Files.Read"))
    with pytest.raises(APIError) as info:
        await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert info.value.extra is not None
    assert info.value.extra["reason"] == "consent_required"
    assert info.value.extra["error_codes"] == [65001]


async def test_short_throttling_is_waited_out(world: World) -> None:
    user_id = await sign_in(world)
    fault = world.entra.faults.throttle(retry_after=1)
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert token["accessToken"]
    assert fault.hits == 1
    assert world.exchanges() == 2


async def test_long_throttling_is_503_with_retry_after(world: World) -> None:
    user_id = await sign_in(world)
    world.entra.faults.throttle(retry_after=120)  # beyond the 5 s cap: don't wait
    with pytest.raises(APIError) as info:
        await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert (info.value.status, info.value.code) == (503, "ENTRA_UNAVAILABLE")
    assert info.value.extra is not None
    assert info.value.extra["retryAfter"] == 120
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert token["accessToken"]  # another key of the same user is not held back


async def test_dropped_connection_is_retried(world: World) -> None:
    user_id = await sign_in(world)
    world.entra.faults.drop_connection()
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="files")
    assert token["accessToken"]


async def test_secrets_and_tokens_never_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    user_id = await sign_in(world)
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    world.entra.faults.fail(aadsts=50013)
    await world.plugin.revoke_obo_tokens(user_id)
    with pytest.raises(APIError) as info:
        await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    (ms,) = await world.auth.adapter.find_many(
        "account", [Where("userId", user_id), Where("providerId", "microsoft")]
    )
    secrets = [token["accessToken"], str(world.api.client_secret), world.auth.secret]
    secrets.append(world.plugin._store.decrypt(ms["accessToken"]) or "")
    secrets.append(world.plugin._store.decrypt(ms["refreshToken"]) or "")
    haystack = caplog.text + str(info.value) + repr(info.value) + repr(info.value.extra)
    haystack += repr(info.value.__cause__)
    for secret in secrets:
        assert secret
        assert secret not in haystack


async def test_step_up_with_the_claims_challenge(world: World) -> None:
    from better_auth_obo import claims_challenge, sign_in_again, www_authenticate

    user_id = await sign_in(world)
    world.entra.require_mfa(world.user, resource="https://graph.microsoft.com")
    with pytest.raises(APIError) as info:
        await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    claims = claims_challenge(info.value)
    assert claims is not None
    header = www_authenticate(info.value)
    assert header is not None
    assert 'error="insufficient_claims"' in header
    body = sign_in_again(info.value, login_hint=world.user.upn)
    assert body is not None
    assert body["additionalParams"]["claims"] == claims

    # The app sends the user back through sign-in with the claims; MFA is done there.
    response = await world.app_client.post("/api/auth/sign-in/social", json=body)
    assert "claims=" in response.json()["url"]
    authorize = await world.entra_client.get(response.json()["url"])
    callback = await world.app_client.get(authorize.headers["location"])
    assert "error" not in callback.headers["location"]

    token = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert token["accessToken"]


async def test_outage_serves_cached_token_inside_buffer(world: World) -> None:
    user_id = await sign_in(world)
    # A 60 s token is already inside the 60 s buffer: never kept in memory, and every
    # call wants a new one from Entra.
    world.entra.set_token_lifetime(60, resource="https://graph.microsoft.com")
    first = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    world.entra.faults.fail(status=503, times=None)
    again = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert again["accessToken"] == first["accessToken"]


async def _plugin_with(world: World, make_auth: MakeAuth, **options: Any) -> OBOPlugin:
    plugin = OBOPlugin(applications={"graph": {"scope": [GRAPH_USER_READ]}}, **options)
    await make_auth(
        clean=False,
        adapter=world.auth.adapter,
        social_providers={"microsoft": microsoft(world.entra, world.api)},
        plugins=[plugin],
        http_client=world.auth.http,
        account=world.auth.account,
    )
    return plugin


@pytest.mark.parametrize("algorithm", ["PS256", "RS256"])
async def test_certificate_credential(world: World, make_auth: MakeAuth, algorithm: str) -> None:
    from better_auth_obo import ClientCertificate

    certificate = world.api.add_certificate()
    credential = ClientCertificate(
        private_key_pem=certificate.private_key_pem,
        certificate_pem=certificate.certificate_pem,
        algorithm=algorithm,  # type: ignore[arg-type]
    )
    user_id = await sign_in(world)
    plugin = await _plugin_with(world, make_auth, credentials=[credential])
    token = await plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert token["accessToken"]
    (request,) = [
        r for r in world.entra.token_requests if r.grant_type and "jwt-bearer" in r.grant_type
    ]
    assert request.auth_method == "private_key_jwt"


async def test_expired_secret_rotates_to_the_next_credential(
    world: World, make_auth: MakeAuth, caplog: pytest.LogCaptureFixture
) -> None:
    from better_auth_obo import ClientSecret

    old = str(world.api.client_secret)
    new = world.entra.add_secret(world.api)
    user_id = await sign_in(world)  # signs in with the old secret, still valid
    world.entra.expire_secret(world.api, old)
    plugin = await _plugin_with(
        world, make_auth, credentials=[("old", ClientSecret(old)), ("new", ClientSecret(new))]
    )
    token = await plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert token["accessToken"]
    codes = [
        r.error_code for r in world.entra.token_requests if r.grant_type and "jwt" in r.grant_type
    ]
    assert codes == [7000222, None]
    assert "old" in caplog.text
    assert old not in caplog.text
    assert new not in caplog.text
