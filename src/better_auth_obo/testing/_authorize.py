"""``/{tenant}/oauth2/v2.0/authorize``: the interactive leg of the auth-code flow.

Without automatic sign-in it serves a plain HTML page with one form per user; a
button press POSTs back here. With ``auto_sign_in`` (or a ``login_hint`` naming a
user while auto sign-in is on) it answers the redirect at once. Errors about the
client or the redirect URI are shown as a page (Entra never redirects those);
the others go back to the redirect URI as ``error``/``error_description``
(v2-oauth2-auth-code-flow.md, "Error response"). Signing in here counts as the user
performing MFA and consenting to the requested scopes; when the request carries
``claims`` or a Conditional Access policy asks for MFA, the page shows an MFA step
(one "Approve" button) after the account is picked. Automatic sign-in shows no page.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ._errors import EntraError
from ._html import html_page
from ._models import App, Tenant, User
from ._scopes import GRAPH, parse_scopes
from ._state import CodeGrant, Directory
from ._tokens import TokenIssuer
from ._wire import TENANT_ALIASES

__all__ = ["authorize", "authorize_v1"]

CODE_LIFETIME = 600  # "codes are short lived, about 10 minutes" (v2-oauth2-auth-code-flow.md)
_EMULATOR_FIELDS = ("emulator_user", "emulator_cancel", "emulator_mfa")


class _Redirect(Exception):
    """An error to send back to the client's redirect URI."""

    def __init__(self, error: EntraError) -> None:
        super().__init__(str(error))
        self.error = error


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return html_page(title, body, status)


def _error_page(exc: EntraError) -> HTMLResponse:
    return _page(
        "Sign in error",
        f"<h1>Sorry, but we're having trouble signing you in.</h1>"
        f"<p id='error'>{escape(str(exc))}</p>"
        "<p class='muted'>Entra ID shows this page instead of going back to the app when "
        "the app's client id, tenant or redirect URI is wrong.</p>",
        400,
    )


def _hidden(params: Mapping[str, str]) -> str:
    return "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>"
        for k, v in params.items()
        if k not in _EMULATOR_FIELDS
    )


def _cancel(action: str, hidden: str) -> str:
    return (
        f"<form method='post' action='{escape(action)}'>{hidden}"
        "<button type='submit' class='secondary' name='emulator_cancel' value='1'>Cancel"
        "</button></form>"
    )


def _answer(params: Mapping[str, str], redirect_uri: str, values: dict[str, str]) -> Response:
    if "state" in params:
        values["state"] = params["state"]
    mode = params.get("response_mode", "query")
    if mode == "form_post":
        inputs = "".join(
            f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>"
            for k, v in values.items()
        )
        return _page(
            "Working...",
            f"<form method='post' action='{escape(redirect_uri)}'>{inputs}"
            "<noscript><button type='submit'>Continue</button></noscript></form>"
            "<script>document.forms[0].submit()</script>",
        )
    sep = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(values)}", 302)


def _check_client(
    directory: Directory, segment: str, params: Mapping[str, str]
) -> tuple[App, Tenant | None, str]:
    alias = segment.lower() in TENANT_ALIASES
    tenant = None if alias else directory.find_tenant(segment)
    if not alias and tenant is None:
        raise EntraError(90002, tenant=segment)
    client_id = params.get("client_id") or ""
    app = directory.apps.get(client_id)
    if app is None or (
        tenant is not None and not app.multi_tenant and app.tenant_id != tenant.tenant_id
    ):
        raise EntraError(700016, client_id=client_id, tenant=segment)
    if alias and not app.multi_tenant:
        raise EntraError(50194, client_id=app.client_id, app_name=app.name)
    redirect_uri = params.get("redirect_uri") or (app.redirect_uris[0] if app.redirect_uris else "")
    scheme = urlsplit(redirect_uri).scheme
    # Lenient by default: any http(s) URI unless the app registered some.
    if (app.redirect_uris and redirect_uri not in app.redirect_uris) or scheme not in (
        "http",
        "https",
    ):
        raise EntraError(50011, redirect_uri=redirect_uri, client_id=app.client_id)
    return app, tenant, redirect_uri


def _choose(directory: Directory, params: Mapping[str, str], candidates: list[User]) -> User | None:
    if "emulator_user" in params:
        return next((u for u in candidates if u.oid == params["emulator_user"]), None)
    hinted = next(
        (u for u in candidates if u.upn.lower() == params.get("login_hint", "").lower()), None
    )
    if directory.auto_user is not None:
        return hinted or next((u for u in candidates if u.oid == directory.auto_user), None)
    if directory.auto_any:
        return hinted or (candidates[0] if candidates else None)
    return None


def _sign_in_page(params: Mapping[str, str], action: str, candidates: list[User]) -> HTMLResponse:
    hidden = _hidden(params)
    hint = params.get("login_hint", "").lower()
    forms = "".join(
        f"<li><form method='post' action='{escape(action)}'>{hidden}"
        f"<button type='submit' name='emulator_user' value='{escape(u.oid)}'"
        f"{' autofocus' if u.upn.lower() == hint else ''}>"
        f"Sign in as {escape(u.display_name)} ({escape(u.upn)})</button></form></li>"
        for u in candidates
    )
    notes = ""
    if hint:
        notes += (
            f"<p class='info' id='login-hint'>The app asked for <b>{escape(hint)}</b>. "
            "Picking another account signs that account in instead.</p>"
        )
    if "claims" in params:
        notes += (
            "<p class='note' id='claims-note'>The app sent a claims challenge: after you pick "
            "an account, this sign-in asks for multi-factor authentication.</p>"
        )
    return _page(
        "Sign in to your account",
        f"<h1>Pick an account</h1>{notes}<ul>{forms}</ul>{_cancel(action, hidden)}",
    )


