"""The demo's FastAPI app: better-auth-server mounted, plus the pages of ``--serve``.

Routes besides ``/api/auth/*``:

- ``GET /``: sign-in button, or the Graph profile fetched with an OBO token, the cached
  OBO tokens and the actions;
- ``POST /sign-in``: starts "Sign in with Microsoft" (with ``claims`` after a challenge);
- ``POST /sign-out``, ``POST /obo/reexchange``, ``POST /obo/revoke``,
  ``POST /obo/challenge``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

import jwt
from better_auth import APIError, AuthRequest, BetterAuth
from better_auth.adapters.base import Where
from better_auth.integrations.fastapi import BetterAuthFastAPI
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from better_auth_obo import OBO_ERROR_CODES

from ._pages import CachedRow, Challenge, dashboard, landing, page
from ._world import DemoAuth, Tenant

__all__ = ["build_app"]

APPLICATIONS = ("graph", "tasks")
_STATUS = {
    "reexchanged": "Revoked, then exchanged again: two new requests to Entra ID.",
    "revoked": "Cached OBO tokens deleted; this page load exchanged again.",
    "signed-in": "Signed in.",
}


def build_app(demo: DemoAuth, tenant: Tenant, *, interactive: bool = True) -> FastAPI:
    """The demo app. ``interactive``: the emulator shows its sign-in page (pick a user)."""
    if not interactive:
        tenant.entra.auto_sign_in(tenant.users[0])
    app = FastAPI(title="better-auth-obo demo", docs_url=None, redoc_url=None)
    integration = BetterAuthFastAPI(demo.auth)
    app.include_router(integration.router)
    pages = _Pages(demo, tenant, integration)
    app.add_api_route("/", pages.home, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/sign-in", pages.sign_in, methods=["POST"])
    app.add_api_route("/sign-out", pages.sign_out, methods=["POST"])
    app.add_api_route("/obo/reexchange", pages.reexchange, methods=["POST"])
    app.add_api_route("/obo/revoke", pages.revoke, methods=["POST"])
    app.add_api_route("/obo/challenge", pages.challenge, methods=["POST"])
    return app


class _Pages:
    def __init__(self, demo: DemoAuth, tenant: Tenant, integration: BetterAuthFastAPI) -> None:
        self.demo = demo
        self.auth: BetterAuth = demo.auth
        self.tenant = tenant
        self.integration = integration

    async def _user(self, request: Request) -> dict[str, Any] | None:
        result = await self.integration.session(request)
        return None if result is None else dict(result["user"])

    async def home(self, request: Request, done: str = "") -> HTMLResponse:
        user = await self._user(request)
        if user is None:
            return HTMLResponse(landing(self.tenant.entra.authority))
        view = await self._view(str(user["id"]))
        html = dashboard(user=user, status_line=_STATUS.get(done, ""), **view)
        return HTMLResponse(html)

    async def _view(self, user_id: str) -> dict[str, Any]:
        """Use both OBO tokens (exchanged or cached), then read what is cached."""
        profile: dict[str, Any] | None = None
        tasks: dict[str, Any] | None = None
        error: str | None = None
        challenge: Challenge | None = None
        try:
            graph = await self.demo.obo.get_obo_token(user_id=user_id, application_name="graph")
            profile = await self._get(f"{self.tenant.entra.graph_url}/v1.0/me", graph)
            token = await self.demo.obo.get_obo_token(user_id=user_id, application_name="tasks")
            tasks = await self._get(self.tenant.tasks_url, token)
        except APIError as exc:
            challenge = await self._challenge_of(exc, user_id)
            if challenge is None:
                error = f"{exc.code}: {exc.message}"
        cached = await self._cached(user_id)
        return {
            "profile": profile,
            "profile_error": error,
            "tasks": tasks,
            "cached": cached,
            "challenge": challenge,
        }

    async def _get(self, url: str, account: Any) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {account['accessToken']}"}
        response = await self.demo.http.get(url, headers=headers)
        body: dict[str, Any] = response.json()
        return body

    async def _challenge_of(self, exc: APIError, user_id: str) -> Challenge | None:
        claims = (exc.extra or {}).get("claims")
        if exc.code != OBO_ERROR_CODES["OBO_EXCHANGE_FAILED"].code or not claims:
            return None
        user = await self.auth.adapter.find_one("user", [Where("id", user_id)])
        return Challenge(
            code=exc.code,
            message=exc.message,
            error_codes=tuple((exc.extra or {}).get("error_codes") or ()),
            claims=str(claims),
            login_hint=str((user or {}).get("email") or ""),
        )

    async def _cached(self, user_id: str) -> list[CachedRow]:
        """The user's cached OBO rows (the demo does not encrypt tokens at rest)."""
        rows = await self.auth.adapter.find_many("account", [Where("userId", user_id)])
        current = next(
            (r for r in rows if r.get("providerId") == "microsoft" and r.get("accessToken")), None
        )
        bound_now = _fingerprint(str(current["accessToken"])) if current else ""
        cached = []
        for row in rows:
            provider = str(row.get("providerId") or "")
            if not provider.startswith("microsoft:") or not row.get("accessToken"):
                continue
            claims = jwt.decode(str(row["accessToken"]), options={"verify_signature": False})
            expires = row.get("accessTokenExpiresAt")
            cached.append(
                CachedRow(
                    application=provider.split(":", 1)[1],
                    audience=str(claims.get("aud")),
                    scopes=str(row.get("scope") or "").replace(",", " "),
                    expires=expires.strftime("%H:%M:%S UTC") if expires else "?",
                    bound_to=str(row.get("accountId") or ""),
                    current=row.get("accountId") == bound_now,
                )
            )
        return sorted(cached, key=lambda r: r.application)

    # --- actions -----------------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        # A plain urlencoded form: parsed here, so the demo needs no multipart package.
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        claims, login_hint = form.get("claims", ""), form.get("login_hint", "")
        body: dict[str, Any] = {"provider": "microsoft", "callbackURL": "/?done=signed-in"}
        if login_hint:
            body["loginHint"] = login_hint
        if claims:
            body["additionalParams"] = {"claims": claims}
        result = await self.auth.handle(self._auth_request(request, "/sign-in/social", body))
        if result.status != 200:
            return HTMLResponse(page("Sign-in failed", f"<pre>{result.body}</pre>"), 502)
        response = RedirectResponse(result.body["url"], status_code=303)
        _copy_cookies(result.headers, response)
        return response

    async def sign_out(self, request: Request) -> Response:
        result = await self.auth.handle(self._auth_request(request, "/sign-out", {}))
        response = RedirectResponse("/", status_code=303)
        _copy_cookies(result.headers, response)
        return response

    async def reexchange(self, request: Request) -> Response:
        user = await self._user(request)
        if user is not None:
            await self.demo.obo.revoke_obo_tokens(str(user["id"]))
            for application in APPLICATIONS:
                await self.demo.obo.get_obo_token(
                    user_id=str(user["id"]), application_name=application
                )
        return RedirectResponse("/?done=reexchanged", status_code=303)

    async def revoke(self, request: Request) -> Response:
        user = await self._user(request)
        if user is not None:
            await self.demo.obo.revoke_obo_tokens(str(user["id"]))
        return RedirectResponse("/?done=revoked", status_code=303)

    async def challenge(self, request: Request) -> Response:
        """Turn on an MFA policy for the tasks API, and forget the cached tasks token."""
        user = await self._user(request)
        if user is not None:
            entra_user = next((u for u in self.tenant.users if u.upn == user.get("email")), None)
            self.tenant.entra.require_mfa(entra_user, resource=self.tenant.tasks)
            await self.demo.obo.revoke_obo_tokens(str(user["id"]), "tasks")
        return RedirectResponse("/", status_code=303)

    def _auth_request(self, request: Request, path: str, body: dict[str, Any]) -> AuthRequest:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return AuthRequest(
            method="POST",
            path=path,
            headers={
                "content-type": "application/json",
                "origin": origin,
                "cookie": request.headers.get("cookie", ""),
            },
            body=json.dumps(body).encode(),
            client_ip=request.client.host if request.client else None,
        )


def _copy_cookies(headers: list[tuple[str, str]], response: Response) -> None:
    for name, value in headers:
        if name.lower() == "set-cookie":
            response.headers.append("set-cookie", value)


def _fingerprint(token: str) -> str:
    # What the plugin keeps in a cached row's accountId: a short SHA-256 of the Microsoft
    # token the OBO token was minted from (never the token itself).
    return hashlib.sha256(token.encode()).hexdigest()[:32]
