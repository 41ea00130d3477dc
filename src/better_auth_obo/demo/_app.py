"""The demo's FastAPI app: better-auth-server mounted, plus the pages of ``--serve``.

Routes besides ``/api/auth/*``:

- ``GET /``: sign-in button, or the APIs called with OBO tokens, the cached OBO tokens
  (source, age, expiry, exchange time, binding) and the actions; ``/?done=revoked``
  calls nothing, so the empty cache shows;
- ``GET /sign-in-error``: where a cancelled or refused sign-in lands, with a way back;
- ``POST /sign-in``: starts "Sign in with Microsoft" (with ``claims`` for a step-up);
- ``POST /sign-out``, ``POST /obo/reexchange``, ``POST /obo/revoke``,
  ``POST /obo/challenge``.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, metadata
from typing import Any
from urllib.parse import parse_qsl

import jwt
from better_auth import APIError, AuthRequest, BetterAuth
from better_auth.adapters.base import Where
from better_auth.integrations.fastapi import BetterAuthFastAPI
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from better_auth_obo import claims_challenge, sign_in_again
from better_auth_obo._assertion import fingerprint
from better_auth_obo._store import application_of, is_cached_token_row
from better_auth_obo.testing._tokens import performed_mfa

from ._events import Served, TokenLog
from ._pages import (
    CachedRow,
    Challenge,
    Outcome,
    dashboard,
    landing,
    links_html,
    message_page,
    page,
)
from ._transcript import duration
from ._world import DemoAuth, Tenant

__all__ = ["build_app", "project_links"]

APPLICATIONS = ("graph", "tasks")
STEPUP_COOKIE = "obo_demo_stepup"  # the user id a step-up started for (not a secret)
PYPI = "https://pypi.org/project/better-auth-obo/"
_STATUS = {
    "signed-in": "Signed in with Microsoft.",
    "signed-out": "Signed out.",
}


def build_app(
    demo: DemoAuth,
    tenant: Tenant,
    *,
    interactive: bool = True,
    log: TokenLog | None = None,
    door_url: str | None = None,
) -> FastAPI:
    """The demo app. ``interactive``: the emulator shows its sign-in page (pick a user);
    ``door_url``: the emulator's sign-in pages for a browser (plain HTTP), if served."""
    if not interactive:
        tenant.entra.auto_sign_in(tenant.users[0])
    app = FastAPI(title="better-auth-obo demo", docs_url=None, redoc_url=None)
    integration = BetterAuthFastAPI(demo.auth)
    app.include_router(integration.router)
    pages = _Pages(demo, tenant, integration, log or TokenLog(demo.obo, tenant), door_url)
    app.add_api_route("/", pages.home, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/sign-in-error", pages.sign_in_error, methods=["GET"])
    app.add_api_route("/sign-in", pages.sign_in, methods=["POST"])
    app.add_api_route("/sign-out", pages.sign_out, methods=["POST"])
    app.add_api_route("/obo/reexchange", pages.reexchange, methods=["POST"])
    app.add_api_route("/obo/revoke", pages.revoke, methods=["POST"])
    app.add_api_route("/obo/challenge", pages.challenge, methods=["POST"])
    return app


def project_links() -> list[tuple[str, str]]:
    """Documentation, README and examples, from the package's ``Project-URL`` entries
    (PyPI's page, which shows the README, when there are none)."""
    urls: dict[str, str] = {}
    try:
        entries = metadata("better-auth-obo").get_all("Project-URL") or []
    except PackageNotFoundError:
        entries = []
    for entry in entries:
        label, _, url = str(entry).partition(",")
        urls[label.strip().lower()] = url.strip()
    source = urls.get("source") or urls.get("repository") or urls.get("github")
    docs = urls.get("documentation") or urls.get("docs") or urls.get("homepage") or PYPI
    links = [("Documentation", docs), ("README", f"{source}#readme" if source else PYPI)]
    if source and "github.com" in source:
        links.append(("Examples", f"{source.rstrip('/')}/tree/main/examples"))
    else:
        links.append(("Examples (examples/ in the source distribution)", f"{PYPI}#files"))
    return links


class _Pages:
    def __init__(
        self,
        demo: DemoAuth,
        tenant: Tenant,
        integration: BetterAuthFastAPI,
        log: TokenLog,
        door_url: str | None,
    ) -> None:
        self.demo = demo
        self.auth: BetterAuth = demo.auth
        self.tenant = tenant
        self.integration = integration
        self.log = log
        self.door_url = door_url
        self.links = links_html(project_links())
        self.flash: dict[str, str] = {}  # user id -> the status line of their next page

    async def _user(self, request: Request) -> dict[str, Any] | None:
        result = await self.integration.session(request)
        return None if result is None else dict(result["user"])

    async def home(self, request: Request, done: str = "") -> HTMLResponse:
        user = await self._user(request)
        if user is None:
            status = _STATUS.get(done, "")
            return HTMLResponse(
                landing(self.tenant.entra.authority, links=self.links, status_line=status)
            )
        user_id = str(user["id"])
        if done in ("signed-in", "stepped-up"):
            self.log.event(user, "signed in", "with Microsoft, on the emulator's page")
        view = await self._view(user, call=done != "revoked")
        status = self.flash.pop(user_id, "") or _STATUS.get(done, "")
        if done == "challenged" and view["challenge"] is None and view["tasks"]:
            status += (
                " Your sign-in already carries MFA, so Entra ID accepted the exchange: sign "
                "out and in again to see the challenge."
            )
        outcome = None
        if done == "stepped-up":
            outcome = await self._outcome(request, user, view)
        html = dashboard(user=user, status_line=status, outcome=outcome, links=self.links, **view)
        response = HTMLResponse(html)
        if done == "stepped-up":
            response.delete_cookie(STEPUP_COOKIE, path="/")
        return response

    async def _view(self, user: dict[str, Any], *, call: bool) -> dict[str, Any]:
        """Use both OBO tokens (unless ``call`` is off), then read what is cached."""
        user_id = str(user["id"])
        rows, current = await self._rows(user_id)
        earlier = {
            application_of(r)
            for r in rows
            if is_cached_token_row(r) and r.get("accountId") != current
        }
        served: dict[str, Served] = {}
        profile: dict[str, Any] | None = None
        tasks: dict[str, Any] | None = None
        error: str | None = None
        challenge: Challenge | None = None
        try:
            if call:
                graph, served["graph"] = await self.log.get(user, "graph")
                profile = await self._get(f"{self.tenant.entra.graph_url}/v1.0/me", graph)
                token, served["tasks"] = await self.log.get(user, "tasks")
                tasks = await self._get(self.tenant.tasks_url, token)
        except APIError as exc:
            challenge = self._challenge_of(exc, user)
            if challenge is None:
                error = f"{exc.code}: {exc.message}"
        rows, current = await self._rows(user_id)
        return {
            "sign_in": self._sign_in_line(rows),
            "profile": profile,
            "profile_error": error,
            "tasks": tasks,
            "cached": self._cached(rows, current, served, earlier),
            "challenge": challenge,
        }

    async def _get(self, url: str, account: Any) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {account['accessToken']}"}
        response = await self.demo.http.get(url, headers=headers)
        body: dict[str, Any] = response.json()
        return body

    async def _rows(self, user_id: str) -> tuple[list[dict[str, Any]], str]:
        """The user's account rows (the demo does not encrypt tokens at rest), and the
        fingerprint of their current Microsoft token ("" when none)."""
        rows = await self.auth.adapter.find_many("account", [Where("userId", user_id)])
        rows = [dict(r) for r in rows if r.get("userId") == user_id and r.get("accessToken")]
        microsoft = next((r for r in rows if r.get("providerId") == "microsoft"), None)
        current = fingerprint(str(microsoft["accessToken"])) if microsoft else ""
        return rows, current

    def _sign_in_line(self, rows: list[dict[str, Any]]) -> str:
        microsoft = next((r for r in rows if r.get("providerId") == "microsoft"), None)
        if microsoft is None:
            return "No Microsoft token stored for you."
        token = str(microsoft["accessToken"])
        claims = _claims(token)
        mfa = "with MFA" if performed_mfa(claims) else "without MFA"
        age = _ago(time.time() - float(claims.get("iat", time.time())))
        return (
            f"Your Microsoft sign-in (the token OBO exchanges): fingerprint "
            f"{fingerprint(token)[:12]}…, {mfa}, {age} ago."
        )

    def _cached(
        self,
        rows: list[dict[str, Any]],
        current: str,
        served: dict[str, Served],
        earlier: set[str],
    ) -> list[CachedRow]:
        now = time.time()
        cached = []
        for row in rows:
            if not is_cached_token_row(row):
                continue
            token = str(row["accessToken"])
            claims = _claims(token)
            application = application_of(row)
            use = served.get(application)
            exchange = self.log.exchange_of(token)
            bound = str(row.get("accountId") or "")
            cached.append(
                CachedRow(
                    application=application,
                    audience=self._audience(str(claims.get("aud"))),
                    scopes=str(row.get("scope") or "").replace(",", " "),
                    source=use.source if use else "",
                    served_in=duration(use.seconds) if use else "",
                    age=_ago(now - float(claims.get("iat", now))),
                    expires_in=_until(float(claims.get("exp", now)) - now),
                    exchange=(
                        f"{duration(exchange.seconds)}, {_ago(now - exchange.at)} ago"
                        if exchange
                        else ""
                    ),
                    bound_to=bound,
                    current=bound == current,
                    replaced=application in earlier and bound == current,
                )
            )
        return sorted(cached, key=lambda r: r.application)

    def _audience(self, aud: str) -> str:
        names = {app.client_id: app.name for app in (self.tenant.web, self.tenant.tasks)}
        return f"{aud} ({names[aud]})" if aud in names else aud

    def _challenge_of(self, exc: APIError, user: dict[str, Any]) -> Challenge | None:
        claims = claims_challenge(exc)
        if not claims:
            return None
        extra = exc.extra or {}
        codes = [f"AADSTS{c}" for c in extra.get("error_codes") or extra.get("errorCodes") or ()]
        message = exc.message
        missing = [c for c in codes if c not in message]
        if missing:  # each code once: Entra's description usually starts with it
            message = f"{', '.join(missing)}: {message}"
        login_hint = str(user.get("email") or "")
        body = sign_in_again(exc, callback_url="/?done=stepped-up", login_hint=login_hint)
        return Challenge(
            code=exc.code, message=message, claims=claims, login_hint=login_hint, body=body or {}
        )

    async def _outcome(
        self, request: Request, user: dict[str, Any], view: dict[str, Any]
    ) -> Outcome:
        """What the step-up brought: MFA or not, and whether someone else signed in."""
        wanted = request.cookies.get(STEPUP_COOKIE, "")
        if wanted and wanted != str(user["id"]):
            other = await self.auth.adapter.find_one("user", [Where("id", wanted)])
            asked = str((other or {}).get("name") or "another user")
            self.log.event(user, "step-up: another user", f"asked for {asked}")
            return Outcome(
                f"The step-up was for {asked}, but {user.get('name')} signed in on the "
                f"emulator's page: the app now has {user.get('name')}'s session, not "
                f"{asked}'s. {asked}'s cached tokens stay bound to {asked}'s own sign-in.",
                ok=False,
            )
        rows, _ = await self._rows(str(user["id"]))
        microsoft = next((r for r in rows if r.get("providerId") == "microsoft"), None)
        mfa = microsoft is not None and performed_mfa(_claims(str(microsoft["accessToken"])))
        if mfa and view["tasks"]:
            self.log.event(user, "step-up done", "signed in with MFA; tasks API answered")
            return Outcome(
                "Signed in with MFA: your new Microsoft token records it, so Entra ID accepted "
                "the tasks API exchange this time.",
                ok=True,
            )
        return Outcome("Signed in again, but Entra ID still asks for more (see below).", ok=mfa)

    # --- actions -----------------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        # A plain urlencoded form: parsed here, so the demo needs no multipart package.
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        claims, login_hint = form.get("claims", ""), form.get("login_hint", "")
        body: dict[str, Any] = {
            "provider": "microsoft",
            "callbackURL": "/?done=stepped-up" if claims else "/?done=signed-in",
            "errorCallbackURL": "/sign-in-error",
        }
        if login_hint:
            body["loginHint"] = login_hint
        if claims:
            body["additionalParams"] = {"claims": claims}
        result = await self.auth.handle(self._auth_request(request, "/sign-in/social", body))
        if result.status != 200:
            return HTMLResponse(page("Sign-in failed", f"<pre>{result.body}</pre>"), 502)
        response = RedirectResponse(self._for_browser(result.body["url"]), status_code=303)
        _copy_cookies(result.headers, response)
        user = await self._user(request)
        if claims and user is not None:
            response.set_cookie(
                STEPUP_COOKIE, str(user["id"]), httponly=True, samesite="lax", path="/"
            )
        return response

    def _for_browser(self, url: str) -> str:
        """The authorize URL, through the plain-HTTP door when there is one."""
        authority = self.tenant.entra.authority
        if self.door_url and url.startswith(authority + "/"):
            return self.door_url + url[len(authority) :]
        return url

    async def sign_in_error(
        self, request: Request, error: str = "", error_description: str = ""
    ) -> HTMLResponse:
        # Entra's description ends with trace and correlation ids: the first part suffices.
        detail = error_description.split(" Trace ID:")[0]
        self.log.event(None, "sign-in not completed", error or "unknown error")
        if error == "access_denied":
            html = message_page(
                "Sign-in cancelled",
                "You cancelled the sign-in on the Entra ID emulator's page. Nothing changed: "
                "you can sign in again whenever you like.",
                detail,
                links=self.links,
            )
        else:
            html = message_page(
                "Sign-in did not complete",
                f"Entra ID (or the app) answered {error or 'an error'} instead of signing you in.",
                detail,
                links=self.links,
            )
        return HTMLResponse(html)

    async def sign_out(self, request: Request) -> Response:
        user = await self._user(request)
        result = await self.auth.handle(self._auth_request(request, "/sign-out", {}))
        if user is not None:
            self.log.event(user, "signed out", "session ended; cached OBO rows stay")
        response = RedirectResponse("/?done=signed-out", status_code=303)
        _copy_cookies(result.headers, response)
        return response

    async def reexchange(self, request: Request) -> Response:
        user = await self._user(request)
        if user is None:
            return RedirectResponse("/", status_code=303)
        took = []
        try:
            for application in APPLICATIONS:
                _, served = await self.log.get(user, application, force=True)
                took.append(f"{application} {duration(served.seconds)}")
        except APIError as exc:
            took.append(f"then {exc.code}")
        self.flash[str(user["id"])] = (
            f"Re-exchanged ({', '.join(took)}): get_obo_token(force_refresh=True) asked "
            "Entra ID again. This page load then served the new tokens from the cache."
        )
        return RedirectResponse("/?done=reexchanged", status_code=303)

    async def revoke(self, request: Request) -> Response:
        user = await self._user(request)
        if user is None:
            return RedirectResponse("/", status_code=303)
        deleted = await self.demo.obo.revoke_obo_tokens(str(user["id"]))
        self.log.revoked(user, deleted)
        rows = "row" if deleted == 1 else "rows"
        self.flash[str(user["id"])] = (
            f"Revoked: {deleted} cached {rows} deleted (revoke_obo_tokens). This page load "
            "called nothing, so you see the empty cache; the next call exchanges."
        )
        return RedirectResponse("/?done=revoked", status_code=303)

    async def challenge(self, request: Request) -> Response:
        """Turn on an MFA policy for the tasks API, and forget the cached tasks token."""
        user = await self._user(request)
        if user is None:
            return RedirectResponse("/", status_code=303)
        entra_user = next((u for u in self.tenant.users if u.upn == user.get("email")), None)
        self.tenant.entra.require_mfa(entra_user, resource=self.tenant.tasks)
        deleted = await self.demo.obo.revoke_obo_tokens(str(user["id"]), "tasks")
        self.log.event(user, "MFA policy on", "tasks API (Conditional Access, emulator)")
        self.log.revoked(user, deleted)
        self.flash[str(user["id"])] = (
            "MFA is now required for the tasks API (a Conditional Access policy in the "
            f"emulator). Its cached token was revoked ({deleted} row), so this page load asked "
            "Entra ID for a new one."
        )
        return RedirectResponse("/?done=challenged", status_code=303)

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


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _until(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    return f"in {_ago(seconds)}"
