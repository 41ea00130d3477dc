"""The ``better-auth-obo`` command: ``doctor``, ``demo`` and ``emulator``.

Example::

    better-auth-obo doctor                       # AZURE_* and OBO_APPLICATIONS from the env
    better-auth-obo doctor --auth myapp.auth:auth --user-id 42 --json
    better-auth-obo demo                         # the whole flow, offline, in a few seconds
    better-auth-obo demo --serve --port 8000     # the demo app in your browser
    better-auth-obo emulator --config entra.toml --state .entra-state.json

Exit status: 0 when all is well, 1 when a check or the demo failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import OBOConfigurationWarning

if TYPE_CHECKING:
    from better_auth import BetterAuth

__all__ = ["UsageError", "load_auth", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line cannot be acted on; the message says why."""


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit status.

    ``environ`` replaces ``os.environ`` (tests pass a dict).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.command == "doctor":
            return _doctor(args, env)
        if args.command == "emulator":
            return _emulator(args)
        return _demo(args)
    except UsageError as exc:
        print(f"better-auth-obo {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("better-auth-obo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="better-auth-obo",
        description="Microsoft Entra ID On-Behalf-Of for better-auth-server: "
        "check a configuration, or watch the whole flow run offline.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doctor = commands.add_parser(
        "doctor",
        help="check an Entra ID / Better Auth configuration and explain each problem",
        description="Check the configuration OBO depends on and explain every problem with "
        "its fix. Without --auth it reads AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, "
        "AZURE_TENANT_ID, AZURE_SCOPES (the Microsoft provider's scopes, space separated), "
        'OBO_APPLICATIONS (JSON: {"graph": {"scope": [...]}}) and '
        "AZURE_CLIENT_CERTIFICATE_PATH. Exit status 0 when clean, 1 when not.",
    )
    doctor.add_argument(
        "--auth",
        metavar="MODULE:ATTRIBUTE",
        help="your app's BetterAuth instance, e.g. myapp.auth:auth (imported from the "
        "current directory)",
    )
    doctor.add_argument(
        "--user-id",
        metavar="ID",
        help="also decode this user's stored Microsoft token (never printed): aud, scp, tid, "
        "exp, remaining lifetime, and list their cached OBO tokens (needs --auth)",
    )
    doctor.add_argument(
        "--certificate",
        metavar="PATH",
        help="the client certificate (PEM, DER or PFX) to check for expiry; default "
        "AZURE_CLIENT_CERTIFICATE_PATH",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    demo = commands.add_parser(
        "demo",
        help="run the whole OBO flow offline: Entra ID emulator + FastAPI app + SQLite",
        description="Start a local Entra ID emulator and a demo FastAPI app (better-auth-server "
        "+ OBOPlugin + SQLite in a temporary folder) on 127.0.0.1, sign a user in through the "
        "real redirect flow, get OBO tokens for two APIs (exchanged, then from cache) and call "
        "both APIs. Prints a transcript; never a token.",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the demo app running and print its URL, to try it in a browser",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="port for --serve on 127.0.0.1 (default: a free one)",
    )
    _emulator_parser(commands)
    return parser


def _emulator_parser(commands: Any) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="run the Entra ID emulator as a local server (for MSAL.js, Node, docker-compose)",
        description="Run the Entra ID emulator until Ctrl-C or SIGTERM, printing its "
        "authority, tenant, CA file (and how to trust it), and each app's client id and "
        "secret and the users. Without --config: one middle-tier app allowed to call "
        "Microsoft Graph's User.Read and two users. Exit status 2 on a bad config.",
    )
    try:
        from .testing._standalone import add_arguments
    except ImportError:  # no testing extra: the command says so when run
        emulator.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    add_arguments(emulator)


# --- doctor -------------------------------------------------------------------------------


def _doctor(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ._doctor import check_auth, check_environment
    from ._doctor_report import render_json, render_text

    certificate = args.certificate or env.get("AZURE_CLIENT_CERTIFICATE_PATH") or None
    now = time.time()
    if args.auth:
        auth = load_auth(args.auth)
        report = asyncio.run(
            _close_after(
                auth,
                check_auth(
                    auth, user_id=args.user_id, certificate=certificate, environ=env, now=now
                ),
            )
        )
    elif args.user_id:
        raise UsageError("--user-id needs --auth MODULE:ATTRIBUTE (the database to read from)")
    else:
        report = check_environment(
            {**env, "AZURE_CLIENT_CERTIFICATE_PATH": certificate or ""}, now=now
        )
    print(render_json(report) if args.json else render_text(report))
    return EXIT_OK if report.ok else EXIT_FAILED


async def _close_after(auth: BetterAuth, work: Any) -> Any:
    """Await ``work``, then release the app's database engine (loop-bound connections)."""
    try:
        return await work
    finally:
        engine = getattr(auth.adapter, "engine", None)
        dispose = getattr(engine, "dispose", None)
        if dispose is not None:
            await dispose()


def load_auth(spec: str) -> BetterAuth:
    """Import ``module:attribute`` (dotted attribute allowed) and return the BetterAuth in it.

    The attribute may also be a function without arguments that returns one. Start-up
    warnings of the plugin are silenced here: the doctor reports the same problems.
    """
    from better_auth import BetterAuth

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--auth takes MODULE:ATTRIBUTE, e.g. myapp.auth:auth (got {spec!r})")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    value: Any = _import(module_name)
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(f"{module_name} has no attribute {attribute!r}") from None
    if not isinstance(value, BetterAuth) and callable(value):
        value = _quietly(value)
    if not isinstance(value, BetterAuth):
        raise UsageError(f"{spec} is a {type(value).__name__}, not a BetterAuth instance")
    return value


def _import(module_name: str) -> Any:
    try:
        return _quietly(importlib.import_module, module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None


def _quietly(function: Any, *args: Any) -> Any:
    logger = logging.getLogger("better_auth_obo")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OBOConfigurationWarning)
            return function(*args)
    finally:
        logger.setLevel(level)


# --- emulator -----------------------------------------------------------------------------


def _emulator(args: argparse.Namespace) -> int:
    try:
        from .testing._standalone import run
    except ImportError as exc:
        print(
            "better-auth-obo emulator needs the testing extra: "
            f"pip install 'better-auth-obo[testing]' ({exc})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return run(args)


# --- demo ---------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    try:
        from .demo import run_demo, serve_demo
    except ImportError as exc:
        print(
            f"better-auth-obo demo needs the demo extra: pip install 'better-auth-obo[demo]' "
            f"({exc})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.serve:
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
        return serve_demo(port=args.port)
    if args.port:
        raise UsageError("--port only applies with --serve")
    return run_demo()
