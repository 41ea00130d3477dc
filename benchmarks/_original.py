"""Baseline: the TypeScript original reads the account row on every call, hit or miss.

``adapter.find_one("account", userId, providerId)`` through better-auth-server's own
SQLAlchemy adapter, on a SQLite file and on the machine's PostgreSQL (a database of our
own, ``obo_bench_<random>``, dropped afterwards, as ``tests/_databases.py`` does).
"""

from __future__ import annotations

import random
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

from better_auth import BetterAuth
from better_auth.adapters.base import Where
from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from tests._databases import POSTGRES_URL
from tests._databases import _postgres as manage_postgres

from ._doubles import SCOPE, SECRET, insert, seed_users
from ._stats import Timing, time_async

USERS = 200
SAMPLES = 1_000


@asynccontextmanager
async def sqlite_url() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite+aiosqlite:///{Path(directory) / 'auth.db'}"


@asynccontextmanager
async def postgres_url() -> AsyncIterator[str]:
    """A database of our own on the machine's server, dropped afterwards."""
    name = f"obo_bench_{secrets.token_hex(6)}"
    await manage_postgres(POSTGRES_URL, name, True)
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await manage_postgres(POSTGRES_URL, name, False)


async def per_call_read(url: str) -> Timing:
    """p50/p99 of the original's per-call read with ``USERS`` users' cached rows."""
    engine = create_async_engine(url)
    try:
        auth = BetterAuth(
            secret=SECRET, base_url="http://bench.example", adapter=SQLAlchemyAdapter(engine)
        )
        await auth.adapter.create_tables()
        users = await seed_users(auth, USERS)
        now = datetime.now(timezone.utc)
        rows = [
            {
                "userId": u,
                "providerId": "microsoft:api",
                "accountId": "obo",
                "accessToken": "obo." + "x" * 1200,
                "accessTokenExpiresAt": now,
                "scope": SCOPE,
                "createdAt": now,
                "updatedAt": now,
            }
            for u in users
        ]
        await insert(auth.adapter, "account", rows)
        rng = random.Random(USERS)

        async def read(user_id: str) -> object:
            where = [Where("userId", user_id), Where("providerId", "microsoft:api")]
            row = await auth.adapter.find_one("account", where)
            assert row is not None
            return row

        for user_id in users[:50]:  # warm the pool and the statement caches
            await read(user_id)
        return await time_async(read, [rng.choice(users) for _ in range(SAMPLES)])
    finally:
        await engine.dispose()
