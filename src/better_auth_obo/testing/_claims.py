"""The ``claims`` request parameter, client capabilities and Continuous Access Evaluation.

Everything the emulator does with claims lives here; the grants and the protected
resources call in.

Token requests (claims-challenge.md, "Claims challenges, claims requests and client
capabilities"): ``claims`` is an OpenID Connect claims request, a JSON *object* whose
``access_token`` member asks for claims in the access token.

* Client capabilities: ``{"access_token":{"xms_cc":{"values":["cp1"]}}}`` says the
  client handles claims challenges. ``cp1`` is the only known value; values are
  case-insensitive. The access token then carries ``"xms_cc": ["cp1"]`` (real Entra
  adds it only for resources that request the optional claim; Graph and every API
  the emulator serves act as CAE-enabled resources, so it always does).
* A CAE token is long-lived: "Token lifetime increases to long-lived, up to 28 hours,
  in CAE sessions" and "the configurable token lifetime policy isn't honored for
  clients negotiating CAE-aware sessions" (concept-continuous-access-evaluation.md,
  "Token lifetime"). So ``EntraEmulator(cae_token_lifetime=...)`` (default 24 h) and
  not ``set_token_lifetime`` decides it.
* Challenge claims, the ones an API or Entra sent back and the client now replays
  (MSAL merges its capabilities into them: ``_merge_claims_challenge_and_capabilities``):

  - ``nbf`` (``{"essential":true,"value":"<epoch seconds>"}``, the CAE revocation
    challenge, app-resilience-continuous-access-evaluation.md): the user must have
    authenticated at or after that instant. A non-interactive grant whose sign-in is
    older cannot satisfy it; the CAE flow says Entra "prompts the user to
    reauthenticate in this case". Answer: ``invalid_grant`` AADSTS50173
    ("FreshTokenNeeded - The provided grant has expired due to it being revoked, and a
    fresh auth token is needed ... Have the user sign in again", reference-error-codes.md)
    with ``suberror: basic_action`` (MSAL's UiRequiredExceptionClassification: "can be
    resolved by user interaction during the interactive authentication flow") and the
    challenge echoed in ``claims`` for the client's next /authorize. The suberror is
    the emulator's choice: no recorded Entra answer for this case was found.
  - ``acrs`` (Conditional Access authentication context, e.g. ``c1``) and ``capolids``
    (Conditional Access policy ids, the emulator's own MFA challenge): satisfied when
    the sign-in performed MFA; else ``interaction_required`` AADSTS50076 with the
    challenge in ``claims``, as Entra's MFA claims challenge. A satisfied ``acrs``
    appears in the token as ``"acrs": [...]`` (access-token-claims-reference.md).

  A malformed ``claims`` (not JSON, not an object, too long, too deep, a wrong type)
  is ``invalid_request`` AADSTS90100 ("InvalidRequestParameter - The parameter is
  empty or not valid.", reference-error-codes.md): no recorded Entra answer for a bad
  ``claims`` was found, and that is the documented code for an invalid parameter.

Resources (claims-challenge.md, "Claims challenge header format"; recorded Graph
responses in Microsoft SDK test fixtures): after a critical event for a user
(``EntraEmulator.cae_event`` / ``revoke_sessions``), a CAE token issued before it gets
``401`` with ``WWW-Authenticate: Bearer realm="", authorization_uri=
"{authority}/common/oauth2/authorize", client_id=..., error_description="Continuous
access evaluation resulted in challenge with result: InteractionRequired and code:
TokenIssuedBeforeRevocationTimestamp", error="insufficient_claims", claims="<standard
base64, padded, of {"access_token":{"nbf":{"essential":true, "value":"<event
second>"}}}>"``. A token without ``cp1`` keeps working until it expires.

Sub-second ordering: JWT times are whole seconds, but a test revokes and re-signs in
within one second. The emulator stamps each access token's ``uti`` with its exact
issue instant (``_tokens.issued_instant``) and keeps each event's exact instant, so a
token minted just before an event and one minted just after it are told apart; an
``nbf`` naming the event's second means the event itself.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import EntraError
from ._state import Directory
from ._tokens import issued_instant

__all__ = [
    "CAE_REVOKED_MESSAGE",
    "ClaimsRequest",
    "check_claims",
    "logged_claims",
    "parse_claims",
    "resource_challenge",
]

#: Longer ``claims`` values are refused: real ones are a few hundred bytes.
MAX_CLAIMS_LENGTH = 4096
#: Known client capabilities (claims-challenge.md: "The only currently known value is cp1").
KNOWN_CAPABILITIES = frozenset({"cp1"})
#: Graph's description of a CAE revocation challenge (recorded responses).
CAE_REVOKED_MESSAGE = (
    "Continuous access evaluation resulted in challenge with result: InteractionRequired "
    "and code: TokenIssuedBeforeRevocationTimestamp"
)


@dataclass(frozen=True, slots=True)
class ClaimsRequest:
    """What a token request's ``claims`` asks of the access token."""

    capabilities: tuple[str, ...] = ()  # lower-cased known values of xms_cc
    nbf: float | None = None
    acrs: tuple[str, ...] = ()
    capolids: tuple[str, ...] = ()
    challenge: str | None = None  # the challenge part (no xms_cc), compact JSON, to echo

    @property
    def cae(self) -> bool:
        return "cp1" in self.capabilities


