"""Fuzz through the whole plugin: hostile token-endpoint answers and odd arguments.

Each example builds a fresh BetterAuth on MemoryAdapter with the plugin, whose token
endpoint is an ``httpx.MockTransport`` serving the drawn answers in order (then a good
one). Whatever Entra says, ``get_obo_token`` returns a usable token or raises an
``APIError`` with one of our codes, and no bad row is ever cached.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from better_auth import APIError, BetterAuth, MemoryAdapter
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests._fakes import make_jwt, metadata_answer, provider, seed_user
from tests.conftest import SECRET

from better_auth_obo import OBO_ERROR_CODES, OBOPlugin

APPLICATIONS = {
    "graph": {"scope": ["https://graph.microsoft.com/.default"]},
    "files": {"scope": ["api://downstream/Files.Read"]},
}
MIB = 1024 * 1024


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# --- what the token endpoint may answer ----------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.just("\x00"),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
expires_in = st.one_of(
    st.integers(-(10**12), 10**12),
    st.sampled_from([0, 0.5, "0", 1, 59, 60, 61, 3599, 3600, 864_000, 864_001, 10**18, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["3600", " 3600 ", "-5", "1e3", "0x10", "", "3600.5", "99999999999"]),
    json_values,
)
access_tokens = st.one_of(
    st.builds(lambda n: make_jwt(aud="api://downstream", n=n), st.integers()),
    st.sampled_from(["", " ", "x", "\x00", "eyJ.a.b"]),
    json_values,
)
token_fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": access_tokens,
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "token_type": st.sampled_from(["Bearer", "bearer", "pop", ""]) | json_values,
        "scope": st.sampled_from(["api://downstream/Files.Read", "", " "]) | json_values,
        "refresh_token": st.sampled_from(["rt-fuzz-value-0001", ""]) | json_values,
        "id_token": json_values,
        "error": st.sampled_from(
            ["invalid_grant", "temporarily_unavailable", "interaction_required", "", "x y"]
        )
        | json_values,
        "error_codes": st.lists(st.integers(-10, 10**12) | json_values, max_size=3) | json_values,
        "error_description": st.sampled_from(["AADSTS50076: MFA.", "AADSTS9999999999: x"])
        | json_values,
        "claims": st.just('{"access_token":{"acr":{"essential":true}}}') | json_values,
        "suberror": st.sampled_from(["basic_action", "consent_required"]) | json_values,
        "trace_id": json_values,
        "correlation_id": json_values,
    },
)
good_token = {"token_type": "Bearer", "access_token": "placeholder", "expires_in": 3600}
HTML_PAGES = [
    b"<html><head><title>503 Service Unavailable</title></head><body>down</body></html>",
    b"<!DOCTYPE html><html><body><h1>Sign in</h1><form></form></body></html>",
    b"<?xml version='1.0'?><error>nope</error>",
]


@dataclass(frozen=True)
class Answer:
    """One token-endpoint answer: a status, body and headers, or a transport error."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    streamed: bool = False  # chunked, without Content-Length
    error: type[httpx.HTTPError] | None = None

    def response(self, request: httpx.Request) -> httpx.Response:
        if self.error is not None:
            raise self.error("fuzzed transport failure", request=request)
        if self.streamed:
            return httpx.Response(
                self.status, headers=list(self.headers), content=_chunks(self.body)
            )
        return httpx.Response(self.status, headers=list(self.headers), content=self.body)

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep huge bodies short
        body = (
            self.body
            if len(self.body) <= 200
            else self.body[:60] + b"...(%d bytes)" % len(self.body)
        )
        return (
            f"Answer({self.status}, {body!r}, {self.headers}, "
            f"streamed={self.streamed}, error={self.error})"
        )


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def _huge(size: int) -> bytes:
    # A valid token response padded with white space: only its size is wrong.
    text = json.dumps({**good_token, "access_token": make_jwt(aud="api://downstream")})
    return text[:-1].encode() + b" " * size + b"}"


