"""``POST /{tenant}/oauth2/v2.0/token``: parse, apply faults, dispatch, render, log.

Response headers follow recorded Entra responses: ``Cache-Control: no-store, no-cache``,
``Pragma: no-cache``, ``x-ms-request-id`` (= the error body's ``trace_id``),
``x-ms-clitelem``. The correlation id echoes the ``client-request-id`` header MSAL
sends (``x-ms-client-request-id`` for azure-core) or is new.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._claims import logged_claims
from ._client_auth import authenticate, basic_credentials
from ._device import device_code_grant
from ._errors import EntraError, render
from ._faults import Fault, Faults
from ._grants import TokenCall, authorization_code, client_credentials, refresh_token
from ._models import TokenRequest
from ._obo import on_behalf_of
from ._tokens import TokenIssuer
from ._wire import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN,
    TENANT_ALIASES,
    new_guid,
)

__all__ = ["entra_headers", "token_endpoint", "token_endpoint_v1"]

_Handler = Callable[[TokenCall], "tuple[dict[str, Any], str | None]"]
GRANTS: dict[str, _Handler] = {
    GRANT_AUTHORIZATION_CODE: authorization_code,
    GRANT_REFRESH_TOKEN: refresh_token,
    GRANT_CLIENT_CREDENTIALS: client_credentials,
    GRANT_JWT_BEARER: on_behalf_of,
    GRANT_DEVICE_CODE: device_code_grant,
}
#: Grants only confidential clients may use.
_CONFIDENTIAL = frozenset({GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER})


def entra_headers(trace_id: str, code: int = 0) -> dict[str, str]:
    return {
        "Cache-Control": "no-store, no-cache",
        "Pragma": "no-cache",
        "Expires": "-1",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "x-ms-request-id": trace_id,
        "x-ms-ests-server": "2.1.0 - emulator",
        "x-ms-clitelem": f"1,{code},0,,",
    }


def _client_id(form: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    basic = basic_credentials(headers)
    return form.get("client_id") or (basic[0] if basic else None)


def _auth_method(form: Mapping[str, str], headers: Mapping[str, str]) -> str:
    if "client_assertion" in form:
        return "private_key_jwt"
    if "client_secret" in form:
        return "client_secret_post"
    return "client_secret_basic" if basic_credentials(headers) else "none"


def _user_oid(issuer: TokenIssuer, form: Mapping[str, str]) -> str | None:
    """The request's user, when it can be told without consuming anything."""
    grant_type, directory = form.get("grant_type"), issuer.directory
    if grant_type == GRANT_JWT_BEARER and form.get("assertion"):
        try:
            oid = jwt.decode(form["assertion"], options={"verify_signature": False}).get("oid")
        except jwt.PyJWTError:
            return None
        return str(oid) if oid else None
    if grant_type == GRANT_AUTHORIZATION_CODE:
        return directory.code_user(form.get("code", ""))
    if grant_type == GRANT_REFRESH_TOKEN:
        grant, _ = directory.refresh_grant(form.get("refresh_token", ""))
        return grant.user_oid if grant else None
    return None


def _dispatch(
    issuer: TokenIssuer, segment: str, form: Mapping[str, str], headers: Mapping[str, str]
) -> tuple[dict[str, Any], str | None]:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise EntraError(900144, parameter="grant_type")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise EntraError(70003, grant_type=grant_type)
    directory = issuer.directory
    tenant = None if segment.lower() in TENANT_ALIASES else directory.find_tenant(segment)
    if tenant is None and segment.lower() not in TENANT_ALIASES:
        raise EntraError(90002, tenant=segment)
    client_id = _client_id(form, headers)
    if not client_id:
        raise EntraError(900144, parameter="client_id")
    app = directory.apps.get(client_id)
    available = app is not None and (
        tenant is None or app.multi_tenant or app.tenant_id == tenant.tenant_id
    )
    if app is None or not available or segment.lower() == "consumers":
        raise EntraError(700016, client_id=client_id, tenant=segment)
    if tenant is None and not app.multi_tenant:
        raise EntraError(50194, client_id=app.client_id, app_name=app.name)
    audiences = [
        f"{issuer.authority}/{seg}/oauth2/{path}"
        for seg in {segment, *((tenant.tenant_id, tenant.domain) if tenant else ())}
        for path in ("v2.0/token", "token")
    ]
    auth = authenticate(
        directory, app, form, headers, audiences=audiences, confidential=grant_type in _CONFIDENTIAL
    )
    call = TokenCall(issuer=issuer, form=form, segment=segment, tenant=tenant, app=app, auth=auth)
    return handler(call)


