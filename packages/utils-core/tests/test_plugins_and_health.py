from __future__ import annotations

from typing import Any

import pytest

from utils.core import plugins
from utils.core.health import CheckResult, plugins_import, python_runtime, run_checks
from utils.core.plugins import PluginError


def test_names_imports_nothing(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-never-imported",
        {"utils.demo": {"zeta": "never_imported_mod:x", "alpha": "never_imported_mod:y"}},
        module="never_imported_mod",
        module_source="raise RuntimeError('imported!')",
    )
    assert plugins.names("utils.demo") == ["alpha", "zeta"]


def test_load_returns_objects_and_isolates_broken_plugins(
    fake_distribution: Any, utils_logs: list[dict[str, Any]]
) -> None:
    fake_distribution(
        "utils-good",
        {"utils.demo": {"good": "good_plugin_mod:VALUE"}},
        module="good_plugin_mod",
        module_source="VALUE = 42",
    )
    fake_distribution(
        "utils-bad",
        {"utils.demo": {"bad": "bad_plugin_mod:VALUE"}},
        module="bad_plugin_mod",
        module_source="raise ImportError('no driver here')",
    )
    assert plugins.load("utils.demo") == {"good": 42}
    [failure] = [e for e in utils_logs if e["event"] == "plugins.load_failed"]
    assert failure["plugin"] == "bad"
    assert failure["distribution"] == "utils-bad"
    assert failure["group"] == "utils.demo"
    assert "no driver here" in failure["error"]


def test_two_plugins_with_one_name_is_a_clear_error(fake_distribution: Any) -> None:
    fake_distribution("utils-one", {"utils.demo": {"same": "mod_one:x"}})
    fake_distribution("utils-two", {"utils.demo": {"same": "mod_two:x"}})
    with pytest.raises(PluginError) as caught:
        plugins.load("utils.demo")
    message = str(caught.value)
    assert "two plugins named 'same'" in message
    assert "utils-one" in message
    assert "utils-two" in message
    assert caught.value.code == "plugin_conflict"


def test_builtin_checks() -> None:
    assert python_runtime()
    assert plugins_import().endswith("plugins import")
    results = run_checks()
    names = [result.name for result in results]
    assert {"python", "plugins"} <= set(names)
    assert all(result.ok for result in results)


def test_checks_pass_fail_async_and_missing(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-checks",
        {
            "utils.health": {
                "returns_none": "checks_mod:returns_none",
                "returns_false": "checks_mod:returns_false",
                "raises": "checks_mod:raises",
                "async_ok": "checks_mod:async_ok",
                "async_slow": "checks_mod:async_slow",
                "sees_deadline": "checks_mod:sees_deadline",
            }
        },
        module="checks_mod",
        module_source="""
            import asyncio
            from utils.core import remaining
            def returns_none(): return None
            def returns_false(): return False
            def raises(): raise ConnectionError("refused")
            async def async_ok(): return "pong"
            async def async_slow(): await asyncio.Event().wait()
            def sees_deadline(): return f"{remaining():.0f}"
        """,
    )
    results = {
        r.name: r
        for r in run_checks(
            [
                "returns_none",
                "returns_false",
                "raises",
                "async_ok",
                "async_slow",
                "sees_deadline",
                "not_installed",
            ],
            timeout=0.05,
        )
    }
    assert results["returns_none"] == CheckResult(
        "returns_none", True, "", results["returns_none"].seconds
    )
    assert not results["returns_false"].ok
    assert results["raises"].detail == "ConnectionError: refused"
    assert results["async_ok"].detail == "pong"
    assert not results["async_slow"].ok
    assert "Timeout" in results["async_slow"].detail
    assert results["sees_deadline"].detail == "0"
    assert results["not_installed"].detail == "no such check installed"
    assert results["raises"].as_dict()["ok"] is False


def test_check_that_fails_to_import_is_reported(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-brokencheck",
        {"utils.health": {"broken": "brokencheck_mod:check"}},
        module="brokencheck_mod",
        module_source="raise ImportError('nope')",
    )
    [result] = run_checks(["broken"])
    assert not result.ok
    assert result.detail == "failed to import"


def test_plugins_import_check_fails_on_a_broken_cli_plugin(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-brokencli",
        {"utils.cli": {"broken": "brokencli_mod:app"}},
        module="brokencli_mod",
        module_source="raise ImportError('nope')",
    )
    with pytest.raises(RuntimeError, match=r"utils\.cli:broken"):
        plugins_import()
