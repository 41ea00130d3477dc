"""Start-up checks: configuration that will make OBO fail is said at once, with the fix."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from better_auth import APIError, BetterAuth, MemoryAdapter
from tests._fakes import CLIENT_ID, CLIENT_SECRET, provider

from better_auth_obo import OBOConfigurationWarning, OBOPlugin

SECRET = "s" * 40
APPS = {"graph": {"scope": ["https://graph.microsoft.com/.default"]}}


def build(microsoft: dict[str, Any] | None, applications: Any = APPS) -> OBOPlugin:
    plugin = OBOPlugin(applications=applications)
    providers = {"microsoft": microsoft} if microsoft is not None else {}
    BetterAuth(secret=SECRET, adapter=MemoryAdapter(), social_providers=providers, plugins=[plugin])
    return plugin


def test_clean_configuration_warns_nothing() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(provider())


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers"])
def test_multi_tenant_authority_warns(tenant: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.warns(OBOConfigurationWarning, match=tenant):
        build(provider(tenant_id=tenant))
    assert "GUID" in caplog.text


def test_default_scopes_warn_about_graph_audience() -> None:
    config = provider()
    del config["scopes"]  # the host's default: openid profile email User.Read offline_access
    with pytest.warns(OBOConfigurationWarning) as record:
        build(config)
    text = " ".join(str(w.message) for w in record)
    assert "User.Read" in text or "Graph" in text
    assert f"{CLIENT_ID}/" in text


def test_api_self_scope_warns_about_aadsts90009() -> None:
    scopes = ["openid", "offline_access", f"api://{CLIENT_ID}/access_as_user"]
    with pytest.warns(OBOConfigurationWarning, match="90009"):
        build(provider(scopes=scopes))


def test_application_spanning_two_resources_warns() -> None:
    apps = {"mixed": {"scope": ["https://graph.microsoft.com/User.Read", "api://other/read"]}}
    with pytest.warns(OBOConfigurationWarning, match="mixed"):
        build(provider(), applications=apps)


async def test_missing_provider_warns_then_refuses() -> None:
    with pytest.warns(OBOConfigurationWarning, match="No Microsoft provider"):
        plugin = build(None)
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id="u1", application_name="graph")
    assert (info.value.status, info.value.code) == (500, "MISSING_CREDENTIALS")


async def test_public_client_warns_then_refuses() -> None:
    with pytest.warns(OBOConfigurationWarning, match="confidential"):
        plugin = build(provider(client_secret=""))
    with pytest.raises(APIError) as info:
        await plugin.get_obo_token(user_id="u1", application_name="graph")
    assert info.value.code == "MISSING_CREDENTIALS"


def test_reprs_and_warnings_never_show_the_secret(recwarn: pytest.WarningsRecorder) -> None:
    plugin = build(provider(tenant_id="common"))
    assert CLIENT_SECRET not in repr(plugin._settings)
    assert all(CLIENT_SECRET not in str(w.message) for w in recwarn)


@pytest.mark.parametrize(
    ("user_id", "application", "error"),
    [
        (None, "graph", TypeError),
        (["u"], "graph", TypeError),
        ("u", ["graph"], TypeError),
        ("", "graph", ValueError),
        ("x" * 10_000, "graph", ValueError),
    ],
)
async def test_bad_arguments_say_what_is_wrong(
    user_id: Any, application: Any, error: type[Exception]
) -> None:
    plugin = build(provider())
    with pytest.raises(error, match=r"user_id|application_name"):
        await plugin.get_obo_token(user_id=user_id, application_name=application)


async def test_plugin_used_before_init_says_so() -> None:
    plugin = OBOPlugin(applications=APPS)
    with pytest.raises(RuntimeError, match="plugins="):
        await plugin.revoke_obo_tokens("u1")


def test_id_token_sign_in_is_said_with_what_is_checked(caplog: pytest.LogCaptureFixture) -> None:
    """The host's default lets clients store any access token; say it is verified, and how
    to turn that sign-in off. A log line, not a warning category: it is not a fault."""
    import warnings

    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")
        build(provider())
    (notice,) = [r.getMessage() for r in caplog.records if "ID-token sign-in" in r.getMessage()]
    assert "disable_id_token_sign_in=True" in notice
    assert all(check in notice for check in ("signature", "issuer", "audience", "tenant", "oid"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build(provider(disable_id_token_sign_in=True))
    assert "ID-token sign-in" not in caplog.text
