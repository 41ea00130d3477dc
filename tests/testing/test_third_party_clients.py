"""Third-party clients, unmodified, against the emulator (issue 12, "Fidelity"): each
gap the emulator closed is kept closed by the client that found it.

- fastapi-azure-auth: guest detection (``idp`` ≠ ``iss``), issuer and audience checks;
- Microsoft's ``identity`` package: sign-in, then ``log_out`` through the advertised
  ``end_session_endpoint`` back to the app;
- Authlib (Starlette integration): OpenID Connect sign-in with ``openid profile email``,
  ID token checked against the JWKS by Authlib, then UserInfo;
- MSAL Python with a certificate: the reuse of one client assertion (same ``jti``) that
  MSAL does by design is accepted, an expired or mis-addressed assertion is not.

Each client gets only its documented configuration; what that is per client is in
docs/testing.md ("Clients known to work against the emulator").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import identity.web
import jwt
import msal
import pytest
import requests
from authlib.integrations.starlette_client import OAuth
from entra_helpers import GRAPH_USER_READ, JWT_BEARER, Trio, claims
from fastapi import Depends, FastAPI
from fastapi_azure_auth import SingleTenantAzureAuthorizationCodeBearer
from fastapi_azure_auth.user import User as AzureUser
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from better_auth_obo.testing import App, Certificate, EntraEmulator

# --- fastapi-azure-auth ---------------------------------------------------------------------


def _protected_api(entra: EntraEmulator, api: App, *, allow_guest_users: bool) -> FastAPI:
    """A FastAPI app protected as fastapi-azure-auth's README shows, pointed at the emulator:
    its OpenID configuration URL (the library builds ``login.microsoftonline.com/{tenant}``
    unless ``openid_config.config_url`` is set) and an SSL context trusting the emulator's
    CA (``http_client_config={"verify": ...}``)."""
    scheme = SingleTenantAzureAuthorizationCodeBearer(
        app_client_id=api.client_id,
        tenant_id=entra.tenant_id,
        scopes={api.scope("access_as_user"): "access_as_user"},
        allow_guest_users=allow_guest_users,
        http_client_config={"verify": entra.ssl_context()},
    )
    scheme.openid_config.config_url = entra.discovery_url()
    app = FastAPI()

    @app.get("/me")
    async def me(user: AzureUser = Depends(scheme)) -> dict[str, Any]:  # noqa: B008
        return {"oid": user.oid, "is_guest": user.is_guest, "name": user.name}

    return app


@pytest.fixture
def api(entra: EntraEmulator) -> App:
    # Multi-tenant, so Entra issues tokens for it in other tenants too.
    return entra.register_app("middle-tier", scopes=["access_as_user"], multi_tenant=True)


async def _get_me(app: FastAPI, token: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.get("/me", headers={"authorization": f"Bearer {token}"})


async def test_fastapi_azure_auth_tells_a_guest_from_a_member(
    entra: EntraEmulator, api: App
) -> None:
    member = entra.add_user("Ada Lovelace", "ada@contoso.example")
    fabrikam = entra.add_tenant("fabrikam.example")
    home = entra.add_user("Grace Hopper", "grace@fabrikam.example", tenant=fabrikam)
    guest = entra.invite(home, entra.tenant)
    member_token = entra.issue_token(member, audience=api)
    guest_token = entra.issue_token(guest, audience=api)
    open_api = _protected_api(entra, api, allow_guest_users=True)

    as_member = await _get_me(open_api, member_token)
    as_guest = await _get_me(open_api, guest_token)

    assert as_member.status_code == 200, as_member.text
    assert as_member.json() == {"oid": member.oid, "is_guest": False, "name": "Ada Lovelace"}
    assert as_guest.status_code == 200, as_guest.text
    assert as_guest.json() == {"oid": guest.oid, "is_guest": True, "name": "Grace Hopper"}
    # The library's default (guests refused) holds only because guests' tokens carry idp.
    members_only = _protected_api(entra, api, allow_guest_users=False)
    refused = await _get_me(members_only, guest_token)
    assert (refused.status_code, refused.json()["detail"]["message"]) == (
        403,
        "Guest users not allowed",
    )
    assert (await _get_me(members_only, member_token)).status_code == 200


async def test_fastapi_azure_auth_refuses_another_tenant_another_audience_and_expiry(
    entra: EntraEmulator, api: App
) -> None:
    protected = _protected_api(entra, api, allow_guest_users=True)
    fabrikam = entra.add_tenant("fabrikam.example")
    outsider = entra.add_user("Eve", "eve@fabrikam.example", tenant=fabrikam)
    ada = entra.add_user("Ada Lovelace", "ada@contoso.example")
    other = entra.register_app("other-api", scopes=["access_as_user"])
    past = time.time() - 600

    # Signed by the same keys: only the claims differ from a token the API accepts.
    elsewhere = await _get_me(protected, entra.issue_token(outsider, audience=api))
    misaddressed = await _get_me(protected, entra.issue_token(ada, audience=other))
    expired = await _get_me(
        protected, entra.issue_token(ada, audience=api, lifetime=60, issued_at=past)
    )
    accepted = await _get_me(protected, entra.issue_token(ada, audience=api))

    assert accepted.status_code == 200, accepted.text
    for answer in (elsewhere, misaddressed):
        assert answer.status_code == 401, answer.text
        assert answer.json()["detail"]["message"] == "Token contains invalid claims"
    assert expired.status_code == 401
    assert expired.json()["detail"]["message"] == "Token signature has expired"


# --- Microsoft's identity package (identity.web.Auth) ------------------------------------------

WEB_REDIRECT = "http://localhost:5000/auth/callback"
HOMEPAGE = "http://localhost:5000/"


@pytest.mark.filterwarnings(  # MSAL's own advice to identity, which asks for the query mode
    "ignore:response_mode='form_post' is recommended:UserWarning"
)
@pytest.mark.parametrize(
    ("setting", "logout_path"),
    [("oidc_authority", "/oauth2/v2.0/logout"), ("authority", "/oauth2/logout")],
    ids=["oidc_authority-v2", "authority-v1"],
)
def test_identity_signs_in_and_logs_out_back_to_the_app(
    entra: EntraEmulator,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    logout_path: str,
) -> None:
    # identity builds its own MSAL apps and calls requests.get() for the OIDC document:
    # the CA is trusted through requests' documented REQUESTS_CA_BUNDLE.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", entra.ca_file)
    web = entra.register_app("web", redirect_uris=[WEB_REDIRECT])
    ada = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in(ada)
    base = f"{entra.authority}/{entra.tenant_id}"
    # identity appends /.well-known/openid-configuration to either setting: oidc_authority
    # names the v2 document, authority (MSAL adds /v2.0 for tokens) the v1 one.
    where = {setting: f"{base}/v2.0" if setting == "oidc_authority" else base}
    session: dict[str, Any] = {}
    auth = identity.web.Auth(
        session=session, client_id=web.client_id, client_credential=web.client_secret, **where
    )

    started = auth.log_in(scopes=[], redirect_uri=WEB_REDIRECT)
    answer = http.get(started["auth_uri"])
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == WEB_REDIRECT
    assert auth.complete_log_in(dict(parse_qsl(callback.query))) == {"next_link": None}
    user = auth.get_user()
    assert user is not None
    assert (user["oid"], user["name"], user["preferred_username"]) == (
        ada.oid,
        "Ada Lovelace",
        ada.upn,
    )

    logout_url = auth.log_out(HOMEPAGE)
    assert logout_url == f"{base}{logout_path}?post_logout_redirect_uri={HOMEPAGE}"
    assert auth.get_user() is None
    signed_out = http.get(logout_url)
    assert (signed_out.status_code, signed_out.headers["location"]) == (302, HOMEPAGE)


# --- Authlib (Starlette integration) ------------------------------------------------------------

AUTHLIB_REDIRECT = "http://localhost:5000/callback"


def _authlib_site(entra: EntraEmulator, web: App) -> Starlette:
    """A Starlette site signing users in with Authlib's OpenID Connect client, configured
    from the emulator's discovery URL; ``verify`` goes to Authlib's httpx clients."""
    oauth = OAuth()
    oauth.register(
        "entra",
        client_id=web.client_id,
        client_secret=web.client_secret,
        server_metadata_url=entra.discovery_url(),
        client_kwargs={
            "scope": "openid profile email",
            "code_challenge_method": "S256",
            "verify": entra.ssl_context(),
        },
    )
    client = oauth.create_client("entra")
    assert client is not None

    async def login(request: Request) -> Response:
        response: Response = await client.authorize_redirect(request, AUTHLIB_REDIRECT)
        return response

    async def callback(request: Request) -> Response:
        token = await client.authorize_access_token(request)  # checks the ID token via JWKS
        info = await client.userinfo(token=token)
        return JSONResponse({"id_token": dict(token["userinfo"]), "userinfo": dict(info)})

    return Starlette(
        routes=[Route("/login", login), Route("/callback", callback)],
        middleware=[Middleware(SessionMiddleware, secret_key="x" * 32)],
    )


async def test_authlib_openid_sign_in_then_userinfo(entra: EntraEmulator) -> None:
    web = entra.register_app("web", redirect_uris=[AUTHLIB_REDIRECT])
    ada = entra.add_user("Ada Lovelace", "ada@contoso.example")
    entra.auto_sign_in(ada)
    site = _authlib_site(entra, web)
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=site), base_url="http://localhost:5000"
        ) as browser,
        httpx.AsyncClient(verify=entra.ssl_context()) as to_entra,
    ):
        start = await browser.get("/login")
        assert start.status_code == 302
        assert start.headers["location"].startswith(entra.authorize_endpoint())
        authorize = await to_entra.get(start.headers["location"])
        assert authorize.status_code == 302, authorize.text
        back = urlsplit(authorize.headers["location"])
        done = await browser.get(f"{back.path}?{back.query}")

    assert done.status_code == 200, done.text
    body = done.json()
    identity_claims, info = body["id_token"], body["userinfo"]
    assert identity_claims["iss"] == entra.issuer()
    assert identity_claims["aud"] == web.client_id
    assert identity_claims["oid"] == ada.oid
    # OIDC Core §5.3.2: the client must find the ID token's sub in UserInfo (Entra's
    # userinfo.md: "including sub, the same claims ... in the ID token issued to the app").
    assert (info["sub"], info["name"], info["email"]) == (
        identity_claims["sub"],
        "Ada Lovelace",
        "ada@contoso.example",
    )
    assert {r.grant_type for r in entra.token_requests} == {"authorization_code"}


# --- MSAL Python: one client assertion, several token requests ------------------------------
#
# Issue 12 asked for "jti replay refused". Real Entra does not refuse a client assertion
# presented twice, and the emulator must not either:
# - MSAL Python signs one certificate assertion (exp = 10 min, one jti) and reuses it for
#   540 s across token requests (oauth2cli/assertion.py: create_regenerative_assertion →
#   AutoRefresher(expires_in=600 - 60)); its ConfidentialClientApplication docstring even
#   tells AKS workload-identity users to memoize the projected token with
#   ``AutoRefresher(..., expires_in=3600)``, i.e. to send the same JWT for an hour.
# - The failures reported against Entra for reused assertions are all expiry, AADSTS700024
#   "Client assertion is not within its valid time range" (MSAL.NET #4775 deprecating
#   WithClientAssertion(string), azure-sdk-for-rust #1739 and azure-workload-identity #693
#   for a Kubernetes token read once and reused past its exp), never a replay refusal.
# - Entra's certificate-credentials.md requires aud = the token endpoint, and exp; jti is a
#   GUID "can be used to prevent replay" (RFC 7519 §4.1.7 wording, a MAY in RFC 7523 §3).
# So: the same assertion (same jti) succeeds until it expires; an expired one gets
# invalid_client AADSTS700024, one addressed elsewhere invalid_client AADSTS700023
# ("Client assertion audience claim does not match Realm issuer", Azure SDK
# troubleshooting guides, ClientAssertionCredential table).


@pytest.fixture
def wire(entra: EntraEmulator) -> Iterator[tuple[requests.Session, list[dict[str, str]]]]:
    """MSAL's HTTP client, trusting the emulator and keeping every token request's form."""
    sent: list[dict[str, str]] = []

    def keep(response: requests.Response, *args: object, **kwargs: object) -> None:
        body = response.request.body
        if response.request.method == "POST" and body:
            text = body.decode() if isinstance(body, bytes) else body
            sent.append(dict(parse_qsl(text)))

    with requests.Session() as session:
        session.verify, session.trust_env = entra.ca_file, False
        session.hooks["response"].append(keep)
        yield session, sent


def _confidential(
    entra: EntraEmulator, app: App, session: requests.Session, credential: object
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        app.client_id,
        client_credential=credential,
        authority=f"{entra.authority}/{entra.tenant_id}",
        instance_discovery=False,
        http_client=session,
    )


def test_msal_reuses_one_certificate_assertion_and_entra_accepts_it(
    entra: EntraEmulator, trio: Trio, wire: tuple[requests.Session, list[dict[str, str]]]
) -> None:
    session, sent = wire
    cert = trio.api.add_certificate()
    app = _confidential(entra, trio.api, session, cert.msal_credential())

    graph = app.acquire_token_on_behalf_of(trio.assertion, [GRAPH_USER_READ])
    files = app.acquire_token_on_behalf_of(trio.assertion, [trio.downstream.scope("Files.Read")])

    assert "access_token" in graph, graph
    assert "access_token" in files, files
    assertions = [form["client_assertion"] for form in sent if "client_assertion" in form]
    assert len(assertions) == 2
    assert assertions[0] == assertions[1]  # one JWT, one jti, two token requests
    first = claims(assertions[0])
    assert first["jti"] and first["aud"] == entra.token_endpoint()
    assert first["exp"] - first["iat"] == 600
    assert [(r.grant_type, r.auth_method, r.status) for r in entra.token_requests] == [
        (JWT_BEARER, "private_key_jwt", 200),
        (JWT_BEARER, "private_key_jwt", 200),
    ]
    # Presented a third time, by another process that was handed the same JWT (as pods
    # sharing a projected token do): still accepted while it has not expired.
    again = _confidential(entra, trio.api, session, {"client_assertion": lambda: assertions[0]})
    client_only = again.acquire_token_for_client([f"{trio.downstream.app_id_uri}/.default"])
    assert "access_token" in client_only, client_only


def _signed_assertion(entra: EntraEmulator, app: App, cert: Certificate, **claims: Any) -> str:
    now = time.time()
    payload = {
        "aud": entra.token_endpoint(),
        "iss": app.client_id,
        "sub": app.client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(payload, cert.private_key_pem, algorithm="RS256", headers={"x5t": cert.x5t})


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"exp": -600, "nbf": -1200, "iat": -1200}, 700024, "not within its valid time range"),
        ({"aud": "authorize"}, 700023, "audience claim does not match Realm issuer"),
    ],
    ids=["expired-700024", "wrong-audience-700023"],
)
def test_msal_gets_entras_refusal_of_an_unusable_assertion(
    entra: EntraEmulator,
    trio: Trio,
    wire: tuple[requests.Session, list[dict[str, str]]],
    changes: dict[str, Any],
    code: int,
    message: str,
) -> None:
    session, _ = wire
    cert = trio.api.add_certificate()
    now = time.time()
    overrides: dict[str, Any] = {
        k: (now + v if isinstance(v, int) else entra.authorize_endpoint())
        for k, v in changes.items()
    }
    bad = _signed_assertion(entra, trio.api, cert, **overrides)
    app = _confidential(entra, trio.api, session, {"client_assertion": lambda: bad})

    result = app.acquire_token_on_behalf_of(trio.assertion, [GRAPH_USER_READ])

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [code]
    assert message in result["error_description"]
    assert [(r.status, r.error_code) for r in entra.token_requests] == [(401, code)]
    good = _signed_assertion(entra, trio.api, cert)  # same key, right claims: accepted
    ok = _confidential(entra, trio.api, session, {"client_assertion": lambda: good})
    assert "access_token" in ok.acquire_token_on_behalf_of(trio.assertion, [GRAPH_USER_READ])
