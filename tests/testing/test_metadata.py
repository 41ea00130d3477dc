"""Discovery documents, JWKS, key rotation and the tokens' signatures."""

from __future__ import annotations

import httpx
import jwt
import pytest
from entra_helpers import Trio

from better_auth_obo.testing import EntraEmulator


def test_discovery_for_tenant_guid_and_domain(entra: EntraEmulator, http: httpx.Client) -> None:
    for segment in (entra.tenant_id, entra.tenant.domain):
        doc = http.get(f"{entra.authority}/{segment}/v2.0/.well-known/openid-configuration").json()
        assert doc["issuer"] == entra.issuer()
        assert doc["token_endpoint"] == entra.token_endpoint()
        assert doc["authorization_endpoint"] == entra.authorize_endpoint()
        assert doc["jwks_uri"] == entra.jwks_uri()


@pytest.mark.parametrize("alias", ["common", "organizations", "consumers"])
def test_discovery_for_aliases(entra: EntraEmulator, http: httpx.Client, alias: str) -> None:
    doc = http.get(f"{entra.authority}/{alias}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{entra.authority}/{{tenantid}}/v2.0"
    assert doc["token_endpoint"] == f"{entra.authority}/{alias}/oauth2/v2.0/token"


def test_v1_metadata(entra: EntraEmulator, http: httpx.Client) -> None:
    doc = http.get(f"{entra.authority}/{entra.tenant_id}/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"https://sts.windows.net/{entra.tenant_id}/"
    assert doc["jwks_uri"] == f"{entra.authority}/{entra.tenant_id}/discovery/keys"


def test_tokens_verify_against_the_jwks(entra: EntraEmulator, trio: Trio) -> None:
    client = jwt.PyJWKClient(entra.jwks_uri(), ssl_context=entra.ssl_context())
    key = client.get_signing_key_from_jwt(trio.assertion)
    claims = jwt.decode(
        trio.assertion,
        key,
        algorithms=["RS256"],
        audience=trio.api.client_id,
        issuer=entra.issuer(),
    )
    assert claims["oid"] == trio.user.oid
    header = jwt.get_unverified_header(trio.assertion)
    assert header["kid"] == header["x5t"] == entra.signing_kid


def test_rotation_keeps_old_keys_published_unless_told(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    first = entra.signing_kid
    second = entra.rotate_keys()
    kids = [k["kid"] for k in http.get(entra.jwks_uri()).json()["keys"]]
    assert kids == [second, first]
    third = entra.rotate_keys(keep_previous=False)
    assert [k["kid"] for k in http.get(entra.jwks_uri()).json()["keys"]] == [third]
    entra.reset()
    assert entra.signing_kid == first


def test_jwks_key_shape(entra: EntraEmulator, http: httpx.Client) -> None:
    (key,) = http.get(entra.jwks_uri()).json()["keys"]
    assert {"kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"} <= set(key)
    assert key["issuer"] == f"{entra.authority}/{{tenantid}}/v2.0"


def test_id_token_claims(entra: EntraEmulator, trio: Trio) -> None:
    token = entra.issue_id_token(trio.user, client=trio.api, nonce="abc")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {
        "aud",
        "iss",
        "iat",
        "nbf",
        "exp",
        "sub",
        "oid",
        "tid",
        "name",
        "preferred_username",
        "ver",
        "nonce",
        "email",
    } <= set(claims)
    assert "scp" not in claims


def test_issue_token_validates_scopes(entra: EntraEmulator, trio: Trio) -> None:
    with pytest.raises(ValueError, match="Nope"):
        entra.issue_token(trio.user, audience=trio.api, scopes=["Nope"])
    with pytest.raises(ValueError, match="client="):
        entra.issue_token(trio.user, audience="https://graph.microsoft.com")
