"""Type-checked, never run: how the strategies look to mypy --strict at a call site.

``nox -s typecheck`` runs mypy over this file. Decorated functions must keep their exact
signatures (parameters *and* return types, sync and async), ``.call``/``.acall`` must return
what the function returns, and the block form must type-check. A check that fails because of
a known bug carries a ``# type: ignore[...]`` naming the bug: mypy --strict warns about unused
ignores, so fixing the bug makes this file fail until the ignore is removed (like a strict
xfail).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from typing_extensions import assert_type

from utils.resilience import (
    Attempt,
    Bulkhead,
    Retry,
    RetryBudget,
    RetryState,
    Timeout,
    pipeline,
    retry,
    timeout,
)


def scale(count: int, unit: str) -> float:
    """A plain sync function."""
    return count * 1.5 if unit == "s" else float(count)


async def fetch(user_id: int) -> str:
    """A plain async function."""
    return f"user {user_id}"


def log_state(state: RetryState) -> None:
    """A ``before_sleep`` callback."""
    print(state.name, state.attempt, state.delay, state.elapsed, state.error, state.result)


policy: Retry = retry(
    attempts=5,
    timeout=30.0,
    on=(ConnectionError, TimeoutError),
    on_result=lambda result: result is None,
    initial=0.2,
    maximum=5.0,
    multiplier=3.0,
    jitter="equal",
    max_retry_after=10.0,
    budget=RetryBudget(ratio=0.2, min_per_second=1),
    before_sleep=log_state,
    name="typing",
)
by_type = retry(on=ConnectionError)
by_predicate = retry(on=lambda exc: isinstance(exc, OSError))
limit: Timeout = timeout(timedelta(seconds=2))
bulkhead = Bulkhead(4, max_waiting=8, timeout=1.0, name="db")

# -- decorators keep the parameters: assignable to the precise callable types ---------------

retried_sync: Callable[[int, str], float] = retry()(scale)
retried_async: Callable[[int], Coroutine[Any, Any, str]] = retry()(fetch)
limited_sync: Callable[[int, str], float] = timeout(1)(scale)
limited_async: Callable[[int], Coroutine[Any, Any, str]] = timeout(1)(fetch)
guarded_sync: Callable[[int, str], float] = bulkhead(scale)
guarded_async: Callable[[int], Coroutine[Any, Any, str]] = bulkhead(fetch)
piped_sync: Callable[[int, str], float] = pipeline(timeout(2), retry(), bulkhead)(scale)
piped_async: Callable[[int], Coroutine[Any, Any, str]] = pipeline(timeout(2), retry())(fetch)


@retry(attempts=3)
def decorated(count: int, unit: str) -> float:
    """Decorated with the @ syntax."""
    return scale(count, unit)


@retry(attempts=3)
async def adecorated(user_id: int) -> str:
    """Decorated async function."""
    return await fetch(user_id)


@pipeline(timeout(2), retry(), bulkhead)
def handler(count: int) -> int:
    """Decorated by a pipeline."""
    return count + 1


# -- ... and the return types ---------------------------------------------------------------

# BUG (the ignores below): Retry.__call__, Timeout.__call__ and Pipeline.__call__ override
# Strategy.__call__ without its overloads, so the functions they decorate return Any.


def check_sync_return_types() -> None:
    """A decorated sync function returns what the function returns."""
    assert_type(bulkhead(scale)(1, "s"), float)
    assert_type(retry()(scale)(1, "s"), float)
    assert_type(timeout(1)(scale)(1, "s"), float)
    assert_type(pipeline(retry())(scale)(1, "s"), float)


async def check_async_return_types() -> None:
    """A decorated async function returns a coroutine of what the function returns."""
    assert_type(await bulkhead(fetch)(1), str)
    assert_type(await retry()(fetch)(1), str)
    assert_type(await timeout(1)(fetch)(1), str)
    assert_type(await pipeline(retry())(fetch)(1), str)


def use_decorated() -> float:
    """Under --strict, returning Any from a typed function is an error (warn_return_any)."""
    return decorated(2, "s")


async def use_adecorated() -> str:
    """The async twin."""
    return await adecorated(7)


def use_handler() -> int:
    """A pipeline-decorated function."""
    return handler(1)


# -- .call and .acall return the function's return type --------------------------------------


def use_call() -> float:
    """``.call`` is typed from the function it runs."""
    value = policy.call(scale, 3, "s")
    assert_type(value, float)
    assert_type(limit.call(scale, 1, "m"), float)
    assert_type(bulkhead.call(scale, 1, "m"), float)
    assert_type(pipeline(limit, policy, bulkhead).call(scale, 1, unit="m"), float)
    return value


async def use_acall() -> str:
    """``.acall`` is typed from the coroutine function it awaits."""
    value = await policy.acall(fetch, 42)
    assert_type(value, str)
    assert_type(await limit.acall(fetch, 1), str)
    assert_type(await bulkhead.acall(fetch, 1), str)
    assert_type(await pipeline(limit, policy).acall(fetch, 1), str)
    return value


# -- the block forms ------------------------------------------------------------------------


def use_block() -> float:
    """``for attempt in retry(): with attempt: ...``."""
    result = 0.0
    for attempt in retry(attempts=3):
        assert_type(attempt, Attempt)
        with attempt:
            result = scale(attempt.number, "s")
    return result


async def use_async_block() -> str:
    """``async for attempt in retry(): with attempt: ...``."""
    async for attempt in retry(attempts=3):
        with attempt as entered:
            assert_type(entered, Attempt)
            return await fetch(attempt.number)
    return ""
