"""``OBOClient``: the On-Behalf-Of exchange for an API or an MCP server, without Better Auth.

The middle tier receives the user's access token as ``Authorization: Bearer`` (from a
SPA, a mobile app, an MCP client) and calls Graph or another API as that user. Every
inbound token is verified first (signature against the authority's published keys,
issuer, audience = this app, tenant, time; optional required scopes), then exchanged
on the engine ``OBOPlugin`` runs on (``_engine.py``: retries, throttling, credential
rotation, client capabilities). Results are cached in memory per (inbound token,
application) until ``expiry_buffer`` seconds before they expire, and never beyond the
inbound token's own expiry; N concurrent requests with the same token make one exchange.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import httpx

from ._assertion import fingerprint
from ._cache import FlightClosed, SingleFlight, TokenCache
from ._claims import capabilities_option, merge_claims, normalize_claims
from ._config import (
    OBOApplication,
    app_id_uris_option,
    normalize_applications,
    seconds_option,
    unknown_application,
)
from ._credentials import Credential, labelled_credentials
from ._engine import ExchangeEngine
from ._entra import ClientAuthenticator
from ._errors import (
    InvalidAssertionError,
    KeyRetiredError,
    ReauthenticationRequiredError,
)
from ._provider import DEFAULT_AUTHORITY
from ._retry import RetryPolicy
from ._verify import ANY_ACCOUNT, VerifiedToken

__all__ = ["OBOCaller", "OBOClient", "OBOToken"]

_DEFAULT_RETRY = RetryPolicy()
#: How the verifier names the token in its messages (it was written for the plugin's).
_STORED = "The user's stored Microsoft token"


#: What the API's client must do, by ``reason``, where the plugin's message tells the app.
_CLIENT_FIXES = {
    "graph_audience": (
        "The inbound token is a Microsoft Graph token; Entra ID never accepts one as an "
        "On-Behalf-Of assertion. The client must request a token for this API "
        "('{client_id}/<scope>' or its App ID URI scope), not Graph scopes"
    ),
    "audience": (
        "The inbound token was issued for another API, not for this one ({client_id}); the "
        "client must request this API's scope"
    ),
    "id_token": (
        "The inbound token is an ID token; the client must send an access token for this API"
    ),
    "app_only": (
        "The inbound token is an app-only token (no user); On-Behalf-Of needs a user's token"
    ),
    "malformed": "The inbound token is not a readable JWT access token",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OBOToken:
    """A token for a downstream API, on behalf of the inbound token's user.

    ``access_token`` never appears in the repr.
    """

    access_token: str = field(repr=False)
    expires_at: datetime
    scope: str
    application_name: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value: ``Bearer <token>``."""
        return f"Bearer {self.access_token}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OBOCaller:
    """Who sent a verified inbound token (never the token itself)."""

    #: The user's object id (``oid``).
    oid: str
    #: The user's tenant (``tid``), a GUID.
    tid: str
    #: The client application the token was issued to (``azp``, v1 ``appid``).
    client_id: str | None
    #: The delegated scopes (``scp``) the token carries.
    scopes: tuple[str, ...]
    expires_at: datetime


class _Cached(NamedTuple):
    token: OBOToken
    assertion_expires_at: float
    scopes: frozenset[str]  # the inbound token's delegated scopes (scp)


