"""The exchange client against httpx.MockTransport: exact wire form, classification, odd answers."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from better_auth_obo._entra import (
    CLIENT_ASSERTION_TYPE_JWT,
    GRANT_TYPE_JWT_BEARER,
    EntraClient,
    RetryPolicy,
    TokenResult,
    client_assertion_authenticator,
    client_secret_authenticator,
    parse_retry_after,
)
from better_auth_obo._errors import (
    ConsentRequiredError,
    EntraError,
    EntraUnavailableError,
    InteractionRequiredError,
)

NOW = 1_700_000_000.0
TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT_ID = "22222222-2222-2222-2222-222222222222"
ENDPOINT = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
SECRET = "Qx8Q~super.secret-value_1234567890abcdefgh"
ASSERTION = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJhcGk6Ly9taWRkbGUifQ.c2lnbmF0dXJlLWJ5dGVz"
REFRESH = "1.AXEAopaque-refresh-token-value-0123456789"
SCOPES = ["api://downstream/read", "api://downstream/write"]
FIXTURES = Path(__file__).parent / "fixtures" / "entra_responses"
REASONS = {
    "interaction_required", "consent_required", "assertion_invalid", "client_credential_invalid",
    "configuration", "blocked_by_policy", "invalid_response", "rejected",
}  # fmt: skip
EXCEPTIONS: dict[str, type[Exception]] = {
    "EntraError": EntraError,
    "InteractionRequiredError": InteractionRequiredError,
    "ConsentRequiredError": ConsentRequiredError,
    "EntraUnavailableError": EntraUnavailableError,
}

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
Make = Callable[..., EntraClient]


def ok(**extra: Any) -> httpx.Response:
    body = {"token_type": "Bearer", "expires_in": 3600, "access_token": "eyJ.at.sig", **extra}
    return httpx.Response(200, json=body)


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode(), strict_parsing=True))


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Build an EntraClient over a MockTransport; closes the httpx clients afterwards."""
    clients: list[httpx.AsyncClient] = []

    def build(handler: Handler, **kwargs: Any) -> EntraClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(http)
        options: dict[str, Any] = {
            "http": http,
            "token_endpoint": ENDPOINT,
            "client_id": CLIENT_ID,
            "authenticate": client_secret_authenticator(CLIENT_ID, SECRET),
            "clock": lambda: NOW,
        }
        options.update(kwargs)
        return EntraClient(**options)

    yield build
    for http in clients:
        await http.aclose()


# --- the request on the wire ---


async def test_obo_request_form_and_headers(make: Make) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok()

    await make(handler).exchange(ASSERTION, SCOPES)
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == ENDPOINT
    assert form(request) == {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": ASSERTION,
        "scope": "api://downstream/read api://downstream/write",
        "requested_token_use": "on_behalf_of",
    }
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["return-client-request-id"] == "true"
    assert uuid.UUID(request.headers["client-request-id"]).version == 4
    assert "authorization" not in request.headers


async def test_refresh_request_form(make: Make) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok()

    await make(handler).refresh(REFRESH, [f"{CLIENT_ID}/access_as_user", "offline_access"])
    assert form(seen[0]) == {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "scope": f"{CLIENT_ID}/access_as_user offline_access",
    }


async def test_basic_authentication_encodes_per_rfc6749(make: Make) -> None:
    seen: list[httpx.Request] = []
    secret = "a:b+c/d=e%f~"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok()

    auth = client_secret_authenticator(CLIENT_ID, secret, method="basic")
    await make(handler, authenticate=auth).exchange(ASSERTION, SCOPES)
    scheme, _, value = seen[0].headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == f"{CLIENT_ID}:a%3Ab%2Bc%2Fd%3De%25f~"
    assert "client_secret" not in form(seen[0])
    assert form(seen[0])["client_id"] == CLIENT_ID


