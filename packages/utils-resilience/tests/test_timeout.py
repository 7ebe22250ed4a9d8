"""Tests of utils.resilience.timeout: async cancellation, the sync deadline, validation."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from utils.core import OperationTimeoutError, UtilsError, ValidationError, deadline, remaining
from utils.resilience import ResilienceError, ResilienceTimeoutError, Timeout, timeout


@pytest.fixture(autouse=True)
def _no_deadline_leaks() -> Iterator[None]:
    assert remaining() is None
    yield
    assert remaining() is None


# --------------------------------------------------------------------------- async


def test_async_call_is_cancelled_and_raises_a_timeout_error() -> None:
    cancelled: list[bool] = []

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(ResilienceTimeoutError) as info:
        asyncio.run(timeout(0.01).acall(hang))
    error = info.value
    assert cancelled == [True]
    assert isinstance(error, OperationTimeoutError)
    assert isinstance(error, ResilienceError)
    assert isinstance(error.__cause__, TimeoutError)
    assert error.code == "timeout"
    assert error.details == {"timeout": 0.01}
    assert str(error) == "the call did not finish within 0.01s"
    assert not error.retryable


def test_async_decorator() -> None:
    @timeout(0.01)
    async def hang(x: int) -> int:
        await asyncio.Event().wait()
        return x  # pragma: no cover

    @timeout(5)
    async def quick(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(hang)
    assert hang.__name__ == "hang"
    with pytest.raises(ResilienceTimeoutError):
        asyncio.run(hang(1))
    assert asyncio.run(quick(21)) == 42


def test_inner_timeout_error_propagates_unchanged() -> None:
    mine = TimeoutError("the server said so")

    async def fail() -> None:
        await asyncio.sleep(0)
        raise mine

    with pytest.raises(TimeoutError) as info:
        asyncio.run(timeout(5).acall(fail))
    assert info.value is mine
    assert not isinstance(info.value, ResilienceTimeoutError)


def test_other_exceptions_and_results_pass_through() -> None:
    async def fail() -> None:
        raise KeyError("k")

    async def value(a: int, *, b: int) -> int:
        return a + b

    with pytest.raises(KeyError):
        asyncio.run(timeout(5).acall(fail))
    assert asyncio.run(timeout(5).acall(value, 1, b=2)) == 3


def test_async_call_sets_the_deadline() -> None:
    async def left() -> float | None:
        return remaining()

    seen = asyncio.run(timeout(2).acall(left))
    assert seen is not None
    assert 0 < seen <= 2


def test_nested_async_timeouts_the_inner_one_expires() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        await timeout(10).acall(timeout(0.01).acall, hang)

    with pytest.raises(ResilienceTimeoutError, match=r"within 0\.01s"):
        asyncio.run(main())


def test_nested_async_timeouts_the_outer_one_expires() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        await timeout(0.01).acall(timeout(10).acall, hang)

    with pytest.raises(ResilienceTimeoutError, match=r"within 0\.01s"):
        asyncio.run(main())


def test_cancellation_from_outside_is_not_converted() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.ensure_future(timeout(10).acall(hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


# --------------------------------------------------------------------------- the earliest wins


async def _hang() -> None:
    await asyncio.Event().wait()


def _run_guarded(coro: Any) -> Any:
    """Run ``coro``, failing (asyncio's TimeoutError) if it is still running after 10 s."""
    return asyncio.run(asyncio.wait_for(coro, 10))


@pytest.mark.parametrize("form", ["acall", "decorator"])
def test_async_timeout_inside_an_earlier_deadline_stops_at_the_deadline(form: str) -> None:
    limit = timeout(3600)  # far longer than the deadline: the deadline must win

    async def main() -> None:
        with deadline(0.01):
            if form == "acall":
                await limit.acall(_hang)
            else:
                await limit(_hang)()

    with pytest.raises(ResilienceTimeoutError) as info:
        _run_guarded(main())
    error = info.value
    assert isinstance(error, OperationTimeoutError)
    assert error.details == {"timeout": 3600.0, "reason": "deadline"}
    assert "deadline" in str(error)
    assert isinstance(error.__cause__, TimeoutError)


def test_async_timeout_inside_an_already_expired_deadline_raises_at_once() -> None:
    started: list[bool] = []

    async def work() -> None:
        started.append(True)
        await _hang()

    async def main() -> None:
        with deadline(0):
            await timeout(3600).acall(work)

    with pytest.raises(ResilienceTimeoutError, match="deadline"):
        _run_guarded(main())


def test_async_timeout_earlier_than_the_deadline_keeps_its_own_error() -> None:
    async def main() -> None:
        with deadline(3600):
            await timeout(0.01).acall(_hang)

    with pytest.raises(ResilienceTimeoutError, match=r"within 0\.01s") as info:
        _run_guarded(main())
    assert info.value.details == {"timeout": 0.01}


def test_infinite_timeout_means_no_limit_of_its_own() -> None:
    limit = timeout(math.inf)
    assert limit.seconds == math.inf
    assert repr(limit) == "Timeout(inf)"
    # Sync: no deadline is set (the ambient one, if any, is untouched).
    assert limit.call(remaining) is None
    assert limit(remaining)() is None
    with deadline(5):
        seen = limit.call(remaining)
        assert seen is not None
        assert seen <= 5

    async def left() -> float | None:
        await asyncio.sleep(0)
        return remaining()

    assert asyncio.run(limit.acall(left)) is None

    # Async: only the deadline can stop the call.
    async def main() -> None:
        with deadline(0.01):
            await limit.acall(_hang)

    with pytest.raises(ResilienceTimeoutError, match="deadline"):
        _run_guarded(main())


# --------------------------------------------------------------------------- sync


def test_sync_call_sets_remaining_inside_and_restores_after() -> None:
    seen = timeout(5).call(remaining)
    assert seen is not None
    assert 4 < seen <= 5
    assert remaining() is None


def test_sync_decorator_sets_remaining_inside_and_restores_after() -> None:
    @timeout(5)
    def left(offset: float) -> float | None:
        value = remaining()
        return None if value is None else value + offset

    seen = left(0.0)
    assert seen is not None
    assert 4 < seen <= 5
    assert left.__name__ == "left"
    assert left.__wrapped__ is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("form", ["call", "decorator"])
def test_sync_deadline_is_restored_after_an_exception(form: str) -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    limited: Callable[[], None] = (
        functools.partial(timeout(5).call, fail) if form == "call" else timeout(5)(fail)
    )
    with pytest.raises(RuntimeError):
        limited()
    assert remaining() is None


@pytest.mark.parametrize("form", ["call", "decorator"])
def test_nested_sync_timeouts_keep_the_earlier_deadline(form: str) -> None:
    def run(seconds: float, fn: Callable[[], Any]) -> Any:
        if form == "call":
            return timeout(seconds).call(fn)
        decorated: Callable[[], Any] = timeout(seconds)(fn)
        return decorated()

    # A longer inner timeout does not extend the outer one.
    inner = run(1, lambda: run(60, remaining))
    assert inner is not None
    assert inner <= 1
    # A shorter inner timeout shortens it.
    inner = run(60, lambda: run(1, remaining))
    assert inner is not None
    assert inner <= 1
    # An ambient deadline wins when it is earlier.
    with deadline(0.5):
        inner = run(60, remaining)
        assert inner is not None
        assert inner <= 0.5
        assert remaining() is not None
    # And the timeout wins when it is earlier than the ambient deadline.
    with deadline(60):
        inner = run(1, remaining)
        assert inner is not None
        assert inner <= 1


def test_sync_code_that_cooperates_stops() -> None:
    from utils.core import check_deadline

    def cooperative() -> None:
        with deadline(0):  # as if the time had run out inside
            check_deadline("step 2")

    with pytest.raises(OperationTimeoutError, match="step 2"):
        timeout(5).call(cooperative)


def test_decorating_a_generator_function_is_a_type_error() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"timeout\(2\) cannot decorate the generator function"):
        timeout(2)(numbers)
    with pytest.raises(TypeError, match="generator function"):
        timeout(2)(anumbers)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "seconds", [0, -1, -0.5, math.nan, -math.inf, "5", None, timedelta(0), True, False, 1e10]
)
def test_invalid_seconds(seconds: Any) -> None:
    with pytest.raises(ValidationError, match="timeout seconds must be"):
        timeout(seconds)


def test_timedelta_is_accepted() -> None:
    assert timeout(timedelta(milliseconds=1500)).seconds == 1.5
    assert timeout(timedelta(minutes=2)).seconds == 120.0


def test_int_seconds_become_floats_and_repr() -> None:
    limit = timeout(2)
    assert isinstance(limit, Timeout)
    assert limit.seconds == 2.0
    assert isinstance(limit.seconds, float)
    assert repr(limit) == "Timeout(2.0)"
    assert limit._describe() == "timeout(2)"
    assert timeout(0.25)._describe() == "timeout(0.25)"


def test_error_hierarchy() -> None:
    assert issubclass(ResilienceTimeoutError, OperationTimeoutError)
    assert issubclass(ResilienceTimeoutError, ResilienceError)
    assert issubclass(ResilienceTimeoutError, UtilsError)
