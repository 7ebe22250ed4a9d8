"""Tests of utils.resilience.pipeline: order, the call forms, flattening, composition."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import pytest

from utils.core import ValidationError, remaining
from utils.core.metrics import InMemorySink
from utils.resilience import (
    Bulkhead,
    Pipeline,
    ResilienceTimeoutError,
    Strategy,
    _timing,
    pipeline,
    retry,
    timeout,
)

P = ParamSpec("P")
R = TypeVar("R")
Logs = list[dict[str, Any]]


class Recorder(Strategy):
    """A strategy that only records when calls go in and out of it."""

    __slots__ = ("journal", "label")

    def __init__(self, label: str, journal: list[str]) -> None:
        self.label = label
        self.journal = journal

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        self.journal.append(f"{self.label}>")
        try:
            return fn(*args, **kwargs)
        finally:
            self.journal.append(f"<{self.label}")

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        self.journal.append(f"{self.label}>")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.journal.append(f"<{self.label}")


EXPECTED = ["a>", "b>", "c>", "fn", "<c", "<b", "<a"]


@pytest.fixture
def journal() -> list[str]:
    return []


@pytest.fixture
def abc(journal: list[str]) -> Pipeline:
    return pipeline(Recorder("a", journal), Recorder("b", journal), Recorder("c", journal))


def test_call_runs_strategies_outermost_first(abc: Pipeline, journal: list[str]) -> None:
    def fn(x: int, *, y: int) -> int:
        journal.append("fn")
        return x + y

    assert abc.call(fn, 1, y=2) == 3
    assert journal == EXPECTED


def test_acall_runs_strategies_outermost_first(abc: Pipeline, journal: list[str]) -> None:
    async def fn(x: int, *, y: int) -> int:
        await asyncio.sleep(0)
        journal.append("fn")
        return x * y

    assert asyncio.run(abc.acall(fn, 3, y=4)) == 12
    assert journal == EXPECTED


def test_sync_decorator_runs_strategies_outermost_first(abc: Pipeline, journal: list[str]) -> None:
    @abc
    def fn(x: int) -> int:
        """Double it."""
        journal.append("fn")
        return 2 * x

    assert fn(5) == 10
    assert journal == EXPECTED
    assert fn.__name__ == "fn"
    assert fn.__doc__ == "Double it."
    journal.clear()
    assert fn(6) == 12  # the chain is built once, reused on every call
    assert journal == EXPECTED


def test_async_decorator_runs_strategies_outermost_first(
    abc: Pipeline, journal: list[str]
) -> None:
    @abc
    async def fn(x: int) -> int:
        journal.append("fn")
        return 2 * x

    assert inspect.iscoroutinefunction(fn)
    assert fn.__name__ == "fn"
    assert asyncio.run(fn(7)) == 14
    assert journal == EXPECTED


def test_exceptions_unwind_through_every_strategy(abc: Pipeline, journal: list[str]) -> None:
    def fn() -> None:
        journal.append("fn")
        raise KeyError("k")

    with pytest.raises(KeyError):
        abc.call(fn)
    assert journal == EXPECTED


def test_nested_pipelines_are_flattened(journal: list[str]) -> None:
    a, b, c, d = (Recorder(label, journal) for label in "abcd")
    outer = pipeline(a, pipeline(b, pipeline(c)), d)
    assert outer.strategies == (a, b, c, d)

    def fn() -> str:
        journal.append("fn")
        return "ok"

    assert outer.call(fn) == "ok"
    assert journal == ["a>", "b>", "c>", "d>", "fn", "<d", "<c", "<b", "<a"]


def test_empty_pipeline_is_transparent() -> None:
    def fn(x: int) -> int:
        return x

    empty = pipeline()
    assert empty.strategies == ()
    assert empty.call(fn, 3) == 3
    assert empty(fn) is fn

    async def afn(x: int) -> int:
        return x

    assert asyncio.run(empty.acall(afn, 4)) == 4


@pytest.mark.parametrize("bad", [None, "retry", 3, lambda fn: fn, retry])
def test_non_strategy_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError, match="pipeline\\(\\) takes resilience strategies"):
        pipeline(timeout(1), bad)


def test_decorating_a_generator_function_is_a_type_error() -> None:
    def rows() -> Iterator[int]:
        yield 1

    async def arows() -> AsyncIterator[int]:
        yield 1

    guarded = pipeline(timeout(2), retry())
    with pytest.raises(TypeError, match=r"pipeline\(timeout\(2\), retry\(\)\) cannot decorate"):
        guarded(rows)
    with pytest.raises(TypeError, match="generator function"):
        guarded(arows)


def test_repr_describes_the_stages() -> None:
    assert repr(pipeline(timeout(2), retry(), Bulkhead(3, name="db"))) == (
        "pipeline(timeout(2), retry(), Bulkhead('db'))"
    )
    assert repr(pipeline()) == "pipeline()"
    assert isinstance(pipeline(timeout(1)), Strategy)


# --------------------------------------------------------------------------- composition


def test_retry_inside_a_sync_timeout_gives_up_at_its_deadline(
    utils_instant_retries: list[float], utils_logs: Logs
) -> None:
    calls: list[float | None] = []

    @pipeline(timeout(5), retry(attempts=10, initial=60, maximum=60, jitter="none"))
    def fetch() -> None:
        calls.append(remaining())
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError) as info:
        fetch()
    assert len(calls) == 1
    assert calls[0] is not None
    assert calls[0] <= 5
    assert utils_instant_retries == []
    assert "(deadline)" in getattr(info.value, "__notes__", [""])[0]
    gave_up = [e for e in utils_logs if e["event"] == "retry.gave_up"]
    assert gave_up[0]["reason"] == "deadline"


def test_retry_inside_an_async_timeout_is_bounded_by_it(
    utils_instant_retries: list[float],
) -> None:
    calls = 0
    cancelled: list[bool] = []

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("reset")
        try:
            await asyncio.Event().wait()  # the second attempt hangs
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"  # pragma: no cover

    guarded = pipeline(timeout(0.05), retry(attempts=5, initial=0.001, on=BaseException))
    with pytest.raises(ResilienceTimeoutError):
        asyncio.run(guarded.acall(fetch))
    assert calls == 2  # the cancellation was not retried
    assert cancelled == [True]
    assert len(utils_instant_retries) == 1

    calls = 0
    with pytest.raises(ResilienceTimeoutError):
        asyncio.run(guarded(fetch)())
    assert calls == 2


def test_a_full_pipeline_on_the_success_path(utils_instant_retries: list[float]) -> None:
    bulkhead = Bulkhead(1, name="db")

    @pipeline(timeout(2), retry(attempts=3), bulkhead)
    def handler(x: int) -> int:
        assert bulkhead.active == 1
        return x + 1

    @pipeline(timeout(2), retry(attempts=3), bulkhead)
    async def ahandler(x: int) -> int:
        assert bulkhead.active == 1
        return x + 2

    assert handler(1) == 2
    assert asyncio.run(ahandler(1)) == 3
    assert bulkhead.active == 0
    assert utils_instant_retries == []


def test_retry_outside_the_bulkhead_releases_the_slot_between_attempts(
    utils_instant_retries: list[float],
) -> None:
    bulkhead = Bulkhead(1)
    seen: list[int] = []
    guarded = pipeline(retry(attempts=3), bulkhead)

    def flaky() -> str:
        seen.append(bulkhead.active)
        if len(seen) < 3:
            raise ConnectionResetError
        return "ok"

    assert guarded.call(flaky) == "ok"
    assert seen == [1, 1, 1]
    assert bulkhead.active == 0
    assert len(utils_instant_retries) == 2


# --------------------------------------------------------------------------- retry + breaker


@pytest.mark.parametrize("limit", ["deadline", "timeout", "max_retry_after"])
def test_retry_gives_up_at_once_when_the_open_breaker_outlasts_its_budget(
    limit: str, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    from utils.core import deadline
    from utils.core.testing import FakeClock
    from utils.resilience import CircuitBreaker, CircuitOpenError

    clock = FakeClock(100.0)
    breaker = CircuitBreaker("payments", fail_max=1, reset_timeout=30, clock=clock)
    breaker.open()  # refuses for 30 s
    options: dict[str, Any] = {"attempts": 5, "jitter": "none", "name": "charge"}
    if limit == "timeout":
        options["timeout"] = 10
    elif limit == "max_retry_after":
        options["max_retry_after"] = 10
    guarded = pipeline(retry(**options), breaker)
    slept: list[float] = []
    _timing.sleep = slept.append  # a sleep would be the bug: the breaker outlasts the budget
    with deadline(10 if limit == "deadline" else None), pytest.raises(CircuitOpenError):
        guarded.call(len, "never runs")
    assert slept == []
    gave_up = [e for e in utils_logs if e["event"] == "retry.gave_up"]
    assert [e["reason"] for e in gave_up] == ["circuit_open"]
    assert utils_metrics.count("retry.gave_up", retry="charge", reason="circuit_open") == 1


def test_retry_waits_for_an_open_breaker_that_reopens_within_its_budget(
    utils_logs: list[dict[str, Any]],
) -> None:
    from utils.core.testing import FakeClock
    from utils.resilience import CircuitBreaker

    clock = FakeClock(100.0)
    breaker = CircuitBreaker("payments", fail_max=1, reset_timeout=3, clock=clock)
    breaker.open()
    _timing.sleep = clock.sleep
    _timing.clock = clock
    assert pipeline(retry(attempts=3, jitter="none"), breaker).call(len, "abc") == 3
    assert clock.sleeps == [pytest.approx(3.0)]  # exactly the breaker's retry_after
    assert breaker.state == "closed"
