"""The cached OBO token as a row of Better Auth's ``account`` table.

One row per (user, application), id ``uuid5(user, application)`` (36 characters, so it
fits MySQL-family ``VARCHAR(36)``), providerId ``microsoft:<application>``, accountId
the fingerprint of the Microsoft token the row was minted from. Tokens are encrypted
exactly as the host encrypts its own when ``account.encrypt_oauth_tokens`` is on
(``better_auth/oauth/flow.py`` ``_encrypt`` / ``_decrypt``).

Revocation generations: rows with providerId ``microsoft:~generation`` (no token;
``~`` cannot start an application name), one per user and revoked application
(``scope`` names it) and one for "all applications" (``scope`` ``*``), each holding a
random value in ``accountId`` that ``revoke_obo_tokens`` replaces. A cached row records
the generations it was minted under (its *stamp*, in the ``idToken`` column, which OBO
rows have no other use for) and is served only while they are still current, so a row
minted before a revoke is never served after it, whoever wrote it and whenever. An
exchange also reads the user's rows again after writing its own; if a generation moved,
or the Microsoft token the row is bound to is no longer the user's current one (unlink,
deletion, a new sign-in), it deletes the row it wrote. That holds across processes and
on every adapter: it needs only the reads and writes every adapter has.

Every row read is compared on ``userId`` exactly: MariaDB's default collation matches
``'ADA'`` and ``'ada '`` to ``'ada'``, and a row of another spelling is another user's.

Rows are written with the raw adapter: the app's database hooks never see them, and
our own hooks cannot recurse.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict

from better_auth.adapters.base import Where
from better_auth.crypto import is_likely_encrypted, symmetric_decrypt, symmetric_encrypt

from ._assertion import fingerprint

if TYPE_CHECKING:
    from better_auth import BetterAuth

    from ._entra import TokenResult

__all__ = [
    "ALL_APPLICATIONS",
    "GENERATION_PROVIDER_ID",
    "MICROSOFT_PROVIDER_ID",
    "OBO_PROVIDER_PREFIX",
    "CachedToken",
    "OBOAccount",
    "OBOStore",
    "UserRows",
    "cached_token",
    "is_cached_token_row",
    "is_obo_row",
    "obo_row_id",
    "provider_id",
]

logger = logging.getLogger("better_auth_obo")

MICROSOFT_PROVIDER_ID = "microsoft"
OBO_PROVIDER_PREFIX = "microsoft:"
_GENERATION_KEY = "~generation"
GENERATION_PROVIDER_ID = f"{OBO_PROVIDER_PREFIX}{_GENERATION_KEY}"
#: The generation row's ``scope`` for a revocation of every application.
ALL_APPLICATIONS = "*"
_STAMP = "obo-generation:"
#: Rows one user can have: Microsoft sign-ins, one per application, the generation.
_MAX_USER_ROWS = 1000
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
    #: The revocation generations the token was minted under (``UserRows.generation``).
    generation: str = ""

    def __repr__(self) -> str:
        return (
            f"CachedToken(providerId={self.account['providerId']!r}, "
            f"expires_at={self.expires_at!r}, fingerprint={self.fingerprint!r})"
        )


def obo_row_id(user_id: str, application: str) -> str:
    """The deterministic row id for (user, application): a uuid5, 36 characters."""
    return str(uuid.uuid5(_ROW_NAMESPACE, f"{user_id}\x00{application}"))


def is_obo_row(row: dict[str, Any]) -> bool:
    """True for any row of ours (a cached token or the generation): hidden, never unlinked."""
    provider = row.get("providerId")
    return isinstance(provider, str) and provider.startswith(OBO_PROVIDER_PREFIX)


def application_of(row: dict[str, Any]) -> str:
    """The application a cached row is for (its providerId after ``microsoft:``)."""
    return str(row.get("providerId") or "")[len(OBO_PROVIDER_PREFIX) :]


def is_cached_token_row(row: dict[str, Any]) -> bool:
    """True for a cached OBO token row (providerId ``microsoft:<application>``)."""
    return is_obo_row(row) and row.get("providerId") != GENERATION_PROVIDER_ID


@dataclass(frozen=True, slots=True)
class ListedToken:
    """One cached OBO token as ``OBOStore.list`` shows it (the token never in the repr)."""

    application: str
    access_token: str = field(repr=False)
    scopes: tuple[str, ...]
    expires_at: datetime | None
    #: Fingerprint of the Microsoft token it was minted from.
    bound_to: str
    bound_to_current: bool


@dataclass(frozen=True, slots=True)
class UserRows:
    """What one read of a user's ``account`` rows tells: their Microsoft sign-in (the
    newest row holding an access token), their revocation generation, their cached rows."""

    microsoft: dict[str, Any] | None
    generations: dict[str, str]  # application, or "*" -> its revocation generation
    cached: dict[str, dict[str, Any]]  # providerId -> row

    def generation(self, application: str) -> str:
        """The stamp of the current generations that cover this application (its own and
        all applications'): a row is served only while its stamp is this."""
        get = self.generations.get
        return f"{_STAMP}{get(ALL_APPLICATIONS, '')}:{get(application, '')}"


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
        self._cascades: bool | None = None

    # --- whether the user's rows go with the user ----------------------------------

    async def user_present(self, rows: UserRows, user_id: str) -> bool:
        """True while the user exists, given their rows just read.

        Where the database deletes a user's ``account`` rows with the user (the host's
        schema declares ``ON DELETE CASCADE`` on ``account.userId``; PostgreSQL and
        MySQL/MariaDB enforce it, SQLite when ``PRAGMA foreign_keys=ON``), a Microsoft
        row read is proof enough: no statement. Elsewhere (the memory adapter, SQLite
        without the pragma) a user deleted without our hooks leaves the rows behind, and
        the ``user`` row is read.
        """
        if rows.microsoft is None:
            return False
        if self._cascades is None:
            self._cascades = await _cascades(self._auth.adapter)
        return self._cascades or await self.user_exists(user_id)

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

    async def user_rows(self, user_id: str) -> UserRows:
        """The user's rows in one statement, each compared on ``userId`` exactly."""
        rows = await self._auth.adapter.find_many(
            "account", [Where("userId", user_id)], limit=_MAX_USER_ROWS
        )
        rows = [row for row in rows if row.get("userId") == user_id]
        microsoft = [
            row
            for row in rows
            if row.get("providerId") == MICROSOFT_PROVIDER_ID and row.get("accessToken")
        ]
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        newest = max(microsoft, key=lambda r: as_utc(r.get("updatedAt")) or epoch, default=None)
        generations: dict[str, str] = {}
        cached: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.get("providerId") == GENERATION_PROVIDER_ID:
                generations[str(row.get("scope") or "")] = str(row.get("accountId") or "")
            elif is_obo_row(row):
                cached[str(row["providerId"])] = row
        return UserRows(newest, generations, cached)

    async def list(self, user_id: str) -> list[ListedToken]:
        """The user's cached OBO tokens (one read), by application, each with whether it is
        bound to their current Microsoft sign-in: what the doctor and the demo show."""
        rows = await self.user_rows(user_id)
        stored = self.decrypt((rows.microsoft or {}).get("accessToken")) or ""
        current = fingerprint(stored) if stored else ""
        listed = []
        for _, row in sorted(rows.cached.items()):
            bound = str(row.get("accountId") or "")
            listed.append(
                ListedToken(
                    application=application_of(row),
                    access_token=self.decrypt(row.get("accessToken")) or "",
                    scopes=tuple(s for s in str(row.get("scope") or "").split(",") if s),
                    expires_at=as_utc(row.get("accessTokenExpiresAt")),
                    bound_to=bound,
                    bound_to_current=bool(current) and bound == current,
                )
            )
        return listed

    async def microsoft_account(self, user_id: str) -> dict[str, Any] | None:
        """The user's Microsoft account row holding an access token, newest first."""
        return (await self.user_rows(user_id)).microsoft

    async def user_exists(self, user_id: str) -> bool:
        """True while the ``user`` row exists (exactly this id)."""
        row = await self._auth.adapter.find_one("user", [Where("id", user_id)])
        return row is not None and row.get("id") == user_id

    # --- cached OBO rows ------------------------------------------------------------

    def cached(
        self, row: dict[str, Any] | None, user_id: str, application: str
    ) -> CachedToken | None:
        """A cached row as a ``CachedToken`` (decrypted), or None when it is not this key's."""
        if row is None:
            return None
        if row.get("userId") != user_id or row.get("providerId") != provider_id(application):
            return None  # never serve a row that is not exactly this key
        expires = as_utc(row.get("accessTokenExpiresAt"))
        token = self.decrypt(row.get("accessToken"))
        if expires is None or not token:
            return None
        account = _account(row, token, self.decrypt(row.get("refreshToken")), expires)
        fingerprint = str(row.get("accountId") or "")
        return CachedToken(account, expires.timestamp(), fingerprint, str(row.get("idToken") or ""))

    async def write(
        self,
        user_id: str,
        application: str,
        result: TokenResult,
        fingerprint: str,
        now: float,
        generation: str,
        *,
        exists: bool = True,
    ) -> CachedToken:
        """Upsert the row for (user, application): exactly one row, even across processes
        (``_upsert``). ``exists``: whether the last read saw the row (one statement then,
        an update or an insert, when nothing changed meanwhile)."""
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
            "idToken": generation,  # the stamp (module docstring), not a token
            "updatedAt": stamp,
        }
        created = {"userId": user_id, "providerId": provider_id(application), "createdAt": stamp}
        updated = await self._upsert(row_id, data, created, insert_first=not exists)
        created_at = as_utc((updated or {}).get("createdAt"))
        return cached_token(
            user_id, application, result, fingerprint, now, generation, created=created_at
        )

    async def purge(self, user_id: str, applications: Iterable[str], *, every: bool = False) -> int:
        """Delete the user's cached rows for these applications (``every``: and any other
        found, e.g. of an application no longer configured).

        By id, never by ``userId`` (MariaDB would match other spellings of the id), and
        including the ids of applications no row was seen for, so a row written while
        this runs is still covered. ``delete_many``: the host's single-row delete fails
        on MariaDB.
        """
        ids = {obo_row_id(user_id, app) for app in applications}
        if every:
            found = (await self.user_rows(user_id)).cached.values()
            ids.update(str(row["id"]) for row in found)
        where = [Where("id", sorted(ids), "in")]
        return int(await self._auth.adapter.delete_many("account", where))

    async def delete_if_bound(self, user_id: str, application: str, fingerprint: str) -> None:
        """Delete the row for (user, application) if it is still bound to ``fingerprint``."""
        where = [Where("id", obo_row_id(user_id, application)), Where("accountId", fingerprint)]
        await self._auth.adapter.delete_many("account", where)

    async def delete_accounts(self, user_id: str) -> int:
        """Delete every ``account`` row of a deleted user (exactly this id)."""
        rows = await self._auth.adapter.find_many(
            "account", [Where("userId", user_id)], limit=_MAX_USER_ROWS
        )
        ids = sorted(str(row["id"]) for row in rows if row.get("userId") == user_id)
        if not ids:
            return 0
        return int(await self._auth.adapter.delete_many("account", [Where("id", ids, "in")]))

    async def new_generation(self, user_id: str, application: str | None, now: float) -> None:
        """Move the revocation generation of one application (None: of all of them):
        exchanges in flight for it drop what they write.

        Skipped (no error) when the user no longer exists: the row would be an orphan.
        """
        scope = ALL_APPLICATIONS if application is None else application
        row_id = obo_row_id(user_id, f"{_GENERATION_KEY}:{scope}")
        stamp = datetime.fromtimestamp(int(now), tz=timezone.utc)
        data: dict[str, Any] = {"accountId": secrets.token_hex(16), "updatedAt": stamp}
        created = {
            "userId": user_id,
            "providerId": GENERATION_PROVIDER_ID,
            "scope": scope,
            "createdAt": stamp,
        }
        await self._upsert(row_id, data, created, may_create=lambda: self.user_exists(user_id))

    async def _upsert(
        self,
        row_id: str,
        data: dict[str, Any],
        created: dict[str, Any],
        *,
        may_create: Callable[[], Awaitable[bool]] | None = None,
        insert_first: bool = False,
    ) -> dict[str, Any] | None:
        """Update the row ``row_id`` with ``data``, or create it (``created`` + ``data``).

        The id is deterministic, so concurrent first writes collide on the primary key:
        the loser catches the integrity error and updates instead. ``may_create`` is
        asked before creating (False: nothing is written). ``insert_first``: the row was
        not there a moment ago, so the insert is tried first (one statement, not two).
        """
        adapter = self._auth.adapter
        where = [Where("id", row_id)]
        if not insert_first:
            updated: dict[str, Any] | None = await adapter.update("account", where, data)
            if updated is not None:
                return updated
        if may_create is not None and not await may_create():
            return None
        try:
            return await adapter.create(
                "account", {"id": row_id, **created, **data}, force_allow_id=True
            )
        except Exception as exc:
            if not _is_integrity_error(exc):
                raise
            # Another process created it first (or the user went meanwhile): update it.
            result: dict[str, Any] | None = await adapter.update("account", where, data)
            return result