oauth_errors = st.builds(
    lambda error, rest: {**rest, "error": error},
    st.sampled_from(
        [
            *("invalid_grant", "interaction_required", "consent_required", "invalid_client"),
            *("invalid_scope", "temporarily_unavailable", "server_error", "unauthorized_client"),
        ]
    ),
    token_fields,
)
bodies = st.one_of(
    token_fields.map(lambda d: json.dumps(d).encode()),
    oauth_errors.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(HTML_PAGES),
    st.binary(max_size=128),
    st.tuples(token_fields, st.integers(0, 200)).map(lambda t: json.dumps(t[0]).encode()[: t[1]]),
    st.sampled_from(
        [
            b'{"access_token": "\xff\xfe", "expires_in": 3600}',  # not UTF-8
            b'{"a":' * 50_000,  # nesting past the recursion limit
            b"[" * 100_000,
            b"\xef\xbb\xbf" + json.dumps(good_token).encode(),  # a byte-order mark
        ]
    ),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/html",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "",
    ]
)
extra_headers = st.lists(
    st.sampled_from(
        [
            ("retry-after", "1"),
            ("retry-after", "0"),
            ("retry-after", "-5"),
            ("retry-after", "soon"),
            ("retry-after", "99999999999"),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("content-encoding", "gzip"),
            ("location", "https://evil.example/token"),
            ("x-ms-request-id", "not an id; drop table"),
        ]
    ),
    max_size=2,
)
statuses = st.sampled_from([200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 503])
answers = st.one_of(
    st.builds(
        lambda status, body, ctype, extra: Answer(
            status, body, ((("content-type", ctype),) if ctype else ()) + tuple(extra)
        ),
        statuses | st.integers(100, 599),
        bodies,
        content_types,
        extra_headers,
    ),
    st.builds(
        lambda size, streamed, status: Answer(
            status, _huge(size), (("content-type", "application/json"),), streamed
        ),
        st.sampled_from([2 * MIB, 5 * MIB]),
        st.booleans(),
        st.sampled_from([200, 400, 503]),
    ),
    st.builds(
        lambda error: Answer(error=error),
        st.sampled_from(
            [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError]
        ),
    ),
)


# --- the harness ------------------------------------------------------------------------


@dataclass
class Endpoint:
    """Serves the drawn answers in order, then good tokens."""

    answers: list[Answer]
    served: int = 0
    sleeps: list[float] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        metadata = metadata_answer(request)  # discovery and keys: the fuzz is the token endpoint
        if metadata is not None:
            return metadata
        if self.answers:
            self.served += 1
            return self.answers.pop(0).response(request)
        scope = dict(httpx.QueryParams(request.content.decode()))["scope"]
        token = make_jwt(aud=scope.split()[0].rsplit("/", 1)[0], scp="Files.Read")
        return httpx.Response(200, json={**good_token, "access_token": token, "scope": scope})

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)  # retries wait on nothing: the fuzz stays fast


async def _world(
    endpoint: Endpoint,
    http: httpx.AsyncClient,
    *,
    users: int,
    clock: Callable[[], float] = time.time,
) -> tuple[BetterAuth, OBOPlugin, list[str]]:
    plugin = OBOPlugin(applications=APPLICATIONS, sleep=endpoint.sleep, clock=clock)
    auth = BetterAuth(
        secret=SECRET,
        base_url="http://testserver",
        adapter=MemoryAdapter(),
        social_providers={"microsoft": provider()},
        plugins=[plugin],
        http_client=http,
    )
    user_ids = [(await seed_user(auth))["id"] for _ in range(users)]
    return auth, plugin, user_ids


def _check_token(account: Any, user_id: str, application: str, started: float) -> None:
    assert isinstance(account, dict)
    assert isinstance(account["accessToken"], str) and account["accessToken"]
    expires = account["accessTokenExpiresAt"]
    assert isinstance(expires, datetime) and expires.tzinfo is not None
    assert expires.timestamp() > started, "served a token that had already expired"
    assert account["userId"] == user_id
    assert account["providerId"] == f"microsoft:{application}"


def _check_error(exc: APIError) -> None:
    assert exc.code in OBO_ERROR_CODES, exc.code
    assert exc.status == OBO_ERROR_CODES[exc.code].status
    assert isinstance(exc.message, str) and exc.message


