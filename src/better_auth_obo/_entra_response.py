"""What the token endpoint answered: a ``TokenResult`` or one of our exceptions.

Pure functions over already-read bytes and headers (no I/O), used by ``_entra.py``.
Success shape: RFC 6749 §5.1 and the OBO doc's "Success response example";
error shape: RFC 6749 §5.2 plus Entra's fields (reference-error-codes, "Handling
error codes in your application"). Classification tables cite the AADSTS code list
(https://login.microsoftonline.com/error?code=<n>). A success is checked before it can
be cached (``parse_success``, then ``check_exchange_answer`` for On-Behalf-Of answers);
``scrub`` keeps secrets, in any spelling, out of every message built here.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._assertion import (
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    AssertionClaims,
    read_claims,
    resource_of,
)
from ._errors import (
    ConsentRequiredError,
    EntraError,
    EntraUnavailableError,
    InteractionRequiredError,
    InvalidAssertionError,
    Reason,
)
from ._retry import MAX_RETRY_AFTER, parse_retry_after

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_RETRY_AFTER",
    "TokenResult",
    "check_exchange_answer",
    "classify",
    "entra_error",
    "invalid_response",
    "is_json_error",
    "json_object",
    "names_other_resource",
    "parse_retry_after",
    "parse_success",
    "response_ids",
    "response_secrets",
    "scrub",
    "unavailable_error",
    "unexpected_answer",
]

#: Token responses are a few KiB; anything past this is refused unread.
MAX_BODY_BYTES = 1 << 20
# Entra's lifetimes are 60-90 min, 20-28 h with CAE (access-tokens doc); 10 days is absurd.
_MAX_EXPIRES_IN = 10 * 24 * 3600
_DESCRIPTION_LIMIT = 2000
_FIELD_LIMIT = 256
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.?[A-Za-z0-9_-]*")
_AADSTS = re.compile(r"AADSTS(\d{4,9})")
_TRAILER = re.compile(r"\s*Trace ID:.*$", re.DOTALL)
_TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
# C0 and C1 controls, DEL and any white space: never part of a token or token_type.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
# Characters no form or URL encoder changes: a secret made only of these has one spelling.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._")
_WORD = re.compile(r"^[a-z_]{1,64}$")
_SHORT_WORD = re.compile(r"^[A-Za-z0-9_-]{1,16}$")  # a token_type short enough to show
_TOKENISH = re.compile(r"^[A-Za-z0-9._~+/=-]{16,}$")

# --- classification (order: consent, interaction, codes, then the OAuth `error`) ---

_CONSENT_CODES = frozenset({65001})  # user or admin has not consented
# MFA / Conditional Access / password: the user must act in an interactive sign-in.
_INTERACTION_CODES = frozenset({50055, 50072, 50074, 50076, 50078, 50079, 50158})
_INTERACTION_SUBERRORS = frozenset({"basic_action", "additional_action"})
_CODE_REASONS: Mapping[int, Reason] = {
    # The assertion (or refresh token) itself is unusable: expired, revoked, wrong
    # audience, bad signature, malformed, an ID token.
    **dict.fromkeys(
        (500133, 50013, 500131, 50027, 240002, 70008, 700082, 50173, 70043, 700084, 50132, 50133),
        "assertion_invalid",
    ),
    # The app's own credential: wrong / expired secret, none sent, bad or expired
    # client assertion, certificate (700027, 700030, 50048, 7000214, 1000502).
    **dict.fromkeys(
        (7000215, 7000222, 7000218, 700027, 700025, 700024, 50012, 700030, 50048, 7000214, 1000502),
        "client_credential_invalid",
    ),
    # A federated assertion no federated identity credential of the app matches (70021), by
    # issuer, audience or subject (700211, 700212, 700213): workload-identity-federation.
    **dict.fromkeys((70021, 700211, 700212, 700213), "client_credential_invalid"),
    # The registration, tenant or scopes are wrong: retrying cannot help.
    **dict.fromkeys(
        (700016, 70011, 700022, 500011, 90002, 50194, 90009, 50020, 900144, 70003, 65005, 7000112),
        "configuration",
    ),
    # An administrator's policy refuses this user: Conditional Access, device, locked, disabled.
    **dict.fromkeys(
        (53003, 53000, 530003, 53001, 53004, 50131, 50053, 50057, 50105), "blocked_by_policy"
    ),
}
_ERROR_REASONS: Mapping[str, Reason] = {
    "interaction_required": "interaction_required",
    "consent_required": "consent_required",
    "invalid_client": "client_credential_invalid",
    "unauthorized_client": "configuration",
    "invalid_scope": "configuration",
    "invalid_resource": "configuration",
    "unsupported_grant_type": "configuration",
}
_REASON_CLASSES: Mapping[str, type[EntraError]] = {
    "interaction_required": InteractionRequiredError,
    "consent_required": ConsentRequiredError,
}
_REASON_HINTS: Mapping[str, str] = {
    "interaction_required": "The user must sign in again interactively (MFA, Conditional Access).",
    "consent_required": (
        "Grant consent for the downstream scopes: admin consent for this app, or list the "
        "client app in the API's knownClientApplications / pre-authorized applications."
    ),
    "assertion_invalid": (
        "The user's Microsoft token cannot be used (expired, revoked, wrong audience or not "
        "an access token): refresh it, or have the user sign in again."
    ),
    "client_credential_invalid": (
        "Check the app's client credential: the secret value (not its ID) and its expiry, "
        "or the certificate registered on the app."
    ),
    "configuration": "Check the app registration, the tenant in the authority, and the scopes.",
    "blocked_by_policy": (
        "A Conditional Access or account policy blocks this user; an administrator can find "
        "the sign-in by its trace ID."
    ),
}
_CODE_HINTS: Mapping[int, str] = {
    500131: (
        "The token's audience must be this app: sign in with '{client_id}/<scope>', "
        "not Graph scopes such as User.Read."
    ),
    500133: "The token expired: refresh the user's Microsoft token before the exchange.",
    240002: "An ID token was sent: the assertion must be the user's access token for this app.",
    7000215: "The client secret is wrong: use the secret's value, not its ID.",
    7000222: "The client secret has expired: create a new one in the app registration.",
    70021: (
        "No federated identity credential of the app matches the federated token: add one "
        "naming its issuer, subject and audience (api://AzureADTokenExchange)."
    ),
    700211: "No federated identity credential of the app names the federated token's issuer.",
    700212: "The federated token's audience must be one its federated credential lists.",
    700213: "No federated identity credential of the app names the federated token's subject.",
    700016: "The client ID is not registered in this tenant: check it and the authority's tenant.",
    700022: "All scopes of one request must belong to one resource: split the application.",
    50194: "A single-tenant app cannot use /common: put the tenant ID in the authority.",
    90009: (
        "The app requests a token for itself: write its scope as '{client_id}/<scope>', "
        "not 'api://{client_id}/<scope>'."
    ),
}


def classify(
    error: str, codes: tuple[int, ...], suberror: str | None, claims: str | None
) -> Reason:
    """Map Entra's fields to a stable reason; see ``EntraError`` for the list."""
    if _CONSENT_CODES.intersection(codes) or "consent_required" in (suberror, error):
        return "consent_required"
    if claims or suberror in _INTERACTION_SUBERRORS or _INTERACTION_CODES.intersection(codes):
        return "interaction_required"
    for code in codes:
        if code in _CODE_REASONS:
            return _CODE_REASONS[code]
    return _ERROR_REASONS.get(error, "rejected")


