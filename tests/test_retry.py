"""Retries and per-key throttling: the policy alone, then the client over MockTransport.

Time is an injected clock and an injected ``sleep`` that only advances it: nothing sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from tests.test_entra import ASSERTION, CLIENT_ID, ENDPOINT, NOW, SECRET, _load, _response, ok

from better_auth_obo._entra import EntraClient, RetryPolicy, client_secret_authenticator
from better_auth_obo._errors import EntraError, EntraUnavailableError
from better_auth_obo._retry import ThrottleMemory

SCOPES = ["api://downstream/.default"]
HALF = RetryPolicy(jitter=lambda: 0.5)  # the default policy with the jitter pinned

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class Time:
    """A clock and a ``sleep`` that advances it; records every wait."""

    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Make = Callable[..., EntraClient]


@pytest.fixture
def time_() -> Time:
    return Time()


@pytest.fixture
async def make(time_: Time) -> AsyncIterator[Make]:
    clients: list[httpx.AsyncClient] = []

    def build(handler: Handler, **kwargs: Any) -> EntraClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(http)
        options: dict[str, Any] = {
            "http": http,
            "token_endpoint": ENDPOINT,
            "client_id": CLIENT_ID,
            "authenticate": client_secret_authenticator(CLIENT_ID, SECRET),
            "clock": time_.clock,
            "sleep": time_.sleep,
            "retry": HALF,
        }
        options.update(kwargs)
        return EntraClient(**options)

    yield build
    for http in clients:
        await http.aclose()


def fixture(name: str) -> httpx.Response:
    return _response(_load(name))


def answers(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``responses`` in turn, and the requests it saw."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def busy(status: int = 503, retry_after: str | None = None) -> httpx.Response:
    headers = {"x-ms-request-id": f"trace-{status}-{retry_after}"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return httpx.Response(status, text="busy", headers=headers)


# --- the policy alone ---


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.backoff, policy.max_backoff) == (3, 0.2, 2.0)
    assert (policy.retry_after_cap, policy.deadline) == (5.0, 15.0)
    assert RetryPolicy() == RetryPolicy(jitter=lambda: 0.1)  # the jitter is not compared
    assert "jitter" not in repr(policy)


def test_backoff_is_exponential_with_full_jitter_and_bounded() -> None:
    policy = RetryPolicy(attempts=6, backoff=0.5, max_backoff=2.0, jitter=lambda: 0.5)
    delays = [policy.delay(attempt=n, retry_after=None, elapsed=0.0) for n in range(1, 7)]
    assert delays == [0.25, 0.5, 1.0, 1.0, 1.0, None]
    top = RetryPolicy(jitter=lambda: 0.999)
    assert top.delay(attempt=1, retry_after=None, elapsed=0.0) == pytest.approx(0.1998)
    none = RetryPolicy(jitter=lambda: 0.0)
    assert none.delay(attempt=1, retry_after=None, elapsed=0.0) == 0.0
    wild = RetryPolicy(jitter=lambda: 7.0)  # clamped to the ceiling
    assert wild.delay(attempt=2, retry_after=None, elapsed=0.0) == 0.4


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert HALF.delay(attempt=1, retry_after=3.0, elapsed=0.0) == 3.0
    assert HALF.delay(attempt=1, retry_after=5.0, elapsed=0.0) == 5.0
    assert HALF.delay(attempt=1, retry_after=5.5, elapsed=0.0) is None
    assert HALF.delay(attempt=1, retry_after=0.0, elapsed=0.0) == 0.0


def test_the_deadline_bounds_the_waits() -> None:
    assert HALF.delay(attempt=1, retry_after=3.0, elapsed=11.9) == 3.0
    assert HALF.delay(attempt=1, retry_after=3.0, elapsed=12.0) is None
    assert HALF.delay(attempt=1, retry_after=None, elapsed=14.95) is None
    assert HALF.remaining(4.0) == 11.0


def test_one_attempt_never_retries() -> None:
    assert RetryPolicy(attempts=1).delay(attempt=1, retry_after=None, elapsed=0.0) is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 2.0}, TypeError),
        ({"attempts": True}, TypeError),
        ({"backoff": -0.1}, ValueError),
        ({"max_backoff": float("nan")}, ValueError),
        ({"retry_after_cap": "5"}, TypeError),
        ({"deadline": 0}, ValueError),
        ({"jitter": 0.5}, TypeError),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RetryPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RetryPolicy().attempts = 5  # type: ignore[misc]


# --- retries in the client ---


@pytest.mark.parametrize(
    "failure",
    [
        busy(503),
        busy(500),
        busy(502),
        busy(504),
        fixture("server_error_503"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
    ],
)
async def test_transient_failures_are_retried_with_backoff(
    make: Make, time_: Time, failure: httpx.Response | Exception
) -> None:
    handler, seen = answers(failure, failure, ok())
    result = await make(handler).exchange(ASSERTION, SCOPES)
    assert result.access_token == "eyJ.at.sig"
    assert len(seen) == 3
    assert time_.sleeps == [0.1, 0.2]  # jitter 0.5 of 0.2 s, then of 0.4 s


async def test_each_attempt_is_a_new_request(make: Make) -> None:
    credentials: list[str] = []
    secret_auth = client_secret_authenticator(CLIENT_ID, SECRET)

    async def authenticate(body: dict[str, str], headers: dict[str, str], grant: str) -> None:
        credentials.append(grant)
        await secret_auth(body, headers, grant)

    handler, seen = answers(busy(), ok())
    await make(handler, authenticate=authenticate).exchange(ASSERTION, SCOPES)
    ids = {r.headers["client-request-id"] for r in seen}
    assert len(ids) == 2
    assert len(credentials) == 2  # a client assertion would be signed afresh
    assert seen[0].content == seen[1].content


async def test_retry_after_is_waited_exactly(make: Make, time_: Time) -> None:
    handler, seen = answers(busy(429, "3"), ok())
    await make(handler).exchange(ASSERTION, SCOPES)
    assert time_.sleeps == [3.0]
    assert len(seen) == 2


async def test_temporarily_unavailable_is_retried_after_its_retry_after(
    make: Make, time_: Time
) -> None:
    handler, seen = answers(fixture("temporarily_unavailable"), ok())
    with pytest.raises(EntraUnavailableError) as info:  # Retry-After: 7 is above the cap
        await make(handler).exchange(ASSERTION, SCOPES)
    assert info.value.retry_after == 7.0
    assert (len(seen), time_.sleeps) == (1, [])
    handler, seen = answers(fixture("temporarily_unavailable"), ok())
    await make(handler, retry=RetryPolicy(retry_after_cap=10.0)).exchange(ASSERTION, SCOPES)
    assert time_.sleeps == [7.0]


async def test_retry_after_above_the_cap_fails_at_once(make: Make, time_: Time) -> None:
    handler, seen = answers(fixture("throttled_429_text"), ok())
    with pytest.raises(EntraUnavailableError) as info:
        await make(handler).exchange(ASSERTION, SCOPES)
    assert (info.value.status_code, info.value.retry_after) == (429, 60.0)
    assert "retry after 60 s" in str(info.value)
    assert (len(seen), time_.sleeps) == (1, [])


async def test_after_the_last_attempt_the_last_answer_is_reported(make: Make, time_: Time) -> None:
    handler, seen = answers(busy(500), busy(502), busy(503, "1"))
    with pytest.raises(EntraUnavailableError) as info:
        await make(handler).exchange(ASSERTION, SCOPES)
    error = info.value
    assert len(seen) == 3
    assert time_.sleeps == [0.1, 0.2]
    assert (error.status_code, error.retry_after) == (503, 1.0)
    assert error.trace_id == "trace-503-1"
    assert error.correlation_id == seen[-1].headers["client-request-id"]
    assert "after 3 attempts" in str(error)
    assert error.to_extra()["retryAfter"] == 1.0


async def test_the_last_network_error_is_the_cause(make: Make) -> None:
    last = httpx.ConnectError("refused again")
    handler, _ = answers(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), last)
    with pytest.raises(EntraUnavailableError) as info:
        await make(handler).exchange(ASSERTION, SCOPES)
    assert info.value.__cause__ is last
    assert info.value.status_code is None


@pytest.mark.parametrize(
    "name",
    [
        "consent_required_65001",
        "expired_assertion_500133",
        "invalid_secret_7000215",
        "claims_challenge_50079",
        "unknown_app_700016",
        "blocked_by_ca_53003",
    ],
)
async def test_oauth_errors_are_never_retried(make: Make, time_: Time, name: str) -> None:
    handler, seen = answers(fixture(name), ok())
    with pytest.raises(EntraError):
        await make(handler).exchange(ASSERTION, SCOPES)
    assert (len(seen), time_.sleeps) == (1, [])


async def test_invalid_responses_are_not_retried(make: Make) -> None:
    handler, seen = answers(httpx.Response(200, text="<html>"), ok())
    with pytest.raises(EntraError) as info:
        await make(handler).exchange(ASSERTION, SCOPES)
    assert info.value.reason == "invalid_response"
    assert len(seen) == 1


async def test_a_400_is_never_remembered(make: Make) -> None:
    # MSAL Python caches a 400 for 60 s (peers.md, pain 12): consent granted a moment
    # later must work on the very next call.
    handler, seen = answers(fixture("consent_required_65001"), ok())
    client = make(handler)
    with pytest.raises(EntraError):
        await client.exchange(ASSERTION, SCOPES, key="user-a")
    await client.exchange(ASSERTION, SCOPES, key="user-a")
    assert len(seen) == 2


@pytest.mark.parametrize("retry", [None, RetryPolicy(attempts=1)])
async def test_retries_can_be_disabled(make: Make, time_: Time, retry: RetryPolicy | None) -> None:
    handler, seen = answers(busy(503), ok())
    with pytest.raises(EntraUnavailableError) as info:
        await make(handler, retry=retry).exchange(ASSERTION, SCOPES)
    assert (len(seen), time_.sleeps) == (1, [])
    assert "attempts" not in str(info.value)


async def test_the_deadline_stops_retries_and_shortens_timeouts(make: Make, time_: Time) -> None:
    timeouts: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        time_.now += 6.0  # each request takes 6 s of the 15 s budget
        return busy(503)

    with pytest.raises(EntraUnavailableError):
        await make(slow, retry=RetryPolicy(attempts=10, jitter=lambda: 0.5)).exchange(
            ASSERTION, SCOPES
        )
    # 6 s, wait 0.1, 6 s, wait 0.2, 6 s: at 18.3 s the budget is spent.
    assert time_.sleeps == [0.1, 0.2]
    assert timeouts == pytest.approx([10.0, 8.9, 2.7])


async def test_an_httpx_timeout_object_is_kept(make: Make) -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok()

    await make(handler, timeout=httpx.Timeout(20.0, connect=3.0)).exchange(ASSERTION, SCOPES)
    assert seen[0]["connect"] == 3.0
    assert seen[0]["read"] == 20.0


async def test_refresh_is_retried_too(make: Make, time_: Time) -> None:
    handler, seen = answers(busy(503), ok())
    await make(handler).refresh("0.AR-refresh-token-value", SCOPES, key="user-a")
    assert len(seen) == 2
    assert time_.sleeps == [0.1]


async def test_log_lines_carry_attempt_and_retry_delay(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    handler, _ = answers(busy(503), busy(429, "2"), ok())
    await make(handler).exchange(ASSERTION, SCOPES)
    ours = [r for r in caplog.records if r.name == "better_auth_obo"]
    first, second, done = (r.getMessage() for r in ours)
    assert "entra obo failed status=503 attempt=1" in first
    assert "retry_in=0.100" in first
    assert "entra obo failed status=429 attempt=2" in second
    assert "retry_in=2.000" in second
    assert "entra obo ok status=200 attempt=3" in done
    for text in (first, second, done):
        assert SECRET not in text
        assert ASSERTION not in text


async def test_the_final_failure_logs_no_retry(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    handler, _ = answers(fixture("throttled_429_text"))
    with pytest.raises(EntraUnavailableError):
        await make(handler).exchange(ASSERTION, SCOPES)
    [record] = [r for r in caplog.records if r.name == "better_auth_obo"]
    assert "attempt=1" in record.getMessage()
    assert "retry_in=-" in record.getMessage()


# --- per-key throttling ---


async def test_a_throttled_key_fails_fast_and_other_keys_go_through(
    make: Make, time_: Time
) -> None:
    handler, seen = answers(fixture("throttled_429_text"), ok(), ok())
    client = make(handler)
    with pytest.raises(EntraUnavailableError):
        await client.exchange(ASSERTION, SCOPES, key=("user-a", "graph"))
    time_.now += 20
    with pytest.raises(EntraUnavailableError) as info:
        await client.exchange(ASSERTION, SCOPES, key=("user-a", "graph"))
    assert len(seen) == 1  # no request for user A
    assert info.value.retry_after == 40.0
    assert info.value.status_code == 429
    assert "no request was sent" in str(info.value)
    # User B, and user A for another application, are not held back (MSAL's flaw).
    await client.exchange(ASSERTION, SCOPES, key=("user-b", "graph"))
    await client.exchange(ASSERTION, SCOPES, key=("user-a", "files"))
    assert len(seen) == 3


async def test_the_wait_ends_when_retry_after_has_passed(make: Make, time_: Time) -> None:
    handler, seen = answers(fixture("throttled_429_text"), ok())
    client = make(handler)
    with pytest.raises(EntraUnavailableError):
        await client.exchange(ASSERTION, SCOPES, key="user-a")
    time_.now += 60
    await client.exchange(ASSERTION, SCOPES, key="user-a")
    assert len(seen) == 2


async def test_without_a_key_nothing_is_remembered(make: Make) -> None:
    handler, seen = answers(fixture("throttled_429_text"), ok())
    client = make(handler)
    with pytest.raises(EntraUnavailableError):
        await client.exchange(ASSERTION, SCOPES)
    await client.exchange(ASSERTION, SCOPES)
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("answer", "remembered"),
    [
        (busy(503, "30"), True),
        (busy(500, "30"), True),
        (fixture("temporarily_unavailable"), True),
        (busy(503), False),
        (busy(429), False),
        (httpx.ConnectError("refused"), False),
    ],
)
async def test_what_is_remembered(
    make: Make, answer: httpx.Response | Exception, remembered: bool
) -> None:
    handler, seen = answers(answer, ok())
    client = make(handler, retry=None)
    with pytest.raises(EntraUnavailableError):
        await client.exchange(ASSERTION, SCOPES, key="user-a")
    if remembered:
        with pytest.raises(EntraUnavailableError):
            await client.exchange(ASSERTION, SCOPES, key="user-a")
        assert len(seen) == 1
    else:
        await client.exchange(ASSERTION, SCOPES, key="user-a")
        assert len(seen) == 2


async def test_refresh_shares_the_memory_by_key(make: Make) -> None:
    handler, seen = answers(busy(429, "30"), ok())
    client = make(handler)
    with pytest.raises(EntraUnavailableError):
        await client.refresh("0.AR-refresh-token-value", SCOPES, key="user-a")
    with pytest.raises(EntraUnavailableError):
        await client.exchange(ASSERTION, SCOPES, key="user-a")
    assert len(seen) == 1


async def test_same_key_callers_fail_fast_while_one_waits_out_retry_after(
    make: Make, time_: Time
) -> None:
    handler, seen = answers(busy(429, "3"), ok())
    during: list[float | None] = []

    async def sleep(seconds: float) -> None:
        # While the first caller waits, a second caller with the same key does not
        # send a request of its own.
        with pytest.raises(EntraUnavailableError) as info:
            await client.exchange(ASSERTION, SCOPES, key="user-a")
        during.append(info.value.retry_after)
        await time_.sleep(seconds)

    client = make(handler, sleep=sleep)
    await client.exchange(ASSERTION, SCOPES, key="user-a")
    assert during == [3.0]
    assert len(seen) == 2


async def test_a_success_clears_the_key(make: Make, time_: Time) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)  # the clock does not move: the 3 s are not over

    handler, seen = answers(busy(429, "3"), ok(), ok())
    client = make(handler, sleep=sleep)
    await client.exchange(ASSERTION, SCOPES, key="user-a")
    await client.exchange(ASSERTION, SCOPES, key="user-a")  # Entra answered: not held back
    assert (len(seen), waits) == (3, [3.0])


async def test_unhashable_key_is_refused_before_any_request(make: Make) -> None:
    client = make(lambda r: pytest.fail("no request expected"))
    with pytest.raises(TypeError, match="hashable"):
        await client.exchange(ASSERTION, SCOPES, key=["user-a"])


def test_the_memory_is_bounded_and_entries_expire() -> None:
    memory = ThrottleMemory(maxsize=3)
    error = EntraUnavailableError("busy", retry_after=10.0, status_code=429)
    for n in range(5):
        memory.note(f"user-{n}", error, now=NOW + n)
    assert len(memory) == 3
    memory.check("user-0", now=NOW + 5)  # dropped: the oldest went first
    with pytest.raises(EntraUnavailableError):
        memory.check("user-4", now=NOW + 5)
    # Once full, expired entries go before live ones.
    memory.note("user-5", error, now=NOW + 12.5)  # user-2 expired at NOW + 12
    assert len(memory) == 3
    with pytest.raises(EntraUnavailableError):
        memory.check("user-3", now=NOW + 12.5)
    memory.check("user-3", now=NOW + 13)  # expired: removed on read
    assert len(memory) == 2


def test_the_memory_ignores_no_key_and_no_wait() -> None:
    memory = ThrottleMemory()
    memory.note(None, EntraUnavailableError(retry_after=10.0), now=NOW)
    memory.note("user-a", EntraUnavailableError(), now=NOW)
    memory.note("user-b", EntraUnavailableError(retry_after=0.0), now=NOW)
    assert len(memory) == 0
    memory.check(None, now=NOW)
    memory.forget(None)
    with pytest.raises(ValueError, match="maxsize"):
        ThrottleMemory(maxsize=0)
