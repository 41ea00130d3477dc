"""SQL statements per miss, recorded on the engine (no timings: BENCHMARKS.md measures).

A cold miss reads the user's rows once, writes its row once and reads the rows again to
linearize with a revoke, unlink or new sign-in that happened meanwhile: 3 statements,
the original's count, where the database deletes a user's ``account`` rows with the user
(PostgreSQL, MariaDB, SQLite with ``PRAGMA foreign_keys=ON``: the account table's
foreign key to user says ON DELETE CASCADE). SQLite without the pragma
keeps a deleted user's rows, so the ``user`` row is read too (before the exchange and
after the write): 5. A hit from the table (memory lapsed) is 1 statement, 2 without the
pragma.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from better_auth import BetterAuth
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests._databases import Server
from tests._fakes import WireEntra, provider, seed_user

from better_auth_obo import OBOPlugin

API = {"scope": ["api://downstream/Files.Read"]}


class Recorder:
    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("PRAGMA", "SELECT 1")):
            self.statements.append(statement.split()[0].upper())

    def take(self) -> list[str]:
        taken, self.statements = self.statements, []
        return taken


def _foreign_keys_on(engine: AsyncEngine) -> None:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-foreign-keys",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
async def engine(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[AsyncEngine]:
    if request.param in ("postgres", "mariadb"):
        server: Server = request.getfixturevalue(f"{request.param}_server")
        url = server.url
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"
    engine = create_async_engine(url)
    if request.param == "sqlite-foreign-keys":
        _foreign_keys_on(engine)
    yield engine
    await engine.dispose()


async def _setup(engine: AsyncEngine) -> tuple[BetterAuth, OBOPlugin, WireEntra]:
    from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter

    wire = WireEntra()
    plugin = OBOPlugin(applications={"api": API}, cache_revalidate_after=0.001)
    auth = BetterAuth(
        secret="test-secret-" + "x" * 32,
        base_url="http://testserver",
        adapter=SQLAlchemyAdapter(engine),
        social_providers={"microsoft": provider()},
        plugins=[plugin],
        http_client=wire.client(),
    )
    await auth.adapter.create_tables()  # type: ignore[attr-defined]
    for table in ("session", "account", "verification", "user"):
        await auth.adapter.delete_many(table, [])
    return auth, plugin, wire


def _cascades(engine: AsyncEngine, request: pytest.FixtureRequest) -> bool:
    return "foreign-keys" in request.node.callspec.id or engine.dialect.name != "sqlite"


async def test_statements_per_miss_and_per_table_hit(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    auth, plugin, wire = await _setup(engine)
    users = [await seed_user(auth) for _ in range(3)]
    # The first miss also asks SQLite once whether foreign keys are on.
    await plugin.get_obo_token(user_id=users[0]["id"], application_name="api")
    recorder = Recorder(engine)
    for user in users[1:]:
        await plugin.get_obo_token(user_id=user["id"], application_name="api")
        misses = recorder.take()
        expected = 3 if _cascades(engine, request) else 5
        assert len(misses) == expected, misses
        assert misses.count("INSERT") == 1 and "UPDATE" not in misses
    assert len(wire.exchanges) == 3
    # Memory lapses (cache_revalidate_after is 1 ms): served from the table.
    import asyncio

    await asyncio.sleep(0.01)
    token = await plugin.get_obo_token(user_id=users[1]["id"], application_name="api")
    assert token["accessToken"] and len(wire.exchanges) == 3
    hit = recorder.take()
    assert hit == (["SELECT"] if _cascades(engine, request) else ["SELECT", "SELECT"])


async def test_an_existing_row_is_updated_in_one_statement(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    auth, plugin, wire = await _setup(engine)
    user = await seed_user(auth)
    await plugin.get_obo_token(user_id=user["id"], application_name="api")
    recorder = Recorder(engine)
    await plugin.get_obo_token(user_id=user["id"], application_name="api", force_refresh=True)
    statements = recorder.take()
    writes = [s for s in statements if s in ("INSERT", "UPDATE")]
    assert writes == ["UPDATE"], statements
    assert len(wire.exchanges) == 2
