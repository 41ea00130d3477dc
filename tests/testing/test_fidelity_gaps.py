"""Gaps found by driving real clients (issue 12): guests' ``idp``, sign-out, and UserInfo
with the OpenID Connect scopes only."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from entra_helpers import REDIRECT_URI, Trio, authorize_params, claims, code_form, redirect_query

from better_auth_obo.testing import EntraEmulator


def _sign_in(entra: EntraEmulator, http: httpx.Client, trio: Trio, scope: str) -> dict[str, str]:
    entra.auto_sign_in(trio.user)
    answer = http.get(entra.authorize_endpoint(), params=authorize_params(trio.api, scope))
    code = redirect_query(answer.headers["location"])["code"]
    tokens: dict[str, str] = http.post(
        entra.token_endpoint(), data=code_form(trio.api, code)
    ).json()
    return tokens


def test_a_guests_tokens_name_their_home_tenant_in_idp(entra: EntraEmulator) -> None:
    fabrikam = entra.add_tenant("fabrikam.example")
    home = entra.add_user("Grace Hopper", "grace@fabrikam.example", tenant=fabrikam)
    guest = entra.invite(home, entra.tenant)
    api = entra.register_app("middle-tier", scopes=["access_as_user"])
    access = claims(entra.issue_token(guest, audience=api, scopes=["access_as_user"]))
    identity = claims(entra.issue_id_token(guest, client=api))
    for token in (access, identity):
        assert token["idp"] == f"https://sts.windows.net/{fabrikam.tenant_id}/"
        assert token["idp"] != token["iss"]  # how libraries tell a guest
    member = entra.add_user("Ada Lovelace", "ada@contoso.example")
    assert "idp" not in claims(entra.issue_token(member, audience=api, scopes=["access_as_user"]))
    assert "idp" not in claims(entra.issue_id_token(member, client=api))


def test_sign_out_returns_to_the_app_with_its_state(
    entra: EntraEmulator, http: httpx.Client
) -> None:
    document = http.get(entra.discovery_url()).json()
    back = "https://app.example/signed-out?from=entra"
    answer = http.get(
        document["end_session_endpoint"],
        params={"post_logout_redirect_uri": back, "state": "s1"},
    )
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert location.netloc == "app.example" and location.path == "/signed-out"
    assert parse_qs(location.query) == {"from": ["entra"], "state": ["s1"]}
    v1 = http.post(
        f"{entra.authority}/{entra.tenant_id}/oauth2/logout",
        data={"post_logout_redirect_uri": "http://localhost:5000/"},
    )
    assert (v1.status_code, v1.headers["location"]) == (302, "http://localhost:5000/")
    page = http.get(document["end_session_endpoint"])
    assert page.status_code == 200 and "signed out" in page.text
    odd = http.get(
        document["end_session_endpoint"], params={"post_logout_redirect_uri": "javascript:x"}
    )
    assert odd.status_code == 200  # never a redirect to anything but http(s)


def test_userinfo_answers_an_openid_only_token(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    tokens = _sign_in(entra, http, trio, "openid profile email")
    assert set(claims(tokens["access_token"])["scp"].split()) == {"openid", "profile", "email"}
    document = http.get(entra.discovery_url()).json()
    info = http.get(
        document["userinfo_endpoint"],
        headers={"authorization": f"Bearer {tokens['access_token']}"},
    )
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["sub"] == claims(tokens["id_token"])["sub"]  # the app's sub, as Entra's
    assert body["name"] == "Ada Lovelace" and body["email"] == "ada@contoso.example"
    only_openid = _sign_in(entra, http, trio, "openid")
    bare = http.get(
        document["userinfo_endpoint"],
        headers={"authorization": f"Bearer {only_openid['access_token']}"},
    ).json()
    assert set(bare) == {"sub"}
    assert REDIRECT_URI  # the helpers' redirect URI is what the app registered


def test_amr_only_in_v1_tokens_and_mfa_still_counts_for_obo(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.require_mfa(trio.user)
    v2 = entra.issue_token(trio.user, audience=trio.api, scopes=["access_as_user"], mfa=True)
    assert "amr" not in claims(v2)  # Entra documents amr for v1 tokens only
    graph = entra.issue_token(trio.user, audience="https://graph.microsoft.com", client=trio.api)
    assert claims(graph)["ver"] == "1.0" and claims(graph)["amr"] == ["pwd"]
    form = trio.obo_form()
    satisfied = http.post(entra.token_endpoint(), data={**form, "assertion": v2})
    assert satisfied.status_code == 200, satisfied.text
    plain = entra.issue_token(trio.user, audience=trio.api, scopes=["access_as_user"])
    challenged = http.post(entra.token_endpoint(), data={**form, "assertion": plain})
    assert challenged.json()["error_codes"] == [50076]
