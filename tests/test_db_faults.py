"""Database faults on PostgreSQL: the plugin's connections killed mid-run.

An admin connection (asyncpg, to the server's maintenance database) terminates every
backend of the test database with ``pg_terminate_backend`` while calls run, and for
the outage also refuses new connections (``ALLOW_CONNECTIONS false``). What the caller
sees then is ``APIError`` STORAGE_UNAVAILABLE (503), naming only the driver's exception
type (a database error's text can carry statement parameters); a token already in the
in-process cache is still served. Once the database is back, the SQLAlchemy pool
(``pool_pre_ping``, as SQLAlchemy advises where connections can be dropped) reconnects
and every call succeeds; no row is corrupt or duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from datetime import timezone
from typing import Any

import asyncpg
import pytest
from better_auth import APIError, BetterAuth
from better_auth.adapters.base import Where
from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from tests._databases import POSTGRES_URL
from tests._fakes import WireEntra, provider, seed_user
from tests.conftest import Database, MakeAuth

from better_auth_obo import OBO_ERROR_CODES, OBOPlugin
from better_auth_obo._store import is_cached_token_row

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database", ["postgres"], indirect=True),
]

APPLICATIONS = {
    "graph": {"scope": ["https://graph.microsoft.com/.default"]},
    "files": {"scope": ["api://downstream/Files.Read"]},
}
TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = $1 AND pid <> pg_backend_pid()"
)


@contextlib.asynccontextmanager
async def admin_connection() -> AsyncIterator[asyncpg.Connection]:
    url = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=5,
    )
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def outage(admin: asyncpg.Connection, name: str) -> AsyncIterator[None]:
    """The test database refuses new connections and loses the ones it had."""
    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await admin.fetchval(TERMINATE, name)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def outcome(call: Awaitable[Any]) -> Any:
    """The call's result, or the exception it raised."""
    try:
        return await call
    except Exception as exc:
        return exc