# --- success ---


@dataclass(frozen=True, slots=True)
class TokenResult:
    """A token Entra ID issued; the repr never shows a token.

    Example::

        result = await client.exchange(assertion, ["api://downstream/.default"])
        headers = {"authorization": f"{result.token_type} {result.access_token}"}
    """

    access_token: str = field(repr=False)
    #: Epoch seconds: the clock at the start of the request plus ``expires_in``.
    expires_at: float
    #: Granted scopes (the response's ``scope``), else the requested ones.
    scopes: tuple[str, ...]
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    ext_expires_at: float | None = None


def parse_success(
    data: Mapping[str, Any] | None, status: int, requested: tuple[str, ...], started: float
) -> TokenResult:
    """Validate a 2xx body into a ``TokenResult``; anything off is ``invalid_response``.

    Checked for every grant: the shape, ``token_type`` Bearer, no control character in
    a token. What only an On-Behalf-Of answer must satisfy is ``check_exchange_answer``.
    """
    if data is None:
        raise invalid_response(
            f"Entra ID answered HTTP {status} with a body that is not a JSON object", status
        )
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise invalid_response(
            f"Entra ID answered HTTP {status} without a usable access_token", status
        )
    _refuse_unsafe(data, status)
    expires_in = _seconds(data.get("expires_in"))
    # At least 1 s: a token already expired on arrival is no token (and expiries are
    # stored in whole seconds, so anything shorter would be stored in the past).
    if expires_in is None or expires_in < 1:
        raise invalid_response(
            f"Entra ID answered HTTP {status} without a valid expires_in "
            f"(a number of seconds from 1 to {_MAX_EXPIRES_IN})",
            status,
        )
    ext_expires_at = None
    if data.get("ext_expires_in") is not None:
        ext = _seconds(data["ext_expires_in"])
        if ext is None:
            raise invalid_response(
                f"Entra ID answered HTTP {status} with an invalid ext_expires_in", status
            )
        ext_expires_at = started + ext
    scope = _optional_text(data, "scope", status)
    token_type = _token_type(data, status)
    return TokenResult(
        access_token=access_token,
        expires_at=started + expires_in,
        scopes=tuple(scope.split()) if scope and scope.split() else requested,
        token_type=token_type,
        refresh_token=_optional_text(data, "refresh_token", status),
        id_token=_optional_text(data, "id_token", status),
        ext_expires_at=ext_expires_at,
    )


