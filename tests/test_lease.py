"""Cross-process leases on real servers: PostgreSQL advisory locks and Redis ``SET NX PX``.

Also runnable as ``python -m tests.test_lease '<json spec>'``: one OS process of the
cross-process test, appending ``+``/``-`` lines to a shared log around each hold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests._databases import Server, unavailable

from better_auth_obo._lease import (
    DEFAULT_NAMESPACE,
    Lease,
    NullLease,
    PostgresAdvisoryLease,
    RedisLease,
    lock_id,
)

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("OBO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LONG = 30.0  # a ttl no test should reach


@dataclass
class Backend:
    """One lease backend on a real server, plus what the tests inspect behind it."""

    kind: str
    lease: Any  # PostgresAdvisoryLease | RedisLease
    make: Callable[..., Any]  # another lease on the same server, same namespace/prefix
    spec: dict[str, Any]  # how a worker process builds the same lease
    engine: AsyncEngine | None = None
    redis: Any = None
    namespace: int = 0
    prefix: str = ""

    async def advisory_locks(self) -> int:
        """Advisory locks in this test's namespace, from any session (pg_locks)."""
        assert self.engine is not None
        async with self.engine.connect() as conn:
            query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns"
            return int((await conn.execute(text(query), {"ns": self.namespace})).scalar_one())


async def _postgres(server: Server) -> AsyncIterator[Backend]:
    engine = create_async_engine(server.url, pool_size=5, max_overflow=5)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        await engine.dispose()
        unavailable("postgres", exc)
    namespace = secrets.randbelow(2**31)  # parallel runs never share locks

    def make(**options: Any) -> PostgresAdvisoryLease:
        return PostgresAdvisoryLease(engine, namespace=namespace, **options)

    backend = Backend(
        "postgres",
        make(),
        make,
        {"url": server.url, "namespace": namespace},
        engine=engine,
        namespace=namespace,
    )
    try:
        yield backend
        # Every test leaves every connection back in the pool and no lock behind.
        assert engine.pool.checkedout() == 0
        assert await backend.advisory_locks() == 0
    finally:
        await engine.dispose()


async def _redis() -> AsyncIterator[Backend]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable("redis", exc)
    prefix = f"obo-test:{secrets.token_hex(6)}:"

    def make(**options: Any) -> RedisLease:
        return RedisLease(client, prefix=prefix, **options)

    backend = Backend(
        "redis", make(), make, {"url": REDIS_URL, "prefix": prefix}, redis=client, prefix=prefix
    )
    try:
        yield backend
        assert await client.keys(prefix + "*") == []  # every lease released
    finally:
        await client.aclose()


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        source = _postgres(request.getfixturevalue("postgres_server"))
    else:
        source = _redis()
    async for item in source:
        yield item


@pytest.fixture
async def postgres(postgres_server: Server) -> AsyncIterator[Backend]:
    async for item in _postgres(postgres_server):
        yield item


@pytest.fixture
async def redis_backend() -> AsyncIterator[Backend]:
    async for item in _redis():
        yield item


# --- every backend ------------------------------------------------------------------


async def test_holders_of_one_key_never_overlap(backend: Backend) -> None:
    inside = peak = held = 0

    async def worker() -> None:
        nonlocal inside, peak, held
        for _ in range(3):
            async with backend.lease.hold("user:app", ttl=LONG) as got:
                held += got
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.005)
                inside -= 1

    await asyncio.gather(*(worker() for _ in range(8)))
    assert (peak, held) == (1, 24)


async def test_two_instances_on_one_server_exclude_each_other(backend: Backend) -> None:
    other = backend.make()
    async with backend.lease.hold("k", ttl=LONG) as first, other.hold("k", ttl=0.1) as second:
        assert (first, second) == (True, False)
    async with other.hold("k", ttl=0.1) as again:
        assert again


async def test_different_keys_do_not_block_each_other(backend: Backend) -> None:
    lease = backend.lease
    async with lease.hold("user-1:app", ttl=LONG) as first, lease.hold("user-2:app", ttl=0.05) as b:
        assert first and b


async def test_waiting_past_ttl_yields_false(backend: Backend) -> None:
    async with backend.lease.hold("k", ttl=LONG) as first:
        started = time.monotonic()
        async with backend.lease.hold("k", ttl=0.2) as second:
            waited = time.monotonic() - started
            assert (first, second) == (True, False)
    assert waited >= 0.2


async def test_a_waiter_gets_the_lease_once_the_holder_leaves(backend: Backend) -> None:
    release = asyncio.Event()
    taken = asyncio.Event()

    async def holder() -> None:
        async with backend.lease.hold("k", ttl=LONG) as got:
            assert got
            taken.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await taken.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    async with backend.lease.hold("k", ttl=LONG) as got:
        assert got and release.is_set()
    await task


