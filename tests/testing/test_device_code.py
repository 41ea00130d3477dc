"""The device code flow, driven by MSAL Python (``initiate_device_flow`` +
``acquire_token_by_device_flow``) and over the wire."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import msal
import pytest
import requests
from entra_helpers import GRAPH_USER_READ, claims

from better_auth_obo.testing import EntraEmulator

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def session(entra: EntraEmulator) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.verify, s.trust_env = entra.ca_file, False
        yield s


def _public_app(
    entra: EntraEmulator, client_id: str, session: requests.Session
) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        client_id,
        authority=f"{entra.authority}/{entra.tenant_id}",
        instance_discovery=False,
        http_client=session,
    )


def test_msal_device_flow_signs_in_once_the_user_approves(
    entra: EntraEmulator, session: requests.Session
) -> None:
    cli = entra.register_app("cli", public_client=True)
    entra.grant_consent(cli, GRAPH_USER_READ)
    ada = entra.add_user("Ada Lovelace", "ada@contoso.example")
    app = _public_app(entra, cli.client_id, session)
    flow = app.initiate_device_flow(scopes=["User.Read"])
    assert flow["verification_uri"] == f"{entra.authority}/devicelogin"
    assert flow["user_code"] in flow["message"]
    # The user approves a moment later, as on a phone; MSAL polls until then.
    approve = threading.Timer(1.5, entra.approve_device_code, (flow["user_code"], ada))
    approve.start()
    try:
        result = app.acquire_token_by_device_flow(flow)
    finally:
        approve.cancel()
    assert "access_token" in result, result
    assert claims(result["access_token"])["oid"] == ada.oid
    assert result["id_token_claims"]["preferred_username"] == ada.upn
    pending = [r for r in entra.token_requests if r.grant_type == DEVICE_GRANT]
    assert pending[0].error_code == 70016 and pending[-1].status == 200


def test_device_code_over_the_wire(entra: EntraEmulator, http: httpx.Client) -> None:
    cli = entra.register_app("cli", public_client=True)
    entra.grant_consent(cli, GRAPH_USER_READ)
    grace = entra.add_user("Grace Hopper", "grace@contoso.example")
    tenant = f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0"
    started = http.post(
        f"{tenant}/devicecode", data={"client_id": cli.client_id, "scope": "openid User.Read"}
    ).json()
    poll = {
        "grant_type": DEVICE_GRANT,
        "client_id": cli.client_id,
        "device_code": started["device_code"],
    }
    early = http.post(f"{tenant}/token", data=poll)
    assert (early.status_code, early.json()["error"]) == (400, "authorization_pending")
    page = http.get(started["verification_uri"])
    assert "Sign in as Grace Hopper" in page.text
    signed = http.post(
        started["verification_uri"],
        data={"code": started["user_code"].lower(), "emulator_user": grace.oid},
    )
    assert signed.status_code == 200
    tokens = http.post(f"{tenant}/token", data=poll)
    assert tokens.status_code == 200 and claims(tokens.json()["access_token"])["oid"] == grace.oid
    again = http.post(f"{tenant}/token", data=poll)
    assert again.json()["error"] == "invalid_grant"  # a device code is redeemed once


def test_an_unapproved_device_code_expires() -> None:
    now = [time.time()]
    with (
        EntraEmulator(clock=lambda: now[0]) as entra,
        httpx.Client(verify=entra.ssl_context()) as http,
    ):
        cli = entra.register_app("cli", public_client=True)
        tenant = f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0"
        started = http.post(
            f"{tenant}/devicecode", data={"client_id": cli.client_id, "scope": "User.Read"}
        ).json()
        now[0] += started["expires_in"] + 1
        late = http.post(
            f"{tenant}/token",
            data={
                "grant_type": DEVICE_GRANT,
                "client_id": cli.client_id,
                "device_code": started["device_code"],
            },
        )
        assert (late.json()["error"], late.json()["error_codes"]) == ("expired_token", [70020])
