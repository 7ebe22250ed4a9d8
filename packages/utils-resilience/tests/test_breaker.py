"""Tests of utils.resilience.breaker with in-memory state (Redis: test_breaker_redis.py)."""

from __future__ import annotations

import asyncio
import doctest
import functools
import inspect
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any

import pybreaker
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from utils.core import (
    NotFoundError,
    OperationTimeoutError,
    TransientError,
    UnavailableError,
    ValidationError,
)
from utils.core.metrics import InMemorySink
from utils.core.testing import FakeClock
from utils.resilience import _timing
from utils.resilience import breaker as breaker_module
from utils.resilience.breaker import (
    Admission,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    MemoryBreakerStorage,
    Transition,
    counts_as_failure,
)
from utils.resilience.errors import CircuitOpenError, ResilienceError

Logs = list[dict[str, Any]]


class Recorder(pybreaker.CircuitBreakerListener):
    """A user's pybreaker listener that remembers every hook call."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        self.events.append(("before_call", cb.name, func, args, kwargs))

    def success(self, cb: Any) -> None:
        self.events.append(("success", cb.name))

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.events.append(("failure", cb.name, type(exc).__name__))

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.events.append(("state_change", old_state.name, new_state.name))

    def kinds(self) -> list[str]:
        return [event[0] for event in self.events]


def boom() -> None:
    raise ConnectionError("dependency unreachable")


def not_found() -> None:
    raise NotFoundError("no such user")


def trip(breaker: CircuitBreaker, times: int | None = None) -> None:
    for _ in range(times or breaker.policy.fail_max):
        with pytest.raises(ConnectionError):
            breaker.call(boom)


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function in a fresh event loop."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


# --- closed -> open -----------------------------------------------------------------------


def test_opens_after_fail_max_consecutive_counted_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker("api", fail_max=3, reset_timeout=30, clock=clock)
    trip(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.pybreaker.fail_counter == 2
    with pytest.raises(ConnectionError):  # the tripping call raises its own error
        breaker.call(boom)
    assert breaker.state is BreakerState.OPEN
    assert breaker.pybreaker.current_state == "open"
    calls: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(calls.append, 1)
    assert calls == []  # refused without running
    error = info.value
    assert error.retry_after == 30
    assert error.details == {"breaker": "api", "state": "open"}
    assert error.retryable
    assert isinstance(error, pybreaker.CircuitBreakerError)
    assert isinstance(error, UnavailableError)
    assert isinstance(error, ResilienceError)
    assert "circuit 'api' is open" in str(error)


def test_a_success_resets_the_consecutive_failure_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker("api", fail_max=3, clock=clock)
    trip(breaker, 2)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.pybreaker.fail_counter == 0
    trip(breaker, 2)
    assert breaker.state == "closed"


def test_retry_after_counts_down_to_the_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker("api", fail_max=1, reset_timeout=30, clock=clock)
    trip(breaker)
    clock.advance(12.5)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    assert info.value.retry_after == pytest.approx(17.5)
    assert breaker.snapshot().retry_after == pytest.approx(17.5)
    clock.advance(17.4)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    assert info.value.retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.call(lambda: "probe") == "probe"
    assert breaker.state == "closed"


# --- half-open ------------------------------------------------------------------------------


def test_open_becomes_half_open_after_reset_timeout_and_a_probe_success_closes(
    clock: FakeClock, utils_logs: Logs, utils_metrics: InMemorySink
) -> None:
    breaker = CircuitBreaker("search", fail_max=2, reset_timeout=10, clock=clock)
    trip(breaker)
    clock.advance(10)
    assert breaker.state == "open"  # lazy, as in pybreaker: the next call moves it
    seen = []

    def probe() -> str:
        seen.append(breaker.state)
        return "fine"

    assert breaker.call(probe) == "fine"
    assert seen == [BreakerState.HALF_OPEN]
    assert breaker.state == "closed"
    assert [(e["event"], e["log_level"], e["breaker"]) for e in utils_logs] == [
        ("breaker.opened", "warning", "search"),
        ("breaker.half_open", "info", "search"),
        ("breaker.closed", "info", "search"),
    ]
    assert [e["previous"] for e in utils_logs] == ["closed", "open", "half_open"]
    for event in ("breaker.opened", "breaker.half_open", "breaker.closed"):
        assert utils_metrics.count(event, kind="increment", breaker="search") == 1
    gauges = [m.value for m in utils_metrics.select("breaker.state", breaker="search")]
    assert gauges == [2.0, 1.0, 0.0]


def test_probe_failure_opens_again_for_a_full_reset_timeout(clock: FakeClock) -> None:
    breaker = CircuitBreaker("search", fail_max=1, reset_timeout=10, clock=clock)
    trip(breaker)
    clock.advance(11)
    with pytest.raises(ConnectionError):
        breaker.call(boom)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    assert info.value.retry_after == 10


def test_success_threshold_needs_consecutive_probe_successes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(
        "search", fail_max=1, reset_timeout=10, success_threshold=3, clock=clock
    )
    trip(breaker)
    clock.advance(10)
    breaker.call(lambda: None)
    breaker.call(lambda: None)
    assert breaker.state == "half_open"
    assert breaker.pybreaker.success_counter == 2
    with pytest.raises(ConnectionError):  # one failed probe: back to open, count lost
        breaker.call(boom)
    assert breaker.state == "open"
    clock.advance(10)
    for _ in range(3):
        assert breaker.state != "closed"
        breaker.call(lambda: None)
    assert breaker.state == "closed"
    assert breaker.pybreaker.success_counter == 0


def test_half_open_refuses_while_the_probe_runs_with_the_lease_time_left(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker("s", fail_max=1, reset_timeout=10, probe_timeout=4, clock=clock)
    trip(breaker)
    clock.advance(10)
    with breaker:  # the probe
        clock.advance(1)
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(lambda: None)
        assert info.value.retry_after == pytest.approx(3)
        assert info.value.details["state"] == "half_open"
        assert "trial call is running" in str(info.value)
        assert breaker.snapshot().retry_after == pytest.approx(3)
    assert breaker.state == "closed"


def test_an_expired_lease_lets_another_probe_in_and_the_late_one_is_ignored(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker("s", fail_max=1, reset_timeout=10, probe_timeout=5, clock=clock)
    trip(breaker)
    clock.advance(10)
    storage, policy = breaker.storage, breaker.policy
    hung = storage.admit(policy)
    assert hung.probe
    clock.advance(5)  # the hung probe's lease expires
    second = storage.admit(policy)
    assert second.allowed
    assert second.probe
    assert second.token != hung.token
    assert storage.record(hung, "failure", policy) == ()  # the late failure changes nothing
    assert breaker.state == "half_open"
    assert storage.record(second, "success", policy)[0].state == "closed"


def test_an_expired_lease_not_taken_over_still_counts(clock: FakeClock) -> None:
    breaker = CircuitBreaker("s", fail_max=1, reset_timeout=10, probe_timeout=5, clock=clock)
    trip(breaker)
    clock.advance(10)
    storage, policy = breaker.storage, breaker.policy
    slow = storage.admit(policy)
    clock.advance(60)
    assert storage.record(slow, "success", policy)[0].state == "closed"


def test_default_probe_timeout_is_reset_timeout_but_at_least_a_second() -> None:
    assert CircuitBreaker("a", reset_timeout=30).policy.probe_timeout == 30
    assert CircuitBreaker("a", reset_timeout=0).policy.probe_timeout == 1
    assert CircuitBreaker("a", reset_timeout=0, probe_timeout=0.25).policy.probe_timeout == 0.25


def test_zero_reset_timeout_probes_on_the_next_call(clock: FakeClock) -> None:
    breaker = CircuitBreaker("a", fail_max=1, reset_timeout=0, clock=clock)
    trip(breaker)
    assert breaker.call(lambda: 1) == 1
    assert breaker.state == "closed"


# --- what counts ----------------------------------------------------------------------------


def test_a_not_found_never_opens_the_breaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker("users", fail_max=2, clock=clock)
    for _ in range(10):
        with pytest.raises(NotFoundError):
            breaker.call(not_found)
    assert breaker.state == "closed"
    assert breaker.pybreaker.fail_counter == 0


def test_a_non_counted_error_is_neutral_in_the_closed_state(clock: FakeClock) -> None:
    breaker = CircuitBreaker("users", fail_max=2, clock=clock)
    trip(breaker, 1)
    with pytest.raises(NotFoundError):
        breaker.call(not_found)
    assert breaker.pybreaker.fail_counter == 1  # neither reset (success) nor counted
    trip(breaker, 1)
    assert breaker.state == "open"


def test_a_non_counted_error_of_a_probe_counts_as_a_successful_probe(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(
        "users", fail_max=1, reset_timeout=5, clock=clock, listeners=[recorder]
    )
    trip(breaker)
    clock.advance(5)
    with pytest.raises(NotFoundError) as info:
        breaker.call(not_found)
    assert type(info.value) is NotFoundError  # unchanged
    assert breaker.state == "closed"
    assert ("success", "users") in recorder.events


def test_default_counts_transient_errors_and_timeouts() -> None:
    assert counts_as_failure(ConnectionResetError())
    assert counts_as_failure(TimeoutError())
    assert counts_as_failure(asyncio.TimeoutError())
    assert counts_as_failure(OperationTimeoutError("slow"))
    assert counts_as_failure(TransientError("flaky"))
    assert counts_as_failure(CircuitOpenError("inner breaker open"))
    assert not counts_as_failure(NotFoundError("x"))
    assert not counts_as_failure(ValueError("bad input"))
    assert not counts_as_failure(KeyboardInterrupt())


@pytest.mark.parametrize(
    "on",
    [
        ValueError,
        (KeyError, ValueError),
        lambda exc: "count me" in str(exc),
    ],
    ids=["type", "tuple", "predicate"],
)
def test_on_selects_what_counts(on: Any, clock: FakeClock) -> None:
    breaker = CircuitBreaker("p", fail_max=1, on=on, clock=clock)

    def connection() -> None:
        raise ConnectionError("not selected")

    def value() -> None:
        raise ValueError("count me")

    with pytest.raises(ConnectionError):
        breaker.call(connection)
    assert breaker.state == "closed"
    with pytest.raises(ValueError):
        breaker.call(value)
    assert breaker.state == "open"


def test_exclude_types_and_predicates_never_count(clock: FakeClock) -> None:
    class Busy(ConnectionError):
        pass

    breaker = CircuitBreaker(
        "p",
        fail_max=1,
        clock=clock,
        exclude=[Busy, lambda exc: "maintenance" in str(exc)],
    )
    with pytest.raises(Busy):
        breaker.call(functools.partial(_raise, Busy()))
    with pytest.raises(ConnectionError):
        breaker.call(functools.partial(_raise, ConnectionError("maintenance window")))
    assert breaker.state == "closed"
    assert breaker.pybreaker.excluded_exceptions[0] is Busy
    breaker.pybreaker.add_excluded_exception(ConnectionResetError)  # pybreaker's API works
    with pytest.raises(ConnectionResetError):
        breaker.call(functools.partial(_raise, ConnectionResetError()))
    assert breaker.state == "closed"
    trip(breaker)
    assert breaker.state == "open"


def _raise(exc: BaseException) -> None:
    raise exc


def test_a_broken_predicate_counts_the_failure_and_is_reported_once(
    clock: FakeClock, utils_logs: Logs
) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in predicate")

    breaker = CircuitBreaker("p", fail_max=2, on=broken, clock=clock)
    with pytest.raises(ValueError):
        breaker.call(functools.partial(_raise, ValueError("x")))
    with pytest.raises(ValueError):
        breaker.call(functools.partial(_raise, ValueError("x")))
    assert breaker.state == "open"
    reports = [e for e in utils_logs if e["event"] == "breaker.predicate_failed"]
    assert len(reports) == 1
    assert "bug in predicate" in reports[0]["error"]


# --- BaseException -------------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_are_never_counted_nor_converted(
    exc_type: type[BaseException], clock: FakeClock
) -> None:
    breaker = CircuitBreaker("b", fail_max=1, clock=clock)
    with pytest.raises(exc_type):
        breaker.call(functools.partial(_raise, exc_type()))
    assert breaker.state == "closed"
    assert breaker.pybreaker.fail_counter == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_release_the_probe_lease(
    exc_type: type[BaseException], clock: FakeClock
) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("b", fail_max=1, reset_timeout=5, clock=clock, listeners=[recorder])
    trip(breaker)
    clock.advance(5)
    with pytest.raises(exc_type):
        breaker.call(functools.partial(_raise, exc_type()))
    assert breaker.state == "half_open"  # neither success nor failure...
    assert breaker.call(lambda: "next probe") == "next probe"  # ...but the lease is free
    assert breaker.state == "closed"
    assert recorder.kinds().count("success") == 1
    assert recorder.kinds().count("failure") == 1


def test_base_exception_in_a_with_block_releases_the_lease(clock: FakeClock) -> None:
    breaker = CircuitBreaker("b", fail_max=1, reset_timeout=5, clock=clock)
    trip(breaker)
    clock.advance(5)
    with pytest.raises(KeyboardInterrupt), breaker:
        raise KeyboardInterrupt
    with breaker:
        pass
    assert breaker.state == "closed"
    with pytest.raises(KeyboardInterrupt), breaker:  # closed: nothing to release
        raise KeyboardInterrupt
    assert breaker.state == "closed"


@async_test
async def test_cancelling_an_async_probe_releases_the_lease(clock: FakeClock) -> None:
    breaker = CircuitBreaker("b", fail_max=1, reset_timeout=5, clock=clock)
    trip(breaker)
    clock.advance(5)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(breaker.acall(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await breaker.acall(asyncio.sleep, 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "half_open"
    await breaker.acall(asyncio.sleep, 0)
    assert breaker.state == "closed"


# --- generations ----------------------------------------------------------------------------


def test_a_call_that_started_closed_cannot_close_a_half_open_circuit(clock: FakeClock) -> None:
    breaker = CircuitBreaker("g", fail_max=1, reset_timeout=10, clock=clock)
    inside, finish = threading.Event(), threading.Event()
    results: list[str] = []

    def slow() -> str:
        inside.set()
        assert finish.wait(5)
        return "late"

    worker = threading.Thread(target=lambda: results.append(breaker.call(slow)))
    worker.start()
    assert inside.wait(5)
    trip(breaker)  # generation 1: open
    clock.advance(10)
    with breaker:  # generation 2: half-open, this block is the probe
        finish.set()
        worker.join(5)
        assert results == ["late"]
        assert breaker.state == "half_open"  # the stale success did not close it
    assert breaker.state == "closed"


def test_a_stale_failure_does_not_count_in_a_new_generation(clock: FakeClock) -> None:
    breaker = CircuitBreaker("g", fail_max=1, clock=clock)

    def fail_late() -> None:
        breaker.open()
        breaker.reset()
        raise ConnectionError("late failure of generation 0")

    with pytest.raises(ConnectionError):
        breaker.call(fail_late)
    assert breaker.state == "closed"
    assert breaker.pybreaker.fail_counter == 0


def test_a_stale_outcome_cannot_reopen_or_close(clock: FakeClock) -> None:
    breaker = CircuitBreaker("g", fail_max=1, reset_timeout=10, clock=clock)
    storage, policy = breaker.storage, breaker.policy
    old = storage.admit(policy)
    trip(breaker)
    clock.advance(10)
    probe = storage.admit(policy)
    assert probe.probe
    assert storage.record(old, "failure", policy) == ()
    assert storage.record(old, "success", policy) == ()
    assert storage.record(old, "release", policy) == ()
    assert breaker.state == "half_open"
    assert storage.record(probe, "success", policy)[0] == Transition(
        BreakerState.HALF_OPEN, BreakerState.CLOSED, probe.generation + 1
    )


# --- concurrency ----------------------------------------------------------------------------


def test_calls_run_concurrently_through_a_closed_breaker() -> None:
    breaker = CircuitBreaker("concurrent")
    barrier = threading.Barrier(5, timeout=5)  # broken unless all 5 are inside at once
    results: list[int] = []

    def work(n: int) -> int:
        barrier.wait()
        return n

    threads = [
        threading.Thread(target=lambda n=n: results.append(breaker.call(work, n)))
        for n in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [0, 1, 2, 3, 4]


def test_calls_through_the_pybreaker_object_run_concurrently_too() -> None:
    breaker = CircuitBreaker("concurrent")
    barrier = threading.Barrier(3, timeout=5)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(breaker.pybreaker.call(barrier.wait)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [0, 1, 2]


@async_test
async def test_tasks_run_concurrently_through_a_closed_breaker() -> None:
    breaker = CircuitBreaker("concurrent")
    arrived = 0
    everyone_in = asyncio.Event()

    async def work(n: int) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 5:
            everyone_in.set()
        await asyncio.wait_for(everyone_in.wait(), 5)
        return n

    results = await asyncio.gather(*(breaker.acall(work, n) for n in range(5)))
    assert results == [0, 1, 2, 3, 4]


def test_exactly_one_probe_among_many_threads(clock: FakeClock) -> None:
    breaker = CircuitBreaker("one", fail_max=1, reset_timeout=10, clock=clock)
    trip(breaker)
    clock.advance(10)
    n = 24
    start = threading.Barrier(n, timeout=5)
    release = threading.Event()
    refused = threading.Condition()
    outcomes: list[str] = []

    def probe() -> str:
        assert release.wait(5)
        return "probe"

    def worker() -> None:
        start.wait()
        try:
            outcome = breaker.call(probe)
        except CircuitOpenError:
            outcome = "refused"
        with refused:
            outcomes.append(outcome)
            refused.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for thread in threads:
        thread.start()
    with refused:
        assert refused.wait_for(lambda: outcomes.count("refused") == n - 1, timeout=5)
    assert "probe" not in outcomes  # the one admitted call is still running
    release.set()
    for thread in threads:
        thread.join(10)
    assert outcomes.count("probe") == 1
    assert breaker.state == "closed"


@async_test
async def test_exactly_one_probe_among_many_tasks(clock: FakeClock) -> None:
    breaker = CircuitBreaker("one", fail_max=1, reset_timeout=10, clock=clock)
    trip(breaker)
    clock.advance(10)
    n = 50
    release = asyncio.Event()
    all_refused = asyncio.Event()
    refusals = 0

    async def probe() -> str:
        await release.wait()
        return "probe"

    async def caller() -> str:
        nonlocal refusals
        try:
            return await breaker.acall(probe)
        except CircuitOpenError:
            refusals += 1
            if refusals == n - 1:
                all_refused.set()
            return "refused"

    tasks = [asyncio.ensure_future(caller()) for _ in range(n)]
    await asyncio.wait_for(all_refused.wait(), 5)
    release.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count("probe") == 1
    assert outcomes.count("refused") == n - 1
    assert await breaker.astate() == "closed"


# --- listeners, logs, metrics ---------------------------------------------------------------


def test_pybreaker_listeners_are_called_as_pybreaker_would(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("l", fail_max=1, reset_timeout=5, clock=clock, listeners=[recorder])
    assert breaker.call(pow, 2, exp=3) == 8
    assert recorder.events == [
        ("before_call", "l", pow, (2,), {"exp": 3}),
        ("success", "l"),
    ]
    recorder.events.clear()
    trip(breaker)
    assert recorder.events[1:] == [
        ("failure", "l", "ConnectionError"),
        ("state_change", "closed", "open"),
    ]
    recorder.events.clear()
    with pytest.raises(CircuitOpenError):
        breaker.call(boom)
    assert recorder.events == []  # refused calls reach no listener
    clock.advance(5)
    breaker.call(lambda: None)
    assert recorder.kinds() == ["state_change", "before_call", "success", "state_change"]
    assert [e[1:] for e in recorder.events if e[0] == "state_change"] == [
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


def test_listeners_added_and_removed_later_through_pybreaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker("l", clock=clock)
    recorder = Recorder()
    breaker.pybreaker.add_listener(recorder)
    breaker.call(lambda: None)
    assert recorder.kinds() == ["before_call", "success"]
    breaker.pybreaker.remove_listener(recorder)
    breaker.call(lambda: None)
    assert recorder.kinds() == ["before_call", "success"]
    assert len(breaker.pybreaker.listeners) == 1  # ours: logs and metrics


def test_a_listener_that_raises_is_logged_once_and_skipped(
    clock: FakeClock, utils_logs: Logs
) -> None:
    class Broken(pybreaker.CircuitBreakerListener):
        def success(self, cb: Any) -> None:
            raise RuntimeError("listener bug")

    breaker = CircuitBreaker("l", clock=clock, listeners=[Broken()])
    assert breaker.call(lambda: 1) == 1
    assert breaker.call(lambda: 2) == 2
    reports = [e for e in utils_logs if e["event"] == "breaker.listener_failed"]
    assert len(reports) == 1
    assert reports[0]["breaker"] == "l"


def test_the_success_path_logs_nothing(
    clock: FakeClock, utils_logs: Logs, utils_metrics: InMemorySink
) -> None:
    breaker = CircuitBreaker("quiet", clock=clock)
    for _ in range(10):
        breaker.call(lambda: None)
    assert utils_logs == []
    assert utils_metrics.measurements == []


def test_refusals_are_counted(clock: FakeClock, utils_metrics: InMemorySink) -> None:
    breaker = CircuitBreaker("r", fail_max=1, clock=clock)
    trip(breaker)
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            breaker.call(boom)
    assert utils_metrics.total("breaker.rejected", breaker="r") == 3


# --- forcing the state ----------------------------------------------------------------------


def test_open_close_half_open_and_reset(clock: FakeClock, utils_logs: Logs) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("f", reset_timeout=10, clock=clock, listeners=[recorder])
    breaker.open()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    assert info.value.retry_after == 10
    breaker.half_open()
    assert breaker.state == "half_open"
    breaker.close()
    assert breaker.state == "closed"
    trip(breaker, 3)
    breaker.reset()
    assert breaker.pybreaker.fail_counter == 0
    breaker.reset()  # already closed: no state change reported
    assert [e[1:] for e in recorder.events if e[0] == "state_change"] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]
    assert [e["event"] for e in utils_logs] == [
        "breaker.opened",
        "breaker.half_open",
        "breaker.closed",
    ]


def test_reopening_an_open_breaker_restarts_its_timeout(clock: FakeClock) -> None:
    breaker = CircuitBreaker("f", reset_timeout=10, clock=clock)
    breaker.open()
    clock.advance(8)
    breaker.open()
    assert breaker.snapshot().retry_after == 10


@async_test
async def test_async_twins_of_the_state_methods(clock: FakeClock) -> None:
    breaker = CircuitBreaker("f", reset_timeout=10, clock=clock)
    await breaker.aopen()
    assert await breaker.astate() == "open"
    await breaker.ahalf_open()
    assert (await breaker.asnapshot()).state == "half_open"
    await breaker.areset()
    assert await breaker.astate() == "closed"


@async_test
async def test_aclose_is_a_deprecated_alias_of_areset(clock: FakeClock) -> None:
    breaker = CircuitBreaker("f", reset_timeout=10, clock=clock)
    await breaker.aopen()
    with pytest.warns(DeprecationWarning, match=r"aclose\(\) is deprecated.*use areset\(\)"):
        await breaker.aclose()
    assert breaker.state == "closed"


def test_pybreaker_methods_drive_the_same_state(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("pb", reset_timeout=10, clock=clock, listeners=[recorder])
    pb = breaker.pybreaker
    assert isinstance(pb, pybreaker.CircuitBreaker)
    assert pb.name == "pb"
    assert (pb.fail_max, pb.reset_timeout, pb.success_threshold) == (5, 10, 1)
    assert pb.open() is False  # throw_new_error_on_trip=False: the tripping error propagates
    assert breaker.state == "open"
    assert pb.state.name == "open"
    pb.half_open()
    assert pb.current_state == "half-open"
    pb.close()
    assert breaker.state == "closed"
    assert len([e for e in recorder.events if e[0] == "state_change"]) == 3
    with pb.calling():
        pass
    with pytest.raises(ConnectionError), pb.calling():
        raise ConnectionError
    assert pb.fail_counter == 1
    assert pb(lambda: "decorated by pybreaker")() == "decorated by pybreaker"


def test_pybreaker_state_object_follows_the_storage_without_side_effects(
    clock: FakeClock,
) -> None:
    recorder = Recorder()
    storage = MemoryBreakerStorage()
    breaker = CircuitBreaker("pb", storage=storage, clock=clock, listeners=[recorder])
    other = CircuitBreaker("pb", storage=storage, clock=clock)
    trip(breaker, 2)
    other.open()  # another breaker (think: process) changes the shared state
    assert breaker.pybreaker.state.name == "open"
    other.close()
    trip(other, 2)
    assert breaker.pybreaker.state.name == "closed"
    assert breaker.pybreaker.fail_counter == 2  # pybreaker's own getter would have reset it
    assert "state_change" not in recorder.kinds()[-1:]


def test_pybreaker_state_setter_still_works(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("pb", clock=clock, listeners=[recorder])
    breaker.pybreaker.state = "open"  # pybreaker's own setter: notifies its listeners
    assert recorder.events[-1] == ("state_change", "closed", "open")


# --- with / async with / decorator ------------------------------------------------------


def test_with_block_admits_on_enter_and_records_on_exit(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("w", fail_max=2, clock=clock, listeners=[recorder])
    with breaker as entered:
        assert entered is breaker
    for _ in range(2):
        with pytest.raises(ConnectionError), breaker:  # not suppressed
            raise ConnectionError
    assert breaker.state == "open"
    ran = []
    with pytest.raises(CircuitOpenError), breaker:
        ran.append(1)
    assert ran == []
    assert recorder.events[0][:2] == ("before_call", "w")


def test_nested_with_blocks_pair_up(clock: FakeClock) -> None:
    breaker = CircuitBreaker("w", fail_max=1, reset_timeout=5, clock=clock)
    trip(breaker)
    clock.advance(5)
    with breaker:  # probe
        with pytest.raises(CircuitOpenError), breaker:
            pass
        assert breaker.state == "half_open"
    assert breaker.state == "closed"


def test_exiting_a_block_never_entered_is_an_error() -> None:
    breaker = CircuitBreaker("w")
    with pytest.raises(RuntimeError, match="did not enter"):
        breaker.__exit__(None, None, None)


def test_with_block_state_is_per_thread(clock: FakeClock) -> None:
    breaker = CircuitBreaker("w", fail_max=1, clock=clock)
    inside, finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with breaker:
                inside.set()
                assert finish.wait(5)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(5)
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError
    finish.set()
    thread.join(5)
    assert errors == []
    assert breaker.state == "open"  # the other thread's stale success did not close it


@async_test
async def test_async_with(clock: FakeClock) -> None:
    breaker = CircuitBreaker("w", fail_max=1, reset_timeout=5, clock=clock)
    async with breaker as entered:
        assert entered is breaker
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    with pytest.raises(CircuitOpenError):
        async with breaker:
            pass
    clock.advance(5)
    with pytest.raises(NotFoundError):
        async with breaker:  # probe; a non-counted error proves the dependency answers
            raise NotFoundError("x")
    assert breaker.state == "closed"
    with pytest.raises(NotFoundError):
        async with breaker:  # closed: neutral
            raise NotFoundError("x")
    clock.advance(0)
    breaker.half_open()
    with pytest.raises(asyncio.CancelledError):
        async with breaker:
            raise asyncio.CancelledError
    assert breaker.state == "half_open"
    async with breaker:
        pass
    assert breaker.state == "closed"


def test_decorates_sync_functions_keeping_their_metadata(clock: FakeClock) -> None:
    breaker = CircuitBreaker("d", fail_max=1, clock=clock)

    @breaker
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    assert add(1, b=2) == 3
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."


@async_test
async def test_decorates_async_functions(clock: FakeClock) -> None:
    breaker = CircuitBreaker("d", fail_max=1, clock=clock)

    @breaker
    async def fetch(key: str) -> str:
        if key == "down":
            raise ConnectionError
        return key.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch("a") == "A"
    with pytest.raises(ConnectionError):
        await fetch("down")
    with pytest.raises(CircuitOpenError):
        await fetch("a")


def test_decorating_a_generator_function_is_a_type_error() -> None:
    breaker = CircuitBreaker("d")

    def numbers() -> Any:
        yield 1

    async def anumbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        breaker(numbers)
    with pytest.raises(TypeError, match="generator"):
        breaker(anumbers)


# --- errors ---------------------------------------------------------------------------------


def test_circuit_open_error_pickles(clock: FakeClock) -> None:
    breaker = CircuitBreaker("pickle", fail_max=1, reset_timeout=7, clock=clock)
    trip(breaker)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is CircuitOpenError
    assert (copy.retry_after, copy.details, copy.code, str(copy)) == (
        7,
        {"breaker": "pickle", "state": "open"},
        "circuit_open",
        str(info.value),
    )
    assert isinstance(copy, pybreaker.CircuitBreakerError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_max": 0}, "fail_max"),
        ({"fail_max": True}, "fail_max"),
        ({"fail_max": 1.5}, "fail_max"),
        ({"reset_timeout": -1}, "reset_timeout"),
        ({"reset_timeout": float("inf")}, "reset_timeout"),
        ({"reset_timeout": "30"}, "reset_timeout"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"probe_timeout": 0}, "probe_timeout"),
        ({"probe_timeout": float("nan")}, "probe_timeout"),
        ({"on": 42}, "on="),
        ({"on": ()}, "on="),
        ({"on": (ValueError, int)}, "on="),
        ({"exclude": [42]}, "exclude="),
        ({"exclude": [int]}, "exclude="),
        ({"storage": "redis://"}, "storage="),
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CircuitBreaker("bad", **kwargs)


@pytest.mark.parametrize("name", ["", None, 42])
def test_a_name_is_required(name: Any) -> None:
    with pytest.raises(ValidationError, match="name"):
        CircuitBreaker(name)


def test_repr_and_properties() -> None:
    breaker = CircuitBreaker("r", fail_max=2, reset_timeout=1.5)
    assert repr(breaker) == (
        "CircuitBreaker('r', fail_max=2, reset_timeout=1.5, success_threshold=1, "
        "storage=MemoryBreakerStorage)"
    )
    assert breaker.name == "r"
    assert breaker.policy == BreakerPolicy(2, 1.5, 1, 1.5)
    assert "allowed=True" in repr(breaker.storage.admit(breaker.policy))


def test_breaker_state_enum() -> None:
    assert f"{BreakerState.HALF_OPEN}" == "half_open"
    assert BreakerState.HALF_OPEN.pybreaker_name == "half-open"
    assert BreakerState.from_pybreaker("half_open") is BreakerState.HALF_OPEN
    with pytest.raises(ValidationError, match="unknown circuit breaker state"):
        BreakerState.from_pybreaker("ajar")


# --- storages -------------------------------------------------------------------------------


def test_default_clock_is_read_at_call_time() -> None:
    fake = FakeClock(1000.0)
    _timing.clock = fake  # the conftest fixture restores it
    breaker = CircuitBreaker("clock", fail_max=1, reset_timeout=5)
    trip(breaker)
    fake.advance(5)
    breaker.call(lambda: None)
    assert breaker.state == "closed"


def test_a_shared_memory_storage_shares_state_per_name(clock: FakeClock) -> None:
    storage = MemoryBreakerStorage()
    a = CircuitBreaker("x", storage=storage, fail_max=2, clock=clock)
    b = CircuitBreaker("x", storage=storage, fail_max=2, clock=clock)
    c = CircuitBreaker("y", storage=storage, fail_max=2, clock=clock)
    trip(a, 1)
    trip(b, 1)
    assert a.state == b.state == "open"
    assert c.state == "closed"
    assert a.storage is b.storage is not c.storage


def test_an_attached_memory_storage_belongs_to_one_name() -> None:
    cell = CircuitBreaker("x").storage
    policy = BreakerPolicy(5, 30.0, 1, 30.0)
    assert cell.attach("x", policy=policy) is cell
    with pytest.raises(ValidationError, match="holds the state of breaker 'x'"):
        cell.attach("y", policy=policy)


def test_memory_storage_implements_pybreakers_interface(clock: FakeClock) -> None:
    breaker = CircuitBreaker("m", fail_max=3, reset_timeout=30, clock=clock)
    storage = breaker.storage
    assert isinstance(storage, pybreaker.CircuitBreakerStorage)
    storage.increment_counter()
    storage.increment_counter()
    assert storage.counter == breaker.pybreaker.fail_counter == 2
    storage.reset_counter()
    assert storage.counter == 0
    storage.increment_success_counter()
    assert storage.success_counter == 1
    storage.reset_success_counter()
    assert storage.success_counter == 0
    never_opened = storage.opened_at
    assert never_opened is None
    storage.state = "open"
    assert breaker.state == "open"
    assert storage.opened_at is not None
    # pybreaker's meaning of opened_at: the reset timeout runs from that wall-clock instant.
    storage.opened_at = datetime.now(timezone.utc) - timedelta(seconds=29)
    assert breaker.snapshot().retry_after == pytest.approx(1, abs=0.5)
    storage.opened_at = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=31)
    assert breaker.call(lambda: "probe") == "probe"
    assert storage.state == "closed"


def test_a_plain_pybreaker_memory_storage_works(clock: FakeClock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    breaker = CircuitBreaker("pm", storage=storage, fail_max=2, reset_timeout=10, clock=clock)
    assert breaker.storage.nonblocking
    trip(breaker)
    assert storage.state == "open"
    assert breaker.pybreaker.current_state == "open"
    assert storage.opened_at is not None
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    assert info.value.retry_after == 10
    clock.advance(10)
    with breaker:
        assert storage.state == "half-open"
        with pytest.raises(CircuitOpenError):
            breaker.call(boom)
    assert storage.state == "closed"
    assert storage.counter == 0
    trip(breaker, 1)
    breaker.call(lambda: None)
    assert storage.counter == 0
    assert breaker.snapshot().failures == 0


def test_changes_made_by_others_to_a_pybreaker_storage_are_noticed(clock: FakeClock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    breaker = CircuitBreaker("pm", storage=storage, fail_max=1, reset_timeout=30, clock=clock)
    old = breaker.storage.admit(breaker.policy)
    # Another process opened it 25 s ago by the wall clock.
    storage.opened_at = datetime.now(timezone.utc) - timedelta(seconds=25)
    storage.state = pybreaker.STATE_OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(boom)
    assert info.value.retry_after == pytest.approx(5, abs=0.5)
    assert breaker.storage.record(old, "success", breaker.policy) == ()  # stale generation
    storage.opened_at = datetime.now(timezone.utc) - timedelta(seconds=31)
    breaker.call(lambda: None)
    assert breaker.state == "closed"
    # Opened elsewhere with no opened_at at all: probe at once, as pybreaker would.
    bare = pybreaker.CircuitMemoryStorage(pybreaker.STATE_OPEN)
    assert CircuitBreaker("bare", storage=bare, clock=clock).call(lambda: 1) == 1
    assert bare.state == "closed"


class ThreadedStorage(pybreaker.CircuitBreakerStorage):
    """A pybreaker storage that is not CircuitMemoryStorage: treated as blocking."""

    def __init__(self) -> None:
        super().__init__("custom")
        self.inner = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.threads: set[str] = set()

    @property
    def state(self) -> str:
        self.threads.add(threading.current_thread().name)
        return self.inner.state

    @state.setter
    def state(self, state: str) -> None:
        self.inner.state = state

    def increment_counter(self) -> None:
        self.inner.increment_counter()

    def reset_counter(self) -> None:
        self.inner.reset_counter()

    def increment_success_counter(self) -> None:
        self.inner.increment_success_counter()

    def reset_success_counter(self) -> None:
        self.inner.reset_success_counter()

    @property
    def counter(self) -> int:
        return self.inner.counter

    @property
    def success_counter(self) -> int:
        return self.inner.success_counter

    @property
    def opened_at(self) -> datetime | None:
        return self.inner.opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.inner.opened_at = value


@async_test
async def test_a_blocking_storage_is_driven_from_a_worker_thread(clock: FakeClock) -> None:
    storage = ThreadedStorage()
    breaker = CircuitBreaker("t", storage=storage, fail_max=1, reset_timeout=5, clock=clock)
    assert not breaker.storage.nonblocking
    storage.threads.clear()

    async def fail() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await breaker.acall(fail)
    assert threading.current_thread().name not in storage.threads
    assert await breaker.astate() == "open"
    clock.advance(5)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await breaker.acall(cancelled)
    assert await breaker.acall(asyncio.sleep, 0, "ok") == "ok"
    assert storage.state == "closed"
    await breaker.aopen()
    assert storage.state == "open"
    # The pybreaker interface of the adapter reads through to the wrapped storage.
    adapter = breaker.storage
    assert adapter.state == "open"
    assert adapter.counter == adapter.success_counter == 0
    adapter.opened_at = datetime.now(timezone.utc)
    assert adapter.opened_at == storage.opened_at
    adapter.state = "closed"
    assert storage.state == "closed"


# --- a model of the state machine, checked by hypothesis ------------------------------------


class Model:
    """The specification, as plainly as it can be written."""

    def __init__(self, fail_max: int, reset: float, threshold: int, probe: float) -> None:
        self.fail_max, self.reset, self.threshold, self.probe_timeout = (
            fail_max,
            reset,
            threshold,
            probe,
        )
        self.state = "closed"
        self.failures = self.successes = self.generation = 0
        self.opened_at = 0.0
        self.lease: int | None = None
        self.lease_expires = 0.0
        self.tokens = 0

    def enter(self, state: str, now: float) -> None:
        self.state = state
        self.generation += 1
        self.successes = 0
        self.lease = None
        if state == "open":
            self.opened_at = now
        else:
            self.failures = 0

    def take_lease(self, now: float) -> int:
        self.tokens += 1
        self.lease, self.lease_expires = self.tokens, now + self.probe_timeout
        return self.tokens

    def admit(self, now: float) -> tuple[bool, int, int | None, float]:
        """(allowed, generation, probe token, retry_after)."""
        if self.state == "closed":
            return True, self.generation, None, 0.0
        if self.state == "open":
            if now < self.opened_at + self.reset:
                return False, self.generation, None, self.opened_at + self.reset - now
            self.enter("half_open", now)
            return True, self.generation, self.take_lease(now), 0.0
        if self.lease is not None and now < self.lease_expires:
            return False, self.generation, None, self.lease_expires - now
        return True, self.generation, self.take_lease(now), 0.0

    def record(self, generation: int, token: int | None, outcome: str, now: float) -> None:
        if generation != self.generation:
            return
        if self.state == "closed":
            if outcome == "failure":
                self.failures += 1
                if self.failures >= self.fail_max:
                    self.enter("open", now)
            elif outcome == "success":
                self.failures = 0
            return
        if self.state != "half_open" or token is None:
            return
        if self.lease is not None and self.lease != token:
            return
        self.lease = None
        if outcome == "failure":
            self.enter("open", now)
        elif outcome == "success":
            self.successes += 1
            if self.successes >= self.threshold:
                self.enter("closed", now)


class BreakerMachine(RuleBasedStateMachine):
    """Random calls, in-flight calls and time through a real breaker and the model."""

    pending = Bundle("pending")

    @initialize(
        fail_max=st.integers(1, 4),
        reset=st.sampled_from([0.0, 1.0, 5.0, 30.0]),
        threshold=st.integers(1, 3),
        probe=st.sampled_from([0.5, 2.0, 10.0]),
    )
    def setup(self, fail_max: int, reset: float, threshold: int, probe: float) -> None:
        self.clock = FakeClock(1000.0)
        self.breaker = CircuitBreaker(
            "model",
            fail_max=fail_max,
            reset_timeout=reset,
            success_threshold=threshold,
            probe_timeout=probe,
            clock=self.clock,
        )
        self.model = Model(fail_max, reset, threshold, probe)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 3.0, 10.0, 40.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(kind=st.sampled_from(["success", "failure", "neutral", "interrupt"]))
    def call(self, kind: str) -> None:
        allowed, _, token, retry_after = self.model.admit(self.clock.now)
        generation = self.model.generation
        functions: dict[str, Callable[[], object]] = {
            "success": lambda: "ok",
            "failure": boom,
            "neutral": not_found,
            "interrupt": functools.partial(_raise, KeyboardInterrupt()),
        }
        function = functions[kind]
        expected: type[BaseException] | None = {
            "success": None,
            "failure": ConnectionError,
            "neutral": NotFoundError,
            "interrupt": KeyboardInterrupt,
        }[kind]
        raised: BaseException | None = None
        try:
            self.breaker.call(function)
        except BaseException as error:
            raised = error
        if isinstance(raised, CircuitOpenError):
            assert not allowed
            assert raised.retry_after == pytest.approx(retry_after)
            return
        assert allowed
        if expected is None:
            assert raised is None
        else:
            assert type(raised) is expected
        outcome = {
            "success": "success",
            "failure": "failure",
            "neutral": "success" if token is not None else "none",
            "interrupt": "release",
        }[kind]
        self.model.record(generation, token, outcome, self.clock.now)

    @rule(target=pending)
    def begin(self) -> Any:
        admission = self.breaker.storage.admit(self.breaker.policy)
        allowed, generation, token, _ = self.model.admit(self.clock.now)
        assert admission.allowed == allowed
        assert admission.probe == (token is not None)
        return (admission, generation, token) if allowed else None

    @rule(
        entry=consumes(pending),
        outcome=st.sampled_from(["success", "failure", "release"]),
    )
    def finish(self, entry: Any, outcome: Any) -> None:
        if entry is None:
            return
        admission, generation, token = entry
        self.breaker.storage.record(admission, outcome, self.breaker.policy)
        self.model.record(generation, token, outcome, self.clock.now)

    @invariant()
    def agrees_with_the_model(self) -> None:
        snapshot = self.breaker.snapshot()
        assert snapshot.state.value == self.model.state
        assert snapshot.generation == self.model.generation
        assert snapshot.successes == self.model.successes
        if self.model.state == "closed":
            assert snapshot.failures == self.model.failures
        assert self.breaker.pybreaker.current_state == snapshot.state.pybreaker_name


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- module-level checks --------------------------------------------------------------------


def test_docstring_examples() -> None:
    finder, runner = (
        doctest.DocTestFinder(),
        doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE),
    )
    report: list[str] = []
    for test in finder.find(breaker_module, breaker_module.__name__):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
    assert results.attempted > 40


def test_every_public_name_has_an_example() -> None:
    for name in breaker_module.__all__:
        obj = getattr(breaker_module, name)
        if name in {"Outcome"}:
            continue
        assert "Example:" in (obj.__doc__ or ""), name


def test_admission_is_notable_when_refused_or_transitioning() -> None:
    closed = BreakerState.CLOSED
    assert not Admission(allowed=True, state=closed, generation=0).notable
    assert Admission(allowed=False, state=closed, generation=0).notable
    transition = Transition(BreakerState.OPEN, BreakerState.HALF_OPEN, 1)
    assert Admission(allowed=True, state=closed, generation=1, transitions=(transition,)).notable


def test_importing_the_breaker_needs_no_redis() -> None:
    code = (
        "import sys\n"
        "sys.modules['redis'] = None  # as if redis were not installed\n"
        "from utils.resilience.breaker import CircuitBreaker\n"
        "assert CircuitBreaker('x').call(len, 'ab') == 2\n"
        "assert 'utils.resilience._breaker_redis' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@async_test
async def test_acall_reports_to_listeners_and_handles_every_outcome(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker("a", fail_max=1, clock=clock, listeners=[recorder])

    async def missing() -> None:
        raise NotFoundError("x")

    async def interrupted() -> None:
        raise KeyboardInterrupt

    async def answer(value: int) -> int:
        return value

    assert await breaker.acall(answer, 42) == 42
    with pytest.raises(NotFoundError):
        await breaker.acall(missing)  # neutral
    with pytest.raises(KeyboardInterrupt):
        await breaker.acall(interrupted)  # not counted
    assert breaker.state == "closed"
    assert recorder.kinds() == ["before_call", "success", "before_call", "before_call"]
    assert recorder.events[0][2] is answer


def test_storage_operations_that_change_nothing(clock: FakeClock) -> None:
    breaker = CircuitBreaker("n", fail_max=1, reset_timeout=10, clock=clock)
    storage, policy = breaker.storage, breaker.policy
    trip(breaker)
    refused = storage.admit(policy)
    assert not refused.allowed
    assert storage.record(refused, "failure", policy) == ()  # nothing was admitted
    assert breaker.state == "open"


def test_a_pybreaker_storage_closed_elsewhere_and_plain_successes(clock: FakeClock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    breaker = CircuitBreaker("pm", storage=storage, fail_max=1, reset_timeout=30, clock=clock)
    adapter, policy = breaker.storage, breaker.policy
    breaker.call(lambda: None)  # a success with nothing to reset
    assert storage.counter == 0
    trip(breaker)
    storage.state = pybreaker.STATE_CLOSED  # closed by someone else
    assert breaker.call(lambda: "runs") == "runs"
    admission = adapter.admit(policy)
    assert adapter.record(admission, "release", policy) == ()  # not a probe: nothing held
