"""Exchange and row counts under concurrency (the correctness half of the benchmarks).

No timings here: ``python -m benchmarks`` measures. Each test runs on every backend
(the ``database`` fixture) over the ``WireEntra`` double with a delay, so all callers
are in flight while the first exchange is.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from better_auth import BetterAuth
from better_auth.adapters.base import Where
from tests._fakes import WireEntra, provider, seed_user
from tests.conftest import MakeAuth

from better_auth_obo import OBOPlugin

API = {"scope": ["api://downstream/Files.Read"]}


async def _setup(make_auth: MakeAuth, wire: WireEntra) -> tuple[BetterAuth, OBOPlugin]:
    plugin = OBOPlugin(applications={"api": API})
    auth = await make_auth(
        social_providers={"microsoft": provider()}, plugins=[plugin], http_client=wire.client()
    )
    return auth, plugin


async def _obo_rows(auth: BetterAuth, user_ids: list[str]) -> dict[str, int]:
    counts = {}
    for user_id in user_ids:
        rows = await auth.adapter.find_many("account", [Where("userId", user_id)])
        counts[user_id] = sum(1 for r in rows if r["providerId"] == "microsoft:api")
    return counts


async def test_1000_concurrent_callers_on_one_cold_key_make_one_exchange(
    make_auth: MakeAuth,
) -> None:
    wire = WireEntra(delay=0.05)
    auth, plugin = await _setup(make_auth, wire)
    user = await seed_user(auth)

    results = await asyncio.gather(
        *(plugin.get_obo_token(user_id=user["id"], application_name="api") for _ in range(1000))
    )

    assert len(wire.exchanges) == 1
    assert len(results) == 1000
    assert {r["accessToken"] for r in results} == {results[0]["accessToken"]}
    assert await _obo_rows(auth, [user["id"]]) == {user["id"]: 1}


async def test_1000_callers_over_100_cold_keys_make_100_exchanges(make_auth: MakeAuth) -> None:
    wire = WireEntra(delay=0.05)
    auth, plugin = await _setup(make_auth, wire)
    users = [(await seed_user(auth))["id"] for _ in range(100)]
    callers = users * 10
    random.Random(7).shuffle(callers)

    results = await asyncio.gather(
        *(plugin.get_obo_token(user_id=u, application_name="api") for u in callers)
    )

    assert len(wire.exchanges) == 100
    assert sorted(r["form"]["assertion"] for r in wire.exchanges) == sorted(
        {r["form"]["assertion"] for r in wire.exchanges}
    )
    by_user: dict[str, set[str]] = {}
    for user_id, result in zip(callers, results, strict=True):
        assert result["userId"] == user_id
        by_user.setdefault(user_id, set()).add(result["accessToken"])
    assert all(len(tokens) == 1 for tokens in by_user.values())
    assert await _obo_rows(auth, users) == dict.fromkeys(users, 1)


@pytest.mark.parametrize("rounds", [3])
async def test_warm_keys_make_no_further_exchanges(make_auth: MakeAuth, rounds: int) -> None:
    wire = WireEntra()
    auth, plugin = await _setup(make_auth, wire)
    users = [(await seed_user(auth))["id"] for _ in range(10)]
    for _ in range(rounds):
        await asyncio.gather(
            *(plugin.get_obo_token(user_id=u, application_name="api") for u in users * 10)
        )
    assert len(wire.exchanges) == 10
