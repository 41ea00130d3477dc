"""A real browser on ``better-auth-obo demo --serve``: Debian's Chromium through Playwright.

No ``ignore_https_errors``: the browser only ever sees plain HTTP on loopback (the app,
and the emulator's sign-in pages through the demo's front door), as a person's browser
would, without a certificate warning. At 1280 and 390 px wide it signs in on the
emulator's page, checks every token row (source, age, expiry, exchange time, binding),
forces a re-exchange, revokes (the empty cache is shown), answers a claims challenge
through the emulator's MFA step and sees the outcome; it asserts each state on the page
and saves a screenshot of each under ``artifacts/`` (gitignored; CI keeps them).
The terminal of ``--serve`` is checked too: one line per token event, none over 100
columns, never a token. Under ``CI=true`` it must run; elsewhere it skips when
``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")
EMULATOR_LABEL = "Entra ID emulator (local, for testing)"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs Debian's chromium (apt-get install chromium); CI installs it",
    ),
]


@dataclass
class Served:
    """The ``--serve`` process: its URL and what it printed so far."""

    url: str
    lines: list[str] = field(default_factory=list)

    def printed(self, pattern: str, timeout: float = 5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in list(self.lines)):
                return True
            time.sleep(0.05)
        return False


@pytest.fixture(scope="module")
def demo() -> Iterator[Served]:
    """``better-auth-obo demo --serve`` in a subprocess; its output read as it comes."""
    script = Path(sys.executable).with_name("better-auth-obo")
    process = subprocess.Popen(
        [str(script), "demo", "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader: threading.Thread | None = None
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+)", first)
        assert match, f"demo --serve did not start: {first!r}"
        served = Served(match.group(1), [first.rstrip("\n")])
        stream = process.stdout

        def read() -> None:
            for line in stream:
                served.lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if reader is not None:
            reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
    text = "\n".join(served.lines)
    assert not JWT.search(text), "a token was printed"
    assert "emu~" not in text, "a client secret was printed"
    wide = [line for line in served.lines if len(line) > 100]
    assert not wide, f"lines over 100 columns: {wide}"


class Shots:
    """Numbered screenshots of one run: artifacts/demo-<width>-<n>-<state>.png."""

    def __init__(self, page: Any, width: int) -> None:
        self.page, self.width, self.count = page, width, 0

    def take(self, state: str) -> None:
        self.count += 1
        path = ARTIFACTS / f"demo-{self.width}-{self.count}-{state}.png"
        self.page.screenshot(path=str(path), full_page=True)


@pytest.mark.parametrize(
    ("width", "height", "name"),
    [(1280, 900, "Ada Lovelace"), (390, 844, "Grace Hopper")],
    ids=["1280px", "390px"],
)
def test_demo_in_chromium(demo: Served, width: int, height: int, name: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            # No ignore_https_errors: a certificate warning would fail the test.
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            shots = Shots(page, width)

            def fits() -> None:
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{overflow} px wider than the {width} px viewport"

            page.goto(demo.url)
            expect(page.locator("#flow")).to_be_visible()
            expect(page.locator("#links")).to_contain_text("README")
            fits()
            shots.take("landing")

            # 1. Sign in on the emulator's page (plain HTTP: no certificate warning).
            page.get_by_role("button", name="Sign in with Microsoft").click()
            expect(page.locator("#emulator-banner")).to_contain_text(EMULATOR_LABEL)
            expect(page.get_by_text("Pick an account")).to_be_visible()
            assert page.url.startswith("http://127.0.0.1:")
            fits()
            shots.take("emulator-pick-account")
            page.get_by_role("button", name=re.compile(f"Sign in as {name}")).click()

            # 2. Token rows: source, age, expiry, exchange time, binding.
            expect(page.locator("#user")).to_contain_text(name)
            expect(page.locator("#profile")).to_contain_text(name)
            expect(page.locator("#tasks")).to_contain_text(name)
            for application in ("graph", "tasks"):
                row = page.locator(f"#row-{application}")
                expect(row).to_contain_text("exchange")
                expect(row).to_contain_text(re.compile(r"in (59|60) min"))
                expect(row).to_contain_text(re.compile(r"\d+(\.\d+)? ms"))
                expect(row).to_contain_text("this sign-in")
            expect(page.locator("#row-graph")).to_contain_text("https://graph.microsoft.com")
            expect(page.locator("#row-tasks")).to_contain_text("Tasks.Read")
            assert not JWT.search(page.content())
            fits()
            shots.take("signed-in")

            page.locator("#reload").click()
            expect(page.locator("#row-graph")).to_contain_text("cache (memory)")
            expect(page.locator("#row-tasks")).to_contain_text("cache (memory)")

            # 3. Force a re-exchange.
            page.get_by_role("button", name="Force a re-exchange").click()
            expect(page.locator("#status")).to_contain_text("Re-exchanged (graph")
            expect(page.locator("#row-graph")).to_contain_text("cache (memory)")
            expect(page.locator("#row-graph")).to_contain_text(re.compile(r"ms, \d+ s ago"))
            shots.take("re-exchanged")

            # 4. Revoke: the empty cache, before any new exchange.
            page.get_by_role("button", name="Revoke cached tokens").click()
            expect(page.locator("#status")).to_contain_text("2 cached rows deleted")
            expect(page.locator("#no-tokens")).to_be_visible()
            expect(page.locator("#tokens")).to_have_count(0)
            fits()
            shots.take("revoked-empty-cache")
            page.locator("#call-again").click()
            expect(page.locator("#row-graph")).to_contain_text("exchange")

            # 5. Step-up: the claims challenge, the MFA prompt, the outcome.
            page.get_by_role("button", name="Trigger a claims challenge (MFA)").click()
            challenge = page.locator("#challenge")
            expect(challenge).to_contain_text("AADSTS50076")
            assert page.content().count("AADSTS50076") == 1
            expect(page.locator("#status")).to_contain_text("MFA is now required")
            expect(page.locator("#row-tasks")).to_have_count(0)
            fits()
            shots.take("claims-challenge")
            page.get_by_role("button", name="Sign in again with the claims").click()
            expect(page.locator("#claims-note")).to_be_visible()
            expect(page.locator("#login-hint")).to_contain_text("@contoso.onmicrosoft.com")
            page.get_by_role("button", name=re.compile(f"Sign in as {name}")).click()
            expect(page.locator("#mfa-step")).to_contain_text("Multi-factor authentication")
            expect(page.locator("#emulator-banner")).to_contain_text(EMULATOR_LABEL)
            fits()
            shots.take("emulator-mfa-prompt")
            page.get_by_role("button", name="Approve sign-in").click()
            expect(page.locator("#outcome")).to_contain_text("Signed in with MFA")
            expect(page.locator("#tasks")).to_contain_text(name)
            expect(page.locator("#challenge")).to_have_count(0)
            expect(page.locator("#sign-in")).to_contain_text("with MFA")
            expect(page.locator("#row-graph")).to_contain_text("re-exchanged on this load")
            fits()
            shots.take("stepped-up-with-mfa")

            # 6. Cancel on the emulator's page: a friendly page with a way back.
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Sign in with Microsoft").click()
            page.get_by_role("button", name="Cancel").click()
            expect(page.locator("#message")).to_contain_text("You cancelled the sign-in")
            shots.take("sign-in-cancelled")
            page.locator("#back").click()
            expect(page.get_by_role("button", name="Sign in with Microsoft")).to_be_visible()
        finally:
            browser.close()

    # The terminal: one line per token event, like the CLI transcript.
    assert demo.printed(rf'get_obo_token\("graph"\)\s+exchange\s+[\d.]+ ms\s+{name}')
    assert demo.printed(rf'get_obo_token\("tasks"\)\s+cache\s+[\d.]+ ms\s+{name}')
    assert demo.printed(rf"revoke_obo_tokens\s+2 cached rows deleted\s+{name}")
    assert demo.printed(rf'get_obo_token\("tasks"\)\s+refused\s+\S+ AADSTS50076\s+{name}')
    assert demo.printed(r"sign-in not completed\s+access_denied")
