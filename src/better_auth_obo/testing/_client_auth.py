"""Client authentication at the token endpoint.

Accepted, as Entra does (v2-oauth2-auth-code-flow.md, certificate-credentials.md):
``client_secret`` in the body, HTTP Basic (RFC 6749 §2.3.1: form-urlencoded id and
secret), or a ``client_assertion`` JWT signed by a registered certificate: RS256 with
``x5t`` or PS256 with ``x5t#S256`` (MSAL pads thumbprints with ``=``: stripped here),
float ``exp``/``iat``, ``nbf`` optional, ``aud`` = the token endpoint URL (else AADSTS700023).
The same assertion (same ``jti``) may be presented again until it expires, as Entra
allows and MSAL relies on (it reuses one for up to 10 minutes): no replay check.
An assertion without a thumbprint from another issuer is a federated token (workload
identity federation): checked against the app's federated credentials (``_federation``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

import jwt

from ._errors import EntraError
from ._federation import check_federated_assertion, is_federated
from ._models import App
from ._state import Directory
from ._wire import CLIENT_ASSERTION_TYPE_JWT, iso_timestamp

__all__ = ["ClientAuth", "authenticate", "basic_credentials"]


@dataclass(frozen=True, slots=True)
class ClientAuth:
    method: str  # client_secret_post | client_secret_basic | private_key_jwt | none
    azpacr: str  # "0" public client, "1" secret, "2" certificate


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (unquote_plus(user), unquote_plus(password)) if sep else None


def authenticate(
    directory: Directory,
    app: App,
    form: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    audiences: list[str],
    confidential: bool,
) -> ClientAuth:
    """Authenticate ``app`` or raise the AADSTS error Entra would."""
    basic = basic_credentials(headers)
    presented = "client_assertion" in form or "client_secret" in form or basic is not None
    if app.public_client and presented:
        raise EntraError(700025)
    if "client_assertion" in form:
        _check_assertion(directory, app, form, audiences)
        return ClientAuth("private_key_jwt", "2")
    secret = form.get("client_secret", basic[1] if basic else None)
    if secret is not None:
        state = directory.secret_state(app.client_id, secret)
        if state == "expired":
            raise EntraError(7000222, client_id=app.client_id)
        if state == "wrong":
            raise EntraError(7000215, client_id=app.client_id)
        return ClientAuth(
            "client_secret_post" if "client_secret" in form else "client_secret_basic", "1"
        )
    if confidential or not app.public_client:
        raise EntraError(7000218)
    return ClientAuth("none", "0")


def _check_assertion(
    directory: Directory, app: App, form: Mapping[str, str], audiences: list[str]
) -> None:
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT:
        raise EntraError(900144, parameter="client_assertion_type")
    assertion = form["client_assertion"]
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise EntraError(50027) from exc
    if is_federated(app, header, unverified):
        check_federated_assertion(directory, app, assertion, header, unverified)
        return
    x5t = str(header.get("x5t", "")).rstrip("=") or None
    x5t_s256 = str(header.get("x5t#S256", "")).rstrip("=") or None
    thumbprint = x5t or x5t_s256 or ""
    key = directory.certificate_key(app.client_id, x5t=x5t, x5t_s256=x5t_s256)
    if key is None or header.get("alg") not in ("RS256", "PS256"):
        raise EntraError(
            700027, reason="The key was not found.", thumbprint=thumbprint, client_id=app.client_id
        )
    if unverified.get("iss") != unverified.get("sub"):
        raise EntraError(50048, client_id=app.client_id)
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[str(header["alg"])],
            audience=audiences,
            issuer=app.client_id,
            # Times are checked below against the emulator's clock, not the wall clock.
            options={
                "require": ["exp", "iss", "sub", "aud"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidIssuerError as exc:
        raise EntraError(50048, client_id=app.client_id) from exc
    except jwt.InvalidAudienceError as exc:  # not this tenant's token endpoint
        raise EntraError(700023) from exc
    except jwt.InvalidSignatureError as exc:
        raise EntraError(
            700027,
            reason="Signature validation failed.",
            thumbprint=thumbprint,
            client_id=app.client_id,
        ) from exc
    except jwt.PyJWTError as exc:
        raise EntraError(
            700027,
            reason=f"Client assertion is not valid: {exc}",
            thumbprint=thumbprint,
            client_id=app.client_id,
        ) from exc
    now = directory.clock()
    exp, nbf = float(claims["exp"]), float(claims.get("nbf", 0))
    if not nbf <= now < exp:  # without nbf Entra reports "valid from" 1970-01-01
        raise EntraError(
            700024, now=iso_timestamp(now), nbf=iso_timestamp(nbf), exp=iso_timestamp(exp)
        )