def describe(results: list[Any]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for result in results:
        if isinstance(result, APIError):
            kinds[f"APIError {result.code}"] += 1
        elif isinstance(result, BaseException):
            kinds[type(result).__name__] += 1
        else:
            kinds["token"] += 1
    return kinds


def messages(results: list[Any]) -> list[str]:
    """The distinct first lines of the errors among ``results``."""
    lines = {str(r).splitlines()[0][:160] for r in results if isinstance(r, Exception)}
    return sorted(lines)


def check_result(result: Any, user_id: str, application: str) -> None:
    """A token for exactly this key, or a classified APIError (STORAGE_UNAVAILABLE for the DB)."""
    if isinstance(result, APIError):
        assert result.code in OBO_ERROR_CODES, result.code
    elif isinstance(result, BaseException):
        raise AssertionError(f"not an APIError: {result!r}")
    else:
        assert result["userId"] == user_id
        assert result["providerId"] == f"microsoft:{application}"
        assert result["accessToken"]


async def check_rows(auth: BetterAuth, user_ids: list[str]) -> int:
    rows = await auth.adapter.find_many(
        "account", [Where("providerId", "microsoft:", operator="starts_with")], limit=10_000
    )
    marks = [row for row in rows if not is_cached_token_row(row)]  # revocation generations
    assert all(row["accessToken"] is None for row in marks)
    rows = [row for row in rows if is_cached_token_row(row)]
    keys = Counter((row["userId"], row["providerId"]) for row in rows)
    assert all(n == 1 for n in keys.values()), keys
    now = time.time()
    for row in rows:
        assert row["userId"] in user_ids
        assert row["providerId"].removeprefix("microsoft:") in APPLICATIONS
        assert isinstance(row["accessToken"], str) and row["accessToken"].count(".") == 2
        expires = row["accessTokenExpiresAt"]
        assert expires.replace(tzinfo=expires.tzinfo or timezone.utc).timestamp() > now
    return len(rows)


async def test_killed_connections_fail_clearly_and_recover(
    make_auth: MakeAuth, database: Database
) -> None:
    name = make_url(database.url or "").database or ""
    wire = WireEntra()
    plugin = OBOPlugin(applications=APPLICATIONS, retry=None)
    async with wire.client() as http, admin_connection() as admin:
        # pool_pre_ping, as SQLAlchemy advises where connections can be dropped: after the
        # outage a pooled connection killed during it is replaced on checkout, not used.
        engine = create_async_engine(database.url or "", pool_size=20, pool_pre_ping=True)
        database.engines.append(engine)
        auth = await make_auth(
            adapter=SQLAlchemyAdapter(engine),
            social_providers={"microsoft": provider()},
            plugins=[plugin],
            http_client=http,
        )
        user_ids = [(await seed_user(auth))["id"] for _ in range(24)]
        fresh = [(await seed_user(auth))["id"] for _ in range(6)]  # never asked for before
        for user_id in user_ids[:8]:
            await plugin.get_obo_token(user_id=user_id, application_name="graph")
        keys = [(u, a) for u in user_ids for a in APPLICATIONS]

        # 1. Connections killed again and again while calls (and revocations) run.
        async def killer() -> int:
            killed = 0
            for _ in range(20):
                killed += await admin.fetchval(TERMINATE, name)
                await asyncio.sleep(0.005)
            return killed

        async def call(user_id: str, application: str, revoke: bool) -> Any:
            if revoke:
                await outcome(plugin.revoke_obo_tokens(user_id, application))
            return await outcome(
                plugin.get_obo_token(user_id=user_id, application_name=application)
            )

        killed, *during = await asyncio.gather(
            killer(), *(call(u, a, n % 3 == 0) for n, (u, a) in enumerate(keys))
        )
        for result, (user_id, application) in zip(during, keys, strict=True):
            check_result(result, user_id, application)

        # 2. An outage: no connections at all. Tokens in the in-process cache (those
        # served just now) are still served; the rest fail with the adapter's error.
        served = [k for k, r in zip(keys, during, strict=True) if not isinstance(r, Exception)]
        assert served, describe(during)
        async with outage(admin, name):
            cached = [
                await outcome(plugin.get_obo_token(user_id=u, application_name=a))
                for u, a in served
            ]
            cold = [
                await outcome(plugin.get_obo_token(user_id=u, application_name="files"))
                for u in fresh
            ]
        for result, (user_id, application) in zip(cached, served, strict=True):
            assert not isinstance(result, BaseException), repr(result)
            check_result(result, user_id, application)
        cold_kinds = describe(cold)
        print(f"\nwhile killing ({killed} backends): {dict(describe(during))} {messages(during)}")
        print(f"during the outage, uncached keys: {dict(cold_kinds)} {messages(cold)}")
        for result, user_id in zip(cold, fresh, strict=True):
            assert isinstance(result, BaseException), "served without a database?"
            check_result(result, user_id, "files")

        # 3. Back up: the pool reconnects, every call succeeds, the rows are sound.
        keys += [(u, "files") for u in fresh]
        after = [
            await outcome(plugin.get_obo_token(user_id=u, application_name=a)) for u, a in keys
        ]
        assert describe(after) == {"token": len(keys)}, describe(after)
        for result, (user_id, application) in zip(after, keys, strict=True):
            check_result(result, user_id, application)
        assert await check_rows(auth, user_ids + fresh) <= len(keys)
        again = [await plugin.get_obo_token(user_id=u, application_name=a) for u, a in keys]
        assert [r["accessToken"] for r in again] == [r["accessToken"] for r in after]
        await plugin.aclose()


@pytest.mark.parametrize("user_id", ["user\x00id", "user\ud800id"], ids=["nul", "surrogate"])
async def test_a_user_id_postgresql_cannot_store_is_refused_as_a_value_error(
    make_auth: MakeAuth, user_id: str
) -> None:
    wire = WireEntra()
    plugin = OBOPlugin(applications=APPLICATIONS, retry=None)
    async with wire.client() as http:
        await make_auth(
            social_providers={"microsoft": provider()}, plugins=[plugin], http_client=http
        )
        got = await outcome(plugin.get_obo_token(user_id=user_id, application_name="graph"))
        assert isinstance(got, (ValueError, APIError)), repr(got)
        got = await outcome(plugin.revoke_obo_tokens(user_id))
        assert isinstance(got, (ValueError, int)), repr(got)
