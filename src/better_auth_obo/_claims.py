"""Claims requests: client capabilities (CAE) and claims challenges.

Microsoft identity platform, "Claims challenges, claims requests and client
capabilities" (claims-challenge.md): a client that handles claims challenges declares
the ``cp1`` capability as ``{"access_token": {"xms_cc": {"values": ["cp1"]}}}`` in the
``claims`` request parameter; Entra then issues Continuous Access Evaluation tokens
(long-lived, revocable at the resource). A resource that wants more (a newer sign-in
after a revocation, MFA for an authentication context) answers 401 with
``WWW-Authenticate: Bearer ..., error="insufficient_claims", claims="<base64 JSON>"``;
the client requests a token again with those claims. Capabilities and a challenge are
sent together, the challenge's object with ``access_token.xms_cc`` set (the merge MSAL
does in ``_merge_claims_challenge_and_capabilities``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_CLAIMS_CHARS",
    "capabilities_option",
    "challenge_claims",
    "merge_claims",
    "normalize_claims",
]

#: Claims requests are a few hundred bytes; anything near this is not a claims request.
MAX_CLAIMS_CHARS = 16_384
_CAPABILITY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# One auth-param of a WWW-Authenticate challenge (RFC 9110 §11.2): name=token or
# name="quoted string" (with backslash escapes).
# The name may not start inside a word: without the look-behind a long run of letters with
# no "=" is retried from every position (quadratic time on a hostile header).
_PARAM = re.compile(r'(?<![A-Za-z0-9_-])([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
#: A claims request nests a few levels; deeper is not one (and could exhaust the stack).
MAX_CLAIMS_DEPTH = 16


def capabilities_option(value: Iterable[str]) -> tuple[str, ...]:
    """Validate ``client_capabilities``: a list such as ``["cp1"]``."""
    if isinstance(value, str):
        value = [value]
    try:
        capabilities = tuple(value)
    except TypeError:
        raise TypeError("client_capabilities must be a list of strings, e.g. ['cp1']") from None
    for item in capabilities:
        if not isinstance(item, str) or not _CAPABILITY.match(item):
            raise ValueError(
                f"client capability {item!r} is not a capability name; "
                "Entra knows 'cp1' (the client handles CAE claims challenges)"
            )
    return tuple(dict.fromkeys(capabilities))


def normalize_claims(claims: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A claims request (JSON text or a dict) as a dict; a clear error when it is not one."""
    if claims is None:
        return None
    if isinstance(claims, Mapping):
        try:
            text = json.dumps(claims, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"claims must be JSON-serialisable: {exc}") from None
    elif isinstance(claims, str):
        text = claims
    else:
        raise TypeError(
            "claims must be the claims request as a JSON string or a dict, "
            f"got {type(claims).__name__}"
        )
    if len(text) > MAX_CLAIMS_CHARS:
        raise ValueError(f"claims is longer than {MAX_CLAIMS_CHARS} characters")
    try:
        parsed = json.loads(text, parse_constant=_refuse_constant)
        _check_depth(parsed)
    except (ValueError, RecursionError):
        raise ValueError(
            "claims is not valid JSON; pass the claims challenge as Entra or the API sent it "
            '(e.g. \'{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}\')'
        ) from None
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError('claims must be a non-empty JSON object such as {"access_token": {...}}')
    return parsed


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_depth(value: Any) -> None:
    """ValueError when ``value`` nests deeper than ``MAX_CLAIMS_DEPTH`` (iterative)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_CLAIMS_DEPTH:
            raise ValueError("claims nest too deeply")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def merge_claims(capabilities: tuple[str, ...], challenge: Mapping[str, Any] | None) -> str | None:
    """The ``claims`` parameter to send: the challenge with the capabilities, or None."""
    if not capabilities and not challenge:
        return None
    merged: dict[str, Any] = json.loads(json.dumps(challenge)) if challenge else {}
    if capabilities:
        access = merged.get("access_token")
        if not isinstance(access, dict):
            access = merged["access_token"] = {}
        access["xms_cc"] = {"values": list(capabilities)}
    return json.dumps(merged, separators=(",", ":"))


def challenge_claims(www_authenticate: str) -> str | None:
    """The decoded claims of an ``insufficient_claims`` Bearer challenge, or None.

    Example: ``Bearer realm="", error="insufficient_claims", claims="eyJhY2Nl..."`` gives
    ``{"access_token":...}``. Anything else (another error, no claims, claims that are
    not base64 of a JSON object) gives None: such a 401 is not answered by a new token.
    """
    if len(www_authenticate) > 2 * MAX_CLAIMS_CHARS:  # base64 of the longest claims we take
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(www_authenticate):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params.setdefault(match.group(1).lower(), value)
    if params.get("error") != "insufficient_claims" or not params.get("claims"):
        return None
    encoded = params["claims"]
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        text = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        decoded = text.decode("utf-8")
        normalize_claims(decoded)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded
