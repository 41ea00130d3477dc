"""The token-endpoint client: the On-Behalf-Of grant and the refresh_token grant.

This is the one place where httpx meets the library: every httpx exception is
translated here into the ``OBOError`` tree (``raise ... from exc``), and every
Entra answer is either a ``TokenResult`` or one of our exceptions.

Wire protocol: Microsoft identity platform, "OAuth 2.0 On-Behalf-Of flow"
(v2-oauth2-on-behalf-of-flow) and "Refresh the access token" (v2-oauth2-auth-code-flow);
RFC 6749 §5 (token and error responses) and RFC 7523 (JWT bearer grant).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import NamedTuple

import httpx

from ._entra_auth import (
    CLIENT_ASSERTION_TYPE_JWT,
    AuthenticatorChain,
    ClientAuthenticator,
    check_key,
    check_scopes,
    client_assertion_authenticator,
    client_secret_authenticator,
    require_text,
    secret_values,
)
from ._entra_response import (
    MAX_BODY_BYTES,
    TokenResult,
    check_exchange_answer,
    entra_error,
    invalid_response,
    is_json_error,
    json_object,
    parse_success,
    response_ids,
    response_secrets,
    unavailable_error,
    unexpected_answer,
)
from ._errors import EntraError, EntraUnavailableError, OBOError
from ._retry import (
    NO_RETRY,
    Attempt,
    RetryPolicy,
    ThrottleMemory,
    parse_retry_after,
    run_attempts,
)

__all__ = [
    "CLIENT_ASSERTION_TYPE_JWT",
    "GRANT_TYPE_JWT_BEARER",
    "GRANT_TYPE_REFRESH_TOKEN",
    "LOOPBACK_HOSTS",
    "REQUESTED_TOKEN_USE_OBO",
    "ClientAuthenticator",
    "EntraClient",
    "RetryPolicy",
    "TokenResult",
    "client_assertion_authenticator",
    "client_secret_authenticator",
    "parse_retry_after",
]

GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TYPE_REFRESH_TOKEN = "refresh_token"
REQUESTED_TOKEN_USE_OBO = "on_behalf_of"

logger = logging.getLogger("better_auth_obo")

#: Hosts where a token may travel over plain http: this machine (the emulator, tests).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
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
            retry=RetryPolicy(),
        )
        result = await client.exchange(user_access_token, ["api://downstream/.default"], key=user)

    ``http`` may be a zero-argument callable returning the client (resolved on
    every call). ``timeout`` follows httpx: ``None`` disables it. ``retry`` says
    when to try again (``None``: one attempt); ``sleep`` waits between attempts.
    ``authenticators`` replaces ``authenticate`` with several labelled credentials
    of the same app (rotation): when Entra refuses one as wrong or expired, the next
    is tried at once, and the one that worked is tried first from then on.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        token_endpoint: str,
        client_id: str,
        authenticate: ClientAuthenticator | None = None,
        authenticators: Sequence[tuple[str, ClientAuthenticator]] | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float | httpx.Timeout | None = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        throttles: ThrottleMemory | None = None,
    ) -> None:
        if not isinstance(http, httpx.AsyncClient) and not callable(http):
            raise TypeError("http must be an httpx.AsyncClient or a callable returning one")
        require_text("client_id", client_id)
        if not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        if not _valid_timeout(timeout):
            raise ValueError(
                f"timeout must be a positive number of seconds or None, not {timeout!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy or None")
        if not callable(sleep):
            raise TypeError("sleep must be an async callable such as asyncio.sleep")
        self._http = http
        self._token_endpoint = _check_endpoint(token_endpoint)
        self._client_id = client_id
        self._chain = AuthenticatorChain.of(authenticate, authenticators)
        self._clock = clock
        self._timeout = timeout
        self._retry = retry if retry is not None else NO_RETRY
        self._sleep = sleep
        # Shared by the plugin across endpoints (keys are scoped to this endpoint below), so
        # many tenants make one bounded memory, not one each.
        self._throttles = throttles if throttles is not None else ThrottleMemory()

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL this client posts to."""
        return self._token_endpoint

    @property
    def credential(self) -> str:
        """The label of the credential tried first (the one that last worked)."""
        return self._chain.preferred

    def __repr__(self) -> str:
        return (
            f"EntraClient(token_endpoint={self._token_endpoint!r}, client_id={self._client_id!r})"
        )

    async def exchange(
        self,
        assertion: str,
        scopes: Sequence[str],
        *,
        key: Hashable | None = None,
        claims: str | None = None,
    ) -> TokenResult:
        """Exchange the user's access token for one scoped to a downstream API (the OBO grant).

        ``key`` names the caller for throttling, e.g. ``(user_id, application)``: after
        Entra answers 429 (or 5xx with ``Retry-After``) for a key, calls with that key
        fail fast until the wait is over; other keys are never held back. ``claims`` is
        sent as Entra's ``claims`` parameter (client capabilities, a claims challenge).

        Example::

            result = await client.exchange(assertion, ["api://downstream/.default"], key=user_id)
        """
        require_text("assertion", assertion)
        # v2-oauth2-on-behalf-of-flow, "First case: Access token request with a shared secret".
        params = {"assertion": assertion, "requested_token_use": REQUESTED_TOKEN_USE_OBO}
        if claims is not None:
            require_text("claims", claims)
            params["claims"] = claims
        return await self._call(GRANT_TYPE_JWT_BEARER, params, check_scopes(scopes), key)

    async def refresh(
        self, refresh_token: str, scopes: Sequence[str], *, key: Hashable | None = None
    ) -> TokenResult:
        """Redeem a refresh token for a new access token (and a rotated refresh token).

        ``key`` as for ``exchange``. Example::

            result = await client.refresh(stored_refresh_token, ["<client-id>/access_as_user"])
        """
        require_text("refresh_token", refresh_token)
        params = {"refresh_token": refresh_token}
        return await self._call(GRANT_TYPE_REFRESH_TOKEN, params, check_scopes(scopes), key)

    async def _call(
        self, grant: str, params: dict[str, str], requested: tuple[str, ...], key: Hashable | None
    ) -> TokenResult:
        """The retry loop: attempts until a result, an error not worth retrying, or the policy
        gives up. A 4xx OAuth error is raised at once and never remembered (no negative cache)."""
        check_key(key)
        if key is not None:
            key = (self._token_endpoint, key)
            self._throttles.check(key, now=self._clock(), what=_GRANTS[grant][0])
        rejected: set[int] = set()  # credentials Entra refused during this call

        async def once(attempt: Attempt) -> TokenResult:
            # A credential Entra refuses as wrong or expired gives way to the next at once:
            # part of this attempt, not a retry.
            async def send(label: str | None, authenticate: ClientAuthenticator) -> TokenResult:
                attempt.label = label
                return await self._attempt(grant, params, requested, authenticate, attempt)

            return await self._chain.first_accepted(send, rejected)

        return await run_attempts(
            once,
            policy=self._retry,
            clock=self._clock,
            sleep=self._sleep,
            timeout=self._timeout,
            throttles=self._throttles,
            key=key,
        )

    async def _attempt(
        self,
        grant: str,
        params: dict[str, str],
        requested: tuple[str, ...],
        authenticate: ClientAuthenticator,
        step: Attempt,
    ) -> TokenResult:
        """Send one request and interpret the answer; one log line either way."""
        body = {"client_id": self._client_id, "grant_type": grant, **params}
        body["scope"] = " ".join(requested)
        request_id = str(uuid.uuid4())
        headers = {
            "accept": "application/json",
            "content-type": "application/x-www-form-urlencoded",
            "client-request-id": request_id,
            "return-client-request-id": "true",
        }
        await authenticate(body, headers, grant)
        secrets = secret_values(body, headers)
        # expires_at counts from the request's start (the call's start for the first attempt).
        started = step.began if step.number == 1 else self._clock()
        t0 = time.perf_counter()
        reply: _Reply | None = None
        try:
            reply = await self._post(body, headers, request_id, step.timeout)
            result = self._interpret(reply, grant, requested, started, request_id, secrets)
        except OBOError as exc:
            if isinstance(exc, EntraError) and exc.correlation_id is None:
                # invalid_response errors are built without the ids: add what is known.
                got = reply.headers if reply is not None else httpx.Headers()
                exc.trace_id, exc.correlation_id = response_ids(None, got, request_id)
            if isinstance(exc, EntraUnavailableError):
                # Decided before logging, so the one line says what happens next.
                step.delay = self._retry.delay(
                    attempt=step.number,
                    retry_after=exc.retry_after,
                    elapsed=self._clock() - step.began,
                )
            _log_failure(grant, reply, t0, exc, step)
            raise
        trace_id, correlation_id = response_ids(None, reply.headers, request_id)
        logger.debug(
            "entra %s ok status=%s attempt=%d credential=%s duration_ms=%.0f trace_id=%s "
            "correlation_id=%s",
            _GRANTS[grant][0], reply.status, step.number, step.label or "-", _ms_since(t0),
            trace_id, correlation_id,
        )  # fmt: skip
        return result

    async def _post(
        self,
        body: dict[str, str],
        headers: dict[str, str],
        request_id: str,
        timeout: float | httpx.Timeout | None,
    ) -> _Reply:
        client = self._resolve_client()
        try:
            async with client.stream(
                "POST",
                self._token_endpoint,
                data=body,
                headers=headers,
                timeout=timeout,
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
            result = parse_success(data, status, requested, started)
            if grant == GRANT_TYPE_JWT_BEARER:
                check_exchange_answer(result, requested, client_id=self._client_id, status=status)
            return result
        if status == 429 or 500 <= status < 600:
            raise unavailable_error(status, reply.headers, data, request_id, self._clock())
        if 300 <= status < 400:
            raise invalid_response(
                f"Entra ID answered with a redirect (HTTP {status}), which is refused; "
                "check the token endpoint URL",
                status,
            )
        if data is not None and error:
            if data["error"] == "temporarily_unavailable":
                raise unavailable_error(
                    reply.status, reply.headers, data, request_id, self._clock()
                )
            raise entra_error(
                data,
                status=status,
                headers=reply.headers,
                request_id=request_id,
                secrets=secrets,
                what=_GRANTS[grant][1],
                client_id=self._client_id,
            )
        raise invalid_response(
            unexpected_answer(status, reply.headers, reply.body, data, secrets), status
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


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _log_failure(grant: str, reply: _Reply | None, t0: float, exc: OBOError, step: Attempt) -> None:
    # Only our own fields: error/codes/ids were scrubbed and id-shaped when the error was built.
    if isinstance(exc, EntraError):
        error, reason, codes = exc.error, exc.reason, exc.error_codes
    else:
        error, reason, codes = "unavailable", "unavailable", ()
    logger.info(
        "entra %s failed status=%s attempt=%d credential=%s duration_ms=%.0f error=%s codes=%s "
        "reason=%s retry_in=%s trace_id=%s correlation_id=%s",
        _GRANTS[grant][0],
        reply.status if reply is not None else None,
        step.number,
        step.label or "-",
        _ms_since(t0),
        error,
        ",".join(str(c) for c in codes) or "-",
        reason,
        f"{step.delay:.3f}" if step.delay is not None else "-",
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
    if parsed.scheme == "http" and parsed.host in LOOPBACK_HOSTS:
        return url  # a local emulator; credentials never leave the machine
    raise ValueError(
        f"token_endpoint {url!r} must be an https URL such as "
        "https://login.microsoftonline.com/<tenant-id>/oauth2/v2.0/token "
        "(plain http is allowed only on loopback)"
    )
