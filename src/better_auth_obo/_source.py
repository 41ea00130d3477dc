"""The miss path: the cached row if still good, else a verified, linearized exchange.

Steps 4-9 of the call path (ARCHITECTURE.md): read the user's rows in one statement
(the Microsoft account, the revocation generation, the cached row); serve the row while
fresh and bound to the user's current Microsoft token; otherwise (under the
cross-process lease, when one is configured) verify the Microsoft token, refresh it if
it expires soon, verify what will be sent, exchange, and upsert. While Entra is
unavailable, a cached token that has not expired yet is served instead of failing
(outage grace).

After the row is written the user's rows are read again: if the Microsoft account went
(unlink, user deleted), its token changed (a new sign-in) or the generation moved
(``revoke_obo_tokens``) while the exchange was in flight, the row just written is
deleted again, so no token minted before such an event is served after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._assertion import fingerprint
from ._config import OBOApplication
from ._entra import EntraClient, TokenResult
from ._errors import AccountNotFoundError, EntraUnavailableError
from ._lease import Lease, NullLease
from ._refresh import MicrosoftTokenRefresher
from ._store import CachedToken, OBOStore, UserRows, cached_token, provider_id
from ._verify import AssertionVerifier

__all__ = ["Loaded", "TokenSource"]

logger = logging.getLogger("better_auth_obo")

#: A cached token with less left than this is not worth serving even in an outage.
MIN_GRACE_LIFETIME = 5.0


class Loaded(NamedTuple):
    """A token to serve, where it came from, and whether memory may keep it."""

    token: CachedToken
    source: str  # database, exchange, grace
    keep: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSource:
    """Produces the token for (user, application) when the in-process cache cannot."""

    store: OBOStore
    refresher: MicrosoftTokenRefresher
    verifier: AssertionVerifier
    client_for: Callable[[str], EntraClient]
    applications: Mapping[str, OBOApplication]
    clock: Callable[[], float]
    buffer: float
    refresh_ahead: float
    outage_grace: bool
    lease: Lease
    lease_ttl: float

    async def load(self, user_id: str, application: str, *, ahead: bool = False) -> Loaded:
        """The token to serve.

        ``ahead``: a proactive refresh, so a cached token about to enter the refresh
        window does not count as good.
        """
        rows = await self.store.user_rows(user_id)
        microsoft = rows.microsoft
        if microsoft is None:
            raise AccountNotFoundError()
        stored = self.store.decrypt(microsoft.get("accessToken")) or ""
        current = fingerprint(stored)
        keep = self.buffer + (self.refresh_ahead if ahead else 0.0)
        row = rows.cached.get(provider_id(application))
        cached = self.store.cached(row, user_id, application)
        if cached is not None and self._good(cached, current, keep):
            return Loaded(cached, "database")
        async with self.lease.hold(f"{user_id}:{application}", ttl=self.lease_ttl) as held:
            # Another process may have written it while we waited (also when the wait
            # timed out: the holder was probably still exchanging). NullLease: no wait.
            if held is not True or not isinstance(self.lease, NullLease):
                again = await self.store.read(user_id, application)
                if again is not None and self._good(again, current, keep):
                    return Loaded(again, "database")
            try:
                return await self._exchange(user_id, application, rows, stored)
            except EntraUnavailableError:
                if (
                    self.outage_grace
                    and cached is not None
                    and self._good(cached, current, MIN_GRACE_LIFETIME)
                ):
                    logger.warning(
                        "Entra ID unavailable: serving the cached token for application %r "
                        "(expires in %d s)",
                        application,
                        int(cached.expires_at - self.clock()),
                    )
                    return Loaded(cached, "grace")
                raise

    def _good(self, cached: CachedToken, bound_to: str, keep: float) -> bool:
        return cached.fingerprint == bound_to and cached.expires_at - keep > self.clock()

    async def _exchange(
        self, user_id: str, application: str, rows: UserRows, stored: str
    ) -> Loaded:
        microsoft: dict[str, Any] = rows.microsoft or {}
        account_id = microsoft.get("accountId")
        # Whose token this is, checked before the refresh token is used on its behalf.
        identity = await self.verifier.verify(stored, account_id=account_id, require_current=False)
        assertion = await self.refresher.valid_token(
            microsoft, stored, tid=identity.tid, account_id=account_id
        )
        verified = await self.verifier.verify(assertion, account_id=account_id)
        if not await self.store.user_exists(user_id):
            # The host's /delete-user leaves account rows behind on SQLite and MemoryAdapter.
            raise AccountNotFoundError()
        now = self.clock()
        result = await self.client_for(verified.tid).exchange(
            assertion, self.applications[application].scope, key=(user_id, application)
        )
        bound_to = fingerprint(assertion)
        generation = rows.generation(application)
        return await self._save(user_id, application, result, bound_to, now, generation)

    async def _save(
        self,
        user_id: str,
        application: str,
        result: TokenResult,
        bound_to: str,
        now: float,
        generation: tuple[str, str],
    ) -> Loaded:
        try:
            token = await self.store.write(user_id, application, result, bound_to, now)
        except Exception as exc:
            # The token is good; only caching failed. Serve it (the original's promise).
            logger.warning(
                "could not cache the OBO token for application %r (%s); returning it uncached",
                application,
                type(exc).__name__,
            )
            return Loaded(cached_token(user_id, application, result, bound_to, now), "exchange")
        # Linearize with what happened meanwhile (module docstring).
        try:
            after = await self.store.user_rows(user_id)
            # A user row deleted without our hooks (a raw delete, no foreign key cascade).
            exists = after.microsoft is not None and await self.store.user_exists(user_id)
        except Exception as exc:
            # The database failed between two statements: a revoke or unlink elsewhere
            # would have failed with it. In this process the purge generation still keeps
            # memory right; the row stays bound to its Microsoft token.
            logger.warning(
                "could not re-check the OBO token for application %r after caching it (%s)",
                application,
                type(exc).__name__,
            )
            return Loaded(token, "exchange")
        microsoft = after.microsoft
        if (
            exists
            and microsoft is not None
            and after.generation(application) == generation
            and fingerprint(self.store.decrypt(microsoft.get("accessToken")) or "") == bound_to
        ):
            return Loaded(token, "exchange")
        # Revoked, unlinked, deleted or signed in anew while we exchanged: undo the write.
        # The caller asked before that happened and gets the token (its call comes first
        # in any order of events); nothing keeps it for anyone after.
        await self.store.delete_if_bound(user_id, application, bound_to)
        logger.info(
            "an OBO token for application %r was minted while the user's cache was revoked or "
            "their Microsoft sign-in changed; it was not kept",
            application,
        )
        return Loaded(token, "exchange", keep=False)
