"""``/authorize``: the sign-in page, automatic sign-in, PKCE and response modes."""

from __future__ import annotations

import re

import httpx
import pytest
from entra_helpers import (
    GRAPH_USER_READ,
    REDIRECT_URI,
    Trio,
    authorize_params,
    claims,
    code_form,
    redirect_query,
)

from better_auth_obo.testing import EntraEmulator

SCOPE = f"openid profile offline_access {GRAPH_USER_READ}"


def test_sign_in_page_lists_users_and_a_button_signs_in(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.add_user("Grace Hopper", "grace@contoso.example")
    page = http.get(entra.authorize_endpoint(), params=authorize_params(trio.api, SCOPE))

    assert page.status_code == 200
    assert "Sign in as Ada Lovelace (ada@contoso.example)" in page.text
    assert "Sign in as Grace Hopper" in page.text
    fields = dict(re.findall(r"name='([^']+)' value='([^']*)'", page.text.split("<li>")[1]))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    chosen = http.post(entra.authorize_endpoint(), data=fields)

    assert chosen.status_code == 302
    query = redirect_query(chosen.headers["location"])
    assert chosen.headers["location"].startswith(REDIRECT_URI + "?")
    assert query["state"] == "st4te"
    tokens = http.post(entra.token_endpoint(), data=code_form(trio.api, query["code"])).json()
    assert claims(tokens["id_token"])["nonce"] == "n0nce"
    assert claims(tokens["id_token"])["oid"] == fields["emulator_user"]


def test_cancel_returns_access_denied(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    params = authorize_params(trio.api, SCOPE) | {"emulator_cancel": "1"}
    response = http.post(entra.authorize_endpoint(), data=params)
    query = redirect_query(response.headers["location"])
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS65004")
    assert query["state"] == "st4te"


def test_auto_sign_in_follows_login_hint(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    grace = entra.add_user("Grace Hopper", "grace@contoso.example")
    entra.auto_sign_in()
    params = authorize_params(trio.api, SCOPE, login_hint="grace@contoso.example", client_info="1")
    query = redirect_query(http.get(entra.authorize_endpoint(), params=params).headers["location"])

    tokens = http.post(entra.token_endpoint(), data=code_form(trio.api, query["code"])).json()
    assert claims(tokens["access_token"])["oid"] == grace.oid
    assert query["client_info"]


def test_constructor_auto_sign_in(trio: Trio) -> None:
    with (
        EntraEmulator(auto_sign_in=True) as other,
        httpx.Client(verify=other.ssl_context()) as http,
    ):
        api = other.register_app("web")
        other.add_user("Ada Lovelace", "ada@contoso.example")
        response = http.get(other.authorize_endpoint(), params=authorize_params(api, "openid"))
        assert "code" in redirect_query(response.headers["location"])


def test_prompt_none_without_a_session_is_login_required(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    params = authorize_params(trio.api, SCOPE, prompt="none")
    query = redirect_query(http.get(entra.authorize_endpoint(), params=params).headers["location"])
    assert query["error"] == "login_required"


def test_form_post_response_mode(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.auto_sign_in(trio.user)
    params = authorize_params(trio.api, SCOPE, response_mode="form_post")
    page = http.get(entra.authorize_endpoint(), params=params)
    assert page.status_code == 200
    assert f"action='{REDIRECT_URI}'" in page.text
    assert re.search(r"name='code' value='[^']+'", page.text)
    assert "name='state' value='st4te'" in page.text


def test_registered_redirect_uris_are_enforced(entra: EntraEmulator, http: httpx.Client) -> None:
    app = entra.register_app("web", redirect_uris=["https://app.example/cb"])
    page = http.get(entra.authorize_endpoint(), params=authorize_params(app, "openid"))
    assert page.status_code == 400
    assert "AADSTS50011" in page.text


@pytest.mark.parametrize(
    ("tenant", "client_id", "code"),
    [
        ("nosuchtenant", None, "90002"),
        (None, "not-registered", "700016"),
        ("common", None, "50194"),
    ],
)
def test_client_errors_are_shown_not_redirected(
    entra: EntraEmulator,
    http: httpx.Client,
    trio: Trio,
    tenant: str | None,
    client_id: str | None,
    code: str,
) -> None:
    params = authorize_params(trio.api, SCOPE)
    if client_id:
        params["client_id"] = client_id
    page = http.get(entra.authorize_endpoint(tenant), params=params)
    assert page.status_code == 400
    assert f"AADSTS{code}" in page.text


def test_interactive_sign_in_satisfies_mfa_and_blocked_user_is_denied(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.require_mfa(trio.user)
    entra.auto_sign_in(trio.user)
    query = redirect_query(
        http.get(entra.authorize_endpoint(), params=authorize_params(trio.api, SCOPE)).headers[
            "location"
        ]
    )
    tokens = http.post(entra.token_endpoint(), data=code_form(trio.api, query["code"])).json()
    assert "mfa" in claims(tokens["access_token"])["amr"]

    entra.block(trio.user)
    query = redirect_query(
        http.get(entra.authorize_endpoint(), params=authorize_params(trio.api, SCOPE)).headers[
            "location"
        ]
    )
    assert query["error"] == "access_denied"
    assert "AADSTS53003" in query["error_description"]
