from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import utils.core.transient as transient_module
from utils.core import (
    NotFoundError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UtilsError,
    ValidationError,
    is_transient,
    register_transient_classifier,
    unregister_transient_classifier,
)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    saved = list(transient_module._registered)
    transient_module._from_entry_points = None
    transient_module._reported.clear()
    yield
    transient_module._registered[:] = saved
    transient_module._from_entry_points = None


class DriverError(Exception):
    pass


def test_utils_errors_answer_with_retryable() -> None:
    assert is_transient(TransientError("x"))
    assert is_transient(UnavailableError("x"))
    assert is_transient(ThrottledError("x"))
    assert not is_transient(NotFoundError("x"))
    assert is_transient(NotFoundError("x", retryable=True))
    assert not is_transient(TransientError("x", retryable=False))


def test_base_exceptions_are_never_transient() -> None:
    assert not is_transient(KeyboardInterrupt())
    assert not is_transient(asyncio.CancelledError())
    assert not is_transient(SystemExit(1))


def test_stdlib_network_errors_are_transient() -> None:
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError())
    assert not is_transient(DriverError())


def test_runtime_classifier_first_definite_answer_wins() -> None:
    calls: list[str] = []

    def no_opinion(exc: BaseException) -> bool | None:
        calls.append("no_opinion")
        return None

    def driver(exc: BaseException) -> bool | None:
        calls.append("driver")
        return True if isinstance(exc, DriverError) else None

    def veto(exc: BaseException) -> bool | None:
        calls.append("veto")
        return False

    register_transient_classifier(no_opinion)
    register_transient_classifier(driver)
    register_transient_classifier(veto)
    assert is_transient(DriverError())
    assert calls == ["no_opinion", "driver"]
    assert not is_transient(ConnectionResetError())  # veto beats the stdlib default
    unregister_transient_classifier(veto)
    unregister_transient_classifier(veto)  # idempotent
    assert is_transient(ConnectionResetError())


def test_classifier_that_raises_is_logged_once_and_ignored(
    utils_logs: list[dict[str, Any]],
) -> None:
    @register_transient_classifier
    def broken(exc: BaseException) -> bool | None:
        raise RuntimeError("bug in classifier")

    assert is_transient(ConnectionError())
    assert not is_transient(ValueError())
    failures = [e for e in utils_logs if e["event"] == "transient.classifier_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "warning"
    assert "bug in classifier" in failures[0]["error"]


def test_non_callable_classifier_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must be callable"):
        register_transient_classifier("nope")  # type: ignore[arg-type]


def test_entry_point_classifiers_are_loaded_once(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-fakedriver",
        {"utils.transient": {"fakedriver": "fakedriver_transient:classify"}},
        module="fakedriver_transient",
        module_source="""
            LOADS = []
            LOADS.append(1)
            def classify(exc):
                return True if type(exc).__name__ == "DriverError" else None
        """,
    )
    assert is_transient(DriverError())
    assert not is_transient(ValueError())
    import fakedriver_transient  # type: ignore[import-not-found]

    assert fakedriver_transient.LOADS == [1]


def test_broken_entry_point_does_not_break_classification(
    fake_distribution: Any, utils_logs: list[dict[str, Any]]
) -> None:
    fake_distribution(
        "utils-broken",
        {"utils.transient": {"broken": "broken_transient:classify"}},
        module="broken_transient",
        module_source="raise ImportError('missing driver')",
    )
    assert is_transient(ConnectionError())
    assert any(entry["event"] == "plugins.load_failed" for entry in utils_logs)


def test_utils_error_subclass_defaults() -> None:
    class Busy(UtilsError):
        default_retryable = True

    assert is_transient(Busy("x"))


# --- the built-in redis-py classifier --------------------------------------------------------


@pytest.fixture
def no_entry_points() -> None:
    """No ``utils.transient`` entry point at all: only what utils-core itself knows."""
    transient_module._from_entry_points = []


@pytest.mark.usefixtures("no_entry_points")
def test_builtin_redis_classifier_needs_no_entry_point() -> None:
    import redis
    import redis.exceptions as rex

    assert is_transient(redis.ConnectionError())
    assert is_transient(redis.TimeoutError())
    assert is_transient(rex.BusyLoadingError())
    assert is_transient(rex.ReadOnlyError("READONLY"))
    assert is_transient(rex.WatchError())
    assert not is_transient(rex.OutOfMemoryError("OOM"))
    assert not is_transient(rex.NoPermissionError("NOPERM"))
    assert not is_transient(rex.AuthenticationError("WRONGPASS"))  # a ConnectionError, yet no
    assert not is_transient(rex.ResponseError("WRONGTYPE"))
    assert not is_transient(rex.NoScriptError("NOSCRIPT"))
    assert not is_transient(rex.DataError())


@pytest.mark.usefixtures("no_entry_points")
def test_builtin_redis_classifier_ignores_other_modules() -> None:
    assert transient_module._builtin(ValueError()) is None
    assert transient_module._builtin(ConnectionResetError()) is None

    class RedisLookalike(Exception):
        pass

    RedisLookalike.__module__ = "redisearch_client"  # a prefix, not the redis package
    assert transient_module._builtin(RedisLookalike()) is None
    assert not is_transient(RedisLookalike())


@pytest.mark.usefixtures("no_entry_points")
def test_a_registered_classifier_still_wins_over_the_builtin_one() -> None:
    import redis

    @register_transient_classifier
    def never(exc: BaseException) -> bool | None:
        return False

    assert not is_transient(redis.ConnectionError())


def _python(code: str, env: dict[str, str] | None = None) -> None:
    import os
    import subprocess
    import sys
    import textwrap

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr


def test_import_utils_core_does_not_import_redis() -> None:
    _python(
        """
        import sys
        import utils.core
        import utils.core.transient

        def loaded():
            return [m for m in sys.modules if m in ("redis", "utils.core.redis")]

        assert not loaded(), loaded()
        # Only utils-core's own classifiers (installed siblings may still ship entry
        # points that import their driver).
        utils.core.transient._from_entry_points = []
        assert utils.core.is_transient(ConnectionResetError())
        assert not utils.core.is_transient(ValueError())
        assert not loaded(), loaded()
        """
    )


def test_the_redis_layer_is_imported_only_for_a_redis_error() -> None:
    _python(
        """
        import sys
        import redis
        import utils.core.transient
        from utils.core import is_transient

        utils.core.transient._from_entry_points = []
        assert "utils.core.redis" not in sys.modules
        assert is_transient(redis.ConnectionError("refused"))
        assert "utils.core.redis" in sys.modules
        """
    )


def test_a_redis_too_old_for_the_redis_layer_gets_no_opinion(tmp_path: Path) -> None:
    # An application may have any redis-py (utils-core does not depend on it): one without
    # redis.asyncio cannot load utils.core.redis, and is_transient must still answer.
    package = tmp_path / "redis"
    package.mkdir()
    (package / "__init__.py").write_text("from redis.exceptions import ConnectionError\n")
    (package / "exceptions.py").write_text("class ConnectionError(Exception):\n    pass\n")
    _python(
        """
        import redis
        import utils.core.transient
        from utils.core import is_transient

        utils.core.transient._from_entry_points = []
        assert not hasattr(redis, "asyncio")
        assert is_transient(redis.ConnectionError("refused")) is False  # no crash
        """,
        env={"PYTHONPATH": str(tmp_path)},
    )