async def _drop(request: Request) -> Response:
    """Close the socket without a response: reach uvicorn's transport through the
    raw ``send`` the outermost wrapper stored (``_server.capture_send``)."""
    cycle = getattr(request.scope.get("emulator.raw_send"), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:  # pragma: no cover - only under a server other than uvicorn
        raise RuntimeError("drop_connection needs the emulator's uvicorn server")
    transport.abort()
    for _ in range(20):  # let uvicorn notice, so it does not answer 500 on a dead socket
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    cycle.disconnected = True  # type: ignore[union-attr]
    return Response(status_code=500)  # never reaches the wire


async def _fault_response(
    request: Request, fault: Fault, issuer: TokenIssuer, trace_id: str, correlation_id: str
) -> Response:
    if fault.kind == "drop":
        return await _drop(request)
    if fault.aadsts is not None:
        exc = EntraError(fault.aadsts)
        body = render(
            exc,
            authority=issuer.authority,
            trace_id=trace_id,
            correlation_id=correlation_id,
            now=issuer.clock(),
        )
        return JSONResponse(body, exc.status, headers=entra_headers(trace_id, exc.code))
    headers = {
        **entra_headers(trace_id),
        "Content-Type": "application/json; charset=utf-8",
        **fault.headers,
    }
    return Response(fault.body, fault.status, headers=headers)


async def token_endpoint_v1(request: Request) -> Response:
    """``POST /{tenant}/oauth2/token`` (v1): ``resource=`` instead of ``scope``; the answer
    carries ``resource``, ``expires_on`` and ``not_before``, and its numbers are strings
    (v1 endpoint docs). Which token version is issued follows the resource, as on v2."""
    form = await _form(request)
    resource = form.get("resource", "").strip().rstrip("/")
    grant = form.get("grant_type")
    if resource and "scope" not in form and grant != GRANT_AUTHORIZATION_CODE:
        # A code keeps what /authorize asked for; a refresh token may switch resources.
        keep = "openid offline_access " if grant == GRANT_REFRESH_TOKEN else ""
        form["scope"] = f"{keep}{resource}/.default"
    response = await _serve(request, form)
    if response.status_code != 200 or not resource:
        return response
    body = json.loads(bytes(response.body))
    now = int(request.app.state.issuer.clock())
    lifetime = int(body.get("expires_in", 0))
    body |= {
        "expires_in": str(lifetime),
        "ext_expires_in": str(body.get("ext_expires_in", lifetime)),
        "expires_on": str(now + lifetime),
        "not_before": str(now),
        "resource": resource,
    }
    kept = {
        k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
    }
    return JSONResponse(body, 200, headers=kept)


async def token_endpoint(request: Request) -> Response:
    return await _serve(request, await _form(request))


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


async def _serve(request: Request, form: dict[str, str]) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    faults: Faults = request.app.state.faults
    segment = request.path_params["tenant"]
    headers = request.headers
    trace_id = new_guid()
    correlation_id = (
        headers.get("client-request-id") or headers.get("x-ms-client-request-id") or new_guid()
    )
    client_id, user_oid = _client_id(form, headers), _user_oid(issuer, form)
    delay, fault = faults.take(form.get("grant_type"), client_id, user_oid)
    if delay:
        await asyncio.sleep(delay)
    error_code: int | None = None
    if fault is not None:
        response = await _fault_response(request, fault, issuer, trace_id, correlation_id)
        error_code = fault.aadsts
    else:
        try:
            body, user_oid = _dispatch(issuer, segment, form, headers)
            response = JSONResponse(body, 200, headers=entra_headers(trace_id))
        except EntraError as exc:
            error_code = exc.code
            body = render(
                exc,
                authority=issuer.authority,
                trace_id=trace_id,
                correlation_id=correlation_id,
                now=issuer.clock(),
            )
            response = JSONResponse(body, exc.status, headers=entra_headers(trace_id, exc.code))
    issuer.directory.log(
        TokenRequest(
            timestamp=issuer.clock(),
            tenant=segment,
            grant_type=form.get("grant_type"),
            client_id=client_id,
            scopes=tuple(form.get("scope", "").split()),
            user_oid=user_oid,
            auth_method=_auth_method(form, headers),
            status=response.status_code if fault is None or fault.kind != "drop" else 0,
            error_code=error_code,
            correlation_id=correlation_id,
            fault=fault.kind if fault else None,
            claims=logged_claims(form),
        )
    )
    return response
