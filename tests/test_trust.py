"""The trust issue, end to end: attacks through better-auth-server's real endpoints and
races against a slowed-down emulator, on every storage backend.

Nothing here patches the plugin: the attacker uses the host's own ID-token sign-in, a
forged token written where the host keeps it, or a crafted tenant; the races use the
emulator's ``faults.delay`` on the On-Behalf-Of grant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from better_auth import APIError
from better_auth.adapters.base import Where
from better_auth.crypto import symmetric_encrypt
from cryptography.hazmat.primitives.asymmetric import rsa
from tests._leaks import register
from tests.conftest import MakeAuth
from tests.test_e2e import (
    GRAPH_USER_READ,
    World,
    _plugin_with,
    clients,
    microsoft,
    sign_in,
    world,
)
from tests.test_lifecycle import host_bug_on_mariadb

from better_auth_obo import OBOConfigurationWarning, OBOPlugin
from better_auth_obo._store import is_cached_token_row
from better_auth_obo.testing import EntraEmulator, User

__all__ = ["world"]  # the fixture, imported from test_e2e

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def cached_rows(world: World, user_id: str) -> list[dict[str, Any]]:
    rows = await world.auth.adapter.find_many("account", [Where("userId", user_id)])
    return [row for row in rows if is_cached_token_row(row)]


async def graph_me(world: World, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=world.entra.ssl_context()) as http:
        me = await http.get(
            f"{world.entra.graph_url}/v1.0/me", headers={"Authorization": f"Bearer {token}"}
        )
    assert me.status_code == 200, me.text
    result: dict[str, Any] = me.json()
    return result


async def id_token_sign_in(world: World, user: User, access_token: str) -> str:
    """better-auth-server's ID-token sign-in, as any browser client may call it."""
    id_token = world.entra.issue_id_token(user, client=world.api)
    register(id_token, access_token)
    response = await world.app_client.post(
        "/api/auth/sign-in/social",
        json={"provider": "microsoft", "idToken": {"token": id_token, "accessToken": access_token}},
    )
    assert response.status_code == 200, response.text
    session = await world.app_client.get("/api/auth/get-session")
    return str(session.json()["user"]["id"])


def own_api_token(world: World, user: User) -> str:
    token = world.entra.issue_token(user, audience=world.api, scopes=["access_as_user"])
    register(token)
    return token


async def refused(call: Awaitable[Any], code: str, reason: str | None = None) -> APIError:
    with pytest.raises(APIError) as info:
        await call
    assert info.value.code == code, info.value
    if reason is not None:
        assert (info.value.extra or {}).get("reason") == reason, info.value.extra
    return info.value


# --- 1. the confused deputy -----------------------------------------------------------


async def test_id_token_sign_in_with_someone_elses_access_token_is_refused(
    world: World,
) -> None:
    """Grace signs in with her own ID token and Ada's access token (leaked from a SPA or
    a log): the host stores it as Grace's; the plugin must never exchange it."""
    ada = world.user
    grace = world.entra.add_user("Grace Hopper", "grace@contoso.example")
    grace_id = await id_token_sign_in(world, grace, own_api_token(world, ada))
    error = await refused(
        world.plugin.get_obo_token(user_id=grace_id, application_name="graph"),
        "INVALID_ASSERTION",
        "subject",
    )
    assert "someone else" in error.message
    assert world.exchanges() == 0  # nothing reached Entra, no client credential was used
    assert await cached_rows(world, grace_id) == []


async def test_id_token_sign_in_with_ones_own_access_token_works(world: World) -> None:
    grace = world.entra.add_user("Grace Hopper", "grace@contoso.example")
    world.entra.grant_consent(world.api, GRAPH_USER_READ)
    grace_id = await id_token_sign_in(world, grace, own_api_token(world, grace))
    account = await world.plugin.get_obo_token(user_id=grace_id, application_name="graph")
    assert (await graph_me(world, account["accessToken"]))["id"] == grace.oid