async def test_released_when_the_body_raises(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with backend.lease.hold("k", ttl=LONG):
            raise RuntimeError("boom")
    async with backend.lease.hold("k", ttl=0.05) as got:
        assert got


async def test_released_when_the_holder_is_cancelled(backend: Backend) -> None:
    taken = asyncio.Event()

    async def holder() -> None:
        async with backend.lease.hold("k", ttl=LONG):
            taken.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await taken.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with backend.lease.hold("k", ttl=0.05) as got:
        assert got


async def test_a_cancelled_waiter_leaves_nothing_behind(backend: Backend) -> None:
    async with backend.lease.hold("k", ttl=LONG):
        waiters = [asyncio.create_task(_hold_briefly(backend.lease, "k")) for _ in range(5)]
        await asyncio.sleep(0.1)
        for task in waiters:
            task.cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
    # The fixture checks no connection, lock or key is left.


async def _hold_briefly(lease: Lease, key: str) -> bool:
    async with lease.hold(key, ttl=LONG) as got:
        return got


async def test_processes_never_overlap(backend: Backend, tmp_path: Path) -> None:
    holds = await _run_processes({**backend.spec, "kind": backend.kind}, tmp_path)
    assert _peak(holds) == 1
    assert len({line[1:] for line in holds}) == PROCESSES  # every process held it


async def test_processes_overlap_without_a_lease(tmp_path: Path) -> None:
    # The control: the same check does see overlapping holders.
    assert _peak(await _run_processes({"kind": "null"}, tmp_path)) > 1


PROCESSES, TASKS, ROUNDS = 2, 3, 5


async def _run_processes(spec: dict[str, Any], tmp_path: Path) -> list[str]:
    """Run PROCESSES workers on one key; return their +pid/-pid lines in order."""
    log = tmp_path / "holds.log"
    spec = {**spec, "log": str(log), "tasks": TASKS, "rounds": ROUNDS}
    spec["start_at"] = time.time() + 1.5
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.test_lease",
            json.dumps(spec),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    # O_APPEND lines are in the order the holds happened, whatever the process.
    holds = log.read_text().split()
    assert len(holds) == 2 * PROCESSES * TASKS * ROUNDS
    return holds


def _peak(holds: list[str]) -> int:
    inside = peak = 0
    for line in holds:
        inside += 1 if line.startswith("+") else -1
        peak = max(peak, inside)
    return peak


# --- PostgreSQL ---------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_lock_is_visible_while_held_and_gone_after(postgres: Backend) -> None:
    assert postgres.engine is not None
    async with postgres.lease.hold("k", ttl=LONG) as got:
        assert got
        assert postgres.lease.held == 1
        assert postgres.engine.pool.checkedout() == 1
        assert await postgres.advisory_locks() == 1
        async with postgres.engine.connect() as conn:
            query = "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns"
            row = (await conn.execute(text(query), {"ns": postgres.namespace})).one()
            assert row[0] == lock_id("k")
    assert postgres.lease.held == 0
    assert postgres.engine.pool.checkedout() == 0
    assert await postgres.advisory_locks() == 0


@pytest.mark.postgres
async def test_postgres_past_max_held_yields_false_at_once(postgres: Backend) -> None:
    lease = postgres.make(max_held=1)
    async with lease.hold("a", ttl=LONG) as first:
        started = time.monotonic()
        async with lease.hold("b", ttl=LONG) as second:
            assert (first, second) == (True, False)
            assert time.monotonic() - started < LONG / 2
    async with lease.hold("b", ttl=LONG) as again:
        assert again


@pytest.mark.postgres
async def test_postgres_default_max_held_leaves_the_store_a_connection(postgres: Backend) -> None:
    assert postgres.engine is not None
    assert postgres.lease.max_held == 4  # pool_size=5
    held = [postgres.lease.hold(f"k{i}", ttl=LONG) for i in range(5)]
    results = [await cm.__aenter__() for cm in held]
    try:
        assert results == [True, True, True, True, False]
        async with postgres.engine.connect() as conn:  # the store still gets a connection
            await conn.execute(text("SELECT 1"))
    finally:
        for cm in reversed(held):
            await cm.__aexit__(None, None, None)


async def test_postgres_lease_refuses_another_database(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(ValueError, match="needs a PostgreSQL engine, got 'sqlite'"):
            PostgresAdvisoryLease(engine)
    finally:
        await engine.dispose()
    with pytest.raises(TypeError, match="AsyncEngine"):
        PostgresAdvisoryLease("postgresql://localhost/db")  # type: ignore[arg-type]


# --- Redis --------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_key_lives_at_most_ttl(redis_backend: Backend) -> None:
    name = redis_backend.prefix + "k"
    async with redis_backend.lease.hold("k", ttl=0.5) as got:
        assert got
        assert 0 < await redis_backend.redis.pttl(name) <= 500
    assert await redis_backend.redis.exists(name) == 0


@pytest.mark.redis
async def test_redis_release_after_expiry_keeps_the_next_holders_lease(
    redis_backend: Backend,
) -> None:
    name = redis_backend.prefix + "k"
    second = redis_backend.lease.hold("k", ttl=LONG)
    async with redis_backend.lease.hold("k", ttl=0.1) as first:
        assert first
        await asyncio.sleep(0.2)  # the first lease's key expires while its body still runs
        assert await second.__aenter__()
        token = await redis_backend.redis.get(name)
    # The first holder left: the second holder's key is untouched.
    assert await redis_backend.redis.get(name) == token
    await second.__aexit__(None, None, None)
    assert await redis_backend.redis.exists(name) == 0


async def test_redis_lease_refuses_a_non_client() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisLease(object())  # type: ignore[arg-type]


def _unreachable_postgres() -> tuple[Lease, Callable[[], Awaitable[None]]]:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    engine = create_async_engine(url, connect_args={"timeout": 2})
    return PostgresAdvisoryLease(engine), engine.dispose


def _unreachable_redis() -> tuple[Lease, Callable[[], Awaitable[None]]]:
    from redis.asyncio import Redis

    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=2)
    return RedisLease(client), client.aclose


@pytest.mark.parametrize(
    ("make", "service"),
    [(_unreachable_postgres, "PostgreSQL"), (_unreachable_redis, "Redis")],
    ids=["postgres", "redis"],
)
async def test_an_unreachable_server_yields_false_and_warns(
    make: Callable[[], tuple[Lease, Callable[[], Awaitable[None]]]],
    service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lease, close = make()
    try:
        with caplog.at_level(logging.WARNING, "better_auth_obo"):
            async with lease.hold("k", ttl=LONG) as got:
                assert got is False
    finally:
        await close()
    assert f"could not take the {service} lease" in caplog.text


# --- no backend ---------------------------------------------------------------------


async def test_null_lease_always_holds_at_once() -> None:
    lease = NullLease()
    async with lease.hold("k", ttl=1) as first, lease.hold("k", ttl=1) as second:
        assert first and second


@pytest.mark.parametrize(
    ("key", "ttl", "error"),
    [
        (1, 1.0, TypeError),
        ("k", 0, ValueError),
        ("k", -1, ValueError),
        ("k", float("inf"), ValueError),
        ("k", float("nan"), ValueError),
        ("k", True, ValueError),
    ],
)
async def test_bad_arguments_are_refused(key: Any, ttl: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        async with NullLease().hold(key, ttl=ttl):
            pass


def test_every_lease_satisfies_the_protocol() -> None:
    assert isinstance(NullLease(), Lease)
    assert isinstance(RedisLease.__new__(RedisLease), Lease)
    assert isinstance(PostgresAdvisoryLease.__new__(PostgresAdvisoryLease), Lease)


def test_lock_id_is_stable_and_32_bit() -> None:
    # Fixed values: every process, every Python version, must map a key to the same lock.
    assert lock_id("user-1:graph") == lock_id("user-1:graph")
    assert lock_id("user-1:graph") != lock_id("user-2:graph")
    assert all(-(2**31) <= lock_id(f"u{i}:a") < 2**31 for i in range(1000))
    assert 0 < DEFAULT_NAMESPACE < 2**31


# --- one worker process of test_processes_never_overlap -------------------------------


async def _worker(spec: dict[str, Any]) -> None:
    fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    me = f"{os.getpid()}\n".encode()
    lease, close = _worker_lease(spec)

    async def task() -> None:
        for _ in range(spec["rounds"]):
            async with lease.hold("shared", ttl=LONG) as got:
                assert got
                os.write(fd, b"+" + me)
                await asyncio.sleep(0.01)
                os.write(fd, b"-" + me)

    await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
    try:
        await asyncio.gather(*(task() for _ in range(spec["tasks"])))
    finally:
        await close()
        os.close(fd)


def _worker_lease(spec: dict[str, Any]) -> tuple[Lease, Callable[[], Awaitable[None]]]:
    if spec["kind"] == "postgres":
        engine = create_async_engine(spec["url"])
        return PostgresAdvisoryLease(engine, namespace=spec["namespace"]), engine.dispose
    if spec["kind"] == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(spec["url"])
        return RedisLease(client, prefix=spec["prefix"]), client.aclose
    return NullLease(), _nothing


async def _nothing() -> None:
    pass


if __name__ == "__main__":
    asyncio.run(_worker(json.loads(sys.argv[1])))
