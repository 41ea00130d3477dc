"""The ``claims`` parameter on token requests: client capabilities (CAE tokens),
challenge claims (nbf, acrs, capolids), malformed values, the request log."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from entra_helpers import GRAPH_USER_READ, Trio, authorize_params, claims, code_form, redirect_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from better_auth_obo.testing import EntraEmulator

CP1 = '{"access_token":{"xms_cc":{"values":["cp1"]}}}'
ACRS_C1 = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
POLICY = "9ab03e19-ed42-4168-b6b7-7001fb3e933a"
CAPOLIDS = json.dumps({"access_token": {"capolids": {"essential": True, "values": [POLICY]}}})


def _nbf(value: object, *, cp1: bool = False) -> str:
    access: dict[str, Any] = {"nbf": {"essential": True, "value": value}}
    if cp1:  # the way MSAL merges its capabilities into a challenge
        access["xms_cc"] = {"values": ["cp1"]}
    return json.dumps({"access_token": access})


def _obo(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, claims_value: str | None, **extra: str
) -> httpx.Response:
    form = trio.obo_form(**extra)
    if claims_value is not None:
        form["claims"] = claims_value
    return http.post(entra.token_endpoint(), data=form)


# -- client capabilities --------------------------------------------------------------------


def test_cp1_gives_a_long_lived_cae_token(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    body = _obo(entra, http, trio, CP1).json()

    access = claims(body["access_token"])
    assert access["xms_cc"] == ["cp1"]
    assert body["expires_in"] == body["ext_expires_in"] == 24 * 3600
    assert access["exp"] - access["iat"] == 24 * 3600


def test_no_claims_gives_an_ordinary_token(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    body = _obo(entra, http, trio, None).json()

    assert "xms_cc" not in claims(body["access_token"])
    assert body["expires_in"] == 3600


@pytest.mark.parametrize(
    "value",
    [
        '{"access_token":{"xms_cc":{"values":["CP1"]}}}',  # MSAL.js spells it CP1
        '{"access_token":{"xms_cc":{"values":["cp1","foo"]}}}',  # unknown values dropped
        '{"id_token":{"auth_time":{"essential":true}},"access_token":{"xms_cc":{"values":["cp1"]}}}',
    ],
)
def test_capability_spellings(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, value: str
) -> None:
    assert claims(_obo(entra, http, trio, value).json()["access_token"])["xms_cc"] == ["cp1"]


def test_unknown_capability_alone_is_no_cae(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    body = _obo(entra, http, trio, '{"access_token":{"xms_cc":{"values":["foo"]}}}').json()

    assert "xms_cc" not in claims(body["access_token"])
    assert body["expires_in"] == 3600


def test_lifetime_policies_do_not_apply_to_cae_tokens(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.set_token_lifetime(600)

    assert _obo(entra, http, trio, CP1).json()["expires_in"] == 24 * 3600
    assert _obo(entra, http, trio, None).json()["expires_in"] == 600


def test_cae_lifetime_is_configurable() -> None:
    with (
        EntraEmulator(cae_token_lifetime=7200) as entra,
        httpx.Client(verify=entra.ssl_context()) as http,
    ):
        api = entra.register_app("middle-tier", scopes=["access_as_user"])
        entra.grant_consent(api, GRAPH_USER_READ)
        user = entra.add_user("Ada Lovelace", "ada@contoso.example")
        trio = Trio(api, api, user, entra.issue_token(user, audience=api))
        body = _obo(entra, http, trio, CP1).json()
    assert body["expires_in"] == 7200
    with pytest.raises(ValueError, match="cae_token_lifetime"):
        EntraEmulator(cae_token_lifetime=0)


def test_cp1_on_refresh_token_and_authorization_code(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.auto_sign_in(trio.user)
    params = authorize_params(trio.api, f"openid offline_access {GRAPH_USER_READ}")
    location = http.get(entra.authorize_endpoint(), params=params).headers["location"]
    form = code_form(trio.api, redirect_query(location)["code"], claims=CP1)
    by_code = http.post(entra.token_endpoint(), data=form).json()
    refresh = {
        "grant_type": "refresh_token",
        "client_id": trio.api.client_id,
        "client_secret": trio.api.client_secret or "",
        "refresh_token": by_code["refresh_token"],
        "claims": CP1,
    }
    by_refresh = http.post(entra.token_endpoint(), data=refresh).json()

    for body in (by_code, by_refresh):
        assert claims(body["access_token"])["xms_cc"] == ["cp1"]
        assert body["expires_in"] == 24 * 3600
    assert "xms_cc" not in claims(by_code["id_token"])


def test_the_request_log_keeps_a_well_formed_claims_value(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    _obo(entra, http, trio, CP1)
    _obo(entra, http, trio, "{not json")
    _obo(entra, http, trio, None)

    assert [r.claims for r in entra.token_requests] == [CP1, None, None]
    assert [r.error_code for r in entra.token_requests] == [None, 90100, None]


# -- challenge claims -----------------------------------------------------------------------


def test_nbf_before_the_sign_in_is_satisfied(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    issued = claims(trio.assertion)["iat"]
    response = _obo(entra, http, trio, _nbf(str(issued - 60), cp1=True))

    assert response.status_code == 200
    assert claims(response.json()["access_token"])["xms_cc"] == ["cp1"]


def test_nbf_after_the_sign_in_needs_the_user(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    issued = claims(trio.assertion)["iat"]
    response = _obo(entra, http, trio, _nbf(str(issued + 60), cp1=True))

    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["error_codes"], body["suberror"]) == (
        "invalid_grant",
        [50173],
        "basic_action",
    )
    # The challenge, without the client's capabilities, for the next /authorize.
    assert json.loads(body["claims"]) == {
        "access_token": {"nbf": {"essential": True, "value": str(issued + 60)}}
    }


def test_nbf_as_a_json_number_is_accepted(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    issued = claims(trio.assertion)["iat"]
    assert _obo(entra, http, trio, _nbf(issued - 60)).status_code == 200


def test_acrs_is_satisfied_by_mfa_at_sign_in(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    mfa = entra.issue_token(trio.user, audience=trio.api, mfa=True)
    response = _obo(entra, http, trio, ACRS_C1, assertion=mfa)

    assert response.status_code == 200
    assert claims(response.json()["access_token"])["acrs"] == ["c1"]


def test_acrs_without_mfa_is_a_step_up_challenge(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    body = _obo(entra, http, trio, ACRS_C1).json()

    assert (body["error"], body["error_codes"], body["suberror"]) == (
        "interaction_required",
        [50076],
        "basic_action",
    )
    assert json.loads(body["claims"]) == json.loads(ACRS_C1)


def test_capolids_challenge_round_trip(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.require_mfa(trio.user)
    first = _obo(entra, http, trio, CP1).json()
    assert first["error_codes"] == [50076]
    challenge = first["claims"]

    again = _obo(entra, http, trio, challenge).json()
    assert again["error_codes"] == [50076]
    assert json.loads(again["claims"]) == json.loads(challenge)

    stepped_up = entra.issue_token(trio.user, audience=trio.api, mfa=True)
    done = _obo(entra, http, trio, CAPOLIDS, assertion=stepped_up)
    assert done.status_code == 200
    assert "acrs" not in claims(done.json()["access_token"])


# -- malformed values: a clean 400, never a 500 ----------------------------------------------

MALFORMED = {
    "not json": "{access_token:",
    "array": "[]",
    "string": '"cp1"',
    "number": "1",
    "null": "null",
    "huge": json.dumps({"access_token": {"xms_cc": {"values": ["cp1"] * 100_000}}}),
    "huge string": '{"x":"' + "A" * 1_000_000 + '"}',
    "deep": '{"access_token":{"nbf":' + "[" * 2000 + "]" * 2000 + "}}",
    "very deep": "[" * 200_000 + "]" * 200_000,
    "access_token not an object": '{"access_token":["xms_cc"]}',
    "xms_cc not an object": '{"access_token":{"xms_cc":"cp1"}}',
    "xms_cc values not a list": '{"access_token":{"xms_cc":{"values":"cp1"}}}',
    "xms_cc values not strings": '{"access_token":{"xms_cc":{"values":[1]}}}',
    "nbf words": _nbf("yesterday"),
    "nbf empty": _nbf(""),
    "nbf NaN": _nbf("NaN"),
    "nbf infinite": _nbf("1e999"),
    "nbf boolean": _nbf(True),
    "nbf object": _nbf({"$date": 1}),
    "nbf missing": '{"access_token":{"nbf":{"essential":true}}}',
    "acrs number": '{"access_token":{"acrs":{"essential":true,"value":5}}}',
    "capolids not strings": '{"access_token":{"capolids":{"values":[{}]}}}',
}


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_claims_is_invalid_request(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, value: str
) -> None:
    response = _obo(entra, http, trio, value)

    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["error_codes"]) == ("invalid_request", [90100])
    assert "'claims'" in body["error_description"]
    assert len(body["error_description"]) < 600  # the value is never echoed
    assert entra.token_requests[-1].claims is None


def test_malformed_claims_on_refresh_and_code_grants(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.auto_sign_in(trio.user)
    params = authorize_params(trio.api, f"openid offline_access {GRAPH_USER_READ}")
    location = http.get(entra.authorize_endpoint(), params=params).headers["location"]
    code = redirect_query(location)["code"]
    bad = http.post(entra.token_endpoint(), data=code_form(trio.api, code, claims="[]"))
    assert bad.json()["error_codes"] == [90100]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
SHAPED = st.fixed_dictionaries(
    {
        "access_token": st.dictionaries(
            st.sampled_from(["xms_cc", "nbf", "acrs", "capolids", "other"]),
            st.dictionaries(st.sampled_from(["essential", "value", "values"]), JSON),
        )
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.one_of(JSON.map(json.dumps), SHAPED.map(json.dumps), st.text(max_size=60)))
def test_any_claims_value_gets_an_entra_shaped_answer(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, value: str
) -> None:
    response = _obo(entra, http, trio, value)

    assert response.status_code in (200, 400)
    body = response.json()
    if response.status_code == 400:
        assert body["error_codes"][0] in (90100, 50173, 50076)
