"""Timing helpers: per-call samples, percentiles, and an event-loop lag probe."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """Per-call latencies in microseconds."""

    p50: float
    p99: float
    samples: int


def timing(nanos: list[int]) -> Timing:
    ordered = sorted(nanos)
    n = len(ordered)
    return Timing(ordered[n // 2] / 1000, ordered[min(n - 1, n * 99 // 100)] / 1000, n)


async def time_async(call: Callable[[T], Awaitable[Any]], args: Iterable[T]) -> Timing:
    """Time ``await call(arg)`` once per arg (the GC stays on, as in production)."""
    gc.collect()
    clock = time.perf_counter_ns
    nanos = []
    for arg in args:
        t0 = clock()
        await call(arg)
        nanos.append(clock() - t0)
    return timing(nanos)


def time_sync(call: Callable[[T], Any], args: Iterable[T]) -> Timing:
    gc.collect()
    clock = time.perf_counter_ns
    nanos = []
    for arg in args:
        t0 = clock()
        call(arg)
        nanos.append(clock() - t0)
    return timing(nanos)


class LoopLagProbe:
    """Wakes every ``interval`` s and records how late it woke: the longest loop stall."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLagProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - due)
