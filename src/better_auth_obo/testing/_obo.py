"""The On-Behalf-Of grant (``urn:ietf:params:oauth:grant-type:jwt-bearer``).

Checks in Entra's order (v2-oauth2-on-behalf-of-flow.md, reference-error-codes.md):
malformed assertion (50027), signature / issuer (50013; v2 ``{authority}/{tid}/v2.0``
or v1 ``https://sts.windows.net/{tid}/``), lifetime (500133), id token (240002),
audience = the calling app's client id or App ID URI (500131; a v1 assertion carries
whichever the user's client named the API by), a user
principal, the user's presence in the tenant (50020), then the scopes (500011 /
700022 / 70011), consent (65001), Conditional Access (53003, 50076/50079), then the
``claims`` request (90100, 50173, 50076: ``_claims.py``).

Tenant: on ``/common`` and ``/organizations`` the request is served in the user's
*home* tenant, as Microsoft's MSAL maintainers describe (a guest's token is for the
resource tenant, so that goes wrong for guests: AADSTS50020/65001 follow naturally).
"""

from __future__ import annotations

from typing import Any

from ._errors import EntraError
from ._grants import TokenCall, delegated_response
from ._models import Tenant, User
from ._tokens import BadToken, issued_instant, performed_mfa
from ._wire import iso_timestamp

__all__ = ["on_behalf_of"]


def _assertion_claims(call: TokenCall, assertion: str) -> dict[str, Any]:
    try:
        claims = call.issuer.verify(assertion)
    except BadToken as exc:
        if exc.reason == "malformed":
            raise EntraError(50027) from exc
        raise EntraError(50013, reason=exc.detail) from exc
    now = call.issuer.clock()
    exp, nbf = float(claims.get("exp", 0)), float(claims.get("nbf", 0))
    if not nbf <= now < exp:
        raise EntraError(500133, now=iso_timestamp(now), exp=iso_timestamp(exp))
    return claims


def _check_audience(call: TokenCall, claims: dict[str, Any]) -> None:
    if "scp" not in claims and "roles" not in claims and "idtyp" not in claims:
        raise EntraError(240002)  # an id token: no scp, no roles, no idtyp
    audience = str(claims.get("aud", ""))
    if audience.lower() not in (call.app.client_id.lower(), call.app.app_id_uri.lower()):
        raise EntraError(500131, audience=audience, client_id=call.app.client_id)
    if "scp" not in claims:
        # OBO needs a delegated (user) token; the exact code Entra uses is unconfirmed.
        raise EntraError(
            50013, reason="The assertion is an app-only token; On-Behalf-Of needs a user token."
        )


def _user_in(call: TokenCall, claims: dict[str, Any]) -> tuple[User, Tenant]:
    """The user object in the tenant the request is served in, or AADSTS50020."""
    directory = call.issuer.directory
    user = directory.users.get(str(claims.get("oid")))
    if user is None:
        raise EntraError(
            50020,
            upn=claims.get("preferred_username") or claims.get("upn"),
            idp=claims.get("iss"),
            tenant=call.segment,
            client_id=call.app.client_id,
            app_name=call.app.name,
        )
    home = directory.users.get(user.home_oid or user.oid, user)
    tenant = call.tenant or directory.tenants[home.tenant_id]
    if user.tenant_id == tenant.tenant_id:
        return user, tenant
    for candidate in directory.users_in(tenant.tenant_id):
        if (candidate.home_oid or candidate.oid) == home.oid:
            return candidate, tenant
    raise EntraError(
        50020,
        upn=home.upn,
        idp=call.issuer.issuer(home.tenant_id),
        tenant=tenant.tenant_id,
        client_id=call.app.client_id,
        app_name=call.app.name,
    )


def on_behalf_of(call: TokenCall) -> tuple[dict[str, Any], str]:
    assertion = call.require("assertion")
    raw = call.require("scope")
    if call.require("requested_token_use") != "on_behalf_of":
        raise EntraError(70000, reason="requested_token_use must be 'on_behalf_of'.")
    claims = _assertion_claims(call, assertion)
    _check_audience(call, claims)
    user, tenant = _user_in(call, claims)
    if tenant.tenant_id != call.app.tenant_id and not call.app.multi_tenant:
        raise EntraError(700016, client_id=call.app.client_id, tenant=tenant.tenant_id)
    mfa = performed_mfa(claims)
    # The assertion's issue instant stands for the user's sign-in (CAE ``nbf`` checks).
    body = delegated_response(
        call, user=user, tenant=tenant, raw_scope=raw, mfa=mfa, auth_time=issued_instant(claims)
    )
    return body, user.oid