@pytest.mark.parametrize("is_async", [False, True])
async def test_client_assertion_authenticator_fetches_a_new_assertion_per_request(
    make: Make, is_async: bool
) -> None:
    seen: list[dict[str, str]] = []
    issued = iter(["eyJa.first.sig", "eyJa.second.sig"])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(form(request))
        return ok()

    async def async_get() -> str:
        return next(issued)

    getter: Callable[[], Any] = async_get if is_async else (lambda: next(issued))
    client = make(handler, authenticate=client_assertion_authenticator(CLIENT_ID, getter))
    await client.exchange(ASSERTION, SCOPES)
    await client.exchange(ASSERTION, SCOPES)
    assert [s["client_assertion"] for s in seen] == ["eyJa.first.sig", "eyJa.second.sig"]
    assert seen[0]["client_assertion_type"] == CLIENT_ASSERTION_TYPE_JWT
    assert seen[0]["client_id"] == CLIENT_ID
    assert "client_secret" not in seen[0]


async def test_client_assertion_must_be_a_string(make: Make) -> None:
    client = make(lambda r: ok(), authenticate=client_assertion_authenticator(CLIENT_ID, dict))
    with pytest.raises(TypeError, match="client assertion"):
        await client.exchange(ASSERTION, SCOPES)


async def test_request_ids_are_fresh_and_timeout_is_passed(make: Make) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok()

    client = make(handler, timeout=3.5)
    await client.exchange(ASSERTION, SCOPES)
    await client.exchange(ASSERTION, SCOPES)
    assert seen[0].headers["client-request-id"] != seen[1].headers["client-request-id"]
    assert seen[0].extensions["timeout"] == {
        "connect": 3.5,
        "read": 3.5,
        "write": 3.5,
        "pool": 3.5,
    }


async def test_http_factory_is_resolved_on_every_call() -> None:
    calls = 0

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: ok())) as http:

        def factory() -> httpx.AsyncClient:
            nonlocal calls
            calls += 1
            return http

        client = EntraClient(
            http=factory,
            token_endpoint=ENDPOINT,
            client_id=CLIENT_ID,
            authenticate=client_secret_authenticator(CLIENT_ID, SECRET),
        )
        assert calls == 0
        await client.exchange(ASSERTION, SCOPES)
        await client.refresh(REFRESH, SCOPES)
    assert calls == 2


# --- success ---


async def test_success_fields(make: Make) -> None:
    response = ok(
        scope="api://downstream/read",
        expires_in=4493,
        ext_expires_in=8000,
        refresh_token=REFRESH,
        id_token="eyJ.id.sig",
    )
    result = await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert result == TokenResult(
        access_token="eyJ.at.sig",
        expires_at=NOW + 4493,
        scopes=("api://downstream/read",),
        token_type="Bearer",
        refresh_token=REFRESH,
        id_token="eyJ.id.sig",
        ext_expires_at=NOW + 8000,
    )


async def test_expires_at_uses_the_clock_at_request_start(make: Make) -> None:
    ticks = iter([NOW, NOW + 50, NOW + 100])
    result = await make(lambda r: ok(), clock=lambda: next(ticks)).exchange(ASSERTION, SCOPES)
    assert result.expires_at == NOW + 3600