class OBOClient:
    """Exchanges an inbound user token for a downstream API's token (OBO), with no Better Auth.

    Example::

        obo = OBOClient(
            client_id=os.environ["AZURE_CLIENT_ID"],
            tenant_id=os.environ["AZURE_TENANT_ID"],
            credentials=[ClientSecret(os.environ["AZURE_CLIENT_SECRET"])],
            applications={"graph": {"scope": ["https://graph.microsoft.com/User.Read"]}},
        )
        token = await obo.exchange(assertion=bearer, application_name="graph",
                                   required_scopes=["access_as_user"])
        headers = {"Authorization": token.authorization}

    Errors are the library's own ``OBOError`` subclasses, with ``.code`` from
    ``OBO_ERROR_CODES`` and the same ``reason`` values as the plugin: a foreign, tampered,
    expired or under-scoped inbound token is ``InvalidAssertionError``
    (``INVALID_ASSERTION``, 401 for your API's client) before any request to Entra ID.

    Args:
        client_id: This app's (the middle tier's) client id: the inbound tokens' audience
            and the client that makes the exchanges.
        tenant_id: The app's tenant id (a GUID): a specific tenant, not ``common``.
        credentials: The app's credentials, tried in order on credential errors:
            ``ClientSecret``, ``ClientCertificate``, ``FederatedAssertion``,
            ``ManagedIdentityAssertion`` (each may be a ``(label, credential)`` pair). At
            least one.
        applications: The downstream APIs: ``{name: {"scope": [...]}}`` or
            ``{name: OBOApplication(scope=[...])}``; all the scopes of one application
            must belong to one resource.
        authority: The Entra ID host, default ``https://login.microsoftonline.com``
            (another for sovereign clouds or the emulator).
        http_client: An ``httpx.AsyncClient`` for the requests to Entra ID; default: one
            of its own, closed by ``aclose()``.
        expiry_buffer: Seconds before expiry at which a cached token is no longer served.
        retry: How transient failures (network errors, timeouts, 5xx, 429) are retried;
            the default is ``RetryPolicy()``; ``None`` for a single attempt.
        timeout: Seconds per request to Entra ID (more than 0).
        cache_max_entries: Size of the in-memory cache of exchanged tokens, one entry per
            (inbound token, application), least recently used out first.
        client_capabilities: ``["cp1"]`` declares that this app handles claims challenges;
            Entra ID then issues Continuous Access Evaluation tokens.
        app_id_uris: App ID URIs of this app besides ``api://<client id>``, accepted as
            the inbound token's audience.
        clock: A ``() -> float`` epoch clock, for tests.
        sleep: An async sleep (the retries' backoff), for tests.
    """

    def __init__(
        self,
        *,
        client_id: str,
        tenant_id: str,
        credentials: Sequence[Credential | tuple[str, Credential]],
        applications: Mapping[str, OBOApplication | Mapping[str, Any]],
        authority: str = DEFAULT_AUTHORITY,
        http_client: httpx.AsyncClient | None = None,
        expiry_buffer: float = 60.0,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        timeout: float = 10.0,
        cache_max_entries: int = 10_000,
        client_capabilities: Iterable[str] = (),
        app_id_uris: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        for name, value in (("client_id", client_id), ("tenant_id", tenant_id)):
            if not isinstance(value, str) or not value.strip() or "/" in value:
                raise ValueError(f"{name} must be the app's {name.split('_')[0]} id (a GUID)")
        if not isinstance(authority, str) or not authority.startswith(("https://", "http://")):
            raise ValueError("authority must be a URL such as https://login.microsoftonline.com")
        self.applications = normalize_applications(applications)
        labelled = labelled_credentials(credentials)
        if not labelled:
            raise ValueError(
                "credentials is empty: give the app's credential, e.g. "
                "credentials=[ClientSecret(...)] or [ClientCertificate(...)]"
            )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy, or None for a single attempt")
        self.expiry_buffer = seconds_option("expiry_buffer", expiry_buffer)
        timeout = seconds_option("timeout", timeout)
        if timeout == 0:
            raise ValueError("timeout must be more than 0 seconds")
        self.client_capabilities = capabilities_option(client_capabilities)
        self._own_http = http_client is None
        self._http_client = http_client or httpx.AsyncClient(timeout=timeout)
        self._clock = clock

        def authenticators(endpoint: str) -> list[tuple[str, ClientAuthenticator]]:
            http = self._http_client  # a managed identity fetches its token with it
            return [
                (label, c.authenticator(client_id, endpoint, http=http)) for label, c in labelled
            ]

        self._engine = ExchangeEngine(
            client_id=client_id,
            tenant=tenant_id,
            authority=authority,
            authenticators=authenticators,
            http=lambda: self._http_client,
            retry=retry,
            sleep=sleep,
            timeout=timeout,
            clock=clock,
            app_id_uris=app_id_uris_option(app_id_uris),
            max_throttled=cache_max_entries,
        )
        # Memory only (no store to re-read): entries live until expiry minus the buffer.
        self._cache: TokenCache[_Cached] = TokenCache(
            max_entries=cache_max_entries,
            buffer=self.expiry_buffer,
            revalidate_after=float("inf"),
            clock=clock,
        )
        self._flight: SingleFlight[tuple[str, str, str], _Cached] = SingleFlight()
        self._closed = False

    def __repr__(self) -> str:
        engine = self._engine
        return (
            f"OBOClient(client_id={engine.client_id!r}, tenant_id={engine.tenant!r}, "
            f"authority={engine.authority!r}, applications={list(self.applications)!r})"
        )

    async def exchange(
        self,
        *,
        assertion: str,
        application_name: str,
        required_scopes: Iterable[str] = (),
        claims: str | Mapping[str, Any] | None = None,
        force_refresh: bool = False,
    ) -> OBOToken:
        """A token for ``application_name`` on behalf of the inbound token's user.

        ``assertion`` is the inbound access token (without ``Bearer``); it is verified,
        and must carry every one of ``required_scopes`` in ``scp`` (e.g. your API's
        ``access_as_user``). ``claims`` (a claims challenge) and ``force_refresh`` make a
        new exchange whose result replaces the cached one.
        """
        if not isinstance(assertion, str) or not assertion:
            raise InvalidAssertionError("No bearer token was given", reason="malformed")
        required = frozenset(_scopes_option(required_scopes))
        key = fingerprint(assertion)
        if claims is None and not force_refresh:
            hit = self._cache.get(key, application_name)
            if hit is not None and self._clock() < hit.assertion_expires_at:
                if not required <= hit.scopes:
                    raise _missing_scopes(required - hit.scopes)
                return hit.token
        if application_name not in self.applications:
            raise unknown_application(application_name, self.applications)
        if not isinstance(force_refresh, bool):
            raise TypeError("force_refresh must be True or False")
        if self._closed:
            raise RuntimeError("OBOClient is closed (aclose() was called)")
        challenge = normalize_claims(claims)
        verified = await self._verified(assertion, required)
        text = json.dumps(challenge, sort_keys=True) if challenge else ""
        if force_refresh and not text:
            text = "force"
        try:
            cached = await self._flight.run(
                (key, application_name, text),
                lambda: self._exchange(assertion, key, application_name, verified, challenge),
            )
        except FlightClosed:
            raise RuntimeError("OBOClient is closed (aclose() was called)") from None
        return cached.token

    async def verify(self, assertion: str, *, required_scopes: Iterable[str] = ()) -> OBOCaller:
        """Verify an inbound token without exchanging it (e.g. a framework's bearer hook):
        the same checks as ``exchange``, and who sent it. Verdicts are remembered per
        token; the time is checked on every call."""
        if not isinstance(assertion, str) or not assertion:
            raise InvalidAssertionError("No bearer token was given", reason="malformed")
        verified = await self._verified(assertion, frozenset(_scopes_option(required_scopes)))
        claims = verified.claims
        return OBOCaller(
            oid=verified.subject,
            tid=verified.tid,
            client_id=claims.azp,
            scopes=claims.scopes,
            expires_at=datetime.fromtimestamp(verified.expires_at, timezone.utc),
        )

    async def aclose(self) -> None:
        """Cancel exchanges in flight and close the HTTP client this client made."""
        self._closed = True
        await self._flight.aclose()
        await self._engine.aclose()
        if self._own_http:
            await self._http_client.aclose()

    async def __aenter__(self) -> OBOClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _verified(self, assertion: str, required: frozenset[str]) -> VerifiedToken:
        verified = await self._verify(assertion)
        scopes = frozenset(verified.claims.scopes)
        if not required <= scopes:
            raise _missing_scopes(required - scopes)
        return verified

    async def _verify(self, assertion: str) -> VerifiedToken:
        try:
            return await self._engine.verifier.verify(assertion, account_id=ANY_ACCOUNT)
        except InvalidAssertionError as exc:
            # The verifier speaks of the plugin's stored token and its remedies (provider
            # scopes, a new sign-in); here a client sent the token and must send another.
            fix = _CLIENT_FIXES.get(exc.reason)
            if fix is not None:
                message = fix.format(client_id=self._engine.client_id)
            else:
                message = exc.message.replace(_STORED, "The inbound token", 1)
            raise InvalidAssertionError(message, reason=exc.reason) from None
        except KeyRetiredError:
            raise InvalidAssertionError(
                "The inbound token is signed by a key Entra ID no longer publishes: the client "
                "must send a current token",
                reason="signature",
            ) from None
        except ReauthenticationRequiredError:
            # For the plugin the user signs in again; an API's client gets a new token.
            raise InvalidAssertionError(
                "The inbound token has expired (or is not valid yet): the client must send a "
                "current one",
                reason="expired",
            ) from None

    async def _exchange(
        self,
        assertion: str,
        key: str,
        application_name: str,
        verified: VerifiedToken,
        challenge: dict[str, Any] | None,
    ) -> _Cached:
        application = self.applications[application_name]
        result = await self._engine.client(verified.tid).exchange(
            assertion,
            application.scope,
            key=(key, application_name),
            claims=merge_claims(self.client_capabilities, challenge),
        )
        token = OBOToken(
            access_token=result.access_token,
            expires_at=datetime.fromtimestamp(result.expires_at, timezone.utc),
            scope=" ".join(result.scopes),
            application_name=application_name,
        )
        cached = _Cached(token, verified.expires_at, frozenset(verified.claims.scopes))
        # Never kept past the inbound token: the cache serves the caller's proof, not Entra's.
        self._cache.put(
            key,
            application_name,
            cached,
            expires_at=min(result.expires_at, verified.expires_at + self.expiry_buffer),
        )
        return cached


def _scopes_option(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    scopes = tuple(value)
    for scope in scopes:
        if not isinstance(scope, str) or not scope:
            raise TypeError(
                "required_scopes must be a list of scope names, e.g. ['access_as_user']"
            )
    return scopes


def _missing_scopes(missing: frozenset[str]) -> InvalidAssertionError:
    return InvalidAssertionError(
        f"The inbound token lacks the scope(s) {sorted(missing)} this API requires; "
        "the client must request them",
        reason="scope",
    )
