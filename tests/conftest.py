from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from better_auth import BetterAuth, MemoryAdapter
from better_auth.adapters.base import BaseAdapter
from tests._databases import BACKENDS, Server, session_database

SECRET = "test-secret-" + "x" * 32
TABLES = ("session", "account", "verification", "user")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    yield from session_database("postgres")


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[Server]:
    yield from session_database("mariadb")


def _backend_params() -> list[Any]:
    marks = {"postgres": [pytest.mark.postgres], "mariadb": [pytest.mark.mariadb]}
    return [pytest.param(kind, marks=marks.get(kind, []), id=kind) for kind in BACKENDS]


@dataclass
class Database:
    """One backend for one test: makes adapters on a clean set of tables."""

    kind: str
    url: str | None
    engines: list[Any] = field(default_factory=list)

    def adapter(self) -> BaseAdapter:
        if self.url is None:
            return MemoryAdapter()
        from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(self.url, pool_size=20, max_overflow=20)
        self.engines.append(engine)
        return SQLAlchemyAdapter(engine)

    async def prepare(self, auth: BetterAuth) -> None:
        create_tables = getattr(auth.adapter, "create_tables", None)
        if create_tables is not None:
            await create_tables()
        for table in TABLES:
            await auth.adapter.delete_many(table, [])

    async def close(self) -> None:
        for engine in self.engines:
            await engine.dispose()


@pytest.fixture(params=_backend_params())
async def database(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    async for db in _database(request, request.param, tmp_path):
        yield db


@pytest.fixture(params=[p for p in _backend_params() if p.values[0] in ("postgres", "mariadb")])
async def server_database(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    """A database on a real server, shared by several processes."""
    async for db in _database(request, request.param, tmp_path):
        yield db


async def _database(
    request: pytest.FixtureRequest, kind: str, tmp_path: Any
) -> AsyncIterator[Database]:
    if kind == "memory":
        db = Database(kind, None)
    elif kind == "sqlite":
        db = Database(kind, f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    else:
        server: Server = request.getfixturevalue(f"{kind}_server")
        db = Database(kind, server.url)
    try:
        yield db
    finally:
        await db.close()


MakeAuth = Callable[..., Awaitable[BetterAuth]]


def _maker(database: Database) -> MakeAuth:
    async def make(*, clean: bool = True, **options: Any) -> BetterAuth:
        options.setdefault("secret", SECRET)
        options.setdefault("base_url", "http://testserver")
        options.setdefault("adapter", database.adapter())
        auth = BetterAuth(**options)
        if clean:
            await database.prepare(auth)
        return auth

    return make


@pytest.fixture
def make_auth(database: Database) -> MakeAuth:
    """Build a BetterAuth on this test's database, tables created and empty."""
    return _maker(database)


@pytest.fixture
def make_server_auth(server_database: Database) -> MakeAuth:
    """Like make_auth, on a database server several processes can share."""
    return _maker(server_database)


# --- the suite-wide leak check (tests/_leaks.py) ------------------------------------------


@pytest.fixture(autouse=True)
def leak_scan(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import logging

    import better_auth
    import better_auth.types
    from tests._leaks import SCAN, RecordCollector, error_texts

    collector = RecordCollector()
    logger = logging.getLogger("better_auth_obo")
    previous = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    errors: list[BaseException] = []
    original_init = better_auth.types.APIError.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:  # the host's class
        original_init(self, *args, **kwargs)
        errors.append(self)

    monkeypatch.setattr(better_auth.types.APIError, "__init__", recording_init)
    try:
        yield
    finally:
        logger.removeHandler(collector)
        logger.setLevel(previous)
    hits_before = len(SCAN.hits)
    for text in collector.texts:
        SCAN.scan("log record", text)
    for error in errors:
        SCAN.scan(f"APIError {getattr(error, 'code', '?')}", error_texts(error))
    SCAN.records += len(collector.texts)
    SCAN.errors += len(errors)
    new = SCAN.hits[hits_before:]
    assert not new, "secret leaked: " + "; ".join(new)


# Under pytest-xdist each worker has its own registry: workers send their counts to the
# controller, which prints the sums.
_WORKER_SCANS: list[dict[str, int]] = []


def _scan_counts() -> dict[str, int]:
    from tests._leaks import SCAN

    return {
        "records": SCAN.records,
        "errors": SCAN.errors,
        "secrets": len(SCAN.secrets),
        "hits": len(SCAN.hits),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["leak_scan"] = _scan_counts()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    counts = getattr(node, "workeroutput", {}).get("leak_scan")
    if counts is not None:
        _WORKER_SCANS.append(counts)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    scans = _WORKER_SCANS or [_scan_counts()]
    total = {key: sum(scan[key] for scan in scans) for key in scans[0]}
    where = f" (sums over {len(scans)} workers)" if _WORKER_SCANS else ""
    terminalreporter.write_line(
        f"leak scan: {total['records']} log records and {total['errors']} API errors checked "
        f"against {total['secrets']} registered secrets{where}: {total['hits']} hits"
    )
