"""The token endpoint's grants, over real loopback HTTPS."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
from entra_helpers import GRAPH_USER_READ, Trio, claims

from better_auth_obo.testing import EntraEmulator


def test_obo_exchange_returns_a_graph_token_with_the_full_response(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    scope = f"{GRAPH_USER_READ} offline_access openid profile"
    response = http.post(entra.token_endpoint(), data=trio.obo_form(scope, client_info="1"))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store, no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == GRAPH_USER_READ
    assert body["expires_in"] == body["ext_expires_in"] == 3600
    assert {"refresh_token", "id_token", "client_info"} <= body.keys()
    access = claims(body["access_token"])
    assert access["aud"] == "https://graph.microsoft.com"
    assert access["oid"] == trio.user.oid
    assert access["ver"] == "1.0"
    assert "User.Read" in access["scp"].split()
    assert jwt.get_unverified_header(body["access_token"])["nonce"]
    identity = claims(body["id_token"])
    assert identity["aud"] == trio.api.client_id
    assert identity["iss"] == entra.issuer()


def test_obo_to_a_registered_api_gives_a_v2_token(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    scope = trio.downstream.scope("Files.Read")
    body = http.post(entra.token_endpoint(), data=trio.obo_form(scope)).json()

    assert body["scope"] == scope
    assert "refresh_token" not in body
    assert "id_token" not in body
    access = claims(body["access_token"])
    expected = {
        "aud": trio.downstream.client_id,
        "iss": entra.issuer(),
        "azp": trio.api.client_id,
        "azpacr": "1",
        "scp": "Files.Read",
        "tid": entra.tenant_id,
        "ver": "2.0",
        "name": "Ada Lovelace",
        "preferred_username": "ada@contoso.example",
    }
    assert expected.items() <= access.items()
    assert {"iat", "nbf", "exp", "uti", "sub", "oid"} <= access.keys()


def test_default_scope_expands_to_the_consented_scopes(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    scope = f"{trio.downstream.app_id_uri}/.default"
    body = http.post(entra.token_endpoint(), data=trio.obo_form(scope)).json()

    assert body["scope"] == trio.downstream.scope("Files.Read")


def test_tenant_domain_and_guid_paths_both_work(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    for tenant in (entra.tenant.domain, entra.tenant_id):
        response = http.post(entra.token_endpoint(tenant), data=trio.obo_form())
        assert response.status_code == 200


def test_common_uses_the_users_home_tenant_for_a_multi_tenant_app(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    api = entra.register_app("multi", scopes=["access_as_user"], multi_tenant=True)
    entra.grant_consent(api, GRAPH_USER_READ)
    user = entra.add_user("Grace Hopper", "grace@contoso.example")
    form = Trio(api, api, user, entra.issue_token(user, audience=api)).obo_form()

    body = http.post(entra.token_endpoint("common"), data=form).json()

    assert claims(body["access_token"])["tid"] == entra.tenant_id


def test_obo_for_a_guest_over_common_lands_in_the_home_tenant(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    fabrikam = entra.add_tenant("fabrikam.onmicrosoft.com")
    api = entra.register_app("multi", scopes=["access_as_user"], multi_tenant=True, tenant=fabrikam)
    entra.grant_consent(api, GRAPH_USER_READ)  # consent in fabrikam only
    home = entra.add_user("Grace Hopper", "grace@contoso.example")
    guest = entra.invite(home, fabrikam)
    form = Trio(api, api, guest, entra.issue_token(guest, audience=api)).obo_form()

    specific = http.post(entra.token_endpoint(fabrikam), data=form)
    common = http.post(entra.token_endpoint("common"), data=form)

    assert specific.status_code == 200
    assert claims(specific.json()["access_token"])["oid"] == guest.oid
    assert common.json()["error_codes"] == [65001]


def test_client_credentials(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.grant_consent(trio.api, trio.downstream.scope("Files.Read.All"))
    form = {
        "grant_type": "client_credentials",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret or "",
        "scope": f"{trio.downstream.app_id_uri}/.default",
        "client_info": "1",
    }
    body = http.post(entra.token_endpoint(), data=form).json()

    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    access = claims(body["access_token"])
    assert access["roles"] == ["Files.Read.All"]
    assert access["idtyp"] == "app"
    assert access["oid"] == trio.api.service_principal_id
    assert "scp" not in access


def test_refresh_token_rotates_and_old_one_keeps_working(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    first = http.post(
        entra.token_endpoint(), data=trio.obo_form(f"{GRAPH_USER_READ} offline_access")
    )
    old = first.json()["refresh_token"]
    form = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret or "",
        "refresh_token": old,
    }
    second = http.post(entra.token_endpoint(), data=form).json()
    again = http.post(entra.token_endpoint(), data=form)

    assert second["refresh_token"] != old
    assert claims(second["access_token"])["aud"] == "https://graph.microsoft.com"
    assert again.status_code == 200


def test_refresh_token_for_own_api_in_guid_form_works_and_uri_form_is_90009(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    rt = http.post(entra.token_endpoint(), data=trio.obo_form(f"{GRAPH_USER_READ} offline_access"))
    base = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret or "",
        "refresh_token": rt.json()["refresh_token"],
    }
    guid = http.post(
        entra.token_endpoint(), data={**base, "scope": f"{trio.api.client_id}/access_as_user"}
    )
    uri = http.post(
        entra.token_endpoint(), data={**base, "scope": trio.api.scope("access_as_user")}
    )

    assert claims(guid.json()["access_token"])["aud"] == trio.api.client_id
    assert uri.json()["error_codes"] == [90009]


def test_revoked_sessions_invalidate_refresh_tokens(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    rt = http.post(entra.token_endpoint(), data=trio.obo_form(f"{GRAPH_USER_READ} offline_access"))
    entra.revoke_sessions(trio.user)
    form = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret or "",
        "refresh_token": rt.json()["refresh_token"],
    }
    assert http.post(entra.token_endpoint(), data=form).json()["error_codes"] == [50173]


def test_basic_authentication_is_accepted(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    form = trio.obo_form(client_secret="<omit>", client_id="<omit>")
    pair = f"{quote_plus(trio.api.client_id)}:{quote_plus(trio.api.client_secret or '')}"
    header = "Basic " + base64.b64encode(pair.encode()).decode()

    response = http.post(entra.token_endpoint(), data=form, headers={"Authorization": header})

    assert response.status_code == 200
    assert entra.token_requests[-1].auth_method == "client_secret_basic"


@pytest.mark.parametrize(
    ("alg", "header", "padded"),
    [
        ("RS256", "x5t", False),
        ("RS256", "x5t", True),
        ("PS256", "x5t#S256", True),
    ],
)
def test_certificate_client_assertion(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, alg: str, header: str, padded: bool
) -> None:
    cert = trio.api.add_certificate()
    thumb = cert.x5t if header == "x5t" else cert.x5t_s256
    now = entra._directory.clock()  # float exp/iat, no nbf: as MSAL sends them
    assertion = jwt.encode(
        {
            "aud": entra.token_endpoint(),
            "iss": trio.api.client_id,
            "sub": trio.api.client_id,
            "jti": "1",
            "exp": now + 600.5,
            "iat": now + 0.25,
        },
        cert.private_key_pem,
        algorithm=alg,
        headers={header: thumb + ("=" if padded else "")},
    )
    form = trio.obo_form(
        client_secret="<omit>",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
    )
    response = http.post(entra.token_endpoint(), data=form)

    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["appidacr"] == "2"


def test_second_secret_and_expired_secret(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    new = entra.add_secret(trio.api)
    entra.expire_secret(trio.api, trio.api.client_secret)

    old = http.post(entra.token_endpoint(), data=trio.obo_form())
    fresh = http.post(entra.token_endpoint(), data=trio.obo_form(client_secret=new))

    assert (old.status_code, old.json()["error_codes"]) == (401, [7000222])
    assert fresh.status_code == 200


def test_token_lifetime_policy(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.set_token_lifetime(900, resource="https://graph.microsoft.com")
    body = http.post(entra.token_endpoint(), data=trio.obo_form()).json()
    assert body["expires_in"] == 900
    access = claims(body["access_token"])
    assert access["exp"] - access["iat"] == 900


def test_correlation_id_echoes_client_request_id(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    response = http.post(
        entra.token_endpoint(),
        data=trio.obo_form(scope="nope/x"),
        headers={"client-request-id": "73d656cf-54b1-4eb2-b429-26d8165a52d7"},
    )
    body = response.json()
    assert body["correlation_id"] == "73d656cf-54b1-4eb2-b429-26d8165a52d7"
    assert response.headers["x-ms-request-id"] == body["trace_id"]
    assert entra.token_requests[-1].correlation_id == body["correlation_id"]


def test_mfa_satisfied_by_an_mfa_assertion(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.require_mfa(trio.user, resource="https://graph.microsoft.com")
    with_mfa = entra.issue_token(trio.user, audience=trio.api, mfa=True)

    challenged = http.post(entra.token_endpoint(), data=trio.obo_form())
    passed = http.post(entra.token_endpoint(), data=trio.obo_form(assertion=with_mfa))

    assert challenged.json()["error"] == "interaction_required"
    assert passed.status_code == 200
