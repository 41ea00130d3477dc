"""The v1 endpoints the v1 discovery document advertises: ``/oauth2/token`` and
``/oauth2/authorize`` with ``resource=``."""

from __future__ import annotations

import httpx
from entra_helpers import GRAPH_USER_READ, REDIRECT_URI, Trio, claims, redirect_query

from better_auth_obo.testing import EntraEmulator

GRAPH = "https://graph.microsoft.com"


def test_v1_discovery_points_at_served_endpoints(entra: EntraEmulator, http: httpx.Client) -> None:
    document = http.get(f"{entra.authority}/{entra.tenant_id}/.well-known/openid-configuration")
    for key in ("token_endpoint", "authorization_endpoint"):
        probe = http.request("POST" if key == "token_endpoint" else "GET", document.json()[key])
        assert probe.status_code != 404, key


def test_v1_on_behalf_of_with_resource(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    form = {k: v for k, v in trio.obo_form().items() if k != "scope"}
    answer = http.post(
        f"{entra.authority}/{entra.tenant_id}/oauth2/token", data={**form, "resource": GRAPH}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["resource"] == GRAPH and body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], str) and int(body["expires_in"]) > 0
    assert int(body["expires_on"]) - int(body["not_before"]) == int(body["expires_in"])
    token = claims(body["access_token"])
    assert token["aud"] == GRAPH and "User.Read" in token["scp"].split()
    me = http.get(
        f"{entra.graph_url}/v1.0/me", headers={"authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["id"] == trio.user.oid


def test_v1_client_credentials_with_resource(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    answer = http.post(
        f"{entra.authority}/{entra.tenant_id}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": trio.api.client_id,
            "client_secret": trio.api.client_secret,
            "resource": trio.downstream.app_id_uri,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["resource"] == trio.downstream.app_id_uri


def test_v1_authorize_with_resource(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.auto_sign_in(trio.user)
    start = http.get(
        f"{entra.authority}/{entra.tenant_id}/oauth2/authorize",
        params={
            "client_id": trio.api.client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "resource": GRAPH,
            "state": "s",
        },
    )
    assert start.status_code == 302, start.text
    code = redirect_query(start.headers["location"])["code"]
    tokens = http.post(
        f"{entra.authority}/{entra.tenant_id}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "client_id": trio.api.client_id,
            "client_secret": trio.api.client_secret,
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "resource": GRAPH,
        },
    ).json()
    assert tokens["resource"] == GRAPH and "refresh_token" in tokens and "id_token" in tokens
    assert GRAPH_USER_READ.rsplit("/", 1)[1] in claims(tokens["access_token"])["scp"].split()
