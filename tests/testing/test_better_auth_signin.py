"""better-auth-server's own Microsoft provider signs in against the emulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from better_auth import BetterAuth, MemoryAdapter
from better_auth.adapters.base import Where
from better_auth.integrations.fastapi import BetterAuthFastAPI
from entra_helpers import claims
from fastapi import FastAPI

from better_auth_obo.testing import App, EntraEmulator

OIDC = ["openid", "profile", "email", "offline_access"]


@asynccontextmanager
async def _host(
    entra: EntraEmulator, api: App, scopes: list[str] | None = None
) -> AsyncIterator[tuple[BetterAuth, httpx.AsyncClient]]:
    """better-auth-server with the Microsoft provider on the emulator, and a client of it."""
    provider: dict[str, Any] = {
        "client_id": api.client_id,
        "client_secret": api.client_secret,
        "tenant_id": entra.tenant_id,
        "authority": entra.authority,
        "disable_profile_photo": True,
    }
    if scopes is not None:
        provider["scopes"] = scopes
    async with httpx.AsyncClient(verify=entra.ssl_context()) as outbound:
        auth = BetterAuth(
            secret="s" * 40,
            base_url="http://testserver",
            adapter=MemoryAdapter(),
            social_providers={"microsoft": provider},
            http_client=outbound,
        )
        app = FastAPI()
        app.include_router(BetterAuthFastAPI(auth).router)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"origin": "http://testserver"},
        ) as client:
            yield auth, client


async def _sign_in(entra: EntraEmulator, api: App, scopes: list[str] | None) -> dict[str, Any]:
    async with (
        _host(entra, api, scopes) as (auth, client),
        httpx.AsyncClient(verify=entra.ssl_context()) as browser,
    ):
        start = await client.post(
            "/api/auth/sign-in/social", json={"provider": "microsoft", "callbackURL": "/"}
        )
        authorize = await browser.get(start.json()["url"])
        assert authorize.status_code == 302, authorize.text
        callback = await client.get(authorize.headers["location"])
        assert callback.status_code == 302
        assert "error" not in callback.headers["location"]
        (account,) = await auth.adapter.find_many("account", [Where("providerId", "microsoft")])
    return dict(account)


@pytest.fixture
def api(entra: EntraEmulator) -> App:
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in(user)
    return api


async def test_sign_in_for_the_apps_own_scope_stores_an_obo_ready_token(
    entra: EntraEmulator, api: App
) -> None:
    account = await _sign_in(entra, api, [*OIDC, f"{api.client_id}/access_as_user"])

    access = claims(account["accessToken"])
    assert access["aud"] == api.client_id
    assert access["scp"] == "access_as_user"
    assert account["refreshToken"]
    assert account["accountId"] == access["oid"]
    grants = [r.grant_type for r in entra.token_requests]
    assert grants == ["authorization_code"]


async def test_default_scopes_store_a_graph_token(entra: EntraEmulator, api: App) -> None:
    account = await _sign_in(entra, api, None)  # provider default: ... User.Read ...

    assert claims(account["accessToken"])["aud"] == "https://graph.microsoft.com"


async def test_the_graph_token_reads_me(entra: EntraEmulator, api: App) -> None:
    account = await _sign_in(entra, api, None)
    async with httpx.AsyncClient(verify=entra.ssl_context()) as http:
        me = await http.get(
            f"{entra.graph_url}/v1.0/me",
            headers={"authorization": f"Bearer {account['accessToken']}"},
        )
    assert me.json()["userPrincipalName"] == "ada@contoso.example"


async def _id_token_sign_in(
    entra: EntraEmulator, api: App, id_token: str, access_token: str
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """``POST /sign-in/social`` with ``idToken``: better-auth-server verifies it against
    the emulator's ``/discovery/v2.0/keys`` (issuer, audience, max age)."""
    async with _host(entra, api) as (auth, client):
        response = await client.post(
            "/api/auth/sign-in/social",
            json={
                "provider": "microsoft",
                "idToken": {"token": id_token, "accessToken": access_token},
            },
        )
        accounts = await auth.adapter.find_many("account", [Where("providerId", "microsoft")])
    return response, [dict(a) for a in accounts]


@pytest.mark.parametrize("version", [1, 2])
async def test_id_token_sign_in_with_an_issued_id_token(entra: EntraEmulator, version: int) -> None:
    api = entra.register_app("spa-api", scopes=["access_as_user"], access_token_version=version)
    user = entra.add_user("Grace Hopper", "grace@contoso.example")
    access = entra.issue_token(user, audience=api)

    response, accounts = await _id_token_sign_in(
        entra, api, entra.issue_id_token(user, client=api), access
    )

    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == "grace@contoso.example"
    (account,) = accounts
    assert account["accountId"] == user.oid
    assert claims(account["accessToken"])["ver"] == f"{version}.0"


async def test_id_token_sign_in_refuses_a_foreign_or_stale_id_token(
    entra: EntraEmulator, api: App
) -> None:
    user = next(iter(entra.users.values()))
    other = entra.register_app("someone-else")
    stale = entra.issue_id_token(user, client=api, issued_at=time.time() - 7200)
    foreign = entra.issue_id_token(user, client=other)
    for token in (stale, foreign):
        response, accounts = await _id_token_sign_in(entra, api, token, "x")
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "INVALID_TOKEN"
        assert accounts == []
