"""The ``better-auth-obo`` command line: help on every command, usage errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from better_auth_obo._cli import main


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], ["doctor", "demo"]),
        (["doctor"], ["--auth", "--user-id", "--json", "AZURE_CLIENT_ID", "OBO_APPLICATIONS"]),
        (["demo"], ["--serve", "--port"]),
        (["emulator"], ["--config", "--state", "--port", "--host", "--no-tls", "7443"]),
    ],
)
def test_help_on_every_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["doctor", "--user-id", "u1"], "--user-id needs --auth"),
        (["doctor", "--auth", "no_colon"], "MODULE:ATTRIBUTE"),
        (["doctor", "--auth", "module_that_does_not_exist_x:auth"], "cannot import"),
        (["doctor", "--auth", "json:nothing_here"], "no attribute"),
        (["doctor", "--auth", "json:__name__"], "not a BetterAuth instance"),
        (["demo", "--port", "8123"], "--port only applies with --serve"),
        (["demo", "--serve", "--port", "70000"], "between 0 and 65535"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv, environ={}) == 2
    assert message in capsys.readouterr().err


def test_doctor_with_nothing_configured_says_what_to_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor"], environ={}) == 1
    out = capsys.readouterr().out
    assert "AZURE_CLIENT_ID is not set" in out
    assert "PROBLEM" in out
    assert out.rstrip().endswith("problem(s) found.")


def test_installed_entry_point_runs() -> None:
    script = Path(sys.executable).with_name("better-auth-obo")
    result = subprocess.run(
        [str(script), "doctor", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "usage: better-auth-obo doctor" in result.stdout


def test_version_is_the_installed_distributions() -> None:
    import subprocess
    import sys
    from importlib.metadata import version

    import better_auth_obo

    assert better_auth_obo.__version__ == version("better-auth-obo")
    from pathlib import Path

    script = Path(sys.executable).with_name("better-auth-obo")  # the installed entry point
    out = subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == f"better-auth-obo {better_auth_obo.__version__}", out.stderr


def test_the_testing_package_names_its_extra_when_it_is_missing() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['trustme'] = None\n"
        "from better_auth_obo.testing import EntraEmulator\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert 'pip install "better-auth-obo[testing]"' in out.stderr
    assert "trustme is missing" in out.stderr
