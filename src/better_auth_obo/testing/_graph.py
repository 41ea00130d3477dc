"""Protected resources served by the emulator: a fake Microsoft Graph
(``{graph_url}/v1.0/me``) and a generic downstream API per registered app
(``{api_url(app)}/whoami``).

Both validate the bearer token as a real resource does: signature against the
emulator's keys, issuer (v2 ``{authority}/{tid}/v2.0`` or v1
``https://sts.windows.net/{tid}/``), lifetime, audience (an API's client id or App ID
URI; Graph's URL or app id) and ``scp``/``roles``; failures answer in
Graph's error envelope (user-get.md; recorded responses):
``{"error": {"code": "InvalidAuthenticationToken", "message": …, "innerError": {…}}}``.
Both act as CAE-enabled resources: a CAE token issued before the user's last critical
event gets a 401 claims challenge (``_claims.resource_challenge``).

Graph serves ``/v1.0/me`` and ``/v1.0/users/{id | userPrincipalName}`` (user-get.md):
the default property set, or with ``$select`` only the selected ones plus
``@odata.context`` (``…/$metadata#users(a,b)/$entity``); an unknown property is
Graph's 400 "Could not find a property named '…' on type 'microsoft.graph.user'.".
Reading another user needs ``User.ReadBasic.All``/``User.Read.All``/
``Directory.Read.All`` (delegated) or ``User.Read.All``/``Directory.Read.All`` (app).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._claims import CAE_REVOKED_MESSAGE, resource_challenge
from ._models import User
from ._tokens import BadToken, TokenIssuer
from ._wire import GRAPH_APP_ID, GRAPH_ME_SCOPES, GRAPH_RESOURCE, new_guid, pairwise_sub

__all__ = ["downstream_whoami", "graph_me", "graph_user_by_id", "graph_userinfo"]

#: Delegated permissions that read users other than the signed-in one (user-get.md).
_READ_OTHERS = frozenset({"User.ReadBasic.All", "User.Read.All", "Directory.Read.All"})
#: Application permissions that read any user (user-get.md).
_READ_ANY_ROLES = frozenset({"User.Read.All", "Directory.Read.All"})


class _Denied(Exception):
    def __init__(self, status: int, code: str, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.challenge = challenge  # base64 claims of a CAE challenge


def _authenticate_header(issuer: TokenIssuer, denied: _Denied, client_id: str) -> str:
    """``WWW-Authenticate`` as Graph sends it (claims-challenge.md: realm "" goes with the
    common authorize endpoint), with the claims challenge when there is one."""
    header = (
        f'Bearer realm="", authorization_uri="{issuer.authority}/common/oauth2/authorize", '
        f'client_id="{client_id}"'
    )
    if denied.challenge is not None:
        header += (
            f', error_description="{CAE_REVOKED_MESSAGE}", error="insufficient_claims", '
            f'claims="{denied.challenge}"'
        )
    return header


def _envelope(
    request: Request, issuer: TokenIssuer, denied: _Denied, client_id: str = GRAPH_APP_ID
) -> Response:
    request_id = new_guid()
    client_request_id = request.headers.get("client-request-id", request_id)
    inner = {
        "date": issuer.clock_iso(),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }
    headers = {"request-id": request_id, "client-request-id": client_request_id}
    if denied.status == 401:
        headers["WWW-Authenticate"] = _authenticate_header(issuer, denied, client_id)
    body = {"error": {"code": denied.code, "message": denied.message, "innerError": inner}}
    return JSONResponse(body, denied.status, headers=headers)


def _claims(request: Request, issuer: TokenIssuer, audiences: Iterable[str]) -> dict[str, Any]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _Denied(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        claims = issuer.verify(token)
    except BadToken as exc:
        if exc.reason == "malformed":
            raise _Denied(
                401,
                "InvalidAuthenticationToken",
                "CompactToken parsing failed with error code: 80049217",
            ) from exc
        raise _Denied(
            401, "InvalidAuthenticationToken", "Access token validation failure."
        ) from exc
    now = issuer.clock()
    if not float(claims.get("nbf", 0)) <= now < float(claims.get("exp", 0)):
        raise _Denied(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        )
    if str(claims.get("aud", "")).lower() not in {a.lower() for a in audiences}:
        raise _Denied(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        )
    challenge = resource_challenge(issuer.directory, claims)
    if challenge is not None:
        raise _Denied(401, "InvalidAuthenticationToken", CAE_REVOKED_MESSAGE, challenge)
    return claims


def _forbidden() -> _Denied:
    return _Denied(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def graph_user(user: User) -> dict[str, Any]:
    """Graph's default ``user`` properties (user-get.md); ``id`` is the ``oid``."""
    return {
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": user.given_name,
        "jobTitle": None,
        "mail": user.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": user.surname,
        "userPrincipalName": user.upn,
        "id": user.oid,
    }


def _selectable(user: User) -> dict[str, Any]:
    """Non-default ``user`` properties a ``$select`` may name (a few of user-get.md's)."""
    return {
        "accountEnabled": True,
        "city": None,
        "companyName": None,
        "country": None,
        "department": None,
        "employeeId": None,
        "mailNickname": user.upn.split("@")[0],
        "otherMails": [],
        "usageLocation": None,
        "userType": "Guest" if user.is_guest else "Member",
    }


