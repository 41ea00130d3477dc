"""Continuous Access Evaluation: the emulated Graph and downstream API as CAE resources,
the claims-challenge retry (raw HTTP and MSAL Python), and Graph's /me and /users."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import msal
import pytest
import requests
from entra_helpers import GRAPH_USER_READ, Trio, authorize_params, claims, code_form, redirect_query

from better_auth_obo.testing import GRAPH_APP_ID, EntraEmulator

CP1 = '{"access_token":{"xms_cc":{"values":["cp1"]}}}'
CAE_MESSAGE = (
    "Continuous access evaluation resulted in challenge with result: InteractionRequired "
    "and code: TokenIssuedBeforeRevocationTimestamp"
)


def _obo(
    entra: EntraEmulator,
    http: httpx.Client,
    trio: Trio,
    scope: str = GRAPH_USER_READ,
    claims_value: str | None = CP1,
    assertion: str | None = None,
) -> httpx.Response:
    form = trio.obo_form(scope, assertion=assertion or trio.assertion)
    if claims_value is not None:
        form["claims"] = claims_value
    return http.post(entra.token_endpoint(), data=form)


def _token(entra: EntraEmulator, http: httpx.Client, trio: Trio, **kwargs: Any) -> str:
    response = _obo(entra, http, trio, **kwargs)
    assert response.status_code == 200, response.json()
    return str(response.json()["access_token"])


def _get(http: httpx.Client, url: str, token: str) -> httpx.Response:
    return http.get(url, headers={"authorization": f"Bearer {token}"})


def _challenge(response: httpx.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer k="v", ...`` header."""
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _decoded(params: dict[str, str]) -> Any:
    return json.loads(base64.b64decode(params["claims"], validate=True))


# -- resources ------------------------------------------------------------------------------


