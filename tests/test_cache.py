"""L1 token cache and single-flight: pure, driven by a fake clock and events, never by sleeps."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from better_auth_obo._cache import SingleFlight, TokenCache


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- SingleFlight ---


class Gated:
    """Work that counts its calls and finishes (or fails) only once the gate opens."""

    def __init__(self, result: Any = 42, error: Exception | None = None) -> None:
        self.gate = asyncio.Event()
        self.calls = 0
        self.result = result
        self.error = error

    async def __call__(self) -> Any:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.result


async def test_concurrent_callers_share_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    work = Gated(42)
    waiters = [asyncio.create_task(flight.run("k", work)) for _ in range(100)]
    await asyncio.sleep(0)
    assert len(flight) == 1
    work.gate.set()
    assert await asyncio.gather(*waiters) == [42] * 100
    assert work.calls == 1
    assert len(flight) == 0


async def test_different_keys_run_separately() -> None:
    flight: SingleFlight[tuple[str, str], str] = SingleFlight()
    gate = asyncio.Event()

    async def work(value: str) -> str:
        await gate.wait()
        return value

    a = asyncio.create_task(flight.run(("u", "a"), lambda: work("a")))
    b = asyncio.create_task(flight.run(("u", "b"), lambda: work("b")))
    await asyncio.sleep(0)
    assert len(flight) == 2
    gate.set()
    assert await asyncio.gather(a, b) == ["a", "b"]


async def test_exception_goes_to_every_waiter() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    work = Gated(error=LookupError("boom"))
    waiters = [asyncio.create_task(flight.run("k", work)) for _ in range(10)]
    await asyncio.sleep(0)
    work.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert work.calls == 1
    assert all(isinstance(r, LookupError) for r in results)
    assert len({id(r) for r in results}) == 1


async def test_key_is_free_once_done() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await flight.run("k", work) == 1
    assert await flight.run("k", work) == 2
    assert len(flight) == 0

    async def fail() -> int:
        raise ValueError("once")

    with pytest.raises(ValueError, match="once"):
        await flight.run("k", fail)
    assert await flight.run("k", work) == 3


async def test_cancelling_one_waiter_does_not_cancel_the_work() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Gated("token")
    first = asyncio.create_task(flight.run("k", work))
    second = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    work.gate.set()
    assert await second == "token"
    assert work.calls == 1


async def test_work_finishes_when_every_waiter_is_cancelled() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    done = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        done.set()
        raise RuntimeError("nobody is listening")

    waiter = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(flight) == 1  # still in flight: a new caller would join it
    gate.set()
    await done.wait()
    await asyncio.sleep(0)
    assert len(flight) == 0
    gc.collect()  # an unretrieved exception would be reported here (warnings are errors)


async def test_late_caller_joins_work_in_flight() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    work = Gated(1)
    first = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    late = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    work.gate.set()
    assert (await first, await late) == (1, 1)
    assert work.calls == 1


async def test_fn_may_return_any_awaitable() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(7)
    assert await flight.run("k", lambda: future) == 7


# --- TokenCache ---


def make_cache(clock: Clock, **kwargs: Any) -> TokenCache[str]:
    options: dict[str, Any] = {"buffer": 60.0, "revalidate_after": 30.0, "clock": clock}
    return TokenCache(**(options | kwargs))


def test_hit_then_miss_at_the_buffer() -> None:
    clock = Clock()
    cache = make_cache(clock, revalidate_after=float("inf"))
    cache.put("u", "graph", "t1", expires_at=clock.now + 3600)
    assert cache.get("u", "graph") == "t1"
    clock.now += 3600 - 60 - 0.001
    assert cache.get("u", "graph") == "t1"
    clock.now += 0.001  # exactly expires_at - buffer: no longer fresh
    assert cache.get("u", "graph") is None
    assert len(cache) == 0  # a stale entry is dropped


def test_revalidation_bound() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put("u", "graph", "t1", expires_at=clock.now + 3600)
    clock.now += 29.9
    assert cache.get("u", "graph") == "t1"
    clock.now += 0.1
    assert cache.get("u", "graph") is None
    cache.put("u", "graph", "t2", expires_at=clock.now + 3600)  # revalidated and stored again
    assert cache.get("u", "graph") == "t2"


def test_put_of_a_token_inside_the_buffer_is_not_kept() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put("u", "graph", "old", expires_at=clock.now + 3600)
    cache.put("u", "graph", "nearly-expired", expires_at=clock.now + 60)
    assert cache.get("u", "graph") is None
    assert len(cache) == 0


def test_clock_going_backwards_never_extends_past_the_deadline() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put("u", "graph", "t1", expires_at=clock.now + 3600)
    clock.now -= 1000
    assert cache.get("u", "graph") == "t1"
    clock.now += 1000 + 30
    assert cache.get("u", "graph") is None


def test_lru_eviction() -> None:
    clock = Clock()
    cache = make_cache(clock, max_entries=3)
    for app in "abc":
        cache.put("u", app, app, expires_at=clock.now + 3600)
    assert cache.get("u", "a") == "a"  # touch: b is now the least recently used
    cache.put("u", "d", "d", expires_at=clock.now + 3600)
    assert len(cache) == 3
    assert cache.get("u", "b") is None
    assert [cache.get("u", app) for app in "acd"] == ["a", "c", "d"]
    cache.put("u", "a", "a2", expires_at=clock.now + 3600)  # overwrite: no eviction
    assert len(cache) == 3
    assert cache.get("u", "a") == "a2"


def test_eviction_keeps_the_user_index_right() -> None:
    clock = Clock()
    cache = make_cache(clock, max_entries=2)
    cache.put("u1", "a", "1a", expires_at=clock.now + 3600)
    cache.put("u2", "a", "2a", expires_at=clock.now + 3600)
    cache.put("u2", "b", "2b", expires_at=clock.now + 3600)  # evicts u1/a
    cache.discard("u1")
    assert len(cache) == 2
    cache.discard("u2")
    assert len(cache) == 0


def test_discard_one_key_or_every_key_of_a_user() -> None:
    clock = Clock()
    cache = make_cache(clock)
    for user in ("u1", "u2"):
        for app in ("graph", "api"):
            cache.put(user, app, f"{user}-{app}", expires_at=clock.now + 3600)
    cache.discard("u1", "graph")
    assert cache.get("u1", "graph") is None
    assert cache.get("u1", "api") == "u1-api"
    cache.discard("u2")
    assert cache.get("u2", "graph") is None
    assert cache.get("u2", "api") is None
    assert len(cache) == 1
    cache.discard("nobody")
    cache.discard("nobody", "graph")
    cache.discard("u1", "api")
    cache.discard("u1")  # the index was emptied with its last key
    assert len(cache) == 0


def test_clear() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put("u", "a", "x", expires_at=clock.now + 3600)
    cache.clear()
    assert len(cache) == 0
    assert cache.get("u", "a") is None
    cache.discard("u")


def test_values_may_be_any_object() -> None:
    clock = Clock()
    cache: TokenCache[dict[str, str]] = TokenCache(clock=clock)
    row = {"accessToken": "t"}
    cache.put("u", "a", row, expires_at=clock.now + 3600)
    assert cache.get("u", "a") is row


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_entries": 0}, ValueError, "max_entries"),
        ({"max_entries": 1.5}, TypeError, "max_entries"),
        ({"max_entries": True}, TypeError, "max_entries"),
        ({"buffer": -1}, ValueError, "buffer"),
        ({"buffer": float("inf")}, ValueError, "buffer"),
        ({"buffer": float("nan")}, ValueError, "buffer"),
        ({"buffer": "60"}, TypeError, "buffer"),
        ({"revalidate_after": 0}, ValueError, "revalidate_after"),
        ({"revalidate_after": -5}, ValueError, "revalidate_after"),
        ({"revalidate_after": None}, TypeError, "revalidate_after"),
        ({"clock": 5}, TypeError, "clock"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TokenCache(**kwargs)


@pytest.mark.parametrize(
    ("expires_at", "error"),
    [("soon", TypeError), (None, TypeError), (True, TypeError), (float("nan"), ValueError)],
)
def test_put_validation(expires_at: Any, error: type[Exception]) -> None:
    cache: TokenCache[str] = TokenCache()
    with pytest.raises(error, match="expires_at"):
        cache.put("u", "a", "x", expires_at=expires_at)


def test_huge_expiry_is_bounded_by_revalidation() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put("u", "a", "x", expires_at=10**400)
    assert cache.get("u", "a") == "x"
    clock.now += 30
    assert cache.get("u", "a") is None


# --- shutdown and short lifetimes (issue 15 review) ------------------------------------


async def test_a_waiters_own_cancellation_stays_a_cancellation() -> None:
    from better_auth_obo._cache import FlightClosed

    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 1

    mine = asyncio.ensure_future(flight.run("k", work))
    other = asyncio.ensure_future(flight.run("k", work))
    await asyncio.sleep(0)
    mine.cancel()
    await asyncio.gather(mine, return_exceptions=True)
    assert mine.cancelled()  # not turned into anything else
    await flight.aclose()
    with pytest.raises(FlightClosed):  # the shared work was closed: not the waiter's cancel
        await other


async def test_cancel_all_lets_the_callers_own_cancellation_through() -> None:
    from better_auth_obo._cache import cancel_all

    async def slow_to_unwind() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.5)

    task = asyncio.ensure_future(slow_to_unwind())
    await asyncio.sleep(0)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(cancel_all([task]), 0.05)
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


def test_a_short_lived_token_is_due_while_still_in_memory() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(buffer=60, revalidate_after=3600, refresh_ahead=120,
                                        clock=clock)  # fmt: skip
    cache.put("u", "a", "t", expires_at=clock.now + 120, issued_at=clock.now)  # 2 × buffer
    assert cache.lookup("u", "a") == ("t", False)
    clock.now += 59.5
    assert cache.lookup("u", "a") == ("t", True)  # due before it leaves memory at +60
