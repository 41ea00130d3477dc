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
    # The same secrets indexed by their first MIN_LENGTH characters (raw, and each lowered
    # encoded spelling), so a scan costs one lookup per character of text instead of one
    # substring search per registered secret (thousands of them late in a run).
    _raw: dict[str, list[tuple[str, str]]] = field(default_factory=dict, repr=False)
    _spelled: dict[str, list[tuple[str, str]]] = field(default_factory=dict, repr=False)
    _indexed: int = field(default=0, repr=False)

    def register(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_LENGTH and value not in self.secrets:
                self.secrets.add(value)
                spellings = encoded_spellings(value)
                if spellings:
                    self.encoded[value] = spellings
                if self._indexed == len(self.secrets) - 1:  # the index is current: extend it
                    self._add_to_index(value)

    def scan(self, where: str, text: str) -> None:
        self._index()
        raw = _occurring(text, self._raw)
        encoded = _occurring(text.lower(), self._spelled) - raw
        for secret in raw:
            self.hits.append(f"{where}: contains a registered secret ({secret[:6]}…)")
        for secret in encoded:
            self.hits.append(f"{where}: contains a registered secret, encoded ({secret[:6]}…)")

    def _index(self) -> None:
        if self._indexed == len(self.secrets):
            return
        # ``secrets`` was added to directly (not through register): index them all again.
        self._raw.clear()
        self._spelled.clear()
        self._indexed = 0
        for secret in self.secrets:
            self._add_to_index(secret)

    def _add_to_index(self, secret: str) -> None:
        self._raw.setdefault(secret[:MIN_LENGTH], []).append((secret, secret))
        for spelling in self.encoded.get(secret, ()):
            self._spelled.setdefault(spelling[:MIN_LENGTH], []).append((spelling, secret))
        self._indexed += 1


def _occurring(text: str, index: dict[str, list[tuple[str, str]]]) -> set[str]:
    """The secrets one of whose indexed spellings occurs in ``text``."""
    found: set[str] = set()
    lookup = index.get
    for start in range(len(text) - MIN_LENGTH + 1):
        candidates = lookup(text[start : start + MIN_LENGTH])
        if candidates:
            found.update(secret for needle, secret in candidates if text.startswith(needle, start))
    return found


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
