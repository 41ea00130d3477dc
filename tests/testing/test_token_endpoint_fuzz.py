"""Whatever a client posts, the token endpoint answers in Entra's shape: never a 500."""

from __future__ import annotations

import httpx
from entra_helpers import JWT_BEARER, Trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from better_auth_obo.testing import EntraEmulator

FIELDS = [
    "grant_type",
    "client_id",
    "client_secret",
    "assertion",
    "scope",
    "code",
    "refresh_token",
    "requested_token_use",
    "client_assertion",
    "client_assertion_type",
    "code_verifier",
    "redirect_uri",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            JWT_BEARER,
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "on_behalf_of",
            "openid offline_access",
            ".default",
            "api://x/.default",
            "User.Read",
            "a.b.c",
            "",
            "1.emu-rt.x",
        ]
    ),
    st.text(max_size=40),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(form=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8), use_trio=st.booleans())
def test_any_form_gets_an_entra_shaped_answer(
    entra: EntraEmulator, http: httpx.Client, trio: Trio, form: dict[str, str], use_trio: bool
) -> None:
    if use_trio:
        form = {**trio.obo_form(), **form}
    response = http.post(entra.token_endpoint(), data=form)
    assert response.status_code in (200, 400, 401)
    body = response.json()
    assert ("access_token" in body) is (response.status_code == 200)
    if response.status_code != 200:
        assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}: ")
