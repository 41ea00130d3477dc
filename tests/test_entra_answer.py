"""What Entra answers is checked before it is cached, and secrets are scrubbed in every spelling.

The exchange client over ``httpx.MockTransport`` (as in test_entra.py), one plugin-level
test over the wire double, and the scrubbing of form- and percent-encoded secrets.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from better_auth import APIError
from better_auth.adapters.base import Where
from tests._fakes import CLIENT_ID as WIRE_CLIENT_ID
from tests._fakes import WireEntra, make_jwt, provider, seed_user
from tests._leaks import LeakScan, register
from tests.conftest import MakeAuth

from better_auth_obo import OBOPlugin
from better_auth_obo import _entra_response as entra_response
from better_auth_obo._assertion import GRAPH_APP_ID, GRAPH_RESOURCE, read_claims
from better_auth_obo._entra import EntraClient, client_secret_authenticator
from better_auth_obo._entra_response import names_other_resource, scrub
from better_auth_obo._errors import EntraError

NOW = 1_700_000_000.0
TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT_ID = "22222222-2222-2222-2222-222222222222"
API_GUID = "33333333-aaaa-4bbb-8ccc-333333333333"
OTHER_GUID = "44444444-bbbb-4ccc-8ddd-444444444444"
ENDPOINT = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
SECRET = "Qx8Q~answer.secret-value_1234567890abcdefgh"
ASSERTION = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJhcGk6Ly9taWRkbGUifQ.c2lnbmF0dXJlLWJ5dGVz"
REFRESH = "1.AXEAopaque-refresh-token-value-answer-0123"
SCOPES = ["api://downstream/read"]
GRAPH_SCOPES = ["https://graph.microsoft.com/.default"]
GRAPH_CLOUDS = [
    "https://graph.microsoft.com",
    "https://graph.microsoft.com/",
    GRAPH_APP_ID,
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
]
register(SECRET, REFRESH)

Make = Callable[..., EntraClient]


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def jwt_token(header: dict[str, Any] | None = None, **claims: Any) -> str:
    """An unsigned-looking JWT (nothing here verifies signatures), registered as a secret."""
    payload = {
        "ver": "2.0",
        "tid": TENANT,
        "azp": CLIENT_ID,
        "scp": "read",
        "uti": uuid.uuid4().hex,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    head = header or {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    token = f"{_b64(head)}.{_b64(payload)}.c2lnbmF0dXJlLXZhbHVl"
    register(token)
    return token


def answer(**fields: Any) -> httpx.Response:
    body = {"token_type": "Bearer", "expires_in": 3600, "access_token": "EwB4A8l6BAAUopaque0123"}
    body.update(fields)
    return httpx.Response(200, json={k: v for k, v in body.items() if v is not None})


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    clients: list[httpx.AsyncClient] = []

    def build(response: httpx.Response, secret: str = SECRET, **kwargs: Any) -> EntraClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response))
        clients.append(http)
        return EntraClient(
            http=http,
            token_endpoint=ENDPOINT,
            client_id=CLIENT_ID,
            authenticate=client_secret_authenticator(CLIENT_ID, secret, **kwargs),
            clock=lambda: NOW,
        )

    yield build
    for http in clients:
        await http.aclose()


async def refused(client: EntraClient, scopes: list[str], *, refresh: bool = False) -> EntraError:
    call = client.refresh(REFRESH, scopes) if refresh else client.exchange(ASSERTION, scopes)
    with pytest.raises(EntraError) as info:
        await call
    exc = info.value
    assert type(exc) is EntraError
    assert (exc.reason, exc.error, exc.status_code) == ("invalid_response", "invalid_response", 200)
    return exc


# --- 1. token_type ---


@pytest.mark.parametrize("refresh", [False, True], ids=["obo", "refresh"])
@pytest.mark.parametrize(
    ("token_type", "message"),
    [
        ("MAC", "token_type 'MAC' other than Bearer"),
        ("pop", "token_type 'pop' other than Bearer"),
        ("Bearerx", "other than Bearer"),
        ("x" * 40, "token_type other than Bearer"),  # too long to show
        (None, "without a token_type"),
        ("", "without a token_type"),
    ],
)
async def test_a_token_type_other_than_bearer_is_refused(
    make: Make, token_type: str | None, message: str, refresh: bool
) -> None:
    exc = await refused(make(answer(token_type=token_type)), SCOPES, refresh=refresh)
    assert message in str(exc)


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
async def test_bearer_in_any_case_is_accepted(make: Make, token_type: str) -> None:
    result = await make(answer(token_type=token_type)).exchange(ASSERTION, SCOPES)
    assert result.token_type == token_type


# --- 5. control characters and white space ---


@pytest.mark.parametrize("refresh", [False, True], ids=["obo", "refresh"])
@pytest.mark.parametrize("field", ["access_token", "refresh_token", "id_token", "token_type"])
@pytest.mark.parametrize(
    "bad", ["\r\n", "\n", "\x00", "\t", " ", "\x7f", "\x85", "\u2028"], ids=repr
)
async def test_control_characters_in_a_token_field_are_refused(
    make: Make, field: str, bad: str, refresh: bool
) -> None:
    value = "Bearer" if field == "token_type" else "EwB4A8l6BAAUtoken-value-0123"
    tainted = value[:3] + bad + value[3:]
    exc = await refused(make(answer(**{field: tainted})), SCOPES, refresh=refresh)
    assert f"a {field} that contains control characters or white space" in str(exc)
    assert value[3:] not in str(exc)
    assert value[3:] not in json.dumps(exc.to_extra())


# --- 2. the granted scope ---


@pytest.mark.parametrize(
    ("requested", "scope"),
    [
        (SCOPES, "https://evil.example/.default"),
        (SCOPES, "api://downstream/read https://evil.example/read"),
        (SCOPES, "api://other/read"),
        (SCOPES, "User.Read"),  # a bare name is a Graph scope
        (SCOPES, f"{GRAPH_APP_ID}/User.Read"),
        (GRAPH_SCOPES, "api://downstream/read"),
        (GRAPH_SCOPES, f"{OTHER_GUID}/.default"),
        ([f"{API_GUID}/.default"], f"api://{OTHER_GUID}/read"),
        ([f"api://{API_GUID}/read"], f"{OTHER_GUID}/read"),
    ],
)
async def test_scopes_for_another_resource_are_refused(
    make: Make, requested: list[str], scope: str
) -> None:
    exc = await refused(make(answer(scope=scope)), requested)
    assert "with scopes for another resource" in str(exc)


async def test_the_refused_scope_is_named_only_when_it_is_resource_shaped(make: Make) -> None:
    exc = await refused(make(answer(scope="https://evil.example/.default")), SCOPES)
    assert "('https://evil.example') than the one requested (api://downstream)" in str(exc)
    secretish = f"https://evil.example/{jwt_token(aud='x')[:90]}/read"
    exc = await refused(make(answer(scope=secretish)), SCOPES)
    assert "(not shown)" in str(exc)


@pytest.mark.parametrize(
    ("requested", "scope"),
    [
        (SCOPES, "api://downstream/read openid profile email offline_access"),
        (SCOPES, "API://Downstream/read"),
        (SCOPES, f"{API_GUID}/read"),  # may be the API's client id: cannot tell, accepted
        (GRAPH_SCOPES, "User.Read Mail.Read openid profile email"),
        (GRAPH_SCOPES, "https://graph.microsoft.com/User.Read"),
        (GRAPH_SCOPES, f"{GRAPH_APP_ID}/User.Read"),
        ([f"{API_GUID}/.default"], f"api://{API_GUID}/read"),
        ([f"api://{API_GUID}/.default"], f"{API_GUID.upper()}/read"),
        (["openid", "profile"], "https://evil.example/read"),  # nothing to compare with
        (SCOPES, None),  # Entra may omit the scope: the requested ones are kept
        (SCOPES, "  "),
    ],
)
async def test_scopes_for_the_requested_resource_pass(
    make: Make, requested: list[str], scope: str | None
) -> None:
    result = await make(answer(scope=scope)).exchange(ASSERTION, requested)
    assert result.scopes == (tuple(scope.split()) if scope and scope.strip() else tuple(requested))


# --- 3. the access token's audience ---


@pytest.mark.parametrize(
    ("requested", "aud"),
    [
        # (a) Graph requested, another audience
        (GRAPH_SCOPES, "api://downstream"),
        (GRAPH_SCOPES, OTHER_GUID),
        # (b) an API requested, a Graph token
        *((SCOPES, graph) for graph in GRAPH_CLOUDS),
        # (c) an API named by its GUID, another audience
        ([f"api://{API_GUID}/read"], OTHER_GUID),
        ([f"api://{API_GUID}/read"], f"api://{OTHER_GUID}"),
        ([f"api://{API_GUID}/read"], "https://contoso.example/api"),
        ([f"{API_GUID}/.default"], "https://evil.example"),
        # (d) a custom URI requested, another URI
        (SCOPES, "api://other"),
        (SCOPES, "https://evil.example"),
        (["https://contoso.example/api/read"], "https://contoso.example/other"),
    ],
)
async def test_an_access_token_for_another_audience_is_refused(
    make: Make, requested: list[str], aud: str
) -> None:
    token = jwt_token(aud=aud)
    exc = await refused(make(answer(access_token=token)), requested)
    assert "with an access token for another audience" in str(exc)
    assert token not in str(exc)


@pytest.mark.parametrize(
    ("requested", "aud"),
    [
        *((GRAPH_SCOPES, graph) for graph in GRAPH_CLOUDS),
        (["User.Read"], GRAPH_RESOURCE),
        (SCOPES, "api://downstream"),  # v1 token: aud is the App ID URI as requested
        (SCOPES, "API://Downstream/"),
        (SCOPES, OTHER_GUID),  # v2 token: aud is the API's client id, not mappable here
        (["https://contoso.example/api/read"], "https://contoso.example/api"),
        (["https://contoso.example/api/read"], API_GUID),
        ([f"api://{API_GUID}/read"], API_GUID),
        ([f"api://{API_GUID}/read"], API_GUID.upper()),
        ([f"{API_GUID}/.default"], f"api://{API_GUID}"),
        (SCOPES, ["api://other", "api://downstream"]),  # several audiences: not judged
        (SCOPES, None),
    ],
)
async def test_an_access_token_for_the_requested_resource_passes(
    make: Make, requested: list[str], aud: Any
) -> None:
    token = jwt_token(aud=aud)
    result = await make(answer(access_token=token)).exchange(ASSERTION, requested)
    assert result.access_token == token


@pytest.mark.parametrize(
    "token",
    [
        "EwB4A8l6BAAUopaque-access-token-0123456789",  # opaque (Graph for MSA accounts)
        "opaque.two-segments",
        "eyJ.not-base64-json.sig",
        f"{_b64({'alg': 'none'})}.{base64.urlsafe_b64encode(b'[1,2]').decode()}.sig",
    ],
)
async def test_an_unreadable_access_token_is_allowed(make: Make, token: str) -> None:
    result = await make(answer(access_token=token)).exchange(ASSERTION, SCOPES)
    assert result.access_token == token


async def test_a_graph_token_with_a_nonce_in_its_header_passes(make: Make) -> None:
    header = {"typ": "JWT", "nonce": "p6Xj0HfVGuDAe5kXmO0b3FvOzE", "alg": "RS256", "kid": "k1"}
    token = jwt_token(header, aud=GRAPH_APP_ID, scp="User.Read", ver="1.0", appid=CLIENT_ID)
    result = await make(answer(access_token=token, scope="User.Read")).exchange(
        ASSERTION, GRAPH_SCOPES
    )
    assert result.access_token == token


@pytest.mark.parametrize("name", GRAPH_CLOUDS)
def test_graph_names_agree_with_the_assertion_reader(name: str) -> None:
    # The two lists of Graph audiences (here and in _assertion.py) must not drift apart.
    assert read_claims(jwt_token(aud=name)).is_graph
    assert not names_other_resource(name, GRAPH_RESOURCE)
    assert names_other_resource(name, "api://downstream")


@pytest.mark.parametrize(
    ("name", "requested", "other"),
    [
        ("https://graph.microsoft.us", GRAPH_RESOURCE, False),
        ("api://downstream", GRAPH_RESOURCE, True),
        (GRAPH_APP_ID, "api://downstream", True),
        (API_GUID, f"api://{API_GUID}", False),
        (f"API://{API_GUID.upper()}/", API_GUID, False),
        (f"api://{API_GUID}/sub", API_GUID, True),
        ("https://contoso.example/api", API_GUID, True),
        (API_GUID, "https://contoso.example/api", False),
        ("https://contoso.example/api/", " HTTPS://Contoso.example/API ", False),
        ("https://contoso.example/other", "https://contoso.example/api", True),
        ("downstream", "https://contoso.example/api", False),  # not a URI: cannot tell
    ],
)
def test_names_other_resource(name: str, requested: str, other: bool) -> None:
    assert names_other_resource(name, requested) is other


# --- 4. an ID token in place of the access token ---


@pytest.mark.parametrize(
    ("requested", "claims"),
    [
        (SCOPES, {"aud": "api://downstream", "nonce": "n-0S6_WzA2Mj"}),  # nonce: an ID token
        (GRAPH_SCOPES, {"aud": GRAPH_RESOURCE, "scp": "User.Read", "nonce": "abc"}),
        # what Entra's v2 ID token looks like: issued to this client, no scp, no roles
        (SCOPES, {"aud": CLIENT_ID, "scp": None, "azp": None, "name": "Ada"}),
        (["https://contoso.example/api/read"], {"aud": CLIENT_ID, "scp": None}),
        (SCOPES, {"aud": CLIENT_ID, "scp": None, "ver": "1.0"}),
    ],
)
async def test_an_id_token_as_the_access_token_is_refused(
    make: Make, requested: list[str], claims: dict[str, Any]
) -> None:
    token = jwt_token(**claims)
    exc = await refused(make(answer(access_token=token)), requested)
    assert "with an ID token in place of the access token" in str(exc)


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": OTHER_GUID, "scp": None, "roles": ["Files.Read"]},  # roles, no scp
        {"aud": OTHER_GUID, "scp": None},  # another app's id: not an ID token for us
        {"aud": CLIENT_ID, "scp": "read"},  # delegated scopes: an access token
    ],
)
async def test_access_tokens_without_id_token_marks_pass(
    make: Make, claims: dict[str, Any]
) -> None:
    token = jwt_token(**claims)
    result = await make(answer(access_token=token)).exchange(ASSERTION, SCOPES)
    assert result.access_token == token


# --- the refresh grant: checks 1 and 5 only ---


async def test_a_refresh_answer_is_not_checked_for_resource_or_id_token(make: Make) -> None:
    token = jwt_token(aud=CLIENT_ID, scp=None, nonce="n")
    response = answer(access_token=token, scope="https://evil.example/read openid")
    result = await make(response).refresh(REFRESH, [f"{CLIENT_ID}/access_as_user"])
    assert result.access_token == token


# --- attacker-shaped answers, all together ---


ATTACKS: dict[str, Callable[[], dict[str, Any]]] = {
    "mac": lambda: {"token_type": "MAC"},
    "evil-scope": lambda: {"scope": "https://evil.example/.default"},
    "other-aud": lambda: {"access_token": jwt_token(aud="api://attacker-api")},
    "id-token": lambda: {"access_token": jwt_token(aud=CLIENT_ID, scp=None, nonce="n0nce")},
    "crlf-access": lambda: {"access_token": "EwB4A8l6BAAU\r\nSet-Cookie: x=y"},
    "crlf-refresh": lambda: {"refresh_token": "0.AR\r\nX-Injected: 1"},
}


@pytest.mark.parametrize("attack", ATTACKS)
async def test_attacker_shaped_answers_are_refused(make: Make, attack: str) -> None:
    await refused(make(answer(**ATTACKS[attack]())), SCOPES)


# --- nothing refused is cached (through the plugin) ---


def _bad_answers(scope: str) -> list[dict[str, Any]]:
    good = {"token_type": "Bearer", "expires_in": 3600, "scope": scope}
    graph = make_jwt(aud=GRAPH_RESOURCE, scp="User.Read")
    id_token = make_jwt(aud=WIRE_CLIENT_ID, nonce="abc")
    return [
        {**good, "token_type": "MAC", "access_token": make_jwt(aud="api://downstream", scp="r")},
        {**good, "scope": "https://evil.example/.default", "access_token": "EwB4opaque0123"},
        {**good, "access_token": graph},
        {**good, "access_token": id_token},
        {**good, "access_token": "EwB4A8l6BAAU\r\nX-Injected: 1"},
    ]


@pytest.mark.parametrize("case", range(5), ids=["mac", "scope", "aud", "id-token", "crlf"])
async def test_a_refused_answer_is_not_cached_and_the_next_is_exchanged(
    make_auth: MakeAuth, case: int
) -> None:
    wire = WireEntra()
    plugin = OBOPlugin(applications={"my-api": {"scope": ["api://downstream/.default"]}})
    auth = await make_auth(
        social_providers={"microsoft": provider()}, plugins=[plugin], http_client=wire.client()
    )
    user = await seed_user(auth)
    wire.fail_next(200, _bad_answers("api://downstream/.default")[case])

    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="my-api")
    assert info.value.code == "OBO_EXCHANGE_FAILED"
    assert info.value.extra is not None
    assert info.value.extra["reason"] == "invalid_response"
    rows = await auth.adapter.find_many("account", [Where("userId", user["id"])])
    assert [r for r in rows if r["providerId"].startswith("microsoft:")] == []

    account = await plugin.get_obo_token(user_id=user["id"], application_name="my-api")
    assert len(wire.exchanges) == 2  # the bad answer was not served from a cache
    assert read_claims(account["accessToken"]).aud == "api://downstream"


# --- secrets in every spelling (scrub) ---

ODD_SECRET = "Wz+q/9Rr=abc~x"
register(ODD_SECRET)


def every_spelling(secret: str) -> list[str]:
    fully = quote(secret, safe="")
    lower_hex = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), fully)
    return [secret, quote_plus(secret), fully, quote(secret), lower_hex]


def test_odd_secret_spellings_are_distinct() -> None:
    assert every_spelling(ODD_SECRET)[:4] == [
        "Wz+q/9Rr=abc~x",
        "Wz%2Bq%2F9Rr%3Dabc~x",
        "Wz%2Bq%2F9Rr%3Dabc~x",
        "Wz%2Bq/9Rr%3Dabc~x",
    ]


@pytest.mark.parametrize(
    "secret", [ODD_SECRET, "a b+c/d=e%f~g", "pässwörd~secret", "x~y~z-plain", SECRET]
)
def test_scrub_removes_every_spelling(secret: str) -> None:
    for spelling in [*every_spelling(secret), secret.replace("~", "%7E")]:
        text = f"AADSTS7000215: client_secret={spelling}&x=1 Trace ID: t"
        scrubbed = scrub(text, frozenset({secret}))
        assert scrubbed == "AADSTS7000215: client_secret=[redacted]&x=1 Trace ID: t", spelling


def test_scrub_removes_a_longer_secret_whole_and_leaves_other_text() -> None:
    text = "sent abc+def+ghi and abc%2Bdef, then 100% done + more"
    assert scrub(text, frozenset({"abc+def", "abc+def+ghi"})) == (
        "sent [redacted] and [redacted], then 100% done + more"
    )


@pytest.mark.parametrize("method", ["post", "basic"])
async def test_an_echoed_secret_is_in_no_spelling_in_the_error(
    make: Make, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    echoed = " ".join(f"client_secret={s}" for s in every_spelling(ODD_SECRET))
    body = {
        "error": "invalid_client",
        "error_description": f"AADSTS7000215: Invalid client secret provided. {echoed}",
        "error_codes": [7000215],
        "suberror": quote_plus(ODD_SECRET),
        "error_uri": f"https://login.microsoftonline.com/error?s={quote(ODD_SECRET, safe='')}",
    }
    client = make(httpx.Response(401, json=body), secret=ODD_SECRET, method=method)
    with pytest.raises(EntraError) as info:
        await client.exchange(ASSERTION, SCOPES)
    assert info.value.reason == "client_credential_invalid"
    texts = [str(info.value), repr(info.value), json.dumps(info.value.to_extra()), caplog.text]
    for text in texts:
        for spelling in every_spelling(ODD_SECRET):
            assert spelling.lower() not in text.lower()


async def test_an_echoed_secret_is_in_no_spelling_in_the_api_error(
    make_auth: MakeAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="better_auth_obo")
    wire = WireEntra()
    plugin = OBOPlugin(applications={"my-api": {"scope": ["api://downstream/.default"]}})
    auth = await make_auth(
        social_providers={"microsoft": provider(client_secret=ODD_SECRET)},
        plugins=[plugin],
        http_client=wire.client(),
    )
    user = await seed_user(auth)
    echoed = " ".join(f"client_secret={s}" for s in every_spelling(ODD_SECRET))
    description = f"AADSTS7000215: Invalid client secret provided. {echoed}"
    wire.fail_next(401, {"error": "invalid_client", "error_description": description})
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="my-api")
    assert wire.exchanges[0]["form"]["client_secret"] == ODD_SECRET
    extra = info.value.extra or {}
    assert extra["reason"] == "client_credential_invalid"
    texts = [str(info.value), info.value.message, json.dumps(extra), caplog.text]
    for text in texts:
        for spelling in every_spelling(ODD_SECRET):
            assert spelling.lower() not in text.lower(), spelling


def test_the_leak_scan_finds_encoded_spellings() -> None:
    scan = LeakScan()
    scan.register(ODD_SECRET, "plain-token-value-0123")
    assert "plain-token-value-0123" not in scan.encoded  # one spelling only
    for spelling in [*every_spelling(ODD_SECRET)[1:], "Wz%2bq%2f9Rr%3dabc%7Ex"]:
        scan.hits.clear()
        scan.scan("log record", f"client_secret={spelling}")
        assert len(scan.hits) == 1, spelling
    scan.hits.clear()
    scan.scan("log record", "client_secret=[redacted] Wz%2B")
    assert scan.hits == []


def test_scrub_builds_no_pattern_for_a_secret_with_one_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # JWTs and Entra refresh tokens are base64url: no encoder changes them, so the
    # plain replacement is all (scrub stays cheap for the common secrets).
    built: list[str] = []
    monkeypatch.setattr(entra_response, "_spellings", lambda s: built.append(s) or re.compile("$^"))
    secrets = frozenset({jwt_token(aud="api://x"), REFRESH, ODD_SECRET})
    scrub("100% + failed", secrets)
    assert built == [ODD_SECRET]
