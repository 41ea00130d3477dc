"""Every catalogue error is reachable and shaped as Entra shapes it.

Expected shapes live in ``tests/fixtures/entra_errors/*.json`` (one per scenario);
each scenario below provokes its error through the public API and real HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from entra_helpers import GRAPH_USER_READ, Trio, authorize_params, code_form, redirect_query

from better_auth_obo.testing import Certificate, EntraEmulator

FIXTURES = Path(__file__).parents[1] / "fixtures" / "entra_errors"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
DESCRIPTION = re.compile(
    rf"^AADSTS(\d+): .+ Trace ID: {GUID} Correlation ID: {GUID} Timestamp: {STAMP}$", re.S
)

Scenario = Callable[[EntraEmulator, httpx.Client, Trio], httpx.Response]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


def _post(
    entra: EntraEmulator, http: httpx.Client, form: dict[str, str], tenant: str | None = None
) -> httpx.Response:
    return http.post(entra.token_endpoint(tenant), data=form)


def _cert_assertion(
    entra: EntraEmulator, trio: Trio, cert: Certificate | None = None, **overrides: Any
) -> dict[str, str]:
    cert = cert or trio.api.add_certificate()
    now = entra._directory.clock()
    payload = {
        "aud": entra.token_endpoint(),
        "iss": trio.api.client_id,
        "sub": trio.api.client_id,
        "jti": "j",
        "exp": now + 600,
        "iat": now,
        **overrides,
    }
    token = jwt.encode(payload, cert.private_key_pem, algorithm="RS256", headers={"x5t": cert.x5t})
    return {
        "client_secret": "<omit>",
        "client_assertion": token,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }


def _code(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> str:
    entra.auto_sign_in(trio.user)
    params = authorize_params(trio.api, "openid offline_access " + GRAPH_USER_READ)
    response = http.get(entra.authorize_endpoint(), params=params)
    return redirect_query(response.headers["location"])["code"]


@scenario
def mfa_required(entra, http, trio):  # type: ignore[no-untyped-def]
    entra.require_mfa(trio.user)
    return _post(entra, http, trio.obo_form())


@scenario
def mfa_enrollment_required(entra, http, trio):  # type: ignore[no-untyped-def]
    entra.require_mfa(trio.user, error_code=50079)
    return _post(entra, http, trio.obo_form())


@scenario
def consent_required(entra, http, trio):  # type: ignore[no-untyped-def]
    entra.revoke_consent(trio.api, GRAPH_USER_READ)
    return _post(entra, http, trio.obo_form())


@scenario
def assertion_bad_signature(entra, http, trio):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import rsa

    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = jwt.get_unverified_header(trio.assertion)  # same kid, another key
    payload = jwt.decode(trio.assertion, options={"verify_signature": False})
    forged = jwt.encode(payload, forger, algorithm="RS256", headers=header)
    return _post(entra, http, trio.obo_form(assertion=forged))


@scenario
def assertion_audience_mismatch(entra, http, trio):  # type: ignore[no-untyped-def]
    other = entra.issue_token(trio.user, audience=trio.downstream)
    return _post(entra, http, trio.obo_form(assertion=other))


@scenario
def assertion_expired(entra, http, trio):  # type: ignore[no-untyped-def]
    old = entra.issue_token(
        trio.user, audience=trio.api, issued_at=entra._directory.clock() - 7200, lifetime=3600
    )
    return _post(entra, http, trio.obo_form(assertion=old))


@scenario
def assertion_malformed(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(assertion="not-a-jwt"))


@scenario
def assertion_is_id_token(entra, http, trio):  # type: ignore[no-untyped-def]
    id_token = entra.issue_id_token(trio.user, client=trio.api)
    return _post(entra, http, trio.obo_form(assertion=id_token))


@scenario
def invalid_client_secret(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(client_secret="wrong"))


@scenario
def expired_client_secret(entra, http, trio):  # type: ignore[no-untyped-def]
    entra.expire_secret(trio.api)
    return _post(entra, http, trio.obo_form())


@scenario
def no_client_credential(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(client_secret="<omit>"))


@scenario
def public_client_sent_secret(entra, http, trio):  # type: ignore[no-untyped-def]
    spa = entra.register_app("spa", public_client=True)
    return _post(entra, http, trio.obo_form(client_id=spa.client_id, client_secret="x"))


@scenario
def client_assertion_unknown_key(entra, http, trio):  # type: ignore[no-untyped-def]
    foreign = trio.downstream.add_certificate()  # registered on another app
    return _post(entra, http, trio.obo_form(**_cert_assertion(entra, trio, foreign)))


@scenario
def client_assertion_subject_mismatch(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(**_cert_assertion(entra, trio, sub="someone-else")))


@scenario
def client_assertion_expired(entra, http, trio):  # type: ignore[no-untyped-def]
    now = entra._directory.clock()
    return _post(
        entra, http, trio.obo_form(**_cert_assertion(entra, trio, exp=now - 5, iat=now - 605))
    )


@scenario
def client_assertion_wrong_audience(entra, http, trio):  # type: ignore[no-untyped-def]
    aud = f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0/authorize"  # not the token endpoint
    return _post(entra, http, trio.obo_form(**_cert_assertion(entra, trio, aud=aud)))


@scenario
def unknown_client(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(client_id="11111111-1111-1111-1111-111111111111"))


@scenario
def invalid_scope(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(trio.downstream.scope("Nope.Read")))


@scenario
def scopes_of_several_resources(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(
        entra, http, trio.obo_form(f"{GRAPH_USER_READ} {trio.downstream.scope('Files.Read')}")
    )


@scenario
def resource_not_found(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form("api://downstream/Files.Read"))


@scenario
def tenant_not_found(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(), tenant="nosuchtenant")


@scenario
def discovery_tenant_not_found(entra, http, trio):  # type: ignore[no-untyped-def]
    return http.get(f"{entra.authority}/nosuchtenant/v2.0/.well-known/openid-configuration")


@scenario
def user_not_in_tenant(entra, http, trio):  # type: ignore[no-untyped-def]
    fabrikam = entra.add_tenant("fabrikam.onmicrosoft.com")
    stranger = entra.add_user("Eve", "eve@fabrikam.example", tenant=fabrikam)
    api = entra.register_app("multi", scopes=["access_as_user"], multi_tenant=True)
    assertion = entra.issue_token(stranger, audience=api)
    form = Trio(api, api, stranger, assertion).obo_form()
    return _post(entra, http, form)


@scenario
def blocked_by_conditional_access(entra, http, trio):  # type: ignore[no-untyped-def]
    entra.block(trio.user)
    return _post(entra, http, trio.obo_form())


@scenario
def single_tenant_app_on_common(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(), tenant="common")


@scenario
def missing_parameter(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(assertion="<omit>"))


@scenario
def unsupported_grant_type(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, trio.obo_form(grant_type="password"))


@scenario
def code_redeemed_twice(entra, http, trio):  # type: ignore[no-untyped-def]
    form = code_form(trio.api, _code(entra, http, trio))
    _post(entra, http, form)
    return _post(entra, http, form)


@scenario
def pkce_verifier_mismatch(entra, http, trio):  # type: ignore[no-untyped-def]
    return _post(entra, http, code_form(trio.api, _code(entra, http, trio), code_verifier="x" * 50))


@scenario
def token_for_itself_by_app_id_uri(entra, http, trio):  # type: ignore[no-untyped-def]
    form = code_form(trio.api, _code(entra, http, trio), scope=trio.api.scope("access_as_user"))
    return _post(entra, http, form)


@scenario
def client_credentials_without_default(entra, http, trio):  # type: ignore[no-untyped-def]
    form = {
        "grant_type": "client_credentials",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret,
        "scope": trio.downstream.scope("Files.Read"),
    }
    return _post(entra, http, form)


@scenario
def refresh_token_revoked(entra, http, trio):  # type: ignore[no-untyped-def]
    tokens = _post(entra, http, code_form(trio.api, _code(entra, http, trio))).json()
    entra.revoke_sessions(trio.user)
    form = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret,
        "refresh_token": tokens["refresh_token"],
    }
    return _post(entra, http, form)


@scenario
def refresh_token_unknown(entra, http, trio):  # type: ignore[no-untyped-def]
    form = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret,
        "refresh_token": "1.nope",
    }
    return _post(entra, http, form)


def _fixtures() -> list[Any]:
    return [
        pytest.param(json.loads(p.read_text()), id=p.stem) for p in sorted(FIXTURES.glob("*.json"))
    ]


def test_every_scenario_has_a_fixture() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(SCENARIOS)


@pytest.mark.parametrize("expected", _fixtures())
def test_error_shape(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, expected: dict[str, Any]
) -> None:
    response = SCENARIOS[expected["scenario"]](entra, http, trio)

    assert response.status_code == expected["status"]
    assert response.headers["x-ms-request-id"]
    body = response.json()
    assert body["error"] == expected["error"]
    assert body["error_codes"] == expected["error_codes"]
    match = DESCRIPTION.match(body["error_description"])
    assert match, body["error_description"]
    assert int(match.group(1)) == expected["error_codes"][0]
    assert re.fullmatch(STAMP, body["timestamp"])
    assert re.fullmatch(GUID, body["trace_id"])
    assert re.fullmatch(GUID, body["correlation_id"])
    assert body["timestamp"] in body["error_description"]
    assert body["trace_id"] in body["error_description"]
    assert body.get("suberror") == expected["suberror"]
    assert ("error_uri" in body) is expected["error_uri"]
    assert ("claims" in body) is expected["claims"]
    if expected["claims"]:
        assert json.loads(body["claims"])["access_token"]
    fields = {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
        "suberror",
        "claims",
    }
    assert set(body) <= fields
