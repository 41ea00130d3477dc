"""The cached OBO token as a row of Better Auth's ``account`` table.

One row per (user, application), id ``uuid5(user, application)`` (36 characters, so it
fits MySQL-family ``VARCHAR(36)``), providerId ``microsoft:<application>``, accountId
the fingerprint of the Microsoft token the row was minted from. Tokens are encrypted
exactly as the host encrypts its own when ``account.encrypt_oauth_tokens`` is on
(``better_auth/oauth/flow.py`` ``_encrypt`` / ``_decrypt``).

Rows are written with the raw adapter: the app's database hooks never see them, and
our own hooks cannot recurse.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict

from better_auth.adapters.base import Where
from better_auth.crypto import is_likely_encrypted, symmetric_decrypt, symmetric_encrypt

if TYPE_CHECKING:
    from better_auth import BetterAuth

    from ._entra import TokenResult

__all__ = [
    "MICROSOFT_PROVIDER_ID",
    "OBO_PROVIDER_PREFIX",
    "CachedToken",
    "OBOAccount",
    "OBOStore",
    "cached_token",
    "is_obo_row",
    "obo_row_id",
]

MICROSOFT_PROVIDER_ID = "microsoft"
OBO_PROVIDER_PREFIX = "microsoft:"
_ROW_NAMESPACE = uuid.UUID("6f1c5b0e-2f43-5a8e-9d55-0b0e0b0a0b0e")


class OBOAccount(TypedDict):
    """The account row ``get_obo_token`` returns, with ``accessToken`` in plaintext.

    ``scope`` is the space-separated scopes Entra granted; ``accessTokenExpiresAt`` is a
    timezone-aware UTC datetime; ``accountId`` is the fingerprint of the Microsoft token
    the OBO token was minted from.
    """

    id: str
    userId: str
    providerId: str
    accountId: str
    accessToken: str
    refreshToken: str | None
    scope: str
    accessTokenExpiresAt: datetime
    createdAt: datetime
    updatedAt: datetime


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A cached row as read back: the account dict, its expiry (epoch s) and binding."""

    account: OBOAccount
    expires_at: float
    fingerprint: str

    def __repr__(self) -> str:
        return (
            f"CachedToken(providerId={self.account['providerId']!r}, "
            f"expires_at={self.expires_at!r}, fingerprint={self.fingerprint!r})"
        )


def obo_row_id(user_id: str, application: str) -> str:
    """The deterministic row id for (user, application): a uuid5, 36 characters."""
    return str(uuid.uuid5(_ROW_NAMESPACE, f"{user_id}\x00{application}"))


def is_obo_row(row: dict[str, Any]) -> bool:
    """True for a synthetic OBO cache row (providerId ``microsoft:<application>``)."""
    provider = row.get("providerId")
    return isinstance(provider, str) and provider.startswith(OBO_PROVIDER_PREFIX)


