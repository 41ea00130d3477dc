"""The scripted demo: sign in through the real redirect flow, then On-Behalf-Of twice.

Each step prints one line: what happened, how long it took, and for tokens their
audience, scopes and expiry, decoded locally. A token itself is never printed.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import httpx
import jwt
from better_auth.adapters.base import Where

from better_auth_obo import OBOPlugin
from better_auth_obo.testing import User

from . import DemoFailure
from ._transcript import Transcript, duration, timed
from ._world import DemoAuth, Tenant

__all__ = ["DemoFailure", "Transcript", "run_script", "timed"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def sign_in(client: httpx.AsyncClient, app_url: str, user: User, out: Transcript) -> str:
    """The browser's part of "Sign in with Microsoft", scripted; returns the user id."""
    with timed() as took:
        response = await client.post(
            f"{app_url}/api/auth/sign-in/social",
            json={"provider": "microsoft", "callbackURL": "/", "loginHint": user.upn},
            headers={"origin": app_url},
        )
        _expect(response, 200, "POST /api/auth/sign-in/social")
        authorize_url = response.json()["url"]
    out.step("sign in with Microsoft", "POST /api/auth/sign-in/social -> /authorize", took())
    out.note("PKCE S256, to the emulator's authorize endpoint")
    with timed() as took:
        response = await client.get(authorize_url)
        _expect(response, 302, "the emulator's /authorize")
        callback = response.headers["location"]
    out.step("Entra ID sign-in", f"{user.display_name} <{user.upn}>, 302 to the app", took())
    with timed() as took:
        response = await client.get(callback)
        _expect(response, 302, "GET /api/auth/callback/microsoft")
        if "error=" in response.headers.get("location", ""):
            raise DemoFailure(f"the callback failed: {response.headers['location']}")
        session = await client.get(f"{app_url}/api/auth/get-session")
        _expect(session, 200, "GET /api/auth/get-session")
        body = session.json() or {}
    if not body.get("user"):
        raise DemoFailure("signed in, but the app has no session for the user")
    out.step("callback", "GET /api/auth/callback/microsoft -> 302 /", took())
    out.note("session cookie set; better-auth-server stored the Microsoft token")
    return str(body["user"]["id"])


async def show_stored_token(demo: DemoAuth, user_id: str, out: Transcript) -> None:
    """What better-auth-server stored at sign-in: the assertion OBO will send."""
    rows = await demo.auth.adapter.find_many(
        "account", [Where("userId", user_id), Where("providerId", "microsoft")]
    )
    if not rows or not rows[0].get("accessToken"):
        raise DemoFailure("no Microsoft access token was stored at sign-in")
    claims = _claims(str(rows[0]["accessToken"]))
    own = claims.get("aud") == _client_id(demo)
    out.note(f"Microsoft token: aud {claims.get('aud')}")
    valid = "this app: a valid OBO assertion" if own else "not this app: no OBO assertion"
    out.note(f"({valid}), scp {claims.get('scp')}")
    out.note(_expiry(claims))


async def get_token(
    tenant: Tenant,
    obo: OBOPlugin,
    user_id: str,
    application: str,
    out: Transcript,
    earlier: str | None = None,
) -> str:
    """``get_obo_token`` once, reporting whether Entra ID was asked (exchange) or not (cache)."""
    before = _exchanges(tenant)
    with timed() as took:
        account = await obo.get_obo_token(user_id=user_id, application_name=application)
    source = "exchange" if _exchanges(tenant) > before else "cache"
    token = account["accessToken"]

    claims = _claims(token)
    same = "  same token, Entra ID not asked" if token == earlier else ""
    out.step(f'get_obo_token("{application}")', f"{source:<8} {duration(took()):>9}{same}")
    out.note(f"aud {_audience(tenant, claims)}")
    out.note(f"scp {claims.get('scp')}, {_expiry(claims)}")
    return token


async def call_apis(
    client: httpx.AsyncClient, tenant: Tenant, tokens: dict[str, str], out: Transcript
) -> None:
    """Use the OBO tokens: Microsoft Graph ``/v1.0/me`` and the downstream API."""
    with timed() as took:
        me = await client.get(
            f"{tenant.entra.graph_url}/v1.0/me",
            headers={"authorization": f"Bearer {tokens['graph']}"},
        )
        _expect(me, 200, "GET Graph /v1.0/me")
    profile = me.json()
    who = f"{profile.get('displayName')} <{profile.get('userPrincipalName')}>"
    out.step("GET Graph /v1.0/me", f"200  {who}", took())
    with timed() as took:
        whoami = await client.get(
            tenant.tasks_url, headers={"authorization": f"Bearer {tokens['tasks']}"}
        )
        _expect(whoami, 200, "GET the tasks API's /whoami")
    seen = whoami.json()
    out.step(
        "GET tasks API /whoami", f"200  sees {seen.get('name')}, scp {seen.get('scp')}", took()
    )


async def run_script(demo: DemoAuth, tenant: Tenant, app_url: str, out: Transcript) -> None:
    """Sign in, exchange for two APIs, serve both again from cache, call both APIs."""
    user = tenant.users[0]
    tenant.entra.auto_sign_in(user)
    async with httpx.AsyncClient(verify=tenant.entra.ssl_context(), timeout=10) as client:
        user_id = await sign_in(client, app_url, user, out)
        await show_stored_token(demo, user_id, out)
        tokens: dict[str, str] = {}
        for application in ("graph", "tasks", "graph", "tasks"):
            tokens[application] = await get_token(
                tenant, demo.obo, user_id, application, out, tokens.get(application)
            )
        await call_apis(client, tenant, tokens, out)


# --- helpers --------------------------------------------------------------------------------


def _exchanges(tenant: Tenant) -> int:
    return sum(1 for r in tenant.entra.token_requests if r.grant_type == JWT_BEARER)


def _client_id(demo: DemoAuth) -> str:
    return str(demo.auth.social_providers["microsoft"].client_id)


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _expiry(claims: dict[str, Any]) -> str:
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        return "no expiry"
    at = datetime.fromtimestamp(exp, tz=timezone.utc).strftime("%H:%M:%S UTC")
    return f"exp {at} (in {round((exp - time.time()) / 60)} min)"


def _audience(tenant: Tenant, claims: dict[str, Any]) -> str:
    aud = str(claims.get("aud"))
    names = {app.client_id: app.name for app in (tenant.web, tenant.tasks)}
    return f"{aud} ({names[aud]})" if aud in names else aud


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        # Only error bodies are shown: a success body may carry a session token.
        detail = response.text[:300].replace("\n", " ") if response.status_code >= 400 else ""
        raise DemoFailure(
            f"{what} answered {response.status_code}, expected {status}"
            + (f": {detail}" if detail else "")
        )