@pytest.mark.parametrize(
    ("extra", "scopes", "token_type"),
    [
        ({}, tuple(SCOPES), "Bearer"),
        ({"scope": "  "}, tuple(SCOPES), "Bearer"),
        ({"scope": None, "refresh_token": ""}, tuple(SCOPES), "Bearer"),
        (
            {"scope": "api://downstream/a  api://downstream/b\topenid", "token_type": "bearer"},
            ("api://downstream/a", "api://downstream/b", "openid"),
            "bearer",
        ),
        ({"expires_in": "3599"}, tuple(SCOPES), "Bearer"),  # v1 sent numeric strings
    ],
)
async def test_success_defaults(
    make: Make, extra: dict[str, Any], scopes: tuple[str, ...], token_type: str
) -> None:
    result = await make(lambda r: ok(**extra)).exchange(ASSERTION, SCOPES)
    assert result.scopes == scopes
    assert result.token_type == token_type
    assert result.refresh_token is None


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, content=b"not json"), "JSON object"),
        (httpx.Response(200, json=["a"]), "JSON object"),
        (httpx.Response(200, content=b""), "JSON object"),
        (httpx.Response(200, html="<html>Sign in</html>"), "JSON object"),
        (httpx.Response(200, json={"expires_in": 3600}), "access_token"),
        (ok(access_token=""), "access_token"),
        (ok(access_token=42), "access_token"),
        (ok(access_token=None), "access_token"),
        (ok(expires_in=None), "expires_in"),
        (ok(expires_in=-1), "expires_in"),
        (ok(expires_in="abc"), "expires_in"),
        (ok(expires_in="1e3"), "expires_in"),
        (ok(expires_in="-5"), "expires_in"),
        (ok(expires_in=True), "expires_in"),
        (ok(expires_in=[3600]), "expires_in"),
        (ok(expires_in=10 * 86400 + 1), "expires_in"),
        (httpx.Response(200, content=b'{"access_token":"x","expires_in":NaN}'), "expires_in"),
        (httpx.Response(200, content=b'{"access_token":"x","expires_in":1e999}'), "expires_in"),
        (ok(ext_expires_in="soon"), "ext_expires_in"),
        (ok(token_type=5), "token_type"),
        (ok(token_type=None), "without a token_type"),
        (ok(token_type=""), "without a token_type"),
        (httpx.Response(200, json={"access_token": "x", "expires_in": 60}), "token_type"),
        (ok(scope=["a"]), "scope"),
        (ok(refresh_token={"t": 1}), "refresh_token"),
        (ok(id_token=7), "id_token"),
    ],
)
async def test_bad_success_bodies_are_invalid_responses(
    make: Make, response: httpx.Response, message: str
) -> None:
    with pytest.raises(EntraError) as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert type(info.value) is EntraError
    assert info.value.reason == "invalid_response"
    assert info.value.error == "invalid_response"
    assert info.value.status_code == 200
    assert message in str(info.value)


# --- errors from the recorded fixtures ---


def _fixtures() -> list[Any]:
    return [pytest.param(p.stem, id=p.stem) for p in sorted(FIXTURES.glob("*.json"))]


def _response(fixture: dict[str, Any]) -> httpx.Response:
    body = fixture["body"]
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(fixture["status"], headers=fixture["headers"], content=content)


def test_the_fixtures_cover_the_catalogue() -> None:
    names = {p.stem for p in FIXTURES.glob("*.json")}
    codes = {"50079", "65001", "50013", "500131", "500133", "50027", "240002", "7000215"}
    codes |= {"7000222", "7000218", "700027", "700016", "70011", "700022", "500011", "90002"}
    codes |= {"53003", "50194", "90009"}
    assert {c for c in codes if any(n.endswith(f"_{c}") for n in names)} == codes
    assert "temporarily_unavailable" in names


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize("name", _fixtures())
async def test_classification_of_recorded_responses(make: Make, name: str) -> None:
    fixture = _load(name)
    expected = fixture["expected"]
    with pytest.raises(EXCEPTIONS[expected["exception"]]) as info:
        await make(lambda r: _response(fixture)).exchange(ASSERTION, SCOPES)
    exc = info.value
    assert type(exc) is EXCEPTIONS[expected["exception"]]
    for name, value in expected.items():
        if name == "exception":
            continue
        actual = getattr(exc, name)
        assert (list(actual) if name == "error_codes" else actual) == value, name
    if isinstance(exc, EntraError):
        assert exc.error_description == fixture["body"]["error_description"]
        assert exc.timestamp == fixture["body"]["timestamp"]
        assert exc.error_uri == fixture["body"].get("error_uri")
        assert "Trace ID" not in str(exc)  # the ids are attributes; the message stays short
        assert f"AADSTS{expected['error_codes'][0]}" in str(exc)


async def test_hints_name_the_fix(make: Make) -> None:
    fixture = _load("self_token_api_uri_90009")
    with pytest.raises(EntraError) as info:
        await make(lambda r: _response(fixture)).refresh(REFRESH, SCOPES)
    assert f"'{CLIENT_ID}/<scope>'" in str(info.value)
    assert "refresh of the user's Microsoft token" in str(info.value)


