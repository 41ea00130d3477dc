"""Incidents at full size (issue 15): what the plugin sends to Entra, runs and stalls when
Entra is in trouble. The CI-sized versions, with assertions, are tests/test_incidents.py.

- throttling: the cost of remembering one more 429 as the memory fills with 100,000
  throttled users, against an uncapped memory in the same run;
- outage: 3,000 hot keys, due for a proactive refresh, hit once a clock-second for five
  clock-minutes while Entra answers 503: requests per round, longest loop stall;
- failing due keys: 30,000 keys due at once while Entra fails: peak background tasks;
- shutdown mid-storm: 1,000 exchanges in flight and the background full: what still runs
  0.1 s after ``aclose()``.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from dataclasses import dataclass

from better_auth_obo._errors import EntraUnavailableError
from better_auth_obo._retry import ThrottleMemory

from ._doubles import APPLICATION, FastEntra, obo_setup, seed_users
from ._stats import LoopLagProbe


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def throttle_cost(users: int = 100_000, cap: int = 10_000) -> tuple[float, float]:
    """µs per 429 noted past ``cap`` entries (capped memory, uncapped memory)."""
    error = EntraUnavailableError("throttled", retry_after=30.0, status_code=429)
    costs = []
    for maxsize in (cap, users * 2):
        memory = ThrottleMemory(maxsize=maxsize)
        now = 1_000_000.0
        for n in range(cap):  # fill to the cap first
            memory.note(("u", n), error, now=now)
        t0 = time.perf_counter()
        for n in range(cap, users):
            now += 0.0001  # 10,000 throttled calls a second
            memory.note(("u", n), error, now=now)
        costs.append((time.perf_counter() - t0) / (users - cap) * 1e6)
    return costs[0], costs[1]


@dataclass(frozen=True)
class Outage:
    keys: int
    first_round: int
    worst_later_round: int
    later_total: int
    rounds: int
    stall_ms: float


async def outage(keys: int = 3_000, rounds: int = 300) -> Outage:
    clock = Clock()
    entra = FastEntra()
    # A 10-minute refresh lead, so the tokens are due for the whole outage and still good
    # after it: what is measured is the background's load, not callers with expired tokens.
    auth, plugin = await obo_setup(entra=entra, clock=clock, retry=None, refresh_ahead=600)
    users = await seed_users(auth, keys, lifetime=86_400)  # the users' own tokens outlast it
    for user_id in users:
        await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
    clock.now += 3600 - 500  # due (within 660 s of expiry), good for 440 s more
    for user_id in users:  # memory re-reads the rows
        await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
    entra.fail_status = 503
    per_round = []
    async with LoopLagProbe() as probe:
        for _ in range(rounds):
            before = entra.exchanges
            for user_id in users:
                await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
            await plugin._background.join()
            per_round.append(entra.exchanges - before)
            clock.now += 1
    await plugin.aclose()
    later = per_round[1:]
    return Outage(keys, per_round[0], max(later), sum(later), rounds, probe.worst * 1000)


async def failing_due_keys(keys: int = 30_000) -> tuple[int, int, int, float]:
    """(peak background tasks, cap, requests sent, peak MB traced while they ran)."""
    clock = Clock()
    entra = FastEntra()
    auth, plugin = await obo_setup(entra=entra, clock=clock, retry=None, cache_max_entries=keys)
    users = await seed_users(auth, keys, lifetime=86_400)
    for user_id in users:
        await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
    clock.now += 3600 - 60 - 100
    for user_id in users:
        await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
    entra.fail_status, entra.delay = 503, 0.01  # failing, and slow to say so
    tracemalloc.start()
    before, peak = entra.exchanges, 0
    for user_id in users:
        await plugin.get_obo_token(user_id=user_id, application_name=APPLICATION)
        peak = max(peak, len(plugin._background))
    while len(plugin._background):
        peak = max(peak, len(plugin._background))
        await asyncio.sleep(0.01)
    sent = entra.exchanges - before
    traced = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    await plugin.aclose()
    return peak, 32, sent, traced


async def shutdown_mid_storm(callers: int = 1_000) -> tuple[int, float]:
    """(tasks still running 0.1 s after aclose(), seconds aclose() took)."""
    entra = FastEntra(delay=30.0)
    auth, plugin = await obo_setup(entra=entra, retry=None)
    users = await seed_users(auth, callers)
    mine = {
        asyncio.ensure_future(plugin.get_obo_token(user_id=u, application_name=APPLICATION))
        for u in users
    }
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    await plugin.aclose()
    took = time.perf_counter() - t0
    await asyncio.sleep(0.1)
    running = sum(1 for t in asyncio.all_tasks() - {asyncio.current_task()} if not t.done())
    for task in mine:  # the old behaviour leaves them running: do not wait 30 s for them
        task.cancel()
    await asyncio.gather(*mine, return_exceptions=True)
    return running, took
