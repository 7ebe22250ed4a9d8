"""register_check and the concurrent runner: kinds, timeouts, hung checks, redaction, draining."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import ValidationError, remaining
from utils.core import health as health_module
from utils.core.health import (
    MAX_DETAIL,
    CheckResult,
    arun_checks,
    is_draining,
    iter_checks,
    mark_draining,
    register_check,
    run_checks,
    unregister_check,
)
from utils.core.testing import wait_until


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    before = dict(health_module._state.checks)
    yield
    health_module._state.checks = before
    mark_draining(False)


def _no_check_running() -> bool:
    return not health_module._state.running


# -- registration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "check name must be 1 to 64 letters"),
        ({"name": "has space"}, "got 'has space'"),
        ({"name": "-leading"}, "starting with a letter or digit"),
        ({"name": "x" * 65}, "1 to 64"),
        ({"name": 3}, "got 3"),
        ({"fn": "not callable"}, "must be a callable taking no arguments"),
        ({"kind": "ready"}, "kind must be one of 'liveness', 'readiness', 'startup'"),
        ({"timeout": 0}, "timeout must be seconds > 0"),
        ({"timeout": -1}, "timeout must be seconds > 0"),
        ({"timeout": True}, "timeout must be seconds (a number) or a timedelta"),
        ({"timeout": math.inf}, "it cannot be unlimited"),
        ({"timeout": math.nan}, "timeout must be seconds > 0"),
        ({"replace": 1}, "replace must be True or False"),
    ],
)
def test_register_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "ok", "fn": lambda: None, **kwargs}
    with pytest.raises(ValidationError) as caught:
        register_check(arguments.pop("name"), arguments.pop("fn"), **arguments)
    assert message in str(caught.value)
    assert "ok" not in health_module._state.checks


def test_register_replace_and_unregister() -> None:
    register_check("db", lambda: "first", timeout=timedelta(milliseconds=500))
    with pytest.raises(ValidationError, match="already registered"):
        register_check("db", lambda: "second")
    register_check("db", lambda: "second", replace=True)
    assert [r.detail for r in run_checks(["db"])] == ["second"]
    assert health_module._state.checks["db"].timeout == 1.0
    assert unregister_check("db") is True
    assert unregister_check("db") is False
    assert run_checks(["db"])[0].detail == "no such check installed"


@given(st.text(max_size=70))
def test_names_follow_one_rule(name: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")
    valid = 1 <= len(name) <= 64 and set(name) <= allowed and name[0] not in "_.:-"
    try:
        register_check(name, lambda: None, kind="startup")
    except ValidationError:
        assert not valid
    else:
        assert valid
        assert unregister_check(name)


# -- outcomes ------------------------------------------------------------------------------


def test_outcomes_and_details() -> None:
    register_check("none", lambda: None)
    register_check("true", lambda: True)
    register_check("false", lambda: False)
    register_check("text", lambda: "3 jobs\nwaiting")
    register_check("raises", _raise(ConnectionError("refused")))
    register_check("bare", _raise(RuntimeError()))
    register_check("exits", _raise(SystemExit(3)))
    results = {
        r.name: r for r in run_checks(["none", "true", "false", "text", "raises", "bare", "exits"])
    }
    assert results["none"] == CheckResult("none", True, "", results["none"].seconds, "readiness")
    assert (results["true"].ok, results["true"].detail) == (True, "")
    assert (results["false"].ok, results["false"].detail) == (False, "check returned False")
    assert results["text"].detail == "3 jobs waiting"  # one line
    assert results["raises"].detail == "ConnectionError: refused"
    assert results["bare"].detail == "RuntimeError"
    assert results["exits"].detail == "SystemExit: 3"
    assert results["raises"].as_dict() == {
        "name": "raises",
        "ok": False,
        "detail": "ConnectionError: refused",
        "seconds": results["raises"].seconds,
        "kind": "readiness",
    }


def _raise(exc: BaseException) -> Any:
    def check() -> None:
        raise exc

    return check


def test_details_are_redacted_and_short() -> None:
    register_check("dsn", _raise(ConnectionError("cannot reach postgresql://app:hunter2@db/x")))
    register_check("token", lambda: "ok with api_key=abc123secret")
    register_check("long", lambda: "x" * 1000)
    results = {r.name: r for r in run_checks(["dsn", "token", "long"])}
    assert "hunter2" not in results["dsn"].detail
    assert "app:***@db" in results["dsn"].detail
    assert "abc123secret" not in results["token"].detail
    assert len(results["long"].detail) == MAX_DETAIL
    assert results["long"].detail.endswith("...")


@given(password=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=30))
def test_a_password_in_a_dsn_never_reaches_a_detail(password: str) -> None:
    register_check(
        "dsn",
        _raise(OSError(f"connect failed: postgresql://app:{password}@db.internal:5432/x")),
        replace=True,
    )
    [result] = run_checks(["dsn"])
    assert password not in result.detail
    assert len(result.detail) <= MAX_DETAIL


def test_each_check_runs_under_a_deadline_of_its_timeout() -> None:
    register_check("sees", lambda: f"{remaining():.1f}", timeout=0.5)
    assert run_checks(["sees"])[0].detail == "0.5"


# -- concurrency and timeouts ----------------------------------------------------------------


def test_sync_checks_run_concurrently() -> None:
    # Each waits for the other to have started: run one after the other, both would time out.
    barrier = threading.Barrier(3)
    register_check("a", lambda: barrier.wait(5) >= 0, timeout=5)
    register_check("b", lambda: barrier.wait(5) >= 0, timeout=5)
    register_check("c", lambda: barrier.wait(5) >= 0, timeout=5)
    assert [(r.name, r.ok) for r in run_checks(["a", "b", "c"])] == [
        ("a", True),
        ("b", True),
        ("c", True),
    ]


def test_a_hung_sync_check_fails_in_time_and_is_not_started_twice() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hung() -> str:
        calls.append(1)
        release.wait(30)
        return "late"

    register_check("hung", hung, timeout=0.05)
    register_check("fine", lambda: "ok")
    try:
        results = {r.name: r for r in run_checks(["hung", "fine"])}
        assert not release.is_set()  # the run returned while the check is still blocked
        assert results["hung"].detail == "TimeoutError: timed out after 0.05 s"
        assert results["hung"].seconds >= 0.05
        assert results["fine"].ok
        # A second run while the first thread is still stuck: answered at once, no new thread.
        [again] = run_checks(["hung"])
        assert again.detail == "still running from an earlier run (hung?): not started again"
        assert calls == [1]
    finally:
        release.set()
    wait_until(_no_check_running, message="the hung check's thread to finish")
    assert run_checks(["hung"])[0].detail == "late"  # released: a new thread runs it
    assert calls == [1, 1]


def test_iter_checks_yields_in_completion_order() -> None:
    release = threading.Event()
    register_check("slow", lambda: release.wait(5), timeout=5)
    register_check("quick", lambda: "first")
    results = iter_checks(["slow", "quick"])
    first = next(results)
    assert first.name == "quick"
    release.set()
    assert [r.name for r in results] == ["slow"]


def test_async_checks_run_concurrently_and_time_out() -> None:
    async def scenario() -> list[CheckResult]:
        a_started, b_started = asyncio.Event(), asyncio.Event()

        async def a() -> str:
            a_started.set()
            await b_started.wait()
            return "a"

        async def b() -> str:
            b_started.set()
            await a_started.wait()
            return "b"

        async def never() -> None:
            await asyncio.Event().wait()

        register_check("a", a, timeout=5)
        register_check("b", b, timeout=5)
        register_check("never", never, timeout=0.05)
        return await arun_checks(["never", "a", "b"])

    never, a, b = asyncio.run(scenario())
    assert (a.detail, b.detail) == ("a", "b")
    assert (never.name, never.ok) == ("never", False)
    assert never.detail == "TimeoutError: timed out after 0.05 s"


def test_a_hung_sync_check_does_not_block_the_event_loop() -> None:
    release = threading.Event()
    register_check("hung", lambda: release.wait(30), timeout=0.05)

    async def ok() -> str:
        return "pong"

    register_check("ok", ok)
    register_check("sync-ok", lambda: "fine")
    register_check("sync-fails", _raise(ConnectionError("refused")))
    try:
        results = asyncio.run(arun_checks(["hung", "ok", "sync-ok", "sync-fails"]))
    finally:
        release.set()
    assert [(r.name, r.ok, r.detail) for r in results] == [
        ("hung", False, "TimeoutError: timed out after 0.05 s"),
        ("ok", True, "pong"),
        ("sync-ok", True, "fine"),
        ("sync-fails", False, "ConnectionError: refused"),
    ]
    wait_until(_no_check_running)


def test_async_checks_outside_an_event_loop_and_awaitables_from_sync_callables() -> None:
    async def pong() -> str:
        return "pong"

    class Callable:
        async def __call__(self) -> str:
            return "called"

    register_check("async", pong)
    register_check("object", Callable())
    register_check("returns-awaitable", lambda: pong())  # noqa: PLW0108 - sync, returns one
    assert health_module._state.checks["object"].is_async
    assert [r.detail for r in run_checks(["async", "object", "returns-awaitable"])] == [
        "pong",
        "called",
        "pong",
    ]

    async def failing() -> None:
        raise ConnectionError("refused")

    register_check("failing", failing)
    assert asyncio.run(arun_checks(["failing"]))[0].detail == "ConnectionError: refused"


def test_a_result_that_lands_after_its_loop_closed_is_dropped() -> None:
    release = threading.Event()
    register_check("hung", lambda: release.wait(30), timeout=0.05)
    asyncio.run(arun_checks(["hung"]))  # the loop is closed when the thread reports
    release.set()
    wait_until(_no_check_running)


# -- kinds ---------------------------------------------------------------------------------


def test_kinds_never_mix() -> None:
    ran: list[str] = []
    register_check("db", lambda: ran.append("db"), kind="readiness")
    register_check("loop", lambda: ran.append("loop"), kind="liveness")
    register_check("warm", lambda: ran.append("warm"), kind="startup")
    assert [r.name for r in run_checks(kind="liveness")] == ["loop"]
    assert ran == ["loop"]  # liveness never runs a readiness check
    assert [r.name for r in run_checks(kind="startup")] == ["warm"]
    readiness = [r.name for r in run_checks(kind="readiness")]
    assert "db" in readiness
    assert {"loop", "warm", "python", "plugins"}.isdisjoint(readiness)
    everything = [r.name for r in run_checks()]
    assert {"db", "loop", "warm", "python", "plugins"} <= set(everything)
    assert [r.kind for r in run_checks(["loop", "warm"])] == ["liveness", "startup"]


def test_asking_for_a_check_of_another_kind_says_so() -> None:
    register_check("db", lambda: None, kind="readiness")
    [wrong_kind] = run_checks(["db"], kind="liveness")
    assert (wrong_kind.ok, wrong_kind.detail) == (False, "a readiness check, not liveness")
    [doctor_only] = run_checks(["python"], kind="readiness")
    assert doctor_only.detail == "an entry-point check of utils doctor, not a readiness check"
    [missing] = run_checks(["nope"], kind="startup")
    assert missing.detail == "no startup check of that name is registered"
    assert len(run_checks(["db", "db"])) == 1  # asked twice, run once


def test_kind_and_timeout_of_a_run_are_validated() -> None:
    with pytest.raises(ValidationError, match="kind must be one of"):
        run_checks(kind="alive")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timeout"):
        run_checks(timeout=0)


def test_registered_check_replaces_an_entry_point_of_its_name(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-envcheck",
        {"utils.health": {"cache": "envcheck_mod:check"}},
        module="envcheck_mod",
        module_source="def check(): return 'from the environment'",
    )
    assert run_checks(["cache"])[0].detail == "from the environment"
    assert run_checks(["cache"], kind="readiness")[0].kind == "readiness"
    register_check("cache", lambda: "the app's own client")
    assert run_checks(["cache"], kind="readiness")[0].detail == "the app's own client"


# -- draining ------------------------------------------------------------------------------


def test_draining_fails_readiness_only() -> None:
    ran: list[str] = []
    register_check("db", lambda: ran.append("db"))
    register_check("loop", lambda: None, kind="liveness")
    mark_draining()
    assert is_draining()
    [result] = run_checks(kind="readiness")
    assert (result.name, result.ok) == ("draining", False)
    assert ran == []
    assert run_checks(kind="liveness")[0].ok
    with pytest.raises(ValidationError):
        mark_draining("yes")  # type: ignore[arg-type]
    mark_draining(False)
    assert all(r.ok for r in run_checks(["db"], kind="readiness"))


def test_fork_resets_the_running_table() -> None:
    health_module._state.running[("x", 1)] = print
    health_module._state._after_fork()
    assert health_module._state.running == {}
