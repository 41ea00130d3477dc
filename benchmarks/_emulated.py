"""The cold run against the Entra ID emulator: real TLS sockets on loopback.

The emulator runs in this process (a uvicorn thread), so its own work per request
(verifying the assertion, signing an RS256 token, TLS) shares the GIL and the two cores
with the plugin: this row bounds what the whole stack does here, not the plugin alone.
Latency comes from the emulator's fault injection (``faults.delay``).
"""

from __future__ import annotations

import asyncio
import time

import httpx
from better_auth import BetterAuth

from better_auth_obo import OBOPlugin
from better_auth_obo.testing import EntraEmulator

from ._cold import COLD_CONCURRENCY, COLD_LATENCY, COLD_USERS, Cold
from ._doubles import SECRET, IndexedMemoryAdapter, insert
from ._stats import LoopLagProbe


async def emulated_cold_run(
    users: int = COLD_USERS, latency: float = COLD_LATENCY, concurrency: int = COLD_CONCURRENCY
) -> Cold:
    async with EntraEmulator() as entra:
        middle = entra.register_app("middle-tier", scopes=["access_as_user"])
        downstream = entra.register_app("downstream", scopes=["Files.Read"])
        entra.grant_consent(middle, f"{downstream.app_id_uri}/Files.Read")
        plugin = OBOPlugin(
            applications={"api": {"scope": [f"{downstream.app_id_uri}/Files.Read"]}},
        )
        http = httpx.AsyncClient(
            verify=entra.ssl_context(),
            limits=httpx.Limits(max_connections=concurrency),
        )
        auth = BetterAuth(
            secret=SECRET,
            base_url="http://bench.example",
            adapter=IndexedMemoryAdapter(),
            social_providers={
                "microsoft": {
                    "client_id": middle.client_id,
                    "client_secret": middle.client_secret,
                    "tenant_id": entra.tenant_id,
                    "authority": entra.authority,
                    "disable_profile_photo": True,
                    "scopes": ["openid", "offline_access", f"{middle.client_id}/access_as_user"],
                }
            },
            plugins=[plugin],
            http_client=http,
        )
        ids = await _seed(auth, entra, middle, users)
        entra.faults.delay(latency, times=None, grant_type="obo")
        queue = iter(ids)

        async def worker() -> None:
            for user_id in queue:
                await plugin.get_obo_token(user_id=user_id, application_name="api")

        try:
            async with LoopLagProbe() as probe:
                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                wall = time.perf_counter() - started
        finally:
            await http.aclose()
        exchanges = sum(1 for r in entra.token_requests if r.grant_type.endswith("jwt-bearer"))
        return Cold(users, latency, concurrency, wall, exchanges, probe.worst)


async def _seed(auth: BetterAuth, entra: EntraEmulator, middle: object, users: int) -> list[str]:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    ids, user_rows, account_rows = [], [], []
    for i in range(users):
        person = entra.add_user(f"User {i}", f"user{i}@contoso.onmicrosoft.com")
        token = entra.issue_token(person, audience=middle, scopes=["access_as_user"])
        uid = f"user-{i:05d}"
        ids.append(uid)
        user_rows.append(
            {
                "id": uid,
                "email": f"user{i}@contoso.example",
                "name": "Ada",
                "emailVerified": False,
                "createdAt": now,
                "updatedAt": now,
            }
        )
        account_rows.append(
            {
                "id": f"ms-{i:05d}",
                "userId": uid,
                "providerId": "microsoft",
                "accountId": person.oid,
                "accessToken": token,
                "accessTokenExpiresAt": datetime.fromtimestamp(time.time() + 3600, timezone.utc),
                "scope": "openid",
                "createdAt": now,
                "updatedAt": now,
            }
        )
    await insert(auth.adapter, "user", user_rows)
    await insert(auth.adapter, "account", account_rows)
    return ids
