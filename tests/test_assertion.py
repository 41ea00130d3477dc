"""Reading the stored Microsoft token and explaining why it cannot be an assertion."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from better_auth_obo._assertion import (
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    AssertionClaims,
    application_scope_problems,
    check_assertion,
    fingerprint,
    provider_scope_warnings,
    read_claims,
    resource_of,
)
from better_auth_obo._errors import InvalidAssertionError

CLIENT_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
OTHER_APP = "2846f71b-a7a4-4987-bab3-760035b2f389"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OIDC = ["openid", "profile", "email", "offline_access"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(payload: Any, header: dict[str, Any] | None = None) -> str:
    head = header or {"typ": "JWT", "alg": "RS256", "kid": "k1"}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return f"{b64(json.dumps(head).encode())}.{b64(body)}.{b64(b'signature-bytes')}"


# The access-tokens doc's decoded examples: a v2 token for a custom API, a v1 Graph OBO token.
V2_API = {
    "aud": CLIENT_ID,
    "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
    "iat": 1537231048,
    "nbf": 1537231048,
    "exp": 1537234948,
    "azp": CLIENT_ID,
    "azpacr": "0",
    "name": "Abe Lincoln",
    "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    "scp": "access_as_user",
    "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
    "tid": TENANT,
    "ver": "2.0",
}
V1_GRAPH = {
    "aud": "https://graph.microsoft.com",
    "iss": f"https://sts.windows.net/{TENANT}/",
    "iat": 1493930305,
    "nbf": 1493930305,
    "exp": 1493933875,
    "appid": OTHER_APP,
    "oid": "d5e979c7-3d2d-42af-8f30-727dd4c2d383",
    "scp": "User.Read Mail.Read",
    "tid": TENANT,
    "ver": "1.0",
}
ID_TOKEN = {
    "aud": CLIENT_ID,
    "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
    "iat": 1537231048,
    "exp": 1537234948,
    "sub": "x",
    "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    "tid": TENANT,
    "nonce": "abc",
    "ver": "2.0",
}


def claims(**changes: Any) -> AssertionClaims:
    payload = {**V2_API, **changes}
    return read_claims(token({k: v for k, v in payload.items() if v is not None}))


# --- read_claims ---


def test_read_v2_access_token() -> None:
    result = read_claims(token(V2_API))
    assert result == AssertionClaims(
        aud=CLIENT_ID,
        iss=f"https://login.microsoftonline.com/{TENANT}/v2.0",
        tid=TENANT,
        oid="690222be-ff1a-4d56-abd1-7e4f7d38e474",
        ver="2.0",
        scopes=("access_as_user",),
        roles=(),
        expires_at=1537234948.0,
        issued_at=1537231048.0,
        not_before=1537231048.0,
        idtyp=None,
        azp=CLIENT_ID,
        nonce_present=False,
    )
    assert not result.is_graph
    assert not result.is_app_only


def test_read_v1_graph_token_with_header_nonce() -> None:
    header = {"typ": "JWT", "nonce": "graph-header-nonce", "alg": "RS256", "x5t": "k"}
    result = read_claims(token(V1_GRAPH, header))
    assert result.is_graph
    assert result.azp == OTHER_APP  # v1: appid
    assert result.scopes == ("User.Read", "Mail.Read")
    assert result.nonce_present is False  # the nonce is in the header, not the claims


def test_read_id_token_and_expired_token() -> None:
    result = read_claims(token(ID_TOKEN))
    assert result.nonce_present
    assert result.scopes == ()
    assert result.azp is None
    assert result.remaining(1537234948.0 + 10) == -10.0  # expired tokens are still read


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"aud": [CLIENT_ID]}, "aud", CLIENT_ID),
        ({"aud": [CLIENT_ID, OTHER_APP]}, "aud", None),
        ({"aud": 5}, "aud", None),
        ({"aud": ""}, "aud", None),
        ({"scp": ["a", 3, "b"]}, "scopes", ("a", "b")),
        ({"scp": 7}, "scopes", ()),
        ({"roles": ["Task.Read", None]}, "roles", ("Task.Read",)),
        ({"roles": "A B"}, "roles", ("A", "B")),
        ({"exp": 1.5}, "expires_at", 1.5),
        ({"exp": "1537234948"}, "expires_at", None),
        ({"exp": True}, "expires_at", None),
        ({"exp": 10**400}, "expires_at", None),
        ({"tid": 12}, "tid", None),
        ({"azp": None, "appid": OTHER_APP}, "azp", OTHER_APP),
        ({"idtyp": "app"}, "idtyp", "app"),
    ],
)
def test_claim_types_are_normalized(changes: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(claims(**changes), field) == expected


def test_remaining() -> None:
    assert claims(exp=1000).remaining(400.0) == 600.0
    assert claims(exp=None).remaining(400.0) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "eyJ0eXAiOiJKV1QifQ.@@@.sig",
        token(b"[1, 2]"),
        token(b"not json"),
        "x" * 200_000,
        "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",  # an encrypted (JWE) token cannot be read
    ],
)
def test_unreadable_tokens_are_malformed(bad: str) -> None:
    with pytest.raises(InvalidAssertionError) as info:
        read_claims(bad)
    assert info.value.reason == "malformed"
    assert info.value.to_extra() == {"reason": "malformed"}
    if len(bad) > 8:
        assert bad not in str(info.value)
        assert bad not in repr(info.value)


def test_non_string_is_malformed() -> None:
    with pytest.raises(InvalidAssertionError):
        read_claims(None)  # type: ignore[arg-type]


def test_fingerprint() -> None:
    value = token(V2_API)
    assert fingerprint(value) == hashlib.sha256(value.encode()).hexdigest()[:32]
    assert len(fingerprint("x")) == 32
    assert fingerprint("a") != fingerprint("b")


@pytest.mark.parametrize(
    "aud",
    [
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "HTTPS://Graph.Microsoft.com",
        GRAPH_APP_ID,
        GRAPH_APP_ID.upper(),
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us/",
        "https://microsoftgraph.chinacloudapi.cn",
    ],
)
def test_graph_audiences(aud: str) -> None:
    assert claims(aud=aud).is_graph


@pytest.mark.parametrize(
    "aud", [CLIENT_ID, "api://graph.microsoft.com", "https://graph.windows.net"]
)
def test_not_graph(aud: str) -> None:
    assert not claims(aud=aud).is_graph


@pytest.mark.parametrize(
    ("changes", "app_only"),
    [
        ({"idtyp": "app"}, True),
        ({"scp": None, "roles": ["Task.Read"]}, True),
        ({"roles": ["Task.Read"]}, False),  # a user token with app roles assigned to the user
        ({}, False),
    ],
)
def test_is_app_only(changes: dict[str, Any], app_only: bool) -> None:
    assert claims(**changes).is_app_only is app_only


# --- check_assertion ---


@pytest.mark.parametrize(
    "aud",
    [
        CLIENT_ID,
        CLIENT_ID.upper(),
        f"api://{CLIENT_ID}",
        f"api://{CLIENT_ID}/",
        "api://my-middle-tier",
        "https://contoso.com/middle-tier",
        "https://contoso.onmicrosoft.com/api",
    ],
)
def test_accepted_audiences(aud: str) -> None:
    check_assertion(claims(aud=aud), client_id=CLIENT_ID)


def test_graph_token_says_how_to_fix_the_provider_scopes() -> None:
    with pytest.raises(InvalidAssertionError) as info:
        check_assertion(read_claims(token(V1_GRAPH)), client_id=CLIENT_ID)
    message = str(info.value)
    assert info.value.reason == "graph_audience"
    assert "User.Read" in message
    assert f"'{CLIENT_ID}/<your-scope>'" in message
    assert "AADSTS90009" in message
    assert "openid profile email offline_access" in message


@pytest.mark.parametrize(
    "aud",
    [
        OTHER_APP,
        f"api://{OTHER_APP}",
        f"api://{OTHER_APP}/",
        "https://management.azure.com/",
        "https://contoso.sharepoint.com",
        "https://vault.azure.net",
        "https://graph.windows.net",
    ],
)
def test_wrong_audience(aud: str) -> None:
    with pytest.raises(InvalidAssertionError) as info:
        check_assertion(claims(aud=aud), client_id=CLIENT_ID)
    assert info.value.reason == "audience"
    assert aud in str(info.value)
    assert f"'{CLIENT_ID}/access_as_user'" in str(info.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (ID_TOKEN, "id_token"),
        ({**ID_TOKEN, "nonce": None}, "id_token"),  # no nonce, but no azp/appid either
        ({**ID_TOKEN, "roles": ["Admin"]}, "id_token"),  # user app roles appear in ID tokens
        ({**V2_API, "scp": None, "roles": ["Task.Read"]}, "app_only"),
        ({**V2_API, "idtyp": "app"}, "app_only"),
        ({**V2_API, "aud": None}, "malformed"),
    ],
)
def test_refused_token_kinds(payload: dict[str, Any], reason: str) -> None:
    value = token({k: v for k, v in payload.items() if v is not None})
    with pytest.raises(InvalidAssertionError) as info:
        check_assertion(read_claims(value), client_id=CLIENT_ID)
    assert info.value.reason == reason
    assert value not in str(info.value)


# --- scopes ---


@pytest.mark.parametrize(
    ("scope", "resource"),
    [
        ("User.Read", GRAPH_RESOURCE),
        (".default", GRAPH_RESOURCE),
        ("https://graph.microsoft.com/User.Read", GRAPH_RESOURCE),
        ("https://graph.microsoft.com//User.Read", GRAPH_RESOURCE),  # App ID URI with a slash
        (f"{GRAPH_APP_ID}/Mail.Read", GRAPH_RESOURCE),
        ("https://graph.microsoft.us/User.Read", "https://graph.microsoft.us"),
        ("api://x/.default", "api://x"),
        ("api://x", "api://x"),
        ("https://contoso.com/api/read", "https://contoso.com/api"),
        (f"{CLIENT_ID}/access_as_user", CLIENT_ID),
        ("openid", None),
        ("OFFLINE_ACCESS", None),
        ("  ", None),
    ],
)
def test_resource_of(scope: str, resource: str | None) -> None:
    assert resource_of(scope) == resource


def test_better_auth_default_scopes_get_two_warnings() -> None:
    warnings = provider_scope_warnings(
        ["openid", "profile", "email", "User.Read", "offline_access"], client_id=CLIENT_ID
    )
    assert len(warnings) == 2
    graph, no_api = warnings
    assert "User.Read" in graph
    assert "Graph token" in graph
    assert f"'{CLIENT_ID}/access_as_user'" in graph
    assert "openid profile email offline_access" in graph
    assert "own API" in no_api


@pytest.mark.parametrize(
    "scopes",
    [
        [f"{CLIENT_ID}/access_as_user", *OIDC],
        [f"{CLIENT_ID.upper()}/access_as_user"],
        ["api://my-middle-tier/access_as_user", *OIDC],
    ],
)
def test_good_provider_scopes(scopes: list[str]) -> None:
    assert provider_scope_warnings(scopes, client_id=CLIENT_ID) == []


def test_api_uri_self_form_warns_about_aadsts90009() -> None:
    [warning] = provider_scope_warnings([f"api://{CLIENT_ID}/access_as_user"], client_id=CLIENT_ID)
    assert "AADSTS90009" in warning
    assert f"'{CLIENT_ID}/access_as_user'" in warning


def test_another_apps_scope_warns() -> None:
    [warning] = provider_scope_warnings([f"{OTHER_APP}/read", *OIDC], client_id=CLIENT_ID)
    assert OTHER_APP in warning
    assert "another app" in warning


@pytest.mark.parametrize("scopes", [[], OIDC])
def test_no_api_scope_warns(scopes: list[str]) -> None:
    [warning] = provider_scope_warnings(scopes, client_id=CLIENT_ID)
    assert f"'{CLIENT_ID}/access_as_user'" in warning


@pytest.mark.parametrize(
    "scopes",
    [
        ["https://graph.microsoft.com/.default"],
        ["User.Read", "Mail.Read", "offline_access"],
        ["https://Graph.Microsoft.com/User.Read", f"{GRAPH_APP_ID}/Mail.Read", "User.Read"],
        ["api://downstream/read", "api://downstream/write"],
        ["api://downstream/.default", "openid"],
    ],
)
def test_good_application_scopes(scopes: list[str]) -> None:
    assert application_scope_problems(scopes) == []


def test_application_scopes_spanning_resources() -> None:
    [problem] = application_scope_problems(["User.Read", "api://downstream/read"])
    assert "AADSTS700022" in problem
    assert "api://downstream" in problem
    assert GRAPH_RESOURCE in problem


def test_application_scopes_mixing_default_and_named() -> None:
    [problem] = application_scope_problems(["api://downstream/.default", "api://downstream/read"])
    assert "'.default'" in problem
    assert "'api://downstream/.default' alone" in problem


def test_application_scopes_without_an_api() -> None:
    [problem] = application_scope_problems(["openid", "offline_access"])
    assert "no downstream API" in problem
