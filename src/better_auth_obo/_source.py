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

from ._assertion import fingerprint, read_claims
from ._claims import merge_claims
from ._config import OBOApplication
from ._entra import EntraClient, TokenResult
from ._errors import AccountNotFoundError, EntraUnavailableError, KeyRetiredError
from ._lease import Lease, NullLease
from ._refresh import MicrosoftTokenRefresher
from ._store import CachedToken, OBOStore, UserRows, cached_token, provider_id
from ._verify import AssertionVerifier, is_guid

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
    #: Client capabilities declared on every exchange (``["cp1"]``: CAE).
    capabilities: tuple[str, ...] = ()

    async def load(
        self,
        user_id: str,
        application: str,
        *,
        ahead: bool = False,
        force: bool = False,
        claims: Mapping[str, Any] | None = None,
    ) -> Loaded:
        """The token to serve.

        ``ahead``: a proactive refresh, so a cached token about to enter the refresh
        window does not count as good. ``force``: exchange even when a good token is
        cached (``force_refresh``, a claims challenge), with ``claims`` on the request;
        the new token replaces the cached one.
        """
        rows = await self.store.user_rows(user_id)
        if rows.microsoft is None:
            raise AccountNotFoundError()
        stored = self.store.decrypt(rows.microsoft.get("accessToken")) or ""
        keep = self.buffer + (self.refresh_ahead if ahead else 0.0)
        cached = None if force else self._servable(rows, user_id, application, keep)
        # A user row deleted without our hooks leaves its account rows behind where no
        # foreign key cascades (SQLite, MemoryAdapter): a deleted user gets nothing.
        if cached is not None and await self.store.user_present(rows, user_id):
            return Loaded(cached, "database")
        async with self.lease.hold(f"{user_id}:{application}", ttl=self.lease_ttl) as held:
            # Another process may have written it while we waited (also when the wait
            # timed out: the holder was probably still exchanging). NullLease: no wait.
            # A forced exchange still holds the lease (other processes' misses wait for
            # its row) but never takes a row it did not mint.
            if not force and (held is not True or not isinstance(self.lease, NullLease)):
                rows = await self.store.user_rows(user_id)
                if rows.microsoft is None:
                    raise AccountNotFoundError()
                stored = self.store.decrypt(rows.microsoft.get("accessToken")) or ""
                again = self._servable(rows, user_id, application, keep)
                if again is not None and await self.store.user_present(rows, user_id):
                    return Loaded(again, "database")
            try:
                return await self._exchange(user_id, application, rows, stored, claims)
            except EntraUnavailableError:
                if ahead or force or not self.outage_grace:
                    # A proactive refresh that fails is a failure: its pause must hold. (Served
                    # from grace it counted as a success and retried on the next hit.) A
                    # forced exchange was asked for because the cached token would not do.
                    raise
                # Read again: the row must still be current (not revoked meanwhile).
                rows = await self.store.user_rows(user_id)
                grace = self._servable(rows, user_id, application, MIN_GRACE_LIFETIME)
                if grace is None:
                    raise
                logger.warning(
                    "Entra ID unavailable: serving the cached token for application %r "
                    "(expires in %d s)",
                    application,
                    int(grace.expires_at - self.clock()),
                )
                return Loaded(grace, "grace")

    def _servable(
        self, rows: UserRows, user_id: str, application: str, keep: float
    ) -> CachedToken | None:
        """The cached row if it is bound to the user's current Microsoft token, was minted
        under the current revocation generations, and has more than ``keep`` s left."""
        if rows.microsoft is None:
            return None
        cached = self.store.cached(rows.cached.get(provider_id(application)), user_id, application)
        current = fingerprint(self.store.decrypt(rows.microsoft.get("accessToken")) or "")
        if (
            cached is None
            or cached.fingerprint != current
            or cached.generation != rows.generation(application)
            or cached.expires_at - keep <= self.clock()
        ):
            return None
        return cached

    async def _exchange(
        self,
        user_id: str,
        application: str,
        rows: UserRows,
        stored: str,
        challenge: Mapping[str, Any] | None = None,
    ) -> Loaded:
        microsoft: dict[str, Any] = rows.microsoft or {}
        account_id = microsoft.get("accountId")
        # Whose token this is, checked before the refresh token is used on its behalf.
        try:
            identity = await self.verifier.verify(
                stored, account_id=account_id, require_current=False
            )
            tid: str | None = identity.tid
        except KeyRetiredError:
            # Expired, and signed by a key Entra no longer publishes: the refresh token
            # still works, and what it brings back is verified in full before any use.
            # Multi-tenant: the endpoint takes the claimed tid only if it is a GUID.
            claimed = read_claims(stored).tid
            tid = claimed if is_guid(claimed) else None
        assertion = await self.refresher.valid_token(
            microsoft, stored, tid=tid, account_id=account_id
        )
        verified = await self.verifier.verify(assertion, account_id=account_id)
        # Whether the user still exists: the rows read show it where they go with the user
        # (no statement); elsewhere the user row is read. Checked again after the write.
        if not await self.store.user_present(rows, user_id):
            raise AccountNotFoundError()
        now = self.clock()
        result = await self.client_for(verified.tid).exchange(
            assertion,
            self.applications[application].scope,
            key=(user_id, application),
            claims=merge_claims(self.capabilities, challenge),
        )
        bound_to = fingerprint(assertion)
        generation = rows.generation(application)
        exists = provider_id(application) in rows.cached
        return await self._save(user_id, application, result, bound_to, now, generation, exists)

    async def _save(
        self,
        user_id: str,
        application: str,
        result: TokenResult,
        bound_to: str,
        now: float,
        generation: str,
        exists: bool,
    ) -> Loaded:
        try:
            token = await self.store.write(
                user_id, application, result, bound_to, now, generation, exists=exists
            )
        except Exception as exc:
            # The token is good; only caching failed. Serve it (the original's promise).
            logger.warning(
                "could not cache the OBO token for application %r (%s); returning it uncached",
                application,
                type(exc).__name__,
            )
            uncached = cached_token(user_id, application, result, bound_to, now, generation)
            return Loaded(uncached, "exchange")
        # Linearize with what happened meanwhile (module docstring).
        try:
            after = await self.store.user_rows(user_id)
            # A user row deleted without our hooks (a raw delete, no foreign key cascade).
            present = await self.store.user_present(after, user_id)
        except Exception as exc:
            # The database failed between two statements. The row carries the generation
            # stamp it was minted under and stays bound to its Microsoft token, so a revoke
            # or a new sign-in still keeps it from being served; memory is kept right by
            # the in-process generation.
            logger.warning(
                "could not re-check the OBO token for application %r after caching it (%s)",
                application,
                type(exc).__name__,
            )
            return Loaded(token, "exchange")
        microsoft = after.microsoft
        if (
            present
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