@pytest.mark.parametrize(
    ("body", "reason", "cls"),
    [
        ({"error": "invalid_grant", "claims": {"access_token": {}}}, "interaction_required", None),
        ({"error": "invalid_grant", "suberror": "additional_action"}, "interaction_required", None),
        ({"error": "interaction_required"}, "interaction_required", None),
        ({"error": "invalid_grant", "error_codes": [50158]}, "interaction_required", None),
        (
            {"error": "interaction_required", "error_codes": [53003]},
            "blocked_by_policy",
            EntraError,
        ),
        ({"error": "consent_required"}, "consent_required", None),
        ({"error": "invalid_grant", "suberror": "consent_required"}, "consent_required", None),
        ({"error": "invalid_client"}, "client_credential_invalid", EntraError),
        ({"error": "invalid_grant", "error_codes": [50012]}, "client_credential_invalid", None),
        ({"error": "unsupported_grant_type"}, "configuration", EntraError),
        ({"error": "invalid_request", "error_codes": [900144]}, "configuration", EntraError),
        ({"error": "invalid_grant", "error_codes": [70008]}, "assertion_invalid", EntraError),
        ({"error": "invalid_grant", "error_codes": [50057]}, "blocked_by_policy", EntraError),
        ({"error": "invalid_grant"}, "rejected", EntraError),
        ({"error": "invalid_grant", "error_codes": [1, 2]}, "rejected", EntraError),
        (
            {"error": "whatever", "error_description": "AADSTS500133: expired"},
            "assertion_invalid",
            None,
        ),
    ],
)
async def test_classification_rules(
    make: Make, body: dict[str, Any], reason: str, cls: type[EntraError] | None
) -> None:
    with pytest.raises(EntraError) as info:
        await make(lambda r: httpx.Response(400, json=body)).exchange(ASSERTION, SCOPES)
    assert info.value.reason == reason
    expected_cls = cls or {
        "interaction_required": InteractionRequiredError,
        "consent_required": ConsentRequiredError,
    }.get(reason, EntraError)
    assert type(info.value) is expected_cls


async def test_error_fields_are_normalized(make: Make) -> None:
    body = {
        "error": "invalid_grant",
        "error_description": "AADSTS50079: " + "x" * 5000,
        "error_codes": [50079, "70011", 1.5, True, None, 65001.0],
        "claims": {"access_token": {"acrs": {"essential": True, "value": "c1"}}},
        "trace_id": "not an id; drop table",
        "correlation_id": 12,
        "timestamp": ["2024"],
        "suberror": "",
    }
    response = httpx.Response(400, json=body, headers={"x-ms-request-id": "abc-123"})
    with pytest.raises(InteractionRequiredError) as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    exc = info.value
    assert exc.error_codes == (50079,)
    assert exc.error_description is not None
    assert len(exc.error_description) == 2000
    assert exc.error_description.endswith("…")
    assert exc.claims == '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
    assert exc.trace_id == "abc-123"  # body value is not id-shaped: the header's
    assert exc.correlation_id is not None
    assert uuid.UUID(exc.correlation_id)  # our own client-request-id
    assert exc.timestamp is None
    assert exc.suberror is None


async def test_ok_status_with_an_error_body_is_classified(make: Make) -> None:
    response = httpx.Response(200, json={"error": "invalid_grant", "error_codes": [65001]})
    with pytest.raises(ConsentRequiredError) as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert info.value.status_code == 200


# --- unavailable and throttled ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("301", 300.0),
        ("99999999999999999999999", 300.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        (email.utils.formatdate(NOW + 3600, usegmt=True), 300.0),
        ("Wed, 21 Oct 2015 07:28:00", 0.0),  # no zone: read as UTC, long past
        ("Mon, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
async def test_throttling_and_server_errors_are_unavailable(make: Make, status: int) -> None:
    date = email.utils.formatdate(NOW + 12, usegmt=True)
    response = httpx.Response(status, text="<html>busy</html>", headers={"retry-after": date})
    with pytest.raises(EntraUnavailableError) as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert info.value.status_code == status
    assert info.value.retry_after == 12.0
    assert "retry after 12 s" in str(info.value)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("closed"),
        httpx.ProxyError("proxy"),
        httpx.ReadError("reset"),
    ],
)
async def test_transport_errors_are_unavailable(make: Make, error: httpx.HTTPError) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["client-request-id"])
        raise error

    with pytest.raises(EntraUnavailableError) as info:
        await make(handler).exchange(ASSERTION, SCOPES)
    assert info.value.__cause__ is error
    assert info.value.status_code is None
    assert info.value.correlation_id == sent[0]
    assert type(error).__name__ in str(info.value)


