"""``better-auth-obo doctor`` on credentials without secrets: which credential is in use and
until when (certificate notAfter, federated token ``exp``, managed identity reachable or
not), from the environment and from the plugin's ``credentials=[...]`` (``--auth``).

The managed identity endpoint is a plain-http emulator on 127.0.0.1 (App Service's own is
``http://localhost:...``); nothing is sent anywhere else. Tokens are decoded, never printed.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from tests._leaks import register
from tests.test_doctor import clean_env

from better_auth_obo._cli import main
from better_auth_obo.testing import EntraEmulator, ManagedIdentity

ISSUER = "https://oidc.prod-aks.azure.com/tenant/cluster/"
SUBJECT = "system:serviceaccount:payments:middle-tier"


@pytest.fixture(scope="module")
def plain_entra() -> Iterator[EntraEmulator]:
    with EntraEmulator(tls=False) as entra:
        yield entra


@pytest.fixture
def identity(plain_entra: EntraEmulator) -> ManagedIdentity:
    made = plain_entra.add_managed_identity(f"doctor-{uuid.uuid4().hex[:6]}")
    register(made.identity_header)
    return made


def federated_token(*, expires_in: float) -> str:
    now = time.time()
    claims = {"iss": ISSUER, "sub": SUBJECT, "aud": ["api://AzureADTokenExchange"],
              "iat": int(now), "exp": int(now + expires_in)}  # fmt: skip
    token = jwt.encode(claims, "doctor-test-signing-key-" + "k" * 16, algorithm="HS256")
    register(token)
    return token


def run(capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str]) -> dict[str, Any]:
    code = main(["doctor", "--json", *args], environ=env)
    out = capsys.readouterr().out
    report: dict[str, Any] = json.loads(out)
    assert code == (0 if report["ok"] else 1)
    for secret in (env.get("IDENTITY_HEADER"), "eyJ"):
        assert not secret or secret not in out
    return report


def credential(report: dict[str, Any], subject: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == "credential" and f["subject"] == subject]


# --- the environment ------------------------------------------------------------------------


def test_federated_token_file_in_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "azure-identity-token"
    path.write_text(federated_token(expires_in=3000))
    env = clean_env(AZURE_CLIENT_SECRET="", AZURE_FEDERATED_TOKEN_FILE=str(path))
    report = run(capsys, env=env)
    assert report["ok"], report
    [finding] = credential(report)
    assert finding["status"] == "ok"
    assert f"file {path}" in finding["message"]
    assert f"issuer {ISSUER}, subject {SUBJECT}" in finding["message"]
    assert "(in 49 min)" in finding["message"] or "(in 50 min)" in finding["message"]

    path.write_text(federated_token(expires_in=-60))
    [finding] = credential(run(capsys, env=env))
    assert finding["status"] == "problem"
    assert "AADSTS700024" in finding["message"]

    path.unlink()
    [finding] = credential(run(capsys, env=env))
    assert (finding["status"], "cannot be read" in finding["message"]) == ("problem", True)


def test_managed_identity_in_the_environment(
    capsys: pytest.CaptureFixture[str], identity: ManagedIdentity
) -> None:
    env = clean_env(
        AZURE_CLIENT_SECRET="",
        IDENTITY_ENDPOINT=identity.identity_endpoint,
        IDENTITY_HEADER=identity.identity_header,
    )
    report = run(capsys, env=env)
    assert report["ok"], report
    [finding] = credential(report)
    assert "reachable" in finding["message"]
    # What the app's federated identity credential must name, read from the identity's token.
    assert f"issuer {identity.issuer} and subject {identity.subject}" in finding["message"]
    [provider] = [f for f in report["findings"] if f["check"] == "credentials"]
    assert "managed identity" in provider["message"]


@pytest.mark.parametrize("broken", ["header", "endpoint"])
def test_managed_identity_not_reachable(
    capsys: pytest.CaptureFixture[str], identity: ManagedIdentity, broken: str
) -> None:
    endpoint, header = identity.identity_endpoint, identity.identity_header
    if broken == "header":
        header = "a-wrong-identity-header-value"
    else:
        endpoint = "http://127.0.0.1:9/msi/token"  # discard port: nothing listens
    env = clean_env(IDENTITY_ENDPOINT=endpoint, IDENTITY_HEADER=header)
    report = run(capsys, env=env)
    [finding] = credential(report)
    assert finding["status"] == "problem"
    assert "gave no token" in finding["message"]
    assert not report["ok"]


# --- the plugin's credentials (--auth) ----------------------------------------------------------


@pytest.fixture
def secretless_app(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    identity: ManagedIdentity,
    plain_entra: EntraEmulator,
) -> Iterator[str]:
    monkeypatch.syspath_prepend(str(tmp_path))
    app = plain_entra.register_app(f"doctor-{uuid.uuid4().hex[:6]}")
    certificate = app.add_certificate()
    (tmp_path / "app.pem").write_bytes(certificate.pem_bundle)
    (tmp_path / "token").write_text(federated_token(expires_in=1800))
    name = f"doctor_secretless_{uuid.uuid4().hex[:8]}"
    source = f"""
        from datetime import datetime, timezone
        from better_auth import BetterAuth, MemoryAdapter
        from better_auth_obo import (
            ClientCertificate, ClientSecret, FederatedAssertion, ManagedIdentityAssertion,
            OBOPlugin,
        )

        identity = {{"IDENTITY_ENDPOINT": {identity.identity_endpoint!r},
                     "IDENTITY_HEADER": {identity.identity_header!r}}}
        credentials = [
            ("workload", FederatedAssertion.from_file({str(tmp_path / "token")!r})),
            ("identity", ManagedIdentityAssertion(environ=identity)),
            ("pem-file", ClientCertificate.from_path({str(tmp_path / "app.pem")!r})),
            ("old-secret", ClientSecret("doctor-old-secret-value",
                                        expires_at=datetime(2020, 1, 1, tzinfo=timezone.utc))),
        ]
        auth = BetterAuth(
            secret="s" * 40,
            adapter=MemoryAdapter(),
            social_providers={{"microsoft": {{
                "client_id": {app.client_id!r}, "client_secret": "provider-secret-value",
                "tenant_id": {plain_entra.tenant_id!r}, "disable_profile_photo": True,
                "scopes": ["openid", "profile", "email", "offline_access",
                           {app.client_id + "/access_as_user"!r}],
            }}}},
            plugins=[OBOPlugin(applications={{"graph": {{"scope": [
                "https://graph.microsoft.com/.default"]}}}}, credentials=credentials)],
        )
    """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    yield name
    sys.modules.pop(name, None)


def test_auth_reports_each_credential_of_the_plugin(
    capsys: pytest.CaptureFixture[str], secretless_app: str, identity: ManagedIdentity
) -> None:
    register("doctor-old-secret-value", "provider-secret-value")
    report = run(capsys, "--auth", f"{secretless_app}:auth", env={})
    [workload] = credential(report, "workload")
    assert workload["status"] == "ok"
    assert f"subject {SUBJECT}" in workload["message"]
    [mi] = credential(report, "identity")
    assert (mi["status"], f"subject {identity.subject}" in mi["message"]) == ("ok", True)
    [pem] = credential(report, "pem-file")
    assert pem["status"] == "ok"
    assert "certificate SHA-1" in pem["message"]
    assert "valid until" in pem["message"]
    assert "app.pem" in pem["message"]
    [secret] = credential(report, "old-secret")
    assert secret["status"] == "problem"
    assert "expired on 2020-01-01" in secret["message"]
    assert not report["ok"]


def test_an_impossible_expiry_is_reported_not_a_crash() -> None:
    from better_auth_obo._doctor_credentials import _stamp

    for epoch in (1e20, float("inf"), -1e20):
        assert "impossible" in _stamp(epoch)
    assert _stamp(0) == "1970-01-01T00:00:00Z"
