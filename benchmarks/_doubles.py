"""Fast doubles for filling caches through the real call path.

``FastEntra`` answers the OBO grant over ``httpx.MockTransport`` with an opaque token (no
signing per request, unlike ``tests._fakes.WireEntra``), optionally after a delay.
``IndexedMemoryAdapter`` is Better Auth's ``MemoryAdapter`` with an index on ``id`` and on
``account.userId``: the stock one scans every row per query, which makes filling
100,000 keys quadratic; it changes no behaviour the plugin relies on.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

import httpx
from better_auth import BetterAuth, MemoryAdapter
from better_auth.adapters.base import BaseAdapter, Where
from tests._fakes import metadata_answer, provider, token_oid, user_token

from better_auth_obo import OBOPlugin

SECRET = "benchmark-secret-" + "x" * 32
APPLICATION = "api"
SCOPE = "api://downstream/.default"


def application_names(count: int) -> list[str]:
    """``api``, or ``api-0`` ... ``api-<count-1>``."""
    return [APPLICATION] if count == 1 else [f"{APPLICATION}-{i}" for i in range(count)]


class FastEntra:
    """A token endpoint double: counts OBO exchanges; ``delay`` seconds per request."""

    def __init__(self, *, delay: float = 0.0, lifetime: int = 3600) -> None:
        self.delay = delay
        self.lifetime = lifetime
        self.exchanges = 0
        #: When set, every OBO request is answered with this status (an outage).
        self.fail_status: int | None = None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        metadata = metadata_answer(request)  # discovery and keys, for the assertion check
        if metadata is not None:
            return metadata
        form = parse_qs(request.content.decode())
        if form.get("grant_type", [""])[0].endswith("jwt-bearer"):
            self.exchanges += 1
        number = self.exchanges
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status is not None:
            body = {"error": "temporarily_unavailable", "error_codes": [], "trace_id": ""}
            return httpx.Response(self.fail_status, json=body)
        body = {
            "token_type": "Bearer",
            "scope": form.get("scope", [SCOPE])[0],
            # about the size of a real Entra access token's header and claims, unsigned
            "access_token": f"obo.{number:08d}.{'x' * 1200}",
            "expires_in": self.lifetime,
        }
        return httpx.Response(200, content=json.dumps(body).encode())


def _eq_only(where: list[Where]) -> dict[str, Any] | None:
    if any(w.operator != "eq" or w.connector != "AND" or w.mode != "sensitive" for w in where):
        return None
    return {w.field: w.value for w in where}


class IndexedMemoryAdapter(MemoryAdapter):
    """``MemoryAdapter`` with O(1) lookups by ``id`` and by ``account.userId``."""

    def __init__(self) -> None:
        super().__init__()
        self._ids: dict[tuple[str, Any], dict[str, Any]] = {}
        self._users: defaultdict[Any, list[dict[str, Any]]] = defaultdict(list)

    def _candidates(self, model: str, where: list[Where]) -> list[dict[str, Any]] | None:
        eq = _eq_only(where)
        if eq is None:
            return None
        if "id" in eq:
            row = self._ids.get((model, eq["id"]))
            rows = [] if row is None else [row]
        elif model == "account" and "userId" in eq:
            rows = self._users[eq["userId"]]
        else:
            return None
        return [r for r in rows if all(r.get(k) == v for k, v in eq.items())]

    async def create(self, model: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        out = await super().create(model, data, **kwargs)
        stored = self._store[model][-1]
        self._ids[(model, stored.get("id"))] = stored
        if model == "account":
            self._users[stored.get("userId")].append(stored)
        return out

    async def find_one(self, model: str, where: list[Where], **kwargs: Any) -> Any:
        rows = self._candidates(model, where)
        if rows is None:
            return await super().find_one(model, where, **kwargs)
        return self._out(model, dict(rows[0]), kwargs.get("select")) if rows else None

    async def find_many(self, model: str, where: list[Where] | None = None, **kwargs: Any) -> Any:
        simple = where and set(kwargs) <= {"limit"}  # the plugin reads a user's rows with a limit
        rows = self._candidates(model, where) if simple else None
        if rows is None:
            return await super().find_many(model, where, **kwargs)
        limit = kwargs.get("limit")
        return [self._out(model, dict(r), None) for r in rows[:limit]]

    def insert(self, model: str, rows: list[dict[str, Any]]) -> None:
        """Bulk seeding without an await per row: the rows ``create`` would store."""
        for data in rows:
            stored = self._in(model, data, "create")
            self._store[model].append(stored)
            self._ids[(model, stored.get("id"))] = stored
            if model == "account":
                self._users[stored.get("userId")].append(stored)

    async def delete_many(self, model: str, where: list[Where]) -> int:
        deleted = await super().delete_many(model, where)
        if deleted:  # rebuild this model's indexes from what is left (revokes are rare here)
            kept = {id(row) for row in self._store[model]}
            for key in [k for k, row in self._ids.items() if k[0] == model and id(row) not in kept]:
                del self._ids[key]
            if model == "account":
                for rows in self._users.values():
                    rows[:] = [row for row in rows if id(row) in kept]
        return int(deleted)

    async def update(self, model: str, where: list[Where], data: dict[str, Any]) -> Any:
        rows = self._candidates(model, where)
        if rows is None:
            return await super().update(model, where, data)
        if not rows:
            return None
        rows[0].update(self._in(model, data, "update"))
        return self._out(model, dict(rows[0]))


async def obo_setup(
    *,
    entra: FastEntra,
    applications: int = 1,
    adapter: BaseAdapter | None = None,
    cache_max_entries: int = 10_000,
    cache_revalidate_after: float = 30.0,
    **options: Any,
) -> tuple[BetterAuth, OBOPlugin]:
    """A BetterAuth with the Microsoft provider and an OBOPlugin for one application."""
    plugin = OBOPlugin(
        applications={app: {"scope": [SCOPE]} for app in application_names(applications)},
        cache_max_entries=cache_max_entries,
        cache_revalidate_after=cache_revalidate_after,
        **options,
    )
    auth = BetterAuth(
        secret=SECRET,
        base_url="http://bench.example",
        adapter=adapter or IndexedMemoryAdapter(),
        social_providers={"microsoft": provider(disable_id_token_sign_in=True)},
        plugins=[plugin],
        http_client=entra.client(),
    )
    create_tables = getattr(auth.adapter, "create_tables", None)
    if create_tables is not None:
        await create_tables()
    return auth, plugin


async def seed_users(
    auth: BetterAuth,
    count: int,
    *,
    token: str | None = None,
    tokens: list[str] | None = None,
    lifetime: float = 3600,
) -> list[str]:
    """``count`` users, each with a Microsoft account row holding a delegated token.

    Written through the adapter, as Better Auth's sign-in leaves them (``seed_user`` in
    ``tests/_fakes.py`` goes through the internal adapter's hooks, too slow for 100,000).
    One assertion is shared: the plugin keys on the user, not on the token. Every
    account carries its ``oid`` as ``accountId``, so it verifies (once: the verdict is
    remembered per token and account id); ``_miss.py`` measures verification itself.
    """
    token = token or user_token(exp=time.time() + lifetime)
    stored = tokens or [token] * count  # ``tokens``: one of each user's own
    oids = [token_oid(t) for t in dict.fromkeys(stored)]
    oid_of = dict(zip(dict.fromkeys(stored), oids, strict=True))
    now = datetime.now(timezone.utc)
    expires = datetime.fromtimestamp(time.time() + lifetime, timezone.utc)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    users = [
        {
            "id": uid,
            "email": f"{uid[:13]}@contoso.example",
            "name": "Ada",
            "emailVerified": False,
            "createdAt": now,
            "updatedAt": now,
        }
        for uid in ids
    ]
    accounts = [
        {
            "id": str(uuid.uuid4()),
            "userId": uid,
            "providerId": "microsoft",
            "accountId": oid_of[stored[n]],
            "accessToken": stored[n],
            "accessTokenExpiresAt": expires,
            "scope": "openid",
            "createdAt": now,
            "updatedAt": now,
        }
        for n, uid in enumerate(ids)
    ]
    await insert(auth.adapter, "user", users)
    await insert(auth.adapter, "account", accounts)
    return ids


async def insert(adapter: BaseAdapter, model: str, rows: list[dict[str, Any]]) -> None:
    if isinstance(adapter, IndexedMemoryAdapter):
        adapter.insert(model, rows)
        return
    for row in rows:
        await adapter.create(model, row, force_allow_id=True)


async def fill(plugin: OBOPlugin, keys: list[tuple[str, str]], *, concurrency: int = 64) -> None:
    """One real ``get_obo_token`` per (user, application), ``concurrency`` at a time."""
    queue = iter(keys)

    async def worker() -> None:
        for user_id, application in queue:
            await plugin.get_obo_token(user_id=user_id, application_name=application)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
