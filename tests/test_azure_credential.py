"""``obo.credential``: the Azure SDK async credential, driven by azure-core's own policy
and by the Microsoft Graph SDK against the emulator's Graph."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
from tests.conftest import Database
from tests.test_e2e import World, sign_in, world

from better_auth_obo import OBOPlugin
from better_auth_obo._azure import scope_resource

__all__ = ["database", "world"]

GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


@pytest.fixture
def database() -> Database:
    """The credential adds nothing storage-specific: the memory adapter is enough here."""
    return Database("memory", None)


def test_the_plugin_never_imports_azure_core() -> None:
    code = (
        "import sys, better_auth_obo, better_auth_obo.testing\n"
        "p = better_auth_obo.OBOPlugin(applications={'g': {'scope': ['User.Read']}})\n"
        "p.http_auth(user_id='u', application_name='g')\n"
        "assert not any(m.startswith('azure') for m in sys.modules), 'azure imported'\n"
        "p.credential(user_id='u', application_name='g')\n"
        "assert 'azure.core' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_conforms_to_azure_cores_runtime_protocols(world: World) -> None:
    credential = world.plugin.credential(user_id="u", application_name="graph")
    assert isinstance(credential, AsyncTokenCredential)
    assert isinstance(credential, AsyncSupportsTokenInfo)
    async with credential as entered:
        assert entered is credential
    assert "u" in repr(credential) and "graph" in repr(credential)


async def test_get_token_and_get_token_info_serve_the_cached_obo_token(world: World) -> None:
    user_id = await sign_in(world)
    credential = world.plugin.credential(user_id=user_id, application_name="graph")
    token = await credential.get_token(GRAPH_DEFAULT)
    assert isinstance(token, AccessToken)
    account = await world.plugin.get_obo_token(user_id=user_id, application_name="graph")
    assert token.token == account["accessToken"]
    assert token.expires_on == int(account["accessTokenExpiresAt"].timestamp())
    info = await credential.get_token_info("User.Read", options={})
    assert isinstance(info, AccessTokenInfo)
    assert info.token == token.token and info.token_type == "Bearer"
    assert info.refresh_on is not None and time.time() < info.refresh_on < info.expires_on
    # The SDK asks again within the revalidation bound, so a revoke reaches it.
    assert info.refresh_on <= time.time() + world.plugin.cache_revalidate_after + 1
    assert world.exchanges() == 1


async def test_claims_from_the_sdk_make_a_new_exchange(world: World) -> None:
    user_id = await sign_in(world)
    credential = world.plugin.credential(user_id=user_id, application_name="graph")
    first = await credential.get_token(GRAPH_DEFAULT)
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    second = await credential.get_token(GRAPH_DEFAULT, claims=claims, enable_cae=True)
    third = await credential.get_token_info(GRAPH_DEFAULT, options={"claims": claims})
    assert len({first.token, second.token, third.token}) == 3
    assert world.exchanges() == 3


@pytest.mark.parametrize(
    "scopes",
    [
        ("https://management.azure.com/.default",),
        ("https://graph.microsoft.com/.default", "api://other/.default"),
        ("00000002-0000-0000-c000-000000000000/.default",),
        ("openid",),
        ("",),
    ],
)
async def test_scopes_of_another_resource_are_refused_naming_the_configured_ones(
    world: World, scopes: tuple[str, ...]
) -> None:
    credential = world.plugin.credential(user_id="u", application_name="graph")
    with pytest.raises(ValueError, match="configured scopes") as info:
        await credential.get_token(*scopes)
    assert "https://graph.microsoft.com/User.Read" in str(info.value)
    assert world.exchanges() == 0


async def test_tenant_other_than_the_users_is_refused(world: World) -> None:
    credential = world.plugin.credential(user_id="u", application_name="graph")
    with pytest.raises(ValueError, match="own tenant"):
        await credential.get_token(GRAPH_DEFAULT, tenant_id="00000000-0000-0000-0000-000000000001")
    user_id = await sign_in(world)
    credential = world.plugin.credential(user_id=user_id, application_name="graph")
    token = await credential.get_token(GRAPH_DEFAULT, tenant_id=world.entra.tenant_id.upper())
    assert token.token


def test_credential_arguments_are_checked() -> None:
    plugin = OBOPlugin(applications={"graph": {"scope": [GRAPH_DEFAULT]}})
    with pytest.raises(ValueError, match="Unknown OBO application 'x'"):
        plugin.credential(user_id="u", application_name="x")
    with pytest.raises(TypeError, match="user_id"):
        plugin.credential(user_id="", application_name="graph")


@pytest.mark.parametrize(
    ("scope", "resource"),
    [
        ("https://graph.microsoft.com/.default", "https://graph.microsoft.com"),
        ("https://graph.microsoft.com/User.Read", "https://graph.microsoft.com"),
        ("https://graph.microsoft.com//.default", "https://graph.microsoft.com"),
        ("User.Read", "https://graph.microsoft.com"),
        ("00000003-0000-0000-c000-000000000000/.default", "https://graph.microsoft.com"),
        ("api://contoso-api/access_as_user", "api://contoso-api"),
        ("api://contoso-api", "api://contoso-api"),
        ("https://contoso.com/api/.default", "https://contoso.com/api"),
        (
            "1b1c3c4d-0000-4000-8000-000000000001/access_as_user",
            "1b1c3c4d-0000-4000-8000-000000000001",
        ),
        ("openid", None),
        ("offline_access", None),
    ],
)
def test_scope_resource(scope: str, resource: str | None) -> None:
    assert scope_resource(scope) == resource


# --- azure-core's own bearer policy ------------------------------------------------------------


async def test_azure_core_bearer_policy_sends_the_token_and_keeps_it(world: World) -> None:
    from azure.core.pipeline import AsyncPipeline
    from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.core.rest import HttpRequest

    user_id = await sign_in(world)
    credential = world.plugin.credential(user_id=user_id, application_name="graph")
    policy = AsyncBearerTokenCredentialPolicy(credential, GRAPH_DEFAULT, enable_cae=True)
    transport = AioHttpTransport(connection_verify=world.entra.ca_file)
    async with AsyncPipeline(transport, policies=[policy]) as pipeline:
        for _ in range(3):
            response = await pipeline.run(HttpRequest("GET", f"{world.entra.graph_url}/v1.0/me"))
            assert response.http_response.status_code == 200
            assert response.http_response.json()["id"] == world.user.oid
    assert world.exchanges() == 1


# --- the Microsoft Graph SDK ---------------------------------------------------------------------


# msgraph-sdk 1.65 and kiota-abstractions 1.16 warn about their own generated classes.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph.*")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions.*")
async def test_graph_sdk_reads_me_through_the_credential(world: World) -> None:
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.graph_request_adapter import options as graph_sdk_options
    from msgraph_core import GraphClientFactory

    user_id = await sign_in(world)
    credential = world.plugin.credential(user_id=user_id, application_name="graph")
    # Pointed at the emulator's Graph: its host allowed, its CA trusted.
    provider = AzureIdentityAuthenticationProvider(
        credential, scopes=[GRAPH_DEFAULT], allowed_hosts=["127.0.0.1"]
    )
    # The SDK's own middleware (it turns /users/me-token-to-replace into /me), over a
    # transport that trusts the emulator's CA. msgraph-core 1.5's AsyncGraphTransport does
    # not close the transport it wraps, so the test closes it.
    transport = httpx.AsyncHTTPTransport(verify=world.entra.ssl_context())
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(transport=transport), options=graph_sdk_options
    )
    try:
        adapter = GraphRequestAdapter(provider, client=http)
        adapter.base_url = f"{world.entra.graph_url}/v1.0"
        graph = GraphServiceClient(request_adapter=adapter)
        me = await graph.me.get()
        assert me is not None
        assert me.id == world.user.oid and me.user_principal_name == world.user.upn
        again = await graph.me.get()
        assert again is not None and again.display_name == "Ada Lovelace"
    finally:
        await http.aclose()
        await transport.aclose()
    assert world.exchanges() == 1  # the second call made no token request
