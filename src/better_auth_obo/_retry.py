"""When to try a token request again, and which callers must wait before they may.

``RetryPolicy`` decides the delay before each retry: bounded exponential backoff with
full jitter, or Entra's ``Retry-After`` when it sent one. ``ThrottleMemory`` remembers,
per caller key (e.g. one user and one application), until when Entra asked that caller
to wait, so a throttled key fails fast without a request while every other key goes on.

Why not stamina or tenacity: the deadline here is measured with the client's injected
clock (tests never sleep), a ``Retry-After`` longer than the cap must end the call at
once rather than be shortened, and the throttling memory is per key. MSAL Python keys its
throttling by client id and scopes, so one user's 429 is replayed to every user for up
to an hour (peers.md, pain 12); that is exactly what this module must not do.

Microsoft's guidance: "Handling error codes in your application" (reference-error-codes:
retry on ``temporarily_unavailable``, honour ``Retry-After`` on 429) and RFC 9110 §10.2.3.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import timezone
from typing import NamedTuple, TypeVar

import httpx

from ._errors import EntraUnavailableError

__all__ = [
    "MAX_RETRY_AFTER",
    "MAX_THROTTLED_KEYS",
    "NO_RETRY",
    "Attempt",
    "RetryPolicy",
    "ThrottleMemory",
    "parse_retry_after",
    "run_attempts",
]

T = TypeVar("T")

logger = logging.getLogger("better_auth_obo")

#: Longest wait honoured from ``Retry-After`` (RFC 9110 §10.2.3), in seconds.
MAX_RETRY_AFTER = 300.0
#: Throttled keys remembered at most; the oldest are dropped first.
MAX_THROTTLED_KEYS = 10_000
_SWEEP_INTERVAL = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry a token request that Entra could not answer.

    Retried: network errors, timeouts, HTTP 5xx, 429 and ``temporarily_unavailable``.
    Never retried: an OAuth error such as ``invalid_grant`` (retrying cannot help).

    Example::

        EntraClient(..., retry=RetryPolicy(attempts=4, deadline=20.0))

    ``attempts`` counts every request (``attempts=1``: no retry). Before retry *n* the
    client waits ``jitter() * min(max_backoff, backoff * 2 ** (n - 1))`` seconds (full
    jitter), or the ``Retry-After`` Entra sent when that is at most ``retry_after_cap``;
    a longer ``Retry-After`` ends the call at once with ``EntraUnavailableError``
    carrying it. ``deadline`` bounds the whole call, waits included (seconds of the
    client's clock); numeric timeouts are shortened to what is left of it.
    """

    attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 2.0
    retry_after_cap: float = 5.0
    deadline: float = 15.0
    #: Returns a fraction in [0, 1): the share of the backoff to wait. Tests pin it.
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, not {type(self.attempts).__name__}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        for name in ("backoff", "max_backoff", "retry_after_cap", "deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, not {value!r}")
            if math.isnan(value) or value < 0 or (name == "deadline" and value == 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not callable(self.jitter):
            raise TypeError("jitter must be a callable returning a float in [0, 1)")

    def delay(self, *, attempt: int, retry_after: float | None, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now.

        ``attempt`` is the number of the attempt that just failed (1 for the first),
        ``elapsed`` the seconds spent since the call began.

        Example::

            RetryPolicy(jitter=lambda: 0.5).delay(attempt=1, retry_after=None, elapsed=0.0)
            # 0.1
        """
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            if retry_after > self.retry_after_cap:
                return None  # waiting that long inside a request is worse than failing now
            wait = retry_after
        else:
            ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            wait = ceiling * min(max(float(self.jitter()), 0.0), 1.0)
        if elapsed + wait >= self.deadline:
            return None
        return wait

    def remaining(self, elapsed: float) -> float:
        """Seconds left of the deadline."""
        return self.deadline - elapsed


#: One attempt, no waiting: ``EntraClient(retry=None)``.
NO_RETRY = RetryPolicy(attempts=1, deadline=math.inf)


class _Throttled(NamedTuple):
    until: float
    status_code: int | None
    trace_id: str | None
    correlation_id: str | None


class ThrottleMemory:
    """Until when Entra asked each caller key to wait; bounded, entries expire.

    Example::

        memory = ThrottleMemory()
        memory.note(("user-1", "graph"), error, now=clock())
        memory.check(("user-1", "graph"), now=clock())  # raises EntraUnavailableError
        memory.check(("user-2", "graph"), now=clock())  # returns: another key
    """

    def __init__(self, *, maxsize: int = MAX_THROTTLED_KEYS) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, not {maxsize!r}")
        self._maxsize = maxsize
        self._entries: OrderedDict[Hashable, _Throttled] = OrderedDict()
        self._swept = -math.inf  # when expired entries were last swept out

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, key: Hashable | None, *, now: float, what: str = "request") -> None:
        """Raise ``EntraUnavailableError`` while ``key`` must still wait; else return.

        ``what`` names the grant in the log line (the key itself is never logged)."""
        if key is None:
            return
        entry = self._entries.get(key)
        if entry is None:
            return
        remaining = entry.until - now
        if remaining <= 0:
            del self._entries[key]
            return
        logger.info(
            "entra %s throttled attempt=0 status=%s retry_after=%.1f trace_id=%s "
            "correlation_id=%s (no request sent)",
            what, entry.status_code, remaining, entry.trace_id, entry.correlation_id,
        )  # fmt: skip
        raise EntraUnavailableError(
            f"Entra ID asked this caller to wait (HTTP {entry.status_code}); no request was "
            f"sent; retry after {remaining:.0f} s",
            retry_after=remaining,
            status_code=entry.status_code,
            trace_id=entry.trace_id,
            correlation_id=entry.correlation_id,
        )

    def note(self, key: Hashable | None, error: EntraUnavailableError, *, now: float) -> None:
        """Remember ``error.retry_after`` for ``key`` (nothing without a key or a wait)."""
        if key is None or not error.retry_after or error.retry_after <= 0:
            return
        entry = _Throttled(
            now + error.retry_after, error.status_code, error.trace_id, error.correlation_id
        )
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self._maxsize and now - self._swept >= _SWEEP_INTERVAL:
            # At most once a second: during a throttling incident every call notes a 429,
            # and a sweep on each of them made the cost of a call grow with the memory.
            self._swept = now
            self._expire(now)
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)  # the least recently throttled

    def forget(self, key: Hashable | None) -> None:
        """Entra answered ``key``: whatever it said before no longer holds."""
        if key is not None:
            self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        for key in [k for k, entry in self._entries.items() if entry.until <= now]:
            del self._entries[key]


@dataclass(slots=True)
class Attempt:
    """One attempt of a call, as its log line and the retry loop see it."""

    number: int  # 1 for the first
    began: float  # the clock when the call began: the deadline counts from it
    timeout: float | httpx.Timeout | None
    label: str | None = None  # the credential's label, when there are several
    delay: float | None = None  # set when it failed and is worth retrying: the wait first


async def run_attempts(
    once: Callable[[Attempt], Awaitable[T]],
    *,
    policy: RetryPolicy,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    timeout: float | httpx.Timeout | None,
    throttles: ThrottleMemory,
    key: Hashable | None,
) -> T:
    """Call ``once`` until it returns, raises anything but ``EntraUnavailableError``, or
    leaves ``attempt.delay`` unset (the policy gave up). Throttling is noted per ``key``;
    an OAuth error passes straight through and is never remembered (no negative cache)."""
    began = clock()
    number = 1
    while True:
        elapsed = 0.0 if number == 1 else clock() - began
        attempt = Attempt(number, began, _shortened(timeout, policy, elapsed))
        try:
            result = await once(attempt)
        except EntraUnavailableError as exc:
            throttles.note(key, exc, now=clock())
            if attempt.delay is None:
                raise _gave_up(exc, number) from exc.__cause__
            await sleep(attempt.delay)
            number += 1
            continue
        throttles.forget(key)
        return result


def _shortened(
    timeout: float | httpx.Timeout | None, policy: RetryPolicy, elapsed: float
) -> float | httpx.Timeout | None:
    # A number of seconds is cut to what is left of the deadline; an httpx.Timeout is kept.
    if isinstance(timeout, (int, float)) and math.isfinite(policy.deadline):
        return max(min(float(timeout), policy.remaining(elapsed)), 0.05)
    return timeout


def _gave_up(exc: EntraUnavailableError, attempts: int) -> EntraUnavailableError:
    """The error after the last attempt: the last answer's status, wait and ids."""
    if attempts == 1:
        return exc
    return EntraUnavailableError(
        f"{exc.message} (after {attempts} attempts)",
        retry_after=exc.retry_after,
        status_code=exc.status_code,
        trace_id=exc.trace_id,
        correlation_id=exc.correlation_id,
    )


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3), capped at 300.

    Accepts delay-seconds (``"120"``) or an HTTP-date; ``None`` when absent or unparsable.

    Example::

        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=time.time())
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(text) if len(text) <= 6 else MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
