"""Calling downstream APIs as the user: ``claims`` and ``force_refresh`` on
``get_obo_token``, client capabilities (CAE), the ``http_auth`` httpx auth.

Against the emulator over real sockets, on every storage backend where the row matters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from better_auth import APIError
from better_auth.adapters.base import Where
from tests.conftest import MakeAuth
from tests.test_e2e import World, _plugin_with, sign_in, world

from better_auth_obo import OBOPlugin
from better_auth_obo._claims import challenge_claims, merge_claims, normalize_claims

__all__ = ["world"]  # the fixture, imported from test_e2e

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CP1 = {"access_token": {"xms_cc": {"values": ["cp1"]}}}


def record_token_requests(client: httpx.AsyncClient) -> list[dict[str, str]]:
    """The form of every OBO request the app's outbound client sends from now on."""
    seen: list[dict[str, str]] = []

    async def hook(request: httpx.Request) -> None:
        if request.url.path.endswith("/oauth2/v2.0/token"):
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if form.get("grant_type") == OBO_GRANT:
                seen.append(form)

    client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], hook]}
    return seen


async def _rows(world: World, user_id: str) -> list[dict[str, Any]]:
    return await world.auth.adapter.find_many(
        "account", [Where("userId", user_id), Where("providerId", "microsoft:graph")]
    )


# --- force_refresh and claims replace the cached token ---------------------------------------


async def test_force_refresh_exchanges_again_and_replaces_the_row(
    world: World, make_auth: MakeAuth
) -> None:
    user_id = await sign_in(world)
    first = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert world.exchanges() == 1
    forced = await world.plugin.get_obo_token(
        user_id=user_id, application_name="graph", force_refresh=True
    )
    assert world.exchanges() == 2
    assert forced["accessToken"] != first["accessToken"]
    # Memory and the table now hold the new token, in this process and in a new one.
    again = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert again["accessToken"] == forced["accessToken"]
    other = await _plugin_with(world, make_auth)
    fresh = await other.get_obo_token(user_id=user_id, application_name="graph")
    assert fresh["accessToken"] == forced["accessToken"]
    assert world.exchanges() == 2
    assert len(await _rows(world, user_id)) == 1  # replaced, not added


async def test_claims_are_sent_and_bypass_the_cache(world: World) -> None:
    sent = record_token_requests(world.auth.http)
    user_id = await sign_in(world)
    first = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    challenge = {"access_token": {"nbf": {"essential": True, "value": "1700000000"}}}
    got = await world.plugin.get_obo_token(
        user_id=user_id, application_name="graph", claims=json.dumps(challenge)
    )
    assert got["accessToken"] != first["accessToken"]
    assert "claims" not in sent[0]  # no capabilities configured, no challenge: none sent
    assert json.loads(sent[1]["claims"]) == challenge
    # The dict form is the same request.
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph", claims=challenge)
    assert json.loads(sent[2]["claims"]) == challenge


async def test_concurrent_identical_challenges_make_one_exchange(world: World) -> None:
    import asyncio

    user_id = await sign_in(world)
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    tokens = await asyncio.gather(
        *(
            world.plugin.get_obo_token(user_id=user_id, application_name="graph", claims=claims)
            for _ in range(8)
        )
    )
    assert len({t["accessToken"] for t in tokens}) == 1
    assert world.exchanges() == 2


async def test_client_capabilities_ride_on_every_exchange(
    world: World, make_auth: MakeAuth
) -> None:
    sent = record_token_requests(world.auth.http)
    plugin = await _plugin_with(world, make_auth, client_capabilities=["cp1"])
    user_id = await sign_in(world)
    await plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert json.loads(sent[-1]["claims"]) == CP1
    challenge = {"access_token": {"nbf": {"essential": True, "value": "1700000000"}}}
    await plugin.get_obo_token(user_id=user_id, application_name="graph", claims=challenge)
    merged = json.loads(sent[-1]["claims"])
    assert merged == {"access_token": {**challenge["access_token"], **CP1["access_token"]}}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ('{"a":' * 20_000 + "1" + "}" * 20_000, "longer than"),
        (b'{"access_token":{}}', "JSON string or a dict"),
        ({"access_token": {1, 2}}, "JSON-serialisable"),
        ('{"access_token":{"nbf":{"value":NaN}}}', "not valid JSON"),
        ({"access_token": {"nbf": {"value": float("nan")}}}, "JSON-serialisable"),
        ('{"a":' * 40 + "1" + "}" * 40, "not valid JSON"),
    ],
)
async def test_bad_claims_are_refused_before_any_request(
    world: World, claims: Any, message: str
) -> None:
    user_id = await sign_in(world)
    with pytest.raises((TypeError, ValueError), match=message):
        await world.plugin.get_obo_token(user_id=user_id, application_name="graph", claims=claims)
    assert world.exchanges() == 0


