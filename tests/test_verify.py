"""The assertion verifier, check by check, written as the attacks it stops.

Keys and discovery come from ``httpx.MockTransport`` here (exact wire control: key sets
that change, outages, documents pointing elsewhere); the same verifier runs against the
emulator over real sockets in tests/test_trust.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from tests._fakes import (
    AUTHORITY,
    CLIENT_ID,
    ISSUER_V1,
    TENANT_ID,
    discovery,
    jwks,
    make_jwt,
    metadata_answer,
    user_token,
)
from tests._leaks import register

from better_auth_obo._errors import (
    EntraUnavailableError,
    InvalidAssertionError,
    ReauthenticationRequiredError,
)
from better_auth_obo._verify import CONSUMER_TENANT_ID, AssertionVerifier

OID = "690222be-ff1a-4d56-abd1-7e4f7d38e474"
OTHER_TENANT = "3c6f0a3e-1111-4c2d-9f00-0000000000aa"
_ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Keys:
    """A key endpoint whose answers the test controls; counts the GETs."""

    def __init__(self) -> None:
        self.gets: list[str] = []
        self.answer: Callable[[httpx.Request], httpx.Response | None] = metadata_answer

    def client(self) -> httpx.AsyncClient:
        async def handle(request: httpx.Request) -> httpx.Response:
            self.gets.append(request.url.path)
            answer = self.answer(request)
            assert answer is not None, request.url
            return answer

        return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def verifier(
    keys: Keys, clock: Clock, *, tenant: str = TENANT_ID, **options: Any
) -> AssertionVerifier:
    return AssertionVerifier(
        http=keys.client(),
        authority=AUTHORITY,
        tenant=tenant,
        client_id=CLIENT_ID,
        clock=clock,
        **options,
    )


def signed(claims: dict[str, Any], *, key: Any = _ATTACKER_KEY, kid: str = "k1", **hdr: Any) -> str:
    now = int(time.time())
    body = {"iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0", "tid": TENANT_ID}
    body |= {"iss": f"{AUTHORITY}/{TENANT_ID}/v2.0", "aud": CLIENT_ID, "oid": OID}
    body |= {"scp": "access_as_user", "azp": str(uuid.uuid4())}
    body.update(claims)
    token = jwt.encode(body, key, algorithm="RS256", headers={"kid": kid, **hdr})
    register(token)
    return token


async def refused(v: AssertionVerifier, token: str, reason: str, **kw: Any) -> None:
    with pytest.raises(InvalidAssertionError) as info:
        await v.verify(token, account_id=kw.pop("account_id", OID), **kw)
    assert info.value.reason == reason, info.value.message
    assert token not in info.value.message


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- what passes ----------------------------------------------------------------------


async def test_v2_token_of_this_account_verifies(keys: Keys, clock: Clock) -> None:
    v = verifier(keys, clock)
    verified = await v.verify(user_token(oid=OID), account_id=OID)
    assert (verified.tid, verified.subject, verified.version) == (TENANT_ID, OID, 2)
    assert keys.gets == [f"/{TENANT_ID}/v2.0/.well-known/openid-configuration",
                         f"/{TENANT_ID}/discovery/v2.0/keys"]  # fmt: skip


@pytest.mark.parametrize("aud", [CLIENT_ID, f"api://{CLIENT_ID}"])
async def test_v1_token_verifies_against_the_v1_issuer(keys: Keys, clock: Clock, aud: str) -> None:
    """Apps whose manifest leaves requestedAccessTokenVersion unset get v1 tokens."""
    token = make_jwt(ver="1.0", aud=aud, oid=OID, scp="access_as_user", appid=str(uuid.uuid4()))
    verified = await verifier(keys, clock).verify(token, account_id=OID)
    assert verified.version == 1
    assert f"/{TENANT_ID}/.well-known/openid-configuration" in keys.gets
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == ISSUER_V1


async def test_configured_app_id_uri_is_an_accepted_audience(keys: Keys, clock: Clock) -> None:
    token = user_token(aud="https://api.contoso.example", oid=OID)
    await refused(verifier(keys, clock), token, "audience")
    plain = verifier(keys, clock, app_id_uris=["https://api.contoso.example"])
    assert (await plain.verify(token, account_id=OID)).subject == OID


async def test_subject_claim_follows_the_provider(keys: Keys, clock: Clock) -> None:
    token = user_token(oid=OID, sub="pairwise-sub")
    by_sub = verifier(keys, clock, subject_claim="sub")
    assert (await by_sub.verify(token, account_id="pairwise-sub")).subject == "pairwise-sub"
    await refused(by_sub, token, "subject", account_id=OID)


async def test_a_verdict_is_remembered_per_token(keys: Keys, clock: Clock) -> None:
    v = verifier(keys, clock)
    token = user_token(oid=OID)
    await v.verify(token, account_id=OID)
    fetched = len(keys.gets)
    await v.verify(token, account_id=OID)
    assert len(keys.gets) == fetched
    # ... but not across accounts: the same token is someone else's for another row.
    await refused(v, token, "subject", account_id=str(uuid.uuid4()))


# --- the attacks --------------------------------------------------------------------


async def test_someone_elses_token_is_refused(keys: Keys, clock: Clock) -> None:
    """The confused deputy: a valid token of Ada stored in Grace's account row."""
    ada = user_token(oid=str(uuid.uuid4()))
    await refused(verifier(keys, clock), ada, "subject", account_id=OID)