# --- odd answers ---


async def test_redirect_is_not_followed(make: Make) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(307, headers={"location": "https://evil.example/steal"})

    with pytest.raises(EntraError) as info:
        await make(handler).exchange(ASSERTION, SCOPES)
    assert calls == 1
    assert info.value.reason == "invalid_response"
    assert info.value.status_code == 307
    assert "redirect" in str(info.value)


@pytest.mark.parametrize(
    ("response", "excerpt"),
    [
        (
            httpx.Response(400, html="<html><body><h1>Bad   Request</h1></body></html>"),
            "Bad Request",
        ),
        (httpx.Response(404, text="Not Found"), "Not Found"),
        (httpx.Response(401, content=b""), None),
        (httpx.Response(400, json={"message": "no error key"}), None),
        (httpx.Response(400, json={"error": 42}), None),
        (httpx.Response(100, content=b""), None),
        (httpx.Response(600, content=b""), None),
    ],
)
async def test_non_oauth_error_answers_are_invalid_responses(
    make: Make, response: httpx.Response, excerpt: str | None
) -> None:
    with pytest.raises(EntraError) as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert info.value.reason == "invalid_response"
    assert info.value.status_code == response.status_code
    if excerpt:
        assert excerpt in str(info.value)
        assert "<" not in str(info.value)


async def test_error_page_excerpt_is_short_and_scrubbed(make: Make) -> None:
    page = f"<p>{ASSERTION} {SECRET}</p>" + "y" * 10_000
    with pytest.raises(EntraError) as info:
        await make(lambda r: httpx.Response(400, text=page)).exchange(ASSERTION, SCOPES)
    message = str(info.value)
    assert ASSERTION not in message
    assert SECRET not in message
    assert len(message) < 400


async def test_huge_body_is_not_read_to_the_end(make: Make) -> None:
    chunks = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks
        yield b'{"access_token": "'
        while True:
            chunks += 1
            yield b"a" * 65536

    response = httpx.Response(200, content=endless())
    with pytest.raises(EntraError, match="larger than") as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert info.value.reason == "invalid_response"
    assert chunks <= 17  # 1 MiB / 64 KiB, plus the one that crossed the limit


async def test_declared_huge_body_is_refused_unread(make: Make) -> None:
    read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b"{}"

    headers = {"content-length": str(50 * 1024 * 1024)}
    response = httpx.Response(200, headers=headers, content=body())
    with pytest.raises(EntraError, match="larger than"):
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert not read


async def test_huge_error_body_still_classifies_as_unavailable(make: Make) -> None:
    response = httpx.Response(503, content=b"x" * (2 * 1024 * 1024))
    with pytest.raises(EntraUnavailableError):
        await make(lambda r: response).exchange(ASSERTION, SCOPES)


