"""The miss path: the cached row if still good, else a fresh exchange.

Steps 4-9 of the call path (ARCHITECTURE.md): read the user's Microsoft account and the
cached row; serve the row while fresh and bound to the user's current Microsoft token;
otherwise (under the cross-process lease, when one is configured) refresh the Microsoft
token if it expires soon, check it can be an assertion, exchange, and upsert.
While Entra is unavailable, a cached token that has not expired yet is served instead
of failing (outage grace).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._assertion import check_assertion, fingerprint, read_claims
from ._config import OBOApplication
from ._entra import EntraClient, TokenResult
from ._errors import AccountNotFoundError, EntraUnavailableError
from ._lease import Lease, NullLease
from ._refresh import MicrosoftTokenRefresher
from ._store import CachedToken, OBOStore, cached_token

__all__ = ["TokenSource"]

logger = logging.getLogger("better_auth_obo")

#: A cached token with less left than this is not worth serving even in an outage.
MIN_GRACE_LIFETIME = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSource:
    """Produces the token for (user, application) when the in-process cache cannot."""

    store: OBOStore
    refresher: MicrosoftTokenRefresher
    client_for: Callable[[str | None], EntraClient]
    client_id: str
    applications: Mapping[str, OBOApplication]
    clock: Callable[[], float]
    buffer: float
    refresh_ahead: float
    outage_grace: bool
    lease: Lease
    lease_ttl: float

    async def load(
        self, user_id: str, application: str, *, ahead: bool = False
    ) -> tuple[CachedToken, str]:
        """The token to serve and where it came from (``database``, ``exchange``, ``grace``).

        ``ahead``: a proactive refresh, so a cached token about to enter the refresh
        window does not count as good.
        """
        microsoft = await self.store.microsoft_account(user_id)
        if microsoft is None:
            raise AccountNotFoundError()
        current = fingerprint(self.store.decrypt(microsoft.get("accessToken")) or "")
        keep = self.buffer + (self.refresh_ahead if ahead else 0.0)
        cached = await self.store.read(user_id, application)
        if self._good(cached, current, keep):
            assert cached is not None
            return cached, "database"
        async with self.lease.hold(f"{user_id}:{application}", ttl=self.lease_ttl) as held:
            # Another process may have written it while we waited (also when the wait
            # timed out: the holder was probably still exchanging). NullLease: no wait.
            if held is not True or not isinstance(self.lease, NullLease):
                again = await self.store.read(user_id, application)
                if self._good(again, current, keep):
                    assert again is not None
                    return again, "database"
            try:
                token = await self._exchange(user_id, application, microsoft)
            except EntraUnavailableError:
                if self.outage_grace and self._good(cached, current, MIN_GRACE_LIFETIME):
                    assert cached is not None
                    logger.warning(
                        "Entra ID unavailable: serving the cached token for application %r "
                        "(expires in %d s)",
                        application,
                        int(cached.expires_at - self.clock()),
                    )
                    return cached, "grace"
                raise
        return token, "exchange"

    def _good(self, cached: CachedToken | None, bound_to: str, keep: float) -> bool:
        return (
            cached is not None
            and cached.fingerprint == bound_to
            and cached.expires_at - keep > self.clock()
        )

    async def _exchange(
        self, user_id: str, application: str, microsoft: dict[str, Any]
    ) -> CachedToken:
        assertion = await self.refresher.valid_token(microsoft)
        claims = read_claims(assertion)
        check_assertion(claims, client_id=self.client_id)
        now = self.clock()
        result = await self.client_for(claims.tid).exchange(
            assertion, self.applications[application].scope, key=(user_id, application)
        )
        return await self._save(user_id, application, result, fingerprint(assertion), now)

    async def _save(
        self, user_id: str, application: str, result: TokenResult, bound_to: str, now: float
    ) -> CachedToken:
        try:
            return await self.store.write(user_id, application, result, bound_to, now)
        except Exception as exc:
            # The token is good; only caching failed. Serve it (the original's promise).
            logger.warning(
                "could not cache the OBO token for application %r (%s); returning it uncached",
                application,
                type(exc).__name__,
            )
            return cached_token(user_id, application, result, bound_to, now)