def _seconds(value: object) -> float | None:
    if isinstance(value, str):
        text = value.strip()  # the v1 endpoint sent numbers as strings
        if not (text.isascii() and text.isdigit() and len(text) <= 9):
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not 0 <= value <= _MAX_EXPIRES_IN:
        return None
    return float(value)


def _optional_text(data: Mapping[str, Any], key: str, status: int) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise invalid_response(
        f"Entra ID answered HTTP {status} with a {key} that is not a string", status
    )


def _token_type(data: Mapping[str, Any], status: int) -> str:
    """``Bearer`` in any case, else refused: also when missing.

    RFC 6749 §5.1 makes ``token_type`` required and Entra ID always sends it; another
    type (``pop``, ``MAC``) would be sent downstream as a bearer token and fail there,
    and an answer without one did not come from Entra's token endpoint as documented.
    """
    token_type = _optional_text(data, "token_type", status)
    if token_type is None:
        raise invalid_response(
            f"Entra ID answered HTTP {status} without a token_type (Bearer is required)", status
        )
    if token_type.lower() != "bearer":
        shown = f" {token_type!r}" if _SHORT_WORD.match(token_type) else ""
        raise invalid_response(
            f"Entra ID answered HTTP {status} with token_type{shown} other than Bearer: "
            "only bearer tokens can be sent downstream",
            status,
        )
    return token_type


def _refuse_unsafe(data: Mapping[str, Any], status: int) -> None:
    """No control character or white space in a token or its type.

    Tokens are base64url or opaque printable text; a CR/LF would split the
    ``Authorization`` header these values end up in. The message never shows the value.
    """
    for key in (*_TOKEN_FIELDS, "token_type"):
        value = data.get(key)
        if isinstance(value, str) and _UNSAFE.search(value):
            raise invalid_response(
                f"Entra ID answered HTTP {status} with a {key} that contains control "
                "characters or white space",
                status,
            )


# --- what an On-Behalf-Of answer may hold ---

# Microsoft Graph in every cloud and spelling: the same list as ``AssertionClaims.is_graph``
# (tests/test_entra_answer.py checks that the two agree).
_GRAPH_NAMES = frozenset(
    {
        GRAPH_RESOURCE,
        GRAPH_APP_ID,
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    }
)
_GUID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://[a-z0-9._~:/-]{1,120}$")


