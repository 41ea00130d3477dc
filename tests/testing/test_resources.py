"""Fake Microsoft Graph and the generic protected downstream API."""

from __future__ import annotations

import httpx
import pytest
from entra_helpers import GRAPH_USER_READ, Trio

from better_auth_obo.testing import EntraEmulator


def _obo(entra: EntraEmulator, http: httpx.Client, trio: Trio, scope: str) -> str:
    response = http.post(entra.token_endpoint(), data=trio.obo_form(scope))
    return str(response.json()["access_token"])


def _get(http: httpx.Client, url: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return http.get(url, headers=headers)


def test_graph_me_returns_graphs_user_shape(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    me = _get(http, f"{entra.graph_url}/v1.0/me", _obo(entra, http, trio, GRAPH_USER_READ))
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == trio.user.oid
    assert body["@odata.context"].endswith("/v1.0/$metadata#users/$entity")
    assert set(body) == {
        "@odata.context",
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    }


def test_graph_me_select(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    token = _obo(entra, http, trio, GRAPH_USER_READ)
    body = _get(http, f"{entra.graph_url}/v1.0/me?$select=displayName,id", token).json()
    assert set(body) == {"@odata.context", "displayName", "id"}
    assert "users(displayName,id)" in body["@odata.context"]


@pytest.mark.parametrize(
    ("token_kind", "status", "message"),
    [
        ("none", 401, "Access token is empty."),
        ("garbage", 401, "CompactToken parsing failed"),
        ("wrong_audience", 401, "Invalid audience"),
        ("expired", 401, "Lifetime validation failed"),
        ("app_only", 400, "/me request is only valid with delegated authentication flow."),
    ],
)
def test_graph_rejects_bad_tokens_in_graphs_envelope(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, token_kind: str, status: int, message: str
) -> None:
    now = entra._directory.clock()
    token = {
        "none": None,
        "garbage": "abc",
        "wrong_audience": trio.assertion,
        "expired": entra.issue_token(
            trio.user,
            audience="https://graph.microsoft.com",
            client=trio.api,
            issued_at=now - 7200,
            lifetime=60,
        ),
        "app_only": entra.issue_app_token(trio.api, audience="https://graph.microsoft.com"),
    }[token_kind]
    response = _get(http, f"{entra.graph_url}/v1.0/me", token)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    if status == 401:
        assert error["code"] == "InvalidAuthenticationToken"
        assert response.headers["www-authenticate"].startswith("Bearer ")


def test_graph_rejects_tokens_after_key_removed(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    token = _obo(entra, http, trio, GRAPH_USER_READ)
    entra.rotate_keys(keep_previous=False)
    response = _get(http, f"{entra.graph_url}/v1.0/me", token)
    assert response.json()["error"]["message"] == "Access token validation failure."


def test_downstream_api_whoami(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    token = _obo(entra, http, trio, trio.downstream.scope("Files.Read"))
    body = _get(http, f"{entra.api_url(trio.downstream)}/whoami", token).json()
    assert body["oid"] == trio.user.oid
    assert body["azp"] == trio.api.client_id
    assert body["scp"] == "Files.Read"


def test_downstream_api_wants_its_audience_and_a_scope(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    url = f"{entra.api_url(trio.downstream)}/whoami"
    assert _get(http, url, trio.assertion).status_code == 401
    no_scope = entra.issue_token(trio.user, audience=trio.downstream, scopes=[])
    denied = _get(http, url, no_scope)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    app_token = entra.issue_app_token(trio.api, audience=trio.downstream, roles=["Files.Read.All"])
    assert _get(http, url, app_token).json()["roles"] == ["Files.Read.All"]
