"""``python -m benchmarks [--quick]``: run everything, print one table."""

from __future__ import annotations

import sys

from ._run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
