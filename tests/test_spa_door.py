"""The SPA door: a single-page app signs in with Entra itself (MSAL.js: auth code + PKCE
as a public client) and hands its tokens to better-auth-server's ID-token sign-in
(``POST /sign-in/social`` with ``idToken: {token, accessToken}``); the server then
exchanges the stored access token On-Behalf-Of the user, on every storage backend.

Everything crosses real sockets: the SPA's requests go to the emulator's authorize and
token endpoints over TLS, the host verifies the ID token against the emulator's keys,
and the plugin verifies and exchanges the access token there. ID-token sign-in stores
no refresh token, so when the SPA's token expires the server answers
``MICROSOFT_REAUTHENTICATION_REQUIRED`` (``no_refresh_token``) and the SPA posts a fresh one.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from better_auth import APIError
from better_auth.adapters.base import Where
from better_auth.config import AccountOptions
from better_auth.crypto import is_likely_encrypted, symmetric_decrypt
from tests._leaks import register
from tests.conftest import SECRET, MakeAuth
from tests.test_e2e import GRAPH_USER_READ, OIDC, World, clients, microsoft

from better_auth_obo import OBOPlugin
from better_auth_obo._store import is_cached_token_row
from better_auth_obo.testing import App, EntraEmulator, User

SPA_ORIGIN = "http://localhost:3000"
SPA_REDIRECT = f"{SPA_ORIGIN}/"


@dataclass(frozen=True)
class SpaTokens:
    """What MSAL.js holds after a sign-in or a silent token acquisition."""

    id_token: str
    access_token: str
    refresh_token: str


@dataclass(frozen=True)
class Spa:
    """A single-page app's side of Entra, as MSAL.js drives it, over real sockets."""

    entra: EntraEmulator
    app: App  # the SPA's own registration: a public client with a SPA redirect URI
    api: App  # the middle tier it calls (and that exchanges its token)
    http: httpx.AsyncClient

    @property
    def scope(self) -> str:
        return " ".join([*OIDC, f"{self.api.client_id}/access_as_user"])

    async def sign_in(self, user: User) -> SpaTokens:
        """``loginRedirect`` + ``acquireTokenSilent``: authorize with PKCE, redeem the code."""
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        authorize = await self.http.get(
            self.entra.authorize_endpoint(),
            params={
                "client_id": self.app.client_id,
                "response_type": "code",
                "redirect_uri": SPA_REDIRECT,
                "response_mode": "fragment",
                "scope": self.scope,
                "state": secrets.token_urlsafe(16),
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "login_hint": user.upn,
            },
        )
        assert authorize.status_code == 302, authorize.text
        location = urlsplit(authorize.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == SPA_REDIRECT
        code = parse_qs(location.fragment)["code"][0]
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": SPA_REDIRECT,
                "code_verifier": verifier,
            }
        )

    async def renew(self, tokens: SpaTokens) -> SpaTokens:
        """``acquireTokenSilent`` once the access token has expired: the SPA's refresh
        token, redeemed by the SPA itself (a public client: no secret)."""
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        )

    async def _token(self, form: dict[str, str]) -> SpaTokens:
        response = await self.http.post(
            self.entra.token_endpoint(),
            data={"client_id": self.app.client_id, "scope": self.scope, **form},
            headers={"origin": SPA_ORIGIN},  # a browser's cross-origin request
        )
        assert response.status_code == 200, response.text
        body = response.json()
        tokens = SpaTokens(body["id_token"], body["access_token"], body["refresh_token"])
        register(tokens.id_token, tokens.access_token, tokens.refresh_token)
        return tokens


