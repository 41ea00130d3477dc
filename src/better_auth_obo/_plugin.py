"""``OBOPlugin``: the glue between better-auth-server and the exchange.

The call path of ``get_obo_token`` (ARCHITECTURE.md): L1 hit (and, when the token is
about to enter the buffer, one re-exchange in the background) -> unknown application ->
single-flight on (user, application) -> ``TokenSource.load`` (cached row, else exchange)
-> L1.
Our exceptions become ``better_auth.APIError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from better_auth import APIError, Plugin
from better_auth.plugins import HookSet

from ._assertion import application_scope_problems
from ._background import BackgroundRefresh
from ._cache import SingleFlight, TokenCache
from ._config import OBOApplication, normalize_applications
from ._credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
    credential_expiry_warnings,
)
from ._entra import ClientAuthenticator, EntraClient
from ._errors import (
    OBO_ERROR_CODES,
    ConfigurationError,
    OBOError,
    UnknownApplicationError,
    storage_error,
)
from ._lease import Lease, NullLease
from ._lifecycle import Lifecycle
from ._provider import (
    MicrosoftSettings,
    configuration_warnings,
    read_microsoft_settings,
    warn,
)
from ._refresh import MicrosoftTokenRefresher
from ._retry import RetryPolicy
from ._source import TokenSource
from ._store import OBOAccount, OBOStore
from ._telemetry import Telemetry

if TYPE_CHECKING:
    from better_auth import BetterAuth

__all__ = ["OBOPlugin"]

logger = logging.getLogger("better_auth_obo")

_DEFAULT_RETRY = RetryPolicy()


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


class OBOPlugin(Plugin):
    """Microsoft Entra ID On-Behalf-Of tokens for better-auth-server.

    Reads the client id, tenant, authority and credentials from the Microsoft social
    provider; caches each (user, application) token in the ``account`` table.

    Example::

        obo = OBOPlugin(applications={"graph": {"scope": ["https://graph.microsoft.com/.default"]}})
        auth = BetterAuth(..., social_providers={"microsoft": {...}}, plugins=[obo])
        account = await obo.get_obo_token(user_id=user_id, application_name="graph")
        headers = {"Authorization": f"Bearer {account['accessToken']}"}
    """

    id = "obo"
    error_codes: ClassVar[dict[str, str]] = {
        code: row.message for code, row in OBO_ERROR_CODES.items()
    }

    def __init__(
        self,
        *,
        applications: Mapping[str, OBOApplication | Mapping[str, Any]],
        expiry_buffer: float = 60.0,
        refresh_margin: float = 300.0,
        refresh_ahead: float = 120.0,
        outage_grace: bool = True,
        cache_max_entries: int = 10_000,
        cache_revalidate_after: float = 30.0,
        lease: Lease | None = None,
        credentials: Sequence[Credential | tuple[str, Credential]] | None = None,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.applications: Mapping[str, OBOApplication] = normalize_applications(applications)
        self.expiry_buffer = _positive("expiry_buffer", expiry_buffer)
        self.refresh_margin = _positive("refresh_margin", refresh_margin)
        self.refresh_ahead = _positive("refresh_ahead", refresh_ahead)
        self.outage_grace = bool(outage_grace)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient")
        if lease is not None and not callable(getattr(lease, "hold", None)):
            raise TypeError("lease must have a hold(key, ttl=...) method, e.g. RedisLease(redis)")
        self._lease: Lease = lease if lease is not None else NullLease()
        self._credentials = _labelled(credentials)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy, or None for a single attempt")
        self._retry = retry
        self._sleep = sleep
        self._http_client = http_client
        self._timeout = _positive("timeout", timeout)
        if self._timeout == 0:
            raise ValueError("timeout must be more than 0 seconds")
        self._clock = clock
        self._l1: TokenCache[OBOAccount] = TokenCache(
            max_entries=cache_max_entries,
            buffer=self.expiry_buffer,
            revalidate_after=_positive("cache_revalidate_after", cache_revalidate_after),
            refresh_ahead=self.refresh_ahead,
            clock=clock,
        )
        self._flight: SingleFlight[tuple[str, str], OBOAccount] = SingleFlight()
        self._telemetry = Telemetry()
        self._background: BackgroundRefresh[tuple[str, str]] = BackgroundRefresh(clock=clock)
        self._lifecycle = Lifecycle(purge=self._purge_user, forget=self._l1.discard)
        self._clients: dict[str, EntraClient] = {}
        # user -> purges so far: a load that started before a purge does not refill L1
        self._purges: dict[str, int] = {}
        self._settings: MicrosoftSettings | None = None
        self._settings_error: ConfigurationError | None = None
        self._auth_ref: BetterAuth | None = None
        self._store_ref: OBOStore | None = None
        self._source: TokenSource | None = None

    # --- host lifecycle ---------------------------------------------------------------

    @property
    def auth(self) -> BetterAuth:
        if self._auth_ref is None:
            raise RuntimeError(_NOT_INITIALISED)
        return self._auth_ref

    @property
    def _store(self) -> OBOStore:
        if self._store_ref is None:
            raise RuntimeError(_NOT_INITIALISED)
        return self._store_ref

    def init(self, auth: BetterAuth) -> None:
        self._auth_ref = auth
        self._store_ref = OBOStore(auth)
        self._lifecycle.install(auth)
        warn(
            [
                f"application {name!r}: {problem}"
                for name, app in self.applications.items()
                for problem in application_scope_problems(app.scope)
            ]
        )
        try:
            settings = read_microsoft_settings(auth)
        except ConfigurationError as exc:
            self._settings_error = exc
            warn([exc.message])
            return
        self._settings = settings
        refresher = MicrosoftTokenRefresher(
            auth=auth,
            store=self._store_ref,
            entra=self._client,
            scopes=settings.scopes,
            margin=self.refresh_margin,
            clock=self._clock,
        )
        self._source = TokenSource(
            store=self._store_ref,
            refresher=refresher,
            client_for=self._client,
            client_id=settings.client_id,
            applications=self.applications,
            clock=self._clock,
            buffer=self.expiry_buffer,
            refresh_ahead=self.refresh_ahead,
            outage_grace=self.outage_grace,
            lease=self._lease,
            lease_ttl=self._timeout * 2,
        )
        warn(configuration_warnings(settings))
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        warn(credential_expiry_warnings(self._credentials, now=now))

    def hooks(self) -> HookSet:
        return self._lifecycle.hooks

    # --- server-only API --------------------------------------------------------------

    async def get_obo_token(self, *, user_id: str, application_name: str) -> OBOAccount:
        """A token for ``application_name`` on behalf of ``user_id``: cached, else exchanged.

        Returns the account row (``accessToken``, ``scope``, ``accessTokenExpiresAt``,
        ``providerId`` = ``microsoft:<application_name>``, ``userId``). Raises
        ``better_auth.APIError`` with a code from ``OBO_ERROR_CODES``.
        """
        try:
            hit = self._l1.lookup(user_id, application_name)
        except TypeError:  # an unhashable argument: say which
            _check_arguments(user_id, application_name)
            raise
        if hit is not None:
            self._telemetry.hits[application_name] += 1
            if hit[1]:  # about to enter the buffer: re-exchange once, in the background
                self._background.start((user_id, application_name), self._refresh_ahead)
            return hit[0].copy()
        _check_arguments(user_id, application_name)
        if application_name not in self.applications:
            raise _api_error(self._unknown_application(application_name))
        try:
            account = await self._flight.run(
                (user_id, application_name), lambda: self._load(user_id, application_name)
            )
        except OBOError as exc:
            raise _api_error(exc) from exc
        return account.copy()

    async def revoke_obo_tokens(self, user_id: str, application_name: str | None = None) -> int:
        """Delete the user's cached OBO tokens (one application, or all); returns rows deleted."""
        _check_user_id(user_id)
        if application_name is not None and application_name not in self.applications:
            raise _api_error(self._unknown_application(application_name))
        try:
            if application_name is None:
                return await self._purge_user(user_id)
            self._l1.discard(user_id, application_name)
            return await self._store.purge(user_id, [application_name])
        except Exception as exc:
            error = storage_error(exc)
            if error is None:
                raise
            raise _api_error(error) from None

    async def aclose(self) -> None:
        """Cancel background refreshes still running (call on application shutdown)."""
        await self._background.aclose()

    # --- the work behind a miss ---------------------------------------------------------

    async def _load(self, user_id: str, application: str, *, ahead: bool = False) -> OBOAccount:
        if self._source is None:
            raise self._settings_error or ConfigurationError()
        started = time.perf_counter()
        generation = self._purges.get(user_id, 0)
        with self._telemetry.span(application):
            try:
                token, source = await self._source.load(user_id, application, ahead=ahead)
            except Exception as exc:
                error = exc if isinstance(exc, OBOError) else storage_error(exc)
                if error is None:
                    raise
                _log_failure(application, error, started)
                self._telemetry.failed(application, error)
                if error is exc:
                    raise
                raise error from None  # the driver's text may hold statement parameters
        elapsed = (time.perf_counter() - started) * 1000
        logger.info(
            "obo token application=%s source=%s ahead=%s duration_ms=%.1f",
            application,
            source,
            ahead,
            elapsed,
        )
        self._telemetry.served(application, source, elapsed)
        if self._purges.get(user_id, 0) == generation:  # not purged while we worked
            self._l1.put(user_id, application, token.account, expires_at=token.expires_at)
        return token.account

    async def _refresh_ahead(self, key: tuple[str, str]) -> None:
        # Not through the callers' single-flight: a caller whose memory entry lapses
        # meanwhile must find the still-good row in the database, not wait on this exchange.
        # BackgroundRefresh already keeps it to one task per key.
        user_id, application = key
        await self._load(user_id, application, ahead=True)

    async def _purge_user(self, user_id: str) -> int:
        if len(self._purges) > 100_000:  # bounded; a lost count only risks one L1 entry
            self._purges.clear()
        self._purges[user_id] = self._purges.get(user_id, 0) + 1
        self._l1.discard(user_id)
        return await self._store.purge(user_id)

    # --- configuration --------------------------------------------------------------

    def _client(self, tid: str | None) -> EntraClient:
        settings = self._settings
        if settings is None:
            raise self._settings_error or ConfigurationError()
        endpoint = settings.token_endpoint(tid)
        client = self._clients.get(endpoint)
        if client is None:
            client = EntraClient(
                http=self._http,
                token_endpoint=endpoint,
                client_id=settings.client_id,
                authenticators=self._authenticators(settings, endpoint),
                clock=self._clock,
                timeout=self._timeout,
                retry=self._retry,
                sleep=self._sleep,
            )
            self._clients[endpoint] = client
        return client

    def _authenticators(
        self, settings: MicrosoftSettings, endpoint: str
    ) -> list[tuple[str, ClientAuthenticator]]:
        if not self._credentials:  # the provider's own secret or client assertion
            return [("provider", settings.authenticator(endpoint))]
        return [
            (label, credential.authenticator(settings.client_id, endpoint))
            for label, credential in self._credentials
        ]

    def _http(self) -> httpx.AsyncClient:
        return self._http_client if self._http_client is not None else self.auth.http

    def _unknown_application(self, name: object) -> UnknownApplicationError:
        known = ", ".join(repr(n) for n in self.applications)
        return UnknownApplicationError(
            f"Unknown OBO application {str(name)[:64]!r}; configured applications: {known}"
        )


