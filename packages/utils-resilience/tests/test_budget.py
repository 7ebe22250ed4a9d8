"""Tests of utils.resilience.budget: the ratio, the floor, the sliding window, threads."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core import ValidationError
from utils.core.testing import FakeClock
from utils.resilience import RetryBudget, _timing


def spend_all(budget: RetryBudget, limit: int = 100_000) -> int:
    """Spend until refused; how many retries were granted."""
    granted = 0
    while budget.try_spend():
        granted += 1
        assert granted < limit, "the budget never ran out"
    return granted


@settings(deadline=None)  # thousands of spends per example: no per-example timing
@given(
    ratio=st.floats(min_value=0.0, max_value=2.0),
    requests=st.integers(min_value=0, max_value=1_000),
    window=st.integers(min_value=1, max_value=60),
)
def test_ratio_allows_floor_of_ratio_times_requests(
    ratio: float, requests: int, window: int
) -> None:
    # floor() of the product in floating point, as the budget computes it: 0.29 * 100 is
    # 28.999999999999996 there, so such a budget allows 28 retries, not 29.
    budget = RetryBudget(ratio=ratio, min_per_second=0, window=window, clock=FakeClock(1000.0))
    for _ in range(requests):
        budget.record_request()
    assert spend_all(budget) == math.floor(ratio * requests)
    assert not budget.try_spend()  # and it stays spent


@settings(deadline=None)  # thousands of spends per example: no per-example timing
@given(
    min_per_second=st.floats(min_value=0.0, max_value=50.0),
    window=st.integers(min_value=1, max_value=60),
)
def test_floor_is_min_per_second_times_window(min_per_second: float, window: int) -> None:
    budget = RetryBudget(
        ratio=0.5, min_per_second=min_per_second, window=window, clock=FakeClock(1000.0)
    )
    assert spend_all(budget) == math.floor(min_per_second * window)


@settings(deadline=None)  # thousands of spends per example: no per-example timing
@given(
    ratio=st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 1.0]),
    min_per_second=st.sampled_from([0.0, 0.1, 1.0, 10.0]),
    requests=st.integers(min_value=0, max_value=1_000),
    window=st.integers(min_value=1, max_value=30),
)
def test_ratio_and_floor_add_up(
    ratio: float, min_per_second: float, requests: int, window: int
) -> None:
    budget = RetryBudget(ratio, min_per_second, window=window, clock=FakeClock(1000.0))
    for _ in range(requests):
        budget.record_request()
    assert spend_all(budget) == math.floor(min_per_second * window + ratio * requests)


def test_spread_over_the_window_counts_every_second() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=10, clock=clock)
    for second in range(10):
        clock.now = second + 0.5
        for _ in range(10):
            budget.record_request()
    assert spend_all(budget) == 10


def test_the_window_slides() -> None:
    clock = FakeClock(100.0)
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=10, clock=clock)
    for _ in range(100):
        budget.record_request()
    assert spend_all(budget) == 10  # 10% of 100

    clock.now = 105.0
    for _ in range(100):
        budget.record_request()
    assert spend_all(budget) == 10  # 200 requests, 10 retries already spent: 10 more

    clock.now = 109.999
    assert not budget.try_spend()  # everything still in the window

    clock.now = 110.0  # second 100 left the window: its 100 requests and 10 retries too
    assert not budget.try_spend()  # 100 requests (second 105), 10 retries (second 105)
    for _ in range(20):
        budget.record_request()
    assert spend_all(budget) == 2  # 120 requests -> 12, 10 spent

    clock.now = 125.0  # everything is gone
    assert not budget.try_spend()
    for _ in range(10):
        budget.record_request()
    assert spend_all(budget) == 1


def test_recycled_slots_forget_old_counts() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=3, clock=clock)
    for _ in range(50):
        budget.record_request()
    assert spend_all(budget) == 50
    clock.now = 3.0  # same slot as second 0, one window later
    budget.record_request()
    assert spend_all(budget) == 1


def test_floor_applies_per_window_not_per_call() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.0, min_per_second=1, window=5, clock=clock)
    assert spend_all(budget) == 5
    clock.now = 3.0
    assert not budget.try_spend()  # the 5 retries of second 0 are still in the window
    clock.now = 5.0
    assert spend_all(budget) == 5


def test_a_slot_recycled_meanwhile_by_another_thread_is_not_reset_again() -> None:
    clock = FakeClock(7.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=5, clock=clock)

    class RacingLock:
        """Another thread recycles the slot (and records a request) while we wait for it."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.raced = False

        def __enter__(self) -> None:
            self.lock.acquire()
            if not self.raced:
                self.raced = True
                slot = 7 % 5
                budget._stamps[slot] = 7
                budget._requests[slot] = 1
                budget._retries[slot] = 0

        def __exit__(self, *exc_info: object) -> None:
            self.lock.release()

    budget._lock = RacingLock()  # type: ignore[assignment]
    budget.record_request()
    assert spend_all(budget) == 2  # the other thread's request was kept, and ours


def test_uses_the_shared_clock_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(50.0)
    monkeypatch.setattr(_timing, "clock", clock)
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=5)
    assert spend_all(budget) == 1
    clock.now = 55.0
    assert spend_all(budget) == 1


def test_concurrent_spending_never_exceeds_the_budget() -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=10, clock=FakeClock(1000.0))
    for _ in range(8_000):
        budget.record_request()
    granted = [0] * 8
    barrier = threading.Barrier(8)

    def spender(index: int) -> None:
        barrier.wait(timeout=10)
        for _ in range(500):
            if budget.try_spend():
                granted[index] += 1

    threads = [threading.Thread(target=spender, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(granted) == 800


def test_concurrent_recording_and_spending_smoke() -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=1, window=10, clock=FakeClock(1000.0))
    granted = [0] * 8
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait(timeout=10)
        for _ in range(1_000):
            budget.record_request()
            if budget.try_spend():
                granted[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert 0 < sum(granted) <= 10 + 0.1 * 8_000
    assert sum(granted) + spend_all(budget) <= 810


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"ratio": -0.1}, "ratio must be a finite number >= 0"),
        ({"ratio": math.nan}, "ratio must be a finite number >= 0"),
        ({"ratio": math.inf}, "ratio must be a finite number >= 0"),
        ({"min_per_second": -1}, "min_per_second must be a finite number >= 0"),
        ({"min_per_second": math.inf}, "min_per_second must be a finite number >= 0"),
        ({"window": 0}, "window must be an int > 0"),
        ({"window": 1.5}, "window must be an int > 0"),
        ({"window": "10"}, "window must be an int > 0"),
        ({"window": True}, "window must be an int > 0"),
    ],
    ids=repr,
)
def test_invalid_budgets(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        RetryBudget(**kwargs)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        RetryBudget(ratio=-1, min_per_second=-1, window=0)
    assert str(info.value).startswith("invalid retry budget: ")
    assert str(info.value).count(";") == 2


def test_defaults_and_repr() -> None:
    budget = RetryBudget()
    assert (budget.ratio, budget.min_per_second, budget.window) == (0.1, 10.0, 10)
    assert repr(budget) == "RetryBudget(ratio=0.1, min_per_second=10.0, window=10)"
