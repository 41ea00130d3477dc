"""Keeps cached OBO rows out of the user's way and gone when what they were bound to goes.

- ``/list-accounts`` never shows them; ``/unlink-account`` refuses them, and the core's
  "cannot unlink your last account" guard counts real logins only.
- They are purged when the user's Microsoft account is deleted (unlink, admin removal)
  and when the user is deleted by any path, including ``/delete-user``, which bypasses
  database hooks (``better_auth/endpoints.py`` ``_purge_user``): we chain
  ``auth.user.delete_user.after_delete`` for that one, and delete the account rows that
  path leaves behind where no foreign key cascades (SQLite, MemoryAdapter), so the
  deleted user's Microsoft token can never be exchanged again.
- A change to the user's Microsoft account (re-sign-in, new link, a refresh by the
  host) drops the user's in-process entries and moves their generation, so a load in
  flight does not refill memory; the database rows are re-checked against the token's
  fingerprint on the next read anyway. Our own refresh (path ``/obo/refresh``) is the
  one change that does not: the exchange it is part of is bound to the new token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from better_auth import APIError
from better_auth.adapters.base import Where
from better_auth.plugins import HookSet, PluginHook

from ._refresh import REFRESH_PATH
from ._store import MICROSOFT_PROVIDER_ID, is_obo_row

if TYPE_CHECKING:
    from better_auth import BetterAuth
    from better_auth.types import AuthResponse, Ctx

__all__ = ["Lifecycle"]

logger = logging.getLogger("better_auth_obo")


class Lifecycle:
    """Database hooks and request hooks, wired into the host by ``install``."""

    def __init__(
        self,
        *,
        purge: Callable[[str], Awaitable[int]],
        forget: Callable[[str], None],
        deleted: Callable[[str], Awaitable[None]],
    ) -> None:
        self._purge = purge  # deletes the user's rows and forgets their L1 entries
        self._forget = forget  # forgets the user's L1 entries only
        self._deleted = deleted  # the user is gone: every account row of theirs goes
        self._hooks = HookSet(
            before=[PluginHook(_path("/unlink-account"), self._guard_unlink)],
            after=[PluginHook(_path("/list-accounts"), self._hide_from_list)],
        )

    @property
    def hooks(self) -> HookSet:
        return self._hooks

    def install(self, auth: BetterAuth) -> None:
        auth.internal.hooks.append(
            {
                "account": {
                    "create": {"after": self._on_account_changed},
                    "update": {"after": self._on_account_changed},
                    "delete": {"after": self._on_account_deleted},
                },
                "user": {"delete": {"after": self._on_user_deleted}},
            }
        )
        options = auth.user.delete_user
        chained = options.after_delete

        async def after_delete(user: dict[str, Any], request: Any) -> None:
            await self._quietly(self._deleted, user.get("id"))
            if chained is not None:
                await chained(user, request)

        options.after_delete = after_delete

    # --- database hooks (never fail the caller's request) ----------------------------

    async def _on_account_changed(self, row: dict[str, Any], ctx: Ctx | None = None) -> None:
        if row.get("providerId") != MICROSOFT_PROVIDER_ID or not isinstance(row.get("userId"), str):
            return
        if ctx is not None and ctx.request.path == REFRESH_PATH:
            return  # our own refresh, within an exchange bound to the new token
        self._forget(row["userId"])

    async def _on_account_deleted(self, row: dict[str, Any]) -> None:
        user_id = row.get("userId")
        if not isinstance(user_id, str):
            return
        if row.get("providerId") == MICROSOFT_PROVIDER_ID:
            await self._quietly(self._purge, user_id)
        elif is_obo_row(row):
            self._forget(user_id)

    async def _on_user_deleted(self, row: dict[str, Any]) -> None:
        await self._quietly(self._deleted, row.get("id"))

    async def _quietly(self, action: Callable[[str], Awaitable[object]], user_id: Any) -> None:
        if not isinstance(user_id, str):
            return
        try:
            await action(user_id)
        except Exception as exc:
            self._forget(user_id)
            # The type only: a database error's text can carry statement parameters.
            logger.error(
                "could not purge the cached OBO tokens of a deleted account (%s)",
                type(exc).__name__,
            )

    # --- request hooks ---------------------------------------------------------------

    async def _guard_unlink(self, ctx: Ctx) -> AuthResponse | None:
        session = await ctx.get_session()
        if session is None:
            return None  # the core answers 401
        body = ctx.body()
        user_id = session["user"]["id"]
        accounts = await ctx.adapter.find_many("account", [Where("userId", user_id)])
        accounts = [a for a in accounts if a.get("userId") == user_id]  # MariaDB: exact id
        if "providerId" in body:  # the 1.0 port's legacy form
            targets = [a for a in accounts if a.get("providerId") == body.get("providerId")]
        else:
            targets = [a for a in accounts if a.get("id") == body.get("accountId")]
        if any(is_obo_row(a) for a in targets):
            # Hidden from /list-accounts, so as far as the user knows it does not exist.
            raise APIError(400, "ACCOUNT_NOT_FOUND", "Account not found")
        logins = [a for a in accounts if not is_obo_row(a)]
        allow_all = ctx.auth.account.account_linking.allow_unlinking_all
        if targets and not allow_all and len(logins) - len(targets) < 1:
            raise APIError(
                400, "FAILED_TO_UNLINK_LAST_ACCOUNT", "You can't unlink your last account"
            )
        return None

    async def _hide_from_list(self, ctx: Ctx) -> AuthResponse | None:
        response = ctx.response
        if response is not None and isinstance(response.body, list):
            response.body = [
                item for item in response.body if not (isinstance(item, dict) and is_obo_row(item))
            ]
        return None


def _path(path: str) -> Callable[[Ctx], bool]:
    def matcher(ctx: Ctx) -> bool:
        return bool(ctx.request.path == path)

    return matcher
