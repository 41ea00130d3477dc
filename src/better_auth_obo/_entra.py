"""The token-endpoint client: the On-Behalf-Of grant and the refresh_token grant.

This is the one place where httpx meets the library: every httpx exception is
translated here into the ``OBOError`` tree (``raise ... from exc``), and every
Entra answer is either a ``TokenResult`` or one of our exceptions.

Wire protocol: Microsoft identity platform, "OAuth 2.0 On-Behalf-Of flow"
(v2-oauth2-on-behalf-of-flow) and "Refresh the access token" (v2-oauth2-auth-code-flow);
RFC 6749 §5 (token and error responses) and RFC 7523 (JWT bearer grant).
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import httpx

from ._entra_auth import (
    CLIENT_ASSERTION_TYPE_JWT,
    ClientAuthenticator,
    client_assertion_authenticator,
    client_secret_authenticator,
    require_text,
    secret_values,
)
from ._entra_response import (
    MAX_BODY_BYTES,
    TokenResult,
    entra_error,
    invalid_response,
    is_json_error,
    json_object,
    parse_retry_after,
    parse_success,
    response_ids,
    response_secrets,
    scrub,
)
from ._errors import EntraError, EntraUnavailableError, OBOError

__all__ = [
    "CLIENT_ASSERTION_TYPE_JWT",
    "GRANT_TYPE_JWT_BEARER",
    "GRANT_TYPE_REFRESH_TOKEN",
    "REQUESTED_TOKEN_USE_OBO",
    "ClientAuthenticator",
    "EntraClient",
    "TokenResult",
    "client_assertion_authenticator",
    "client_secret_authenticator",
    "parse_retry_after",
]

GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TYPE_REFRESH_TOKEN = "refresh_token"
REQUESTED_TOKEN_USE_OBO = "on_behalf_of"

logger = logging.getLogger("better_auth_obo")

_WORD = re.compile(r"^[a-z_]{1,64}$")
_TOKENISH = re.compile(r"^[A-Za-z0-9._~+/=-]{16,}$")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# grant -> (name in log lines, words in messages)
_GRANTS = {
    GRANT_TYPE_JWT_BEARER: ("obo", "On-Behalf-Of exchange"),
    GRANT_TYPE_REFRESH_TOKEN: ("refresh_token", "refresh of the user's Microsoft token"),
}


class _Reply(NamedTuple):
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool


class EntraClient:
    """Sends token requests to one Entra ID token endpoint.

    Example::

        client = EntraClient(
            http=httpx.AsyncClient(),
            token_endpoint="https://login.microsoftonline.com/<tenant-id>/oauth2/v2.0/token",
            client_id=client_id,
            authenticate=client_secret_authenticator(client_id, secret),
        )
        result = await client.exchange(user_access_token, ["api://downstream/.default"])

    ``http`` may be a zero-argument callable returning the client (resolved on
    every call). ``timeout`` follows httpx: ``None`` disables it. No retries
    here: each call is one attempt, raising ``EntraUnavailableError`` for what
    is worth retrying.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        token_endpoint: str,
        client_id: str,
        authenticate: ClientAuthenticator,
        clock: Callable[[], float] = time.time,
        timeout: float | httpx.Timeout | None = 10.0,
    ) -> None:
        if not isinstance(http, httpx.AsyncClient) and not callable(http):
            raise TypeError("http must be an httpx.AsyncClient or a callable returning one")
        require_text("client_id", client_id)
        if not callable(authenticate):
            raise TypeError(
                "authenticate must be a ClientAuthenticator (see client_secret_authenticator)"
            )
        if not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        if not _valid_timeout(timeout):
            raise ValueError(
                f"timeout must be a positive number of seconds or None, not {timeout!r}"
            )
        self._http = http
        self._token_endpoint = _check_endpoint(token_endpoint)
        self._client_id = client_id
        self._authenticate = authenticate
        self._clock = clock
        self._timeout = timeout

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL this client posts to."""
        return self._token_endpoint

    def __repr__(self) -> str:
        return (
            f"EntraClient(token_endpoint={self._token_endpoint!r}, client_id={self._client_id!r})"
        )

    async def exchange(self, assertion: str, scopes: Sequence[str]) -> TokenResult:
        """Exchange the user's access token for one scoped to a downstream API (the OBO grant).

        Example::

            result = await client.exchange(user_access_token, ["api://downstream/.default"])
        """
        require_text("assertion", assertion)
        # v2-oauth2-on-behalf-of-flow, "First case: Access token request with a shared secret".
        params = {"assertion": assertion, "requested_token_use": REQUESTED_TOKEN_USE_OBO}
        return await self._attempt(GRANT_TYPE_JWT_BEARER, params, _check_scopes(scopes))

    async def refresh(self, refresh_token: str, scopes: Sequence[str]) -> TokenResult:
        """Redeem a refresh token for a new access token (and a rotated refresh token).

        Example::

            result = await client.refresh(stored_refresh_token, ["<client-id>/access_as_user"])
        """
        require_text("refresh_token", refresh_token)
        params = {"refresh_token": refresh_token}
        return await self._attempt(GRANT_TYPE_REFRESH_TOKEN, params, _check_scopes(scopes))

    async def _attempt(
        self, grant: str, params: dict[str, str], requested: tuple[str, ...]
    ) -> TokenResult:
        """Send one request and interpret the answer; a retry loop can wrap exactly this."""
        body = {"client_id": self._client_id, "grant_type": grant, **params}
        body["scope"] = " ".join(requested)
        request_id = str(uuid.uuid4())
        headers = {
            "accept": "application/json",
            "content-type": "application/x-www-form-urlencoded",
            "client-request-id": request_id,
            "return-client-request-id": "true",
        }
        await self._authenticate(body, headers, grant)
        secrets = secret_values(body, headers)
        started = self._clock()
        t0 = time.perf_counter()
        reply: _Reply | None = None
        try:
            reply = await self._post(body, headers, request_id)
            result = self._interpret(reply, grant, requested, started, request_id, secrets)
        except OBOError as exc:
            if isinstance(exc, EntraError) and exc.correlation_id is None:
                # invalid_response errors are built without the ids: add what is known.
                got = reply.headers if reply is not None else httpx.Headers()
                exc.trace_id, exc.correlation_id = response_ids(None, got, request_id)
            _log_failure(grant, reply, t0, exc)
            raise
        trace_id, correlation_id = response_ids(None, reply.headers, request_id)
        logger.debug(
            "entra %s ok status=%s duration_ms=%.0f trace_id=%s correlation_id=%s",
            _GRANTS[grant][0], reply.status, _ms_since(t0), trace_id, correlation_id,
        )  # fmt: skip
        return result

    async def _post(self, body: dict[str, str], headers: dict[str, str], request_id: str) -> _Reply:
        client = self._resolve_client()
        try:
            async with client.stream(
                "POST",
                self._token_endpoint,
                data=body,
                headers=headers,
                timeout=self._timeout,
                # A redirect is refused below: credentials are never re-sent elsewhere (SSRF).
                follow_redirects=False,
            ) as response:
                raw, truncated = await _read_capped(response)
                return _Reply(response.status_code, response.headers, raw, truncated)
        except httpx.DecodingError as exc:
            raise invalid_response(
                "Entra ID's response body could not be decoded (bad content encoding)", None
            ) from exc
        except httpx.HTTPError as exc:
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            raise EntraUnavailableError(
                f"The request to Entra ID {what} ({type(exc).__name__}); try again later",
                correlation_id=request_id,
            ) from exc

    def _interpret(
        self,
        reply: _Reply,
        grant: str,
        requested: tuple[str, ...],
        started: float,
        request_id: str,
        secrets: frozenset[str],
    ) -> TokenResult:
        status = reply.status
        data = None if reply.truncated else json_object(reply.body)
        error = is_json_error(data)
        secrets |= response_secrets(data)
        if 200 <= status < 300 and not (error and data and data.get("access_token") is None):
            if reply.truncated:
                raise invalid_response(
                    f"Entra ID's response is larger than {MAX_BODY_BYTES} bytes", status
                )
            return parse_success(data, status, requested, started)
        if status == 429 or 500 <= status < 600:
            raise self._unavailable(reply, data, request_id, secrets)
        if 300 <= status < 400:
            raise invalid_response(
                f"Entra ID answered with a redirect (HTTP {status}), which is refused; "
                "check the token endpoint URL",
                status,
            )
        if data is not None and error:
            if data["error"] == "temporarily_unavailable":
                raise self._unavailable(reply, data, request_id, secrets)
            raise entra_error(
                data,
                status=status,
                headers=reply.headers,
                request_id=request_id,
                secrets=secrets,
                what=_GRANTS[grant][1],
                client_id=self._client_id,
            )
        raise invalid_response(_unexpected(reply, data, secrets), status)

    def _unavailable(
        self,
        reply: _Reply,
        data: Mapping[str, Any] | None,
        request_id: str,
        secrets: frozenset[str],
    ) -> EntraUnavailableError:
        trace_id, correlation_id = response_ids(data, reply.headers, request_id)
        retry_after = parse_retry_after(reply.headers.get("retry-after"), now=self._clock())
        detail = f"HTTP {reply.status}"
        if data is not None and is_json_error(data) and _WORD.match(data["error"]):
            detail += f", {data['error']}"  # an OAuth error code only, never free text
        wait = (
            f"; retry after {retry_after:.0f} s" if retry_after is not None else "; try again later"
        )
        return EntraUnavailableError(
            f"Entra ID is unavailable ({detail}){wait}",
            retry_after=retry_after,
            status_code=reply.status,
            trace_id=trace_id,
            correlation_id=correlation_id,
        )

    def _resolve_client(self) -> httpx.AsyncClient:
        http = self._http
        client = http if isinstance(http, httpx.AsyncClient) else http()
        if not isinstance(client, httpx.AsyncClient):
            raise TypeError(
                f"the http factory returned {type(client).__name__}, not httpx.AsyncClient"
            )
        return client


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """Read at most ``MAX_BODY_BYTES`` of the (decoded) body; True when there was more."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


