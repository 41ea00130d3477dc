"""The leak check: no token, assertion, refresh token or secret in a log line, an error
message or a repr, across the whole suite.

Test doubles and fixtures ``register`` every secret value they create or receive (the
wire double's tokens, seeded Microsoft tokens, client secrets, emulator-issued tokens,
tokens the plugin returns in end-to-end tests). An autouse fixture in conftest.py records
every log record of the ``better_auth_obo`` loggers and every ``better_auth.APIError``
created during a test (with its ``extra`` and the repr of its cause chain), and fails the
test if a registered value appears in any of them, raw or in any form- or percent-encoded
spelling (``+``, ``%2B`` or ``%2b``). The terminal summary prints the counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

MIN_LENGTH = 12  # shorter values (ids, "Bearer") would match by accident


def encoded_spellings(secret: str) -> frozenset[str]:
    """The other spellings of ``secret`` on the wire, lowercased (to match ``%2b`` and ``%2B``).

    Form-encoded (``quote_plus``), percent-encoded with and without ``/`` kept, and with
    ``~`` encoded too (``%7E``, as older encoders did). Empty for a secret no encoder changes.
    """
    fully = quote(secret, safe="")
    spelled = {quote_plus(secret), fully, quote(secret), fully.replace("~", "%7E")}
    return frozenset(s.lower() for s in spelled if s != secret)


@dataclass
class LeakScan:
    secrets: set[str] = field(default_factory=set)
    #: secret -> its encoded spellings (only for secrets an encoder changes)
    encoded: dict[str, frozenset[str]] = field(default_factory=dict)
    records: int = 0
    errors: int = 0
    hits: list[str] = field(default_factory=list)

    def register(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_LENGTH:
                self.secrets.add(value)
                spellings = encoded_spellings(value)
                if spellings:
                    self.encoded[value] = spellings

    def scan(self, where: str, text: str) -> None:
        lowered = text.lower()
        for secret in self.secrets:
            if secret in text:
                self.hits.append(f"{where}: contains a registered secret ({secret[:6]}…)")
            elif any(s in lowered for s in self.encoded.get(secret, ())):
                self.hits.append(f"{where}: contains a registered secret, encoded ({secret[:6]}…)")


SCAN = LeakScan()
register = SCAN.register


class RecordCollector(logging.Handler):
    """Keeps the formatted messages (and exception text) of every record it sees."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        self.texts.append(text)


def chained(error: BaseException) -> list[BaseException]:
    """Every exception reachable through ``__cause__`` and ``__context__`` (both, always:
    ``raise ... from None`` hides the context from tracebacks, not from code)."""
    found: list[BaseException] = []
    todo = [error.__cause__, error.__context__]
    while todo and len(found) < 20:
        cause = todo.pop()
        if cause is None or any(cause is seen for seen in found):
            continue
        found.append(cause)
        todo += [cause.__cause__, cause.__context__]
    return found


def error_texts(error: BaseException) -> str:
    """Message, extra and reprs of an error and of every exception chained to it."""
    parts = [str(error), repr(error), repr(getattr(error, "extra", None))]
    for cause in chained(error):
        parts += [str(cause), repr(cause)]
    return " ".join(parts)
