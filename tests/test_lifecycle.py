"""Synthetic rows stay out of the user's way and go when what they were bound to goes.

Driven through the host's real HTTP routes (FastAPI + ASGITransport) on every backend.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from better_auth import APIError, BetterAuth
from better_auth.adapters.base import Where
from better_auth.config import DeleteUserOptions, EmailAndPassword, UserOptions
from better_auth.integrations.fastapi import BetterAuthFastAPI
from fastapi import FastAPI
from tests._fakes import WireEntra, provider, seed_user
from tests.conftest import MakeAuth

from better_auth_obo import OBOPlugin
from better_auth_obo._store import GENERATION_PROVIDER_ID

APPS = {
    "graph": {"scope": ["https://graph.microsoft.com/.default"]},
    "api": {"scope": ["api://d/.default"]},
}
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def world(make_auth: MakeAuth) -> AsyncIterator[dict[str, Any]]:
    wire = WireEntra()
    plugin = OBOPlugin(applications=APPS)
    auth = await make_auth(
        social_providers={"microsoft": provider()},
        plugins=[plugin],
        http_client=wire.client(),
        email_and_password=EmailAndPassword(enabled=True),
        user=UserOptions(delete_user=DeleteUserOptions(enabled=True)),
    )
    app = FastAPI()
    app.include_router(BetterAuthFastAPI(auth).router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"origin": "http://testserver"},
    ) as client:
        yield {"auth": auth, "plugin": plugin, "client": client, "wire": wire}


async def signed_in_user(world: dict[str, Any], *, keep_password: bool = True) -> dict[str, Any]:
    """A user with a session cookie, a Microsoft account and two cached OBO tokens."""
    auth: BetterAuth = world["auth"]
    email = f"u{time.time_ns()}@contoso.example"
    response = await world["client"].post(
        "/api/auth/sign-up/email", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    if not keep_password:  # leave Microsoft as the only login
        await auth.adapter.delete_many(
            "account", [Where("userId", user["id"]), Where("providerId", "credential")]
        )
    await seed_microsoft(auth, user["id"])
    for app in APPS:
        await world["plugin"].get_obo_token(user_id=user["id"], application_name=app)
    return user


async def seed_microsoft(auth: BetterAuth, user_id: str) -> None:
    seeded = await seed_user(auth)  # makes its own user; move its Microsoft row over
    await auth.adapter.update_many("account", [Where("userId", seeded["id"])], {"userId": user_id})
    await auth.adapter.delete_many("user", [Where("id", seeded["id"])])


def host_bug_on_mariadb(database: Any, request: pytest.FixtureRequest) -> None:
    if database.kind == "mariadb":
        request.applymarker(
            pytest.mark.xfail(
                reason="better-auth-server 1.1: single-row delete fails on MariaDB (error 1235), "
                "so the host's unlink / delete_user never get as far as our purge",
                strict=True,
            )
        )


async def rows(auth: BetterAuth, user_id: str) -> list[str]:
    """The providerIds of the user's rows, but the revocation generation (no token)."""
    found = await auth.adapter.find_many("account", [Where("userId", user_id)])
    return sorted(r["providerId"] for r in found if r["providerId"] != GENERATION_PROVIDER_ID)


async def test_list_accounts_hides_obo_rows(world: dict[str, Any]) -> None:
    user = await signed_in_user(world)
    response = await world["client"].get("/api/auth/list-accounts")
    assert response.status_code == 200
    assert sorted(a["providerId"] for a in response.json()) == ["credential", "microsoft"]
    assert await rows(world["auth"], user["id"]) == [
        "credential",
        "microsoft",
        "microsoft:api",
        "microsoft:graph",
    ]


async def test_unlink_of_obo_row_is_refused(world: dict[str, Any]) -> None:
    auth = world["auth"]
    user = await signed_in_user(world)
    (obo,) = await auth.adapter.find_many(
        "account", [Where("userId", user["id"]), Where("providerId", "microsoft:graph")]
    )
    response = await world["client"].post("/api/auth/unlink-account", json={"accountId": obo["id"]})
    assert response.status_code == 400
    assert response.json()["code"] == "ACCOUNT_NOT_FOUND"
    assert "microsoft:graph" in await rows(auth, user["id"])