def test_graph_challenges_a_cae_token_issued_before_the_event(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    me = f"{entra.graph_url}/v1.0/me"
    token = _token(entra, http, trio)
    assert _get(http, me, token).status_code == 200

    event = entra.cae_event(trio.user)
    response = _get(http, me, token)

    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("InvalidAuthenticationToken", CAE_MESSAGE)
    params = _challenge(response)
    assert params["realm"] == ""
    assert params["authorization_uri"] == f"{entra.authority}/common/oauth2/authorize"
    assert params["client_id"] == GRAPH_APP_ID
    assert params["error"] == "insufficient_claims"
    assert params["error_description"] == CAE_MESSAGE
    assert _decoded(params) == {
        "access_token": {"nbf": {"essential": True, "value": str(int(event))}}
    }


def test_a_non_cae_token_keeps_working_until_it_expires(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    token = _token(entra, http, trio, claims_value=None)
    entra.cae_event(trio.user)

    assert _get(http, f"{entra.graph_url}/v1.0/me", token).status_code == 200


def test_a_token_obtained_after_the_event_works(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.cae_event(trio.user)
    token = _token(entra, http, trio)  # same second as the event, but after it

    assert _get(http, f"{entra.graph_url}/v1.0/me", token).status_code == 200


def test_revoke_sessions_is_a_cae_event(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    token = _token(entra, http, trio)
    entra.revoke_sessions(trio.user)

    assert _get(http, f"{entra.graph_url}/v1.0/me", token).status_code == 401


def test_other_users_tokens_are_untouched(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    token = _token(entra, http, trio)
    entra.cae_event(entra.add_user("Grace Hopper", "grace@contoso.example"))

    assert _get(http, f"{entra.graph_url}/v1.0/me", token).status_code == 200


def test_downstream_api_is_a_cae_resource_too(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    whoami = f"{entra.api_url(trio.downstream)}/whoami"
    token = _token(entra, http, trio, scope=trio.downstream.scope("Files.Read"))
    seen = _get(http, whoami, token).json()
    assert (seen["oid"], seen["xms_cc"]) == (trio.user.oid, ["cp1"])

    entra.cae_event(trio.user)
    response = _get(http, whoami, token)

    assert response.status_code == 401
    params = _challenge(response)
    assert params["client_id"] == trio.downstream.client_id
    assert params["error"] == "insufficient_claims"
    assert _decoded(params)["access_token"]["nbf"]["essential"] is True


# -- the claims-challenge retry ---------------------------------------------------------------


def _challenge_after_event(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> str:
    """A CAE token, a critical event, Graph's challenge: the claims JSON to replay."""
    token = _token(entra, http, trio)
    entra.cae_event(trio.user)
    response = _get(http, f"{entra.graph_url}/v1.0/me", token)
    return base64.b64decode(_challenge(response)["claims"]).decode()


def _with_cp1(challenge: str) -> str:
    merged = json.loads(challenge)
    merged["access_token"]["xms_cc"] = {"values": ["cp1"]}
    return json.dumps(merged)


def test_retry_with_an_old_sign_in_needs_the_user(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    challenge = _challenge_after_event(entra, http, trio)
    response = _obo(entra, http, trio, claims_value=_with_cp1(challenge))

    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["error_codes"], body["suberror"]) == (
        "invalid_grant",
        [50173],
        "basic_action",
    )
    assert json.loads(body["claims"]) == json.loads(challenge)


def test_retry_after_the_user_signed_in_again_succeeds(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    challenge = _challenge_after_event(entra, http, trio)
    fresh = entra.issue_token(trio.user, audience=trio.api)  # the user signed in again

    token = _token(entra, http, trio, claims_value=_with_cp1(challenge), assertion=fresh)

    assert claims(token)["xms_cc"] == ["cp1"]
    assert _get(http, f"{entra.graph_url}/v1.0/me", token).status_code == 200


def _code_tokens(entra: EntraEmulator, http: httpx.Client, trio: Trio, **extra: str) -> Any:
    entra.auto_sign_in(trio.user)
    params = authorize_params(trio.api, f"openid offline_access {GRAPH_USER_READ}")
    location = http.get(entra.authorize_endpoint(), params=params).headers["location"]
    form = code_form(trio.api, redirect_query(location)["code"], **extra)
    return http.post(entra.token_endpoint(), data=form).json()


def _refresh(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, refresh_token: str, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret or "",
        "refresh_token": refresh_token,
        **extra,
    }
    return http.post(entra.token_endpoint(), data=form)


def test_refresh_token_cannot_satisfy_an_event_after_its_sign_in(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    refresh_token = _code_tokens(entra, http, trio, claims=CP1)["refresh_token"]
    challenge = _challenge_after_event(entra, http, trio)

    with_challenge = _refresh(entra, http, trio, refresh_token, claims=_with_cp1(challenge))
    plain = _refresh(entra, http, trio, refresh_token)

    assert with_challenge.json()["error_codes"] == [50173]
    assert plain.status_code == 200  # a CAE event alone does not revoke refresh tokens
    # A new interactive sign-in (code) satisfies the same challenge.
    again = _code_tokens(entra, http, trio, claims=_with_cp1(challenge))
    assert claims(again["access_token"])["xms_cc"] == ["cp1"]


# -- MSAL Python with client capabilities ----------------------------------------------------


@pytest.fixture
def session(entra: EntraEmulator) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.verify = entra.ca_file
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        yield s


def _msal(
    entra: EntraEmulator, trio: Trio, session: requests.Session
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        trio.api.client_id,
        client_credential=trio.api.client_secret,
        authority=f"{entra.authority}/{entra.tenant_id}",
        instance_discovery=False,
        http_client=session,
        client_capabilities=["cp1"],
    )


def test_msal_with_cp1_gets_a_cae_token(
    entra: EntraEmulator, trio: Trio, session: requests.Session
) -> None:
    result = _msal(entra, trio, session).acquire_token_on_behalf_of(
        trio.assertion, [GRAPH_USER_READ]
    )

    assert "access_token" in result, result
    assert claims(result["access_token"])["xms_cc"] == ["cp1"]
    assert result["expires_in"] == 24 * 3600
    assert json.loads(entra.token_requests[-1].claims or "") == json.loads(CP1)


@pytest.mark.parametrize("signed_in_again", [True, False])
def test_msal_claims_challenge_retry(
    entra: EntraEmulator,
    http: httpx.Client,
    trio: Trio,
    session: requests.Session,
    signed_in_again: bool,
) -> None:
    app = _msal(entra, trio, session)
    first = app.acquire_token_on_behalf_of(trio.assertion, [GRAPH_USER_READ])
    entra.cae_event(trio.user)
    denied = _get(http, f"{entra.graph_url}/v1.0/me", first["access_token"])
    challenge = base64.b64decode(_challenge(denied)["claims"]).decode()
    assertion = (
        entra.issue_token(trio.user, audience=trio.api) if signed_in_again else trio.assertion
    )

    result = app.acquire_token_on_behalf_of(
        assertion, [GRAPH_USER_READ], claims_challenge=challenge
    )

    sent = json.loads(entra.token_requests[-1].claims or "")
    assert sent["access_token"]["xms_cc"] == {"values": ["cp1"]}  # merged by MSAL
    assert sent["access_token"]["nbf"] == json.loads(challenge)["access_token"]["nbf"]
    if signed_in_again:
        assert "access_token" in result, result
        assert _get(http, f"{entra.graph_url}/v1.0/me", result["access_token"]).status_code == 200
    else:
        assert (result["error"], result["error_codes"]) == ("invalid_grant", [50173])
        assert result["suberror"] == "basic_action"
        assert json.loads(result["claims"]) == json.loads(challenge)


# -- Graph: /me and /users/{id} ----------------------------------------------------------------


def test_me_select_unknown_property_is_graphs_400(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    token = _token(entra, http, trio)
    response = _get(http, f"{entra.graph_url}/v1.0/me?$select=displayName,shoeSize", token)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "'shoeSize'" in response.json()["error"]["message"]


def test_me_select_non_default_properties(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    token = _token(entra, http, trio)
    body = _get(http, f"{entra.graph_url}/v1.0/me?%24select=id,userType,accountEnabled", token)

    context = f"{entra.graph_url}/v1.0/$metadata#users(id,userType,accountEnabled)/$entity"
    assert body.json() == {
        "@odata.context": context,
        "id": trio.user.oid,
        "userType": "Member",
        "accountEnabled": True,
    }


def test_users_by_id_or_upn(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    token = _token(entra, http, trio)
    by_id = _get(http, f"{entra.graph_url}/v1.0/users/{trio.user.oid}", token).json()
    by_upn = _get(http, f"{entra.graph_url}/v1.0/users/{trio.user.upn}?$select=mail", token)

    me = _get(http, f"{entra.graph_url}/v1.0/me", token).json()
    assert by_id == me
    assert by_upn.json()["mail"] == trio.user.mail
    assert set(by_upn.json()) == {"@odata.context", "mail"}


def test_users_of_someone_else_needs_a_directory_permission(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    grace = entra.add_user("Grace Hopper", "grace@contoso.example")
    url = f"{entra.graph_url}/v1.0/users/{grace.oid}"
    user_read = _token(entra, http, trio)
    entra.grant_consent(trio.api, "https://graph.microsoft.com/User.ReadBasic.All")
    read_basic = _token(entra, http, trio, scope="https://graph.microsoft.com/User.ReadBasic.All")
    app_only = entra.issue_app_token(
        trio.api, audience="https://graph.microsoft.com", roles=["User.Read.All"]
    )

    denied = _get(http, url, user_read)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert _get(http, url, read_basic).json()["displayName"] == "Grace Hopper"
    assert _get(http, url, app_only).json()["id"] == grace.oid
    missing = _get(http, f"{entra.graph_url}/v1.0/users/nobody@contoso.example", app_only)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_users_is_a_cae_resource(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    token = _token(entra, http, trio)
    entra.cae_event(trio.user)

    response = _get(http, f"{entra.graph_url}/v1.0/users/{trio.user.oid}", token)
    assert response.status_code == 401
    assert _challenge(response)["error"] == "insufficient_claims"
