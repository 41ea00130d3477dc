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
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest

from better_auth_obo.demo import run_demo, running

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
    steps = [line for line in text.splitlines() if re.match(r"^\s*\d+\. ", line)]
    assert [s.split()[1] for s in steps[:5]] == ["Entra", "demo", "sign", "Entra", "callback"]
    calls = [s for s in steps if "get_obo_token" in s]
    assert [c.split()[1:3] for c in calls] == [
        ['get_obo_token("graph")', "exchange"],
        ['get_obo_token("tasks")', "exchange"],
        ['get_obo_token("graph")', "cache"],
        ['get_obo_token("tasks")', "cache"],
    ]
    assert all("same token as before" in c for c in calls[2:])
    assert "aud https://graph.microsoft.com, scp User.Read" in text
    assert "(obo-demo-tasks-api), scp Tasks.Read" in text
    assert "this app: a valid OBO assertion" in text
    assert "200  Ada Lovelace <ada@contoso.onmicrosoft.com>" in text
    assert "the API sees Ada Lovelace, scp Tasks.Read" in text
    assert "Done in" in text


def test_failure_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    status = run_demo(
        out=out,
        prepare=lambda entra: entra.faults.fail(aadsts=65001, grant_type=JWT_BEARER, times=None),
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "demo FAILED after step 5: OBO_EXCHANGE_FAILED (502)" in err
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


async def pick_user(client: httpx.AsyncClient, authorize_url: str, oid: str) -> str:
    """The emulator's sign-in page: press the user's button; returns the callback URL."""
    page = await client.get(authorize_url)
    assert page.status_code == 200
    assert "Pick an account" in page.text
    parts = urlsplit(authorize_url)
    form = {**dict(parse_qsl(parts.query)), "emulator_user": oid}
    answer = await client.post(f"{parts.scheme}://{parts.netloc}{parts.path}", data=form)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def sign_in(client: httpx.AsyncClient, url: str, oid: str, form: dict[str, str]) -> str:
    start = await client.post(f"{url}/sign-in", data=form)
    assert start.status_code == 303
    callback = await pick_user(client, start.headers["location"], oid)
    back = await client.get(callback)
    assert back.status_code == 302
    assert "error" not in back.headers["location"]
    page = await client.get(urljoin(url, back.headers["location"]))
    assert page.status_code == 200
    assert_no_secret(page.text)
    return page.text


async def test_serve_pages_sign_in_revoke_and_claims_challenge() -> None:
    async with running(interactive=True) as run:
        ada = run.tenant.users[0]
        verify = run.tenant.entra.ssl_context()
        async with httpx.AsyncClient(verify=verify, timeout=10) as client:
            landing = await client.get(f"{run.url}/")
            assert "Sign in with Microsoft" in landing.text

            page = await sign_in(client, run.url, ada.oid, {})
            assert "Signed in as" in page and "Ada Lovelace" in page
            assert "id='profile'" in page and ada.upn in page
            assert page.count("(this sign-in)") == 2
            assert "https://graph.microsoft.com" in page
            assert "The tasks API sees" in page

            revoked = await client.post(f"{run.url}/obo/revoke", follow_redirects=True)
            assert "Cached OBO tokens deleted" in revoked.text
            again = await client.post(f"{run.url}/obo/reexchange", follow_redirects=True)
            assert "Revoked, then exchanged again" in again.text

            challenged = await client.post(f"{run.url}/obo/challenge", follow_redirects=True)
            assert "id='challenge'" in challenged.text
            assert "AADSTS50076" in challenged.text
            assert "additionalParams" in challenged.text
            claims = html.unescape(
                re.search(r"name='claims' value='([^']*)'", challenged.text).group(1)  # type: ignore[union-attr]
            )
            assert "acrs" in claims or "capolids" in claims or "mfa" in claims

            form = {"claims": claims, "login_hint": ada.upn}
            page = await sign_in(client, run.url, ada.oid, form)
            assert "id='challenge'" not in page
            assert "The tasks API sees" in page
