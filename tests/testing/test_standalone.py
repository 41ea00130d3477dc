"""The emulator as a server of its own (``python -m better_auth_obo.testing`` and
``better-auth-obo emulator``), driven from this process over real sockets: MSAL Python,
azure-identity and a browser-free sign-in trust its CA file; a restart with the same
``--state`` keeps ids, secrets, certificates, signing keys, CA and port, so tokens issued
before the restart still verify."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.identity import ClientSecretCredential, OnBehalfOfCredential
from entra_helpers import GRAPH_USER_READ, claims
from tests._leaks import register

from better_auth_obo.testing import EntraEmulator
from better_auth_obo.testing.__main__ import main as module_main
from better_auth_obo.testing._config import (
    DEFAULT_WORLD,
    AppDecl,
    ConsentDecl,
    TenantDecl,
    UserDecl,
    World,
    complete,
    load_config,
    merge,
)
from better_auth_obo.testing._standalone import _new_certificate, _populate

TENANT = "5d1a7c2e-0b7a-4c55-9a1e-3f2b8c6d4e10"
API = "2f6c0b9e-8d3a-4e1f-9c7b-6a5d4e3f2a10"
REDIRECT = "http://localhost:5000/auth/callback"
ADA = "ada@contoso.onmicrosoft.com"
READY_TIMEOUT = 10.0  # generous: correctness only; the real figure is printed (-s)

CONFIG = f"""
[tenant]
id = "{TENANT}"
domain = "contoso.onmicrosoft.com"

[[tenants]]
domain = "fabrikam.onmicrosoft.com"

[[apps]]
name = "middle-tier"
client_id = "{API}"
client_secret = "a-secret-for-the-standalone-test"
scopes = ["access_as_user"]
redirect_uris = ["{REDIRECT}"]
certificates = 1

[[apps]]
name = "downstream"
app_id_uri = "api://downstream"
scopes = ["Files.Read"]
roles = ["Files.Read.All"]

[[users]]
display_name = "Ada Lovelace"
upn = "{ADA}"
given_name = "Augusta Ada"

[[users]]
display_name = "Grace Hopper"
upn = "grace@fabrikam.onmicrosoft.com"
tenant = "fabrikam.onmicrosoft.com"

[[guests]]
user = "grace@fabrikam.onmicrosoft.com"
tenant = "contoso.onmicrosoft.com"

[[consents]]
app = "middle-tier"
scopes = ["{GRAPH_USER_READ}", "api://downstream/Files.Read", "api://downstream/Files.Read.All"]

[sign_in]
auto = true

[policies]
token_lifetime = 3600
"""


@dataclass
class Running:
    process: subprocess.Popen[str]
    summary: dict[str, Any]
    startup: float  # seconds from spawn to the ready file

    @property
    def app(self) -> dict[str, Any]:
        return self.summary["apps"][0]

    def stop(self) -> tuple[str, str]:
        """SIGTERM; a clean stop exits 0."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=15)
        assert self.process.returncode == 0, err
        return out, err


def _command(cli: bool) -> list[str]:
    if not cli:
        return [sys.executable, "-m", "better_auth_obo.testing"]
    script = Path(sys.executable).with_name("better-auth-obo")
    if script.exists():
        return [str(script), "emulator"]
    code = "import sys; from better_auth_obo._cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "emulator"]


_SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_server_left_behind() -> Iterator[None]:
    """A failed test still stops the servers it started."""
    yield
    while _SPAWNED:
        process = _SPAWNED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def start(tmp_path: Path, *args: str, cli: bool = False) -> Running:
    """Spawn the server and wait for its ready file (written once it accepts connections)."""
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    began = time.monotonic()
    process = subprocess.Popen(
        [*_command(cli), "--port", "0", "--ready-file", str(ready), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    _SPAWNED.append(process)
    while not ready.exists():
        if process.poll() is not None or time.monotonic() - began > READY_TIMEOUT:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the emulator did not start (exit {process.returncode}): {out}{err}")
        time.sleep(0.005)
    startup = time.monotonic() - began
    summary = json.loads(ready.read_text())
    register(*(a["client_secret"] for a in summary["apps"]))
    print(f"standalone emulator ready in {startup:.3f} s")
    return Running(process, summary, startup)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # REQUESTS_CA_BUNDLE from the environment would win over verify
        yield s


def _msal(
    running: Running, session: requests.Session, credential: Any = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        running.app["client_id"],
        client_credential=credential or running.app["client_secret"],
        authority=f"{running.summary['authority']}/{running.summary['tenant_id']}",
        instance_discovery=False,
        http_client=session,
    )


def _sign_in(running: Running, session: requests.Session) -> str:
    """MSAL's auth code flow with form_post, as a browser would post the answer page
    (auto sign-in: no user page)."""
    app = _msal(running, session)
    flow = app.initiate_auth_code_flow(
        [f"{API}/access_as_user"], redirect_uri=REDIRECT, login_hint=ADA, response_mode="form_post"
    )
    answer = session.get(flow["auth_uri"], allow_redirects=False)
    assert answer.status_code == 200, answer.text
    assert f"action='{REDIRECT}'" in answer.text
    posted = dict(re.findall(r"name='([^']+)' value='([^']*)'", answer.text))
    result = app.acquire_token_by_auth_code_flow(flow, posted)
    assert "access_token" in result, result
    register(result["access_token"], result.get("refresh_token"))
    return str(result["access_token"])


def _verify(token: str, running: Running, session: requests.Session) -> dict[str, Any]:
    """Verify as a resource server would: discovery document, then its JWKS."""
    discovery = session.get(running.summary["discovery_url"]).json()
    jwks = session.get(discovery["jwks_uri"]).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(
        token, key.key, algorithms=["RS256"], audience=API, issuer=discovery["issuer"]
    )


def test_serves_real_clients_and_keeps_its_world_across_a_restart(
    tmp_path: Path, session: requests.Session
) -> None:
    (tmp_path / "entra.toml").write_text(CONFIG)
    state = tmp_path / "state.json"
    args = ("--config", "entra.toml", "--state", str(state))
    first = start(tmp_path, *args)
    session.verify = first.summary["ca_file"]

    assert first.startup < READY_TIMEOUT
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert (first.summary["tenant_id"], first.app["client_id"]) == (TENANT, API)
    assert any(u["guest"] for u in first.summary["users"])
    assertion = _sign_in(first, session)
    assert _verify(assertion, first, session)["preferred_username"] == ADA
    _obo_and_client_credentials(first, session, assertion)
    out, _ = first.stop()
    assert first.app["client_secret"] in out  # printed on purpose
    assert first.summary["authority"] in out
    # The form a Better Auth sign-in must request (api://... fails at refresh, AADSTS90009).
    assert f"sign-in scopes {API}/access_as_user" in out

    second = start(tmp_path, *args)
    try:
        for key in ("authority", "tenant_id", "ca_file", "issuer"):
            assert second.summary[key] == first.summary[key]
        # same generated client ids, secrets, certificates, oids
        assert second.summary["apps"] == first.summary["apps"]
        assert second.summary["users"] == first.summary["users"]
        assert _verify(assertion, second, session)["tid"] == TENANT  # same keys, same CA
        _obo_and_client_credentials(second, session, assertion)
    finally:
        second.stop()


def _obo_and_client_credentials(
    running: Running, session: requests.Session, assertion: str
) -> None:
    app = _msal(running, session)
    obo = app.acquire_token_on_behalf_of(assertion, [GRAPH_USER_READ])
    assert "access_token" in obo, obo
    assert claims(obo["access_token"])["aud"] == "https://graph.microsoft.com"
    app_only = app.acquire_token_for_client(["api://downstream/.default"])
    assert claims(app_only["access_token"])["roles"] == ["Files.Read.All"]
    cert = running.app["certificates"][0]
    pem = Path(cert["pem_file"]).read_text()
    credential = {"private_key": pem, "thumbprint": cert["thumbprint"]}
    with_cert = _msal(running, session, credential).acquire_token_for_client(
        ["api://downstream/.default"]
    )
    assert claims(with_cert["access_token"])["azpacr"] == "2"  # certificate
    _azure_identity(running, assertion)


def _azure_identity(running: Running, assertion: str) -> None:
    common = {
        "authority": running.summary["authority"],
        "disable_instance_discovery": True,
        "connection_verify": running.summary["ca_file"],
    }
    tenant, app = running.summary["tenant_id"], running.app
    with OnBehalfOfCredential(
        tenant, app["client_id"], client_secret=app["client_secret"],
        user_assertion=assertion, **common,
    ) as credential:  # fmt: skip
        assert claims(credential.get_token("api://downstream/Files.Read").token)["scp"] == (
            "Files.Read"
        )
    with ClientSecretCredential(tenant, app["client_id"], app["client_secret"], **common) as cc:
        assert claims(cc.get_token("api://downstream/.default").token)["roles"]


def test_cli_subcommand_serves_the_default_world(tmp_path: Path, session: requests.Session) -> None:
    running = start(tmp_path, cli=True)
    try:
        summary = running.summary
        session.verify = summary["ca_file"]
        assert [a["name"] for a in summary["apps"]] == ["middle-tier"]
        assert running.app["client_secret"]
        assert len(summary["users"]) == 2
        token = _msal(running, session).acquire_token_for_client(
            [f"{running.app['app_id_uri']}/.default"]
        )
        assert "access_token" in token, token
        assert session.get(summary["discovery_url"]).json()["issuer"] == summary["issuer"]
    finally:
        out, _ = running.stop()
    for needle in ("REQUESTS_CA_BUNDLE=", "SSL_CERT_FILE=", "NODE_EXTRA_CA_CERTS=", "oid "):
        assert needle in out
    assert not Path(summary["ca_file"]).exists()  # no --state: temporary files go


def test_listening_beyond_loopback_warns(tmp_path: Path, session: requests.Session) -> None:
    running = start(tmp_path, "--host", "0.0.0.0", "--url-host", "localhost")
    try:
        summary = running.summary
        assert summary["authority"].startswith("https://localhost:")  # the name clients use
        session.verify = summary["ca_file"]  # the certificate names it too
        assert session.get(summary["discovery_url"]).json()["issuer"] == summary["issuer"]
    finally:
        _, err = running.stop()
    assert "warning: listening on 0.0.0.0" in err


def test_a_bad_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[apps]]\nname = "x"\nscope = ["a"]\n')
    done = subprocess.run(
        [*_command(cli=False), "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert str(config) in done.stderr
    assert "apps[0]" in done.stderr
    assert "unknown key 'scope'" in done.stderr
    assert "redirect_uris" in done.stderr  # the allowed keys are listed
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[tenant]\nid = "not-a-guid"\n', ["tenant.id", "must be a GUID"]),
        ('[[users]]\nupn = "a@b.c"\ndisplay_name = 7\n', ["users[0].display_name", "string"]),
        ("[[apps]]\nname = 'a'\naccess_token_version = 3\n", ["access_token_version", "1, 2"]),
        ("[policies]\ntoken_lifetime = -1\n", ["policies.token_lifetime", "positive"]),
        ("[sign_in]\nauto = 1\n", ["sign_in.auto", "true, false or a UPN"]),
        ("[[consents]]\napp = 'nope'\nscopes = ['x']\n", ["consents[0].app", "no app 'nope'"]),
        ("[[guests]]\nuser = 'a@b.c'\ntenant = 'x.y'\n", ["guests[0].user", "no user"]),
        ("[[tenants]]\nname = 'x'\n", ["tenants[0]", "unknown key 'name'", "domain"]),
        ("apps = 3\n", ["apps", "array of tables"]),
        ("nonsense = true\n", ["unknown key 'nonsense'", "consents"]),
        ("[tenant\n", ["not valid TOML"]),
    ],
)
def test_config_errors_are_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, words: list[str]
) -> None:
    config = tmp_path / "entra.toml"
    config.write_text(toml)
    assert module_main(["--port", "0", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err
    for word in words:
        assert word in err


def test_an_explicit_secret_never_shows_in_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "a-secret-that-must-not-leak-anywhere"
    config = tmp_path / "entra.toml"
    config.write_text(f'[[apps]]\nname = "a"\nclient_secret = "{secret}"\npublic_client = true\n')
    assert module_main(["--port", "0", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "public client" in err
    assert secret not in err


def test_a_foreign_state_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"something": "else"}')
    assert module_main(["--port", "0", "--state", str(state)]) == 2
    assert "unknown key 'something'" in capsys.readouterr().err
    assert os.path.getsize(state) == len('{"something": "else"}')  # left alone


def test_the_documented_config_example_is_valid(tmp_path: Path) -> None:
    """docs/testing.md's TOML example (every key) loads and builds a world."""
    docs = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    section = docs.split("### The config file", 1)[1]
    toml = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.toml").write_text(toml)
    world = complete(load_config(tmp_path / "example.toml"), _new_certificate)
    with EntraEmulator() as entra:
        _populate(entra, world, "docs")
        assert {a.name for a in entra.apps.values()} == {"middle-tier"}
        assert sum(u.is_guest for u in entra.users.values()) == 1


def test_a_busy_port_exits_1_saying_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert module_main(["--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_reprs_of_the_world_show_no_secret_or_key(tmp_path: Path) -> None:
    (tmp_path / "entra.toml").write_text(CONFIG)
    world = complete(load_config(tmp_path / "entra.toml"), _new_certificate)
    secrets = [a.client_secret for a in world.apps]
    secrets += [c.private_key_pem for a in world.apps for c in a.certificate_pems]
    assert all(secrets)
    text = repr(world)
    assert "PRIVATE KEY" not in text
    for secret in secrets:
        assert secret not in text


def test_config_and_state_merge() -> None:
    """The state fills in what it generated for objects the config names again (an
    explicit config value wins); objects only the state knows stay; consents come from
    the config."""
    kept = complete(
        World(
            tenant=TenantDecl(domain="contoso.onmicrosoft.com"),
            apps=(AppDecl(name="api"), AppDecl(name="old")),
            users=(UserDecl(display_name="Ada", upn="ada@contoso.onmicrosoft.com"),),
            consents=(ConsentDecl(app="api", scopes=(GRAPH_USER_READ,)),),
        ),
        _new_certificate,
    )
    declared = World(
        tenant=TenantDecl(domain="contoso.onmicrosoft.com"),
        apps=(AppDecl(name="api", client_secret="explicit-secret-wins"), AppDecl(name="new")),
        users=(UserDecl(display_name="Ada L.", upn="ADA@contoso.onmicrosoft.com"),),
    )
    merged = complete(merge(declared, kept), _new_certificate)

    api, new, old = merged.apps
    assert merged.tenant.id == kept.tenant.id
    assert (api.client_id, api.client_secret) == (kept.apps[0].client_id, "explicit-secret-wins")
    assert new.client_id not in {a.client_id for a in kept.apps}
    assert old == kept.apps[1]
    assert merged.users[0].oid == kept.users[0].oid  # UPNs compare case-insensitively
    assert merged.users[0].display_name == "Ada L."
    assert merged.consents == ()
    assert merge(None, kept) is kept
    assert merge(None, None) is DEFAULT_WORLD
