"""Under incidents the plugin adds no load of its own (CI-sized; the full-size runs with
timings are ``benchmarks/_incidents.py``).

Each test drives the real plugin on MemoryAdapter over the ``WireEntra`` double with an
injected clock, and counts what reaches the token endpoint, what runs in the background,
and what is left after ``aclose()``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from better_auth import BetterAuth, MemoryAdapter
from tests._fakes import (
    AUTHORITY,
    CLIENT_ID,
    WireEntra,
    make_jwt,
    provider,
    seed_user,
)
from tests.conftest import SECRET
from tests.test_plugin import Clock

from better_auth_obo import OBOConfigurationWarning, OBOPlugin
from better_auth_obo._errors import EntraUnavailableError
from better_auth_obo._retry import ThrottleMemory

GRAPH = {"scope": ["https://graph.microsoft.com/.default"]}
DOWN = (503, {"error": "temporarily_unavailable"}, {})


async def world(
    wire: WireEntra, clock: Clock, users: int, **options: Any
) -> tuple[BetterAuth, OBOPlugin, list[str]]:
    options.setdefault("retry", None)
    microsoft = options.pop("microsoft", None) or provider()
    plugin = OBOPlugin(applications={"graph": GRAPH}, clock=clock, sleep=clock.sleep, **options)
    auth = BetterAuth(
        secret=SECRET,
        base_url="http://testserver",
        adapter=MemoryAdapter(),
        social_providers={"microsoft": microsoft},
        plugins=[plugin],
        http_client=wire.client(),
    )
    ids = [(await seed_user(auth, expires_at=clock.now + 86_400))["id"] for _ in range(users)]
    return auth, plugin, ids


async def hit_all(plugin: OBOPlugin, ids: list[str]) -> None:
    for user_id in ids:
        await plugin.get_obo_token(user_id=user_id, application_name="graph")


# --- throttle memory ----------------------------------------------------------------------


def throttled(seconds: float = 30.0) -> EntraUnavailableError:
    return EntraUnavailableError("throttled", retry_after=seconds, status_code=429)


def test_throttle_memory_stays_bounded_and_sweeps_at_most_once_a_second() -> None:
    memory = ThrottleMemory(maxsize=100)
    for n in range(5_000):  # all still waiting: the least recently throttled go
        memory.note(("user", n), throttled(), now=1_000.0)
    assert len(memory) == 100
    memory.check(("user", 0), now=1_000.0)  # evicted: not held back any more
    with pytest.raises(EntraUnavailableError):
        memory.check(("user", 4_999), now=1_000.0)
    for n in range(100):  # these wait 1 s only
        memory.note(("short", n), throttled(1.0), now=1_000.0)
    memory.note(("late", 0), throttled(), now=1_000.5)  # < 1 s since the last sweep
    assert len(memory) == 100
    memory.note(("late", 1), throttled(), now=1_002.0)  # swept: the expired 99 go at once
    assert len(memory) == 2  # ("late", 0) and ("late", 1)


# --- background refresh during an outage ----------------------------------------------


async def test_an_outage_does_not_make_background_refresh_hammer_entra() -> None:
    """300 hot keys, due for a proactive refresh, hit once a (clock) second while Entra is
    down: the first round tries each once; later, each key only when its pause (15 s,
    doubling, spread ×0.5–1.5) has ended, so no round comes near the first."""
    clock = Clock()
    wire = WireEntra(clock=clock, lifetime=3600)
    _, plugin, ids = await world(wire, clock, 300)
    await hit_all(plugin, ids)
    clock.now += 3600 - 60 - 100  # inside the refresh window, tokens still good
    await hit_all(plugin, ids)  # memory re-reads the rows (revalidation): due from now on
    wire.failures.extend([DOWN] * 10_000)
    per_round = []
    for _ in range(30):
        before = len(wire.exchanges)
        await hit_all(plugin, ids)
        await plugin._background.join()
        per_round.append(len(wire.exchanges) - before)
        clock.now += 1
    await plugin.aclose()
    print("requests to Entra per round:", per_round)
    assert per_round[0] == 300
    assert max(per_round[1:]) <= 0.2 * per_round[0], per_round
    assert sum(per_round[1:]) <= 2 * 300, per_round  # 30 s: at most two more tries a key


async def test_background_refreshes_stay_under_the_cap_and_run_each_key_once() -> None:
    clock = Clock()
    wire = WireEntra(clock=clock, lifetime=3600, delay=0.02)
    _, plugin, ids = await world(wire, clock, 120, refresh_concurrency=8)
    await hit_all(plugin, ids)
    clock.now += 3600 - 60 - 100
    exchanges = len(wire.exchanges)
    peak = 0
    for _ in range(3):  # every key due, hit three times while the first refreshes run
        for user_id in ids:
            await plugin.get_obo_token(user_id=user_id, application_name="graph")
            peak = max(peak, len(plugin._background))
    while len(plugin._background) or plugin._background.queued:
        peak = max(peak, len(plugin._background))
        await asyncio.sleep(0.005)
    assert peak == 8
    assert len(wire.exchanges) - exchanges == 120  # one refresh per key, none twice
    await plugin.aclose()


async def test_short_lived_tokens_are_not_refreshed_on_every_hit() -> None:
    """130 s tokens (shorter than the 60 s buffer + 120 s lead): never due before half
    their life, so hits once a second make well under 0.3 background exchanges each."""
    clock = Clock()
    wire = WireEntra(clock=clock, lifetime=130)
    _, plugin, ids = await world(wire, clock, 10)
    await hit_all(plugin, ids)
    start, hits = len(wire.exchanges), 0
    for _ in range(300):
        await hit_all(plugin, ids)
        await plugin._background.join()
        hits += len(ids)
        clock.now += 1
    await plugin.aclose()
    per_hit = (len(wire.exchanges) - start) / hits
    print(f"background exchanges per hit with 130 s tokens: {per_hit:.3f}")
    assert per_hit <= 0.3, per_hit


# --- aclose is final ----------------------------------------------------------------------


class CountingLease:
    """A lease double (``hold`` as the Lease protocol says) that counts what is held."""

    def __init__(self) -> None:
        self.held = 0

    @asynccontextmanager
    async def hold(self, key: str, *, ttl: float) -> AsyncIterator[bool]:
        self.held += 1
        try:
            yield True
        finally:
            self.held -= 1


async def test_aclose_is_final() -> None:
    clock = Clock()
    wire = WireEntra(clock=clock, lifetime=3600, delay=5.0)  # exchanges that hang
    lease = CountingLease()
    _, plugin, ids = await world(wire, clock, 40, lease=lease, refresh_concurrency=4)
    wire.delay = 0.0
    await hit_all(plugin, ids[:20])  # cached, then due
    clock.now += 3600 - 60 - 100
    wire.delay = 5.0
    await hit_all(plugin, ids[:20])  # 4 background refreshes running, 16 queued
    # ... and users whose own Microsoft token must be refreshed first (a shared, shielded
    # refresh that must not outlive aclose either)
    stale = [(await seed_user(plugin.auth, expires_at=clock.now + 100))["id"] for _ in range(5)]
    callers = [
        asyncio.ensure_future(plugin.get_obo_token(user_id=u, application_name="graph"))
        for u in [*ids[20:], *stale]
    ]
    await asyncio.sleep(0.05)
    assert lease.held > 0
    mine = asyncio.all_tasks() - {asyncio.current_task()}
    await plugin.aclose()
    await asyncio.sleep(0.1)
    assert [t for t in mine if not t.done()] == []  # nothing of ours still runs
    assert lease.held == 0
    assert len(plugin._background) == 0 and plugin._background.queued == 0
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "closed" in str(o) for o in outcomes)
    with pytest.raises(RuntimeError, match="closed"):
        await plugin.get_obo_token(user_id=ids[30], application_name="graph")
    served = await plugin.get_obo_token(user_id=ids[0], application_name="graph")
    assert served["accessToken"]  # memory still serves, and starts nothing
    assert len(plugin._background) == 0


# --- many tenants ----------------------------------------------------------------------


async def test_token_endpoint_clients_are_bounded_across_tenants() -> None:
    """Multi-tenant: one client (and throttle scope) per tenant endpoint, in an LRU."""
    clock = Clock()
    wire = WireEntra(clock=clock)
    tenants = 1_050
    with pytest.warns(OBOConfigurationWarning, match="organizations"):
        _, plugin, _ = await world(wire, clock, 0, microsoft=provider(tenant_id="organizations"))
    auth = plugin.auth
    ids = []
    for _ in range(tenants):
        tid, oid = str(uuid.uuid4()), str(uuid.uuid4())
        token = make_jwt(aud=CLIENT_ID, tid=tid, iss=f"{AUTHORITY}/{tid}/v2.0", oid=oid,
                         scp="access_as_user", azp=str(uuid.uuid4()))  # fmt: skip
        assert jwt.decode(token, options={"verify_signature": False})["tid"] == tid
        ids.append((await seed_user(auth, token=token, expires_at=clock.now + 3600))["id"])
    await hit_all(plugin, ids)
    assert len({r["url"] for r in wire.exchanges}) == tenants  # each to its own tenant
    assert plugin._engine is not None and len(plugin._engine._clients) == 1_000
    await plugin.aclose()


# --- the review's cases ----------------------------------------------------------------


def test_a_failure_streak_ends_with_its_incident() -> None:
    from better_auth_obo._background import BackgroundRefresh

    clock = Clock()
    background: BackgroundRefresh[str] = BackgroundRefresh(clock=clock, jitter=lambda: 0.5)

    async def fail(key: str) -> None:
        raise EntraUnavailableError("down")

    async def scenario() -> list[float]:
        pauses = []
        for _ in range(6):
            background.start("k", fail)
            await background.join()
            pauses.append(background._failed["k"][0] - clock.now)
            clock.now += pauses[-1]
        clock.now += 6 * 3600  # hours later, one failure again
        background.start("k", fail)
        await background.join()
        pauses.append(background._failed["k"][0] - clock.now)
        return pauses

    pauses = asyncio.run(scenario())
    assert pauses[:6] == [15.0, 30.0, 60.0, 120.0, 240.0, 300.0]
    assert pauses[6] == 15.0  # a new incident starts a new streak


async def test_a_cancelled_refresh_does_not_start_the_queued_ones() -> None:
    from better_auth_obo._background import BackgroundRefresh

    background: BackgroundRefresh[str] = BackgroundRefresh(concurrency=1)
    started: list[str] = []

    async def work(key: str) -> None:
        started.append(key)
        await asyncio.sleep(10)

    background.start("a", work)
    background.start("b", work)
    await asyncio.sleep(0)
    assert (len(background), background.queued) == (1, 1)
    for task in list(background._tasks.values()):  # as the loop's teardown does
        task.cancel()
    await asyncio.sleep(0.01)
    assert started == ["a"] and len(background) == 0
    await background.aclose()


async def test_a_key_revoked_while_queued_is_not_refreshed() -> None:
    clock = Clock()
    wire = WireEntra(clock=clock, lifetime=3600)
    _, plugin, ids = await world(wire, clock, 3, refresh_concurrency=1)
    await hit_all(plugin, ids)
    clock.now += 3600 - 60 - 100
    await hit_all(plugin, ids)  # re-read from the rows: due from now on
    wire.delay = 0.2
    exchanges = len(wire.exchanges)
    await hit_all(plugin, ids)  # one refresh runs, two wait
    assert (len(plugin._background), plugin._background.queued) == (1, 2)
    await plugin.revoke_obo_tokens(ids[2])
    await plugin._background.join()
    assert len(wire.exchanges) - exchanges == 2  # the revoked key's queued refresh was skipped
    await plugin.aclose()
