"""Reprs and the request log never show a secret, a key or a token."""

from __future__ import annotations

import logging

import httpx
import pytest
from entra_helpers import Trio, authorize_params, code_form, redirect_query

from better_auth_obo.testing import EntraEmulator


def test_reprs_hide_secrets_and_keys(entra: EntraEmulator, trio: Trio) -> None:
    cert = trio.api.add_certificate()
    fault = entra.faults.fail()
    text = " ".join(map(repr, [trio.api, trio.user, cert, entra, fault, entra.apps, entra.users]))
    assert trio.api.client_secret
    assert trio.api.client_secret not in text
    assert "PRIVATE KEY" not in text
    assert trio.api.client_id in text  # identifiers are fine


def test_request_log_holds_no_credentials_or_tokens(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entra.auto_sign_in(trio.user)
    params = authorize_params(
        trio.api, "openid offline_access https://graph.microsoft.com/User.Read"
    )
    code = redirect_query(http.get(entra.authorize_endpoint(), params=params).headers["location"])[
        "code"
    ]
    tokens = http.post(entra.token_endpoint(), data=code_form(trio.api, code)).json()
    obo = http.post(entra.token_endpoint(), data=trio.obo_form()).json()
    http.post(entra.token_endpoint(), data=trio.obo_form(client_secret="wrong-secret-value"))

    # The emulator's own lines (uvicorn's and ours), not the test client's httpx debug log.
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "hpack"))]
    log = repr(entra.token_requests) + " ".join(r.getMessage() for r in ours)
    secrets = [
        trio.api.client_secret,
        "wrong-secret-value",
        trio.assertion,
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        obo["access_token"],
    ]
    leaked = [s[:12] for s in secrets if not s or s in log]
    assert leaked == [], (leaked, log[:3000])
    assert [r.status for r in entra.token_requests] == [200, 200, 401]
    assert entra.token_requests[2].error_code == 7000215
