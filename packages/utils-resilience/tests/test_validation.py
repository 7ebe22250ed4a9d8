"""One validation rule for every strategy (utils.core.validate).

- ``math.inf`` for a limit (a wait, a timeout) means "no limit"; it never reaches a sleep or
  a lock wait, where it would raise ``OverflowError``.
- A finite duration above ``utils.core.validate.MAX_SECONDS`` (ten years) is refused.
- ``True`` / ``False`` are never accepted where a number is expected.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest

from utils.core import ValidationError
from utils.core.testing import wait_until
from utils.core.validate import MAX_SECONDS
from utils.resilience import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    RateLimiter,
    RetryBudget,
    retry,
    timeout,
)

ABSURD = MAX_SECONDS * 2

INVALID: list[tuple[str, Callable[[], object]]] = [
    # bools where numbers are expected
    ("timeout(True)", lambda: timeout(True)),
    ("Bulkhead(True)", lambda: Bulkhead(True)),
    ("Bulkhead(max_waiting=True)", lambda: Bulkhead(1, max_waiting=True)),
    ("Bulkhead(timeout=True)", lambda: Bulkhead(1, timeout=True)),
    ("retry(attempts=True)", lambda: retry(attempts=True)),
    ("retry(timeout=True)", lambda: retry(timeout=True)),
    ("retry(max_retry_after=True)", lambda: retry(max_retry_after=True)),
    ("Backoff(initial=True)", lambda: Backoff(initial=True)),
    ("Backoff(maximum=True)", lambda: Backoff(initial=0, maximum=True)),
    ("Backoff(multiplier=True)", lambda: Backoff(multiplier=True)),
    ("RetryBudget(ratio=True)", lambda: RetryBudget(ratio=True)),
    ("RetryBudget(min_per_second=True)", lambda: RetryBudget(min_per_second=True)),
    ("RetryBudget(window=True)", lambda: RetryBudget(window=True)),
    ("CircuitBreaker(fail_max=True)", lambda: CircuitBreaker("v", fail_max=True)),
    ("CircuitBreaker(reset_timeout=True)", lambda: CircuitBreaker("v", reset_timeout=True)),
    ("CircuitBreaker(probe_timeout=True)", lambda: CircuitBreaker("v", probe_timeout=True)),
    ("RateLimiter(True)", lambda: RateLimiter(True)),
    ("RateLimiter(per=True)", lambda: RateLimiter(1, per=True)),
    ("RateLimiter(burst=True)", lambda: RateLimiter(1, burst=True)),
    ("limiter.limit(cost=True)", lambda: RateLimiter(2).limit(cost=True)),
    ("limiter.limit(timeout=True)", lambda: RateLimiter(2).limit(timeout=True)),
    ("limiter.acquire(timeout=True)", lambda: RateLimiter(2).acquire(timeout=True)),
    ("limiter.try_acquire(cost=True)", lambda: RateLimiter(2).try_acquire(cost=True)),
    # absurd finite durations
    ("timeout(absurd)", lambda: timeout(ABSURD)),
    ("Bulkhead(timeout=absurd)", lambda: Bulkhead(1, timeout=ABSURD)),
    ("retry(timeout=absurd)", lambda: retry(timeout=ABSURD)),
    ("retry(max_retry_after=absurd)", lambda: retry(max_retry_after=ABSURD)),
    ("Backoff(maximum=absurd)", lambda: Backoff(maximum=ABSURD)),
    ("CircuitBreaker(reset_timeout=absurd)", lambda: CircuitBreaker("v", reset_timeout=ABSURD)),
    ("CircuitBreaker(probe_timeout=absurd)", lambda: CircuitBreaker("v", probe_timeout=ABSURD)),
    ("RateLimiter(per=absurd)", lambda: RateLimiter(1, per=ABSURD)),
    ("limiter.acquire(timeout=absurd)", lambda: RateLimiter(2).acquire(timeout=ABSURD)),
    ("limiter.limit(timeout=absurd)", lambda: RateLimiter(2).limit(timeout=ABSURD)),
    # infinite where "no limit" makes no sense (a period, a lease)
    ("CircuitBreaker(reset_timeout=inf)", lambda: CircuitBreaker("v", reset_timeout=math.inf)),
    ("CircuitBreaker(probe_timeout=inf)", lambda: CircuitBreaker("v", probe_timeout=math.inf)),
    ("RateLimiter(per=inf)", lambda: RateLimiter(1, per=math.inf)),
]


@pytest.mark.parametrize(("label", "build"), INVALID, ids=[label for label, _ in INVALID])
def test_bools_and_absurd_durations_are_refused(label: str, build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        build()


def test_infinite_limits_mean_no_limit() -> None:
    assert timeout(math.inf).seconds == math.inf
    assert Bulkhead(1, timeout=math.inf).timeout is None
    assert retry(timeout=math.inf, attempts=3).timeout is None
    assert retry(max_retry_after=math.inf).max_retry_after == math.inf
    limiter = RateLimiter(2, per=1.0, clock=lambda: 0.0)
    assert limiter.acquire("k", timeout=math.inf).allowed
    assert limiter.limit(timeout=math.inf).call(len, "ab") == 2
    assert Bulkhead(1, timeout=1e3).timeout == 1e3  # large but sane: kept


def test_retry_forever_needs_a_finite_timeout() -> None:
    with pytest.raises(ValidationError, match="retries forever"):
        retry(attempts=None, timeout=math.inf)


def test_a_caller_waiting_on_an_infinite_bulkhead_timeout_gets_the_slot() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, timeout=math.inf)
    release = threading.Event()
    results: list[Any] = []

    def hold() -> None:
        bulkhead.call(release.wait, 10)

    def wait_for_slot() -> None:
        try:
            results.append(bulkhead.call(str.upper, "ran"))
        except BaseException as error:  # pragma: no cover - the bug: OverflowError
            results.append(error)

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(lambda: bulkhead.active == 1)
    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    wait_until(lambda: bulkhead.waiting == 1 or bool(results))
    release.set()
    holder.join(10)
    waiter.join(10)
    assert results == ["RAN"]


def test_a_task_waiting_on_an_infinite_bulkhead_timeout_gets_the_slot() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, timeout=math.inf)

    async def main() -> list[str]:
        release = asyncio.Event()

        async def hold() -> str:
            await release.wait()
            return "held"

        async def work() -> str:
            return "ran"

        first = asyncio.ensure_future(bulkhead.acall(hold))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(bulkhead.acall(work))
        await asyncio.sleep(0)
        assert bulkhead.waiting == 1
        release.set()
        return list(await asyncio.gather(first, second))

    assert asyncio.run(asyncio.wait_for(main(), 10)) == ["held", "ran"]