def _needs_mfa(directory: Directory, params: Mapping[str, str], user: User, tenant: Tenant) -> bool:
    """A claims challenge, or a Conditional Access policy for the requested resource."""
    if "claims" in params:
        return True
    try:
        requested = parse_scopes(
            directory, params["scope"], tenant=tenant.tenant_id, tenant_name=tenant.display_name
        )
    except EntraError:
        return False  # the code step answers the error
    resource = requested.resource or GRAPH
    return directory.mfa_code(user.oid, resource.client_id) is not None


def _mfa_page(params: Mapping[str, str], action: str, user: User) -> HTMLResponse:
    """The MFA step: one button stands in for the authenticator app."""
    hidden = _hidden(params) + (
        f"<input type='hidden' name='emulator_user' value='{escape(user.oid)}'>"
    )
    why = (
        "The app sent a claims challenge (Conditional Access asked for MFA)."
        if "claims" in params
        else "A Conditional Access policy requires MFA for this sign-in."
    )
    return _page(
        "Verify your identity",
        "<h1>Verify your identity</h1>"
        f"<p id='mfa-user'>{escape(user.display_name)} ({escape(user.upn)})</p>"
        f"<p class='note' id='mfa-step'>Multi-factor authentication required. {escape(why)}</p>"
        "<p class='muted'>Real Entra ID asks Microsoft Authenticator, a text code or a "
        "passkey here. The emulator only asks you to approve; its tokens then record MFA.</p>"
        f"<div class='row'><form method='post' action='{escape(action)}'>{hidden}"
        "<button type='submit' class='primary' name='emulator_mfa' value='approved'>"
        f"Approve sign-in</button></form>{_cancel(action, _hidden(params))}</div>",
    )


def _issue_code(
    issuer: TokenIssuer,
    app: App,
    tenant: Tenant,
    user: User,
    params: Mapping[str, str],
    redirect_uri: str,
) -> str:
    directory = issuer.directory
    if directory.is_blocked(user.oid, app.client_id):
        raise _Redirect(EntraError(53003, error="access_denied"))
    try:
        requested = parse_scopes(
            directory, params["scope"], tenant=tenant.tenant_id, tenant_name=tenant.display_name
        )
    except EntraError as exc:
        raise _Redirect(exc) from exc
    resource = requested.resource or GRAPH
    if resource.client_id != app.client_id and requested.permissions:
        directory.grant(
            tenant.tenant_id, app.client_id, user.oid, resource.client_id, requested.permissions
        )
    mfa = "claims" in params or directory.mfa_code(user.oid, resource.client_id) is not None
    challenge = params.get("code_challenge") or None
    return directory.issue_code(
        CodeGrant(
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            user_oid=user.oid,
            tenant_id=tenant.tenant_id,
            scopes=tuple(params["scope"].split()),
            nonce=params.get("nonce"),
            challenge=challenge,
            challenge_method=params.get("code_challenge_method", "plain"),
            expires_at=issuer.clock() + CODE_LIFETIME,
            mfa=mfa,
        )
    )


def _flow(
    issuer: TokenIssuer,
    request: Request,
    params: Mapping[str, str],
    app: App,
    tenant: Tenant | None,
    redirect_uri: str,
) -> Response:
    directory = issuer.directory
    if "emulator_cancel" in params:
        raise _Redirect(EntraError(65004))
    if params.get("response_type") != "code":
        raise _Redirect(
            EntraError(
                70000, error="unsupported_response_type", reason="response_type must be 'code'."
            )
        )
    if not params.get("scope"):
        raise _Redirect(EntraError(900144, parameter="scope"))
    candidates = directory.users_in(tenant.tenant_id if tenant else None)
    user = _choose(directory, params, candidates)
    if user is None:
        if params.get("prompt") == "none":
            raise _Redirect(EntraError(50058))
        return _sign_in_page(params, request.url.path, candidates)
    user_tenant = tenant or directory.tenants[user.tenant_id]
    if not app.multi_tenant and app.tenant_id != user_tenant.tenant_id:
        raise _Redirect(EntraError(700016, client_id=app.client_id, tenant=user_tenant.tenant_id))
    picked = "emulator_user" in params  # on the page, not by automatic sign-in
    if (
        picked
        and params.get("emulator_mfa") != "approved"
        and _needs_mfa(directory, params, user, user_tenant)
    ):
        return _mfa_page(params, request.url.path, user)
    code = _issue_code(issuer, app, user_tenant, user, params, redirect_uri)
    values = {"code": code}
    if params.get("client_info") == "1":
        values["client_info"] = issuer.client_info(user)
    return _answer(params, redirect_uri, values)


async def authorize_v1(request: Request) -> Response:
    """``/{tenant}/oauth2/authorize`` (v1): ``resource=`` names the API instead of
    ``scope``; it asks for the API's consented permissions (as ``/.default``), an ID token
    and a refresh token, as the v1 endpoint always gave them."""
    return await authorize(request, v1=True)


async def authorize(request: Request, *, v1: bool = False) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    if request.method == "POST":
        params: dict[str, str] = {k: str(v) for k, v in (await _form(request)).items()}
    else:
        params = dict(request.query_params)
    resource = params.get("resource", "").strip().rstrip("/")
    if v1 and resource and "scope" not in params:
        params["scope"] = f"openid offline_access {resource}/.default"
    try:
        app, tenant, redirect_uri = _check_client(
            issuer.directory, request.path_params["tenant"], params
        )
    except EntraError as exc:
        return _error_page(exc)
    try:
        return _flow(issuer, request, params, app, tenant, redirect_uri)
    except _Redirect as failure:
        error = failure.error
        return _answer(
            params, redirect_uri, {"error": error.error, "error_description": str(error)}
        )


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))
