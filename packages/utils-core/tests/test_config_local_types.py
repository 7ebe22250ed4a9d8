"""Settings classes defined inside functions, with postponed annotations (a regression).

This module must keep ``from __future__ import annotations`` and must not import, at module
level, the types the tests below import locally: that is the situation under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from utils.core import ConfigError, Settings


def test_local_imports_resolve_in_a_function() -> None:
    import enum
    from datetime import timedelta
    from pathlib import Path

    from utils.core import Secret

    class Mode(enum.Enum):
        FAST = "fast"
        SAFE = "safe"

    class Local(Settings, env_prefix="LOCAL_"):
        home: Path
        mode: Mode = Mode.SAFE
        timeout: timedelta | None = None
        password: Secret | None = None

    settings = Local.from_env({"LOCAL_HOME": "/srv", "LOCAL_MODE": "fast", "LOCAL_TIMEOUT": "2s"})
    assert settings.home == Path("/srv")
    assert settings.mode is Mode.FAST
    assert settings.timeout == timedelta(seconds=2)


def test_local_aliases_shadow_nothing_at_module_level() -> None:
    from pathlib import Path as Where

    class Aliased(Settings, env_prefix="ALIASED_"):
        where: Where

    assert Aliased.from_env({"ALIASED_WHERE": "/tmp"}).where == Where("/tmp")


def test_subclass_with_its_own_init_subclass_still_resolves() -> None:
    from pathlib import Path

    class Base(Settings):
        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)

    class Child(Base, env_prefix="CHILD_"):
        p: Path

    assert Child.from_env({"CHILD_P": "/x"}).p == Path("/x")


def test_a_truly_unknown_name_is_still_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be resolved"):

        class Broken(Settings, env_prefix="B_"):
            p: NoSuchType  # type: ignore[name-defined]  # noqa: F821