async def test_a_forged_token_in_the_account_row_is_refused(world: World) -> None:
    """Same claims as the real token, signed by the attacker's key under Entra's kid."""
    user_id = await sign_in(world)
    (row,) = await world.auth.adapter.find_many(
        "account", [Where("userId", user_id), Where("providerId", "microsoft")]
    )
    real = own_api_token(world, world.user)
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": header["kid"]})
    register(forged)
    await world.auth.internal.update("account", [Where("id", row["id"])], {
        "accessToken": symmetric_encrypt(world.auth.secret, forged)  # the host encrypts
    })  # fmt: skip
    await refused(
        world.plugin.get_obo_token(user_id=user_id, application_name="graph"),
        "INVALID_ASSERTION",
        "signature",
    )
    assert world.exchanges() == 0


@asynccontextmanager
async def one_app_world(
    entra: EntraEmulator, make_auth: MakeAuth, **options: Any
) -> AsyncIterator[World]:
    """A middle tier (``options`` for register_app, ``clock`` for the plugin) with Graph
    consent, Ada signing in automatically, and the app's two clients."""
    clock = options.pop("clock", time.time)
    api = entra.register_app("middle-tier", scopes=["access_as_user"], **options)
    entra.grant_consent(api, GRAPH_USER_READ)
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in(user)
    register(api.client_secret)
    plugin = OBOPlugin(applications={"graph": {"scope": [GRAPH_USER_READ]}}, clock=clock)
    outbound = httpx.AsyncClient(verify=entra.ssl_context(), timeout=10)
    auth = await make_auth(
        social_providers={"microsoft": microsoft(entra, api)},
        plugins=[plugin],
        http_client=outbound,
    )
    async with outbound, clients(auth, entra) as (app_client, entra_client):
        yield World(entra, api, api, user, auth, plugin, app_client, entra_client)