def _labelled(
    credentials: Sequence[Credential | tuple[str, Credential]] | None,
) -> list[tuple[str, Credential]]:
    """Credentials as ``(label, credential)``; a bare one is labelled by kind and position."""
    if credentials is None:
        return []
    if not isinstance(credentials, (list, tuple)):
        raise TypeError("credentials must be a list of ClientSecret / ClientCertificate")
    labelled: list[tuple[str, Credential]] = []
    for index, item in enumerate(credentials):
        label, credential = item if isinstance(item, tuple) else (None, item)
        if not isinstance(credential, (ClientSecret, ClientCertificate)):
            raise TypeError(
                f"credentials[{index}] must be a ClientSecret or a ClientCertificate, "
                f"got {type(credential).__name__}"
            )
        labelled.append((label or f"{type(credential).__name__.lower()}-{index}", credential))
    return labelled


_NOT_INITIALISED = "OBOPlugin is not initialised: pass it in BetterAuth(plugins=[...])"


def _check_arguments(user_id: object, application_name: object) -> None:
    if not isinstance(application_name, str):
        raise TypeError(f"application_name must be a string, got {type(application_name).__name__}")
    _check_user_id(user_id)


def _check_user_id(user_id: object) -> None:
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a string, got {type(user_id).__name__}")
    if not user_id or len(user_id) > 255:
        raise ValueError("user_id must be a non-empty Better Auth user id (at most 255 characters)")
    if "\x00" in user_id or (not user_id.isprintable() and _unencodable(user_id)):
        raise ValueError(
            "user_id contains a NUL byte or an unpaired surrogate; no database can hold it"
        )


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _log_failure(application: str, exc: OBOError, started: float) -> None:
    extra = exc.to_extra()
    logger.info(
        "obo token failed application=%s code=%s reason=%s aadsts=%s trace_id=%s "
        "correlation_id=%s duration_ms=%.1f",
        application,
        exc.code,
        extra.get("reason"),
        ",".join(str(c) for c in extra.get("error_codes", ())),
        extra.get("trace_id"),
        extra.get("correlation_id"),
        (time.perf_counter() - started) * 1000,
    )


def _api_error(exc: OBOError) -> APIError:
    return APIError(exc.status, exc.code, exc.message, exc.to_extra())
