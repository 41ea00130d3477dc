"""``better-auth-obo doctor``: each misconfiguration is found and explained, nothing leaks.

Environment input is passed as a dict (``main(environ=...)``); ``--auth`` input is a
real module written to a temporary folder and imported by the command.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from better_auth import BetterAuth
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from better_auth_obo._cli import load_auth, main
from better_auth_obo.testing import EntraEmulator

CLIENT_ID = "0b3e4a5c-1d2f-4a6b-8c9d-0e1f2a3b4c5d"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SECRET = "doctor-secret-value~Q8"
GOOD_SCOPES = f"openid profile email offline_access {CLIENT_ID}/access_as_user"
GOOD_APPS = json.dumps(
    {
        "graph": {"scope": ["https://graph.microsoft.com/.default"]},
        "orders": {"scope": ["api://orders-api/Orders.Read"]},
    }
)


def clean_env(**overrides: str) -> dict[str, str]:
    env = {
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_CLIENT_SECRET": SECRET,
        "AZURE_TENANT_ID": TENANT_ID,
        "AZURE_SCOPES": GOOD_SCOPES,
        "OBO_APPLICATIONS": GOOD_APPS,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def doctor(capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str]) -> Any:
    code = main(["doctor", "--json", *args], environ=env)
    out = capsys.readouterr().out
    assert SECRET not in out
    report = json.loads(out)
    assert code == (0 if report["ok"] else 1)
    return report


def problems(report: dict[str, Any], check: str) -> list[str]:
    return [
        f["message"] for f in report["findings"] if f["check"] == check and f["status"] == "problem"
    ]


# --- environment input ------------------------------------------------------------------------


def test_clean_environment_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"], environ=clean_env())
    out = capsys.readouterr().out
    assert code == 0
    assert "No problem found." in out
    assert SECRET not in out
    assert "PROBLEM" not in out


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers", ""])
def test_tenant_not_specific(capsys: pytest.CaptureFixture[str], tenant: str) -> None:
    report = doctor(capsys, env=clean_env(AZURE_TENANT_ID=tenant))
    assert not report["ok"]
    [message] = problems(report, "tenant")
    assert "GUID" in message


def test_default_scopes_give_a_graph_token(capsys: pytest.CaptureFixture[str]) -> None:
    env = clean_env()
    del env["AZURE_SCOPES"]
    report = doctor(capsys, env=env)
    found = problems(report, "provider_scopes")
    assert any("Graph" in m and "User.Read" in m and "defaults" in m for m in found)
    assert any(f"{CLIENT_ID}/access_as_user" in m for m in found)


def test_graph_scope_mixed_into_provider_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    report = doctor(capsys, env=clean_env(AZURE_SCOPES=GOOD_SCOPES + " User.Read"))
    [message] = problems(report, "provider_scopes")
    assert "Graph" in message


def test_self_scope_in_api_uri_form(capsys: pytest.CaptureFixture[str]) -> None:
    scopes = f"openid offline_access api://{CLIENT_ID}/access_as_user"
    report = doctor(capsys, env=clean_env(AZURE_SCOPES=scopes))
    [message] = problems(report, "provider_scopes")
    assert "AADSTS90009" in message
    assert f"'{CLIENT_ID}/access_as_user'" in message


def test_application_spanning_several_resources(capsys: pytest.CaptureFixture[str]) -> None:
    apps = json.dumps({"mixed": {"scope": ["User.Read", "api://orders-api/Orders.Read"]}})
    report = doctor(capsys, env=clean_env(OBO_APPLICATIONS=apps))
    [finding] = [f for f in report["findings"] if f["status"] == "problem"]
    assert finding["subject"] == "mixed"
    assert "several resources" in finding["message"]


def test_application_mixing_default_with_named(capsys: pytest.CaptureFixture[str]) -> None:
    scopes = ["api://orders-api/.default", "api://orders-api/Orders.Read"]
    apps = json.dumps({"orders": {"scope": scopes}})
    report = doctor(capsys, env=clean_env(OBO_APPLICATIONS=apps))
    [message] = problems(report, "application_scopes")
    assert "'.default'" in message
    assert "AADSTS70011" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("{not json", "not usable"), ('{"graph": {"scope": []}}', "no scope"), ("[1]", "dict")],
)
def test_unusable_applications(capsys: pytest.CaptureFixture[str], raw: str, expected: str) -> None:
    report = doctor(capsys, env=clean_env(OBO_APPLICATIONS=raw))
    [message] = problems(report, "applications")
    assert expected in message


def test_no_applications_is_only_information(capsys: pytest.CaptureFixture[str]) -> None:
    report = doctor(capsys, env=clean_env(OBO_APPLICATIONS=""))
    assert report["ok"]
    assert any(f["check"] == "applications" and f["status"] == "info" for f in report["findings"])


def test_missing_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    report = doctor(capsys, env=clean_env(AZURE_CLIENT_SECRET=""))
    [message] = problems(report, "credentials")
    assert "confidential" in message


def test_missing_client_id(capsys: pytest.CaptureFixture[str]) -> None:
    report = doctor(capsys, env=clean_env(AZURE_CLIENT_ID=""))
    [message] = problems(report, "client_id")
    assert "AZURE_CLIENT_ID" in message


# --- certificates -------------------------------------------------------------------------------


def write_certificate(path: Path, *, days: float) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doctor-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(key_pem + cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(
    ("days", "status", "words"),
    [(-3, "problem", "expired"), (10, "problem", "successor"), (200, "ok", "valid until")],
)
def test_certificate_expiry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, days: float, status: str, words: str
) -> None:
    pem = write_certificate(tmp_path / "cert.pem", days=days)
    env = clean_env(AZURE_CLIENT_SECRET="", AZURE_CLIENT_CERTIFICATE_PATH=str(pem))
    report = doctor(capsys, env=env)
    [finding] = [f for f in report["findings"] if f["check"] == "certificate"]
    assert finding["status"] == status
    assert words in finding["message"]
    assert "PRIVATE KEY" not in json.dumps(report)


def test_certificate_option_and_unreadable_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    report = doctor(capsys, "--certificate", str(bogus), env=clean_env())
    [message] = problems(report, "certificate")
    assert "no readable X.509 certificate" in message
    report = doctor(capsys, "--certificate", str(tmp_path / "missing.pem"), env=clean_env())
    assert problems(report, "certificate")


# --- --auth and --user-id -------------------------------------------------------------------------


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Writes an app module with the given provider / plugin config; yields a factory."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(provider: dict[str, Any] | None, *, plugin: bool = True) -> str:
        name = f"doctor_app_{uuid.uuid4().hex[:8]}"
        names.append(name)
        providers = {"microsoft": provider} if provider is not None else {}
        plugins = (
            "[OBOPlugin(applications={'graph': {'scope': "
            "['https://graph.microsoft.com/.default']}})]"
            if plugin
            else "[]"
        )
        source = f"""
            from better_auth import BetterAuth, MemoryAdapter
            from better_auth_obo import OBOPlugin

            auth = BetterAuth(
                secret="s" * 40,
                adapter=MemoryAdapter(),
                social_providers={providers!r},
                plugins={plugins},
            )
        """
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def provider(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "tenant_id": TENANT_ID,
        "scopes": GOOD_SCOPES.split(),
        "disable_profile_photo": True,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def test_auth_clean(capsys: pytest.CaptureFixture[str], app_module: Any) -> None:
    name = app_module(provider())
    report = doctor(capsys, "--auth", f"{name}:auth", env={})
    assert report["ok"], report
    assert report["source"] == "auth"


def test_auth_finds_the_plugins_problems(
    capsys: pytest.CaptureFixture[str], app_module: Any
) -> None:
    name = app_module(provider(tenant_id=None, client_secret="", scopes=None))
    report = doctor(capsys, "--auth", f"{name}:auth", env={})
    assert problems(report, "tenant")
    assert problems(report, "credentials")
    assert any("defaults" in m for m in problems(report, "provider_scopes"))


def test_auth_without_microsoft_or_plugin(
    capsys: pytest.CaptureFixture[str], app_module: Any
) -> None:
    name = app_module(None, plugin=False)
    report = doctor(capsys, "--auth", f"{name}:auth", env={})
    assert "No Microsoft provider" in problems(report, "credentials")[0]
    assert "OBOPlugin" in problems(report, "plugin")[0]


def seed_user(auth: BetterAuth, token: str, *, refresh: str | None = "rt-value") -> str:
    async def seed() -> str:
        now = dt.datetime.now(dt.timezone.utc)
        user = await auth.adapter.create(
            "user",
            {
                "name": "Ada",
                "email": "ada@contoso.example",
                "emailVerified": True,
                "createdAt": now,
                "updatedAt": now,
            },
        )
        await auth.adapter.create(
            "account",
            {
                "userId": user["id"],
                "providerId": "microsoft",
                "accountId": "oid-1",
                "accessToken": token,
                "refreshToken": refresh,
                "scope": "openid",
                "createdAt": now,
                "updatedAt": now,
            },
        )
        return str(user["id"])

    return asyncio.run(seed())


@pytest.fixture(scope="module")
def emulator() -> Iterator[EntraEmulator]:
    with EntraEmulator() as entra:
        yield entra


def test_user_token_is_decoded_never_printed(
    capsys: pytest.CaptureFixture[str], app_module: Any, emulator: EntraEmulator
) -> None:
    api = emulator.register_app("doctor-api", scopes=["access_as_user"])
    user = emulator.add_user("Ada Lovelace", f"ada-{uuid.uuid4().hex[:6]}@contoso.example")
    token = emulator.issue_token(user, audience=api, scopes=["access_as_user"])
    name = app_module(
        provider(
            client_id=api.client_id,
            tenant_id=emulator.tenant_id,
            scopes=["openid", "offline_access", f"{api.client_id}/access_as_user"],
        )
    )
    auth = load_auth(f"{name}:auth")
    user_id = seed_user(auth, token)
    code = main(["doctor", "--auth", f"{name}:auth", "--user-id", user_id], environ={})
    out = capsys.readouterr().out
    assert code == 0, out
    assert token not in out
    assert token.split(".")[2] not in out
    assert f"aud  {api.client_id}" in out
    assert "scp  access_as_user" in out
    assert f"tid  {emulator.tenant_id}" in out
    assert "min" in out  # remaining lifetime
    report = doctor(capsys, "--auth", f"{name}:auth", "--user-id", user_id, env={})
    assert report["token"]["audience"] == api.client_id
    assert 3500 < report["token"]["remaining_seconds"] <= 3600
    assert token not in json.dumps(report)


def test_user_with_a_graph_token(
    capsys: pytest.CaptureFixture[str], app_module: Any, emulator: EntraEmulator
) -> None:
    api = emulator.register_app("doctor-web", scopes=["access_as_user"])
    user = emulator.add_user("Grace Hopper", f"grace-{uuid.uuid4().hex[:6]}@contoso.example")
    token = emulator.issue_token(user, audience="https://graph.microsoft.com", client=api)
    name = app_module(provider(client_id=api.client_id, tenant_id=emulator.tenant_id))
    user_id = seed_user(load_auth(f"{name}:auth"), token, refresh=None)
    report = doctor(capsys, "--auth", f"{name}:auth", "--user-id", user_id, env={})
    found = problems(report, "stored_token")
    assert any("Microsoft Graph token" in m for m in found)
    assert any("offline_access" in m for m in found)
    assert token not in json.dumps(report)


def test_user_from_another_tenant_and_expired(
    capsys: pytest.CaptureFixture[str], app_module: Any, emulator: EntraEmulator
) -> None:
    api = emulator.register_app("doctor-exp", scopes=["access_as_user"])
    user = emulator.add_user("Alan Turing", f"alan-{uuid.uuid4().hex[:6]}@contoso.example")
    token = emulator.issue_token(
        user, audience=api, scopes=["access_as_user"], lifetime=60, issued_at=1_000_000
    )
    other_tenant = str(uuid.uuid4())
    name = app_module(provider(client_id=api.client_id, tenant_id=other_tenant))
    user_id = seed_user(load_auth(f"{name}:auth"), token)
    report = doctor(capsys, "--auth", f"{name}:auth", "--user-id", user_id, env={})
    assert any(other_tenant in m for m in problems(report, "stored_token"))
    assert report["token"]["remaining_seconds"] < 0
    assert any(f["status"] == "info" and "expired" in f["message"] for f in report["findings"])


def test_unknown_user(capsys: pytest.CaptureFixture[str], app_module: Any) -> None:
    name = app_module(provider())
    report = doctor(capsys, "--auth", f"{name}:auth", "--user-id", "nobody", env={})
    assert "MICROSOFT_ACCOUNT_NOT_FOUND" in problems(report, "stored_token")[0]
