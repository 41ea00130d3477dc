"""The demo: an Entra ID emulator, a FastAPI app with better-auth-server and OBOPlugin."""

from __future__ import annotations

__all__ = ["run_demo", "serve_demo"]


def run_demo() -> int:
    """Run the scripted demo; returns the exit status."""
    raise NotImplementedError


def serve_demo(*, port: int = 0) -> int:
    """Serve the demo app until interrupted; returns the exit status."""
    raise NotImplementedError