async def test_undecodable_body_is_an_invalid_response(make: Make) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"not gzip"

    response = httpx.Response(200, headers={"content-encoding": "gzip"}, content=body())
    with pytest.raises(EntraError) as info:
        await make(lambda r: response).exchange(ASSERTION, SCOPES)
    assert info.value.reason == "invalid_response"
    assert isinstance(info.value.__cause__, httpx.DecodingError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
token_fields = st.fixed_dictionaries(
    {},
    optional={
        key: json_values | st.just("3600") | st.just("eyJ.a.b")
        for key in (
            "access_token", "expires_in", "ext_expires_in", "scope", "token_type",
            "refresh_token", "id_token", "error", "error_codes", "error_description",
            "claims", "suberror", "trace_id", "correlation_id", "timestamp", "error_uri",
        )
    },
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=64),
    token_fields.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.integers(100, 599) | st.sampled_from([200, 400, 401, 429, 503]),
    body=bodies,
    retry_after=st.none()
    | st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=40),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", ""]),
)
def test_any_answer_is_a_result_or_one_of_our_errors(
    status: int, body: bytes, retry_after: str | None, content_type: str
) -> None:
    headers = [(b"content-type", content_type.encode())] if content_type else []
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode("latin-1")))

    async def run() -> TokenResult:
        response = httpx.Response(status, headers=headers, content=body)
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)) as http:
            client = EntraClient(
                http=http,
                token_endpoint=ENDPOINT,
                client_id=CLIENT_ID,
                authenticate=client_secret_authenticator(CLIENT_ID, SECRET),
                clock=lambda: NOW,
            )
            return await client.exchange(ASSERTION, SCOPES)

    outcome: TokenResult | Exception
    try:
        outcome = asyncio.run(run())
    except (EntraError, EntraUnavailableError) as exc:
        outcome = exc
    if isinstance(outcome, EntraUnavailableError):
        assert outcome.retry_after is None or 0 <= outcome.retry_after <= 300
    elif isinstance(outcome, EntraError):
        assert outcome.reason in REASONS
        assert all(type(c) is int for c in outcome.error_codes)
        assert outcome.claims is None or isinstance(outcome.claims, str)
    else:
        assert isinstance(outcome, TokenResult)
        assert 200 <= status < 300
        assert NOW <= outcome.expires_at <= NOW + 10 * 86400


# --- secrets never leak ---