async def test_obo_rows_do_not_count_as_logins(world: dict[str, Any]) -> None:
    auth = world["auth"]
    user = await signed_in_user(world, keep_password=False)
    (microsoft,) = await auth.adapter.find_many(
        "account", [Where("userId", user["id"]), Where("providerId", "microsoft")]
    )
    response = await world["client"].post(
        "/api/auth/unlink-account", json={"accountId": microsoft["id"]}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "FAILED_TO_UNLINK_LAST_ACCOUNT"
    assert "microsoft" in await rows(auth, user["id"])


async def test_unlinking_microsoft_purges_obo_rows(
    world: dict[str, Any], database: Any, request: pytest.FixtureRequest
) -> None:
    host_bug_on_mariadb(database, request)
    auth = world["auth"]
    user = await signed_in_user(world)
    (microsoft,) = await auth.adapter.find_many(
        "account", [Where("userId", user["id"]), Where("providerId", "microsoft")]
    )
    response = await world["client"].post(
        "/api/auth/unlink-account", json={"accountId": microsoft["id"]}
    )
    assert response.status_code == 200, response.text
    assert await rows(auth, user["id"]) == ["credential"]


async def test_delete_user_purges_obo_rows(world: dict[str, Any]) -> None:
    auth = world["auth"]
    user = await signed_in_user(world)
    response = await world["client"].post("/api/auth/delete-user", json={"password": PASSWORD})
    assert response.status_code == 200, response.text
    # The host leaves the account rows behind where no foreign key cascades (SQLite,
    # Memory): the Microsoft token of a deleted user must not stay exchangeable.
    assert await rows(auth, user["id"]) == []
    exchanges = len(world["wire"].exchanges)
    with pytest.raises(APIError) as info:
        await world["plugin"].get_obo_token(user_id=user["id"], application_name="graph")
    assert info.value.code == "MICROSOFT_ACCOUNT_NOT_FOUND"
    assert len(world["wire"].exchanges) == exchanges
    assert await rows(auth, user["id"]) == []


async def test_internal_delete_user_purges(
    world: dict[str, Any], database: Any, request: pytest.FixtureRequest
) -> None:
    host_bug_on_mariadb(database, request)
    auth = world["auth"]
    user = await signed_in_user(world)
    await auth.internal.delete_user(user["id"])
    assert await rows(auth, user["id"]) == []


async def test_revoke_obo_tokens(world: dict[str, Any]) -> None:
    auth, plugin, wire = world["auth"], world["plugin"], world["wire"]
    user = await signed_in_user(world)
    assert await plugin.revoke_obo_tokens(user["id"], "graph") == 1
    assert await rows(auth, user["id"]) == ["credential", "microsoft", "microsoft:api"]
    exchanges = len(wire.exchanges)
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")  # not from L1
    assert len(wire.exchanges) == exchanges + 1
    assert await plugin.revoke_obo_tokens(user["id"]) == 2
    assert await rows(auth, user["id"]) == ["credential", "microsoft"]


async def test_the_store_lists_a_users_cached_tokens_and_their_binding(make_auth: MakeAuth) -> None:
    """OBOStore.list: what the doctor and the demo show, from one read."""
    from tests._fakes import WireEntra, provider, seed_user

    from better_auth_obo._store import OBOStore

    wire = WireEntra()
    plugin = OBOPlugin(
        applications={"a": {"scope": ["api://x/A.Read"]}, "b": {"scope": ["api://y/B.Read"]}}
    )
    auth = await make_auth(
        social_providers={"microsoft": provider()}, plugins=[plugin], http_client=wire.client()
    )
    user = await seed_user(auth)
    for application in ("b", "a"):
        await plugin.get_obo_token(user_id=user["id"], application_name=application)
    await plugin.revoke_obo_tokens(user["id"], "b")  # leaves a generation row, not a token
    await plugin.get_obo_token(user_id=user["id"], application_name="b")
    listed = await OBOStore(auth).list(user["id"])
    assert [t.application for t in listed] == ["a", "b"]
    assert all(t.bound_to_current and t.access_token for t in listed)
    assert listed[0].scopes == ("api://x/A.Read",)
    assert listed[0].access_token not in repr(listed[0])
    assert await OBOStore(auth).list("someone-else") == []
