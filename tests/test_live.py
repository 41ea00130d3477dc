"""Against a real Entra ID tenant: opt-in (``-m live``), never in CI, never counted as coverage.

Needs ENTRA_CLIENT_ID, ENTRA_CLIENT_SECRET, ENTRA_TENANT_ID, ENTRA_OBO_SCOPE (comma-separated)
and ENTRA_ACCESS_TOKEN (a delegated token whose audience is ENTRA_CLIENT_ID).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jwt
import pytest
from better_auth import APIError
from tests._fakes import seed_user
from tests.conftest import MakeAuth

from better_auth_obo import OBOPlugin

pytestmark = pytest.mark.live
NAMES = (
    "ENTRA_CLIENT_ID",
    "ENTRA_CLIENT_SECRET",
    "ENTRA_TENANT_ID",
    "ENTRA_OBO_SCOPE",
    "ENTRA_ACCESS_TOKEN",
)


@pytest.fixture
def live() -> dict[str, str]:
    missing = [name for name in NAMES if not os.environ.get(name)]
    if missing:
        pytest.skip(f"live tests need {', '.join(missing)}")
    env = {name: os.environ[name] for name in NAMES}
    claims: dict[str, Any] = jwt.decode(
        env["ENTRA_ACCESS_TOKEN"], options={"verify_signature": False}
    )
    if claims.get("exp", 0) < time.time() + 120:
        pytest.skip("ENTRA_ACCESS_TOKEN has expired (or expires within 2 minutes): get a new one")
    return env


@pytest.fixture
def backend_memory(database: Any) -> None:
    if database.kind != "memory":
        pytest.skip("live tests run once, on MemoryAdapter")


async def make(make_auth: MakeAuth, live: dict[str, str]) -> tuple[Any, OBOPlugin]:
    scope = [s.strip() for s in live["ENTRA_OBO_SCOPE"].split(",") if s.strip()]
    plugin = OBOPlugin(applications={"downstream": {"scope": scope}})
    auth = await make_auth(
        social_providers={
            "microsoft": {
                "client_id": live["ENTRA_CLIENT_ID"],
                "client_secret": live["ENTRA_CLIENT_SECRET"],
                "tenant_id": live["ENTRA_TENANT_ID"],
                "disable_profile_photo": True,
                "scopes": [
                    "openid",
                    "profile",
                    "email",
                    "offline_access",
                    f"{live['ENTRA_CLIENT_ID']}/.default",
                ],
            }
        },
        plugins=[plugin],
    )
    return auth, plugin


@pytest.mark.usefixtures("backend_memory")
async def test_live_exchange_then_cache(make_auth: MakeAuth, live: dict[str, str]) -> None:
    auth, plugin = await make(make_auth, live)
    user = await seed_user(auth, token=live["ENTRA_ACCESS_TOKEN"], refresh_token=None)
    first = await plugin.get_obo_token(user_id=user["id"], application_name="downstream")
    assert first["accessToken"] and first["accessTokenExpiresAt"].timestamp() > time.time()
    second = await plugin.get_obo_token(user_id=user["id"], application_name="downstream")
    assert second["accessToken"] == first["accessToken"]


@pytest.mark.usefixtures("backend_memory")
async def test_live_rejected_assertion(make_auth: MakeAuth, live: dict[str, str]) -> None:
    auth, plugin = await make(make_auth, live)
    header, payload, _ = live["ENTRA_ACCESS_TOKEN"].split(".")
    user = await seed_user(auth, token=f"{header}.{payload}.invalidsignature", refresh_token=None)
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="downstream")
    assert info.value.code == "OBO_EXCHANGE_FAILED"
    assert info.value.extra and info.value.extra.get("trace_id")
