"""Keeps the user's stored Microsoft access token fresh enough to be an OBO assertion.

Better Auth refreshes only when fewer than 5 s remain (``oauth/flow.py``
``_valid_access_token``), returns stale tokens silently and drops Entra's error body.
An assertion that expires in flight fails with AADSTS500133, so we refresh minutes
ahead, through the provider's own client authentication, and persist the rotated
tokens the way the core does (encrypted when the host encrypts, through
``auth.internal`` so database hooks fire).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from better_auth.adapters.base import Where
from better_auth.types import AuthRequest, Ctx

from ._assertion import read_claims
from ._cache import SingleFlight
from ._errors import (
    AccountNotFoundError,
    EntraError,
    EntraUnavailableError,
    InvalidAssertionError,
    ReauthenticationRequiredError,
)
from ._store import OBOStore, as_utc

if TYPE_CHECKING:
    from better_auth import BetterAuth

    from ._entra import EntraClient, TokenResult

__all__ = ["REFRESH_PATH", "MicrosoftTokenRefresher"]

logger = logging.getLogger("better_auth_obo")

#: The request path our refresh writes the Microsoft row under (database hooks see it).
REFRESH_PATH = "/obo/refresh"

#: An assertion with less than this left is not worth sending (AADSTS500133 in flight).
MIN_ASSERTION_LIFETIME = 30.0

#: Entra refusals that signing in again would not fix: surface them as they are.
_NOT_THE_USERS_FAULT = frozenset({"client_credential_invalid", "configuration", "invalid_response"})


class MicrosoftTokenRefresher:
    """Returns a usable Microsoft access token for a user, refreshing it when needed."""

    def __init__(
        self,
        *,
        auth: BetterAuth,
        store: OBOStore,
        entra: Callable[[str | None], EntraClient],
        verify: Callable[[str, object], Awaitable[object]],
        scopes: Sequence[str],
        margin: float,
        clock: Callable[[], float],
    ) -> None:
        self._auth = auth
        self._store = store
        self._entra = entra
        self._verify = verify
        self._scopes = tuple(scopes)
        self._margin = margin
        self._clock = clock
        self._flight: SingleFlight[str, str] = SingleFlight()

    async def aclose(self) -> None:
        """Cancel refreshes in flight (``OBOPlugin.aclose``)."""
        await self._flight.aclose()

    async def valid_token(
        self, account: dict[str, Any], token: str, *, tid: str | None, account_id: object
    ) -> str:
        """The account's access token, refreshed first when it expires within the margin.

        ``token`` is the account's (decrypted, already verified) access token, ``tid`` its
        verified tenant: the refresh goes to that tenant's endpoint, and the refreshed
        token is verified for ``account_id`` before it is stored or used.
        """
        if not token:
            raise AccountNotFoundError()
        remaining = self._remaining(account, token)
        if remaining is None or remaining > self._margin:
            return token
        return await self._flight.run(
            str(account["userId"]),
            lambda: self._refresh(account, token, remaining, tid, account_id),
        )

    def _remaining(self, account: dict[str, Any], token: str) -> float | None:
        expires = as_utc(account.get("accessTokenExpiresAt"))
        if expires is not None:
            return expires.timestamp() - self._clock()
        try:  # no stored expiry: the token's own exp claim
            exp = read_claims(token).expires_at
        except InvalidAssertionError:
            return None
        return None if exp is None else exp - self._clock()

    async def _refresh(
        self,
        account: dict[str, Any],
        token: str,
        remaining: float,
        tid: str | None,
        account_id: object,
    ) -> str:
        refresh_token = self._store.decrypt(account.get("refreshToken"))
        if not refresh_token:
            if remaining > MIN_ASSERTION_LIFETIME:
                return token  # still usable; nothing to refresh it with
            # ID-token sign-in (a SPA posting MSAL.js's tokens) never stores a refresh
            # token: the client must post a fresh access token, as the README says.
            raise ReauthenticationRequiredError(
                "The user's Microsoft token has expired and no refresh token is stored; "
                "the user must sign in with Microsoft again, or a single-page app that "
                "signed in through ID-token sign-in must post a fresh access token (for "
                "redirect sign-in, add offline_access to the provider's scopes so Better "
                "Auth keeps a refresh token)",
                reason="no_refresh_token",
            )
        try:
            user_key = ("refresh", str(account["userId"]))
            result = await self._entra(tid).refresh(refresh_token, self._scopes, key=user_key)
        except EntraUnavailableError:
            if remaining > MIN_ASSERTION_LIFETIME:
                logger.warning("Entra unavailable for refresh; using the current Microsoft token")
                return token
            raise
        except EntraError as exc:
            if exc.reason in _NOT_THE_USERS_FAULT:
                raise
            raise ReauthenticationRequiredError(
                "Entra ID refused to refresh the user's Microsoft token "
                f"({_codes(exc)}); the user must sign in with Microsoft again",
                entra=exc,
            ) from exc
        # Entra answered our own request, but the refresh token was the client's to plant:
        # the new token must still be this account's before it is kept.
        await self._verify(result.access_token, account_id)
        await self._persist(account, result)
        logger.info("refreshed the Microsoft token of a user before an OBO exchange")
        return result.access_token

    async def _persist(self, account: dict[str, Any], result: TokenResult) -> None:
        # The same columns the core writes in oauth/flow.py _valid_access_token.
        encrypt = self._store.encrypt
        data: dict[str, Any] = {
            "accessToken": encrypt(result.access_token),
            "accessTokenExpiresAt": datetime.fromtimestamp(int(result.expires_at), timezone.utc),
            "refreshToken": encrypt(result.refresh_token)
            if result.refresh_token
            else account.get("refreshToken"),
            "idToken": result.id_token or account.get("idToken"),
            "updatedAt": datetime.fromtimestamp(self._clock(), timezone.utc),
        }
        ctx = Ctx(auth=self._auth, request=AuthRequest(method="POST", path=REFRESH_PATH))
        # Only while the row still holds the token we refreshed: a new sign-in meanwhile
        # wins (the exchange in flight then finds its binding gone and keeps nothing).
        where = [Where("id", account["id"]), Where("accessToken", account.get("accessToken"))]
        await self._auth.internal.update("account", where, data, ctx=ctx)


def _codes(exc: EntraError) -> str:
    codes = ", ".join(f"AADSTS{code}" for code in exc.error_codes)
    return codes or exc.error
