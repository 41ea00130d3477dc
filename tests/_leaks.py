"""The leak check: no token, assertion, refresh token or secret in a log line, an error
message or a repr, across the whole suite.

Test doubles and fixtures ``register`` every secret value they create or receive (the
wire double's tokens, seeded Microsoft tokens, client secrets, emulator-issued tokens,
tokens the plugin returns in end-to-end tests). An autouse fixture in conftest.py records
every log record of the ``better_auth_obo`` loggers and every ``better_auth.APIError``
created during a test (with its ``extra`` and the repr of its cause chain), and fails the
test if a registered value appears in any of them. The terminal summary prints the counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

MIN_LENGTH = 12  # shorter values (ids, "Bearer") would match by accident


@dataclass
class LeakScan:
    secrets: set[str] = field(default_factory=set)
    records: int = 0
    errors: int = 0
    hits: list[str] = field(default_factory=list)

    def register(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_LENGTH:
                self.secrets.add(value)

    def scan(self, where: str, text: str) -> None:
        for secret in self.secrets:
            if secret in text:
                self.hits.append(f"{where}: contains a registered secret ({secret[:6]}…)")


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


def error_texts(error: BaseException) -> str:
    """Message, extra and reprs of an error and of its cause chain."""
    parts = [str(error), repr(error), repr(getattr(error, "extra", None))]
    cause = error.__cause__ or error.__context__
    seen = 0
    while cause is not None and seen < 5:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return " ".join(parts)