async def _check_rows(auth: BetterAuth, started: float) -> None:
    rows = await auth.adapter.find_many("account", [])
    keys = [
        (row["userId"], row["providerId"])
        for row in rows
        if str(row.get("providerId", "")).startswith("microsoft:")
    ]
    assert len(keys) == len(set(keys)), f"duplicate cached rows: {keys}"
    for row in rows:
        if not str(row.get("providerId", "")).startswith("microsoft:"):
            continue
        assert isinstance(row["accessToken"], str) and row["accessToken"], row
        expires = row["accessTokenExpiresAt"]
        assert isinstance(expires, datetime) and expires.timestamp() > started, row


async def _call(
    plugin: OBOPlugin, user_id: str, application: str, now: Callable[[], float] = time.time
) -> None:
    started = now()
    try:
        account = await plugin.get_obo_token(user_id=user_id, application_name=application)
    except APIError as exc:
        _check_error(exc)
        event(f"{exc.code} {exc.extra.get('reason') if exc.extra else ''}")
    else:
        _check_token(account, user_id, application, started)
        event("token")


async def _outcome(call: Awaitable[Any]) -> Any:
    """The call's result, or the exception it raised if it is one the API may raise."""
    try:
        return await call
    except (TypeError, ValueError, APIError) as exc:
        return exc


def _run(main: Callable[[], Any]) -> None:
    asyncio.run(main())


# --- the properties ---------------------------------------------------------------------


@fuzz(150)
@given(drawn=st.lists(answers, min_size=1, max_size=5))
def test_any_token_endpoint_answer_gives_a_token_or_a_classified_error(
    drawn: list[Answer],
) -> None:
    endpoint = Endpoint(list(drawn))

    async def main() -> None:
        started = time.time()
        async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle)) as http:
            auth, plugin, (ada, bob) = await _world(endpoint, http, users=2)
            await _call(plugin, ada, "graph")
            await _call(plugin, ada, "graph")  # served from a cache, if anything was cached
            await asyncio.gather(_call(plugin, bob, "files"), _call(plugin, ada, "files"))
            await _call(plugin, bob, "graph")
            await plugin.aclose()
            await _check_rows(auth, started)

    _run(main)


odd_values = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.tuples(st.text(max_size=2)),
    st.text(max_size=300),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(
        ["", "\x00", "\ud800", "graph\x00", "a" * 256, "x" * 1_000_000, "ＧＲＡＰＨ", "Graph"]
    ),
)


@fuzz(150)
@given(user=odd_values | st.just("<real>"), application=odd_values | st.just("graph"))
def test_odd_arguments_raise_type_or_value_errors_or_a_lookup_error(
    user: Any, application: Any
) -> None:
    endpoint = Endpoint([])

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle)) as http:
            auth, plugin, (real,) = await _world(endpoint, http, users=1)
            user_id = real if user == "<real>" else user
            got = await _outcome(
                plugin.get_obo_token(user_id=user_id, application_name=application)
            )
            if isinstance(got, APIError):
                assert got.code in ("UNKNOWN_APPLICATION", "MICROSOFT_ACCOUNT_NOT_FOUND"), got.code
            elif not isinstance(got, (TypeError, ValueError)):
                assert (user_id, application) == (real, "graph")
            got = await _outcome(plugin.revoke_obo_tokens(user_id, application))
            if isinstance(got, APIError):
                assert got.code == "UNKNOWN_APPLICATION", got.code
            await plugin.aclose()

    _run(main)


@pytest.mark.parametrize("lifetime", [0, 0.5, "0"])
async def test_an_already_expired_answer_is_not_served(lifetime: Any) -> None:
    endpoint = Endpoint([])
    token = make_jwt(aud="api://downstream")
    body = json.dumps({**good_token, "access_token": token, "expires_in": lifetime}).encode()
    endpoint.answers.append(Answer(200, body, (("content-type", "application/json"),)))
    now = math.floor(time.time()) + 0.25  # so that now + 0.5 truncates to before now

    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle)) as http:
        auth, plugin, (ada,) = await _world(endpoint, http, users=1, clock=lambda: now)
        with pytest.raises(APIError) as info:
            await plugin.get_obo_token(user_id=ada, application_name="files")
        assert info.value.extra is not None
        assert info.value.extra["reason"] == "invalid_response"
        await _check_rows(auth, now)
