"""The demo's pages: plain server-rendered HTML, no script, no front-end build.

Pure functions from data to HTML; every value is escaped. Tokens never reach a page:
only their audience, scopes, times, where they came from and the fingerprint of the
sign-in they are bound to. The layout fits a 390 px phone: the token table stacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = [
    "CachedRow",
    "Challenge",
    "Outcome",
    "dashboard",
    "landing",
    "links_html",
    "message_page",
    "page",
]

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:64rem;margin:0 auto;
padding:1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.45rem;margin:.5rem 0} h2{font-size:1.1rem;margin:1.75rem 0 .6rem}
table{border-collapse:collapse;width:100%} td,th{border:1px solid #d0d7de;padding:.4rem .55rem;
text-align:left;vertical-align:top;font-size:.9rem;overflow-wrap:anywhere}
th{background:#f6f8fa;overflow-wrap:normal}
code,pre{background:#f6f8fa;border-radius:4px;padding:.1rem .3rem;font-size:.85rem;
overflow-wrap:anywhere}
pre{padding:.6rem;overflow:auto;white-space:pre-wrap;word-break:break-word}
form{display:inline-block;margin:.25rem .4rem .25rem 0}
button,.button{font:inherit;padding:.45rem .85rem;cursor:pointer;border-radius:6px;
border:1px solid #8c959f;background:#f6f8fa;color:#1f2328;text-decoration:none;
display:inline-block}
.primary{background:#0969da;border-color:#0969da;color:#fff}
.note{background:#ddf4ff;border-left:4px solid #0969da;padding:.6rem .8rem}
.ok{background:#dafbe1;border-left:4px solid #1a7f37;padding:.6rem .8rem}
.warn{background:#fff8c5;border-left:4px solid #bf8700;padding:.6rem .8rem}
.muted{color:#59636e;font-size:.88rem}
.fp{font-family:ui-monospace,monospace;font-size:.85rem}
.src{display:inline-block;border-radius:1rem;padding:0 .5rem;font-size:.8rem;
font-weight:600;white-space:nowrap}
.src-exchange{background:#fff1e5;color:#9a4d00}.src-cache{background:#dafbe1;color:#116329}
.src-database{background:#ddf4ff;color:#0550ae}.src-grace{background:#ffebe9;color:#a40e26}
.src-none{background:#eaeef2;color:#59636e}
header{display:flex;justify-content:space-between;align-items:center;gap:.5rem;
flex-wrap:wrap;border-bottom:1px solid #d0d7de;padding-bottom:.5rem}
.flow{display:flex;flex-wrap:wrap;gap:.3rem;list-style:none;padding:0;margin:.5rem 0;
align-items:stretch}
.flow li{flex:1 1 9rem;border:1px solid #d0d7de;border-radius:6px;padding:.45rem .55rem;
font-size:.82rem;background:#fff;position:relative}
.flow li b{display:block;font-size:.9rem}
.flow .n{display:inline-block;width:1.3rem;height:1.3rem;border-radius:50%;background:#0969da;
color:#fff;text-align:center;font-size:.75rem;line-height:1.3rem;margin-right:.25rem}
footer{margin-top:2rem;border-top:1px solid #d0d7de;padding-top:.6rem}
@media (max-width:600px){
 body{padding:.6rem}
 #tokens thead{display:none}
 #tokens,#tokens tbody,#tokens tr,#tokens td{display:block;width:100%}
 #tokens tr{border:1px solid #d0d7de;border-radius:6px;margin-bottom:.6rem}
 #tokens td{border:0;border-bottom:1px solid #eaeef2;display:grid;
  grid-template-columns:6.5rem 1fr;gap:.4rem}
 #tokens td::before{content:attr(data-label);font-size:.78rem;color:#59636e}
 .flow{flex-direction:column}
 .flow li{flex:none;padding:.3rem .5rem}
 form{display:block} form button{width:100%}
}
"""


@dataclass(frozen=True, slots=True)
class CachedRow:
    """A cached OBO token as the page shows it (times already worded)."""

    application: str
    audience: str
    scopes: str
    source: str  # exchange, cache, database, grace; "" when not served on this load
    served_in: str  # how long this load's get_obo_token took ("" when not served)
    age: str  # "12 s"
    expires_in: str  # "in 60 min"
    exchange: str  # how long the exchange that minted it took ("" when not seen)
    bound_to: str  # the fingerprint the row is bound to
    current: bool  # bound to the user's current Microsoft sign-in
    replaced: bool  # was bound to an earlier sign-in before this load


