"""``python -m benchmarks.fair_miss [--users N] [--rounds R] [--profile]``: the fair miss
table alone (see ``_fair_miss.py``); run it on a quiet machine for publishable figures."""

from __future__ import annotations

import sys

from ._fair_miss import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
