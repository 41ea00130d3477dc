"""A real browser on ``better-auth-obo demo --serve``: Debian's Chromium through Playwright.

Signs in through the emulator's sign-in page, checks the Graph profile and the cached
OBO tokens, answers a claims challenge, and saves screenshots under ``artifacts/``.
Under ``CI=true`` it must run; elsewhere it skips when ``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs Debian's chromium (apt-get install chromium); CI installs it",
    ),
]


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """``better-auth-obo demo --serve`` in a subprocess; yields its URL."""
    script = Path(sys.executable).with_name("better-auth-obo")
    process = subprocess.Popen(
        [str(script), "demo", "--serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+)", first)
        assert match, f"demo --serve did not start: {first!r}"
        yield match.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=15)  # also closes the pipes
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_sign_in_and_claims_challenge_in_chromium(demo_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(demo_url)
            page.get_by_role("button", name="Sign in with Microsoft").click()
            expect(page.get_by_text("Pick an account")).to_be_visible()
            page.get_by_role("button", name=re.compile("Sign in as Ada Lovelace")).click()

            expect(page.locator("#user")).to_contain_text("Ada Lovelace")
            expect(page.locator("#profile")).to_contain_text("ada@contoso.onmicrosoft.com")
            expect(page.locator("#tokens tr")).to_have_count(3)  # header + graph + tasks
            expect(page.locator("#tokens")).to_contain_text("https://graph.microsoft.com")
            expect(page.locator("#tokens")).to_contain_text("Tasks.Read")
            expect(page.locator("#tasks")).to_contain_text("Ada Lovelace")
            assert not JWT.search(page.content())
            page.screenshot(path=str(ARTIFACTS / "demo-signed-in.png"), full_page=True)

            page.get_by_role("button", name="Trigger a claims challenge (MFA)").click()
            expect(page.locator("#challenge")).to_contain_text("AADSTS50076")
            page.screenshot(path=str(ARTIFACTS / "demo-claims-challenge.png"), full_page=True)
            page.get_by_role("button", name="Sign in again with the claims").click()
            page.get_by_role("button", name=re.compile("Sign in as Ada Lovelace")).click()
            expect(page.locator("#tasks")).to_contain_text("Ada Lovelace")
            expect(page.locator("#challenge")).to_have_count(0)
        finally:
            browser.close()
