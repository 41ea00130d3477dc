"""``better-auth-obo demo``: the scripted transcript, its failure path, and the --serve pages.

Everything runs for real on loopback: the Entra ID emulator, the demo FastAPI app on
uvicorn, SQLite in a temporary folder.
"""

from __future__ import annotations

import html
import io
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from better_auth_obo.demo import Running, run_demo, running

JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def assert_no_secret(text: str) -> None:
    assert not JWT.search(text), "a token was printed"
    assert "emu~" not in text, "a client secret was printed"


def test_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert run_demo(out=out) == 0, capsys.readouterr().err
    text = out.getvalue()
    assert_no_secret(text)
    assert all(len(line) <= 100 for line in text.splitlines()), "a line is wider than 100"
    steps = [line for line in text.splitlines() if re.match(r"^\s*\d+\. ", line)]
    titles = [s.split()[1] for s in steps[:6]]
    assert titles == ["load", "Entra", "demo", "sign", "Entra", "callback"]
    calls = [s for s in steps if "get_obo_token" in s]
    assert [c.split()[1:3] for c in calls] == [
        ['get_obo_token("graph")', "exchange"],
        ['get_obo_token("tasks")', "exchange"],
        ['get_obo_token("graph")', "cache"],
        ['get_obo_token("tasks")', "cache"],
    ]
    assert all("same token, Entra ID not asked" in c for c in calls[2:])
    assert "aud https://graph.microsoft.com\n" in text and "scp User.Read, exp" in text
    assert "(obo-demo-tasks-api)\n" in text and "scp Tasks.Read, exp" in text
    assert "this app: a valid OBO assertion" in text
    assert "200  Ada Lovelace <ada@contoso.onmicrosoft.com>" in text
    assert "sees Ada Lovelace, scp Tasks.Read" in text
    done = re.search(r"Done in (\d+\.\d) s \((\d+) steps", text)
    assert done and int(done.group(2)) == len(steps)


