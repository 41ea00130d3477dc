"""Read the stored Microsoft token's claims, without verifying it, and explain what is wrong.

Nothing here verifies a signature: Entra ID does that when the token is sent as an
assertion (and Graph tokens cannot be verified by third parties at all: their header
carries a ``nonce``, access-tokens doc). These checks only catch, before any request,
the tokens Entra is certain to refuse, and say how to fix the configuration that made
them. Claims: access-token-claims-reference and id-token-claims-reference.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidAssertionError

__all__ = [
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "OIDC_SCOPES",
    "AssertionClaims",
    "application_scope_problems",
    "check_assertion",
    "fingerprint",
    "provider_scope_warnings",
    "read_claims",
    "resource_of",
]

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})

# Microsoft Graph in every national cloud (national-cloud-deployments doc), and its app id.
_GRAPH_AUDIENCES = frozenset(
    {
        GRAPH_RESOURCE,
        GRAPH_APP_ID,
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    }
)
# Hosts of Microsoft's own APIs: an App ID URI there is never a customer's app (an https
# App ID URI must be on a verified domain of the tenant; onmicrosoft.com is deliberately absent).
_MICROSOFT_API_HOSTS = (
    "graph.windows.net",
    "management.azure.com",
    "management.core.windows.net",
    "vault.azure.net",
    "storage.azure.com",
    "database.windows.net",
    "outlook.office.com",
    "outlook.office365.com",
    "sharepoint.com",
    "analysis.windows.net",
    "dynamics.com",
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_MAX_TOKEN_CHARS = 100_000  # real tokens are a few KiB, even with group claims
_EXAMPLE_SCOPE = "access_as_user"


@dataclass(frozen=True, slots=True)
class AssertionClaims:
    """The claims of a token that matter for On-Behalf-Of, read without verification.

    Example::

        claims = read_claims(stored_access_token)
        if claims.is_graph: ...
    """

    aud: str | None
    iss: str | None
    tid: str | None
    oid: str | None
    ver: str | None
    #: ``scp`` split on spaces (delegated scopes).
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    expires_at: float | None
    issued_at: float | None
    not_before: float | None
    idtyp: str | None
    #: ``azp`` (v2), else ``appid`` (v1): the client the token was issued to.
    azp: str | None
    #: ID tokens carry a ``nonce`` claim; access tokens do not (Graph's nonce is in the header).
    nonce_present: bool

    @property
    def is_graph(self) -> bool:
        """True when the audience is Microsoft Graph, in any cloud or spelling."""
        return self.aud is not None and _normalize(self.aud) in _GRAPH_AUDIENCES

    @property
    def is_app_only(self) -> bool:
        """True for an application token: ``idtyp`` is app, or roles without scp."""
        return self.idtyp == "app" or (bool(self.roles) and not self.scopes)

    def remaining(self, now: float) -> float | None:
        """Seconds until ``exp`` (negative once expired), or None without ``exp``."""
        return None if self.expires_at is None else self.expires_at - now


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def read_claims(token: str) -> AssertionClaims:
    """Decode a JWT's payload without verifying it; ``InvalidAssertionError`` if it is not one.

    Example::

        read_claims(account["accessToken"]).tid
    """
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
        raise _malformed("it is empty, not a string, or too long")
    # Only the payload segment is decoded (RFC 7519 §7.2 steps 7-10 without the signature):
    # PyJWT's unverified decode also validates every segment character by character in
    # Python, about 150 µs per token, the largest CPU cost of a miss (BENCHMARKS.md).
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed("it is not a three-part JWS compact token")
    # One spelling per token: Entra writes unpadded base64url only. Decoders also accept
    # padding (and old ones skip stray characters), which would give one token many
    # fingerprints, so many cache keys and exchanges.
    if not all(_SEGMENT.fullmatch(part) for part in parts):
        raise _malformed("a segment is not unpadded base64url")
    segment = parts[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        payload: Any = json.loads(raw)
    except (ValueError, binascii.Error) as exc:  # JSONDecodeError / UnicodeDecodeError too
        raise _malformed(f"it cannot be decoded ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise _malformed("its payload is not a JSON object")
    return AssertionClaims(
        aud=_audience(payload.get("aud")),
        iss=_str(payload, "iss"),
        tid=_str(payload, "tid"),
        oid=_str(payload, "oid"),
        ver=_str(payload, "ver"),
        scopes=_words(payload.get("scp")),
        roles=_words(payload.get("roles")),
        expires_at=_time(payload, "exp"),
        issued_at=_time(payload, "iat"),
        not_before=_time(payload, "nbf"),
        idtyp=_str(payload, "idtyp"),
        azp=_str(payload, "azp") or _str(payload, "appid"),
        nonce_present="nonce" in payload,
    )


def fingerprint(token: str) -> str:
    """A short, stable identifier for a token that reveals nothing: sha256 hex, 32 chars.

    Example::

        fingerprint("eyJ...")  # '9f86d081884c7d659a2feaa0c55ad015'
    """
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def check_assertion(claims: AssertionClaims, *, client_id: str) -> None:
    """Raise ``InvalidAssertionError`` for a token Entra will never accept as this app's assertion.

    Accepts ``aud`` equal to the client id, ``api://<client id>``, or any other custom
    URI (the app's other App ID URIs cannot be known here: Entra decides).

    Example::

        check_assertion(read_claims(token), client_id=settings.client_id)
    """
    aud = claims.aud
    if aud is None:
        raise InvalidAssertionError(
            "The stored Microsoft token has no single audience (aud): it is not an Entra ID "
            "access token; the user must sign in again with Microsoft",
            reason="malformed",
        )
    if claims.is_graph:
        raise InvalidAssertionError(_graph_message(aud, client_id), reason="graph_audience")
    if not _is_self(aud, client_id) and _is_foreign(aud):
        raise InvalidAssertionError(_foreign_message(aud, client_id), reason="audience")
    if not claims.scopes and claims.idtyp != "app" and (claims.nonce_present or not claims.azp):
        raise InvalidAssertionError(
            "The stored Microsoft token is an ID token, not an access token; Entra ID refuses "
            "ID tokens as assertions (AADSTS240002). Store the access token the user signed in "
            f"with, requested for '{client_id}/{_EXAMPLE_SCOPE}'",
            reason="id_token",
        )
    # No scp at all is no user's delegated token either: Entra adds idtyp to app tokens only
    # as an optional claim, and an app granted no role gets no roles claim.
    if claims.is_app_only or not claims.scopes:
        raise InvalidAssertionError(
            "The stored Microsoft token is an application token (client credentials, no user); "
            "On-Behalf-Of needs a delegated token of a signed-in user",
            reason="app_only",
        )


def resource_of(scope: str) -> str | None:
    """The resource a scope belongs to; None for the OpenID Connect scopes.

    Example::

        resource_of("User.Read")                 # 'https://graph.microsoft.com'
        resource_of("api://downstream/.default") # 'api://downstream'
    """
    scope = scope.strip()
    if not scope or scope.lower() in OIDC_SCOPES:
        return None
    authority_end = scope.find("://") + 3 if "://" in scope else 0
    cut = scope.rfind("/")
    if cut < authority_end:
        # No resource prefix: Entra reads a bare name ("User.Read") as a Graph scope.
        return GRAPH_RESOURCE if authority_end == 0 else scope
    resource = scope[:cut]
    return GRAPH_RESOURCE if _normalize(resource) in {GRAPH_RESOURCE, GRAPH_APP_ID} else resource


def provider_scope_warnings(scopes: Sequence[str], *, client_id: str) -> list[str]:
    """Problems in the Microsoft provider's sign-in scopes, each with its fix.

    Example::

        provider_scope_warnings(["openid", "User.Read"], client_id=cid)  # two warnings
    """
    own = f"'{client_id}/{_EXAMPLE_SCOPE}'"
    fix = f"{own} plus 'openid profile email offline_access'"
    resources = {scope: resource_of(scope) for scope in scopes}
    graph = [s for s, r in resources.items() if r is not None and _is_graph_resource(r)]
    api = [s for s, r in resources.items() if r is not None and not _is_graph_resource(r)]
    warnings: list[str] = []
    if graph:
        warnings.append(
            f"The Microsoft provider's scopes include Microsoft Graph scopes ({', '.join(graph)}): "
            "the stored token will be a Graph token, which Entra ID never accepts as an "
            f"On-Behalf-Of assertion. Replace them with {fix} (turn off the provider's default "
            "scopes) and request Graph scopes through an OBO application instead"
        )
    if not api:
        warnings.append(
            "None of the Microsoft provider's scopes is for this app's own API, so the stored "
            f"token cannot be exchanged. Add {own} (expose the scope under 'Expose an API')"
        )
    for scope in api:
        resource = resources[scope] or ""
        if not _is_self(resource, client_id) and _is_foreign(resource):
            warnings.append(
                f"The scope {scope!r} is for another app ({resource}): the stored token will "
                f"carry that app's audience and cannot be exchanged. Request {own} instead"
            )
        elif _normalize(resource) == f"api://{client_id.lower()}":
            warnings.append(
                f"The scope {scope!r} names this app by its api:// URI: refreshing it fails with "
                f"AADSTS90009 (an app requesting a token for itself must use its GUID). "
                f"Write it as '{client_id}/{scope.rsplit('/', 1)[1]}'"
            )
    return warnings


def application_scope_problems(scopes: Sequence[str]) -> list[str]:
    """Problems in one OBO application's scopes (one request can target one resource only).

    Example::

        application_scope_problems(["User.Read", "api://x/read"])  # several resources
    """
    by_resource: dict[str, list[str]] = {}
    for scope in scopes:
        resource = resource_of(scope)
        if resource is not None:
            by_resource.setdefault(_normalize(resource), []).append(scope)
    problems: list[str] = []
    if not by_resource:
        problems.append(
            "The scopes name no downstream API (only OpenID Connect scopes): add the API's "
            "scopes, e.g. 'api://<api-app-id>/.default'"
        )
    if len(by_resource) > 1:
        problems.append(
            f"The scopes span several resources ({', '.join(sorted(by_resource))}): Entra ID "
            "issues a token for one resource per request (AADSTS700022 / AADSTS70011). "
            "Configure one OBO application per resource"
        )
    for resource, named in by_resource.items():
        defaults = [s for s in named if s.rsplit("/", 1)[-1] == ".default"]
        if defaults and len(defaults) < len(named):
            problems.append(
                f"The scopes for {resource} mix '.default' with named scopes (AADSTS70011): "
                f"use either '{defaults[0]}' alone or only the named scopes"
            )
    return problems


# --- helpers ---


def _malformed(why: str) -> InvalidAssertionError:
    return InvalidAssertionError(
        f"The stored Microsoft token is not a readable JWT: {why}. The user must sign in "
        "again with Microsoft",
        reason="malformed",
    )


def _graph_message(aud: str, client_id: str) -> str:
    return (
        f"The stored Microsoft token is a Microsoft Graph token (aud {aud!r}); Entra ID never "
        "accepts one as an On-Behalf-Of assertion (AADSTS500131). This happens when the "
        "Microsoft provider's scopes include User.Read or other Graph scopes. Replace them "
        f"with '{client_id}/<your-scope>' (e.g. '{client_id}/{_EXAMPLE_SCOPE}'; the GUID form: "
        f"'api://{client_id}/...' fails at refresh with AADSTS90009) plus 'openid profile email "
        "offline_access', then have the user sign in again"
    )


def _foreign_message(aud: str, client_id: str) -> str:
    return (
        f"The stored Microsoft token was issued for another API (aud {aud!r}), not for this "
        f"app ({client_id}); Entra ID will refuse it (AADSTS500131). Request "
        f"'{client_id}/{_EXAMPLE_SCOPE}' in the Microsoft provider's scopes instead of that "
        "API's scopes, then have the user sign in again"
    )


def _normalize(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _is_graph_resource(resource: str) -> bool:
    return _normalize(resource) in _GRAPH_AUDIENCES


def _is_self(aud: str, client_id: str) -> bool:
    aud, cid = _normalize(aud), client_id.lower()
    return aud in (cid, f"api://{cid}") or aud.startswith(f"api://{cid}/")


def _is_foreign(aud: str) -> bool:
    """An audience that certainly names another app: a GUID, api://<GUID>, a Microsoft API."""
    aud = _normalize(aud)
    if _GUID.match(aud):
        return True
    if aud.startswith("api://"):
        return bool(_GUID.match(aud[6:].split("/", 1)[0]))
    host = aud.split("://", 1)[-1].split("/", 1)[0]
    return any(host == h or host.endswith("." + h) for h in _MICROSOFT_API_HOSTS)


def _audience(value: object) -> str | None:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) and value else None


def _str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def _words(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def _time(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)  # an int past float range raises OverflowError
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None
