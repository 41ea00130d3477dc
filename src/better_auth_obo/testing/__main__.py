"""``python -m better_auth_obo.testing``: the Entra ID emulator as a server (the same as
``better-auth-obo emulator``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._standalone import add_arguments, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m better_auth_obo.testing",
        description="Run the Entra ID emulator as a local server until Ctrl-C.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