async def test_row_without_account_id_is_refused(keys: Keys, clock: Clock) -> None:
    await refused(verifier(keys, clock), user_token(oid=OID), "subject", account_id="")


async def test_token_signed_by_another_key_with_a_published_kid(keys: Keys, clock: Clock) -> None:
    await refused(verifier(keys, clock), signed({}), "signature")


async def test_unknown_kid_is_refused(keys: Keys, clock: Clock) -> None:
    await refused(verifier(keys, clock), signed({}, kid="attacker"), "signature")


@pytest.mark.parametrize("alg", ["HS256", "none"])
async def test_algorithm_confusion_is_refused(keys: Keys, clock: Clock, alg: str) -> None:
    """An HMAC token (keyed with the published public key, the classic confusion) or an
    unsigned one: only RS256 is Entra's, so nothing else is even tried."""
    now = int(time.time())
    claims = {"iat": now, "exp": now + 3600, "ver": "2.0", "tid": TENANT_ID, "oid": OID,
              "iss": f"{AUTHORITY}/{TENANT_ID}/v2.0", "aud": CLIENT_ID, "scp": "x",
              "azp": CLIENT_ID}  # fmt: skip
    # PyJWT will not sign HS256 with a public key's PEM; any secret shows the same refusal.
    key = None if alg == "none" else "published-key-material-" + "x" * 32
    token = jwt.api_jws.PyJWS().encode(
        json.dumps(claims).encode(), key, algorithm=alg, headers={"kid": "k1"}
    )
    register(token)
    await refused(verifier(keys, clock), token, "signature")


async def test_issuer_of_another_authority_is_refused(keys: Keys, clock: Clock) -> None:
    token = make_jwt(iss=f"https://login.evil.example/{TENANT_ID}/v2.0", aud=CLIENT_ID,
                     oid=OID, scp="access_as_user")  # fmt: skip
    await refused(verifier(keys, clock), token, "issuer")


async def test_v1_issuer_on_a_v2_token_is_refused(keys: Keys, clock: Clock) -> None:
    token = make_jwt(iss=ISSUER_V1, aud=CLIENT_ID, oid=OID, scp="access_as_user")
    await refused(verifier(keys, clock), token, "issuer")


async def test_unknown_version_is_refused(keys: Keys, clock: Clock) -> None:
    await refused(verifier(keys, clock), user_token(oid=OID, ver="3.0"), "issuer")


