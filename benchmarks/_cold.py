"""Exchange counts under concurrency, and a cold stampede against a slow token endpoint.

The token endpoint is ``FastEntra`` over ``httpx.MockTransport`` with an
``asyncio.sleep`` per request (the emulator is not committed yet), behind the real
exchange client, on ``IndexedMemoryAdapter``. A ``LoopLagProbe`` records the longest
stall of the event loop during the cold run.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from ._doubles import APPLICATION, FastEntra, obo_setup, seed_users
from ._stats import LoopLagProbe

COLD_USERS = 2_000
COLD_LATENCY = 0.05
COLD_CONCURRENCY = 100


@dataclass(frozen=True)
class Counts:
    callers: int
    keys: int
    exchanges: int
    distinct_tokens: int


@dataclass(frozen=True)
class Cold:
    users: int
    latency: float
    concurrency: int
    wall: float
    exchanges: int
    worst_lag: float

    @property
    def ideal(self) -> float:
        return self.users * self.latency / self.concurrency


async def stampede(callers: int, keys: int, *, latency: float = COLD_LATENCY) -> Counts:
    """``callers`` concurrent first calls spread evenly over ``keys`` cold keys."""
    entra = FastEntra(delay=latency)
    auth, plugin = await obo_setup(entra=entra)
    users = await seed_users(auth, keys)
    order = [users[i % keys] for i in range(callers)]
    random.Random(callers).shuffle(order)
    results = await asyncio.gather(
        *(plugin.get_obo_token(user_id=u, application_name=APPLICATION) for u in order)
    )
    return Counts(callers, keys, entra.exchanges, len({r["accessToken"] for r in results}))


async def cold_run(
    users: int = COLD_USERS, latency: float = COLD_LATENCY, concurrency: int = COLD_CONCURRENCY
) -> Cold:
    """``users`` first calls, ``concurrency`` in flight at a time, each one exchange."""
    entra = FastEntra(delay=latency)
    auth, plugin = await obo_setup(entra=entra)
    ids = await seed_users(auth, users)
    queue = iter(ids)

    async def worker() -> None:
        for user_id in queue:
            await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)

    async with LoopLagProbe() as probe:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return Cold(users, latency, concurrency, wall, entra.exchanges, probe.worst)
