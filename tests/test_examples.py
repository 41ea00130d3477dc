"""Each example app against the emulator: sign in, call the downstream API through OBO,
then a claims challenge becomes 401 + WWW-Authenticate and signing in with the claims fixes it.

FastAPI and Litestar are served by uvicorn on loopback; Flask and Django through their
test clients (their better-auth integrations run the core on a loop of their own).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from examples.common import ExampleConfig, close

from better_auth_obo.demo._server import bind, serving
from better_auth_obo.testing import App, EntraEmulator, User


@dataclass
class World:
    entra: EntraEmulator
    web: App
    api: App
    ada: User

    def config(self, base_url: str, folder: Path) -> ExampleConfig:
        return ExampleConfig(
            client_id=self.web.client_id,
            client_secret=str(self.web.client_secret),
            tenant_id=self.entra.tenant_id,
            api_scope=self.api.scope("Tasks.Read"),
            api_url=f"{self.entra.api_url(self.api)}/whoami",
            base_url=base_url,
            database_url=f"sqlite+aiosqlite:///{folder / 'example.db'}",
            secret="example-secret-" + "x" * 32,
            authority=self.entra.authority,
            http_client=httpx.AsyncClient(verify=self.entra.ssl_context()),
        )

    def authorize(self, url: str) -> str:
        """The emulator's /authorize in auto sign-in mode; returns the callback path."""
        with httpx.Client(verify=self.entra.ssl_context()) as client:
            answer = client.get(url)
        assert answer.status_code == 302, answer.text
        parts = urlsplit(answer.headers["location"])
        assert "code=" in parts.query
        return f"{parts.path}?{parts.query}"


@pytest.fixture
def world(entra: EntraEmulator) -> World:
    web = entra.register_app("example-web", scopes=["access_as_user"])
    api = entra.register_app("example-tasks", scopes=["Tasks.Read"])
    entra.grant_consent(web, api.scope("Tasks.Read"))
    ada = entra.add_user("Ada Lovelace", "ada@contoso.onmicrosoft.com")
    entra.auto_sign_in(ada)
    return World(entra=entra, web=web, api=api, ada=ada)


def sign_in_body(claims: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "microsoft", "callbackURL": "/"}
    if claims:
        body["additionalParams"] = {"claims": claims}
        body["loginHint"] = "ada@contoso.onmicrosoft.com"
    return body


def check_challenge(status: int, headers: Any, body: dict[str, Any]) -> str:
    assert status == 401
    header = headers["www-authenticate"]
    assert 'error="insufficient_claims"' in header
    encoded = header.split('claims="', 1)[1].rstrip('"')
    assert json.loads(base64.b64decode(encoded)) == json.loads(body["claims"])
    assert body["code"] == "OBO_EXCHANGE_FAILED"
    return str(body["claims"])


# --- ASGI: FastAPI and Litestar on uvicorn ------------------------------------------------------


async def asgi_sign_in(
    client: httpx.AsyncClient, world: World, url: str, claims: str | None = None
) -> None:
    start = await client.post(
        f"{url}/api/auth/sign-in/social", json=sign_in_body(claims), headers={"origin": url}
    )
    assert start.status_code == 200, start.text
    back = await client.get(url + world.authorize(start.json()["url"]))
    assert back.status_code == 302 and "error" not in back.headers["location"]


@pytest.mark.parametrize("framework", ["fastapi", "litestar"])
async def test_asgi_example(framework: str, world: World, tmp_path: Path) -> None:
    from examples import fastapi_app, litestar_app

    module = {"fastapi": fastapi_app, "litestar": litestar_app}[framework]
    sock = bind()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = world.config(url, tmp_path)
    app = module.create_app(config)
    async with serving(app, sock, lifespan="on"), httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{url}/api/tasks")).status_code == 401
        await asgi_sign_in(client, world, url)
        ok = await client.get(f"{url}/api/tasks")
        assert ok.status_code == 200, ok.text
        assert ok.json()["name"] == "Ada Lovelace"
        assert ok.json()["scp"] == "Tasks.Read"

        await asgi_sign_in(client, world, url)  # new assertion: the cache does not serve it
        world.entra.require_mfa(world.ada, resource=world.api)
        denied = await client.get(f"{url}/api/tasks")
        claims = check_challenge(denied.status_code, denied.headers, denied.json())
        await asgi_sign_in(client, world, url, claims)
        again = await client.get(f"{url}/api/tasks")
        assert again.status_code == 200, again.text
    assert config.http_client is not None
    await config.http_client.aclose()


# --- WSGI: Flask and Django test clients ------------------------------------------------------


@dataclass
class WSGIClient:
    """The few calls the flow needs, over a framework's test client."""

    client: Any
    base_url: str

    def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, Any, Any]:
        r = self.client.post(
            path,
            data=json.dumps(body),
            content_type="application/json",
            headers={"Origin": self.base_url},
        )
        return r.status_code, r.headers, json.loads(_content(r) or b"null")

    def get(self, path: str) -> tuple[int, Any, Any]:
        r = self.client.get(path)
        body = (
            json.loads(_content(r))
            if r.headers.get("content-type", "").startswith("application/json")
            else None
        )
        return r.status_code, r.headers, body


def _content(response: Any) -> bytes:
    """Flask's test response has ``.data``, Django's ``.content``."""
    return bytes(response.data if hasattr(response, "data") else response.content)


def wsgi_flow(client: WSGIClient, world: World) -> None:
    def sign_in(claims: str | None = None) -> None:
        status, _, body = client.post_json("/api/auth/sign-in/social", sign_in_body(claims))
        assert status == 200, body
        status, headers, _ = client.get(world.authorize(body["url"]))
        assert status == 302 and "error" not in headers["location"]

    assert client.get("/api/tasks")[0] == 401
    sign_in()
    status, _, body = client.get("/api/tasks")
    assert status == 200, body
    assert body["name"] == "Ada Lovelace"
    sign_in()
    world.entra.require_mfa(world.ada, resource=world.api)
    status, headers, body = client.get("/api/tasks")
    claims = check_challenge(status, headers, body)
    sign_in(claims)
    assert client.get("/api/tasks")[0] == 200


def shut_down(integration: Any, config: ExampleConfig) -> None:
    """Close the engine and the HTTP client on the integration's own event loop."""
    assert config.http_client is not None
    integration._run(close(integration.auth))
    integration._run(config.http_client.aclose())


def test_flask_example(world: World, tmp_path: Path) -> None:
    from examples import flask_app

    config = world.config("http://localhost", tmp_path)
    app = flask_app.create_app(config)
    try:
        wsgi_flow(WSGIClient(app.test_client(), "http://localhost"), world)
    finally:
        shut_down(app.extensions["better_auth"], config)


def test_django_example(world: World, tmp_path: Path) -> None:
    from django.test import Client
    from examples import django_app

    config = world.config("http://testserver", tmp_path)
    django_app.setup(config)
    try:
        wsgi_flow(WSGIClient(Client(), "http://testserver"), world)
    finally:
        shut_down(django_app.integration, config)