async def test_token_from_another_tenant_is_refused(keys: Keys, clock: Clock) -> None:
    token = make_jwt(tid=OTHER_TENANT, iss=f"{AUTHORITY}/{OTHER_TENANT}/v2.0", aud=CLIENT_ID,
                     oid=OID, scp="access_as_user")  # fmt: skip
    await refused(verifier(keys, clock), token, "tenant")


@pytest.mark.parametrize("tid", ["../../graph/v1.0/me?x=", "contoso.example", "", None])
async def test_multi_tenant_tid_must_be_a_guid(keys: Keys, clock: Clock, tid: Any) -> None:
    token = make_jwt(tid=tid, iss=f"{AUTHORITY}/{tid}/v2.0", aud=CLIENT_ID, oid=OID, scp="x")
    await refused(verifier(keys, clock, tenant="common"), token, "tenant")


async def test_multi_tenant_accepts_any_tenant_with_its_own_issuer(
    keys: Keys, clock: Clock
) -> None:
    keys.answer = _templated
    v = verifier(keys, clock, tenant="organizations")
    token = make_jwt(tid=OTHER_TENANT, iss=f"{AUTHORITY}/{OTHER_TENANT}/v2.0", aud=CLIENT_ID,
                     oid=OID, scp="access_as_user")  # fmt: skip
    assert (await v.verify(token, account_id=OID)).tid == OTHER_TENANT
    spoofed = make_jwt(tid=OTHER_TENANT, iss=f"{AUTHORITY}/{TENANT_ID}/v2.0", aud=CLIENT_ID,
                       oid=OID, scp="access_as_user")  # fmt: skip
    await refused(v, spoofed, "issuer")
    personal = make_jwt(tid=CONSUMER_TENANT_ID, iss=f"{AUTHORITY}/{CONSUMER_TENANT_ID}/v2.0",
                        aud=CLIENT_ID, oid=OID, scp="access_as_user")  # fmt: skip
    await refused(v, personal, "tenant")


def _templated(request: httpx.Request) -> httpx.Response | None:
    if request.url.path.endswith("/v2.0/.well-known/openid-configuration"):
        tenant = request.url.path.split("/")[1]
        return httpx.Response(200, json={
            "issuer": f"{AUTHORITY}/{{tenantid}}/v2.0",
            "jwks_uri": f"{AUTHORITY}/{tenant}/discovery/v2.0/keys",
        })  # fmt: skip
    return metadata_answer(request)


@pytest.mark.parametrize(
    "aud",
    [str(uuid.uuid4()), "https://graph.windows.net", "api://other"],
    ids=["another-guid", "aad-graph", "api-uri"],  # stable ids: xdist workers must agree
)
async def test_token_for_another_audience_is_refused(keys: Keys, clock: Clock, aud: str) -> None:
    await refused(verifier(keys, clock), user_token(aud=aud, oid=OID), "audience")


async def test_graph_token_is_refused_before_any_key_is_fetched(keys: Keys, clock: Clock) -> None:
    token = user_token(aud="https://graph.microsoft.com", oid=OID)
    await refused(verifier(keys, clock), token, "graph_audience")
    assert keys.gets == []


async def test_expired_token_means_sign_in_again(keys: Keys, clock: Clock) -> None:
    v = verifier(keys, clock)
    token = user_token(oid=OID, exp=clock.now - 1)
    with pytest.raises(ReauthenticationRequiredError):
        await v.verify(token, account_id=OID)
    # About to be refreshed: who it belongs to is what matters.
    assert (await v.verify(token, account_id=OID, require_current=False)).subject == OID


async def test_future_token_is_refused(keys: Keys, clock: Clock) -> None:
    token = user_token(oid=OID, nbf=int(clock.now) + 3600, exp=clock.now + 7200)
    await refused(verifier(keys, clock), token, "not_yet_valid")


