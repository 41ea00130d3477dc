"""Metadata: OIDC discovery (v2 and v1), JWKS, instance discovery, error pages.

Field set and order follow a recorded tenant-specific document (v2-protocols-oidc.md).
For ``common``/``organizations``/``consumers`` the issuer keeps the literal
``{tenantid}`` placeholder and the endpoints keep the alias, as the real service does.
A domain in the path answers with the tenant GUID in every URL. The v1 document
(``/{tenant}/.well-known/openid-configuration``) and keys (``/{tenant}/discovery/keys``)
name the v1 issuer, ``https://sts.windows.net/{tid}/``, whatever the authority.
"""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._errors import EntraError, render
from ._html import html_page
from ._tokens import TokenIssuer
from ._wire import TENANT_ALIASES, new_guid

__all__ = ["error_page", "instance_discovery", "jwks", "openid_configuration"]

_CACHE = {"Cache-Control": "max-age=86400, private", "Access-Control-Allow-Origin": "*"}


def _tenant_or_error(issuer: TokenIssuer, segment: str) -> tuple[str, str] | Response:
    """(path segment for URLs, tenant id for the issuer), or Entra's invalid_tenant answer."""
    if segment.lower() in TENANT_ALIASES:
        return segment.lower(), "{tenantid}"
    tenant = issuer.directory.find_tenant(segment)
    if tenant is not None:
        return tenant.tenant_id, tenant.tenant_id
    trace = new_guid()
    body = render(
        EntraError(90002, error="invalid_tenant", tenant=segment),
        authority=issuer.authority,
        trace_id=trace,
        correlation_id=new_guid(),
        now=issuer.clock(),
    )
    return JSONResponse(body, 400, headers={"x-ms-request-id": trace})


def _document(issuer: TokenIssuer, path: str, tid: str, *, version: int) -> dict[str, Any]:
    base = f"{issuer.authority}/{path}"
    v2 = "/v2.0" if version == 2 else ""
    return {
        "token_endpoint": f"{base}/oauth2{v2}/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/discovery{v2}/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer.issuer(tid, version),
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{issuer.authority}/graph/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2{v2}/authorize",
        "device_authorization_endpoint": f"{base}/oauth2{v2}/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2{v2}/logout",
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "msgraph_host": "graph.microsoft.com",
    }


async def openid_configuration(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    found = _tenant_or_error(issuer, request.path_params["tenant"])
    if isinstance(found, Response):
        return found
    version = 2 if request.url.path.split("/")[2] == "v2.0" else 1
    return JSONResponse(_document(issuer, *found, version=version), headers=_CACHE)


async def jwks(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    found = _tenant_or_error(issuer, request.path_params["tenant"])
    if isinstance(found, Response):
        return found
    version = 2 if "/v2.0/" in request.url.path else 1
    # Keys carry a templated issuer, valid for any tenant (access-tokens.md): the v2
    # one on /discovery/v2.0/keys, the v1 one (sts.windows.net) on /discovery/keys.
    # Both endpoints publish the same keys, so rotation shows on both at once.
    return JSONResponse(issuer.keys.jwks(issuer.issuer("{tenantid}", version)), headers=_CACHE)


async def instance_discovery(request: Request) -> Response:
    """``/common/discovery/instance``: only for clients pointed here explicitly."""
    issuer: TokenIssuer = request.app.state.issuer
    host = issuer.authority.split("://", 1)[1]
    return JSONResponse(
        {
            "tenant_discovery_endpoint": (
                f"{issuer.authority}/{{tenant}}/v2.0/.well-known/openid-configuration"
            ),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    )


async def error_page(request: Request) -> Response:
    """The page behind ``error_uri``."""
    code = escape(request.query_params.get("code", ""))
    return html_page(
        f"AADSTS{code}",
        f"<h1>AADSTS{code}</h1><p class='muted'>Real Entra ID explains its error codes at "
        "https://learn.microsoft.com/entra/identity-platform/reference-error-codes</p>",
    )