def check_exchange_answer(
    result: TokenResult, requested: tuple[str, ...], *, client_id: str, status: int
) -> None:
    """Refuse an On-Behalf-Of answer for another resource than requested, or an ID token.

    Runs before the result leaves the client, so nothing refused is ever cached. The
    refresh grant's answer is not checked here: its access token is the user's token
    for this app, which ``check_assertion`` inspects before it is used.
    """
    wanted = _resources(requested)
    if not wanted:
        return  # only OpenID Connect scopes: nothing to compare with
    for granted in _resources(result.scopes):
        if _foreign(granted, wanted):
            raise invalid_response(
                f"Entra ID answered HTTP {status} with scopes for another resource "
                f"({_shown(granted)}) than the one requested ({', '.join(sorted(wanted))})",
                status,
            )
    try:
        claims = read_claims(result.access_token)
    except InvalidAssertionError:
        return  # an opaque access token: its audience cannot be read, and need not be
    if claims.aud is not None and _foreign(claims.aud, wanted):
        raise invalid_response(
            f"Entra ID answered HTTP {status} with an access token for another audience "
            f"({_shown(claims.aud)}) than the resource requested ({', '.join(sorted(wanted))})",
            status,
        )
    if _is_id_token(claims, client_id):
        raise invalid_response(
            f"Entra ID answered HTTP {status} with an ID token in place of the access token",
            status,
        )


def _is_id_token(claims: AssertionClaims, client_id: str) -> bool:
    """True for an ID token: a ``nonce`` claim, or issued to this app with no permission.

    Only ID tokens carry ``nonce`` in the payload (Graph access tokens carry theirs in the
    header, which is not read here). Without a nonce, an ID token is still recognised by
    its audience, the client itself (``aud`` = our client id), with neither ``scp`` nor
    ``roles``: an On-Behalf-Of access token is for a downstream API and always carries
    the delegated ``scp``. The token version is not consulted: v1 ID tokens look alike.
    """
    if claims.nonce_present:
        return True
    aud = _normalize(claims.aud or "").removeprefix("api://")
    return not claims.scopes and not claims.roles and aud == client_id.lower()


def names_other_resource(name: str, requested: str) -> bool:
    """True when ``name`` (a token's ``aud`` or a granted scope's resource) certainly
    names another resource than ``requested`` (a requested scope's resource).

    Conservative, because one resource has several names that cannot all be mapped to
    each other here: a v2 token's ``aud`` is always the API's client-id GUID, while it
    may be requested by a custom App ID URI (``https://contoso.com/api``) that only the
    tenant's directory could resolve. So only certain mismatches count: Graph against
    not Graph; a resource named by its GUID (``<GUID>`` or ``api://<GUID>``) against
    any other name; a custom URI against another URI (a GUID is accepted there).

    Example::

        names_other_resource("https://evil.example", "api://downstream")  # True
        names_other_resource("<the API's GUID>", "https://contoso.com/api")  # False
    """
    name, requested = _normalize(name), _normalize(requested)
    if name in _GRAPH_NAMES or requested in _GRAPH_NAMES:
        return (name in _GRAPH_NAMES) != (requested in _GRAPH_NAMES)
    guid = _guid_of(requested)
    if guid is not None:
        return _guid_of(name) != guid
    return "://" in name and name != requested


def _foreign(name: str, wanted: set[str]) -> bool:
    return all(names_other_resource(name, resource) for resource in wanted)


def _resources(scopes: tuple[str, ...]) -> set[str]:
    return {r for r in map(resource_of, scopes) if r is not None}


