"""Steady load across expiry (proactive refresh) and several OS processes on PostgreSQL.

- ``steady_across_expiry``: a fake clock advances one second per round (one real
  millisecond) while every key is asked for once per round, across three token
  lifetimes; a call that takes longer than half the token endpoint's latency waited on
  the network. With proactive refresh none should, after the first (cold) round.
- ``processes``: four worker processes (``tests/_worker.py``), each its own BetterAuth and
  OBOPlugin on one PostgreSQL database, race on one cold key; rows and exchanges are
  counted, with and without the advisory-lock lease.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from better_auth import BetterAuth
from better_auth.adapters.base import Where
from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
from sqlalchemy.ext.asyncio import create_async_engine
from tests._fakes import user_token
from tests._worker import run_workers

from ._doubles import APPLICATION, SECRET, FastEntra, obo_setup, seed_users
from ._original import postgres_url


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Steady:
    calls: int
    waited: int
    exchanges: int
    expiries: int


async def steady_across_expiry(
    keys: int = 20, lifetime: int = 300, latency: float = 0.05
) -> Steady:
    clock = _Clock()
    entra = FastEntra(delay=latency, lifetime=lifetime)
    auth, plugin = await obo_setup(entra=entra, clock=clock)
    users = await seed_users(auth, keys)
    for user in users:  # the cold round, not counted
        await plugin.get_obo_token(user_id=user, application_name=APPLICATION)
    rounds = lifetime * 3
    calls = waited = 0
    for _ in range(rounds):
        clock.now += 1.0
        for user in users:
            started = time.perf_counter()
            await plugin.get_obo_token(user_id=user, application_name=APPLICATION)
            calls += 1
            if time.perf_counter() - started > latency / 2:
                waited += 1
        # One clock second per real millisecond: a 50 ms exchange spans 50 clock seconds,
        # well inside the 120 s refresh lead (in real life the lead is 2,400× the latency).
        await asyncio.sleep(0.001)
    await plugin.aclose()
    return Steady(calls, waited, entra.exchanges, rounds // lifetime)


@dataclass(frozen=True)
class Processes:
    processes: int
    rows: int
    exchanges: int


async def processes(*, lease: bool, count: int = 4) -> Processes:
    async with postgres_url() as url:
        engine = create_async_engine(url)
        auth = BetterAuth(secret=SECRET, adapter=SQLAlchemyAdapter(engine))
        await auth.adapter.create_tables()  # type: ignore[attr-defined]
        (user,) = await seed_users(auth, 1, token=user_token())
        spec = {
            "url": url,
            "users": [user],
            "applications": ["a"],
            "lease": "postgres" if lease else None,
            "start_at": time.time() + 4,
        }
        exchanges = sum(await run_workers(spec, count))
        rows = await auth.adapter.find_many(
            "account", [Where("providerId", "microsoft:", "starts_with")]
        )
        keys = Counter((r["userId"], r["providerId"]) for r in rows)
        await engine.dispose()
        return Processes(count, max(keys.values(), default=0), exchanges)