async def test_key_scoped_to_another_tenant_is_refused(keys: Keys, clock: Clock) -> None:
    def scoped(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/keys"):
            key = {**jwks()["keys"][0], "issuer": f"{AUTHORITY}/{OTHER_TENANT}/v2.0"}
            return httpx.Response(200, json={"keys": [key]})
        return metadata_answer(request)

    keys.answer = scoped
    await refused(verifier(keys, clock), user_token(oid=OID), "signature")


# --- keys: caching, rotation, outages --------------------------------------------------


async def test_unknown_kid_refetches_at_most_every_five_minutes(keys: Keys, clock: Clock) -> None:
    v = verifier(keys, clock)
    await v.verify(user_token(oid=OID), account_id=OID)
    assert len(keys.gets) == 2
    await refused(v, signed({}, kid="rotated"), "signature")
    assert len(keys.gets) == 2  # fetched less than 5 minutes ago: no new request
    clock.now += 301
    await refused(v, signed({}, kid="rotated"), "signature")
    assert len(keys.gets) == 4  # discovery and keys again, once


async def test_rotated_key_is_found_after_a_refetch(keys: Keys, clock: Clock) -> None:
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def rotated(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/keys"):
            jwk = json.loads(RSAAlgorithm.to_jwk(new_key.public_key()))
            return httpx.Response(200, json={"keys": [*jwks()["keys"], {**jwk, "kid": "k2"}]})
        return metadata_answer(request)

    v = verifier(keys, clock)
    await v.verify(user_token(oid=OID), account_id=OID)
    keys.answer = rotated
    clock.now += 301
    token = signed({"oid": OID, "exp": int(clock.now) + 3600}, key=new_key, kid="k2")
    assert (await v.verify(token, account_id=OID)).subject == OID


async def test_no_keys_means_unavailable_and_nothing_verified(keys: Keys, clock: Clock) -> None:
    keys.answer = lambda request: httpx.Response(503, text="down")
    with pytest.raises(EntraUnavailableError):
        await verifier(keys, clock).verify(user_token(oid=OID), account_id=OID)


async def test_transient_key_failure_is_retried(keys: Keys, clock: Clock) -> None:
    from better_auth_obo import RetryPolicy

    failures = [httpx.Response(503, text="down")]

    def flaky(request: httpx.Request) -> httpx.Response | None:
        return failures.pop() if failures else metadata_answer(request)

    keys.answer = flaky

    async def no_wait(seconds: float) -> None:
        clock.now += seconds

    v = verifier(keys, clock, retry=RetryPolicy(jitter=lambda: 0.0), sleep=no_wait)
    assert (await v.verify(user_token(oid=OID), account_id=OID)).subject == OID


async def test_last_keys_serve_when_a_refresh_fails(keys: Keys, clock: Clock) -> None:
    v = verifier(keys, clock)
    await v.verify(user_token(oid=OID), account_id=OID)
    keys.answer = lambda request: httpx.Response(500, text="down")
    clock.now += 13 * 3600  # past the automatic refresh
    token = user_token(oid=OID, exp=clock.now + 3600, iat=int(clock.now), nbf=int(clock.now))
    assert (await v.verify(token, account_id=OID)).subject == OID
    gets = len(keys.gets)
    await v.verify(user_token(oid=OID, exp=clock.now + 3600), account_id=OID)
    assert len(keys.gets) == gets  # no new attempt within 5 minutes of the failed one


async def test_keys_on_another_host_are_refused(keys: Keys, clock: Clock) -> None:
    def elsewhere(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("openid-configuration"):
            doc = {**discovery(2), "jwks_uri": "https://attacker.example/keys"}
            return httpx.Response(200, json=doc)
        return metadata_answer(request)

    keys.answer = elsewhere
    with pytest.raises(EntraUnavailableError) as info:
        await verifier(keys, clock).verify(user_token(oid=OID), account_id=OID)
    assert "another host" in info.value.message
    assert all(not path.endswith("/keys") for path in keys.gets)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"issuer": 1}', b'{"keys": "x"}'])
async def test_malformed_metadata_is_unavailable(keys: Keys, clock: Clock, body: bytes) -> None:
    keys.answer = lambda request: httpx.Response(200, content=body)
    with pytest.raises(EntraUnavailableError):
        await verifier(keys, clock).verify(user_token(oid=OID), account_id=OID)
