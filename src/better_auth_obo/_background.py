"""Proactive refresh: re-exchange a token in steady use shortly before it enters the buffer.

Callers keep getting the current token from memory while one background task per key
fetches the next (stale-while-revalidate), so nobody waits on the network at expiry.
A failed attempt is not retried for ``retry_after`` seconds, so a key in use during an
outage does not start a task on every hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BackgroundRefresh"]

logger = logging.getLogger("better_auth_obo")

K = TypeVar("K", bound=Hashable)


class BackgroundRefresh(Generic[K]):
    """At most one background task per key; remembers recent failures."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, retry_after: float = 15.0
    ) -> None:
        self._clock = clock
        self._retry_after = retry_after
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self._failed: dict[K, float] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: K, work: Callable[[K], Awaitable[None]]) -> None:
        """Start ``work(key)`` unless it is running or failed less than ``retry_after`` ago."""
        if key in self._tasks:
            return
        failed = self._failed.get(key)
        if failed is not None and self._clock() - failed < self._retry_after:
            return
        task = asyncio.ensure_future(self._run(key, work))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def _run(self, key: K, work: Callable[[K], Awaitable[None]]) -> None:
        try:
            await work(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed[key] = self._clock()
            if len(self._failed) > 10_000:  # bounded: forget the oldest failures
                for old in list(self._failed)[:1_000]:
                    del self._failed[old]
            logger.warning("background refresh of an OBO token failed (%s)", type(exc).__name__)
        else:
            self._failed.pop(key, None)

    async def join(self) -> None:
        """Wait until every task running now has finished."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel and await every running task."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