def _unexpected(reply: _Reply, data: Mapping[str, Any] | None, secrets: frozenset[str]) -> str:
    """Describe a non-2xx answer that is not an OAuth error: a short, sanitized excerpt."""
    what = f"Entra ID answered HTTP {reply.status} without an OAuth error body"
    ctype = reply.headers.get("content-type", "").split(";")[0].strip()
    if ctype:
        what += f" ({scrub(ctype, secrets)[:64]})"
    if data is not None:  # JSON of another shape: its fields may be anything, show none
        return what
    excerpt = _excerpt(reply.body, secrets)
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


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _log_failure(grant: str, reply: _Reply | None, t0: float, exc: OBOError) -> None:
    # Only our own fields: error/codes/ids were scrubbed and id-shaped when the error was built.
    if isinstance(exc, EntraError):
        error, reason, codes = exc.error, exc.reason, exc.error_codes
    else:
        error, reason, codes = "unavailable", "unavailable", ()
    logger.info(
        "entra %s failed status=%s duration_ms=%.0f error=%s codes=%s reason=%s "
        "trace_id=%s correlation_id=%s",
        _GRANTS[grant][0],
        reply.status if reply is not None else None,
        _ms_since(t0),
        error,
        ",".join(str(c) for c in codes) or "-",
        reason,
        getattr(exc, "trace_id", None),
        getattr(exc, "correlation_id", None),
    )


def _valid_timeout(timeout: object) -> bool:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return True
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        return False
    return timeout > 0 and not (isinstance(timeout, float) and math.isinf(timeout))


def _check_endpoint(url: str) -> str:
    if not isinstance(url, str):
        raise TypeError("token_endpoint must be a URL string")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"token_endpoint {url!r} is not a valid URL") from exc
    if parsed.scheme == "https" and parsed.host:
        return url
    if parsed.scheme == "http" and parsed.host in _LOOPBACK_HOSTS:
        return url  # a local emulator; credentials never leave the machine
    raise ValueError(
        f"token_endpoint {url!r} must be an https URL such as "
        "https://login.microsoftonline.com/<tenant-id>/oauth2/v2.0/token "
        "(plain http is allowed only on loopback)"
    )


def _check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise TypeError("scopes must be a list of strings, e.g. ['api://downstream/.default']")
    result = tuple(scopes)
    if not result:
        raise ValueError("scopes is empty: give at least one scope")
    for scope in result:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ValueError(f"scope {scope!r} must be a non-empty string without white space")
    return result