async def test_v1_middle_tier_tokens_verify_end_to_end(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    """Apps whose manifest leaves requestedAccessTokenVersion unset get v1 tokens
    (iss https://sts.windows.net/{tid}/) for their own API."""
    async with one_app_world(entra, make_auth, access_token_version=1) as world:
        user_id = await sign_in(world)
        (row,) = await world.auth.adapter.find_many(
            "account", [Where("userId", user_id), Where("providerId", "microsoft")]
        )
        stored = jwt.decode(row["accessToken"], options={"verify_signature": False})
        issuer = f"https://sts.windows.net/{entra.tenant_id}/"
        assert (stored["ver"], stored["iss"]) == ("1.0", issuer)
        account = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        assert (await graph_me(world, account["accessToken"]))["id"] == world.user.oid


async def test_rotated_signing_key_is_fetched_once_five_minutes_have_passed(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    async with one_app_world(entra, make_auth, clock=clock) as world:
        plugin = world.plugin
        user_id = await sign_in(world)
        await plugin.get_obo_token(user_id=user_id, application_name="graph")
        entra.rotate_keys(keep_previous=False)  # Entra signs with a key we have not fetched
        await sign_in(world)
        await refused(
            plugin.get_obo_token(user_id=user_id, application_name="graph"),
            "INVALID_ASSERTION",
            "signature",
        )  # within 5 minutes of the last fetch an unknown kid is not fetched again
        offset[0] = 301.0
        account = await plugin.get_obo_token(user_id=user_id, application_name="graph")
        assert (await graph_me(world, account["accessToken"]))["id"] == world.user.oid


# --- 2. a crafted tenant never reaches the token endpoint's path -----------------------


async def test_crafted_tid_in_multi_tenant_mode_sends_nothing(
    entra: EntraEmulator, make_auth: MakeAuth
) -> None:
    api = entra.register_app("middle-tier", scopes=["access_as_user"], multi_tenant=True)
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in(user)
    register(api.client_secret)
    plugin = OBOPlugin(applications={"graph": {"scope": [GRAPH_USER_READ]}})
    outbound = httpx.AsyncClient(verify=entra.ssl_context(), timeout=10)
    with pytest.warns(OBOConfigurationWarning, match="common"):
        auth = await make_auth(
            social_providers={"microsoft": microsoft(entra, api, tenant_id="common")},
            plugins=[plugin],
            http_client=outbound,
        )
    async with outbound:
        user_row = await auth.internal.create_user({"email": "x@contoso.example", "name": "X"})
        assert user_row is not None
        crafted = jwt.encode(
            {"tid": "../../graph/v1.0/me?x=", "oid": user.oid, "aud": api.client_id,
             "iss": f"{entra.authority}/../../graph/v1.0/me?x=/v2.0", "ver": "2.0",
             "scp": "access_as_user", "azp": api.client_id, "exp": int(time.time()) + 3600},
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
            headers={"kid": entra.signing_kid},
        )  # fmt: skip
        register(crafted)
        await auth.internal.create_account({
            "userId": user_row["id"], "providerId": "microsoft", "accountId": user.oid,
            "accessToken": crafted, "scope": "openid",
        })  # fmt: skip
        before = len(entra.token_requests)
        with pytest.raises(APIError) as info:
            await plugin.get_obo_token(user_id=user_row["id"], application_name="graph")
        assert info.value.code == "INVALID_ASSERTION"
        assert len(entra.token_requests) == before


# --- 3. lifecycle events during an exchange --------------------------------------------


async def in_flight(world: World, user_id: str, application: str = "graph") -> asyncio.Future[Any]:
    """Start an exchange that the emulator holds for a while; return once it is held there
    (the delay fault counts a hit when the request arrives, before it waits)."""
    held = world.entra.faults.delay(0.6, grant_type="obo")
    pending = asyncio.ensure_future(
        world.plugin.get_obo_token(user_id=user_id, application_name=application)
    )
    for _ in range(400):
        if held.hits or pending.done():
            break
        await asyncio.sleep(0.005)
    assert held.hits == 1 and not pending.done()
    return pending


@pytest.mark.parametrize("application", ["graph", None])
async def test_revoke_during_an_exchange_sticks(world: World, application: str | None) -> None:
    user_id = await sign_in(world)
    pending = await in_flight(world, user_id)
    await world.plugin.revoke_obo_tokens(user_id, application)
    await pending  # asked before the revoke: it gets its token
    assert await cached_rows(world, user_id) == []  # but nothing minted before stays
    exchanges = world.exchanges()
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert world.exchanges() == exchanges + 1  # neither memory nor the table served it


async def test_revoke_in_another_process_during_an_exchange_sticks(
    world: World, make_auth: MakeAuth
) -> None:
    user_id = await sign_in(world)
    other = await _plugin_with(world, make_auth)  # another worker, same database
    pending = await in_flight(world, user_id)
    await other.revoke_obo_tokens(user_id)
    old = await pending
    assert await cached_rows(world, user_id) == []
    fresh = await other.get_obo_token(user_id=user_id, application_name="graph")
    assert fresh["accessToken"] != old["accessToken"]


@pytest.mark.parametrize("event", ["revoke", "new_sign_in", "delete_user"])
async def test_a_call_after_the_event_never_joins_the_older_exchange(
    world: World, database: Any, request: pytest.FixtureRequest, event: str
) -> None:
    """Callers share one exchange per key, but not across a revoke, a new sign-in or a
    deletion: a call that starts after the event gets nothing minted before it."""
    if event == "delete_user":
        host_bug_on_mariadb(database, request)
    user_id = await sign_in(world)
    pending = await in_flight(world, user_id)
    if event == "revoke":
        await world.plugin.revoke_obo_tokens(user_id)
    elif event == "new_sign_in":
        await sign_in(world)
    else:
        await world.auth.internal.delete_user(user_id)
    after = asyncio.ensure_future(
        world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    )
    old = await pending
    if event == "delete_user":
        await refused(after, "MICROSOFT_ACCOUNT_NOT_FOUND")
        return
    assert (await after)["accessToken"] != old["accessToken"]


async def test_a_row_left_by_a_failed_recheck_is_not_served_after_a_revoke(world: World) -> None:
    """The database fails on the exchange's re-read after its write, so the row it wrote
    during a revoke stays: its generation stamp keeps it from ever being served."""
    user_id = await sign_in(world)
    adapter = world.auth.adapter
    find_many = adapter.find_many
    armed: list[bool] = []

    async def blip(model: str, where: Any = None, **kwargs: Any) -> Any:
        if armed and model == "account":
            armed.clear()
            raise ConnectionError("the database went away for a moment")
        return await find_many(model, where, **kwargs)

    pending = await in_flight(world, user_id)
    await world.plugin.revoke_obo_tokens(user_id)
    adapter.find_many = blip  # type: ignore[method-assign]
    armed.append(True)  # the next read of the user's rows is the exchange's re-check
    old = await pending
    adapter.find_many = find_many  # type: ignore[method-assign]
    assert len(await cached_rows(world, user_id)) == 1  # left behind by the failed re-check
    exchanges = world.exchanges()
    fresh = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert world.exchanges() == exchanges + 1
    assert fresh["accessToken"] != old["accessToken"]


async def test_a_user_deleted_without_hooks_is_not_served_from_the_table(
    world: World, make_auth: MakeAuth
) -> None:
    """A raw delete of the user row (no hooks; SQLite and Memory keep the account rows):
    another process, reading the table, must not serve the deleted user's token."""
    user_id = await sign_in(world)
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    await world.auth.adapter.delete_many("user", [Where("id", user_id)])
    other = await _plugin_with(world, make_auth)  # another worker, same database
    await refused(
        other.get_obo_token(user_id=user_id, application_name="graph"),
        "MICROSOFT_ACCOUNT_NOT_FOUND",
    )


async def test_an_expired_token_signed_by_a_retired_key_is_refreshed(
    make_auth: MakeAuth,
) -> None:
    """Back after a key rollover: the stored token cannot be verified any more (its key is
    gone) but the refresh token works, and the refreshed token is verified in full."""
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with (
        EntraEmulator(clock=clock) as entra,
        one_app_world(entra, make_auth, clock=clock) as world,
    ):
        user_id = await sign_in(world)
        entra.rotate_keys(keep_previous=False)
        offset[0] = 2 * 3600.0  # the stored token expired an hour ago
        account = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
        assert (await graph_me(world, account["accessToken"]))["id"] == world.user.oid
        assert world.grants("refresh_token") == 1


async def test_new_sign_in_during_an_exchange_is_not_served_the_old_token(world: World) -> None:
    user_id = await sign_in(world)
    pending = await in_flight(world, user_id)
    await sign_in(world)  # a new Microsoft token while the old one is being exchanged
    old = await pending
    new = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert new["accessToken"] != old["accessToken"]
    assert new["accountId"] != old["accountId"]
    assert [row["accountId"] for row in await cached_rows(world, user_id)] == [new["accountId"]]


@pytest.mark.parametrize("how", ["host", "raw"])
async def test_user_deleted_during_an_exchange_leaves_no_row(
    world: World, database: Any, request: pytest.FixtureRequest, how: str
) -> None:
    """``host``: better-auth-server's delete_user (our hooks run); ``raw``: the app deletes
    the user row itself, no hooks at all (on SQLite and Memory its accounts stay)."""
    if how == "host":
        host_bug_on_mariadb(database, request)
    user_id = await sign_in(world)
    pending = await in_flight(world, user_id)
    if how == "host":
        await world.auth.internal.delete_user(user_id)
    else:
        await world.auth.adapter.delete_many("user", [Where("id", user_id)])
    await asyncio.gather(pending, return_exceptions=True)
    assert await cached_rows(world, user_id) == []
    before = world.exchanges()
    await refused(
        world.plugin.get_obo_token(user_id=user_id, application_name="graph"),
        "MICROSOFT_ACCOUNT_NOT_FOUND",
    )
    assert world.exchanges() == before  # nothing minted for a deleted user
    assert await cached_rows(world, user_id) == []


async def test_unlink_during_an_exchange_leaves_no_row(world: World) -> None:
    user_id = await sign_in(world)
    pending = await in_flight(world, user_id)
    await world.auth.internal.delete_many(
        "account", [Where("userId", user_id), Where("providerId", "microsoft")]
    )
    await pending
    assert await cached_rows(world, user_id) == []
    await refused(
        world.plugin.get_obo_token(user_id=user_id, application_name="graph"),
        "MICROSOFT_ACCOUNT_NOT_FOUND",
    )


# --- 5. MariaDB's collation: another spelling is another user --------------------------


@pytest.mark.parametrize("spelling", [str.upper, lambda s: s + " "])
async def test_another_spelling_of_a_user_id_gets_nothing(world: World, spelling: Any) -> None:
    user_id = await sign_in(world)
    await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    other = spelling(user_id)
    assert other != user_id
    await refused(
        world.plugin.get_obo_token(user_id=other, application_name="graph"),
        "MICROSOFT_ACCOUNT_NOT_FOUND",
    )
    rows = await world.auth.adapter.find_many("account", [])
    assert all(row["userId"] == user_id for row in rows if is_cached_token_row(row))
    assert await world.plugin.revoke_obo_tokens(other) == 0
    assert len(await cached_rows(world, user_id)) == 1  # the real user's row is untouched
