"""Continuous Access Evaluation end to end: the plugin declares ``cp1``, gets long-lived
CAE tokens from the emulator, caches them for their real lifetime, and ``http_auth``
answers a resource's claims challenge after a CAE event (a new token when the user's
session allows it, the step-up error when it does not).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import jwt
import pytest
from better_auth import APIError, BetterAuth
from better_auth.config import AccountOptions
from tests.conftest import MakeAuth
from tests.test_e2e import World, built_world, clients, microsoft, sign_in, world

from better_auth_obo import OBOPlugin, sign_in_again
from better_auth_obo.testing import EntraEmulator

__all__ = ["world"]  # the fixture, imported from test_e2e

GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


@pytest.fixture
async def cae_world(
    entra: EntraEmulator, make_auth: MakeAuth, clock: Clock
) -> AsyncIterator[World]:
    # Memory keeps a token without re-reading the table, as another process's would.
    options = {"client_capabilities": ["cp1"], "clock": clock, "cache_revalidate_after": 3600}
    async with built_world(entra, make_auth, **options) as world:
        yield world


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_cp1_tokens_are_cae_tokens_cached_for_their_real_lifetime(
    cae_world: World, clock: Clock, stack: AsyncExitStack
) -> None:
    world = cae_world
    user_id = await sign_in(world)
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    lifetime = token["accessTokenExpiresAt"].timestamp() - time.time()
    assert 23.9 * 3600 < lifetime <= 24 * 3600  # the emulator's default CAE lifetime
    assert claims_of(token["accessToken"])["xms_cc"] == ["cp1"]
    # Eleven hours on (the user's Microsoft token long expired): still served, no exchange,
    # from memory and from the table, and no proactive refresh is due yet.
    clock.offset = 11 * 3600
    again = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert again["accessToken"] == token["accessToken"]
    other = await _second_instance(world, clock, stack)
    from_table = await other.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert from_table["accessToken"] == token["accessToken"]
    assert world.exchanges() == 1


async def test_http_auth_survives_a_cae_event_when_the_session_allows_it(
    cae_world: World, clock: Clock, stack: AsyncExitStack
) -> None:
    world = cae_world
    user_id = await sign_in(world)
    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    me = f"{world.entra.graph_url}/v1.0/me"
    async with httpx.AsyncClient(auth=auth, verify=world.entra.ssl_context()) as graph:
        assert (await graph.get(me)).status_code == 200
        # The user's session was revoked, and they signed in again, through another process
        # of the app: this process's memory still holds the token minted before the event.
        world.entra.cae_event(world.user)
        other = await _second_instance(world, clock, stack)
        await sign_in(other)
        response = await graph.get(me)
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [401]
    assert "insufficient_claims" in response.history[0].headers["www-authenticate"]
    assert response.json()["id"] == world.user.oid
    assert world.exchanges() == 2  # the first token, and one with the challenge's claims
    # The new token is what memory serves now, and the resource takes it.
    token = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert token["accessToken"] == response.request.headers["authorization"].split()[1]


async def test_http_auth_raises_the_step_up_after_a_cae_event_the_session_cannot_satisfy(
    cae_world: World,
) -> None:
    world = cae_world
    user_id = await sign_in(world)
    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    me = f"{world.entra.graph_url}/v1.0/me"
    async with httpx.AsyncClient(auth=auth, verify=world.entra.ssl_context()) as graph:
        assert (await graph.get(me)).status_code == 200
        world.entra.cae_event(world.user)
        with pytest.raises(APIError) as info:
            await graph.get(me)
        # The app sends the user back through sign-in with the claims; then it works.
        body = sign_in_again(info.value, login_hint=world.user.upn)
        assert body is not None and '"nbf"' in body["additionalParams"]["claims"]
        response = await world.app_client.post("/api/auth/sign-in/social", json=body)
        authorize = await world.entra_client.get(response.json()["url"])
        callback = await world.app_client.get(authorize.headers["location"])
        assert "error" not in callback.headers["location"]
        assert (await graph.get(me)).status_code == 200


async def test_a_non_cae_token_keeps_working_after_the_event(world: World) -> None:
    user_id = await sign_in(world)
    auth = world.plugin.http_auth(user_id=user_id, application_name="graph")
    async with httpx.AsyncClient(auth=auth, verify=world.entra.ssl_context()) as graph:
        me = f"{world.entra.graph_url}/v1.0/me"
        assert (await graph.get(me)).status_code == 200
        world.entra.cae_event(world.user)
        response = await graph.get(me)
    assert response.status_code == 200 and not response.history
    assert world.exchanges() == 1


async def test_azure_core_policy_answers_the_cae_challenge(
    cae_world: World, clock: Clock, stack: AsyncExitStack
) -> None:
    from azure.core.pipeline import AsyncPipeline
    from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.core.rest import HttpRequest

    world = cae_world
    user_id = await sign_in(world)
    credential = world.plugin.credential(user_id=user_id, application_name="graph")
    policy = AsyncBearerTokenCredentialPolicy(
        credential, "https://graph.microsoft.com/.default", enable_cae=True
    )
    me = f"{world.entra.graph_url}/v1.0/me"
    transport = AioHttpTransport(connection_verify=world.entra.ca_file)
    async with AsyncPipeline(transport, policies=[policy]) as pipeline:
        assert (await pipeline.run(HttpRequest("GET", me))).http_response.status_code == 200
        world.entra.cae_event(world.user)
        other = await _second_instance(world, clock, stack)
        await sign_in(other)
        response = await pipeline.run(HttpRequest("GET", me))
        assert response.http_response.status_code == 200
    assert world.exchanges() == 2


async def _second_instance(world: World, clock: Clock, stack: AsyncExitStack) -> World:
    """Another process of the same app: its own BetterAuth and plugin on the same table."""
    plugin = OBOPlugin(
        applications={"graph": {"scope": [GRAPH_USER_READ]}},
        client_capabilities=["cp1"],
        clock=clock,
    )
    auth = BetterAuth(
        secret=world.auth.secret,
        base_url="http://testserver",
        adapter=world.auth.adapter,
        social_providers={"microsoft": microsoft(world.entra, world.api)},
        plugins=[plugin],
        http_client=world.auth.http,
        account=AccountOptions(encrypt_oauth_tokens=True),
    )
    app_client, entra_client = await stack.enter_async_context(clients(auth, world.entra))
    return dataclasses.replace(
        world, auth=auth, plugin=plugin, app_client=app_client, entra_client=entra_client
    )
