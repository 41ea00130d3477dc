"""The in-process L1 token cache and per-key single-flight. Pure: no I/O, injected clock.

Both live on one event loop and need no locks: every method here runs without an
``await`` between reading and writing shared state.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from ._config import seconds_option

__all__ = ["FlightClosed", "SingleFlight", "TokenCache", "cancel_all"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Concurrent callers with the same key share one call of the work.

    The result, or the exception, goes to every caller waiting at that time. A caller
    that is cancelled stops waiting; the shared work goes on for the others. Once the
    work is done the key is free: the next call runs the work anew.

    Example::

        flight: SingleFlight[tuple[str, str], str] = SingleFlight()
        token = await flight.run((user_id, app), lambda: exchange(user_id, app))
    """

    __slots__ = ("_closing", "_tasks")

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self._closing = False

    def __len__(self) -> int:
        """How many keys have work in flight."""
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel all work in flight and wait until it has unwound. Its waiters get
        ``FlightClosed`` (not a CancelledError, which would read as their own)."""
        self._closing = True
        await cancel_all(self._tasks.values())

    async def run(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        """Await ``fn()`` once per key among concurrent callers and share its outcome."""
        task = self._tasks.get(key)
        if task is None or task.done():  # done: only if cancelled before it ever ran
            task = asyncio.ensure_future(self._work(key, fn))
            self._tasks[key] = task
            task.add_done_callback(_retrieve)
        # shield: cancelling this waiter must not cancel the work the others wait on.
        return await asyncio.shield(task)

    async def _work(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        try:
            return await fn()
        except asyncio.CancelledError:
            if self._closing:  # cancelled by aclose(): say so to the waiters
                raise FlightClosed() from None
            raise
        finally:
            # Free the key before the task is marked done, so no caller can join a finished task.
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]


class FlightClosed(Exception):
    """The shared work was cancelled because its ``SingleFlight`` was closed."""


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until each has unwound (its ``finally`` blocks ran).

    A cancellation of the caller itself still propagates (``asyncio.wait`` does not
    swallow it); the tasks' own outcomes are read, so none is reported as unretrieved.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()


def _retrieve(task: asyncio.Task[object]) -> None:
    # When every waiter was cancelled nobody reads the outcome; mark it retrieved so
    # asyncio does not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()


class TokenCache(Generic[V]):
    """A bounded LRU of tokens keyed by ``(user_id, application)``, with two freshness bounds.

    An entry is served while ``clock() < expires_at - buffer`` (the token is still
    good for at least ``buffer`` seconds) and for at most ``revalidate_after`` seconds
    after it was stored, so a token revoked elsewhere (another process purged the
    row, the user signed in again) is not served from memory for long.

    Example::

        cache: TokenCache[str] = TokenCache(max_entries=10_000, buffer=60, revalidate_after=30)
        cache.put("user-1", "graph", "eyJ...", expires_at=time.time() + 3600)
        cache.get("user-1", "graph")  # 'eyJ...'
    """

    __slots__ = (
        "_ahead",
        "_buffer",
        "_by_user",
        "_clock",
        "_counter",
        "_entries",
        "_floor",
        "_generations",
        "_max",
        "_revalidate",
    )

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        buffer: float = 60.0,
        revalidate_after: float = 30.0,
        refresh_ahead: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise TypeError(f"max_entries must be an int, not {type(max_entries).__name__}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        _check_seconds("buffer", buffer, allow_inf=False)
        _check_seconds("revalidate_after", revalidate_after, allow_inf=True)
        if revalidate_after == 0:
            raise ValueError("revalidate_after must be more than 0 seconds")
        _check_seconds("refresh_ahead", refresh_ahead, allow_inf=False)
        if not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        self._max = max_entries
        self._buffer = float(buffer)
        self._revalidate = float(revalidate_after)
        self._ahead = float(refresh_ahead)
        self._clock = clock
        # value, the one deadline that matters: min(expires_at - buffer, stored + revalidate),
        # and when the token is due for a proactive refresh (expires_at - buffer - ahead)
        # value, served until, due for a proactive refresh from, minted at
        self._entries: OrderedDict[tuple[str, str], tuple[V, float, float, float]] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        # Purge generations: user, or (user, application) -> stamp of the last
        # invalidation. Stamps come from one counter that only grows, and a missing one
        # reads as ``_floor`` (raised when the map is cleared), so a generation taken
        # before an invalidation never matches after it, even once the map has been
        # cleared to stay bounded.
        self._generations: dict[str | tuple[str, str], int] = {}
        self._counter = 0
        self._floor = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str, application: str) -> V | None:
        """The cached value while fresh, else None (and a stale entry is dropped)."""
        found = self.lookup(user_id, application)
        return None if found is None else found[0]

    def lookup(self, user_id: str, application: str) -> tuple[V, bool] | None:
        """Like ``get``, with whether the token is due for a proactive refresh: it will
        enter the buffer within ``refresh_ahead`` seconds."""
        key = (user_id, application)
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now < entry[1]:
            self._entries.move_to_end(key)
            return entry[0], now >= entry[2]
        self._remove(key)
        return None

    def generation(self, user_id: str, application: str) -> int:
        """The key's purge generation: take it before loading, hand it to ``put``."""
        floor = self._floor
        return max(
            self._generations.get(user_id, floor),
            self._generations.get((user_id, application), floor),
        )

    def invalidate(self, user_id: str, application: str | None = None) -> None:
        """Forget the key (without ``application``: every key of the user) and move its
        generation: a value loaded before this call (``put`` with the older generation)
        is not stored."""
        self.discard(user_id, application)
        self._counter += 1
        if len(self._generations) >= _MAX_GENERATIONS:
            self._generations.clear()
            self._floor = self._counter
        self._generations[user_id if application is None else (user_id, application)] = (
            self._counter
        )

    def put(
        self,
        user_id: str,
        application: str,
        value: V,
        *,
        expires_at: float,
        generation: int | None = None,
        issued_at: float | None = None,
    ) -> None:
        """Store a value until ``expires_at - buffer``; evicts the least recently used.

        With ``generation`` (from ``generation()`` before the value was loaded), nothing
        is stored if the user was invalidated meanwhile. ``issued_at`` (default: now) is
        when the token was minted: it is never due for a proactive refresh before half
        its lifetime has passed, and it never replaces a value minted after it."""
        if generation is not None and generation != self.generation(user_id, application):
            return
        expires_at = _seconds("expires_at", expires_at)
        key = (user_id, application)
        now = self._clock()
        deadline = min(expires_at - self._buffer, now + self._revalidate)
        if deadline <= now:
            self._remove(key)  # already too close to expiry: never served, so not kept
            return
        # Never due for a proactive refresh before half its life: with tokens shorter than
        # buffer + ahead, every hit would otherwise be due at once (a refresh per hit).
        born = now if issued_at is None else min(issued_at, now)
        held = self._entries.get(key)
        if held is not None and held[3] > born:
            # A newer token is already here (a forced exchange finished first): a load that
            # read the older one before it must not bring it back.
            return
        due = max(expires_at - self._buffer - self._ahead, born + (expires_at - born) / 2)
        # ... and due while still in memory, however short-lived (it leaves at exp - buffer).
        due = min(due, expires_at - self._buffer - 1.0)
        self._entries[key] = (value, deadline, due, born)
        self._entries.move_to_end(key)
        self._by_user.setdefault(user_id, set()).add(application)
        while len(self._entries) > self._max:
            self._remove(next(iter(self._entries)))

    def discard(self, user_id: str, application: str | None = None) -> None:
        """Forget one key, or (without ``application``) every key of the user."""
        if application is not None:
            self._remove((user_id, application))
            return
        for app in self._by_user.pop(user_id, ()):
            self._entries.pop((user_id, app), None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._by_user.clear()

    def _remove(self, key: tuple[str, str]) -> None:
        if self._entries.pop(key, None) is None:
            return
        user_id, application = key
        apps = self._by_user.get(user_id)
        if apps is not None:
            apps.discard(application)
            if not apps:
                del self._by_user[user_id]


#: Users whose generation is remembered; past it the map is cleared (see ``invalidate``).
_MAX_GENERATIONS = 100_000


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    return seconds


def _check_seconds(name: str, value: object, *, allow_inf: bool) -> None:
    seconds_option(name, value, allow_inf=allow_inf)