async def _cascades(adapter: Any) -> bool:
    """Whether deleting a ``user`` row deletes its ``account`` rows (see ``user_present``):
    the ``account`` table's foreign key to ``user`` says ``ON DELETE CASCADE``, and the
    database enforces it (SQLite only with ``PRAGMA foreign_keys=ON``). Asked once; any
    doubt (the memory adapter, an adapter we do not know, no such key) reads as no."""
    engine = getattr(adapter, "engine", None)
    if engine is None or not hasattr(engine, "connect"):
        return False
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                pragma = await connection.exec_driver_sql("PRAGMA foreign_keys")
                if not pragma.scalar():
                    return False
            keys = await connection.run_sync(_account_foreign_keys)
    except Exception:  # no answer is a no: the user row is read instead
        logger.debug("could not read the account table's foreign keys", exc_info=True)
        return False
    return any(
        key.get("referred_table") == "user"
        and str((key.get("options") or {}).get("ondelete", "")).upper() == "CASCADE"
        for key in keys
    )


def _account_foreign_keys(connection: Any) -> list[dict[str, Any]]:
    from sqlalchemy import inspect

    return list(inspect(connection).get_foreign_keys("account"))


def cached_token(
    user_id: str,
    application: str,
    result: TokenResult,
    fingerprint: str,
    now: float,
    generation: str,
    *,
    created: datetime | None = None,
) -> CachedToken:
    """The row a fresh exchange result makes (as written, or as it would have been)."""
    stamp = datetime.fromtimestamp(int(now), tz=timezone.utc)
    expires = datetime.fromtimestamp(int(result.expires_at), tz=timezone.utc)
    account = OBOAccount(
        id=obo_row_id(user_id, application),
        userId=user_id,
        providerId=provider_id(application),
        accountId=fingerprint,
        accessToken=result.access_token,
        refreshToken=result.refresh_token,
        scope=" ".join(result.scopes),
        accessTokenExpiresAt=expires,
        createdAt=created or stamp,
        updatedAt=stamp,
    )
    return CachedToken(account, expires.timestamp(), fingerprint, generation)


def provider_id(application: str) -> str:
    """The providerId of the cached row for an application: ``microsoft:<application>``."""
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
