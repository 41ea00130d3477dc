"""Cross-process leases: a cold key is exchanged once across several worker processes.

``SingleFlight`` makes one exchange per key *per process*. Several workers sharing one
database can still each exchange the same cold key once. A lease, held around the
exchange, lets one process do it; the others wait for it, re-read the row the holder
wrote, and find the token there.

A lease is an optimisation, never a correctness device: the ``account`` table keeps one
row per key with or without it. So ``hold`` never blocks a caller for longer than ``ttl``
and never fails a caller because the lock service is down: it yields ``False`` ("go on
without it") and, for an outage, logs a warning.

Backends: ``NullLease`` (the default: no coordination), ``PostgresAdvisoryLease`` (the
Better Auth database itself) and ``RedisLease`` (``SET NX PX`` where the app has Redis).
Both real backends wait by polling with short jittered sleeps; see each class for why.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_PREFIX",
    "Lease",
    "NullLease",
    "PostgresAdvisoryLease",
    "RedisLease",
    "lock_id",
]

logger = logging.getLogger("better_auth_obo")

T = TypeVar("T")

#: First 31 bits of SHA-256("better-auth-obo:lease"): the advisory-lock namespace (classid).
DEFAULT_NAMESPACE = 0x1F3ECB3A
DEFAULT_PREFIX = "better-auth-obo:lease:"
#: Mean sleep between two attempts while another process holds the lease.
DEFAULT_POLL_INTERVAL = 0.025

_INT32 = range(-(2**31), 2**31)


@runtime_checkable
class Lease(Protocol):
    """Mutual exclusion per key across processes, bounded in time.

    Example::

        async with lease.hold(f"{user_id}:{application}", ttl=10.0) as held:
            ...  # re-read the row; exchange only if it is still missing or stale
    """

    def hold(self, key: str, *, ttl: float) -> AbstractAsyncContextManager[bool]:
        """Hold the lease for ``key`` while the body runs.

        Yields True when this process holds it (do the exchange), False when it could not
        get it within ``ttl`` seconds (proceed without it: never block callers forever).
        Released on exit, also on error or cancellation.
        """
        ...


class NullLease:
    """No coordination: every caller holds the lease at once (the default).

    Example::

        async with NullLease().hold("user:app", ttl=10) as held:
            assert held
    """

    @asynccontextmanager
    async def hold(self, key: str, *, ttl: float) -> AsyncIterator[bool]:
        """Yield True at once."""
        _check(key, ttl)
        yield True


class PostgresAdvisoryLease:
    """A PostgreSQL session advisory lock per key, through a SQLAlchemy ``AsyncEngine``.

    The lock is ``(namespace, lock_id(key))`` in the two-``int4`` advisory-lock space,
    scoped to the engine's database. A holder keeps one pooled connection for as long as
    it holds (the lock lives in that session), unlocks on that same connection and
    returns it to the pool; a connection whose state is in doubt (an error or a
    cancellation while locking or unlocking) is closed instead, which ends the session
    and so frees the lock.

    Waiting polls ``pg_try_advisory_lock`` rather than blocking in ``pg_advisory_lock``
    under ``lock_timeout``: a waiter then holds no connection between attempts (a
    blocked lock call pins one per waiter for up to ``ttl``, from the pool the plugin's
    own reads and writes need), cancellation needs no server-side query cancel, and no
    error (SQLSTATE 55P03) aborts anything. The price: a waiter notices the release up
    to one poll interval late, and makes one short query per interval.

    ``max_held`` bounds how many leases this instance holds at once (each pins a pooled
    connection while its body runs); past it ``hold`` yields False at once, so a cold
    stampede over many keys cannot take every pooled connection away from the store.
    Default: the pool size minus one, or 16 for a pool without a fixed size.

    Needs a direct connection or a session-mode pooler: under PgBouncer in transaction
    mode a session lock does not stay with the session that took it.

    Example::

        lease = PostgresAdvisoryLease(engine)  # the engine of SQLAlchemyAdapter(engine)
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        namespace: int = DEFAULT_NAMESPACE,
        max_held: int | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncEngine

        if not isinstance(engine, AsyncEngine):
            raise TypeError(
                f"engine must be a sqlalchemy AsyncEngine, got {type(engine).__name__}; "
                "create it with sqlalchemy.ext.asyncio.create_async_engine('postgresql+asyncpg://...')"
            )
        if engine.dialect.name != "postgresql":
            raise ValueError(
                f"PostgresAdvisoryLease needs a PostgreSQL engine, got {engine.dialect.name!r}; "
                "on another database use RedisLease or no lease"
            )
        if isinstance(namespace, bool) or not isinstance(namespace, int) or namespace not in _INT32:
            raise ValueError(f"namespace must be a 32-bit signed integer, got {namespace!r}")
        # AUTOCOMMIT: one round trip per statement, and no transaction stays open while a
        # holder's body runs (session advisory locks outlive transactions anyway).
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._namespace = namespace
        self._max_held = _default_max_held(engine) if max_held is None else _count(max_held)
        self._poll_interval = _seconds("poll_interval", poll_interval)
        self._held = 0
        self._try_lock = text("SELECT pg_try_advisory_lock(:namespace, :key)")
        self._unlock = text("SELECT pg_advisory_unlock(:namespace, :key)")

    @property
    def max_held(self) -> int:
        """How many leases this instance may hold at once."""
        return self._max_held

    @property
    def held(self) -> int:
        """How many leases this instance holds right now."""
        return self._held

    @asynccontextmanager
    async def hold(self, key: str, *, ttl: float) -> AsyncIterator[bool]:
        """Hold the advisory lock for ``key``; see ``Lease.hold``."""
        ttl = _check(key, ttl)
        params = {"namespace": self._namespace, "key": lock_id(key)}
        try:
            conn = await _poll(
                lambda: self._attempt(params),
                lambda conn: self._release(conn, params),
                ttl,
                self._poll_interval,
            )
        except _Full:
            conn = None
        except Exception as exc:
            _warn("PostgreSQL", "take", exc)
            conn = None
        if conn is None:
            yield False
            return
        try:
            yield True
        finally:
            await self._release(conn, params)

    async def _attempt(self, params: dict[str, int]) -> AsyncConnection | None:
        if self._held >= self._max_held:
            raise _Full
        conn: AsyncConnection | None = None
        try:
            conn = await self._engine.connect()
            result = await conn.execute(self._try_lock, params)
            got = bool(result.scalar_one())
        except BaseException:
            if conn is not None:
                await _discard(conn)  # the lock may have been granted before the failure
            raise
        if not got:
            await conn.close()
            return None
        self._held += 1
        if self._held > self._max_held:  # other keys took the last places meanwhile
            await self._release(conn, params)
            raise _Full
        return conn

    async def _release(self, conn: AsyncConnection, params: dict[str, int]) -> None:
        try:
            result = await conn.execute(self._unlock, params)
            if not result.scalar_one():
                logger.warning(
                    "the PostgreSQL advisory lock was gone at release; is a pooler in "
                    "transaction mode between the app and PostgreSQL? Use session mode."
                )
            await conn.close()
        except Exception as exc:
            _warn("PostgreSQL", "release", exc)
            await _discard(conn)
        except BaseException:
            await _discard(conn)
            raise
        finally:
            self._held -= 1