def as_utc(value: Any) -> datetime | None:
    """A stored datetime as aware UTC (MemoryAdapter keeps naive values as written)."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _is_integrity_error(exc: BaseException) -> bool:
    # sqlalchemy.exc.IntegrityError, without importing SQLAlchemy (an optional extra).
    return any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__)


class OBOStore:
    """Reads and writes cached OBO rows and the user's Microsoft account row."""

    def __init__(self, auth: BetterAuth) -> None:
        self._auth = auth

    # --- encryption, exactly as the host does it ------------------------------------

    @property
    def _encrypting(self) -> bool:
        return bool(self._auth.account.encrypt_oauth_tokens)

    def encrypt(self, token: str | None) -> str | None:
        if token and self._encrypting:
            return symmetric_encrypt(self._auth.secret, token)
        return token

    def decrypt(self, value: str | None) -> str | None:
        if value and self._encrypting and is_likely_encrypted(value):
            return symmetric_decrypt(self._auth.secret, value)
        return value

    # --- the user's Microsoft sign-in -----------------------------------------------

    async def microsoft_account(self, user_id: str) -> dict[str, Any] | None:
        """The user's Microsoft account row holding an access token, newest first."""
        rows = await self._auth.adapter.find_many(
            "account",
            [Where("userId", user_id), Where("providerId", MICROSOFT_PROVIDER_ID)],
        )
        rows = [row for row in rows if row.get("accessToken")]
        if not rows:
            return None
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        return max(rows, key=lambda row: as_utc(row.get("updatedAt")) or epoch)

    # --- cached OBO rows ------------------------------------------------------------

    async def read(self, user_id: str, application: str) -> CachedToken | None:
        """The cached row for (user, application), decrypted, or None."""
        row = await self._auth.adapter.find_one(
            "account", [Where("id", obo_row_id(user_id, application))]
        )
        if row is None:
            return None
        if row.get("userId") != user_id or row.get("providerId") != _provider(application):
            return None  # never serve a row that is not exactly this key
        expires = as_utc(row.get("accessTokenExpiresAt"))
        token = self.decrypt(row.get("accessToken"))
        if expires is None or not token:
            return None
        account = _account(row, token, self.decrypt(row.get("refreshToken")), expires)
        return CachedToken(account, expires.timestamp(), str(row.get("accountId") or ""))

    async def write(
        self, user_id: str, application: str, result: TokenResult, fingerprint: str, now: float
    ) -> CachedToken:
        """Upsert the row for (user, application): exactly one row, even across processes.

        The id is deterministic, so concurrent first writes collide on the primary key;
        the loser catches the integrity error and updates instead.
        """
        adapter = self._auth.adapter
        row_id = obo_row_id(user_id, application)
        stamp = datetime.fromtimestamp(int(now), tz=timezone.utc)
        # Whole seconds: MySQL-family DATETIME drops fractions, and L1 must match L2.
        expires = datetime.fromtimestamp(int(result.expires_at), tz=timezone.utc)
        data: dict[str, Any] = {
            "accountId": fingerprint,
            "accessToken": self.encrypt(result.access_token),
            "refreshToken": self.encrypt(result.refresh_token),
            "accessTokenExpiresAt": expires,
            "scope": ",".join(result.scopes),
            "updatedAt": stamp,
        }
        where = [Where("id", row_id)]
        updated = await adapter.update("account", where, data)
        if updated is None:
            created = {
                "id": row_id,
                "userId": user_id,
                "providerId": _provider(application),
                "createdAt": stamp,
                **data,
            }
            try:
                updated = await adapter.create("account", created, force_allow_id=True)
            except Exception as exc:
                if not _is_integrity_error(exc):
                    raise
                updated = await adapter.update("account", where, data)
        created_at = as_utc((updated or {}).get("createdAt"))
        return cached_token(user_id, application, result, fingerprint, now, created=created_at)

    async def purge(self, user_id: str, applications: Sequence[str] | None = None) -> int:
        """Delete the user's cached rows: the given applications, or all of them.

        ``delete_many`` on purpose: the host's single-row delete fails on MariaDB.
        """
        where = [Where("userId", user_id)]
        if applications is None:
            where.append(Where("providerId", OBO_PROVIDER_PREFIX, operator="starts_with"))
        else:
            where.append(Where("id", [obo_row_id(user_id, app) for app in applications], "in"))
        return int(await self._auth.adapter.delete_many("account", where))


def cached_token(
    user_id: str,
    application: str,
    result: TokenResult,
    fingerprint: str,
    now: float,
    *,
    created: datetime | None = None,
) -> CachedToken:
    """The row a fresh exchange result makes (as written, or as it would have been)."""
    stamp = datetime.fromtimestamp(int(now), tz=timezone.utc)
    expires = datetime.fromtimestamp(int(result.expires_at), tz=timezone.utc)
    account = OBOAccount(
        id=obo_row_id(user_id, application),
        userId=user_id,
        providerId=_provider(application),
        accountId=fingerprint,
        accessToken=result.access_token,
        refreshToken=result.refresh_token,
        scope=" ".join(result.scopes),
        accessTokenExpiresAt=expires,
        createdAt=created or stamp,
        updatedAt=stamp,
    )
    return CachedToken(account, expires.timestamp(), fingerprint)


def _provider(application: str) -> str:
    return f"{OBO_PROVIDER_PREFIX}{application}"


def _account(
    row: dict[str, Any], token: str, refresh_token: str | None, expires: datetime
) -> OBOAccount:
    created = as_utc(row.get("createdAt")) or expires
    return OBOAccount(
        id=str(row["id"]),
        userId=str(row["userId"]),
        providerId=str(row["providerId"]),
        accountId=str(row.get("accountId") or ""),
        accessToken=token,
        refreshToken=refresh_token,
        scope=" ".join(part for part in str(row.get("scope") or "").split(",") if part),
        accessTokenExpiresAt=expires,
        createdAt=created,
        updatedAt=as_utc(row.get("updatedAt")) or created,
    )