def test_capabilities_option_is_validated() -> None:
    apps = {"graph": {"scope": ["https://graph.microsoft.com/User.Read"]}}
    assert OBOPlugin(applications=apps, client_capabilities="cp1").client_capabilities == ("cp1",)
    for bad in (["cp 1"], [""], [3], ['cp1"}']):
        with pytest.raises(ValueError, match="capability"):
            OBOPlugin(applications=apps, client_capabilities=bad)


# --- the claims helpers ----------------------------------------------------------------------


def _header(claims: str, **extra: str) -> str:
    encoded = base64.b64encode(claims.encode()).decode()
    params = {"realm": "", "error": "insufficient_claims", "claims": encoded, **extra}
    return "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())


def test_challenge_claims_reads_microsofts_header() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}'
    header = _header(
        claims, authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"
    )
    assert challenge_claims(header) == claims
    # base64url without padding is read too
    url = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    assert challenge_claims(f'Bearer error="insufficient_claims", claims="{url}"') == claims


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        'Bearer error="invalid_token"',
        'Bearer error="insufficient_claims"',
        'Bearer error="insufficient_claims", claims="!!!not base64"',
        'Bearer error="insufficient_claims", claims="' + base64.b64encode(b"[1]").decode() + '"',
        'Bearer error="insufficient_claims", claims="'
        + base64.b64encode(b"\xff\xfe").decode()
        + '"',
        'Bearer error="insufficient_claims", claims="' + "A" * 100_000 + '"',
    ],
)
def test_challenge_claims_ignores_what_is_not_a_claims_challenge(header: str) -> None:
    assert challenge_claims(header) is None


def test_merge_keeps_the_challenge_and_adds_capabilities() -> None:
    assert merge_claims((), None) is None
    assert json.loads(merge_claims(("cp1",), None) or "") == CP1
    challenge = normalize_claims('{"access_token":{"acrs":{"essential":true,"value":"c1"}}}')
    merged = json.loads(merge_claims(("cp1",), challenge) or "")
    assert merged["access_token"]["acrs"] == {"essential": True, "value": "c1"}
    assert merged["access_token"]["xms_cc"] == {"values": ["cp1"]}
    assert challenge == {"access_token": {"acrs": {"essential": True, "value": "c1"}}}  # unchanged


# --- http_auth ---------------------------------------------------------------------------------


def _api(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


async def test_http_auth_sends_the_token_and_answers_a_claims_challenge_once(
    world: World,
) -> None:
    user_id = await sign_in(world)
    sent = record_token_requests(world.auth.http)
    seen: list[tuple[str, bytes]] = []
    challenge = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'

    def api(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["authorization"], request.content))
        if len(seen) == 1:  # the first token is refused with a claims challenge
            return httpx.Response(401, headers={"www-authenticate": _header(challenge)})
        return httpx.Response(200, json={"ok": True})

    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    async with httpx.AsyncClient(auth=auth, transport=_api(api)) as client:
        response = await client.post("https://graph.microsoft.com/v1.0/items", json={"n": 1})
    assert response.status_code == 200
    assert len(seen) == 2
    assert seen[0][0] != seen[1][0] and seen[1][0].startswith("Bearer ey")
    assert seen[0][1] == seen[1][1] == b'{"n":1}'  # the body is replayed
    assert json.loads(sent[-1]["claims"]) == json.loads(challenge)


