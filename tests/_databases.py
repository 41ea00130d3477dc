"""Real databases for the storage tests: a SQLite file, PostgreSQL, MariaDB, and memory.

Each server gets a database of its own per test session (``obo_<random>``, or
``obo_gw0_<random>`` in pytest-xdist worker ``gw0``), dropped at the end, so parallel runs
and xdist workers never share tables. URLs come from
``OBO_TEST_POSTGRES_URL`` / ``OBO_TEST_MARIADB_URL`` (defaults: the machine's services).
Under ``CI=true`` an unreachable server fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "OBO_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("OBO_TEST_MARIADB_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
BACKENDS = ("memory", "sqlite", "postgres", "mariadb")


@dataclass(frozen=True)
class Server:
    """A database created for this test session on a real server."""

    kind: str
    url: str  # SQLAlchemy async URL of the session's own database


def unavailable(kind: str, exc: BaseException) -> None:
    message = f"{kind} is unreachable ({type(exc).__name__}: {exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI=true the service must be up", pytrace=False)
    pytest.skip(message)


async def _postgres(admin_url: str, name: str, create: bool) -> None:
    import asyncpg

    url = make_url(admin_url)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        database=url.database,
        password=url.password,
        timeout=5,
    )
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _mariadb(admin_url: str, name: str, create: bool) -> None:
    import aiomysql

    url = make_url(admin_url)
    conn = await aiomysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        db=url.database,
        connect_timeout=5,
    )
    try:
        async with conn.cursor() as cur:
            if create:
                await cur.execute(f"CREATE DATABASE `{name}`")
            else:
                await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    # A thread of its own: session fixtures may be set up from inside a running loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def session_database(kind: str) -> Iterator[Server]:
    """Create ``obo_[<worker>_]<random>`` on the server of ``kind``; drop it afterwards."""
    admin = POSTGRES_URL if kind == "postgres" else MARIADB_URL
    manage = _postgres if kind == "postgres" else _mariadb
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, … under pytest-xdist
    name = f"obo_{worker}_{secrets.token_hex(6)}" if worker else f"obo_{secrets.token_hex(6)}"
    try:
        _run(manage(admin, name, True))
    except Exception as exc:
        unavailable(kind, exc)
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield Server(kind, url)
    finally:
        _run(manage(admin, name, False))
