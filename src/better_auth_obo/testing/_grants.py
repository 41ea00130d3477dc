"""The token endpoint's grants other than On-Behalf-Of, and what they share.

authorization_code (v2-oauth2-auth-code-flow.md): single-use codes (AADSTS54005),
PKCE ``S256(code_verifier) == code_challenge`` (AADSTS501481). refresh_token: a new
refresh token on every use (the old one stays valid, as the docs say), valid for any
resource the client has consent for. client_credentials
(v2-oauth2-client-creds-grant-flow.md): ``{resource}/.default`` only, ``roles``
from admin-granted app permissions, no ``refresh_token``/``id_token``/``client_info``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._claims import check_claims, parse_claims
from ._client_auth import ClientAuth
from ._errors import EntraError
from ._models import App, Tenant, User
from ._scopes import GRAPH, RequestedScopes, parse_scopes
from ._state import ADMIN, RefreshGrant
from ._tokens import Grant, TokenIssuer
from ._wire import b64url

__all__ = [
    "TokenCall",
    "authorization_code",
    "client_credentials",
    "delegated_response",
    "refresh_token",
    "stored_user_response",
]

REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCall:
    """A token request that passed client lookup and authentication."""

    issuer: TokenIssuer
    form: Mapping[str, str]
    segment: str  # the tenant path segment as sent
    tenant: Tenant | None  # None for common/organizations/consumers
    app: App
    auth: ClientAuth

    def require(self, name: str) -> str:
        value = self.form.get(name)
        if not value:
            raise EntraError(900144, parameter=name)
        return value

    def tenant_for(self, user_tenant: str) -> Tenant:
        """The tenant a user grant is issued in: the path's, or the user's for aliases."""
        if self.tenant is not None:
            return self.tenant
        return self.issuer.directory.tenants[user_tenant]

    def scopes(self, raw: str, tenant: Tenant) -> RequestedScopes:
        return parse_scopes(
            self.issuer.directory, raw, tenant=tenant.tenant_id, tenant_name=tenant.display_name
        )


def check_user_policies(call: TokenCall, user: User, resource_id: str, *, mfa: bool) -> None:
    """Conditional Access: blocked users (53003), MFA claims challenges (50076/50079)."""
    directory = call.issuer.directory
    if directory.is_blocked(user.oid, call.app.client_id):
        raise EntraError(53003)
    code = directory.mfa_code(user.oid, resource_id)
    if code is not None and not mfa:
        raise EntraError(code, resource=resource_id)


def delegated_permissions(
    call: TokenCall, requested: RequestedScopes, user: User, tenant: Tenant
) -> tuple[str, ...]:
    """Permissions to put in ``scp``; raises 90009 / 65001 where Entra would."""
    resource = requested.resource or GRAPH
    own = resource.client_id == call.app.client_id
    if own and requested.by_uri:
        raise EntraError(90009, client_id=call.app.client_id, app_name=call.app.name)
    if own:
        return requested.permissions or tuple(sorted(resource.scopes))
    granted = call.issuer.directory.consented(
        tenant.tenant_id, call.app.client_id, user.oid, resource.client_id
    )
    if requested.default:
        if not granted and requested.resource is not None:
            raise EntraError(65001, client_id=call.app.client_id, app_name=call.app.name)
        wanted = sorted(granted | set(requested.permissions))
    else:
        wanted = list(requested.permissions)
    if requested.resource is not None and not set(wanted) <= granted:
        raise EntraError(65001, client_id=call.app.client_id, app_name=call.app.name)
    if resource is GRAPH:
        wanted = [*sorted(requested.oidc - {"offline_access"}), *wanted]
    return tuple(wanted)


def _echo(requested: RequestedScopes, permissions: tuple[str, ...]) -> str:
    """The ``scope`` field: requested resource scopes verbatim, ``.default`` expanded."""
    if requested.resource is None:
        return " ".join(sorted(requested.oidc - {"offline_access"}))
    out = [s for s in requested.verbatim if not s.endswith("/.default")]
    for scope in requested.verbatim:
        if scope.endswith("/.default"):
            prefix = scope[: -len(".default")]
            out += [prefix + p for p in permissions if prefix + p not in out]
    return " ".join(out)


def delegated_response(
    call: TokenCall,
    *,
    user: User,
    tenant: Tenant,
    raw_scope: str,
    mfa: bool,
    nonce: str | None = None,
    auth_time: float | None = None,
) -> dict[str, Any]:
    """Check scopes, policies and ``claims``, then mint the access token (+ refresh, id
    token, client_info). ``auth_time``: when the user signed in (None: just now, as for
    a code or device code from an interactive sign-in)."""
    claims = parse_claims(call.form)
    requested = call.scopes(raw_scope, tenant)
    resource = requested.resource or GRAPH
    permissions = delegated_permissions(call, requested, user, tenant)
    check_user_policies(call, user, resource.client_id, mfa=mfa)
    issuer, directory = call.issuer, call.issuer.directory
    signed_in = issuer.clock() if auth_time is None else auth_time
    check_claims(
        claims,
        directory=directory,
        user_oid=user.oid,
        auth_time=signed_in,
        mfa=mfa,
        resource=resource.client_id,
    )
    grant = Grant(
        client=call.app,
        resource=resource,
        tenant_id=tenant.tenant_id,
        user=user,
        permissions=permissions,
        azpacr=call.auth.azpacr,
        mfa=mfa,
        by_uri=requested.by_uri,
        cae=claims.cae,
        acrs=claims.acrs if mfa else (),
    )
    token, lifetime = issuer.access_token(grant)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": _echo(requested, permissions),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }
    if "offline_access" in requested.oidc:
        now = issuer.clock()
        body["refresh_token"] = directory.issue_refresh(
            RefreshGrant(
                client_id=call.app.client_id,
                user_oid=user.oid,
                tenant_id=tenant.tenant_id,
                issued_at=now,
                expires_at=now + REFRESH_TOKEN_LIFETIME,
                mfa=mfa,
                scope=raw_scope,
                auth_time=signed_in,
            )
        )
    if "openid" in requested.oidc:
        body["id_token"] = issuer.id_token(
            user=user,
            client=call.app,
            tenant_id=tenant.tenant_id,
            nonce=nonce,
            email="email" in requested.oidc,
        )
    if call.form.get("client_info") == "1":
        body["client_info"] = issuer.client_info(user)
    return body


def authorization_code(call: TokenCall) -> tuple[dict[str, Any], str]:
    code = call.require("code")
    redirect_uri = call.require("redirect_uri")
    directory = call.issuer.directory
    grant, again = directory.redeem_code(code)
    if grant is None or grant.client_id != call.app.client_id:
        raise EntraError(9002313)
    if again:
        raise EntraError(54005)
    if grant.expires_at <= call.issuer.clock():
        raise EntraError(70008)
    if grant.redirect_uri != redirect_uri:
        raise EntraError(
            70000, reason="The redirect_uri does not match the one used to obtain the code."
        )
    if grant.challenge is not None:
        verifier = call.form.get("code_verifier", "")
        computed = (
            b64url(hashlib.sha256(verifier.encode()).digest())
            if grant.challenge_method == "S256"
            else verifier
        )
        if computed != grant.challenge:
            raise EntraError(501481)
    raw = call.form.get("scope") or " ".join(grant.scopes)
    return stored_user_response(call, grant.user_oid, grant.tenant_id, raw, grant.mfa, grant.nonce)


def refresh_token(call: TokenCall) -> tuple[dict[str, Any], str]:
    directory = call.issuer.directory
    grant, revoked = directory.refresh_grant(call.require("refresh_token"))
    if grant is None or grant.client_id != call.app.client_id:
        raise EntraError(9002313)
    if revoked:
        raise EntraError(50173)
    if grant.expires_at <= call.issuer.clock():
        raise EntraError(70008)
    raw = call.form.get("scope") or grant.scope
    signed_in = grant.issued_at if grant.auth_time is None else grant.auth_time
    return stored_user_response(
        call, grant.user_oid, grant.tenant_id, raw, grant.mfa, None, auth_time=signed_in
    )


def stored_user_response(
    call: TokenCall,
    oid: str,
    tenant_id: str,
    raw: str,
    mfa: bool,
    nonce: str | None,
    *,
    auth_time: float | None = None,
) -> tuple[dict[str, Any], str]:
    """The response for a code's or refresh token's user, in its tenant."""
    user = call.issuer.directory.users[oid]
    tenant = call.issuer.directory.tenants[tenant_id]
    body = delegated_response(
        call, user=user, tenant=tenant, raw_scope=raw, mfa=mfa, nonce=nonce, auth_time=auth_time
    )
    return body, user.oid


def client_credentials(call: TokenCall) -> tuple[dict[str, Any], None]:
    raw = call.require("scope")
    tenant = call.tenant or call.issuer.directory.tenants[call.app.tenant_id]
    words = raw.split()
    if len(words) != 1 or not words[0].endswith("/.default"):
        raise EntraError(1002012, scope=raw)
    requested = call.scopes(raw, tenant)
    resource = requested.resource or GRAPH
    granted = call.issuer.directory.consented(
        tenant.tenant_id, call.app.client_id, ADMIN, resource.client_id
    )
    grant = Grant(
        client=call.app,
        resource=resource,
        tenant_id=tenant.tenant_id,
        user=None,
        permissions=tuple(sorted(granted & resource.roles)),
        azpacr=call.auth.azpacr,
        by_uri=requested.by_uri,
    )
    token, lifetime = call.issuer.access_token(grant)
    body = {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }
    return body, None
