"""The demo's terminal output: numbered steps, aligned, never wider than 100 columns.

Standard library only, so ``better-auth-obo demo`` can print its first line before the
heavy imports (FastAPI, better-auth-server, the emulator) have run.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["WIDTH", "Transcript", "duration", "timed"]

WIDTH = 100  # columns, at most, of any line the demo prints
_TITLE = 24  # width of the step title column
_INDENT = " " * (5 + _TITLE + 1)  # "NNN. " + title + " "


@dataclass
class Transcript:
    """Numbered, aligned lines on ``out``; long lines wrap under the detail column."""

    out: TextIO
    count: int = 0
    started: float = field(default_factory=time.perf_counter)

    def step(self, title: str, detail: str, elapsed: float | None = None) -> None:
        self.count += 1
        took = f"  ({duration(elapsed)})" if elapsed is not None else ""
        self._wrapped(f"{self.count:>3}. {title:<{_TITLE}} {detail}{took}")

    def note(self, text: str) -> None:
        self._wrapped(f"{_INDENT}{text}")

    def line(self, text: str = "") -> None:
        for paragraph in text.split("\n"):
            print(
                textwrap.fill(paragraph, WIDTH, break_on_hyphens=False) if paragraph else "",
                file=self.out,
                flush=True,
            )

    def _wrapped(self, text: str) -> None:
        lines = textwrap.wrap(
            text,
            WIDTH,
            subsequent_indent=_INDENT,
            break_on_hyphens=False,
            drop_whitespace=True,
        ) or [""]
        print("\n".join(lines), file=self.out, flush=True)

    @property
    def total(self) -> float:
        """Seconds since the transcript started (the command's first line)."""
        return time.perf_counter() - self.started


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as took: ...; took()`` -> seconds spent in the block."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def duration(seconds: float | None) -> str:
    """``0.015 ms``, ``35.9 ms``, ``1.25 s``."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return f"{seconds * 1000:.3f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"