def test_failure_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    status = run_demo(
        out=out,
        prepare=lambda entra: entra.faults.fail(aadsts=65001, grant_type=JWT_BEARER, times=None),
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "demo FAILED after step 6: OBO_EXCHANGE_FAILED (502)" in err
    assert "AADSTS65001" in err
    assert_no_secret(out.getvalue() + err)


def test_the_command() -> None:
    script = Path(sys.executable).with_name("better-auth-obo")
    result = subprocess.run(
        [str(script), "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Done in" in result.stdout
    assert_no_secret(result.stdout + result.stderr)


# --- --serve: the pages, walked by a scripted browser ---------------------------------------

FORM = re.compile(r"<form method='post' action='([^']*)'>(.*?)</form>", re.S)
FIELD = re.compile(
    r"<(?:input type='hidden'|button type='submit'[^>]*?) name='([^']+)' value='([^']*)'"
)


def forms(page: str) -> list[tuple[str, dict[str, str], str]]:
    """Each form of a page: its action, its fields (hidden inputs and named buttons), its text."""
    found = []
    for action, inner in FORM.findall(page):
        fields = {html.unescape(k): html.unescape(v) for k, v in FIELD.findall(inner)}
        found.append((html.unescape(action), fields, inner))
    return found


async def press(client: httpx.AsyncClient, page: httpx.Response, label: str) -> httpx.Response:
    """Press the button whose text contains ``label`` on ``page``."""
    for action, fields, inner in forms(page.text):
        if label in html.unescape(inner):
            return await client.post(urljoin(str(page.url), action), data=fields)
    raise AssertionError(f"no button {label!r} on {page.url}")


async def through_emulator(
    client: httpx.AsyncClient, run: Running, start: httpx.Response, user: str, *, mfa: bool
) -> httpx.Response:
    """From the app's 303 to the emulator, pick ``user`` (and approve MFA); the app's page."""
    assert start.status_code == 303
    authorize = start.headers["location"]
    assert run.door_url and authorize.startswith(run.door_url + "/"), authorize  # plain HTTP
    picker = await client.get(authorize)
    assert picker.status_code == 200
    assert "Entra ID emulator (local, for testing)" in picker.text
    assert "Pick an account" in picker.text
    answer = await press(client, picker, f"Sign in as {user}")
    if mfa:
        assert answer.status_code == 200, answer.text
        assert "Verify your identity" in answer.text and "id='mfa-step'" in answer.text
        answer = await press(client, answer, "Approve sign-in")
    assert answer.status_code == 302, answer.text
    back = await client.get(answer.headers["location"])
    assert back.status_code == 302 and "error" not in back.headers["location"]
    page = await client.get(urljoin(run.url, back.headers["location"]))
    assert page.status_code == 200
    assert_no_secret(page.text)
    return page


def exchanges(run: Running) -> int:
    return sum(1 for r in run.tenant.entra.token_requests if r.grant_type == JWT_BEARER)


def row(page: str, application: str) -> str:
    found = re.search(rf"<tr id='row-{application}'>(.*?)</tr>", page, re.S)
    assert found, f"no {application} row"
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


async def test_serve_pages_sign_in_tokens_revoke_and_step_up() -> None:
    async with running(interactive=True, door=True) as run:
        ada, grace = run.tenant.users
        async with httpx.AsyncClient(timeout=10) as client:  # no CA: the browser side is http
            landing = await client.get(f"{run.url}/")
            assert "Sign in with Microsoft" in landing.text
            assert "name='viewport'" in landing.text and "id='flow'" in landing.text
            assert "id='links'" in landing.text and "README" in landing.text

            start = await client.post(f"{run.url}/sign-in", data={})
            page = (await through_emulator(client, run, start, "Ada Lovelace", mfa=False)).text
            assert "Signed in as" in page and "Ada Lovelace" in page
            assert "id='profile'" in page and ada.upn in page
            assert "The tasks API sees" in page
            for application in ("graph", "tasks"):
                cells = row(page, application)
                assert "exchange" in cells and " ms" in cells
                assert re.search(r"in (59|60) min", cells)
                assert "this sign-in" in cells and "earlier" not in cells
            assert "https://graph.microsoft.com" in page

            again = (await client.get(f"{run.url}/")).text
            assert "cache (memory)" in row(again, "graph") and "cache (memory)" in row(
                again, "tasks"
            )

            before = exchanges(run)
            forced = (await client.post(f"{run.url}/obo/reexchange", follow_redirects=True)).text
            assert exchanges(run) == before + 2
            assert "Re-exchanged (graph" in forced
            assert "cache (memory)" in row(forced, "graph")

            before = exchanges(run)
            revoked = (await client.post(f"{run.url}/obo/revoke", follow_redirects=True)).text
            assert "2 cached rows deleted" in revoked
            assert "id='no-tokens'" in revoked and "id='tokens'" not in revoked
            assert exchanges(run) == before  # the empty cache is shown, not refilled
            refilled = (await client.get(f"{run.url}/")).text
            assert "exchange" in row(refilled, "graph") and exchanges(run) == before + 2

            challenged = await client.post(f"{run.url}/obo/challenge", follow_redirects=True)
            text = challenged.text
            assert "id='challenge'" in text and text.count("AADSTS50076") == 1
            assert "MFA is now required for the tasks API" in text
            assert "id='row-tasks'" not in text and "the tasks API was not called" in text
            (_, fields, _) = next(f for f in forms(text) if "claims" in f[1])
            assert "capolids" in fields["claims"] and fields["login_hint"] == ada.upn

            start = await client.post(f"{run.url}/sign-in", data=fields)
            picker = await client.get(start.headers["location"])
            assert "id='claims-note'" in picker.text and "id='login-hint'" in picker.text
            page = (await through_emulator(client, run, start, "Ada Lovelace", mfa=True)).text
            assert "id='outcome'" in page and "Signed in with MFA" in page
            assert "id='challenge'" not in page and "The tasks API sees" in page
            assert "re-exchanged on this load" in row(page, "graph")
            assert "with MFA" in page

            # A step-up for Ada answered by Grace: said on the page, not a silent switch.
            start = await client.post(f"{run.url}/sign-in", data=fields)
            page = (await through_emulator(client, run, start, "Grace Hopper", mfa=True)).text
            assert "The step-up was for Ada Lovelace, but Grace Hopper signed in" in page
            assert grace.upn in page

            # Cancel on the emulator's page: a friendly page with a way back.
            start = await client.post(f"{run.url}/sign-in", data={})
            picker = await client.get(start.headers["location"])
            cancelled = await press(client, picker, "Cancel")
            assert cancelled.status_code == 302
            page = await client.get(cancelled.headers["location"], follow_redirects=True)
            assert "Sign-in cancelled" in page.text and "id='back'" in page.text
            assert "AADSTS65004" in page.text and "Trace ID" not in page.text
