"""Step-up: sending the user back through sign-in when Entra asks for more.

When Conditional Access (MFA, a device policy, an authentication context) blocks an
exchange, Entra answers ``interaction_required`` with a ``claims`` challenge (a JSON
string). The user must sign in again interactively with those claims; the plugin
cannot do that for them. These helpers turn the plugin's ``APIError`` into what the
app needs (Microsoft identity platform, "Claims challenges, claims requests and client
capabilities"):

- ``claims_challenge(error)``: the claims JSON string, or None;
- ``www_authenticate(error)``: the value of a ``WWW-Authenticate`` header for an API
  answering its client 401 (``Bearer ... error="insufficient_claims", claims="<base64>"``);
- ``sign_in_again(error, ...)``: the body for better-auth's ``POST /sign-in/social`` that
  sends the user back to Microsoft with the claims (``additionalParams={"claims": ...}``).

Example::

    try:
        account = await obo.get_obo_token(user_id=uid, application_name="graph")
    except APIError as error:
        body = sign_in_again(error, callback_url="/profile", login_hint=user["email"])
        if body is None:
            raise
        return JSONResponse({"signIn": body}, status_code=401,
                            headers={"WWW-Authenticate": www_authenticate(error) or "Bearer"})
"""

from __future__ import annotations

import base64
import json
from typing import Any

from better_auth import APIError

from ._errors import EntraError, OBOError, ReauthenticationRequiredError

__all__ = ["claims_challenge", "sign_in_again", "www_authenticate"]

#: Codes whose remedy is an interactive sign-in of the user.
_SIGN_IN_CODES = frozenset({"MICROSOFT_REAUTHENTICATION_REQUIRED", "MICROSOFT_ACCOUNT_NOT_FOUND"})
_SIGN_IN_REASONS = frozenset({"interaction_required", "consent_required"})


def _extra(error: APIError | OBOError) -> dict[str, Any]:
    if isinstance(error, APIError):
        return dict(error.extra or {})
    return error.to_extra()


def _code(error: APIError | OBOError) -> str:
    return error.code


def claims_challenge(error: APIError | OBOError) -> str | None:
    """The claims challenge (a JSON string) carried by ``error``, or None.

    Works on the plugin's ``APIError`` and on the library's own ``EntraError``.
    """
    if isinstance(error, EntraError):
        return error.claims
    if isinstance(error, ReauthenticationRequiredError) and error.entra is not None:
        return error.entra.claims
    claims = _extra(error).get("claims")
    if isinstance(claims, dict):  # tolerate a decoded object
        return json.dumps(claims, separators=(",", ":"))
    return claims if isinstance(claims, str) and claims else None


def needs_sign_in(error: APIError | OBOError) -> bool:
    """True when signing the user in again (with claims, when any) is the remedy."""
    if _code(error) in _SIGN_IN_CODES:
        return True
    return _extra(error).get("reason") in _SIGN_IN_REASONS or claims_challenge(error) is not None


def www_authenticate(
    error: APIError | OBOError,
    *,
    realm: str = "",
    authorization_uri: str | None = None,
) -> str | None:
    """A ``WWW-Authenticate`` value telling the API's client to get a token with the claims.

    The claims are base64-encoded, as Microsoft's claims-challenge format has them.
    None when ``error`` carries no claims challenge.
    """
    claims = claims_challenge(error)
    if claims is None:
        return None
    encoded = base64.b64encode(claims.encode()).decode()
    parts = [f'realm="{_quote(realm)}"']
    if authorization_uri:
        parts.append(f'authorization_uri="{_quote(authorization_uri)}"')
    parts.append('error="insufficient_claims"')
    parts.append(f'claims="{encoded}"')
    return "Bearer " + ", ".join(parts)


def sign_in_again(
    error: APIError | OBOError,
    *,
    callback_url: str = "/",
    login_hint: str | None = None,
    error_callback_url: str | None = None,
) -> dict[str, Any] | None:
    """The ``POST /sign-in/social`` body that sends the user back to Microsoft, or None.

    With a claims challenge the claims ride in ``additionalParams`` (Entra reads the
    ``claims`` authorize parameter); consent errors add ``prompt=consent``.
    """
    if not needs_sign_in(error):
        return None
    body: dict[str, Any] = {"provider": "microsoft", "callbackURL": callback_url}
    params: dict[str, str] = {}
    claims = claims_challenge(error)
    if claims is not None:
        params["claims"] = claims
    if _extra(error).get("reason") == "consent_required":
        params["prompt"] = "consent"
    if params:
        body["additionalParams"] = params
    if login_hint:
        body["loginHint"] = login_hint
    if error_callback_url:
        body["errorCallbackURL"] = error_callback_url
    return body


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
