"""``OBOPlugin``: the glue between better-auth-server and the exchange.

The call path of ``get_obo_token`` (ARCHITECTURE.md): unknown application -> L1 hit ->
single-flight on (user, application) -> the cached row, if fresh and still bound to the
user's current Microsoft token -> refresh the Microsoft token if it expires soon ->
check it can be an assertion -> exchange -> upsert (non-fatal) -> L1.
Our exceptions become ``better_auth.APIError`` here and nowhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from better_auth import APIError, Plugin
from better_auth.plugins import HookSet

from ._assertion import application_scope_problems, check_assertion, fingerprint, read_claims
from ._cache import SingleFlight, TokenCache
from ._config import OBOApplication, normalize_applications
from ._entra import EntraClient, TokenResult
from ._errors import (
    OBO_ERROR_CODES,
    AccountNotFoundError,
    ConfigurationError,
    OBOError,
    UnknownApplicationError,
)
from ._lifecycle import Lifecycle
from ._provider import (
    MicrosoftSettings,
    configuration_warnings,
    read_microsoft_settings,
    warn,
)
from ._refresh import MicrosoftTokenRefresher
from ._store import CachedToken, OBOAccount, OBOStore, cached_token

if TYPE_CHECKING:
    from better_auth import BetterAuth

__all__ = ["OBOPlugin"]

logger = logging.getLogger("better_auth_obo")


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
        cache_max_entries: int = 10_000,
        cache_revalidate_after: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.applications: Mapping[str, OBOApplication] = normalize_applications(applications)
        self.expiry_buffer = _positive("expiry_buffer", expiry_buffer)
        self.refresh_margin = _positive("refresh_margin", refresh_margin)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient")
        self._http_client = http_client
        self._timeout = _positive("timeout", timeout)
        self._clock = clock
        self._l1: TokenCache[OBOAccount] = TokenCache(
            max_entries=cache_max_entries,
            buffer=self.expiry_buffer,
            revalidate_after=_positive("cache_revalidate_after", cache_revalidate_after),
            clock=clock,
        )
        self._flight: SingleFlight[tuple[str, str], OBOAccount] = SingleFlight()
        self._lifecycle = Lifecycle(purge=self._purge_user, forget=self._l1.discard)
        self._clients: dict[str, EntraClient] = {}
        self._settings: MicrosoftSettings | None = None
        self._settings_error: ConfigurationError | None = None
        self._auth_ref: BetterAuth | None = None
        self._store_ref: OBOStore | None = None
        self._refresher: MicrosoftTokenRefresher | None = None

    # --- host lifecycle ---------------------------------------------------------------

    @property
    def auth(self) -> BetterAuth:
        if self._auth_ref is None:
            raise RuntimeError("OBOPlugin is not initialised: pass it in BetterAuth(plugins=[...])")
        return self._auth_ref

    @property
    def _store(self) -> OBOStore:
        if self._store_ref is None:
            raise RuntimeError("OBOPlugin is not initialised: pass it in BetterAuth(plugins=[...])")
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
        self._refresher = MicrosoftTokenRefresher(
            auth=auth,
            store=self._store_ref,
            entra=self._client,
            scopes=settings.scopes,
            margin=self.refresh_margin,
            clock=self._clock,
        )
        warn(configuration_warnings(settings))

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
            hit = self._l1.get(user_id, application_name)
        except TypeError:  # an unhashable argument: say which
            _check_arguments(user_id, application_name)
            raise
        if hit is not None:
            return hit.copy()
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
        if application_name is None:
            return await self._purge_user(user_id)
        if application_name not in self.applications:
            raise _api_error(self._unknown_application(application_name))
        self._l1.discard(user_id, application_name)
        return await self._store.purge(user_id, [application_name])

    # --- the work behind a miss ---------------------------------------------------------

    async def _load(self, user_id: str, application: str) -> OBOAccount:
        started = time.perf_counter()
        settings = self._require_settings()
        microsoft = await self._store.microsoft_account(user_id)
        if microsoft is None:
            raise AccountNotFoundError()
        current = self._store.decrypt(microsoft.get("accessToken")) or ""
        cached = await self._store.read(user_id, application)
        if cached is not None and self._servable(cached, fingerprint(current)):
            self._remember(user_id, application, cached)
            _log(application, "database", started)
            return cached.account
        assert self._refresher is not None
        assertion = await self._refresher.valid_token(microsoft)
        claims = read_claims(assertion)
        check_assertion(claims, client_id=settings.client_id)
        now = self._clock()
        result = await self._client(claims.tid).exchange(
            assertion, self.applications[application].scope
        )
        token = await self._save(user_id, application, result, fingerprint(assertion), now)
        self._remember(user_id, application, token)
        _log(application, "exchange", started)
        return token.account

    async def _save(
        self, user_id: str, application: str, result: TokenResult, bound_to: str, now: float
    ) -> CachedToken:
        try:
            return await self._store.write(user_id, application, result, bound_to, now)
        except Exception as exc:
            # The token is good; only caching failed. Serve it (the original's promise).
            logger.warning(
                "could not cache the OBO token for application %r (%s); returning it uncached",
                application,
                type(exc).__name__,
            )
            return cached_token(user_id, application, result, bound_to, now)

    def _servable(self, cached: CachedToken, bound_to: str) -> bool:
        return cached.fingerprint == bound_to and cached.expires_at - self.expiry_buffer > (
            self._clock()
        )

    def _remember(self, user_id: str, application: str, token: CachedToken) -> None:
        self._l1.put(user_id, application, token.account, expires_at=token.expires_at)

    async def _purge_user(self, user_id: str) -> int:
        self._l1.discard(user_id)
        return await self._store.purge(user_id)

    # --- configuration --------------------------------------------------------------

    def _require_settings(self) -> MicrosoftSettings:
        if self._settings is None:
            raise self._settings_error or ConfigurationError()
        return self._settings

    def _client(self, tid: str | None) -> EntraClient:
        settings = self._require_settings()
        endpoint = settings.token_endpoint(tid)
        client = self._clients.get(endpoint)
        if client is None:
            client = EntraClient(
                http=self._http,
                token_endpoint=endpoint,
                client_id=settings.client_id,
                authenticate=settings.authenticator(endpoint),
                clock=self._clock,
                timeout=self._timeout,
            )
            self._clients[endpoint] = client
        return client

    def _http(self) -> httpx.AsyncClient:
        return self._http_client if self._http_client is not None else self.auth.http

    def _unknown_application(self, name: object) -> UnknownApplicationError:
        known = ", ".join(repr(n) for n in self.applications)
        return UnknownApplicationError(
            f"Unknown OBO application {str(name)[:64]!r}; configured applications: {known}"
        )


def _check_arguments(user_id: object, application_name: object) -> None:
    if not isinstance(application_name, str):
        raise TypeError(f"application_name must be a string, got {type(application_name).__name__}")
    _check_user_id(user_id)


def _check_user_id(user_id: object) -> None:
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a string, got {type(user_id).__name__}")
    if not user_id or len(user_id) > 255:
        raise ValueError("user_id must be a non-empty Better Auth user id (at most 255 characters)")


def _api_error(exc: OBOError) -> APIError:
    return APIError(exc.status, exc.code, exc.message, exc.to_extra())


def _log(application: str, source: str, started: float) -> None:
    elapsed = (time.perf_counter() - started) * 1000
    logger.info("obo token application=%s source=%s duration_ms=%.1f", application, source, elapsed)