class RedisLease:
    """A Redis key per lease: ``SET <prefix><key> <random token> NX PX <ttl>``.

    ``ttl`` bounds both the wait and the key's life, so a holder that dies (or runs
    longer than ``ttl``) cannot block the others for longer. Release deletes the key only
    if it still holds this holder's token (a short Lua script, atomic on the server), so
    a holder whose key expired never deletes the next holder's lease.

    Waiting polls with short jittered sleeps: simple, and waiters in several processes do
    not retry in lockstep. (Keyspace notifications would wake waiters sooner but need
    server configuration the app may not own.)

    Example::

        lease = RedisLease(redis.asyncio.Redis.from_url("redis://localhost:6379/0"))
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        register = getattr(redis, "register_script", None)
        if not callable(register):
            raise TypeError(
                f"redis must be a redis.asyncio.Redis client, got {type(redis).__name__}"
            )
        self._redis = redis
        self._prefix = prefix
        self._poll_interval = _seconds("poll_interval", poll_interval)
        self._unlock = redis.register_script(_RELEASE_IF_OURS)

    @asynccontextmanager
    async def hold(self, key: str, *, ttl: float) -> AsyncIterator[bool]:
        """Hold the Redis lease for ``key``; see ``Lease.hold``."""
        ttl = _check(key, ttl)
        name = self._prefix + key
        token = secrets.token_hex(16)
        px = max(1, math.ceil(ttl * 1000))
        try:
            got = await _poll(
                lambda: self._attempt(name, token, px),
                lambda _: self._release(name, token),
                ttl,
                self._poll_interval,
            )
        except Exception as exc:
            _warn("Redis", "take", exc)
            with suppress(Exception):  # the SET may have landed before the failure
                await self._unlock(keys=[name], args=[token])
            got = None
        except BaseException:
            await self._release(name, token)
            raise
        if got is None:
            yield False
            return
        try:
            yield True
        finally:
            await self._release(name, token)

    async def _attempt(self, name: str, token: str, px: int) -> bool | None:
        return True if await self._redis.set(name, token, nx=True, px=px) else None

    async def _release(self, name: str, token: str) -> None:
        try:
            await self._unlock(keys=[name], args=[token])
        except Exception as exc:
            _warn("Redis", "release", exc)  # the key expires on its own within ttl


_RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_id(key: str) -> int:
    """A stable signed 32-bit id for ``key`` (the same in every process, unlike ``hash``).

    Two keys may share an id; they then only wait for each other, never share a token.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Full(Exception):
    """This instance already holds ``max_held`` leases."""


