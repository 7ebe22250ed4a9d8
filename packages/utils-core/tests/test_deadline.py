"""Tests of utils.core.deadline: the ambient, context-variable deadline."""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import math
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import ModuleType
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import (
    OperationTimeoutError,
    ValidationError,
    check_deadline,
    clamp_timeout,
    deadline,
    deadline_at,
    remaining,
    with_current_context,
)
from utils.core.validate import MAX_SECONDS

# `utils.core.deadline` the attribute is the class; the module has to be looked up by name.
DEADLINE_MODULE: ModuleType = importlib.import_module("utils.core.deadline")


class FakeTime:
    """Stands in for the ``time`` module inside utils.core.deadline: a hand-driven clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(DEADLINE_MODULE, "time", fake)
    return fake


@pytest.fixture(autouse=True)
def _no_deadline_leaks() -> Iterator[None]:
    assert remaining() is None
    yield
    assert remaining() is None


def run_in_thread(target: Callable[[], None]) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


# --- basics ----------------------------------------------------------------------------------


def test_no_deadline() -> None:
    assert remaining() is None
    assert clamp_timeout(3.0) == 3.0
    assert clamp_timeout(None) is None
    check_deadline("anything")  # does not raise


def test_deadline_with_real_clock() -> None:
    with deadline(5):
        left = remaining()
        assert left is not None
        assert 0 < left <= 5
    assert remaining() is None


def test_deadline_with_fake_clock_is_exact(clock: FakeTime) -> None:
    with deadline(5):
        assert remaining() == 5.0
        clock.now += 2
        assert remaining() == 3.0
        clock.now += 10
        assert remaining() == 0.0  # never negative
    assert remaining() is None


def test_enter_returns_the_deadline_object() -> None:
    budget = deadline(100)
    with budget as entered:
        assert entered is budget


def test_timedelta_budget(clock: FakeTime) -> None:
    with deadline(timedelta(minutes=2, milliseconds=500)):
        assert remaining() == 120.5


def test_none_is_a_no_op(clock: FakeTime) -> None:
    with deadline(None):
        assert remaining() is None
    with deadline(10), deadline(None):
        assert remaining() == 10.0


def test_infinite_budget_means_no_deadline(clock: FakeTime) -> None:
    with deadline(math.inf):
        assert remaining() is None
    with deadline(10), deadline(math.inf):  # and never extends an outer one
        assert remaining() == 10.0


@pytest.mark.parametrize("seconds", [-1, -0.001, float("nan"), -math.inf, timedelta(seconds=-1)])
def test_negative_or_nan_is_a_validation_error(seconds: float | timedelta) -> None:
    with pytest.raises(ValidationError, match="deadline must be seconds >= 0") as info:
        deadline(seconds)
    assert info.value.details == {"name": "deadline", "value": repr(seconds)}
    assert remaining() is None


# --- nesting and restoring -------------------------------------------------------------------


def test_nested_shorter_deadline_wins(clock: FakeTime) -> None:
    with deadline(100):
        with deadline(10):
            assert remaining() == 10.0
        assert remaining() == 100.0


def test_nested_longer_deadline_cannot_extend(clock: FakeTime) -> None:
    with deadline(10):
        clock.now += 4
        with deadline(60):
            assert remaining() == 6.0
        assert remaining() == 6.0


@given(
    outer=st.floats(min_value=0, max_value=1e6),
    inner=st.floats(min_value=0, max_value=1e6),
    elapsed=st.floats(min_value=0, max_value=1e6),
)
def test_nested_takes_the_earlier_deadline_property(
    outer: float, inner: float, elapsed: float
) -> None:
    fake = FakeTime()
    with mock.patch.object(DEADLINE_MODULE, "time", fake), deadline(outer):
        fake.now += elapsed
        with deadline(inner):
            expected_at = min(1000.0 + outer, 1000.0 + elapsed + inner)
            expected = max(expected_at - fake.now, 0.0)
            assert remaining() == expected
        assert remaining() == max(1000.0 + outer - fake.now, 0.0)
    assert remaining() is None


def test_restored_after_an_exception(clock: FakeTime) -> None:
    with pytest.raises(RuntimeError, match="boom"), deadline(100):
        raise RuntimeError("boom")
    assert remaining() is None
    with deadline(50):
        with pytest.raises(RuntimeError), deadline(5):
            raise RuntimeError("inner")
        assert remaining() == 50.0
    assert remaining() is None


def test_deadline_object_is_reusable(clock: FakeTime) -> None:
    budget = deadline(10)
    with budget:
        assert remaining() == 10.0
    clock.now += 100
    with budget:
        assert remaining() == 10.0  # each `with` computes its own deadline
    assert remaining() is None


# --- expiry ----------------------------------------------------------------------------------


def test_zero_budget_is_already_expired() -> None:
    with deadline(0):
        assert remaining() == 0.0
        with pytest.raises(OperationTimeoutError, match="x") as info:
            check_deadline("x")
    error = info.value
    assert str(error) == "deadline exceeded before x"
    assert error.details == {"operation": "x"}
    assert error.code == "timeout"
    assert error.retryable is False


def test_check_deadline_default_operation() -> None:
    with deadline(0), pytest.raises(OperationTimeoutError, match="before the operation"):
        check_deadline()


def test_check_deadline_passes_while_time_is_left(clock: FakeTime) -> None:
    with deadline(1):
        check_deadline("step 1")
        clock.now += 0.999
        check_deadline("step 2")
        clock.now += 0.001
        with pytest.raises(OperationTimeoutError, match="step 3"):
            check_deadline("step 3")


# --- clamp_timeout ---------------------------------------------------------------------------


def test_clamp_timeout_branches(clock: FakeTime) -> None:
    assert clamp_timeout(30.0) == 30.0  # no deadline: unchanged
    assert clamp_timeout(None) is None
    with deadline(10):
        assert clamp_timeout(None) == 10.0  # no timeout: the remaining time
        assert clamp_timeout(3.0) == 3.0  # timeout shorter than the deadline
        assert clamp_timeout(30.0) == 10.0  # deadline shorter than the timeout
        assert clamp_timeout(10.0) == 10.0
        clock.now += 20
        # Spent: a timeout of 0 means "no timeout" or "non-blocking" to many clients.
        with pytest.raises(OperationTimeoutError, match="before GET /prices") as caught:
            clamp_timeout(30.0, "GET /prices")
        assert caught.value.details == {"operation": "GET /prices"}
        with pytest.raises(OperationTimeoutError, match="before the operation"):
            clamp_timeout(None)


@given(
    timeout=st.none() | st.floats(min_value=0, max_value=1e9),
    budget=st.floats(min_value=0, max_value=MAX_SECONDS),
)
def test_clamp_timeout_is_the_minimum_property(timeout: float | None, budget: float) -> None:
    with mock.patch.object(DEADLINE_MODULE, "time", FakeTime(0.0)), deadline(budget):
        if budget == 0:  # spent before the call: refused, never a timeout of 0
            with pytest.raises(OperationTimeoutError):
                clamp_timeout(timeout)
            return
        clamped = clamp_timeout(timeout)
        assert clamped == (budget if timeout is None else min(timeout, budget))


# --- async -----------------------------------------------------------------------------------


def test_async_with_survives_await() -> None:
    async def main() -> tuple[float | None, float | None]:
        async with deadline(100) as budget:
            assert isinstance(budget, deadline)
            await asyncio.sleep(0)
            inside = remaining()
        return inside, remaining()

    inside, after = asyncio.run(main())
    assert inside is not None
    assert 0 < inside <= 100
    assert after is None


def test_async_with_restores_after_exception() -> None:
    seen: list[float | None] = []

    async def fail() -> None:
        async with deadline(100):
            await asyncio.sleep(0)
            raise ValueError("bad")

    async def main() -> None:
        with pytest.raises(ValueError, match="bad"):
            await fail()
        seen.append(remaining())

    asyncio.run(main())
    assert seen == [None]


def test_async_zero_deadline_expires() -> None:
    async def main() -> None:
        async with deadline(0):
            await asyncio.sleep(0)
            check_deadline("fetch")

    with pytest.raises(OperationTimeoutError, match="fetch"):
        asyncio.run(main())


def test_separate_tasks_do_not_see_each_others_deadline() -> None:
    async def main() -> tuple[float | None, float | None, float | None]:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def with_budget() -> float | None:
            async with deadline(100):
                entered.set()
                await release.wait()
                return remaining()

        async def without_budget() -> float | None:
            await entered.wait()
            seen = remaining()
            release.set()
            return seen

        first, second = await asyncio.gather(with_budget(), without_budget())
        return first, second, remaining()

    first, second, after = asyncio.run(main())
    assert first is not None
    assert 0 < first <= 100
    assert second is None
    assert after is None


def test_task_created_inside_a_deadline_inherits_it() -> None:
    async def main() -> float | None:
        async with deadline(100):
            task = asyncio.create_task(asyncio.sleep(0, result=None))
            await task
            inner = asyncio.create_task(_remaining_async())
        return await inner  # still sees the deadline after the block ended

    async def _remaining_async() -> float | None:
        await asyncio.sleep(0)
        return remaining()

    seen = asyncio.run(main())
    assert seen is not None
    assert 0 < seen <= 100


def test_asyncio_to_thread_carries_the_deadline() -> None:
    async def main() -> float | None:
        async with deadline(100):
            return await asyncio.to_thread(remaining)

    seen = asyncio.run(main())
    assert seen is not None
    assert 0 < seen <= 100


# --- threads ---------------------------------------------------------------------------------


def test_visible_in_thread_through_copy_context() -> None:
    seen: list[float | None] = []
    with deadline(100):
        context = contextvars.copy_context()
    run_in_thread(lambda: context.run(lambda: seen.append(remaining())))
    assert len(seen) == 1
    assert seen[0] is not None
    assert 0 < seen[0] <= 100


def test_visible_in_thread_through_with_current_context() -> None:
    seen: list[float | None] = []
    with deadline(100):
        target = with_current_context(lambda: seen.append(remaining()))
    run_in_thread(target)
    run_in_thread(target)  # each call runs in its own copy: reusable
    assert len(seen) == 2
    for value in seen:
        assert value is not None
        assert 0 < value <= 100


def test_expired_deadline_is_raised_in_thread() -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            check_deadline("thread work")
        except OperationTimeoutError as exc:
            errors.append(exc)

    with deadline(0):
        target = with_current_context(work)
    run_in_thread(target)
    assert len(errors) == 1
    assert "thread work" in str(errors[0])


@pytest.mark.skipif(
    bool(getattr(sys.flags, "thread_inherit_context", 0)),
    reason="this interpreter makes new threads inherit the caller's context",
)
def test_not_visible_in_a_plain_thread() -> None:
    seen: list[float | None] = []
    with deadline(100):
        run_in_thread(lambda: seen.append(remaining()))
    assert seen == [None]


def test_thread_deadline_does_not_leak_back() -> None:
    def work() -> None:
        with deadline(1):
            pass

    with deadline(100):
        run_in_thread(with_current_context(work))
        left = remaining()
        assert left is not None
        assert left > 1


# --- math.inf, absurd budgets, deadline_at and the public DEADLINE variable -------------------


def test_infinite_budget_sets_nothing() -> None:
    from utils.core.deadline import DEADLINE

    with deadline(math.inf):
        assert DEADLINE.get() is None
        assert deadline_at() is None
        check_deadline("anything")
    with pytest.raises(ValidationError, match="at most 315360000 s"):
        deadline(timedelta.max)  # the longest timedelta is not "no limit": it is absurd


@pytest.mark.parametrize(
    "seconds",
    [
        1e12,
        MAX_SECONDS + 1,
        pytest.param(10**400, id="10**400"),
        timedelta(days=3651),
        True,
        False,
        "1",
    ],
)
def test_absurd_or_non_numeric_budgets_are_validation_errors(seconds: object) -> None:
    with pytest.raises(ValidationError, match=r"^deadline must be ") as info:
        deadline(seconds)  # type: ignore[arg-type]
    assert info.value.details["name"] == "deadline"
    assert remaining() is None


def test_ten_years_is_the_longest_budget(clock: FakeTime) -> None:
    with deadline(MAX_SECONDS):
        assert remaining() == MAX_SECONDS


def test_deadline_at(clock: FakeTime) -> None:
    assert deadline_at() is None
    with deadline(5):
        assert deadline_at() == 1005.0
        clock.now += 2
        assert deadline_at() == 1005.0  # absolute: it does not move with the clock
        with deadline(60):
            assert deadline_at() == 1005.0  # the earlier one
        with deadline(1):
            assert deadline_at() == 1003.0
    assert deadline_at() is None


def test_deadline_var_is_the_one_deadline_sets(clock: FakeTime) -> None:
    from utils.core.deadline import DEADLINE, _deadline

    assert _deadline is DEADLINE  # the old private name still works
    assert DEADLINE.get() is None
    with deadline(5):
        assert DEADLINE.get() == deadline_at() == 1005.0
    assert DEADLINE.get() is None
    # A hot path may set it directly; every reader honours it.
    token = DEADLINE.set(clock.now + 3)
    try:
        assert remaining() == 3.0
        assert clamp_timeout(30.0) == 3.0
        with deadline(10):  # a nested deadline still cannot extend it
            assert deadline_at() == 1003.0
        clock.now += 3
        with pytest.raises(OperationTimeoutError):
            check_deadline("hot path")
    finally:
        DEADLINE.reset(token)
    assert remaining() is None


def test_deadline_at_is_exported() -> None:
    import utils.core

    assert utils.core.deadline_at is deadline_at
    assert "deadline_at" in utils.core.__all__
    assert "DEADLINE" in DEADLINE_MODULE.__all__