@dataclass(frozen=True, slots=True)
class Challenge:
    """A claims challenge Entra ID answered, and how the app sends the user back."""

    code: str
    message: str  # mentions each AADSTS code once
    claims: str
    login_hint: str
    body: Mapping[str, Any]  # sign_in_again()'s POST /sign-in/social body


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a return from Microsoft brought: a banner, ok or warning."""

    text: str
    ok: bool


def page(title: str, body: str, *, status_line: str = "", links: str = "") -> str:
    """A whole HTML document; ``body`` may mark where the status line goes with
    ``<!--status-->`` (values in it are escaped, so the marker cannot come from data)."""
    banner = f"<p class='note' id='status'>{escape(status_line)}</p>" if status_line else ""
    if "<!--status-->" not in body:
        body = f"<header><h1>{escape(title)}</h1></header><!--status-->{body}"
    footer = f"<footer class='muted' id='links'>{links}</footer>" if links else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body.replace('<!--status-->', banner, 1)}{footer}</body></html>"
    )


def links_html(links: Sequence[tuple[str, str]]) -> str:
    """The footer: documentation, README, examples."""
    return " · ".join(f"<a href='{escape(url)}'>{escape(label)}</a>" for label, url in links)


def _button(action: str, label: str, fields: Mapping[str, str] | None = None, css: str = "") -> str:
    hidden = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>"
        for k, v in (fields or {}).items()
    )
    cls = f" class='{css}'" if css else ""
    return (
        f"<form method='post' action='{escape(action)}'>{hidden}"
        f"<button type='submit'{cls}>{escape(label)}</button></form>"
    )


def flow_diagram() -> str:
    """The On-Behalf-Of flow in five boxes (a row on a screen, a column on a phone)."""
    steps = (
        ("Browser", "signs in with Microsoft: auth code + PKCE, on the emulator's page"),
        ("Entra ID (emulator)", "issues a token for this app; the app stores it"),
        ("This app: OBOPlugin", "exchanges that token (jwt-bearer, on-behalf-of)"),
        ("OBO token cache", "memory, then the account table; next calls skip Entra ID"),
        ("Graph / tasks API", "called with the OBO token, as the user"),
    )
    items = "".join(
        f"<li><span class='n'>{i}</span><b>{escape(name)}</b>{escape(what)}</li>"
        for i, (name, what) in enumerate(steps, 1)
    )
    return f"<ol class='flow' id='flow' aria-label='the On-Behalf-Of flow'>{items}</ol>"


def landing(authority: str, *, links: str = "", status_line: str = "") -> str:
    """Signed out: what the demo is, the flow, one button."""
    body = (
        "<header><h1>better-auth-obo demo</h1></header><!--status-->"
        "<p>This app signs you in with Microsoft Entra ID (a local emulator, "
        f"<code>{escape(authority)}</code>), then calls Microsoft Graph and a downstream "
        "API <em>on your behalf</em> with tokens from the On-Behalf-Of exchange, and caches "
        "them. Everything runs on this machine.</p>"
        + flow_diagram()
        + _button("/sign-in", "Sign in with Microsoft", css="primary")
    )
    return page("better-auth-obo demo", body, status_line=status_line, links=links)


def message_page(title: str, text: str, detail: str = "", *, links: str = "") -> str:
    """A friendly dead end with a way back (a cancelled or failed sign-in)."""
    body = (
        f"<header><h1>{escape(title)}</h1></header><!--status-->"
        f"<p id='message'>{escape(text)}</p>"
        + (f"<p class='muted' id='detail'>{escape(detail)}</p>" if detail else "")
        + "<p><a class='button primary' id='back' href='/'>Back to the demo</a></p>"
    )
    return page(title, body, links=links)


def _profile(profile: Mapping[str, Any] | None, error: str | None) -> str:
    if error:
        return f"<p class='warn' id='profile-error'>{escape(error)}</p>"
    if not profile:
        return "<p class='muted' id='no-profile'>Not called on this page load.</p>"
    keys = ("displayName", "userPrincipalName", "mail", "id", "jobTitle")
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(profile[k]))}</td></tr>"
        for k in keys
        if profile.get(k)
    )
    return f"<table id='profile'>{rows}</table>"


def _source(row: CachedRow) -> str:
    if not row.source:
        return "<span class='src src-none'>not used on this load</span>"
    label = {"cache": "cache (memory)"}.get(row.source, row.source)
    return (
        f"<span class='src src-{escape(row.source)}'>{escape(label)}</span> "
        f"<span class='muted'>{escape(row.served_in)}</span>"
    )


def _binding(row: CachedRow) -> str:
    if row.current:
        what = "this sign-in"
        if row.replaced:
            what += " (re-exchanged on this load: the row was bound to your earlier sign-in)"
    else:
        what = "an earlier sign-in: not served again, the next call exchanges"
    return f"<span class='fp'>{escape(row.bound_to[:12])}…</span> {escape(what)}"


def _cached(rows: Iterable[CachedRow]) -> str:
    cells = (
        ("application", lambda r: f"<b>{escape(r.application)}</b>"),
        ("audience, scopes", lambda r: f"{escape(r.audience)}<br><code>{escape(r.scopes)}</code>"),
        ("source", _source),
        ("age", lambda r: escape(r.age)),
        ("expires", lambda r: escape(r.expires_in)),
        ("exchange took", lambda r: escape(r.exchange or "not seen by this process")),
        ("bound to", _binding),
    )
    body = "".join(
        f"<tr id='row-{escape(r.application)}'>"
        + "".join(f"<td data-label='{label}'>{render(r)}</td>" for label, render in cells)
        + "</tr>"
        for r in rows
    )
    if not body:
        return (
            "<p class='warn' id='no-tokens'>No cached OBO token. Nothing was exchanged on "
            "this page load: the next call asks Entra ID again.</p>"
            "<p><a class='button primary' id='call-again' href='/'>Call the APIs "
            "(exchanges)</a></p>"
        )
    head = "".join(f"<th>{label}</th>" for label, _ in cells)
    return f"<table id='tokens'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _challenge(challenge: Challenge) -> str:
    pretty = json.dumps(json.loads(challenge.claims), indent=2) if challenge.claims else ""
    shown = {**challenge.body, "additionalParams": {"claims": "<the claims below>"}}
    return (
        "<div class='warn' id='challenge'><h2>Entra ID asks for more: a claims challenge</h2>"
        f"<p><code>{escape(challenge.code)}</code> {escape(challenge.message)}</p>"
        "<p>Conditional Access now requires MFA for the tasks API. OBO cannot satisfy it "
        "(there is no user at the token endpoint), so <code>get_obo_token</code> raised an "
        "error carrying Entra's <code>claims</code>, and the tasks API was not called. The "
        "app sends the user back to sign in with them (<code>sign_in_again(error)</code>):"
        "</p><pre>POST /api/auth/sign-in/social\n"
        + escape(json.dumps(shown, indent=2))
        + f"</pre><p>claims:</p><pre id='claims'>{escape(pretty)}</pre>"
        + _button(
            "/sign-in",
            "Sign in again with the claims",
            {"claims": challenge.claims, "login_hint": challenge.login_hint},
            css="primary",
        )
        + "</div>"
    )


_LEGEND = (
    "<p class='muted' id='legend'>Source: <b>exchange</b>: this call asked Entra ID "
    "(an OBO request); <b>cache (memory)</b>: served from this process, no I/O; "
    "<b>database</b>: read from the <code>account</code> table (memory is re-checked "
    "against it every 30 s, and another worker would read it there). Each row is bound to "
    "the Microsoft sign-in it was exchanged from (a SHA-256 fingerprint, never the token): "
    "after a new sign-in it is not served again.</p>"
)


def dashboard(
    *,
    user: Mapping[str, Any],
    sign_in: str,
    profile: Mapping[str, Any] | None,
    profile_error: str | None,
    tasks: Mapping[str, Any] | None,
    cached: Sequence[CachedRow],
    challenge: Challenge | None,
    status_line: str = "",
    outcome: Outcome | None = None,
    links: str = "",
) -> str:
    """Signed in: the APIs called via OBO, the cached tokens, and the actions."""
    who = f"{user.get('name')} <{user.get('email')}>"
    seen = (
        f"<p id='tasks'>The tasks API sees <strong>{escape(str(tasks.get('name')))}</strong> "
        f"with scopes <code>{escape(str(tasks.get('scp')))}</code>.</p>"
        if tasks
        else ""
    )
    banner = ""
    if outcome is not None:
        css = "ok" if outcome.ok else "warn"
        banner = f"<p class='{css}' id='outcome'>{escape(outcome.text)}</p>"
    body = (
        "<header><h1>better-auth-obo demo</h1>"
        f"<span>Signed in as <strong id='user'>{escape(who)}</strong></span></header>"
        "<!--status-->"
        + banner
        + (_challenge(challenge) if challenge else "")
        + flow_diagram()
        + "<h2>Called on your behalf</h2>"
        + "<p class='muted'>Microsoft Graph <code>/v1.0/me</code> and the tasks API, each "
        "with its own OBO token.</p>"
        + _profile(profile, profile_error)
        + seen
        + "<h2>Cached OBO tokens (rows of the <code>account</code> table)</h2>"
        + f"<p class='muted' id='sign-in'>{escape(sign_in)}</p>"
        + _cached(cached)
        + _LEGEND
        + "<h2>Try it</h2>"
        + "<a class='button' id='reload' href='/'>Reload (served from the cache)</a> "
        + _button("/obo/reexchange", "Force a re-exchange")
        + _button("/obo/revoke", "Revoke cached tokens")
        + _button("/obo/challenge", "Trigger a claims challenge (MFA)")
        + _button("/sign-out", "Sign out")
        + "<p class='muted'>Re-exchange: <code>get_obo_token(force_refresh=True)</code> for "
        "both APIs (two requests to Entra ID). Revoke: <code>revoke_obo_tokens</code>; the "
        "page then shows the empty cache without calling anything. Claims challenge: turns "
        "on an MFA policy in the emulator for the tasks API.</p>"
    )
    return page("better-auth-obo demo", body, status_line=status_line, links=links)