async def test_no_token_or_secret_in_messages_reprs_or_logs(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    access, refresh, id_token = "eyJAT.secretaccess.tok", "0.ARsecret-refresh", "eyJID.secretid.tok"
    leaky = " ".join([ASSERTION, SECRET, REFRESH, access, refresh, id_token])
    secrets = [ASSERTION, SECRET, REFRESH, access, refresh, id_token, "secretaccess", "secretid"]
    fields = ("error", "error_description", "suberror", "claims", "timestamp", "error_uri")
    error_body: dict[str, Any] = dict.fromkeys(fields, leaky)
    error_body |= {"trace_id": ASSERTION, "correlation_id": SECRET, "error_codes": [50079]}
    error_body |= {"access_token": access, "refresh_token": refresh, "id_token": id_token}
    answers = [
        httpx.Response(200, json={"access_token": access, "expires_in": 60,
                                  "token_type": "Bearer", "refresh_token": refresh,
                                  "id_token": id_token}),
        httpx.Response(400, json=error_body),
        httpx.Response(503, json=error_body, headers={"x-ms-request-id": REFRESH}),
        httpx.Response(400, text=leaky),
        httpx.Response(200, json={"access_token": access, "expires_in": "forever"}),
    ]  # fmt: skip
    client = make(lambda r: answers.pop(0))
    seen: list[str] = [repr(client)]
    seen.append(repr(await client.exchange(ASSERTION, SCOPES)))
    for _ in range(4):
        with pytest.raises((EntraError, EntraUnavailableError)) as info:
            await client.refresh(REFRESH, SCOPES)
        exc = info.value
        seen += [str(exc), repr(exc), json.dumps(exc.to_extra())]
    seen.append(caplog.text)
    for text in seen:
        for secret in secrets:
            assert secret not in text


async def test_basic_credentials_are_scrubbed_too(make: Make) -> None:
    auth = client_secret_authenticator(CLIENT_ID, SECRET, method="basic")
    body = {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}
    client = make(lambda r: httpx.Response(401, json=body), authenticate=auth)
    with pytest.raises(EntraError) as info:
        await client.exchange(ASSERTION, SCOPES)
    assert SECRET not in str(info.value)
    assert info.value.reason == "client_credential_invalid"


async def test_one_log_line_per_request(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    fixture = _load("claims_challenge_50079")
    answers = [ok(), _response(fixture)]
    client = make(lambda r: answers.pop(0))
    await client.exchange(ASSERTION, SCOPES)
    with pytest.raises(InteractionRequiredError):
        await client.exchange(ASSERTION, SCOPES)
    success, failure = caplog.records
    assert success.levelno == logging.DEBUG
    assert success.name == "better_auth_obo"
    assert "entra obo ok status=200" in success.getMessage()
    assert failure.levelno == logging.INFO
    message = failure.getMessage()
    assert "status=400" in message
    assert "codes=50079" in message
    assert "reason=interaction_required" in message
    assert f"trace_id={fixture['body']['trace_id']}" in message
    assert f"correlation_id={fixture['body']['correlation_id']}" in message


# --- construction and arguments ---


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"token_endpoint": "http://login.microsoftonline.com/t/oauth2/v2.0/token"}, ValueError),
        ({"token_endpoint": "ftp://x/token"}, ValueError),
        ({"token_endpoint": "not a url"}, ValueError),
        ({"token_endpoint": 5}, TypeError),
        ({"client_id": ""}, ValueError),
        ({"client_id": None}, TypeError),
        ({"http": "client"}, TypeError),
        ({"authenticate": None}, TypeError),
        ({"clock": 5}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"timeout": -1.0}, ValueError),
        ({"timeout": True}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "10"}, ValueError),
        ({"retry": {"attempts": 3}}, TypeError),
        ({"sleep": 5}, TypeError),
        # several credentials: (label, authenticator) pairs, or authenticate, never both
        ({"authenticators": [("a", client_secret_authenticator(CLIENT_ID, SECRET))]}, TypeError),
        ({"authenticate": None, "authenticators": []}, ValueError),
        ({"authenticate": None, "authenticators": [("a", print), ("a", print)]}, ValueError),
        ({"authenticate": None, "authenticators": [("", print)]}, ValueError),
        ({"authenticate": None, "authenticators": [("a", None)]}, TypeError),
        ({"authenticate": None, "authenticators": ["a"]}, TypeError),
        ({"authenticate": None, "authenticators": "ab"}, TypeError),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    options: dict[str, Any] = {
        "http": lambda: None,
        "token_endpoint": ENDPOINT,
        "client_id": CLIENT_ID,
        "authenticate": client_secret_authenticator(CLIENT_ID, SECRET),
    }
    with pytest.raises(error):
        EntraClient(**(options | kwargs))


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8443/t/oauth2/v2.0/token", "http://localhost/t/token", ENDPOINT],
)
def test_loopback_http_and_https_endpoints_are_accepted(endpoint: str) -> None:
    client = EntraClient(
        http=lambda: httpx.AsyncClient(),
        token_endpoint=endpoint,
        client_id=CLIENT_ID,
        authenticate=client_secret_authenticator(CLIENT_ID, SECRET),
        timeout=None,
    )
    assert client.token_endpoint == endpoint
    assert SECRET not in repr(client)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.exchange("", SCOPES), ValueError),
        (lambda c: c.exchange(None, SCOPES), TypeError),
        (lambda c: c.exchange(ASSERTION, "api://x/.default"), TypeError),
        (lambda c: c.exchange(ASSERTION, []), ValueError),
        (lambda c: c.exchange(ASSERTION, ["a b"]), ValueError),
        (lambda c: c.exchange(ASSERTION, [""]), ValueError),
        (lambda c: c.refresh("", SCOPES), ValueError),
    ],
)
async def test_argument_validation(make: Make, call: Any, error: type[Exception]) -> None:
    client = make(lambda r: pytest.fail("no request expected"))
    with pytest.raises(error):
        await call(client)