async def test_http_auth_does_not_loop_on_a_second_challenge_or_a_plain_401(
    world: World,
) -> None:
    user_id = await sign_in(world)
    calls: list[str] = []
    challenge = _header('{"access_token":{"nbf":{"essential":true,"value":"1"}}}')

    def always(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/plain":
            return httpx.Response(401, headers={"www-authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(401, headers={"www-authenticate": challenge})

    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    async with httpx.AsyncClient(auth=auth, transport=_api(always)) as client:
        assert (await client.get("https://graph.microsoft.com/challenge")).status_code == 401
        assert (await client.get("https://graph.microsoft.com/plain")).status_code == 401
    assert calls == ["/challenge", "/challenge", "/plain"]


async def test_http_auth_raises_the_step_up_error_when_the_user_is_needed(world: World) -> None:
    user_id = await sign_in(world)
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    world.entra.require_mfa(world.user, resource="https://graph.microsoft.com")
    challenge = _header('{"access_token":{"nbf":{"essential":true,"value":"1"}}}')

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"www-authenticate": challenge})

    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    async with httpx.AsyncClient(auth=auth, transport=_api(api)) as client:
        with pytest.raises(APIError) as info:
            await client.get("https://graph.microsoft.com/v1.0/me")
    assert (info.value.extra or {}).get("reason") == "interaction_required"
    # The typed error rides along: except APIError keeps working, and the kind is checkable.
    from better_auth_obo import InteractionRequiredError, OBOAPIError

    assert isinstance(info.value, OBOAPIError)
    assert isinstance(info.value.error, InteractionRequiredError)
    assert info.value.error.claims is not None


def test_http_auth_is_async_only_and_checks_its_arguments() -> None:
    plugin = OBOPlugin(applications={"graph": {"scope": ["https://graph.microsoft.com/.default"]}})
    with pytest.raises(ValueError, match="Unknown OBO application 'nope'"):
        plugin.http_auth(user_id="u", application_name="nope")
    auth = plugin.http_auth(user_id="u", application_name="graph")
    assert repr(auth) == "OBOAuth(user_id='u', application_name='graph')"
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c,
        pytest.raises(RuntimeError, match=r"use it with httpx\.AsyncClient"),
    ):
        c.get("https://graph.microsoft.com/")


async def test_force_refresh_must_be_a_bool(world: World) -> None:
    with pytest.raises(TypeError, match="force_refresh"):
        await world.plugin.get_obo_token(
            user_id="u",
            application_name="graph",
            force_refresh="no",  # type: ignore[arg-type]
        )


@pytest.mark.timeout(10)
def test_a_hostile_header_is_read_in_linear_time() -> None:
    # Quadratic matching took ~55 s on 64 KB of letters; linear takes milliseconds.
    for header in ("Bearer " + "a" * 32_000, "Bearer " + "a=" * 16_000, 'Bearer a="' * 3_000):
        assert challenge_claims(header) is None


async def test_http_auth_sends_the_token_over_https_to_the_resources_host_only(
    world: World,
) -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    user_id = await sign_in(world)
    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    async with httpx.AsyncClient(auth=auth, transport=_api(api)) as client:
        with pytest.raises(ValueError, match="https only"):
            await client.get("http://graph.microsoft.com/v1.0/me")
        with pytest.raises(ValueError, match="allowed_hosts"):
            await client.get("https://attacker.example/collect")
        assert (await client.get("https://graph.microsoft.com/v1.0/me")).status_code == 200
    assert seen == ["https://graph.microsoft.com/v1.0/me"]
    # Widened on purpose; an api:// application names no host, so any https host is its.
    wide = world.plugin.http_auth(
        user_id=user_id, application_name="graph", allowed_hosts=["graph.contoso.example"]
    )
    files = world.plugin.http_auth(user_id=user_id, application_name="files")
    for auth, url in (
        (wide, "https://graph.contoso.example/me"),
        (files, "https://files.example/"),
    ):
        async with httpx.AsyncClient(auth=auth, transport=_api(api)) as client:
            assert (await client.get(url)).status_code == 200
    assert seen[1:] == ["https://graph.contoso.example/me", "https://files.example/"]


async def test_a_challenge_from_a_redirect_target_elsewhere_is_not_answered(world: World) -> None:
    user_id = await sign_in(world)
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    sent = record_token_requests(world.auth.http)
    evil = '{"access_token":{"acrs":{"essential":true,"value":"c99"}}}'

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.microsoft.com":
            return httpx.Response(302, headers={"location": "https://evil.example/x"})
        assert "authorization" not in request.headers  # httpx strips it across origins
        return httpx.Response(401, headers={"www-authenticate": _header(evil)})

    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    transport = _api(api)
    async with httpx.AsyncClient(auth=auth, transport=transport, follow_redirects=True) as client:
        response = await client.get("https://graph.microsoft.com/v1.0/me")
    assert response.status_code == 401
    assert sent == []  # no exchange with the claims a third party chose


def test_memory_never_takes_back_a_token_older_than_the_one_it_holds() -> None:
    from better_auth_obo._cache import TokenCache

    now = 1_000_000.0
    cache: TokenCache[str] = TokenCache(
        max_entries=10, buffer=60, revalidate_after=30, clock=lambda: now
    )
    # A forced exchange put T1 (minted now); a load that read T0 (minted an hour ago)
    # before it finishes afterwards: memory keeps T1.
    cache.put("u", "graph", "T1", expires_at=now + 3600, issued_at=now)
    cache.put("u", "graph", "T0", expires_at=now + 600, issued_at=now - 3000)
    assert cache.get("u", "graph") == "T1"
    cache.put("u", "graph", "T2", expires_at=now + 3600, issued_at=now)  # as new: replaces
    assert cache.get("u", "graph") == "T2"
