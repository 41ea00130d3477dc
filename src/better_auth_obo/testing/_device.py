"""The device code flow (v2-oauth2-device-code.md), for CLIs and devices without a browser.

``POST /{tenant}/oauth2/v2.0/devicecode`` answers ``device_code``, ``user_code``,
``verification_uri`` (the emulator's ``/devicelogin``), ``expires_in``, ``interval`` and
``message``. The token endpoint's device_code grant answers ``authorization_pending``
(AADSTS70016) until a user approves the code, ``expired_token`` (70020) after 15 minutes,
then the user's tokens once (a second redemption is ``invalid_grant``). A user approves on
``/devicelogin`` (a page with one button per user), at once when automatic sign-in is on,
or with ``entra.approve_device_code(user_code, user)``.
"""

from __future__ import annotations

import secrets
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._errors import EntraError, render
from ._grants import TokenCall, stored_user_response
from ._html import html_page
from ._state import DeviceGrant, Directory
from ._tokens import TokenIssuer
from ._wire import TENANT_ALIASES, new_guid

__all__ = ["device_code_grant", "device_login", "devicecode"]

DEVICE_CODE_LIFETIME = 900
POLL_INTERVAL = 1  # Entra says 5; tests would wait for nothing
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ23456789"


def _user_code() -> str:
    return "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))


def _auto_user(directory: Directory, tenant_id: str) -> str | None:
    candidates = directory.users_in(tenant_id)
    if directory.auto_user is not None:
        return next((u.oid for u in candidates if u.oid == directory.auto_user), None)
    if directory.auto_any and candidates:
        return candidates[0].oid
    return None


async def devicecode(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    directory = issuer.directory
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    segment = request.path_params["tenant"]
    try:
        tenant = None if segment.lower() in TENANT_ALIASES else directory.find_tenant(segment)
        if tenant is None and segment.lower() not in TENANT_ALIASES:
            raise EntraError(90002, tenant=segment)
        app = directory.apps.get(form.get("client_id", ""))
        if app is None:
            raise EntraError(700016, client_id=form.get("client_id"), tenant=segment)
        if not form.get("scope"):
            raise EntraError(900144, parameter="scope")
    except EntraError as exc:
        body = render(
            exc,
            authority=issuer.authority,
            trace_id=new_guid(),
            correlation_id=new_guid(),
            now=issuer.clock(),
        )
        return JSONResponse(body, exc.status)
    tenant_id = tenant.tenant_id if tenant is not None else app.tenant_id
    grant = DeviceGrant(
        client_id=app.client_id,
        tenant_id=tenant_id,
        scope=form["scope"],
        user_code=_user_code(),
        expires_at=issuer.clock() + DEVICE_CODE_LIFETIME,
        user_oid=_auto_user(directory, tenant_id),
    )
    code = directory.issue_device_code(grant)
    uri = f"{issuer.authority}/devicelogin"
    return JSONResponse(
        {
            "user_code": grant.user_code,
            "device_code": code,
            "verification_uri": uri,
            "expires_in": DEVICE_CODE_LIFETIME,
            "interval": POLL_INTERVAL,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the "
            f"code {grant.user_code} to authenticate.",
        }
    )


def device_code_grant(call: TokenCall) -> tuple[dict[str, Any], str]:
    outcome = call.issuer.directory.redeem_device(
        call.require("device_code"), call.app.client_id, call.issuer.clock()
    )
    if outcome == "pending":
        raise EntraError(70016)
    if outcome == "expired":
        raise EntraError(70020)
    if not isinstance(outcome, DeviceGrant) or outcome.user_oid is None:
        raise EntraError(70000, reason="The device code is unknown or was already used.")
    # Signing in on /devicelogin counts as an interactive sign-in with MFA, as /authorize does.
    return stored_user_response(
        call, outcome.user_oid, outcome.tenant_id, outcome.scope, True, None
    )


async def device_login(request: Request) -> Response:
    """``/devicelogin``: enter the code and pick a user (GET shows the page, POST signs in)."""
    directory: Directory = request.app.state.issuer.directory
    if request.method == "POST":
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if directory.approve_device(form.get("code", ""), form.get("emulator_user", "")):
            return html_page(
                "Signed in",
                "<h1>You have signed in on your device. You may now close this window.</h1>",
            )
        return html_page(
            "Enter code",
            "<h1>That code was not recognized.</h1>"
            "<p><a href='devicelogin'>Enter the code again</a></p>",
            400,
        )
    buttons = "".join(
        f"<li><button name='emulator_user' value='{escape(u.oid)}'>Sign in as "
        f"{escape(u.display_name)} ({escape(u.upn)})</button></li>"
        for u in directory.users_in(None)
    )
    return html_page(
        "Enter code",
        "<h1>Enter code</h1><form method='post'>"
        "<p><label>Code shown on your device <input name='code' autocomplete='off'>"
        f"</label></p><ul>{buttons}</ul></form>",
    )