def _normalize(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _guid_of(name: str) -> str | None:
    """The GUID of ``<GUID>`` or ``api://<GUID>`` (normalized), else None."""
    guid = name.removeprefix("api://")
    return guid if _GUID.match(guid) else None


def _shown(name: str) -> str:
    """A resource name fit for a message: a short URI or a GUID, else a placeholder."""
    lowered = _normalize(name)
    shaped = _URI.match(lowered) or _GUID.match(lowered)
    return repr(name) if shaped and not _JWT_LIKE.search(name) else "not shown"


# --- errors ---


def invalid_response(message: str, status: int | None) -> EntraError:
    """An answer that is neither a token nor an OAuth error."""
    return EntraError(
        message, error="invalid_response", reason="invalid_response", status_code=status
    )


def entra_error(
    data: Mapping[str, Any],
    *,
    status: int,
    headers: Mapping[str, str],
    request_id: str,
    secrets: frozenset[str],
    what: str,
    client_id: str,
) -> EntraError:
    """Build the classified exception for an OAuth error body (``data["error"]`` is a string)."""
    secrets = secrets | response_secrets(data)
    error = scrub(data["error"], secrets)[:_FIELD_LIMIT]
    description = _text(data, "error_description", secrets, _DESCRIPTION_LIMIT)
    codes = _codes(data.get("error_codes"), description)
    suberror = _text(data, "suberror", secrets)
    claims = _claims(data.get("claims"), secrets)
    reason = classify(error, codes, suberror, claims)
    trace_id, correlation_id = response_ids(data, headers, request_id)
    return _REASON_CLASSES.get(reason, EntraError)(
        _message(what, error, codes, description, reason, client_id),
        error=error,
        error_description=description,
        error_codes=codes,
        timestamp=_text(data, "timestamp", secrets),
        trace_id=trace_id,
        correlation_id=correlation_id,
        error_uri=_text(data, "error_uri", secrets),
        suberror=suberror,
        claims=claims,
        status_code=status,
        reason=reason,
    )


def _message(
    what: str,
    error: str,
    codes: tuple[int, ...],
    description: str | None,
    reason: str,
    client_id: str,
) -> str:
    label = ", ".join([error, *(f"AADSTS{c}" for c in codes)])
    detail = ""
    if description:
        # "AADSTS500133: Assertion is not ... Trace ID: ... Timestamp: ..." -> the sentence alone.
        detail = ": " + _TRAILER.sub("", re.sub(r"^AADSTS\d+:\s*", "", description)).strip()
    hint = next((_CODE_HINTS[c] for c in codes if c in _CODE_HINTS), _REASON_HINTS.get(reason, ""))
    message = f"Entra ID rejected the {what} ({label}){detail}"
    return f"{message.rstrip('.')}. {hint.format(client_id=client_id)}".rstrip()


def _codes(value: object, description: str | None) -> tuple[int, ...]:
    if isinstance(value, list):
        codes = tuple(c for c in value if type(c) is int and 0 <= c < 10**10)
        if codes:
            return codes
    # No usable error_codes: fall back to the "AADSTSnnnn:" prefix of the description.
    return tuple(int(c) for c in _AADSTS.findall(description or "")[:5])


def _claims(value: object, secrets: frozenset[str]) -> str | None:
    # The claims challenge is a JSON *string* (claims-challenge doc); accept an object too.
    if isinstance(value, (dict, list)):
        try:
            value = json.dumps(value, separators=(",", ":"))
        except (ValueError, RecursionError):
            return None
    return scrub(value, secrets) if isinstance(value, str) and value else None


def _text(
    data: Mapping[str, Any], key: str, secrets: frozenset[str], limit: int = _FIELD_LIMIT
) -> str | None:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        return None
    value = scrub(value, secrets)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def response_ids(
    data: Mapping[str, Any] | None, headers: Mapping[str, str], request_id: str
) -> tuple[str | None, str]:
    """``(trace_id, correlation_id)`` from the body, else the headers, else our request id.

    ``x-ms-request-id`` equals the body's ``trace_id``; Entra echoes ``client-request-id``.
    Only id-shaped values are kept, so nothing else can ride along into logs.
    """
    data = data or {}
    trace = _id(data.get("trace_id")) or _id(headers.get("x-ms-request-id"))
    correlation = _id(data.get("correlation_id")) or _id(headers.get("client-request-id"))
    return trace, correlation or request_id


def _id(value: object) -> str | None:
    return value if isinstance(value, str) and _ID.match(value) else None


def unavailable_error(
    status: int,
    headers: Mapping[str, str],
    data: Mapping[str, Any] | None,
    request_id: str,
    now: float,
) -> EntraUnavailableError:
    """429, 5xx or ``temporarily_unavailable``: worth retrying, after ``Retry-After`` if sent."""
    trace_id, correlation_id = response_ids(data, headers, request_id)
    retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    detail = f"HTTP {status}"
    if data is not None and is_json_error(data) and _WORD.match(data["error"]):
        detail += f", {data['error']}"  # an OAuth error code only, never free text
    wait = f"; retry after {retry_after:.0f} s" if retry_after is not None else "; try again later"
    return EntraUnavailableError(
        f"Entra ID is unavailable ({detail}){wait}",
        retry_after=retry_after,
        status_code=status,
        trace_id=trace_id,
        correlation_id=correlation_id,
    )


def unexpected_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    data: Mapping[str, Any] | None,
    secrets: frozenset[str],
) -> str:
    """Describe a non-2xx answer that is not an OAuth error: a short, sanitized excerpt."""
    what = f"Entra ID answered HTTP {status} without an OAuth error body"
    ctype = headers.get("content-type", "").split(";")[0].strip()
    if ctype:
        what += f" ({scrub(ctype, secrets)[:64]})"
    if data is not None:  # JSON of another shape: its fields may be anything, show none
        return what
    excerpt = _excerpt(body, secrets)
    return f"{what}: {excerpt!r}" if excerpt else what


