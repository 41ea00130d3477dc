"""Fault injection on the token endpoint."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from entra_helpers import Trio

from better_auth_obo.testing import EntraEmulator


def test_fail_next_n_then_recover(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    fault = entra.faults.fail(status=503, times=2, grant_type="obo")
    statuses = [
        http.post(entra.token_endpoint(), data=trio.obo_form()).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    assert fault.hits == 2
    assert entra.faults.pending == ()
    assert [r.fault for r in entra.token_requests] == ["status", "status", None]


def test_fail_with_a_catalogue_error(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.faults.fail(aadsts=50079, client=trio.api)
    body = http.post(entra.token_endpoint(), data=trio.obo_form()).json()
    assert (body["error"], body["error_codes"], body["suberror"]) == (
        "interaction_required",
        [50079],
        "basic_action",
    )
    assert body["claims"]


def test_fail_with_a_custom_body(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.faults.fail(status=400, body={"error": "invalid_grant", "error_codes": [1]})
    response = http.post(entra.token_endpoint(), data=trio.obo_form())
    assert response.json() == {"error": "invalid_grant", "error_codes": [1]}


def test_matching_on_user_and_client(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    other = entra.add_user("Grace Hopper", "grace@contoso.example")
    entra.faults.fail(status=500, user=other)
    entra.faults.fail(status=500, client="someone-else")
    assert http.post(entra.token_endpoint(), data=trio.obo_form()).status_code == 200
    assert len(entra.faults.pending) == 2


def test_throttle_text_and_json(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.faults.throttle(retry_after=7)
    entra.faults.throttle(retry_after=1, json_body=True)
    text = http.post(entra.token_endpoint(), data=trio.obo_form())
    json_ = http.post(entra.token_endpoint(), data=trio.obo_form())
    assert (text.status_code, text.headers["retry-after"], text.text) == (
        429,
        "7",
        "Too Many Requests",
    )
    assert json_.json()["error"] == "temporarily_unavailable"


def test_garbage_body(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.faults.garbage()
    response = http.post(entra.token_endpoint(), data=trio.obo_form())
    assert response.status_code == 200
    assert response.text.startswith("<html>")


def test_drop_connection(entra: EntraEmulator, http: httpx.Client, trio: Trio) -> None:
    entra.faults.drop_connection()
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(entra.token_endpoint(), data=trio.obo_form())
    assert http.post(entra.token_endpoint(), data=trio.obo_form()).status_code == 200
    assert entra.token_requests[0].fault == "drop"


def test_times_none_lasts_until_cleared(
    entra: EntraEmulator, http: httpx.Client, trio: Trio
) -> None:
    entra.faults.fail(status=500, times=None)
    assert http.post(entra.token_endpoint(), data=trio.obo_form()).status_code == 500
    assert http.post(entra.token_endpoint(), data=trio.obo_form()).status_code == 500
    entra.faults.clear()
    assert http.post(entra.token_endpoint(), data=trio.obo_form()).status_code == 200


def test_times_must_be_positive(entra: EntraEmulator) -> None:
    with pytest.raises(ValueError, match="times"):
        entra.faults.fail(times=0)


async def test_delay_does_not_block_the_event_loop(entra: EntraEmulator, trio: Trio) -> None:
    entra.faults.delay(0.5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    async with httpx.AsyncClient(verify=entra.ssl_context()) as http:
        response = await http.post(entra.token_endpoint(), data=trio.obo_form())
    elapsed = time.monotonic() - started
    ticker.cancel()
    assert response.status_code == 200
    assert elapsed >= 0.5
    assert ticks >= 10  # the loop kept running while the server held the request
