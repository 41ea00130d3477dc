"""``OBOPlugin``: the glue between better-auth-server and the exchange.

The call path of ``get_obo_token`` (ARCHITECTURE.md): L1 hit (and, when the token is
about to enter the buffer, one re-exchange in the background) -> unknown application ->
single-flight on (user, application) -> ``TokenSource.load`` (cached row, else exchange)
-> L1.
Our exceptions become ``better_auth.APIError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import httpx
from better_auth import APIError, Plugin
from better_auth.plugins import HookSet

from ._assertion import application_scope_problems
from ._background import DEFAULT_REFRESH_CONCURRENCY, BackgroundRefresh
from ._cache import FlightClosed, SingleFlight, TokenCache
from ._claims import capabilities_option, normalize_claims
from ._config import (
    OBOApplication,
    app_id_uris_option,
    normalize_applications,
    seconds_option,
    unknown_application,
)
from ._credentials import (
    Credential,
    credential_expiry_warnings,
    labelled_credentials,
)
from ._downstream import OBOAuth
from ._engine import ExchangeEngine
from ._entra import ClientAuthenticator
from ._errors import (
    OBO_ERROR_CODES,
    ConfigurationError,
    OBOError,
    StorageUnavailableError,
    UnknownApplicationError,
    storage_error,
)
from ._lease import Lease, NullLease
from ._lifecycle import Lifecycle
from ._provider import (
    MicrosoftSettings,
    configuration_warnings,
    id_token_sign_in_notice,
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

    from ._azure import OBOTokenCredential

__all__ = ["OBOAPIError", "OBOPlugin"]

logger = logging.getLogger("better_auth_obo")

_DEFAULT_RETRY = RetryPolicy()
T = TypeVar("T")


class OBOPlugin(Plugin):
    """Microsoft Entra ID On-Behalf-Of tokens for better-auth-server.

    Reads the client id, tenant, authority and credentials from the Microsoft social
    provider; caches each (user, application) token in the ``account`` table.

    Example::

        obo = OBOPlugin(applications={"graph": {"scope": ["https://graph.microsoft.com/.default"]}})
        auth = BetterAuth(..., social_providers={"microsoft": {...}}, plugins=[obo])
        account = await obo.get_obo_token(user_id=user_id, application_name="graph")
        headers = {"Authorization": f"Bearer {account['accessToken']}"}

    Args:
        applications: The downstream APIs: ``{name: {"scope": [...]}}`` or
            ``{name: OBOApplication(scope=[...])}``. Each name is yours to choose; all the
            scopes of one application must belong to one resource.
        expiry_buffer: Seconds before expiry at which a cached token is no longer served.
        refresh_margin: The user's stored Microsoft token is refreshed when it expires
            within this many seconds.
        refresh_ahead: A token in use is re-exchanged in the background this many seconds
            before it enters the buffer, never before half its lifetime; 0 turns it off.
        outage_grace: While Entra ID is unavailable, serve a cached token that has not
            expired yet (and log a warning) instead of failing.
        cache_max_entries: Size of the in-process cache (least recently used out first).
        cache_revalidate_after: The in-process cache re-reads the database at least this
            often (seconds), so a revoke or a new sign-in in another process is seen
            within this bound.
        lease: ``PostgresAdvisoryLease(engine)`` or ``RedisLease(redis)``: one exchange per
            cold key across processes. ``None``: one per process, and still one row.
        credentials: ``[ClientCertificate(...), ClientSecret(...)]``,
            ``FederatedAssertion(...)``, ``ManagedIdentityAssertion(...)`` (each may be a
            ``(label, credential)`` pair), tried in order on credential errors, instead of
            the Microsoft provider's own secret or ``client_assertion``.
        retry: How transient failures (network errors, timeouts, 5xx, 429) are retried;
            the default is ``RetryPolicy()``; ``None`` for a single attempt.
        http_client: An ``httpx.AsyncClient`` for the requests to Entra ID; default: the
            host's ``auth.http``, so ``BetterAuth(http_client=...)`` sets proxies and TLS
            trust for both.
        timeout: Seconds per request to Entra ID (more than 0).
        app_id_uris: App ID URIs of this app besides ``api://<client id>`` (e.g.
            ``["https://api.contoso.com"]``), accepted as the stored token's audience.
        client_capabilities: ``["cp1"]`` declares that this app handles claims challenges;
            Entra ID then issues Continuous Access Evaluation tokens.
        refresh_concurrency: Background re-exchanges running at once (default 32); more
            due keys wait in a queue, each once.
        clock: A ``() -> float`` epoch clock, for tests.
        sleep: An async sleep (the retries' backoff), for tests.
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
        app_id_uris: Iterable[str] = (),
        client_capabilities: Iterable[str] = (),
        refresh_concurrency: int = DEFAULT_REFRESH_CONCURRENCY,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.applications: Mapping[str, OBOApplication] = normalize_applications(applications)
        self.expiry_buffer = seconds_option("expiry_buffer", expiry_buffer)
        self.refresh_margin = seconds_option("refresh_margin", refresh_margin)
        self.refresh_ahead = seconds_option("refresh_ahead", refresh_ahead)
        self.outage_grace = bool(outage_grace)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient")
        if lease is not None and not callable(getattr(lease, "hold", None)):
            raise TypeError("lease must have a hold(key, ttl=...) method, e.g. RedisLease(redis)")
        self._lease: Lease = lease if lease is not None else NullLease()
        self._credentials = labelled_credentials(credentials)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy, or None for a single attempt")
        self._retry = retry
        self._sleep = sleep
        self._http_client = http_client
        self._timeout = seconds_option("timeout", timeout)
        if self._timeout == 0:
            raise ValueError("timeout must be more than 0 seconds")
        self._clock = clock
        self._app_id_uris = app_id_uris_option(app_id_uris)
        self.client_capabilities = capabilities_option(client_capabilities)
        self.cache_revalidate_after = seconds_option(
            "cache_revalidate_after", cache_revalidate_after, allow_inf=True
        )
        self._l1: TokenCache[OBOAccount] = TokenCache(
            max_entries=cache_max_entries,
            buffer=self.expiry_buffer,
            revalidate_after=self.cache_revalidate_after,
            refresh_ahead=self.refresh_ahead,
            clock=clock,
        )
        # Keyed with the purge generation: a caller after a revoke, an unlink or a deletion
        # never joins a load that started before it.
        self._flight: SingleFlight[tuple[str, str, int], OBOAccount] = SingleFlight()
        # Forced exchanges (force_refresh, a claims challenge), one per distinct claims
        # request: N requests refused by a resource at once make one exchange, and none
        # of them gets the cached token it is replacing.
        self._forced: SingleFlight[tuple[str, str, int, str], OBOAccount] = SingleFlight()
        self._telemetry = Telemetry()
        self._background: BackgroundRefresh[tuple[str, str]] = BackgroundRefresh(
            clock=clock, concurrency=refresh_concurrency, max_keys=cache_max_entries
        )
        self._closed = False
        self._lifecycle = Lifecycle(
            purge=self._purge_user, forget=self._l1.invalidate, deleted=self._user_deleted
        )
        self._cache_max_entries = cache_max_entries
        self._engine: ExchangeEngine | None = None
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
        # The engine OBOClient runs on; the plugin adds the stored token, the rows and the
        # lifecycle in front of it.
        engine = self._engine = ExchangeEngine(
            client_id=settings.client_id,
            tenant=settings.tenant,
            authority=settings.authority,
            authenticators=partial(self._authenticators, settings),
            http=self._http,
            retry=self._retry,
            sleep=self._sleep,
            timeout=self._timeout,
            clock=self._clock,
            app_id_uris=self._app_id_uris,
            subject_claim=settings.account_id_claim,
            max_throttled=self._cache_max_entries,
        )
        verifier = engine.verifier

        async def verify(token: str, account_id: object) -> object:
            return await verifier.verify(token, account_id=account_id)

        refresher = MicrosoftTokenRefresher(
            auth=auth,
            store=self._store_ref,
            entra=engine.client,
            verify=verify,
            scopes=settings.scopes,
            margin=self.refresh_margin,
            clock=self._clock,
        )
        self._source = TokenSource(
            store=self._store_ref,
            refresher=refresher,
            verifier=verifier,
            client_for=engine.client,
            applications=self.applications,
            clock=self._clock,
            buffer=self.expiry_buffer,
            refresh_ahead=self.refresh_ahead,
            outage_grace=self.outage_grace,
            lease=self._lease,
            lease_ttl=self._timeout * 2,
            capabilities=self.client_capabilities,
        )
        warn(configuration_warnings(settings))
        notice = id_token_sign_in_notice(settings)
        if notice is not None:
            logger.warning("better-auth-obo: %s", notice)
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        warn(credential_expiry_warnings(self._credentials, now=now))

    def hooks(self) -> HookSet:
        return self._lifecycle.hooks

    # --- server-only API --------------------------------------------------------------

    async def get_obo_token(
        self,
        *,
        user_id: str,
        application_name: str,
        claims: str | Mapping[str, Any] | None = None,
        force_refresh: bool = False,
    ) -> OBOAccount:
        """A token for ``application_name`` on behalf of ``user_id``: cached, else exchanged.

        Returns the account row (``accessToken``, ``scope``, ``accessTokenExpiresAt``,
        ``providerId`` = ``microsoft:<application_name>``, ``userId``). Raises
        ``better_auth.APIError`` with a code from ``OBO_ERROR_CODES``.

        ``claims`` (a claims challenge from a resource, JSON text or a dict) is sent on a
        new exchange (with ``client_capabilities``), as is ``force_refresh=True``: the
        cached token is not served, and the new one replaces it.
        """
        if claims is not None or force_refresh:
            if not isinstance(force_refresh, bool):
                raise TypeError("force_refresh must be True or False")
            return await self._forced_token(user_id, application_name, claims)
        try:
            hit = self._hit(user_id, application_name)
        except TypeError:  # an unhashable argument: say which
            _check_arguments(user_id, application_name)
            raise
        if hit is not None:
            return hit.copy()
        _check_arguments(user_id, application_name)
        if application_name not in self.applications:
            raise _api_error(self._unknown_application(application_name))
        if self._closed:
            raise RuntimeError(_CLOSED)
        generation = self._l1.generation(user_id, application_name)
        try:
            account = await self._flight.run(
                (user_id, application_name, generation),
                lambda: self._load(user_id, application_name, generation=generation),
            )
        except OBOError as exc:
            raise _api_error(exc) from exc
        except FlightClosed:  # the load was cancelled by aclose() (never this caller's cancel)
            raise RuntimeError(_CLOSED) from None
        return account.copy()

    @property
    def tenant(self) -> str | None:
        """The tenant the Microsoft provider is configured for (a GUID, a domain or a
        multi-tenant alias such as ``organizations``); None before ``init``."""
        return self._settings.tenant if self._settings is not None else None

    def http_auth(
        self, *, user_id: str, application_name: str, allowed_hosts: Iterable[str] | None = None
    ) -> OBOAuth:
        """An ``httpx.Auth`` sending ``user_id``'s token for ``application_name``, answering
        a claims challenge (CAE) with one new exchange and a replay.

        Example::

            auth = obo.http_auth(user_id=uid, application_name="graph")
            async with httpx.AsyncClient(auth=auth) as client:
                me = (await client.get("https://graph.microsoft.com/v1.0/me")).json()

        The token goes over https only (loopback excepted), and, when the application's
        resource is an https URL (Graph), only to its host unless ``allowed_hosts`` says.
        """
        return OBOAuth(
            self, user_id=user_id, application_name=application_name, allowed_hosts=allowed_hosts
        )

    def credential(self, *, user_id: str, application_name: str) -> OBOTokenCredential:
        """An Azure SDK async credential (``AsyncTokenCredential``, ``AsyncSupportsTokenInfo``)
        for ``user_id`` and ``application_name``; needs ``better-auth-obo[azure]``.

        Example::

            graph = GraphServiceClient(
                credentials=obo.credential(user_id=uid, application_name="graph"),
                scopes=["https://graph.microsoft.com/.default"],
            )
        """
        try:
            from ._azure import OBOTokenCredential
        except ImportError as exc:  # azure-core is an extra
            raise ImportError(
                'obo.credential() needs azure-core: pip install "better-auth-obo[azure]"'
            ) from exc
        return OBOTokenCredential(self, user_id=user_id, application_name=application_name)

    def _hit(self, user_id: str, application_name: str) -> OBOAccount | None:
        """The token in memory (not a copy: callers copy or read it), or None. A token about
        to enter the buffer is re-exchanged once, in the background."""
        hit = self._l1.lookup(user_id, application_name)
        if hit is None:
            return None
        self._telemetry.hits[application_name] += 1
        if hit[1]:
            key = (user_id, application_name)
            generation = self._l1.generation(user_id, application_name)
            self._background.start(key, partial(self._refresh_ahead, generation=generation))
        return hit[0]

    async def _forced_token(
        self, user_id: str, application_name: str, claims: str | Mapping[str, Any] | None
    ) -> OBOAccount:
        _check_arguments(user_id, application_name)
        challenge = normalize_claims(claims)
        if application_name not in self.applications:
            raise _api_error(self._unknown_application(application_name))
        if self._closed:
            raise RuntimeError(_CLOSED)
        generation = self._l1.generation(user_id, application_name)
        text = json.dumps(challenge, sort_keys=True) if challenge else ""
        try:
            account = await self._forced.run(
                (user_id, application_name, generation, text),
                lambda: self._load(
                    user_id, application_name, generation=generation, force=True, claims=challenge
                ),
            )
        except OBOError as exc:
            raise _api_error(exc) from exc
        except FlightClosed:
            raise RuntimeError(_CLOSED) from None
        return account.copy()

    async def revoke_obo_tokens(self, user_id: str, application_name: str | None = None) -> int:
        """Delete the user's cached OBO tokens (one application, or all); returns rows deleted.

        Linearizable with exchanges in flight, in this process and in others: once this
        returns, no process serves a token minted before it from the table (rows carry the
        generation they were minted under), and this process not from memory either;
        another process's memory lets go within ``cache_revalidate_after`` seconds.
        """
        _check_user_id(user_id)
        if application_name is not None and application_name not in self.applications:
            raise _api_error(self._unknown_application(application_name))
        apps = list(self.applications) if application_name is None else [application_name]
        self._l1.invalidate(user_id, application_name)  # loads in flight won't fill memory
        # Moved first: an exchange in flight elsewhere deletes what it writes after this.
        # The rows are deleted even when that write fails; the failure is still raised,
        # since an exchange in flight in another process could then outlive the revoke.
        moved = await _storage_failure(
            self._store.new_generation(user_id, application_name, self._clock())
        )
        deleted = await _storage_failure(
            self._store.purge(user_id, apps, every=application_name is None)
        )
        for outcome in (moved, deleted):
            if isinstance(outcome, StorageUnavailableError):
                # Raised here, outside any except block, so no exception in its chain holds
                # the driver's error (whose text can carry statement parameters, tokens too).
                raise _api_error(outcome)
        assert isinstance(deleted, int)
        return deleted

    async def aclose(self) -> None:
        """Shut down for good (call on application shutdown): cancel and await every
        exchange in flight and every background refresh (their leases are released as they
        unwind). Afterwards tokens still in memory are served, without background work;
        anything else raises ``RuntimeError``."""
        self._closed = True
        await self._background.aclose()
        await self._flight.aclose()
        await self._forced.aclose()
        if self._source is not None:  # work the callers' exchanges shared, shielded
            await self._source.refresher.aclose()
            await self._source.verifier.aclose()  # the engine's

    # --- the work behind a miss ---------------------------------------------------------

    async def _load(
        self,
        user_id: str,
        application: str,
        *,
        ahead: bool = False,
        generation: int | None = None,
        force: bool = False,
        claims: Mapping[str, Any] | None = None,
    ) -> OBOAccount:
        if self._source is None:
            raise self._settings_error or ConfigurationError()
        started = time.perf_counter()
        if generation is None:
            generation = self._l1.generation(user_id, application)
        with self._telemetry.span(application):
            try:
                loaded = await self._source.load(
                    user_id, application, ahead=ahead, force=force, claims=claims
                )
            except OBOError as exc:
                _log_failure(application, exc, started)
                self._telemetry.failed(application, exc)
                raise
            except Exception as exc:
                failure = storage_error(exc)
                if failure is None:
                    raise
            else:
                failure = None
            if failure is not None:
                # Outside the except block: nothing in its chain holds the driver's error.
                _log_failure(application, failure, started)
                self._telemetry.failed(application, failure)
                raise failure
        token, source = loaded.token, loaded.source
        if source == "exchange":
            self._background.succeeded((user_id, application))
        elapsed = (time.perf_counter() - started) * 1000
        logger.info(
            "obo token application=%s source=%s ahead=%s duration_ms=%.1f",
            application,
            source,
            ahead,
            elapsed,
        )
        self._telemetry.served(application, source, elapsed)
        if loaded.keep:  # and not invalidated while we worked (the generation):
            self._l1.put(
                user_id,
                application,
                token.account,
                expires_at=token.expires_at,
                generation=generation,
                issued_at=token.account["updatedAt"].timestamp(),  # when it was minted
            )
        return token.account

    async def _refresh_ahead(self, key: tuple[str, str], *, generation: int) -> None:
        # Not through the callers' single-flight: a caller whose memory entry lapses
        # meanwhile must find the still-good row in the database, not wait on this exchange.
        # BackgroundRefresh already keeps it to one task per key. It may have waited in the
        # queue: skip it if the key was revoked or purged since, or is no longer in use.
        user_id, application = key
        if self._l1.generation(user_id, application) != generation:
            return
        if self._l1.lookup(user_id, application) is None:
            return
        await self._load(user_id, application, ahead=True, generation=generation)

    async def _purge_user(self, user_id: str) -> int:
        """The Microsoft account went (unlink, admin removal): drop the user's rows. An
        exchange in flight sees that on its check after writing and drops its row too."""
        self._l1.invalidate(user_id)
        return await self._store.purge(user_id, self.applications, every=True)

    async def _user_deleted(self, user_id: str) -> None:
        """The user went: their rows, and the account rows the host's ``/delete-user``
        leaves behind where no foreign key cascades (SQLite, MemoryAdapter)."""
        self._l1.invalidate(user_id)
        await self._store.delete_accounts(user_id)

    # --- configuration --------------------------------------------------------------

    def _authenticators(
        self, settings: MicrosoftSettings, endpoint: str
    ) -> list[tuple[str, ClientAuthenticator]]:
        if not self._credentials:  # the provider's own secret or client assertion
            return [("provider", settings.authenticator(endpoint))]
        return [
            (label, credential.authenticator(settings.client_id, endpoint, http=self._http))
            for label, credential in self._credentials
        ]

    def _http(self) -> httpx.AsyncClient:
        return self._http_client if self._http_client is not None else self.auth.http

    def _adapter_application(self, user_id: object, application_name: object) -> OBOApplication:
        """The application an adapter (``http_auth``, ``credential``) is made for; a wrong
        argument is a programming error, raised when the adapter is made."""
        if not isinstance(user_id, str) or not user_id:
            raise TypeError("user_id must be a non-empty Better Auth user id")
        application = (
            self.applications.get(application_name) if isinstance(application_name, str) else None
        )
        if application is None:
            raise ValueError(self._unknown_application(application_name).message)
        return application

    def _unknown_application(self, name: object) -> UnknownApplicationError:
        return unknown_application(name, self.applications)


async def _storage_failure(work: Awaitable[T]) -> T | StorageUnavailableError | None:
    """The result of ``work``, or the StorageUnavailableError for its database failure
    (the driver's exception itself is not kept: its text can hold tokens)."""
    try:
        return await work
    except Exception as exc:
        failure = storage_error(exc)
        if failure is None:
            raise
    return failure


_NOT_INITIALISED = "OBOPlugin is not initialised: pass it in BetterAuth(plugins=[...])"
_CLOSED = (
    "OBOPlugin is closed (aclose() was called): only tokens already in memory are served; "
    "build a new BetterAuth and plugin to exchange again"
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


class OBOAPIError(APIError):
    """What ``get_obo_token`` and ``revoke_obo_tokens`` raise: the host's ``APIError``
    (``except APIError`` and the host's error answers keep working) carrying the typed
    library error as ``.error``.

    Example::

        try:
            account = await obo.get_obo_token(user_id=uid, application_name="graph")
        except OBOAPIError as exc:
            if isinstance(exc.error, InteractionRequiredError):
                ...  # sign_in_again(exc)
            raise
    """

    def __init__(self, error: OBOError) -> None:
        super().__init__(error.status, error.code, error.message, error.to_extra())
        self.error = error


def _api_error(exc: OBOError) -> OBOAPIError:
    return OBOAPIError(exc)
