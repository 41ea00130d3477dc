"""The demo's world: the Entra ID emulator's tenant, and the app's BetterAuth + OBOPlugin.

Everything a real deployment configures is here, with the emulator standing in for
Microsoft: the middle-tier app registration (the demo web app, exposing
``access_as_user``), a downstream API (``Tasks.Read``), admin consent for Microsoft
Graph ``User.Read`` and the API, two users. The Microsoft provider is configured the
way the README tells users to: the app's own scope in GUID form, no ``User.Read``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from better_auth import BetterAuth
from better_auth.adapters.sqlalchemy import SQLAlchemyAdapter
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from better_auth_obo import OBOPlugin
from better_auth_obo.testing import App, EntraEmulator, User

__all__ = ["DOWNSTREAM_SCOPE", "DemoAuth", "Tenant", "build_auth", "populate"]

DOWNSTREAM_SCOPE = "Tasks.Read"
OWN_SCOPE = "access_as_user"


@dataclass(frozen=True, slots=True)
class Tenant:
    """What the demo registered in the emulator."""

    entra: EntraEmulator
    web: App  # the middle tier: our FastAPI app
    tasks: App  # a downstream API it calls on the user's behalf
    users: tuple[User, ...]

    @property
    def tasks_url(self) -> str:
        """The downstream API's ``whoami`` endpoint."""
        return f"{self.entra.api_url(self.tasks)}/whoami"


def populate(entra: EntraEmulator) -> Tenant:
    """Register the demo's apps, consent and users in a running emulator."""
    web = entra.register_app("obo-demo-web", scopes=[OWN_SCOPE])
    tasks = entra.register_app("obo-demo-tasks-api", scopes=[DOWNSTREAM_SCOPE])
    entra.grant_consent(web, "https://graph.microsoft.com/User.Read")
    entra.grant_consent(web, tasks.scope(DOWNSTREAM_SCOPE))
    domain = entra.tenant.domain
    users = (
        entra.add_user("Ada Lovelace", f"ada@{domain}"),
        entra.add_user("Grace Hopper", f"grace@{domain}"),
    )
    return Tenant(entra=entra, web=web, tasks=tasks, users=users)


@dataclass(frozen=True, slots=True)
class DemoAuth:
    """The demo app's BetterAuth, its OBOPlugin, and what must be closed after."""

    auth: BetterAuth
    obo: OBOPlugin
    engine: AsyncEngine
    http: httpx.AsyncClient
    database: Path

    async def close(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()


async def build_auth(tenant: Tenant, *, base_url: str, folder: Path) -> DemoAuth:
    """BetterAuth + OBOPlugin on a SQLite file in ``folder``, tables created."""
    web = tenant.web
    obo = OBOPlugin(
        applications={
            "graph": {"scope": ["https://graph.microsoft.com/.default"]},
            "tasks": {"scope": [tenant.tasks.scope(DOWNSTREAM_SCOPE)]},
        }
    )
    microsoft: dict[str, Any] = {
        "client_id": web.client_id,
        "client_secret": web.client_secret,
        "tenant_id": tenant.entra.tenant_id,
        "authority": tenant.entra.authority,
        # The app's own scope in GUID form (api:// fails at refresh: AADSTS90009), and no
        # User.Read: the stored token must be for this app to be an OBO assertion.
        "scopes": ["openid", "profile", "email", "offline_access", f"{web.client_id}/{OWN_SCOPE}"],
        "disable_profile_photo": True,
        # The demo signs in through the redirect flow only.
        "disable_id_token_sign_in": True,
    }
    database = folder / "demo.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    adapter = SQLAlchemyAdapter(engine)
    http = httpx.AsyncClient(verify=tenant.entra.ssl_context())
    auth = BetterAuth(
        secret=secrets.token_urlsafe(32),
        base_url=base_url,
        adapter=adapter,
        social_providers={"microsoft": microsoft},
        plugins=[obo],
        http_client=http,
    )
    await adapter.create_tables()
    return DemoAuth(auth=auth, obo=obo, engine=engine, http=http, database=database)
