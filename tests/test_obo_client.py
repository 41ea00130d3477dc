"""``OBOClient``: the exchange for APIs and MCP servers, with no Better Auth, against the
emulator over real sockets. Inbound tokens are verified before any request to Entra ID."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
from tests._leaks import register

from better_auth_obo import (
    ClientSecret,
    InvalidAssertionError,
    OBOClient,
    OBOError,
    www_authenticate,
)
from better_auth_obo.testing import App, EntraEmulator, User

GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"
OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Api:
    entra: EntraEmulator
    app: App
    user: User
    client: OBOClient
    clock: Clock

    def token(self, **options: object) -> str:
        options.setdefault("scopes", ["access_as_user"])
        token = self.entra.issue_token(self.user, audience=self.app, **options)  # type: ignore[arg-type]
        register(token)
        return token

    def exchanges(self) -> int:
        return sum(1 for r in self.entra.token_requests if r.grant_type == OBO_GRANT)


@pytest.fixture
async def api(entra: EntraEmulator) -> AsyncIterator[Api]:
    app = entra.register_app("middle-tier", scopes=["access_as_user"])
    entra.grant_consent(app, GRAPH_USER_READ)
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    register(app.client_secret)
    clock = Clock()
    http = httpx.AsyncClient(verify=entra.ssl_context())
    client = OBOClient(
        client_id=app.client_id,
        tenant_id=entra.tenant_id,
        authority=entra.authority,
        credentials=[ClientSecret(app.client_secret)],
        applications={"graph": {"scope": [GRAPH_USER_READ]}},
        http_client=http,
        clock=clock,
    )
    async with http, client:
        yield Api(entra, app, user, client, clock)


async def test_exchange_verifies_exchanges_and_caches(api: Api) -> None:
    inbound = api.token()
    token = await api.client.exchange(assertion=inbound, application_name="graph")
    assert token.application_name == "graph" and "User.Read" in token.scope
    assert token.expires_at.tzinfo is not None and token.expires_at.timestamp() > time.time()
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com" and claims["oid"] == api.user.oid
    assert token.authorization == f"Bearer {token.access_token}"
    assert token.access_token not in repr(token)
    again = await api.client.exchange(assertion=inbound, application_name="graph")
    assert again is token and api.exchanges() == 1
    # The token works at the resource.
    async with httpx.AsyncClient(verify=api.entra.ssl_context()) as http:
        me = await http.get(
            f"{api.entra.graph_url}/v1.0/me", headers={"authorization": token.authorization}
        )
    assert me.status_code == 200 and me.json()["id"] == api.user.oid


async def test_one_exchange_for_100_concurrent_requests_with_one_token(api: Api) -> None:
    inbound = api.token()
    tokens = await asyncio.gather(
        *(api.client.exchange(assertion=inbound, application_name="graph") for _ in range(100))
    )
    assert len({t.access_token for t in tokens}) == 1
    assert api.exchanges() == 1
    # Another user's token is another key.
    other = api.entra.add_user("Grace Hopper", "grace@contoso.example")
    theirs = api.entra.issue_token(other, audience=api.app, scopes=["access_as_user"])
    token = await api.client.exchange(assertion=theirs, application_name="graph")
    assert jwt.decode(token.access_token, options={"verify_signature": False})["oid"] == other.oid
    assert api.exchanges() == 2


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["oid"] = "00000000-0000-0000-0000-00000000dead"
    forged = jwt.encode(claims, "k" * 32, algorithm="HS256").split(".")[1]
    return ".".join([header, forged, signature])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda api: _tampered(api.token()), "signature"),
        (lambda api: api.token(lifetime=1, issued_at=time.time() - 3600), "expired"),
        (
            lambda api: api.entra.issue_token(
                api.user, audience="https://graph.microsoft.com", client=api.app
            ),
            "graph_audience",
        ),
        (
            lambda api: api.entra.issue_token(
                api.user, audience=api.entra.register_app("other", scopes=["x"]), scopes=["x"]
            ),
            "audience",
        ),
        (lambda api: api.entra.issue_id_token(api.user, client=api.app), "id_token"),
        (lambda api: "not-a-jwt", "malformed"),
    ],
)
async def test_a_foreign_tampered_or_expired_token_is_refused_before_any_request(
    api: Api, make: object, reason: str
) -> None:
    inbound = make(api)  # type: ignore[operator]
    register(inbound)
    with pytest.raises(InvalidAssertionError) as info:
        await api.client.exchange(assertion=inbound, application_name="graph")
    assert info.value.reason == reason, info.value.message
    assert info.value.code == "INVALID_ASSERTION"
    assert "stored" not in info.value.message
    assert api.exchanges() == 0


async def test_a_token_from_another_tenant_is_refused(api: Api) -> None:
    other = api.entra.add_tenant("fabrikam.example")
    stranger = api.entra.add_user("Mallory", "mallory@fabrikam.example", tenant=other)
    inbound = api.entra.issue_token(stranger, audience=api.app, scopes=["access_as_user"])
    register(inbound)
    with pytest.raises(InvalidAssertionError) as info:
        await api.client.exchange(assertion=inbound, application_name="graph")
    assert info.value.reason in ("tenant", "issuer")
    assert api.exchanges() == 0


async def test_required_scopes_are_checked_on_miss_and_hit(api: Api) -> None:
    inbound = api.token(scopes=["access_as_user"])
    await api.client.exchange(
        assertion=inbound, application_name="graph", required_scopes=["access_as_user"]
    )
    with pytest.raises(InvalidAssertionError) as info:  # cached now: still checked
        await api.client.exchange(
            assertion=inbound, application_name="graph", required_scopes=["Files.Write"]
        )
    assert info.value.reason == "scope" and "Files.Write" in info.value.message
    fresh = api.token(scopes=["access_as_user"], lifetime=3000)
    with pytest.raises(InvalidAssertionError, match=r"Files\.Write"):  # a miss
        await api.client.exchange(
            assertion=fresh, application_name="graph", required_scopes="access_as_user Files.Write"
        )
    assert api.exchanges() == 1


async def test_no_cached_token_outlives_the_inbound_token(api: Api) -> None:
    inbound = api.token(lifetime=600)
    await api.client.exchange(assertion=inbound, application_name="graph")
    api.clock.offset = 601  # the inbound token expired; the OBO token would live on
    with pytest.raises(InvalidAssertionError) as info:
        await api.client.exchange(assertion=inbound, application_name="graph")
    assert info.value.reason == "expired"
    assert api.exchanges() == 1


async def test_claims_and_force_refresh_exchange_again(api: Api) -> None:
    inbound = api.token()
    first = await api.client.exchange(assertion=inbound, application_name="graph")
    forced = await api.client.exchange(
        assertion=inbound, application_name="graph", force_refresh=True
    )
    assert forced.access_token != first.access_token
    assert (await api.client.exchange(assertion=inbound, application_name="graph")) is forced
    challenge = {"access_token": {"nbf": {"essential": True, "value": "1"}}}
    claimed = await api.client.exchange(
        assertion=inbound, application_name="graph", claims=challenge
    )
    assert claimed.access_token != forced.access_token
    assert api.exchanges() == 3
    assert api.entra.token_requests[-1].claims is not None


async def test_a_claims_challenge_from_entra_becomes_the_apis_401(api: Api) -> None:
    api.entra.require_mfa(api.user, resource="https://graph.microsoft.com")
    with pytest.raises(OBOError) as info:
        await api.client.exchange(assertion=api.token(), application_name="graph")
    header = www_authenticate(info.value)
    assert header is not None and 'error="insufficient_claims"' in header
    # After MFA the client's new token works.
    token = await api.client.exchange(assertion=api.token(mfa=True), application_name="graph")
    assert token.access_token


async def test_arguments_and_lifecycle(api: Api) -> None:
    from better_auth_obo import UnknownApplicationError

    with pytest.raises(UnknownApplicationError, match="'graph'"):
        await api.client.exchange(assertion=api.token(), application_name="nope")
    with pytest.raises(InvalidAssertionError, match="No bearer token"):
        await api.client.exchange(assertion="", application_name="graph")
    with pytest.raises(ValueError, match="credentials is empty"):
        OBOClient(
            client_id="a",
            tenant_id="b",
            credentials=[],
            applications={"g": {"scope": ["x/.default"]}},
        )
    assert "secret" not in repr(api.client).lower()
    await api.client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await api.client.exchange(assertion=api.token(), application_name="graph")


async def test_verify_says_who_sent_the_token_without_an_exchange(api: Api) -> None:
    inbound = api.token()
    caller = await api.client.verify(inbound, required_scopes=["access_as_user"])
    assert caller.oid == api.user.oid and caller.tid == api.entra.tenant_id
    assert caller.scopes == ("access_as_user",) and caller.client_id == api.app.client_id
    assert caller.expires_at.timestamp() > time.time()
    assert inbound not in repr(caller)
    with pytest.raises(InvalidAssertionError) as info:
        await api.client.verify(_tampered(inbound))
    assert info.value.reason == "signature"
    with pytest.raises(InvalidAssertionError, match="Files"):
        await api.client.verify(inbound, required_scopes=["Files.Read"])
    api.clock.offset = 7200  # remembered verdicts still check the time
    with pytest.raises(InvalidAssertionError) as info:
        await api.client.verify(inbound)
    assert info.value.reason == "expired"
    assert api.exchanges() == 0


def _app_token_as_entra_issues_it_by_default(api: Api) -> str:
    """Client credentials for this API from another app granted no role: no scp, no roles,
    and no idtyp (an optional claim Entra adds only when the app asks for it)."""
    now, principal = int(time.time()), "0f0f0f0f-0000-4000-8000-000000000001"
    claims = {
        "aud": api.app.client_id,
        "iss": api.entra.issuer(api.entra.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": api.entra.tenant_id,
        "ver": "2.0",
        "azp": "0f0f0f0f-0000-4000-8000-000000000002",
        "azpacr": "1",
        "oid": principal,
        "sub": principal,
    }
    token = api.entra._keys.sign(claims)  # the emulator's own key, as Entra would sign it
    register(token)
    return token


async def test_an_app_token_without_scp_is_refused_before_any_request(api: Api) -> None:
    token = _app_token_as_entra_issues_it_by_default(api)
    for call in (
        api.client.verify(token),
        api.client.exchange(assertion=token, application_name="graph"),
    ):
        with pytest.raises(InvalidAssertionError) as info:
            await call
        assert info.value.reason == "app_only"
    assert api.exchanges() == 0


async def test_one_token_has_one_spelling(api: Api) -> None:
    inbound = api.token()
    await api.client.exchange(assertion=inbound, application_name="graph")
    header, payload, signature = inbound.split(".")
    for variant in (f"{header}.{payload}.{signature}==", f"{header}=.{payload}.{signature}"):
        register(variant)
        with pytest.raises(InvalidAssertionError) as info:
            await api.client.exchange(assertion=variant, application_name="graph")
        assert info.value.reason == "malformed"
    assert api.exchanges() == 1


async def test_a_managed_identity_as_the_apps_credential(
    entra: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production without secrets: the app's client assertion is a managed identity's token
    (App Service protocol, served by the emulator), no client secret anywhere."""
    from better_auth_obo import ManagedIdentityAssertion

    app = entra.register_app("middle-tier", scopes=["access_as_user"])
    entra.grant_consent(app, GRAPH_USER_READ)
    user = entra.add_user("Ada Lovelace", "ada@contoso.example")
    identity = entra.add_managed_identity("middle-tier-identity")
    register(identity.identity_header)
    app.add_federated_credential(issuer=identity.issuer, subject=identity.subject)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.identity_header)
    # The emulator serves the identity endpoint with its own CA (Azure's is plain http on
    # localhost): a client that trusts it, with no proxy from the environment.
    mi_http = httpx.AsyncClient(verify=entra.ssl_context(), trust_env=False)
    http = httpx.AsyncClient(verify=entra.ssl_context())
    credential = ManagedIdentityAssertion(client_id=identity.client_id, http_client=mi_http)
    client = OBOClient(
        client_id=app.client_id,
        tenant_id=entra.tenant_id,
        authority=entra.authority,
        credentials=[credential],
        applications={"graph": {"scope": [GRAPH_USER_READ]}},
        http_client=http,
    )
    async with mi_http, http, client:
        inbound = entra.issue_token(user, audience=app, scopes=["access_as_user"])
        register(inbound)
        token = await client.exchange(assertion=inbound, application_name="graph")
        other = entra.issue_token(user, audience=app, scopes=["access_as_user"], lifetime=3000)
        register(other)
        await client.exchange(assertion=other, application_name="graph")
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert claims["oid"] == user.oid and claims["aud"] == "https://graph.microsoft.com"
    requests = [r for r in entra.token_requests if r.grant_type == OBO_GRANT]
    assert [r.error_code for r in requests] == [None, None]
    assert {r.auth_method for r in requests} == {"private_key_jwt"}  # no secret was sent
