import json
import subprocess
import sys
import types

import better_auth_obo


def test_all_is_sorted_and_complete() -> None:
    exported = better_auth_obo.__all__
    # ruff's RUF022 order: constants, then classes, then the rest, each alphabetical
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert set(exported) <= set(dir(better_auth_obo))
    # names are imported on first use: resolve them all, then nothing else may be public
    for name in exported:
        getattr(better_auth_obo, name)
    public = {
        name
        for name, value in vars(better_auth_obo).items()
        if name.isidentifier()
        and not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(exported) == public


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(better_auth_obo, "OBOPlugins")


def test_importing_the_package_loads_no_plugin_or_better_auth() -> None:
    """``better-auth-obo emulator`` and ``python -m better_auth_obo.testing`` import the
    package first; it must stay cheap (the emulator starts in under a second)."""
    code = "import json, sys, better_auth_obo._cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    heavy = {"better_auth", "httpx", "better_auth_obo._plugin", "better_auth_obo._credentials"}
    assert not loaded & heavy