def _excerpt(body: bytes, secrets: frozenset[str], limit: int = 160) -> str:
    text = body[:4096].decode("utf-8", "replace")
    # Drop markup and anything unprintable, so an HTML error page reads as one short line.
    out: list[str] = []
    in_tag = False
    for char in text:
        if char == "<":
            in_tag = True
        elif char == ">":
            in_tag = False
        elif not in_tag:
            out.append(char if char.isprintable() else " ")
    # A long unbroken run of token characters may be a token we never saw: drop it.
    words = ("[redacted]" if _TOKENISH.match(w) else w for w in "".join(out).split())
    return scrub(" ".join(words), secrets)[:limit]


# --- body helpers ---


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (empty, not JSON, not an object, too deep)."""
    if not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def is_json_error(data: Mapping[str, Any] | None) -> bool:
    """True for an OAuth error body: a JSON object with a non-empty string ``error``."""
    if data is None:
        return False
    error = data.get("error")
    return isinstance(error, str) and bool(error)


def response_secrets(data: Mapping[str, Any] | None) -> frozenset[str]:
    """Token values in a response body: an echoed token must not reach a message either."""
    if data is None:
        return frozenset()
    values = (data.get(key) for key in _TOKEN_FIELDS)
    return frozenset(v for v in values if isinstance(v, str) and len(v) >= 6)


def scrub(text: str, secrets: frozenset[str]) -> str:
    """Replace the given secret values and anything shaped like a JWT with ``[redacted]``.

    Each secret in every spelling: Entra may echo a parameter as it travelled, form-
    or percent-encoded (``Wz%2Bq``, ``%2b``, ``+`` for a space), not only as sent. The
    longest secrets go first, so that one containing another is removed whole.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "[redacted]")
        # Only a secret with a character an encoder changes has other spellings.
        if ("%" in text or "+" in text) and not _UNRESERVED.issuperset(secret):
            text = _spellings(secret).sub("[redacted]", text)
    return _JWT_LIKE.sub("[redacted]", text)


def _spellings(secret: str) -> re.Pattern[str]:
    """The secret with each reserved character raw or percent-encoded (UTF-8; ``+`` for a
    space), regardless of case: what ``quote``, ``quote_plus`` and other encoders give
    (``%2B`` or ``%2b``). Matching letters in any case too only ever redacts more."""
    parts: list[str] = []
    for char in secret:
        if char in _UNRESERVED:
            parts.append(re.escape(char))
            continue
        spelled = [re.escape(char), "".join(f"%{b:02x}" for b in char.encode())]
        if char == " ":
            spelled.append(r"\+")
        parts.append(f"(?:{'|'.join(spelled)})")
    return re.compile("".join(parts), re.IGNORECASE)