async def _poll(
    attempt: Callable[[], Awaitable[T | None]],
    undo: Callable[[T], Awaitable[None]],
    ttl: float,
    interval: float,
) -> T | None:
    deadline = time.monotonic() + ttl
    cancels = _cancels()
    while True:
        got = await attempt()
        if _cancels() > cancels:
            # Cancelled, but a client library swallowed the CancelledError (asyncio.wait_for
            # before Python 3.12 does when its inner call finishes at the same moment, as
            # redis-py's socket writes can): stop here rather than poll on for a gone caller.
            if got is not None:
                await undo(got)
            raise asyncio.CancelledError
        if got is not None:
            return got
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        # Jitter so waiters in several processes do not retry in lockstep; a last attempt
        # lands at the deadline.
        await asyncio.sleep(min(remaining, interval * (0.5 + random.random())))  # noqa: S311


def _cancels() -> int:
    # Cancellation requests pending on this task (Task.cancelling, Python 3.11+; 0 before).
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


async def _discard(conn: AsyncConnection) -> None:
    # Close the connection instead of pooling it: ending the session frees its locks.
    # Best effort on a connection already in trouble.
    with suppress(Exception):
        await conn.invalidate()
    with suppress(Exception):
        await conn.close()


def _warn(service: str, act: str, exc: BaseException) -> None:
    logger.warning(
        "could not %s the %s lease (%s); going on without it", act, service, type(exc).__name__
    )


def _check(key: object, ttl: object) -> float:
    if not isinstance(key, str):
        raise TypeError(f"key must be a string, got {type(key).__name__}")
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ValueError(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
    return float(ttl)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_held must be an integer >= 1, got {value!r}")
    return value


def _default_max_held(engine: Any) -> int:
    from sqlalchemy.pool import QueuePool

    pool = engine.pool
    # Leave at least one pooled connection (plus the overflow) to the store.
    return max(1, pool.size() - 1) if isinstance(pool, QueuePool) else 16