@asynccontextmanager
async def spa_world(
    entra: EntraEmulator, make_auth: MakeAuth, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[tuple[World, Spa]]:
    """The middle tier (Better Auth + the plugin, ``clock`` for the plugin), the SPA's
    registration, and Ada. The Microsoft provider lists the SPA's client id beside the
    API's (``client_id=[api, spa]``): the SPA's ID tokens are issued to the SPA, and the
    host accepts an ID token for any listed client id; the first one is the API's, which
    authenticates the On-Behalf-Of requests."""
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    spa = entra.register_app("spa", public_client=True, redirect_uris=[SPA_REDIRECT])
    entra.grant_consent(api, GRAPH_USER_READ)
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in()  # the emulator signs in whoever the login_hint names
    register(api.client_secret, SECRET)
    plugin = OBOPlugin(applications={"graph": {"scope": [GRAPH_USER_READ]}}, clock=clock)
    outbound = httpx.AsyncClient(verify=entra.ssl_context(), timeout=10)
    auth = await make_auth(
        social_providers={
            "microsoft": microsoft(entra, api, client_id=[api.client_id, spa.client_id])
        },
        plugins=[plugin],
        http_client=outbound,
        account=AccountOptions(encrypt_oauth_tokens=True),
    )
    async with outbound, clients(auth, entra) as (app_client, entra_client):
        world = World(entra, api, api, user, auth, plugin, app_client, entra_client)
        yield world, Spa(entra, spa, api, entra_client)


async def hand_over(world: World, tokens: SpaTokens, access_token: str | None = None) -> str:
    """The SPA posts its tokens to Better Auth's ID-token sign-in; returns the user id."""
    response = await world.app_client.post(
        "/api/auth/sign-in/social",
        json={
            "provider": "microsoft",
            "idToken": {
                "token": tokens.id_token,
                "accessToken": access_token or tokens.access_token,
            },
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["user"]["id"])


async def microsoft_rows(world: World, user_id: str) -> list[dict[str, Any]]:
    where = [Where("userId", user_id), Where("providerId", "microsoft")]
    return [dict(row) for row in await world.auth.adapter.find_many("account", where)]


def stored_access_token(world: World, row: dict[str, Any]) -> str:
    value = str(row["accessToken"])
    return symmetric_decrypt(world.auth.secret, value) if is_likely_encrypted(value) else value


async def graph_me(world: World, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=world.entra.ssl_context()) as http:
        me = await http.get(
            f"{world.entra.graph_url}/v1.0/me", headers={"Authorization": f"Bearer {token}"}
        )
    assert me.status_code == 200, me.text
    result: dict[str, Any] = me.json()
    return result


async def refused(call: Awaitable[Any], status: int, code: str, reason: str) -> APIError:
    with pytest.raises(APIError) as info:
        await call
    assert (info.value.status, info.value.code) == (status, code), info.value
    assert (info.value.extra or {}).get("reason") == reason, info.value.extra
    return info.value


async def test_spa_tokens_handed_to_id_token_sign_in_are_exchanged(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    async with spa_world(entra, make_auth) as (world, spa):
        tokens = await spa.sign_in(world.user)
        access = jwt.decode(tokens.access_token, options={"verify_signature": False})
        assert (access["aud"], access["azp"]) == (world.api.client_id, spa.app.client_id)
        assert jwt.decode(tokens.id_token, options={"verify_signature": False})["aud"] == (
            spa.app.client_id
        )

        user_id = await hand_over(world, tokens)

        (row,) = await microsoft_rows(world, user_id)
        assert row["accountId"] == world.user.oid
        assert stored_access_token(world, row) == tokens.access_token
        assert not row["refreshToken"]  # ID-token sign-in never stores one
        obo = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        assert (await graph_me(world, obo["accessToken"]))["id"] == world.user.oid
        assert world.exchanges() == 1
        register(obo["accessToken"])


async def test_someone_elses_spa_access_token_is_refused(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    """Grace signs in at the SPA as herself, then posts her ID token with Ada's access
    token (leaked from a browser or a log): the host stores it as Grace's; the plugin
    verifies whose it is and sends nothing."""
    async with spa_world(entra, make_auth) as (world, spa):
        grace = entra.add_user("Grace Hopper", "grace@contoso.example")
        adas = await spa.sign_in(world.user)
        graces = await spa.sign_in(grace)

        grace_id = await hand_over(world, graces, access_token=adas.access_token)

        error = await refused(
            world.plugin.get_obo_token(user_id=grace_id, application_name="graph"),
            500,
            "INVALID_ASSERTION",
            "subject",
        )
        assert "someone else" in error.message
        assert world.exchanges() == 0
        rows = await world.auth.adapter.find_many("account", [Where("userId", grace_id)])
        assert not [row for row in rows if is_cached_token_row(row)]


async def test_an_expired_spa_token_needs_a_fresh_one_from_the_spa(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    offset = [0.0]
    async with spa_world(entra, make_auth, clock=lambda: time.time() + offset[0]) as (world, spa):
        entra.set_token_lifetime(600)  # the SPA's token and the OBO token live 10 minutes
        tokens = await spa.sign_in(world.user)
        user_id = await hand_over(world, tokens)
        first = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        register(first["accessToken"])

        offset[0] = 660.0  # both have expired; there is no refresh token to renew with
        error = await refused(
            world.plugin.get_obo_token(user_id=user_id, application_name="graph"),
            401,
            "MICROSOFT_REAUTHENTICATION_REQUIRED",
            "no_refresh_token",
        )
        assert "post a fresh access token" in error.message
        assert world.grants("refresh_token") == 0  # the server had nothing to refresh with
        assert world.exchanges() == 1  # and the expired token was not sent

        # The SPA renews silently (the emulator runs on real time, 11 minutes behind the
        # plugin's clock: the new tokens live an hour) and hands the new token over.
        entra.set_token_lifetime(3600)
        fresh = await spa.renew(tokens)
        assert await hand_over(world, fresh) == user_id

        (row,) = await microsoft_rows(world, user_id)
        assert stored_access_token(world, row) == fresh.access_token
        second = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        register(second["accessToken"])
        assert second["accessToken"] != first["accessToken"]
        assert (await graph_me(world, second["accessToken"]))["id"] == world.user.oid
        assert world.exchanges() == 2


async def test_a_fresh_spa_token_replaces_the_cached_obo_token(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    """The cached OBO token is bound to the Microsoft token it was exchanged for: once the
    SPA hands over another one, it is not served again (though it has not expired)."""
    async with spa_world(entra, make_auth) as (world, spa):
        tokens = await spa.sign_in(world.user)
        user_id = await hand_over(world, tokens)
        first = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        again = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        assert again["accessToken"] == first["accessToken"]
        assert world.exchanges() == 1

        fresh = await spa.renew(tokens)
        assert fresh.access_token != tokens.access_token
        assert await hand_over(world, fresh) == user_id

        second = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        register(first["accessToken"], second["accessToken"])
        assert second["accessToken"] != first["accessToken"]
        assert world.exchanges() == 2
        assert len(await microsoft_rows(world, user_id)) == 1  # updated, not a second row
        cached = [
            row
            for row in await world.auth.adapter.find_many("account", [Where("userId", user_id)])
            if is_cached_token_row(row)
        ]
        assert len(cached) == 1
