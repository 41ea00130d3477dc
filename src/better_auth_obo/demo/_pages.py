"""The demo's pages: plain server-rendered HTML, no script, no front-end build.

Pure functions from data to HTML; every value is escaped. Tokens never reach a page:
only their audience, scopes, expiry and the fingerprint they are bound to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["CachedRow", "Challenge", "dashboard", "landing", "page"]

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%} td,th{border:1px solid #ccc;padding:.35rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem} th{background:#f3f3f3}
code,pre{background:#f6f6f6;padding:.1rem .3rem;font-size:.85rem} pre{padding:.6rem;overflow:auto}
form{display:inline-block;margin:.25rem .5rem .25rem 0} button{padding:.45rem .8rem;cursor:pointer}
.note{background:#eef6ff;border-left:4px solid #3b82f6;padding:.6rem .8rem}
.warn{background:#fff7e6;border-left:4px solid #f59e0b;padding:.6rem .8rem}
.muted{color:#666;font-size:.9rem}
"""


@dataclass(frozen=True, slots=True)
class CachedRow:
    """A cached OBO token as the page shows it."""

    application: str
    audience: str
    scopes: str
    expires: str
    bound_to: str
    current: bool


@dataclass(frozen=True, slots=True)
class Challenge:
    """A claims challenge Entra ID answered, and how the app sends the user back."""

    code: str
    message: str
    error_codes: Sequence[int]
    claims: str
    login_hint: str


def page(title: str, body: str, *, status_line: str = "") -> str:
    """A whole HTML document."""
    banner = f"<p class='note' id='status'>{escape(status_line)}</p>" if status_line else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{banner}{body}</body></html>"
    )


def _button(action: str, label: str, fields: Mapping[str, str] | None = None) -> str:
    hidden = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>"
        for k, v in (fields or {}).items()
    )
    return (
        f"<form method='post' action='{escape(action)}'>{hidden}"
        f"<button type='submit'>{escape(label)}</button></form>"
    )


def landing(authority: str) -> str:
    """Signed out: one button."""
    body = (
        "<p>This app signs you in with Microsoft Entra ID (a local emulator at "
        f"<code>{escape(authority)}</code>), then calls Microsoft Graph and a downstream "
        "API <em>on your behalf</em> with tokens from the On-Behalf-Of exchange.</p>"
        + _button("/sign-in", "Sign in with Microsoft")
    )
    return page("better-auth-obo demo", body)


def _profile(profile: Mapping[str, Any] | None, error: str | None) -> str:
    if error:
        return f"<p class='warn' id='profile-error'>{escape(error)}</p>"
    if not profile:
        return "<p class='muted'>No profile.</p>"
    keys = ("displayName", "userPrincipalName", "mail", "id", "jobTitle")
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(profile[k]))}</td></tr>"
        for k in keys
        if profile.get(k)
    )
    return f"<table id='profile'>{rows}</table>"


def _cached(rows: Iterable[CachedRow]) -> str:
    body = "".join(
        "<tr>"
        f"<td>{escape(r.application)}</td><td>{escape(r.audience)}</td>"
        f"<td>{escape(r.scopes)}</td><td>{escape(r.expires)}</td>"
        f"<td><code>{escape(r.bound_to)}</code>"
        f"{' (this sign-in)' if r.current else ' (an earlier sign-in)'}</td>"
        "</tr>"
        for r in rows
    )
    if not body:
        return "<p class='muted' id='no-tokens'>No cached OBO token: the next call exchanges.</p>"
    return (
        "<table id='tokens'><tr><th>application</th><th>audience</th><th>scopes</th>"
        f"<th>expires</th><th>bound to sign-in (fingerprint)</th></tr>{body}</table>"
    )


def _challenge(challenge: Challenge) -> str:
    pretty = json.dumps(json.loads(challenge.claims), indent=2) if challenge.claims else ""
    codes = ", ".join(f"AADSTS{c}" for c in challenge.error_codes)
    return (
        "<div class='warn' id='challenge'><h2>Entra ID asks for more: a claims challenge</h2>"
        f"<p><code>{escape(challenge.code)}</code> {escape(codes)}: {escape(challenge.message)}"
        "</p><p>Conditional Access now requires MFA for the tasks API. OBO cannot satisfy it "
        "(there is no user at the token endpoint), so the plugin raises an error carrying "
        "Entra's <code>claims</code>. The app sends the user back to sign in with them:</p>"
        "<pre>POST /api/auth/sign-in/social\n"
        + escape(
            json.dumps(
                {
                    "provider": "microsoft",
                    "loginHint": challenge.login_hint,
                    "additionalParams": {"claims": "<the claims below>"},
                },
                indent=2,
            )
        )
        + f"</pre><p>claims:</p><pre id='claims'>{escape(pretty)}</pre>"
        + _button(
            "/sign-in",
            "Sign in again with the claims",
            {"claims": challenge.claims, "login_hint": challenge.login_hint},
        )
        + "</div>"
    )


def dashboard(
    *,
    user: Mapping[str, Any],
    profile: Mapping[str, Any] | None,
    profile_error: str | None,
    tasks: Mapping[str, Any] | None,
    cached: Sequence[CachedRow],
    challenge: Challenge | None,
    status_line: str = "",
) -> str:
    """Signed in: the Graph profile via OBO, the cached tokens, and the actions."""
    who = f"{user.get('name')} <{user.get('email')}>"
    seen = (
        f"<p id='tasks'>The tasks API sees <strong>{escape(str(tasks.get('name')))}</strong> "
        f"with scopes <code>{escape(str(tasks.get('scp')))}</code>.</p>"
        if tasks
        else ""
    )
    body = (
        f"<p>Signed in as <strong id='user'>{escape(who)}</strong>.</p>"
        + (_challenge(challenge) if challenge else "")
        + "<h2>Microsoft Graph /v1.0/me, called with an OBO token</h2>"
        + _profile(profile, profile_error)
        + seen
        + "<h2>Cached OBO tokens (rows of the <code>account</code> table)</h2>"
        + _cached(cached)
        + "<h2>Try it</h2>"
        + _button("/obo/reexchange", "Force a re-exchange")
        + _button("/obo/revoke", "Revoke cached tokens")
        + _button("/obo/challenge", "Trigger a claims challenge (MFA)")
        + _button("/sign-out", "Sign out")
        + "<p class='muted'>Re-exchange: revoke, then get (two requests to Entra ID). "
        "Revoke: delete the rows; the next page load exchanges again. Claims challenge: "
        "turns on an MFA policy in the emulator for the tasks API.</p>"
    )
    return page("better-auth-obo demo", body, status_line=status_line)
