"""The emulator's workload identity federation: external issuers with their own discovery
and keys, federated identity credentials on apps, managed identities on the App Service
protocol, and Entra's refusals (AADSTS70021, 700211, 700212, 700213, 700024, 700027).

Everything goes over the emulator's real loopback socket with raw HTTP requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from entra_helpers import Trio, claims
from tests._leaks import register

from better_auth_obo.testing import EntraEmulator

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUBJECT = "system:serviceaccount:payments:middle-tier"
EXCHANGE = "api://AzureADTokenExchange"


def federated_form(trio: Trio, token: str) -> dict[str, str]:
    register(token)
    return trio.obo_form(
        client_secret="<omit>", client_assertion_type=ASSERTION_TYPE, client_assertion=token
    )


def test_external_issuer_serves_its_discovery_and_keys(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    k8s = entra.add_external_issuer()
    assert k8s.issuer.startswith(entra.authority + "/")
    document = http.get(f"{k8s.issuer}/.well-known/openid-configuration").json()
    assert document["issuer"] == k8s.issuer
    keys = http.get(document["jwks_uri"]).json()["keys"]
    token = k8s.issue_token(subject=SUBJECT, lifetime=600)
    key = jwt.PyJWK(keys[0]).key
    decoded = jwt.decode(token, key, algorithms=["RS256"], audience=EXCHANGE)
    assert (decoded["iss"], decoded["sub"], decoded["exp"] - decoded["iat"]) == (
        k8s.issuer,
        SUBJECT,
        600,
    )
    assert entra.signing_kid not in {k["kid"] for k in keys}  # its own key, not Entra's


def test_a_matching_federated_credential_authenticates_the_app(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    k8s = entra.add_external_issuer()
    trio.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT, audiences=[EXCHANGE])
    form = federated_form(trio, k8s.issue_token(subject=SUBJECT))
    response = http.post(entra.token_endpoint(), data=form)
    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["appidacr"] == "2"
    assert entra.token_requests[-1].auth_method == "private_key_jwt"


Refusal = Callable[[EntraEmulator, Trio], str]


def _no_credential(entra: EntraEmulator, trio: Trio) -> str:
    return entra.add_external_issuer().issue_token(subject=SUBJECT)


def _other_issuer(entra: EntraEmulator, trio: Trio) -> str:
    trusted, other = entra.add_external_issuer(), entra.add_external_issuer()
    trio.api.add_federated_credential(issuer=trusted.issuer, subject=SUBJECT)
    return other.issue_token(subject=SUBJECT)


def _other_subject(entra: EntraEmulator, trio: Trio) -> str:
    k8s = entra.add_external_issuer()
    trio.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT)
    return k8s.issue_token(subject=SUBJECT.upper())  # matching is case-sensitive


def _other_audience(entra: EntraEmulator, trio: Trio) -> str:
    k8s = entra.add_external_issuer()
    trio.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT)
    return k8s.issue_token(subject=SUBJECT, audience="https://kubernetes.default.svc")


def _expired(entra: EntraEmulator, trio: Trio) -> str:
    k8s = entra.add_external_issuer()
    trio.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT)
    now = entra._directory.clock()
    return k8s.issue_token(subject=SUBJECT, lifetime=3600, issued_at=now - 3700)


def _forged(entra: EntraEmulator, trio: Trio) -> str:
    k8s, forger = entra.add_external_issuer(), entra.add_external_issuer()
    trio.api.add_federated_credential(issuer=k8s.issuer, subject=SUBJECT)
    genuine = jwt.decode(k8s.issue_token(subject=SUBJECT), options={"verify_signature": False})
    # The claims of a trusted token, signed by another issuer's key under the trusted kid.
    header = jwt.get_unverified_header(k8s.issue_token(subject=SUBJECT))
    return jwt.encode(genuine, forger._key.private_key, algorithm="RS256", headers=header)


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (_no_credential, 70021, "Assertion Subject: 'system:serviceaccount"),
        (_other_issuer, 700211, "presented assertion issuer"),
        (_other_subject, 700213, "presented assertion subject"),
        (_other_audience, 700212, "presented assertion audience 'https://kubernetes"),
        (_expired, 700024, "not within its valid time range"),
        (_forged, 700027, "Signature validation failed"),
    ],
    ids=["none", "issuer", "subject", "audience", "expired", "forged"],
)
def test_federated_refusals(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, make: Refusal, code: int, words: str
) -> None:
    response = http.post(entra.token_endpoint(), data=federated_form(trio, make(entra, trio)))
    body = response.json()
    assert (response.status_code, body["error"], body["error_codes"]) == (
        401,
        "invalid_client",
        [code],
    )
    assert words in body["error_description"]


def test_a_removed_certificate_is_refused(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    certificate = trio.api.add_certificate()
    trio.api.remove_certificate(certificate)
    now = entra._directory.clock()
    assertion = jwt.encode(
        {"aud": entra.token_endpoint(), "iss": trio.api.client_id, "sub": trio.api.client_id,
         "jti": "1", "exp": now + 600, "iat": now},
        certificate.private_key_pem, algorithm="RS256", headers={"x5t": certificate.x5t},
    )  # fmt: skip
    form = trio.obo_form(
        client_secret="<omit>", client_assertion_type=ASSERTION_TYPE, client_assertion=assertion
    )
    assert http.post(entra.token_endpoint(), data=form).json()["error_codes"] == [700027]
    with pytest.raises(ValueError, match="not registered"):
        trio.api.remove_certificate(certificate)


# --- managed identity ---------------------------------------------------------------------------


def identity_request(
    http: httpx.Client, endpoint: str, header: str | None, **params: str
) -> httpx.Response:
    query = {"api-version": "2019-08-01", "resource": EXCHANGE, **params}
    headers = {} if header is None else {"X-IDENTITY-HEADER": header}
    return http.get(endpoint, params={k: v for k, v in query.items() if v}, headers=headers)


def test_managed_identity_endpoint_issues_its_token(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    identity = entra.add_managed_identity("payments-app")
    register(identity.identity_header)
    assert identity.identity_endpoint.startswith("https://127.0.0.1:")
    assert identity.identity_header not in repr(identity)
    response = identity_request(
        http, identity.identity_endpoint, identity.identity_header, client_id=identity.client_id
    )
    assert response.status_code == 200, response.text
    body = response.json()
    register(body["access_token"])
    issued = claims(body["access_token"])
    assert (issued["iss"], issued["sub"], issued["oid"], issued["aud"]) == (
        identity.issuer,
        identity.subject,
        identity.object_id,
        EXCHANGE,
    )
    assert identity.issuer == entra.issuer()
    assert int(body["expires_on"]) == issued["exp"]
    assert (body["resource"], body["token_type"], body["client_id"]) == (
        EXCHANGE,
        "Bearer",
        identity.client_id,
    )


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"header": None}, 401),
        ({"header": "wrong-header-value"}, 401),
        ({"api-version": "2017-09-01"}, 400),
        ({"resource": ""}, 400),
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, 400),
    ],
    ids=["no-header", "wrong-header", "api-version", "no-resource", "other-client-id"],
)
def test_managed_identity_endpoint_refusals(
    entra: EntraEmulator, http: httpx.Client, change: dict[str, Any], status: int
) -> None:
    identity = entra.add_managed_identity("payments-app")
    header = change.pop("header", identity.identity_header)
    response = identity_request(http, identity.identity_endpoint, header, **change)
    assert response.status_code == status
    assert "access_token" not in response.json()


def test_a_managed_identity_as_the_apps_federated_credential(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    identity = entra.add_managed_identity("payments-app")
    trio.api.add_federated_credential(issuer=identity.issuer, subject=identity.subject)
    token = identity_request(http, identity.identity_endpoint, identity.identity_header)
    form = federated_form(trio, token.json()["access_token"])
    response = http.post(entra.token_endpoint(), data=form)
    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["appid"] == trio.api.client_id

    other = entra.add_managed_identity("another-app")  # same issuer, another subject
    token = identity_request(http, other.identity_endpoint, other.identity_header)
    refused = http.post(
        entra.token_endpoint(), data=federated_form(trio, token.json()["access_token"])
    )
    assert refused.json()["error_codes"] == [700213]
