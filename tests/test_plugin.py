"""OBOPlugin over the wire double: request form, errors, cache timing, refresh, storage.

Every test runs on MemoryAdapter, a SQLite file, PostgreSQL and MariaDB (the
``database`` fixture), except the pure configuration ones.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from better_auth import APIError, BetterAuth
from better_auth.adapters.base import Where
from better_auth.config import AccountOptions
from better_auth.crypto import is_likely_encrypted
from tests._fakes import (
    AUTHORITY,
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT_ID,
    WireEntra,
    provider,
    seed_user,
    user_token,
)
from tests.conftest import MakeAuth

from better_auth_obo import OBO_ERROR_CODES, OBOPlugin
from better_auth_obo._store import is_cached_token_row

GRAPH = {"scope": ["https://graph.microsoft.com/.default"]}
API = {"scope": ["api://downstream/Files.Read", "api://downstream/Files.Write"]}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wire(clock: Clock) -> WireEntra:
    return WireEntra(clock=clock)


async def setup(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock, **plugin_options: Any
) -> tuple[BetterAuth, OBOPlugin]:
    auth_options = plugin_options.pop("auth_options", {})
    plugin_options.setdefault("sleep", clock.sleep)  # retries wait on the test clock
    plugin = OBOPlugin(
        applications=plugin_options.pop("applications", {"graph": GRAPH, "my-api": API}),
        clock=clock,
        **plugin_options,
    )
    auth = await make_auth(
        social_providers={"microsoft": auth_options.pop("provider", provider())},
        plugins=[plugin],
        http_client=wire.client(),
        **auth_options,
    )
    return auth, plugin


async def obo_rows(auth: BetterAuth, user_id: str) -> list[dict[str, Any]]:
    rows = await auth.adapter.find_many("account", [Where("userId", user_id)])
    return [r for r in rows if is_cached_token_row(r)]


# --- the exchange request -------------------------------------------------------------


async def test_exchange_sends_entra_form_and_returns_row(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    token = user_token()
    user = await seed_user(auth, token=token)

    account = await plugin.get_obo_token(user_id=user["id"], application_name="my-api")

    (request,) = wire.exchanges
    assert request["url"] == f"{AUTHORITY}/{TENANT_ID}/oauth2/v2.0/token"
    assert request["form"] == {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": token,
        "requested_token_use": "on_behalf_of",
        "scope": "api://downstream/Files.Read api://downstream/Files.Write",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert account["providerId"] == "microsoft:my-api"
    assert account["userId"] == user["id"]
    assert account["scope"] == "api://downstream/Files.Read api://downstream/Files.Write"
    assert account["accessTokenExpiresAt"].tzinfo is not None
    assert account["accessTokenExpiresAt"].timestamp() == pytest.approx(clock.now + 3600, abs=1)
    assert len(account["id"]) <= 36
    (row,) = await obo_rows(auth, user["id"])
    assert row["accessToken"] == account["accessToken"]


async def test_basic_client_authentication(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(
        make_auth, wire, clock, auth_options={"provider": provider(authentication="basic")}
    )
    user = await seed_user(auth)
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    (request,) = wire.exchanges
    assert "client_secret" not in request["form"]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert request["headers"]["authorization"] == f"Basic {expected}"


async def test_client_assertion_from_the_provider(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    seen: list[dict[str, str]] = []

    def assertion(context: dict[str, str]) -> str:
        seen.append(context)
        return "signed.client.assertion"

    config = provider(client_secret="", client_assertion=assertion)
    auth, plugin = await setup(make_auth, wire, clock, auth_options={"provider": config})
    user = await seed_user(auth)
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    form = wire.exchanges[0]["form"]
    assert form["client_assertion"] == "signed.client.assertion"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in form
    assert seen[0]["tokenEndpoint"] == f"{AUTHORITY}/{TENANT_ID}/oauth2/v2.0/token"


# --- errors ---------------------------------------------------------------------------


async def test_unknown_application_lists_configured(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id="u1", application_name="nope")
    assert (info.value.status, info.value.code) == (400, "UNKNOWN_APPLICATION")
    assert "'nope'" in info.value.message and "'graph'" in info.value.message
    assert wire.requests == []


async def test_no_microsoft_account(make_auth: MakeAuth, wire: WireEntra, clock: Clock) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await auth.internal.create_user({"email": "x@contoso.example", "name": "X"})
    assert user is not None
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert (info.value.status, info.value.code) == (404, "MICROSOFT_ACCOUNT_NOT_FOUND")


async def test_graph_token_is_refused_before_sending(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(
        auth, token=user_token(aud="https://graph.microsoft.com", scp="User.Read")
    )
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert (info.value.status, info.value.code) == (500, "INVALID_ASSERTION")
    assert f"{CLIENT_ID}/" in info.value.message  # says which scope to use instead
    assert wire.requests == []


async def test_entra_rejection_is_502_with_entra_fields(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    body = {
        "error": "invalid_grant",
        "error_description": "AADSTS65001: The user or administrator has not consented. "
        "Trace ID: t Correlation ID: c Timestamp: 2024-01-01 00:00:00Z",
        "error_codes": [65001],
        "timestamp": "2024-01-01 00:00:00Z",
        "trace_id": "7979ed8a-3959-4be5-9206-ce16f12a5900",
        "correlation_id": "73d7243c-43ba-4d8a-865a-0b8957def6c6",
        "suberror": "consent_required",
    }
    wire.fail_next(400, body)
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    error = info.value
    assert (error.status, error.code) == (502, "OBO_EXCHANGE_FAILED")
    assert error.extra is not None
    for name in ("error", "error_description", "error_codes", "timestamp", "trace_id"):
        assert error.extra[name] == body[name]
    assert error.extra["correlation_id"] == body["correlation_id"]
    assert error.extra["suberror"] == "consent_required"
    assert error.extra["reason"] == "consent_required"
    assert await obo_rows(auth, user["id"]) == []  # a refusal is never cached


async def test_claims_challenge_is_in_extra(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    claims = '{"access_token":{"capolids":{"essential":true,"values":["9ab0"]}}}'
    wire.fail_next(
        400,
        {
            "error": "interaction_required",
            "error_description": "AADSTS50079: MFA",
            "error_codes": [50079],
            "claims": claims,
            "suberror": "basic_action",
        },
    )
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert info.value.extra is not None
    assert info.value.extra["claims"] == claims
    assert info.value.extra["reason"] == "interaction_required"


@pytest.mark.parametrize("status", [500, 503])
async def test_transient_failures_are_retried(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock, status: int
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    wire.fail_next(status, {"error": "temporarily_unavailable"})
    token = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert token["accessToken"]
    assert len(wire.exchanges) == 2
    assert len(clock.slept) == 1


@pytest.mark.parametrize("status", [500, 503])
async def test_entra_unavailable_after_retries_is_503(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock, status: int
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    for _ in range(3):
        wire.fail_next(status, b"<html>Service Unavailable</html>")
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert (info.value.status, info.value.code) == (503, "ENTRA_UNAVAILABLE")
    assert len(wire.exchanges) == 3


async def test_one_users_throttling_is_not_everybodys(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    throttled, other = await seed_user(auth), await seed_user(auth)
    wire.fail_next(429, b"Too Many Requests", {"retry-after": "60"})  # beyond the 5 s cap
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=throttled["id"], application_name="graph")
    assert (info.value.status, info.value.code) == (503, "ENTRA_UNAVAILABLE")
    assert info.value.extra is not None
    assert info.value.extra["retryAfter"] == 60
    with pytest.raises(APIError):  # the same key waits, without asking Entra
        await plugin.get_obo_token(user_id=throttled["id"], application_name="graph")
    assert len(wire.exchanges) == 1
    await plugin.get_obo_token(user_id=other["id"], application_name="graph")
    await plugin.get_obo_token(user_id=throttled["id"], application_name="my-api")
    assert len(wire.exchanges) == 3
    clock.now += 61
    await plugin.get_obo_token(user_id=throttled["id"], application_name="graph")
    assert len(wire.exchanges) == 4


async def test_a_400_is_never_remembered(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    wire.fail_next(400, {"error": "invalid_grant", "error_codes": [65001]})
    with pytest.raises(APIError):
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    token = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert token["accessToken"]
    assert len(wire.exchanges) == 2


async def test_error_codes_are_registered(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, _ = await setup(make_auth, wire, clock)
    for code, row in OBO_ERROR_CODES.items():
        assert auth.error_codes[code] == row.message
    assert OBO_ERROR_CODES["OBO_EXCHANGE_FAILED"].status == 502


# --- cache timing -----------------------------------------------------------------------


async def test_served_from_cache_until_buffer(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth, expires_at=clock.now + 7200)
    first = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    clock.now += 3600 - 61  # 61 s left: still outside the 60 s buffer
    second = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert second["accessToken"] == first["accessToken"]
    assert len(wire.exchanges) == 1
    clock.now += 2  # 59 s left: inside the buffer
    third = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert third["accessToken"] != first["accessToken"]
    assert len(wire.exchanges) == 2
    assert len(await obo_rows(auth, user["id"])) == 1


async def test_buffer_is_configurable(make_auth: MakeAuth, wire: WireEntra, clock: Clock) -> None:
    auth, plugin = await setup(make_auth, wire, clock, expiry_buffer=600)
    user = await seed_user(auth, expires_at=clock.now + 7200)
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    clock.now += 3600 - 599
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert len(wire.exchanges) == 2


async def test_applications_are_cached_independently(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    graph = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    api = await plugin.get_obo_token(user_id=user["id"], application_name="my-api")
    assert graph["id"] != api["id"] and graph["accessToken"] != api["accessToken"]
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert len(wire.exchanges) == 2
    assert {r["providerId"] for r in await obo_rows(auth, user["id"])} == {
        "microsoft:graph",
        "microsoft:my-api",
    }


async def test_second_process_reads_the_database_row(
    make_server_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    make_auth = make_server_auth
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    first = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    other = OBOPlugin(applications={"graph": GRAPH}, clock=clock)
    await make_auth(
        clean=False,
        social_providers={"microsoft": provider()},
        plugins=[other],
        http_client=wire.client(),
    )
    again = await other.get_obo_token(user_id=user["id"], application_name="graph")
    assert again["accessToken"] == first["accessToken"]
    assert len(wire.exchanges) == 1


async def test_new_sign_in_unbinds_cached_token(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    first = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    (ms,) = await auth.adapter.find_many(
        "account", [Where("userId", user["id"]), Where("providerId", "microsoft")]
    )
    new_token = user_token(oid=ms["accountId"])  # the same user, signed in again
    await auth.internal.update("account", [Where("id", ms["id"])], {"accessToken": new_token})
    second = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert second["accessToken"] != first["accessToken"]
    assert wire.exchanges[-1]["form"]["assertion"] == new_token
    assert len(await obo_rows(auth, user["id"])) == 1


# --- refresh of the stored Microsoft token ---------------------------------------------


async def test_refreshes_microsoft_token_within_margin(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth, expires_at=clock.now + 240)  # inside the 5 min margin
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    (refresh,) = wire.grants("refresh_token")
    assert refresh["form"]["refresh_token"].startswith("rt~")
    assert refresh["form"]["client_secret"] == CLIENT_SECRET
    (ms,) = await auth.adapter.find_many(
        "account", [Where("userId", user["id"]), Where("providerId", "microsoft")]
    )
    assert wire.exchanges[0]["form"]["assertion"] == ms["accessToken"]
    assert ms["refreshToken"].startswith("rt~")
    assert ms["accessTokenExpiresAt"].timestamp() > clock.now + 3000


async def test_expired_without_refresh_token_requires_sign_in(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth, expires_at=clock.now - 10, refresh_token=None)
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert (info.value.status, info.value.code) == (401, "MICROSOFT_REAUTHENTICATION_REQUIRED")
    assert wire.requests == []


async def test_refused_refresh_requires_sign_in_with_entra_fields(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth, expires_at=clock.now + 10)
    wire.fail_next(
        400,
        {
            "error": "invalid_grant",
            "error_description": "AADSTS70008: expired",
            "error_codes": [70008],
        },
    )
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert (info.value.status, info.value.code) == (401, "MICROSOFT_REAUTHENTICATION_REQUIRED")
    assert info.value.extra is not None and info.value.extra["error_codes"] == [70008]
    assert wire.exchanges == []


async def test_one_refresh_per_user_in_flight(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    wire.delay = 0.05
    user = await seed_user(auth, expires_at=clock.now + 100)
    await asyncio.gather(
        plugin.get_obo_token(user_id=user["id"], application_name="graph"),
        plugin.get_obo_token(user_id=user["id"], application_name="my-api"),
    )
    assert len(wire.grants("refresh_token")) == 1
    assert len(wire.exchanges) == 2


# --- encryption, concurrency, non-fatal cache write ----------------------------------------


async def test_tokens_encrypted_at_rest(make_auth: MakeAuth, wire: WireEntra, clock: Clock) -> None:
    auth, plugin = await setup(
        make_auth, wire, clock, auth_options={"account": AccountOptions(encrypt_oauth_tokens=True)}
    )
    user = await seed_user(auth)
    account = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert account["accessToken"].count(".") == 2  # plaintext JWT for the caller
    (row,) = await obo_rows(auth, user["id"])
    assert row["accessToken"] != account["accessToken"]
    assert is_likely_encrypted(row["accessToken"])


async def test_concurrent_first_calls_make_one_exchange(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    wire.delay = 0.05
    user = await seed_user(auth)
    results = await asyncio.gather(
        *(plugin.get_obo_token(user_id=user["id"], application_name="graph") for _ in range(100))
    )
    assert len(wire.exchanges) == 1
    assert len({r["accessToken"] for r in results}) == 1
    assert len(await obo_rows(auth, user["id"])) == 1


async def test_failed_cache_write_still_returns_token(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth)
    adapter = auth.adapter
    original_create = adapter.create

    async def failing_create(model: str, data: dict[str, Any], **kwargs: Any) -> Any:
        if model == "account" and str(data.get("providerId", "")).startswith("microsoft:"):
            raise ConnectionError("database went away")
        return await original_create(model, data, **kwargs)

    adapter.create = failing_create  # type: ignore[method-assign]  # the host's adapter, not ours
    account = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert account["accessToken"]
    assert "could not cache" in caplog.text
    assert account["accessToken"] not in caplog.text
    assert await obo_rows(auth, user["id"]) == []


# --- server-only, configuration ---------------------------------------------------------


async def test_not_reachable_over_http(make_auth: MakeAuth, wire: WireEntra, clock: Clock) -> None:
    from better_auth.types import AuthRequest

    auth, _ = await setup(make_auth, wire, clock)
    for path in ("/obo/get-obo-token", "/get-obo-token", "/obo/revoke-obo-tokens"):
        response = await auth.handle(AuthRequest(method="POST", path=path, body=b"{}"))
        assert response.status == 404


def test_empty_scope_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="MISSING_APPLICATION_SCOPE"):
        OBOPlugin(applications={"graph": {"scope": []}})


@pytest.mark.parametrize(
    "applications",
    [None, [], {}, {"": GRAPH}, {"x": {"scope": "a b"}}, {"x": {"scopes": ["a"]}}, {"x": 3}],
)
def test_bad_applications_refused(applications: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        OBOPlugin(applications=applications)


# --- proactive refresh and outage grace ----------------------------------------------------


async def test_token_in_steady_use_is_refreshed_in_the_background(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    user = await seed_user(auth, expires_at=clock.now + 7200)
    first = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    clock.now += 3600 - 60 - 100  # 100 s before the buffer: inside the 120 s refresh window
    for _ in range(3):  # from the database row, then from memory
        served = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
        assert served["accessToken"] == first["accessToken"]  # nobody waits
    await plugin._background.join()
    assert len(wire.exchanges) == 2
    fresh = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert fresh["accessToken"] != first["accessToken"]
    assert len(wire.exchanges) == 2
    assert len(await obo_rows(auth, user["id"])) == 1


async def test_outage_grace_serves_the_cached_token(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock, cache_revalidate_after=1)
    user = await seed_user(auth, expires_at=clock.now + 7200)
    first = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    clock.now += 3600 - 30  # inside the buffer, not yet expired
    for _ in range(5):
        wire.fail_next(503, {"error": "temporarily_unavailable"})
    again = await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert again["accessToken"] == first["accessToken"]


async def test_without_outage_grace_the_outage_is_an_error(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock, outage_grace=False)
    user = await seed_user(auth, expires_at=clock.now + 7200)
    await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    clock.now += 3600 - 30
    for _ in range(5):
        wire.fail_next(503, {"error": "temporarily_unavailable"})
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert info.value.code == "ENTRA_UNAVAILABLE"


async def test_unlink_during_an_exchange_leaves_nothing_servable(
    make_auth: MakeAuth, wire: WireEntra, clock: Clock
) -> None:
    auth, plugin = await setup(make_auth, wire, clock)
    wire.delay = 0.05
    user = await seed_user(auth)
    pending = asyncio.ensure_future(
        plugin.get_obo_token(user_id=user["id"], application_name="graph")
    )
    for _ in range(200):  # until the exchange is in flight
        if wire.exchanges:
            break
        await asyncio.sleep(0.005)
    await auth.internal.delete_many(
        "account", [Where("userId", user["id"]), Where("providerId", "microsoft")]
    )
    await pending  # the caller that asked before the unlink still gets its token
    assert await obo_rows(auth, user["id"]) == []  # but no row outlives the unlink
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id=user["id"], application_name="graph")
    assert info.value.code == "MICROSOFT_ACCOUNT_NOT_FOUND"


@pytest.mark.parametrize("option", ["expiry_buffer", "refresh_margin", "refresh_ahead", "timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1])
def test_seconds_options_refuse_nan_inf_and_negatives_by_name(option: str, value: float) -> None:
    from better_auth_obo import ClientSecret, OBOClient, OBOPlugin

    apps = {"graph": {"scope": ["https://graph.microsoft.com/.default"]}}
    with pytest.raises(ValueError, match=option):
        OBOPlugin(applications=apps, **{option: value})
    if option in ("expiry_buffer", "timeout"):
        secret = [ClientSecret("s" * 40)]
        with pytest.raises(ValueError, match=option):
            OBOClient(
                client_id="c",
                tenant_id="t",
                credentials=secret,
                applications=apps,
                **{option: value},
            )


def test_cache_revalidate_after_may_be_infinite_but_not_nan() -> None:
    from better_auth_obo import OBOPlugin

    apps = {"graph": {"scope": ["https://graph.microsoft.com/.default"]}}
    assert OBOPlugin(applications=apps, cache_revalidate_after=float("inf"))
    with pytest.raises(ValueError, match="cache_revalidate_after"):
        OBOPlugin(applications=apps, cache_revalidate_after=float("nan"))


async def test_errors_are_api_errors_carrying_the_typed_error() -> None:
    from better_auth import APIError

    from better_auth_obo import OBOAPIError, OBOPlugin, UnknownApplicationError

    plugin = OBOPlugin(applications={"graph": {"scope": ["https://graph.microsoft.com/.default"]}})
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id="u", application_name="nope")
    assert isinstance(info.value, OBOAPIError)
    assert isinstance(info.value.error, UnknownApplicationError)
    assert info.value.code == info.value.error.code == "UNKNOWN_APPLICATION"
