"""A real browser signs in against the standalone emulator (``python -m
better_auth_obo.testing`` in a subprocess): Debian's Chromium through Playwright opens the
authorize URL MSAL built in this process (auth code + PKCE), picks Ada on the emulator's
sign-in page, lands on a callback server this test runs, and MSAL redeems the code here
for Ada's ID token. Chromium is not given the emulator's CA: its context ignores HTTPS
errors (``ignore_https_errors=True``); MSAL in this process verifies against the CA file.

Under ``CI=true`` it must run; elsewhere it skips when ``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from test_standalone import _msal, _verify, start
from tests._leaks import register

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TENANT = "5d1a7c2e-0b7a-4c55-9a1e-3f2b8c6d4e10"
API = "2f6c0b9e-8d3a-4e1f-9c7b-6a5d4e3f2a10"
ADA = "ada@contoso.onmicrosoft.com"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs Debian's chromium (apt-get install chromium); CI installs it",
    ),
]


class Callback:
    """A redirect URI on 127.0.0.1: the form posted to it (``response_mode=form_post``, as
    MSAL recommends) goes to ``hits``."""

    def __init__(self) -> None:
        self.hits: queue.Queue[dict[str, str]] = queue.Queue()
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hits.put(dict(parse_qsl(self.rfile.read(length).decode())))
                body = b"<!doctype html><title>Signed in</title><h1>Back at the app</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/auth/callback"


@pytest.fixture
def callback() -> Iterator[Callback]:
    cb = Callback()
    thread = threading.Thread(target=cb.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield cb
    finally:
        cb.server.shutdown()
        cb.server.server_close()
        thread.join(5)


def _config(redirect_uri: str) -> str:
    return f"""
[tenant]
id = "{TENANT}"
domain = "contoso.onmicrosoft.com"

[[apps]]
name = "web"
client_id = "{API}"
client_secret = "a-secret-for-the-browser-test"
scopes = ["access_as_user"]
redirect_uris = ["{redirect_uri}"]

[[users]]
display_name = "Ada Lovelace"
upn = "{ADA}"

[[users]]
display_name = "Grace Hopper"
upn = "grace@contoso.onmicrosoft.com"

[sign_in]
auto = false
"""


def test_chromium_signs_in_on_the_standalone_emulators_page(
    tmp_path: Path, callback: Callback
) -> None:
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "entra.toml").write_text(_config(callback.url))
    running = start(tmp_path, "--config", "entra.toml")
    try:
        with requests.Session() as session:
            session.trust_env = False
            session.verify = running.summary["ca_file"]
            app = _msal(running, session)
            flow = app.initiate_auth_code_flow(
                [f"{API}/access_as_user"], redirect_uri=callback.url, response_mode="form_post"
            )
            asked = dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
            assert asked["code_challenge_method"] == "S256"  # PKCE
            assert "code_verifier" in flow

            ARTIFACTS.mkdir(exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
                try:
                    context = browser.new_context(ignore_https_errors=True)
                    page = context.new_page()
                    page.goto(flow["auth_uri"])
                    expect(page.get_by_text("Pick an account")).to_be_visible()
                    expect(
                        page.get_by_role("button", name=re.compile("Grace Hopper"))
                    ).to_be_visible()
                    page.screenshot(path=str(ARTIFACTS / "standalone-sign-in.png"))
                    page.get_by_role("button", name=re.compile("Sign in as Ada Lovelace")).click()
                    page.wait_for_url(callback.url)  # the answer page posts itself there
                    expect(page.get_by_text("Back at the app")).to_be_visible()
                finally:
                    browser.close()

            answer = callback.hits.get(timeout=5)
            assert set(answer) >= {"code", "state"}
            assert answer["state"] == flow["state"]
            result = app.acquire_token_by_auth_code_flow(flow, answer)
            assert "id_token" in result, result
            register(result["id_token"], result.get("access_token"), result.get("refresh_token"))
            assert result["id_token_claims"]["preferred_username"] == ADA
            id_token = _verify(result["id_token"], running, session)  # signature, aud, iss
            assert (id_token["name"], id_token["tid"]) == ("Ada Lovelace", TENANT)
            assert id_token["nonce"] == asked["nonce"]  # MSAL sends a hash of its nonce
    finally:
        running.stop()