async def test_http_factory_must_return_a_client() -> None:
    client = EntraClient(
        http=lambda: "nope",  # type: ignore[arg-type,return-value]
        token_endpoint=ENDPOINT,
        client_id=CLIENT_ID,
        authenticate=client_secret_authenticator(CLIENT_ID, SECRET),
    )
    with pytest.raises(TypeError, match="AsyncClient"):
        await client.exchange(ASSERTION, SCOPES)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("", SECRET), ValueError),
        ((CLIENT_ID, ""), ValueError),
        ((CLIENT_ID, 5), TypeError),
    ],
)
def test_secret_authenticator_validation(args: tuple[Any, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        client_secret_authenticator(*args)
    assert SECRET not in str(info.value)


def test_secret_authenticator_method_validation() -> None:
    with pytest.raises(ValueError, match="post"):
        client_secret_authenticator(CLIENT_ID, SECRET, method="jwt")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client_assertion_authenticator(CLIENT_ID, "not callable")  # type: ignore[arg-type]


def test_grant_type_constant() -> None:
    assert GRANT_TYPE_JWT_BEARER == "urn:ietf:params:oauth:grant-type:jwt-bearer"


# --- several credentials (rotation) ---

OLD_SECRET = "Old8Q~expired.secret-value_0987654321zyxw"
NEW_SECRET = "New8Q~current.secret-value_1122334455vuts"


def _by_secret(refusals: dict[str, str], seen: list[str]) -> Handler:
    """Refuse the secrets in ``refusals`` with that fixture; accept any other."""

    def handler(request: httpx.Request) -> httpx.Response:
        secret = form(request)["client_secret"]
        seen.append(secret)
        return _response(_load(refusals[secret])) if secret in refusals else ok()

    return handler


def _rotating(*secrets: str) -> list[tuple[str, Any]]:
    return [
        (f"secret-{n}", client_secret_authenticator(CLIENT_ID, s)) for n, s in enumerate(secrets)
    ]


@pytest.mark.parametrize(
    "refusal", ["expired_secret_7000222", "invalid_secret_7000215", "bad_client_assertion_700027"]
)
async def test_a_refused_credential_gives_way_to_the_next(
    make: Make, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    seen: list[str] = []
    client = make(
        _by_secret({OLD_SECRET: refusal}, seen),
        authenticate=None,
        authenticators=_rotating(OLD_SECRET, NEW_SECRET),
        retry=None,  # rotation is not a retry: it happens with one attempt too
    )
    assert client.credential == "secret-0"
    await client.exchange(ASSERTION, SCOPES)
    assert seen == [OLD_SECRET, NEW_SECRET]
    assert client.credential == "secret-1"
    await client.exchange(ASSERTION, SCOPES)  # the one that worked goes first now
    assert seen == [OLD_SECRET, NEW_SECRET, NEW_SECRET]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "credential secret-0 was refused" in warnings[0]
    assert "trying credential secret-1" in warnings[0]
    assert "secret-1 works" in warnings[1]
    for secret in (OLD_SECRET, NEW_SECRET):
        assert secret not in caplog.text
    assert "credential=secret-0" in caplog.text


async def test_when_every_credential_is_refused_the_last_error_is_raised(make: Make) -> None:
    seen: list[str] = []
    refusals = {OLD_SECRET: "expired_secret_7000222", NEW_SECRET: "invalid_secret_7000215"}
    client = make(
        _by_secret(refusals, seen),
        authenticate=None,
        authenticators=_rotating(OLD_SECRET, NEW_SECRET),
    )
    with pytest.raises(EntraError) as info:
        await client.exchange(ASSERTION, SCOPES)
    assert info.value.error_codes == (7000215,)
    assert seen == [OLD_SECRET, NEW_SECRET]
    assert client.credential == "secret-0"


@pytest.mark.parametrize(
    "refusal", ["no_credential_7000218", "consent_required_65001", "unknown_app_700016"]
)
async def test_other_errors_do_not_rotate(make: Make, refusal: str) -> None:
    seen: list[str] = []
    client = make(
        _by_secret({OLD_SECRET: refusal}, seen),
        authenticate=None,
        authenticators=_rotating(OLD_SECRET, NEW_SECRET),
    )
    with pytest.raises(EntraError):
        await client.exchange(ASSERTION, SCOPES)
    assert seen == [OLD_SECRET]


async def test_a_retry_does_not_go_back_to_a_refused_credential(make: Make) -> None:
    seen: list[str] = []
    answers = [_response(_load("expired_secret_7000222")), httpx.Response(503), ok()]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(form(request)["client_secret"])
        return answers.pop(0)

    async def no_wait(seconds: float) -> None:
        pass

    client = make(
        handler,
        authenticate=None,
        authenticators=_rotating(OLD_SECRET, NEW_SECRET),
        retry=RetryPolicy(),
        sleep=no_wait,
    )
    await client.exchange(ASSERTION, SCOPES)
    assert seen == [OLD_SECRET, NEW_SECRET, NEW_SECRET]
