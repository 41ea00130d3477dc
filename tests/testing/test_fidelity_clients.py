"""Unmodified MSAL Python and azure-identity against the emulator, with only their
documented configuration: authority, instance discovery off, the emulator's CA."""

from __future__ import annotations

from collections.abc import Iterator

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import OnBehalfOfCredential
from azure.identity.aio import OnBehalfOfCredential as AsyncOnBehalfOfCredential
from entra_helpers import GRAPH_USER_READ, Trio, claims

from better_auth_obo.testing import App, EntraEmulator


@pytest.fixture
def session(entra: EntraEmulator) -> Iterator[requests.Session]:
    # trust_env=False: REQUESTS_CA_BUNDLE would otherwise override `verify` (protocol notes §6.2).
    with requests.Session() as s:
        s.verify = entra.ca_file
        s.trust_env = False
        yield s


def _msal(
    entra: EntraEmulator, app: App, session: requests.Session, credential: object = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        app.client_id,
        client_credential=credential or app.client_secret,
        authority=f"{entra.authority}/{entra.tenant_id}",
        instance_discovery=False,
        http_client=session,
    )


def test_msal_on_behalf_of(entra: EntraEmulator, trio: Trio, session: requests.Session) -> None:
    result = _msal(entra, trio.api, session).acquire_token_on_behalf_of(
        trio.assertion, [trio.downstream.scope("Files.Read")]
    )
    assert "error" not in result, result
    assert claims(result["access_token"])["aud"] == trio.downstream.client_id
    assert result["id_token_claims"]["oid"] == trio.user.oid
    logged = entra.token_requests[-1]
    assert (logged.grant_type, logged.user_oid, logged.status) == (
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        trio.user.oid,
        200,
    )


@pytest.mark.parametrize("sha256", [False, True], ids=["RS256-x5t", "PS256-x5t#S256"])
def test_msal_with_certificate(
    entra: EntraEmulator, trio: Trio, session: requests.Session, sha256: bool
) -> None:
    cert = trio.api.add_certificate()
    app = _msal(entra, trio.api, session, cert.msal_credential(sha256=sha256))
    result = app.acquire_token_on_behalf_of(trio.assertion, [GRAPH_USER_READ])
    assert "access_token" in result, result
    assert entra.token_requests[-1].auth_method == "private_key_jwt"


def test_msal_returns_entras_error_dict_unchanged(
    entra: EntraEmulator, trio: Trio, session: requests.Session
) -> None:
    entra.require_mfa(trio.user)
    result = _msal(entra, trio.api, session).acquire_token_on_behalf_of(
        trio.assertion, [GRAPH_USER_READ]
    )
    assert result["error"] == "interaction_required"
    assert result["error_codes"] == [50076]
    assert result["suberror"] == "basic_action"
    assert result["claims"].startswith('{"access_token"')


def test_msal_client_credentials_are_cached(
    entra: EntraEmulator, trio: Trio, session: requests.Session
) -> None:
    entra.grant_consent(trio.api, trio.downstream.scope("Files.Read.All"))
    app = _msal(entra, trio.api, session)
    scopes = [f"{trio.downstream.app_id_uri}/.default"]
    first = app.acquire_token_for_client(scopes)
    second = app.acquire_token_for_client(scopes)

    assert claims(first["access_token"])["roles"] == ["Files.Read.All"]
    assert second["token_source"] == "cache"  # no client_info for client credentials
    assert sum(r.grant_type == "client_credentials" for r in entra.token_requests) == 1


def _credential(entra: EntraEmulator, trio: Trio, cls: type, **kwargs: object) -> object:
    return cls(
        entra.tenant_id,
        trio.api.client_id,
        client_secret=kwargs.pop("client_secret", trio.api.client_secret),
        user_assertion=trio.assertion,
        authority=entra.authority,
        disable_instance_discovery=True,
        connection_verify=entra.ca_file,
        **kwargs,
    )


def test_azure_identity_on_behalf_of_sync(entra: EntraEmulator, trio: Trio) -> None:
    with _credential(entra, trio, OnBehalfOfCredential) as credential:  # type: ignore[attr-defined]
        token = credential.get_token(GRAPH_USER_READ)
        again = credential.get_token(GRAPH_USER_READ)

    assert claims(token.token)["aud"] == "https://graph.microsoft.com"
    assert again.token == token.token  # the id token let azure-identity cache it
    assert len(entra.token_requests) == 1


def test_azure_identity_certificate(entra: EntraEmulator, trio: Trio) -> None:
    cert = trio.api.add_certificate()
    with _credential(
        entra, trio, OnBehalfOfCredential, client_secret=None, client_certificate=cert.pem_bundle
    ) as credential:  # type: ignore[attr-defined]
        token = credential.get_token(GRAPH_USER_READ)
    assert claims(token.token)["appidacr"] == "2"


async def test_azure_identity_on_behalf_of_async(entra: EntraEmulator, trio: Trio) -> None:
    async with _credential(entra, trio, AsyncOnBehalfOfCredential) as credential:  # type: ignore[attr-defined]
        token = await credential.get_token(trio.downstream.scope("Files.Read"))
    assert claims(token.token)["scp"] == "Files.Read"


def test_azure_identity_raises_with_entras_description(entra: EntraEmulator, trio: Trio) -> None:
    entra.revoke_consent(trio.api)
    credential = _credential(entra, trio, OnBehalfOfCredential)
    with credential, pytest.raises(ClientAuthenticationError, match="AADSTS65001"):  # type: ignore[attr-defined]
        credential.get_token(GRAPH_USER_READ)  # type: ignore[attr-defined]


async def test_azure_identity_async_sees_a_throttle_then_succeeds(
    entra: EntraEmulator, trio: Trio
) -> None:
    fault = entra.faults.throttle(retry_after=0)
    async with _credential(entra, trio, AsyncOnBehalfOfCredential) as credential:  # type: ignore[attr-defined]
        token = await credential.get_token(GRAPH_USER_READ)
    assert token.token
    assert fault.hits == 1
    assert [r.status for r in entra.token_requests] == [429, 200]