def _user_answer(request: Request, issuer: TokenIssuer, user: User) -> dict[str, Any]:
    """The user as Graph returns it, honouring ``$select``; unknown names are a 400."""
    base = f"{issuer.graph_url}/v1.0/$metadata#users"
    raw = request.query_params.get("$select", "")
    select = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    if not select:
        return {"@odata.context": f"{base}/$entity", **graph_user(user)}
    known = graph_user(user) | _selectable(user)
    unknown = next((name for name in select if name not in known), None)
    if unknown is not None:
        raise _Denied(
            400,
            "BadRequest",
            f"Could not find a property named '{unknown[:64]}' on type 'microsoft.graph.user'.",
        )
    body = {name: known[name] for name in select}
    return {"@odata.context": f"{base}({','.join(select)})/$entity", **body}


def _me(
    request: Request, issuer: TokenIssuer, allowed: frozenset[str] = GRAPH_ME_SCOPES
) -> tuple[User, dict[str, Any]]:
    claims = _claims(request, issuer, (GRAPH_RESOURCE, GRAPH_APP_ID))
    if "scp" not in claims:
        raise _Denied(
            400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    if not allowed & set(str(claims["scp"]).split()):
        raise _forbidden()
    user = issuer.directory.users.get(str(claims.get("oid")))
    if user is None:
        raise _Denied(
            404, "Request_ResourceNotFound", f"Resource '{claims.get('oid')}' does not exist."
        )
    return user, claims


async def graph_me(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    try:
        user, _ = _me(request, issuer)
        return JSONResponse(_user_answer(request, issuer, user))
    except _Denied as denied:
        return _envelope(request, issuer, denied)


def _may_read(claims: dict[str, Any], target: User) -> bool:
    if "scp" not in claims:
        return bool(_READ_ANY_ROLES & set(claims.get("roles") or []))
    scopes = set(str(claims["scp"]).split())
    if target.oid == claims.get("oid"):
        return bool(GRAPH_ME_SCOPES & scopes)
    return bool(_READ_OTHERS & scopes)


def _find_user(issuer: TokenIssuer, key: str, tenant_id: str) -> User:
    """A user of the token's tenant by object id or userPrincipalName, or Graph's 404."""
    directory = issuer.directory
    user = directory.users.get(key) or directory.user_by_upn(key)
    if user is None or user.tenant_id != tenant_id:
        raise _Denied(
            404,
            "Request_ResourceNotFound",
            f"Resource '{key[:128]}' does not exist or one of its queried reference-property "
            "objects are not present.",
        )
    return user


async def graph_user_by_id(request: Request) -> Response:
    """``GET /v1.0/users/{id | userPrincipalName}`` (user-get.md)."""
    issuer: TokenIssuer = request.app.state.issuer
    try:
        claims = _claims(request, issuer, (GRAPH_RESOURCE, GRAPH_APP_ID))
        user = _find_user(issuer, request.path_params["user_id"], str(claims.get("tid")))
        if not _may_read(claims, user):
            raise _forbidden()
        return JSONResponse(_user_answer(request, issuer, user))
    except _Denied as denied:
        return _envelope(request, issuer, denied)


async def graph_userinfo(request: Request) -> Response:
    """OIDC UserInfo, which Entra serves from Graph (``/oidc/userinfo``): a token with the
    ``openid`` scope is enough; ``profile`` adds the names, ``email`` the address (a Graph
    ``User.Read`` token gets them all)."""
    issuer: TokenIssuer = request.app.state.issuer
    try:
        user, claims = _me(request, issuer, GRAPH_ME_SCOPES | {"openid"})
    except _Denied as denied:
        return _envelope(request, issuer, denied)
    scopes = set(str(claims.get("scp", "")).split())
    full = bool(scopes & GRAPH_ME_SCOPES)
    # The `sub` of the ID token the calling app got, not the Graph token's (userinfo.md:
    # "The claims listed here, including sub, are the same claims that the app would see
    # in the ID token issued to the app"); OIDC Core §5.3.2 has clients compare the two.
    client_id = str(claims.get("appid") or claims.get("azp") or "")
    body: dict[str, Any] = {"sub": pairwise_sub(user.oid, client_id)}
    if full or "profile" in scopes:
        body |= {"name": user.display_name, "family_name": user.surname}
        body |= {"given_name": user.given_name}
    if full or "email" in scopes:
        body["email"] = user.mail or user.upn
    return JSONResponse(body)


async def downstream_whoami(request: Request) -> Response:
    """``GET /api/{client_id}/whoami``: who the token says the caller is."""
    issuer: TokenIssuer = request.app.state.issuer
    app = issuer.directory.apps.get(request.path_params["client_id"])
    if app is None:
        return JSONResponse({"error": {"code": "NotFound", "message": "No such API."}}, 404)
    try:
        claims = _claims(request, issuer, (app.client_id, app.app_id_uri))
        scopes = set(str(claims.get("scp", "")).split())
        roles = set(claims.get("roles") or [])
        if not (scopes & set(app.scopes) or roles & set(app.roles)):
            raise _forbidden()
    except _Denied as denied:
        return _envelope(request, issuer, denied, app.client_id)
    keys = (
        "oid",
        "tid",
        "name",
        "preferred_username",
        "upn",
        "azp",
        "appid",
        "aud",
        "iss",
        "ver",
        "scp",
        "roles",
        "idtyp",
        "xms_cc",
        "acrs",
    )
    return JSONResponse({k: claims[k] for k in keys if k in claims})
