"""The API and MCP server examples (``examples/api_fastapi.py``, ``examples/mcp_server.py``)
against the emulator over real sockets: inbound bearer tokens verified by ``OBOClient``
before any request to Entra ID, one exchange per token under concurrency, and Entra's
claims challenge passed back to the client.

The FastAPI app runs in-process through ``httpx.ASGITransport`` (its lifespan entered
around the client); the MCP server is served over streamable HTTP by uvicorn on loopback
and called by ``fastmcp.Client`` with bearer auth.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import httpx2
import jwt
import pytest
from examples.api_common import ApiConfig
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from tests._leaks import register

from better_auth_obo.demo._server import bind, serving
from better_auth_obo.testing import App, EntraEmulator, User

GRAPH = "https://graph.microsoft.com"
GRAPH_USER_READ = f"{GRAPH}/User.Read"
OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class World:
    entra: EntraEmulator
    app: App
    user: User
    config: ApiConfig

    def token(self, **options: object) -> str:
        options.setdefault("scopes", ["access_as_user"])
        token = self.entra.issue_token(self.user, audience=self.app, **options)  # type: ignore[arg-type]
        register(token)
        return token

    def exchanges(self) -> int:
        return sum(1 for r in self.entra.token_requests if r.grant_type == OBO_GRANT)


@pytest.fixture
async def world(entra: EntraEmulator) -> AsyncIterator[World]:
    app = entra.register_app("notes-api", scopes=["access_as_user", "Notes.Read"])
    entra.grant_consent(app, GRAPH_USER_READ)
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    register(app.client_secret)
    http = httpx.AsyncClient(verify=entra.ssl_context())
    config = ApiConfig(
        client_id=app.client_id,
        client_secret=str(app.client_secret),
        tenant_id=entra.tenant_id,
        graph_url=entra.graph_url,
        authority=entra.authority,
        http_client=http,
    )
    async with http:
        yield World(entra, app, user, config)


def _tampered(token: str) -> str:
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["oid"] = "00000000-0000-0000-0000-00000000dead"
    forged = jwt.encode(claims, "k" * 32, algorithm="HS256").split(".")[1]
    return ".".join([header, forged, signature])


def _foreign_audience(world: World) -> str:
    other = world.entra.register_app("someone-elses-api", scopes=["access_as_user"])
    return world.entra.issue_token(world.user, audience=other, scopes=["access_as_user"])


def _other_tenant(world: World) -> str:
    tenant = world.entra.add_tenant("fabrikam.example")
    stranger = world.entra.add_user("Mallory", "mallory@fabrikam.example", tenant=tenant)
    return world.entra.issue_token(stranger, audience=world.app, scopes=["access_as_user"])


#: Inbound tokens refused before any request to Entra ID, and the ``reason`` they get.
BAD_TOKENS: list[tuple[str, Callable[[World], str], tuple[str, ...]]] = [
    ("tampered", lambda w: _tampered(w.token()), ("signature",)),
    ("foreign_audience", _foreign_audience, ("audience",)),
    (
        "graph_token",
        lambda w: w.entra.issue_token(w.user, audience=GRAPH, client=w.app),
        ("graph_audience",),
    ),
    ("other_tenant", _other_tenant, ("tenant", "issuer")),
    ("expired", lambda w: w.token(lifetime=1, issued_at=time.time() - 3600), ("expired",)),
    ("id_token", lambda w: w.entra.issue_id_token(w.user, client=w.app), ("id_token",)),
    ("not_a_jwt", lambda w: "not-a-jwt-at-all", ("malformed",)),
]


# --- FastAPI ------------------------------------------------------------------------------------


@asynccontextmanager
async def api_client(config: ApiConfig) -> AsyncIterator[httpx.AsyncClient]:
    from examples.api_fastapi import create_app

    app = create_app(config)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api.test") as client,
    ):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_api_100_concurrent_requests_with_one_token_make_one_exchange(world: World) -> None:
    token = world.token()
    async with api_client(world.config) as client:
        answers = await asyncio.gather(
            *(client.get("/me", headers=bearer(token)) for _ in range(100))
        )
        assert [a.status_code for a in answers] == [200] * 100, answers[0].text
        assert {a.json()["id"] for a in answers} == {world.user.oid}
        assert answers[0].json()["displayName"] == "Ada Lovelace"
        assert world.exchanges() == 1
        # Another user's token is another exchange.
        grace = world.entra.add_user("Grace Hopper", "grace@contoso.example")
        theirs = world.entra.issue_token(grace, audience=world.app, scopes=["access_as_user"])
        register(theirs)
        other = await client.get("/me", headers=bearer(theirs))
        assert other.status_code == 200 and other.json()["id"] == grace.oid
        assert world.exchanges() == 2


@pytest.mark.parametrize(
    ("make", "reasons"), [b[1:] for b in BAD_TOKENS], ids=[b[0] for b in BAD_TOKENS]
)
async def test_api_refuses_a_bad_token_with_401_before_any_request_to_entra(
    world: World, make: Callable[[World], str], reasons: tuple[str, ...]
) -> None:
    token = make(world)
    register(token)
    async with api_client(world.config) as client:
        answer = await client.get("/me", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    header = answer.headers["www-authenticate"]
    assert header.startswith('Bearer error="invalid_token", error_description="'), header
    assert header.endswith('"') and header.count('"') == 4  # one quoted description, RFC 6750
    body = answer.json()
    assert body["code"] == "INVALID_ASSERTION" and body["reason"] in reasons, body
    assert token not in answer.text and token not in header
    assert world.entra.token_requests == ()  # not one request to Entra ID


@pytest.mark.parametrize(
    "authorization", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "bearer"]
)
async def test_api_without_a_bearer_token_answers_a_bare_challenge(
    world: World, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with api_client(world.config) as client:
        answer = await client.get("/me", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"  # RFC 6750 §3.1: no error code
    assert world.entra.token_requests == ()


async def test_api_a_token_without_the_required_scope_is_403(world: World) -> None:
    token = world.token(scopes=["Notes.Read"])
    async with api_client(world.config) as client:
        answer = await client.get("/me", headers=bearer(token))
    assert answer.status_code == 403, answer.text
    header = answer.headers["www-authenticate"]
    assert header.startswith('Bearer error="insufficient_scope", scope="access_as_user"'), header
    assert "access_as_user" in answer.json()["message"]
    assert world.entra.token_requests == ()


async def test_api_passes_entras_claims_challenge_back_to_the_client(world: World) -> None:
    world.entra.require_mfa(world.user, resource=GRAPH)
    async with api_client(world.config) as client:
        denied = await client.get("/me", headers=bearer(world.token()))
        assert denied.status_code == 401, denied.text
        header = denied.headers["www-authenticate"]
        # Microsoft's format for an API's claims challenge.
        assert header.startswith('Bearer realm="", authorization_uri="'), header
        authorize = f"{world.entra.authority}/{world.entra.tenant_id}/oauth2/v2.0/authorize"
        assert f'authorization_uri="{authorize}"' in header
        assert 'error="insufficient_claims"' in header
        encoded = header.split('claims="', 1)[1].rstrip('"')
        claims = json.loads(base64.b64decode(encoded, validate=True))
        assert "access_token" in claims
        assert claims == json.loads(denied.json()["claims"])
        assert world.exchanges() == 1
        # The client gets a token after MFA (with those claims) and calls again.
        again = await client.get("/me", headers=bearer(world.token(mfa=True)))
        assert again.status_code == 200, again.text
        assert again.json()["id"] == world.user.oid


async def test_api_answers_503_with_retry_after_when_entra_is_unavailable(world: World) -> None:
    world.entra.faults.throttle(retry_after=120, grant_type="obo")
    async with api_client(world.config) as client:
        answer = await client.get("/me", headers=bearer(world.token()))
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "120"
    assert answer.json()["code"] == "ENTRA_UNAVAILABLE"
    assert world.exchanges() == 1


# --- MCP server on FastMCP --------------------------------------------------------------------


@asynccontextmanager
async def mcp_url(config: ApiConfig) -> AsyncIterator[str]:
    from examples.mcp_server import create_server

    app = create_server(config).http_app(path="/mcp")
    sock = bind()
    async with serving(app, sock, lifespan="on"):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


def mcp_client(url: str, token: str, statuses: list[int] | None = None) -> Client:
    """A FastMCP client with bearer auth; ``statuses`` collects every HTTP status it sees."""

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    def http_client(**options: object) -> httpx2.AsyncClient:
        options.setdefault("timeout", httpx2.Timeout(30.0, read=300.0))
        return httpx2.AsyncClient(event_hooks={"response": [record]}, **options)  # type: ignore[arg-type]

    transport = StreamableHttpTransport(url, auth=token, httpx_client_factory=http_client)
    return Client(transport, timeout=30)


async def test_mcp_tool_calls_graph_as_the_clients_user(world: World) -> None:
    token = world.token()
    async with mcp_url(world.config) as url, mcp_client(url, token) as client:
        tools = {t.name for t in await client.list_tools()}
        assert "my_profile" in tools
        result = await client.call_tool("my_profile")
    profile = result.structured_content
    assert profile is not None and profile["id"] == world.user.oid
    assert profile["displayName"] == "Ada Lovelace"
    assert world.exchanges() == 1  # the verifier's exchange; the tool's was a cache hit


async def test_mcp_concurrent_tool_calls_with_one_token_make_one_exchange(world: World) -> None:
    token = world.token()

    async def session(calls: int) -> list[str]:
        async with mcp_client(url, token) as client:
            results = await asyncio.gather(*(client.call_tool("my_profile") for _ in range(calls)))
        return [r.structured_content["id"] for r in results if r.structured_content]

    async with mcp_url(world.config) as url:
        ids = await asyncio.gather(*(session(25) for _ in range(4)))
    assert [len(i) for i in ids] == [25] * 4
    assert {oid for i in ids for oid in i} == {world.user.oid}
    assert world.exchanges() == 1


@pytest.mark.parametrize(
    ("make", "reasons"), [b[1:] for b in BAD_TOKENS], ids=[b[0] for b in BAD_TOKENS]
)
async def test_mcp_refuses_a_bad_token_before_any_request_to_entra(
    world: World, make: Callable[[World], str], reasons: tuple[str, ...]
) -> None:
    token = make(world)
    register(token)
    async with mcp_url(world.config) as url:
        statuses: list[int] = []
        with pytest.raises(MCPError):
            async with mcp_client(url, token, statuses):
                pytest.fail("the MCP session opened with a bad token")
        # The MCP SDK reports any non-2xx as an error response; the HTTP answer was 401
        # with invalid_token (the same request over plain HTTP shows the header).
        status, header = await raw_post(url, token)
    assert statuses and set(statuses) == {401}  # every request the client made was refused
    assert status == 401 and 'error="invalid_token"' in header
    assert world.entra.token_requests == ()


async def test_mcp_without_the_required_scope_is_403_and_without_a_token_401(
    world: World,
) -> None:
    token = world.token(scopes=["Notes.Read"])
    async with mcp_url(world.config) as url:
        status, header = await raw_post(url, token)
        assert status == 403 and 'error="insufficient_scope"' in header
        status, header = await raw_post(url, None)
        assert status == 401 and "error=" not in header
        assert f'scope="{world.app.client_id}/access_as_user"' in header
    assert world.entra.token_requests == ()


async def test_mcp_tool_reports_entras_claims_challenge(world: World) -> None:
    world.entra.require_mfa(world.user, resource=GRAPH)
    async with mcp_url(world.config) as url:
        async with mcp_client(url, world.token()) as client:
            with pytest.raises(ToolError, match="insufficient_claims") as info:
                await client.call_tool("my_profile")
        claims = json.loads(str(info.value).split("claims=", 1)[1])
        assert "access_token" in claims
        # After MFA the client's new token works.
        async with mcp_client(url, world.token(mfa=True)) as client:
            result = await client.call_tool("my_profile")
    assert result.structured_content and result.structured_content["id"] == world.user.oid


async def raw_post(url: str, token: str | None) -> tuple[int, str]:
    """An MCP initialize request over plain HTTP; the status and WWW-Authenticate."""
    headers = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        headers.update(bearer(token))
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(url, json=body, headers=headers)
    return answer.status_code, answer.headers.get("www-authenticate", "")


def test_entra_refusing_the_callers_token_is_the_clients_to_fix() -> None:
    """401 when Entra refused the caller's own token, 403 for consent or policy: a 5xx would
    invite retries, each another request to Entra."""
    from examples.api_common import ApiConfig, error_response

    from better_auth_obo import EntraError

    config = ApiConfig(client_id="c", client_secret="s", tenant_id="t")
    for reason, status in (
        ("assertion_invalid", 401),
        ("consent_required", 403),
        ("blocked_by_policy", 403),
        ("client_credential_invalid", 502),
    ):
        error = EntraError("refused", error="invalid_grant", reason=reason)
        assert error_response(error, config)[0] == status, reason
