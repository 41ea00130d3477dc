"""What ``better-auth-obo doctor`` found, and how it is shown (text or JSON).

Nothing here ever holds a token: a stored token is summarised by its claims and a
short SHA-256 fingerprint.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "CachedSummary",
    "Finding",
    "Report",
    "Status",
    "TokenSummary",
    "render_json",
    "render_text",
]

Status = Literal["ok", "problem", "info"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: ``ok``, ``problem`` (the message says the fix) or ``info``."""

    check: str
    status: Status
    message: str
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class TokenSummary:
    """A stored token as the doctor shows it: its claims, never the token itself."""

    audience: str | None
    scopes: tuple[str, ...]
    tenant_id: str | None
    expires_at: str | None
    remaining_seconds: int | None
    fingerprint: str


@dataclass(frozen=True, slots=True)
class CachedSummary:
    """A cached OBO token of the user: application, audience, expiry, still bound or not."""

    application: str
    audience: str | None
    scopes: tuple[str, ...]
    expires_at: str | None
    bound_to_current_sign_in: bool


@dataclass(slots=True)
class Report:
    """Everything one doctor run found.

    Example::

        report.ok            # no problem: exit status 0
        report.to_dict()     # what --json prints
    """

    source: Literal["environment", "auth"]
    findings: list[Finding] = field(default_factory=list)
    token: TokenSummary | None = None
    cached: list[CachedSummary] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "problem"]

    @property
    def ok(self) -> bool:
        """True when no check found a problem."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "problems": len(self.problems),
            "findings": [asdict(f) for f in self.findings],
            "token": asdict(self.token) if self.token is not None else None,
            "cached": [asdict(c) for c in self.cached],
        }


_MARK = {"ok": "ok     ", "problem": "PROBLEM", "info": "info   "}
_SOURCE = {
    "environment": "the environment (AZURE_*, OBO_APPLICATIONS)",
    "auth": "the BetterAuth instance",
}


def render_json(report: Report) -> str:
    """The report as JSON (``--json``)."""
    return json.dumps(report.to_dict(), indent=2)


def render_text(report: Report, *, width: int = 100) -> str:
    """The report as short readable lines, each problem followed by its fix."""
    lines = [f"better-auth-obo doctor: checking {_SOURCE[report.source]}", ""]
    for finding in report.findings:
        label = finding.check.replace("_", " ")
        if finding.subject:
            label += f" [{finding.subject}]"
        head = f"  {_MARK[finding.status]}  {label}: "
        lines.extend(
            textwrap.wrap(
                finding.message,
                width=width,
                initial_indent=head,
                subsequent_indent=" " * 13,
                break_on_hyphens=False,
            )
        )
    if report.token is not None:
        lines.extend(["", *_token_lines(report.token)])
    if report.cached:
        lines.extend(["", "  cached OBO tokens of this user:"])
        lines.extend(_cached_line(c) for c in report.cached)
    count = len(report.problems)
    lines.extend(["", "No problem found." if count == 0 else f"{count} problem(s) found."])
    return "\n".join(lines)


def _token_lines(token: TokenSummary) -> list[str]:
    remaining = token.remaining_seconds
    if remaining is None:
        left = "no expiry"
    elif remaining < 0:
        left = f"expired {-remaining} s ago"
    else:
        left = f"{remaining // 60} min {remaining % 60} s left"
    return [
        "  the user's stored Microsoft token (decoded, never printed):",
        f"    aud  {token.audience}",
        f"    scp  {' '.join(token.scopes) or '-'}",
        f"    tid  {token.tenant_id}",
        f"    exp  {token.expires_at} ({left})",
        f"    fingerprint  {token.fingerprint}",
    ]


def _cached_line(cached: CachedSummary) -> str:
    bound = "bound to the current sign-in" if cached.bound_to_current_sign_in else "stale"
    return (
        f"    {cached.application}: aud {cached.audience}, scp {' '.join(cached.scopes)}, "
        f"expires {cached.expires_at} ({bound})"
    )
