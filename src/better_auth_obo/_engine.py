"""The exchange engine ``OBOClient`` and ``OBOPlugin`` share.

One app (client id, tenant, authority, credentials) and what every exchange needs from
it: the assertion verifier (discovery + JWKS, ``_verify.py``), one token-endpoint client
per tenant (``EntraClient``: retries, throttling, credential rotation), and the client
capabilities. ``OBOClient`` puts an in-memory cache keyed by the inbound token in front
of it; ``OBOPlugin`` puts the stored Microsoft token, the ``account`` rows and Better
Auth's lifecycle in front of it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import httpx

from ._entra import ClientAuthenticator, EntraClient
from ._errors import InvalidAssertionError
from ._retry import MAX_THROTTLED_KEYS, RetryPolicy, ThrottleMemory
from ._verify import MULTI_TENANT_ALIASES, AssertionVerifier, is_guid

__all__ = ["MAX_ENTRA_CLIENTS", "ExchangeEngine"]

#: Token-endpoint clients kept (one per tenant in multi-tenant mode), least recently used out.
MAX_ENTRA_CLIENTS = 1_000

#: The credentials for one token endpoint, as ``(label, authenticator)`` in the order tried.
Authenticators = Callable[[str], list[tuple[str, ClientAuthenticator]]]


class ExchangeEngine:
    """Verification and token-endpoint clients for one app registration."""

    def __init__(
        self,
        *,
        client_id: str,
        tenant: str,
        authority: str,
        authenticators: Authenticators,
        http: Callable[[], httpx.AsyncClient],
        retry: RetryPolicy | None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float,
        clock: Callable[[], float],
        app_id_uris: Iterable[str] = (),
        subject_claim: str = "oid",
        max_throttled: int = MAX_THROTTLED_KEYS,
    ) -> None:
        self.client_id = client_id
        self.tenant = tenant
        self.authority = authority.rstrip("/")
        self._authenticators = authenticators
        self._http = http
        self._retry = retry
        self._sleep = sleep
        self._timeout = timeout
        self._clock = clock
        # One throttle memory for every token endpoint (keys are scoped per endpoint).
        self.throttles = ThrottleMemory(maxsize=max(MAX_THROTTLED_KEYS, max_throttled))
        self._clients: OrderedDict[str, EntraClient] = OrderedDict()
        self.verifier = AssertionVerifier(
            http=http,
            authority=self.authority,
            tenant=tenant,
            client_id=client_id,
            app_id_uris=app_id_uris,
            subject_claim=subject_claim,
            clock=clock,
            retry=retry,
            sleep=sleep,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return (
            f"ExchangeEngine(client_id={self.client_id!r}, tenant={self.tenant!r}, "
            f"authority={self.authority!r})"
        )

    @property
    def multi_tenant(self) -> bool:
        return self.tenant.lower() in MULTI_TENANT_ALIASES

    def token_endpoint(self, tid: str | None = None) -> str:
        """The tenant-specific token endpoint; with a multi-tenant alias, the user's ``tid``.

        Microsoft's OBO guidance: the middle tier must call its tenant's endpoint, never
        ``/common`` (guests get their home tenant's token otherwise). The ``tid`` comes
        from a verified token, and only a GUID goes into the path: anything else could
        send the request, and the client secret with it, to another path of the host.
        """
        if not self.multi_tenant:
            return f"{self.authority}/{self.tenant}/oauth2/v2.0/token"
        if not is_guid(tid):
            raise InvalidAssertionError(
                "The user's Microsoft token names no valid tenant (its tid is not a GUID); "
                "no request was sent",
                reason="tenant",
            )
        return f"{self.authority}/{tid}/oauth2/v2.0/token"

    def client(self, tid: str | None) -> EntraClient:
        """The token-endpoint client for the user's tenant (kept, least recently used out)."""
        endpoint = self.token_endpoint(tid)
        client = self._clients.get(endpoint)
        if client is not None:
            self._clients.move_to_end(endpoint)
            return client
        client = EntraClient(
            http=self._http,
            token_endpoint=endpoint,
            client_id=self.client_id,
            authenticators=self._authenticators(endpoint),
            clock=self._clock,
            timeout=self._timeout,
            retry=self._retry,
            sleep=self._sleep,
            throttles=self.throttles,
        )
        self._clients[endpoint] = client
        while len(self._clients) > MAX_ENTRA_CLIENTS:
            self._clients.popitem(last=False)
        return client

    async def aclose(self) -> None:
        """Cancel key fetches in flight."""
        await self.verifier.aclose()
