"""fork() while other threads use a limiter or a breaker: the child must not inherit a held lock.

Each test parks a thread *inside* the strategy's critical section (through a clock or a key
the strategy calls under its lock), forks for real, and lets the child use the strategy.
Without the after-fork hook the child waits forever on a lock whose owner does not exist in
the child; the parent kills it after a few seconds and the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from utils.core.forksafe import registered
from utils.core.testing import wait_until
from utils.resilience import Bulkhead, CircuitBreaker, RateLimiter, RetryBudget

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Forking a multi-threaded process is the very situation under test.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


class Parking:
    """Parks the next caller of :meth:`park_here` until :meth:`release` (once)."""

    def __init__(self) -> None:
        self.armed = False
        self.parked = threading.Event()
        self.released = threading.Event()

    def park_here(self) -> None:
        if self.armed and threading.current_thread() is not threading.main_thread():
            self.armed = False
            self.parked.set()
            self.released.wait(10)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def parking() -> Iterator[Parking]:
    spot = Parking()
    yield spot
    spot.release()


def churn(parking: Parking, step: Callable[[], object]) -> threading.Thread:
    """A thread that calls ``step`` in a loop until the spot is released."""

    def run() -> None:
        while not parking.released.is_set():
            step()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def in_child(check: Callable[[], object]) -> int:
    """Fork; the child runs ``check`` and exits 0 (1 on error); return the child's status.

    A child stuck for 10 s is killed and reported as -1.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
        code = 1
        try:
            check()
            code = 0
        finally:
            os._exit(code)
    status: list[int] = []

    def done() -> bool:
        waited, code = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            status.append(code)
        return bool(status)

    try:
        wait_until(done, timeout=10, message="the forked child to finish")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return -1
    return os.waitstatus_to_exitcode(status[0])


def test_memory_rate_limiter_works_in_a_child_forked_while_its_lock_is_held(
    parking: Parking,
) -> None:
    class ParkingKey(str):
        __slots__ = ()

        def __hash__(self) -> int:  # called by the storage's dict, under its lock
            parking.park_here()
            return str.__hash__(self)

    limiter = RateLimiter(1000, per=1.0)
    churn(parking, lambda: limiter.try_acquire(ParkingKey("churn")))
    parking.armed = True
    assert parking.parked.wait(5)

    def check() -> None:
        assert limiter.try_acquire("child").allowed
        assert limiter.acquire("child", timeout=0).allowed

    assert in_child(check) == 0


def test_shared_memory_storage_of_several_limiters_works_in_the_child(parking: Parking) -> None:
    from utils.resilience import MemoryRateLimitStorage

    class ParkingKey(str):
        __slots__ = ()

        def __hash__(self) -> int:
            parking.park_here()
            return str.__hash__(self)

    storage = MemoryRateLimitStorage()
    first = RateLimiter(10, storage=storage, name="first")
    second = RateLimiter(10, storage=storage, name="second")

    def step() -> None:
        # A custom storage path (update) holds the same lock as the inlined fast path.
        storage.update(ParkingKey("churn"), 0.1, 0.9, 1, lambda: 0.0)

    churn(parking, step)
    parking.armed = True
    assert parking.parked.wait(5)

    def check() -> None:
        assert first.try_acquire("a").allowed
        assert second.try_acquire("a").allowed

    assert in_child(check) == 0


def test_memory_circuit_breaker_works_in_a_child_forked_while_its_lock_is_held(
    parking: Parking,
) -> None:
    now = [0.0]

    def clock() -> float:  # read by the breaker under its lock when a state changes
        parking.park_here()
        return now[0]

    breaker = CircuitBreaker("forked", fail_max=1, reset_timeout=5, clock=clock)
    churn(parking, breaker.half_open)
    parking.armed = True
    assert parking.parked.wait(5)

    def fail() -> None:
        raise ConnectionError("down")

    def check() -> None:
        breaker.close()
        assert breaker.state == "closed"
        with contextlib.suppress(ConnectionError):
            breaker.call(fail)
        assert breaker.state == "open"
        breaker.close()
        assert breaker.call(len, "abc") == 3

    assert in_child(check) == 0


def test_bulkhead_and_budget_work_in_a_child_forked_while_their_locks_are_held() -> None:
    bulkhead = Bulkhead(2)
    budget = RetryBudget(ratio=1.0, min_per_second=1)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:  # a thread inside their critical sections at the moment of the fork
        with bulkhead._lock, budget._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert held.wait(5)

        def check() -> None:
            assert bulkhead.call(len, "ab") == 2
            assert budget.try_spend()

        assert in_child(check) == 0
    finally:
        release.set()
        thread.join(5)


def test_objects_are_tracked_weakly() -> None:
    import gc
    import weakref

    limiter = RateLimiter(5)
    storage: Any = limiter.storage
    assert registered(storage)
    assert registered(limiter)
    gone = weakref.ref(limiter), weakref.ref(storage)
    del limiter, storage
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_after_fork_hook_is_harmless_in_the_parent() -> None:
    limiter = RateLimiter(2, per=1.0, clock=lambda: 0.0)
    assert limiter.try_acquire("k").allowed
    storage: Any = limiter.storage
    storage._after_fork_in_child()  # as the child would run them; state is kept
    limiter._after_fork_in_child()
    assert limiter.try_acquire("k").allowed
    assert not limiter.try_acquire("k").allowed
