"""v1.0 tokens: apps whose manifest asks for v1 access tokens, and Microsoft Graph's.

Real Entra gives them ``iss`` = ``https://sts.windows.net/{tid}/`` whatever the
authority, ``ver`` 1.0, ``appid``/``appidacr``, and an ``aud`` that follows how the
scope named the API: the App ID URI for ``api://.../scope``, the client id for
``{client_id}/scope``. ID tokens stay v2.
"""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from entra_helpers import (
    GRAPH_USER_READ,
    JWT_BEARER,
    Trio,
    authorize_params,
    claims,
    code_form,
    redirect_query,
)
from tests._leaks import register

from better_auth_obo.testing import App, EntraEmulator, User

V1_KEYS = "{authority}/{tenant}/discovery/keys"


def _sts(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


@pytest.fixture
def v1_api(entra: EntraEmulator) -> App:
    """A middle tier whose manifest says ``accessTokenAcceptedVersion: 1``, with an App ID
    URI that differs visibly from its client id."""
    api = entra.register_app(
        "v1-middle-tier",
        scopes=["access_as_user"],
        app_id_uri="api://tasks.contoso.example",
        access_token_version=1,
    )
    entra.grant_consent(api, GRAPH_USER_READ)
    register(api.client_secret)
    return api


@pytest.fixture
def user(entra: EntraEmulator) -> User:
    return entra.add_user("Ada Lovelace", "ada@contoso.example")


def _obo_form(api: App, assertion: str, scope: str = GRAPH_USER_READ) -> dict[str, str]:
    return {
        "grant_type": JWT_BEARER,
        "client_id": api.client_id,
        "client_secret": api.client_secret or "",
        "assertion": assertion,
        "scope": scope,
        "requested_token_use": "on_behalf_of",
    }


def _user_token_via_spa(
    entra: EntraEmulator, http: httpx.Client, api: App, user: User, scope: str
) -> str:
    """The user's token for ``api`` as a separate client (a SPA) gets it: authorization
    code flow, the API's scope spelled as ``scope``."""
    spa = entra.register_app("spa")
    register(spa.client_secret)
    entra.grant_consent(spa, f"{api.client_id}/access_as_user")
    entra.auto_sign_in(user)
    params = authorize_params(spa, f"openid profile {scope}")
    location = http.get(entra.authorize_endpoint(), params=params).headers["location"]
    response = http.post(
        entra.token_endpoint(), data=code_form(spa, redirect_query(location)["code"])
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.mark.parametrize("by_uri", [False, True], ids=["guid-form", "app-id-uri-form"])
def test_a_v1_apps_token_follows_how_its_scope_was_requested(
    entra: EntraEmulator, http: httpx.Client, v1_api: App, user: User, by_uri: bool
) -> None:
    prefix = v1_api.app_id_uri if by_uri else v1_api.client_id
    token = _user_token_via_spa(entra, http, v1_api, user, f"{prefix}/access_as_user")

    access = claims(token)
    spa = next(a for a in entra.apps.values() if a.name == "spa")
    expected = {
        "aud": v1_api.app_id_uri if by_uri else v1_api.client_id,
        "iss": _sts(entra.tenant_id),
        "ver": "1.0",
        "appid": spa.client_id,
        "appidacr": "1",
        "tid": entra.tenant_id,
        "oid": user.oid,
        "scp": "access_as_user",
        "upn": "ada@contoso.example",
        "unique_name": "ada@contoso.example",
    }
    assert expected.items() <= access.items()
    assert not {"azp", "azpacr", "preferred_username"} & access.keys()
    assert access["iss"] == entra.issuer(version=1)


def test_issue_token_gives_the_v1_audience_the_caller_names(
    entra: EntraEmulator, v1_api: App, user: User
) -> None:
    by_app = claims(entra.issue_token(user, audience=v1_api))
    by_guid = claims(entra.issue_token(user, audience=v1_api.client_id))
    by_uri = claims(entra.issue_token(user, audience=v1_api.app_id_uri))

    assert by_app["aud"] == by_guid["aud"] == v1_api.client_id
    assert by_uri["aud"] == v1_api.app_id_uri
    for token in (by_app, by_guid, by_uri):
        assert (token["iss"], token["ver"], token["appid"]) == (
            _sts(entra.tenant_id),
            "1.0",
            v1_api.client_id,
        )


def test_v2_tokens_keep_the_guid_audience_whatever_the_spelling(
    entra: EntraEmulator, trio: Trio
) -> None:
    token = claims(entra.issue_token(trio.user, audience=trio.downstream.app_id_uri))
    assert token["aud"] == trio.downstream.client_id
    assert token["iss"] == f"{entra.authority}/{entra.tenant_id}/v2.0"


@pytest.mark.parametrize("by_uri", [False, True], ids=["guid-form", "app-id-uri-form"])
def test_obo_to_a_v1_downstream_api(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, by_uri: bool
) -> None:
    legacy = entra.register_app(
        "legacy-api", scopes=["Files.Read"], access_token_version=1, app_id_uri="https://legacy"
    )
    register(legacy.client_secret)
    entra.grant_consent(trio.api, legacy.scope("Files.Read"))
    scope = f"{legacy.app_id_uri if by_uri else legacy.client_id}/Files.Read"
    response = http.post(entra.token_endpoint(), data=trio.obo_form(scope))

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == scope
    access = claims(response.json()["access_token"])
    assert access["aud"] == ("https://legacy" if by_uri else legacy.client_id)
    assert access["iss"] == _sts(entra.tenant_id)
    assert (access["ver"], access["appid"], access["appidacr"]) == ("1.0", trio.api.client_id, "1")
    whoami = http.get(
        f"{entra.api_url(legacy)}/whoami",
        headers={"authorization": f"Bearer {response.json()['access_token']}"},
    )
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["appid"] == trio.api.client_id


@pytest.mark.parametrize("by_uri", [False, True], ids=["aud-client-id", "aud-app-id-uri"])
def test_the_obo_grant_accepts_v1_assertions(
    entra: EntraEmulator, http: httpx.Client, v1_api: App, user: User, by_uri: bool
) -> None:
    prefix = v1_api.app_id_uri if by_uri else v1_api.client_id
    assertion = _user_token_via_spa(entra, http, v1_api, user, f"{prefix}/access_as_user")
    assert claims(assertion)["aud"] == (v1_api.app_id_uri if by_uri else v1_api.client_id)

    response = http.post(entra.token_endpoint(), data=_obo_form(v1_api, assertion))

    assert response.status_code == 200, response.text
    graph = response.json()["access_token"]
    assert claims(graph)["appid"] == v1_api.client_id
    me = http.get(f"{entra.graph_url}/v1.0/me", headers={"authorization": f"Bearer {graph}"})
    assert me.json()["id"] == user.oid


def test_the_obo_grant_still_refuses_a_v1_assertion_for_another_api(
    entra: EntraEmulator, http: httpx.Client, v1_api: App, trio: Trio
) -> None:
    assertion = entra.issue_token(trio.user, audience=v1_api.app_id_uri)
    response = http.post(entra.token_endpoint(), data=trio.obo_form(assertion=assertion))

    assert response.status_code == 400
    assert response.json()["error_codes"] == [500131]


@pytest.mark.parametrize("by_uri", [False, True], ids=["aud-client-id", "aud-app-id-uri"])
def test_the_fake_api_accepts_v1_tokens(
    entra: EntraEmulator, http: httpx.Client, v1_api: App, user: User, by_uri: bool
) -> None:
    audience = v1_api.app_id_uri if by_uri else v1_api.client_id
    token = entra.issue_token(user, audience=audience)
    response = http.get(
        f"{entra.api_url(v1_api)}/whoami", headers={"authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200, response.text
    assert {"aud": audience, "ver": "1.0", "iss": _sts(entra.tenant_id)}.items() <= (
        response.json().items()
    )


def test_graph_tokens_carry_the_v1_issuer(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    obo = http.post(entra.token_endpoint(), data=trio.obo_form()).json()["access_token"]
    entra.grant_consent(trio.api, "https://graph.microsoft.com/User.Read.All")
    app_only = http.post(
        entra.token_endpoint(),
        data={
            "grant_type": "client_credentials",
            "client_id": trio.api.client_id,
            "client_secret": trio.api.client_secret or "",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    minted = entra.issue_token(trio.user, audience="https://graph.microsoft.com", client=trio.api)

    for token in (obo, app_only, minted):
        assert claims(token)["iss"] == _sts(entra.tenant_id)
        assert claims(token)["aud"] == "https://graph.microsoft.com"
        assert claims(token)["ver"] == "1.0"
    assert claims(app_only)["roles"] == ["User.Read.All"]


def test_v1_tokens_verify_against_the_v1_keys(
    entra: EntraEmulator, v1_api: App, user: User
) -> None:
    token = entra.issue_token(user, audience=v1_api.app_id_uri)
    url = V1_KEYS.format(authority=entra.authority, tenant=entra.tenant_id)
    key = jwt.PyJWKClient(url, ssl_context=entra.ssl_context()).get_signing_key_from_jwt(token)

    verified = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=v1_api.app_id_uri,
        issuer=f"https://sts.windows.net/{entra.tenant_id}/",
    )
    assert verified["oid"] == user.oid
    header = jwt.get_unverified_header(token)
    assert header["kid"] == header["x5t"] == entra.signing_kid


def test_v1_discovery_document(entra: EntraEmulator, http: httpx.Client) -> None:
    for segment in (entra.tenant_id, entra.tenant.domain):
        url = f"{entra.authority}/{segment}/.well-known/openid-configuration"
        doc = http.get(url).json()
        assert doc["issuer"] == _sts(entra.tenant_id)
        assert doc["jwks_uri"] == V1_KEYS.format(authority=entra.authority, tenant=entra.tenant_id)
        assert doc["token_endpoint"] == f"{entra.authority}/{entra.tenant_id}/oauth2/token"


@pytest.mark.parametrize("alias", ["common", "organizations", "consumers"])
def test_v1_discovery_document_for_aliases(
    entra: EntraEmulator, http: httpx.Client, alias: str
) -> None:
    doc = http.get(f"{entra.authority}/{alias}/.well-known/openid-configuration").json()
    assert doc["issuer"] == "https://sts.windows.net/{tenantid}/"
    assert doc["jwks_uri"] == f"{entra.authority}/{alias}/discovery/keys"


def test_each_keys_endpoint_names_its_versions_issuer(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    v1 = http.get(V1_KEYS.format(authority=entra.authority, tenant="common")).json()["keys"]
    v2 = http.get(entra.jwks_uri("common")).json()["keys"]

    assert [k["issuer"] for k in v1] == ["https://sts.windows.net/{tenantid}/"]
    assert [k["issuer"] for k in v2] == [f"{entra.authority}/{{tenantid}}/v2.0"]
    assert [k["kid"] for k in v1] == [k["kid"] for k in v2] == [entra.signing_kid]


@pytest.mark.parametrize("version", [1, 2])
def test_rotation_shows_on_both_keys_endpoints(
    entra: EntraEmulator, http: httpx.Client, version: int
) -> None:
    url = (
        entra.jwks_uri()
        if version == 2
        else V1_KEYS.format(authority=entra.authority, tenant=entra.tenant_id)
    )
    first = entra.signing_kid
    second = entra.rotate_keys()
    assert [k["kid"] for k in http.get(url).json()["keys"]] == [second, first]
    third = entra.rotate_keys(keep_previous=False)
    (only,) = http.get(url).json()["keys"]
    assert only["kid"] == third
    assert only["issuer"] == entra.issuer("{tenantid}", version=version)


def test_rotation_without_keep_previous_breaks_old_v1_tokens(
    entra: EntraEmulator, http: httpx.Client, v1_api: App, user: User
) -> None:
    old = entra.issue_token(user, audience=v1_api)
    entra.rotate_keys(keep_previous=False)
    url = f"{entra.api_url(v1_api)}/whoami"

    assert http.get(url, headers={"authorization": f"Bearer {old}"}).status_code == 401
    new = entra.issue_token(user, audience=v1_api)
    assert http.get(url, headers={"authorization": f"Bearer {new}"}).status_code == 200


def test_issuer_helper_versions(entra: EntraEmulator) -> None:
    assert entra.issuer() == entra.issuer(version=2) == f"{entra.authority}/{entra.tenant_id}/v2.0"
    assert entra.issuer(version=1) == f"https://sts.windows.net/{entra.tenant_id}/"
    with pytest.raises(ValueError, match="version"):
        entra.issuer(version=3)


# -- ID tokens ---------------------------------------------------------------------------------


def test_issue_id_token_verifies_against_the_jwks(
    entra: EntraEmulator, v1_api: App, user: User
) -> None:
    token = entra.issue_id_token(user, client=v1_api, nonce="n0nce")
    key = jwt.PyJWKClient(entra.jwks_uri(), ssl_context=entra.ssl_context())
    verified = jwt.decode(
        token,
        key.get_signing_key_from_jwt(token),
        algorithms=["RS256"],
        audience=v1_api.client_id,
        issuer=f"{entra.authority}/{entra.tenant_id}/v2.0",
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
    )

    assert verified["ver"] == "2.0"  # ID tokens are v2 even for a v1 app
    assert verified["nonce"] == "n0nce"
    assert (verified["oid"], verified["tid"]) == (user.oid, entra.tenant_id)
    assert verified["email"] == "ada@contoso.example"
    assert verified["exp"] - verified["iat"] == 3600
    assert abs(verified["iat"] - time.time()) < 60
    assert "kid" in jwt.get_unverified_header(token)


def test_issue_id_token_tenant_and_age(entra: EntraEmulator, trio: Trio) -> None:
    fabrikam = entra.add_tenant("fabrikam.example")
    for tenant in (fabrikam, fabrikam.tenant_id, "fabrikam.example"):
        token = claims(entra.issue_id_token(trio.user, client=trio.api, tenant=tenant))
        assert token["tid"] == fabrikam.tenant_id
        assert token["iss"] == f"{entra.authority}/{fabrikam.tenant_id}/v2.0"
    assert "nonce" not in token
    old = claims(entra.issue_id_token(trio.user, client=trio.api, issued_at=time.time() - 7200))
    assert old["exp"] < time.time()
    with pytest.raises(ValueError, match="unknown tenant"):
        entra.issue_id_token(trio.user, client=trio.api, tenant="nowhere.example")


def test_an_id_token_is_not_an_obo_assertion(
    entra: EntraEmulator, http: httpx.Client, v1_api: App, user: User
) -> None:
    id_token = entra.issue_id_token(user, client=v1_api)
    response = http.post(entra.token_endpoint(), data=_obo_form(v1_api, id_token))
    assert response.json()["error_codes"] == [240002]