NO_CLAIMS = ClaimsRequest()


def _bad(reason: str) -> EntraError:
    # Fixed reasons only: never echo the client's value into the message.
    return EntraError(90100, parameter="claims", reason=reason)


def _load(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_CLAIMS_LENGTH:
        raise _bad("The claims value is too long.")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise _bad("The claims value is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise _bad("The claims value must be a JSON object.")
    return value


def _strings(spec: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """``value`` or ``values`` of one claim request, as strings (OIDC Core §5.5.1)."""
    values = spec.get("values", [spec["value"]] if "value" in spec else [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad(f"The {name} claim request must carry string values.")
    return tuple(values)


def _nbf(spec: Mapping[str, Any]) -> float:
    value = spec.get("value")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _bad("The nbf claim request must carry a value in epoch seconds.")
    try:
        seconds = float(value)
    except ValueError as exc:
        raise _bad("The nbf claim request must carry a value in epoch seconds.") from exc
    if not math.isfinite(seconds):
        raise _bad("The nbf claim request must carry a value in epoch seconds.")
    return seconds


def _claim_spec(access: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    spec = access.get(name)
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _bad(f"The {name} claim request must be a JSON object.")
    return spec


def parse_claims(form: Mapping[str, str]) -> ClaimsRequest:
    """The request's ``claims`` (``NO_CLAIMS`` when absent), or AADSTS90100."""
    raw = form.get("claims", "").strip()
    if not raw:
        return NO_CLAIMS
    access = _load(raw).get("access_token", {})
    if not isinstance(access, dict):
        raise _bad("The access_token member of claims must be a JSON object.")
    xms_cc = _claim_spec(access, "xms_cc")
    capabilities = _strings(xms_cc, "xms_cc") if xms_cc is not None else ()
    nbf, acrs, capolids = (_claim_spec(access, n) for n in ("nbf", "acrs", "capolids"))
    challenge = {k: v for k, v in access.items() if k in ("nbf", "acrs", "capolids")}
    return ClaimsRequest(
        capabilities=tuple(c.lower() for c in capabilities if c.lower() in KNOWN_CAPABILITIES),
        nbf=_nbf(nbf) if nbf is not None else None,
        acrs=_strings(acrs, "acrs") if acrs is not None else (),
        capolids=_strings(capolids, "capolids") if capolids is not None else (),
        challenge=_compact({"access_token": challenge}) if challenge else None,
    )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def logged_claims(form: Mapping[str, str]) -> str | None:
    """``claims`` as the request log keeps it: a well-formed value verbatim (it names
    capabilities and policies, never a credential), else None."""
    try:
        request = parse_claims(form)
    except EntraError:
        return None
    return None if request is NO_CLAIMS else form["claims"].strip()


def _required_instant(directory: Directory, user_oid: str, nbf: float) -> float:
    """``nbf`` names a second; when it is the second of the user's last CAE event, the
    event's exact instant is meant (see the module docstring)."""
    event = directory.cae_event_time(user_oid)
    if event is not None and math.floor(event) == math.floor(nbf):
        return max(nbf, event)
    return nbf


def check_claims(
    request: ClaimsRequest,
    *,
    directory: Directory,
    user_oid: str,
    auth_time: float,
    mfa: bool,
    resource: str,
) -> None:
    """Raise the AADSTS error Entra answers when the grant cannot satisfy the challenge."""
    if request.nbf is not None:
        required = _required_instant(directory, user_oid, request.nbf)
        if auth_time < required:
            raise EntraError(50173, claims=request.challenge, suberror="basic_action")
    if (request.acrs or request.capolids) and not mfa:
        raise EntraError(50076, claims=request.challenge, resource=resource)


def resource_challenge(directory: Directory, token: Mapping[str, Any]) -> str | None:
    """For a CAE token issued before the user's last critical event: the base64
    ``claims`` of the 401 challenge; otherwise None (the token is fine)."""
    if "cp1" not in {str(c).lower() for c in token.get("xms_cc") or ()}:
        return None  # not a CAE session: the token lives out its lifetime
    event = directory.cae_event_time(str(token.get("oid", "")))
    if event is None or issued_instant(token) >= event:
        return None
    # Graph's spelling, space included (recorded responses); standard padded base64.
    body = f'{{"access_token":{{"nbf":{{"essential":true, "value":"{math.floor(event)}"}}}}}}'
    return base64.b64encode(body.encode()).decode("ascii")
