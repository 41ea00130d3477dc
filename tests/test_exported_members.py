import types

import better_auth_obo


def test_all_is_sorted_and_complete() -> None:
    exported = better_auth_obo.__all__
    # ruff's RUF022 order: constants, then classes, then the rest, each alphabetical
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    public = {
        name
        for name, value in vars(better_auth_obo).items()
        if name.isidentifier()
        and not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(exported) == public
