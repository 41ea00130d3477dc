"""Proactive refresh: re-exchange a token in steady use shortly before it enters the buffer.

Callers keep getting the current token from memory while a background task fetches the
next (stale-while-revalidate), so nobody waits on the network at expiry.

Under incidents it must not add load of its own:
- at most ``concurrency`` refreshes run at once; further due keys wait in a queue (each key
  once: a key already running or queued is not queued again), bounded like the cache;
- a failed refresh pauses its key: ``retry_after`` seconds after the first failure,
  doubling with each failure in a row up to ``max_pause``, each pause spread by a random
  factor in [0.5, 1.5) so that keys that failed together (an outage) do not come back
  together; the memory is as large as the cache (a smaller one let most of 30,000 failing
  keys retry at once), and a paused key is not started again on every hit;
- ``aclose()`` is final: it cancels what runs and drops what waits, and nothing starts after.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

from ._cache import cancel_all

__all__ = ["DEFAULT_REFRESH_CONCURRENCY", "BackgroundRefresh"]

logger = logging.getLogger("better_auth_obo")

K = TypeVar("K", bound=Hashable)

#: Background refreshes running at once, by default.
DEFAULT_REFRESH_CONCURRENCY = 32


class BackgroundRefresh(Generic[K]):
    """At most ``concurrency`` background refreshes at once, one per key; remembers failures.

    Example::

        background = BackgroundRefresh(concurrency=32, max_keys=10_000)
        background.start(("user-1", "graph"), refresh)  # returns at once
        await background.aclose()  # on shutdown
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        retry_after: float = 15.0,
        max_pause: float = 300.0,
        concurrency: int = DEFAULT_REFRESH_CONCURRENCY,
        max_keys: int = 10_000,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"refresh_concurrency must be an int >= 1, not {concurrency!r}")
        self._clock = clock
        self._retry_after = retry_after
        self._max_pause = max_pause
        self._jitter = jitter
        self._concurrency = concurrency
        self._max_keys = max(1, max_keys)
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self._queue: OrderedDict[K, Callable[[K], Awaitable[None]]] = OrderedDict()
        # key -> (paused until, failures in a row)
        self._failed: OrderedDict[K, tuple[float, int]] = OrderedDict()
        self._closed = False

    def __len__(self) -> int:
        """Background tasks running now (never more than ``concurrency``)."""
        return len(self._tasks)

    @property
    def queued(self) -> int:
        """Due keys waiting for a free slot."""
        return len(self._queue)

    def start(self, key: K, work: Callable[[K], Awaitable[None]]) -> None:
        """Run ``work(key)`` in the background, now or when a slot frees; nothing if the key
        is running, queued, failed less than ``retry_after`` ago, or this was closed."""
        if self._closed or key in self._tasks or key in self._queue:
            return
        failed = self._failed.get(key)
        if failed is not None and self._clock() < failed[0]:
            return  # paused (kept until it succeeds: the next failure pauses longer)
        self._queue[key] = work
        while len(self._queue) > self._max_keys:
            self._queue.popitem(last=False)  # the longest waiting: it is asked again when due
        self._drain()

    def succeeded(self, key: K) -> None:
        """The key was served fresh another way: its failure streak is over."""
        self._failed.pop(key, None)

    def _drain(self) -> None:
        while self._queue and not self._closed and len(self._tasks) < self._concurrency:
            key, work = self._queue.popitem(last=False)
            task = asyncio.ensure_future(self._run(key, work))
            self._tasks[key] = task
            task.add_done_callback(partial(self._finished, key))

    def _finished(self, key: K, task: asyncio.Task[None]) -> None:
        self._tasks.pop(key, None)
        if not task.cancelled():  # cancelled: shutting down (aclose, or the loop's end)
            self._drain()

    async def _run(self, key: K, work: Callable[[K], Awaitable[None]]) -> None:
        try:
            await work(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            until, streak = self._failed.get(key, (0.0, 0))
            if self._clock() - until > self._max_pause:
                streak = 0  # an old streak: this is a new incident
            streak += 1
            pause = min(self._max_pause, self._retry_after * 2 ** (streak - 1))
            pause *= 0.5 + min(max(float(self._jitter()), 0.0), 1.0)
            self._failed[key] = (self._clock() + pause, streak)
            self._failed.move_to_end(key)
            while len(self._failed) > self._max_keys:
                self._failed.popitem(last=False)  # the least recently failed
            logger.warning("background refresh of an OBO token failed (%s)", type(exc).__name__)
        else:
            self._failed.pop(key, None)

    async def join(self) -> None:
        """Wait until every task running or queued now has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def aclose(self) -> None:
        """Drop what waits, cancel and await what runs; nothing starts afterwards."""
        self._closed = True
        self._queue.clear()
        await cancel_all(self._tasks.values())
