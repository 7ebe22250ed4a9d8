"""Tests of utils.resilience.bulkhead: slots, the FIFO queue, timeouts, no leaks, threads+tasks."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from utils.core import (
    InMemorySink,
    OperationTimeoutError,
    UnavailableError,
    ValidationError,
    deadline,
)
from utils.core.testing import wait_until
from utils.resilience import Bulkhead, BulkheadFullError, ResilienceError

BULKHEAD_MODULE: ModuleType = importlib.import_module("utils.resilience.bulkhead")


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < give_up, "timed out waiting for the other tasks"
        await asyncio.sleep(0.001)


class Holder:
    """A thread that takes a slot and keeps it until ``release()``."""

    def __init__(self, bulkhead: Bulkhead) -> None:
        self.gate = threading.Event()
        self.inside = threading.Event()
        self.thread = threading.Thread(target=bulkhead.call, args=(self._hold,))
        self.thread.start()
        assert self.inside.wait(10)

    def _hold(self) -> None:
        self.inside.set()
        assert self.gate.wait(10)

    def release(self) -> None:
        self.gate.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def start(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args)
    thread.start()
    return thread


def assert_idle(bulkhead: Bulkhead) -> None:
    assert bulkhead.active == 0
    assert bulkhead.waiting == 0


# --------------------------------------------------------------------------- concurrency


def test_max_concurrent_is_enforced_across_threads() -> None:
    bulkhead = Bulkhead(3, max_waiting=10)
    gate = threading.Event()
    lock = threading.Lock()
    inside = 0
    most = 0
    done: list[int] = []

    def work(index: int) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        assert gate.wait(10)
        with lock:
            inside -= 1
        done.append(index)

    threads = [start(bulkhead.call, work, i) for i in range(8)]
    wait_until(lambda: bulkhead.active == 3 and bulkhead.waiting == 5)
    assert most == 3
    gate.set()
    for thread in threads:
        thread.join(10)
    assert sorted(done) == list(range(8))
    assert most == 3
    assert_idle(bulkhead)


def test_max_concurrent_is_enforced_across_tasks() -> None:
    bulkhead = Bulkhead(2, max_waiting=10)

    async def main() -> int:
        gate = asyncio.Event()
        inside = most = 0

        async def work() -> None:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            await gate.wait()
            inside -= 1

        tasks = [asyncio.create_task(bulkhead.acall(work)) for _ in range(6)]
        await async_wait_until(lambda: bulkhead.active == 2 and bulkhead.waiting == 4)
        gate.set()
        await asyncio.gather(*tasks)
        return most

    assert asyncio.run(main()) == 2
    assert_idle(bulkhead)


# --------------------------------------------------------------------------- refusals


def test_full_without_a_queue_is_refused_at_once(utils_metrics: InMemorySink) -> None:
    bulkhead = Bulkhead(1, name="db")

    def outer() -> BulkheadFullError:
        assert bulkhead.active == 1
        with pytest.raises(BulkheadFullError) as info:
            bulkhead.call(lambda: "never")
        return info.value

    error = bulkhead.call(outer)
    assert isinstance(error, UnavailableError)
    assert isinstance(error, ResilienceError)
    assert error.retryable
    assert error.code == "bulkhead_full"
    assert error.details == {"bulkhead": "db", "reason": "no free slot"}
    assert str(error) == "bulkhead 'db' is full (1 running, 0 waiting allowed): no free slot"
    assert utils_metrics.count("bulkhead.rejected", bulkhead="db") == 1
    assert_idle(bulkhead)


def test_full_without_a_queue_is_refused_at_once_async(utils_metrics: InMemorySink) -> None:
    bulkhead = Bulkhead(1, name="api")

    async def inner() -> str:
        return "never"  # pragma: no cover

    async def outer() -> None:
        with pytest.raises(BulkheadFullError, match="no free slot"):
            await bulkhead.acall(inner)

    asyncio.run(bulkhead.acall(outer))
    assert utils_metrics.count("bulkhead.rejected", bulkhead="api") == 1
    assert_idle(bulkhead)


def test_full_queue_is_refused(utils_metrics: InMemorySink) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, name="q")
    holder = Holder(bulkhead)
    ran: list[str] = []
    waiter = start(bulkhead.call, ran.append, "queued")
    wait_until(lambda: bulkhead.waiting == 1)
    with pytest.raises(BulkheadFullError) as info:
        bulkhead.call(ran.append, "refused")
    assert info.value.details["reason"] == "queue full"
    assert "(1 running, 1 waiting allowed): queue full" in str(info.value)
    holder.release()
    waiter.join(10)
    assert ran == ["queued"]
    assert utils_metrics.count("bulkhead.rejected", bulkhead="q") == 1
    assert_idle(bulkhead)


def test_queue_is_first_come_first_served() -> None:
    bulkhead = Bulkhead(1, max_waiting=5)
    holder = Holder(bulkhead)
    order: list[int] = []
    threads = []
    for index in range(5):
        threads.append(start(bulkhead.call, order.append, index))
        wait_until(lambda n=index + 1: bulkhead.waiting == n)  # type: ignore[misc]
    holder.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]
    assert_idle(bulkhead)


def test_wait_timeout_is_refused_and_leaves_the_queue(utils_metrics: InMemorySink) -> None:
    bulkhead = Bulkhead(1, max_waiting=3, timeout=0, name="t")

    def outer() -> None:
        with pytest.raises(BulkheadFullError) as info:
            bulkhead.call(lambda: "never")
        assert info.value.details["reason"] == "timed out waiting for a slot"
        assert bulkhead.waiting == 0

    bulkhead.call(outer)
    assert utils_metrics.count("bulkhead.rejected", bulkhead="t") == 1
    assert_idle(bulkhead)


def test_wait_timeout_is_refused_async(utils_metrics: InMemorySink) -> None:
    bulkhead = Bulkhead(1, max_waiting=3, timeout=0, name="t")

    async def never() -> None:
        raise AssertionError("must not run")  # pragma: no cover

    async def outer() -> None:
        with pytest.raises(BulkheadFullError) as info:
            await bulkhead.acall(never)
        assert info.value.details["reason"] == "timed out waiting for a slot"
        assert info.value.__suppress_context__
        assert bulkhead.waiting == 0

    asyncio.run(bulkhead.acall(outer))
    assert utils_metrics.count("bulkhead.rejected", bulkhead="t") == 1
    assert_idle(bulkhead)


def test_a_waiter_that_gets_a_slot_in_time_runs() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, timeout=10)
    holder = Holder(bulkhead)
    results: list[str] = []
    waiter = start(lambda: results.append(bulkhead.call(str.upper, "ran")))
    wait_until(lambda: bulkhead.waiting == 1)
    holder.release()
    waiter.join(10)
    assert results == ["RAN"]
    assert_idle(bulkhead)


def test_deadline_caps_the_wait() -> None:
    bulkhead = Bulkhead(1, max_waiting=3)  # no timeout of its own

    def outer() -> None:
        with deadline(0), pytest.raises(OperationTimeoutError, match="deadline exceeded"):
            bulkhead.call(lambda: "never")

    bulkhead.call(outer)
    assert_idle(bulkhead)


def test_deadline_caps_the_wait_async() -> None:
    bulkhead = Bulkhead(1, max_waiting=3, timeout=60)

    async def never() -> None:
        raise AssertionError("must not run")  # pragma: no cover

    async def outer() -> None:
        with deadline(0), pytest.raises(OperationTimeoutError, match="deadline exceeded"):
            await bulkhead.acall(never)

    asyncio.run(bulkhead.acall(outer))
    assert_idle(bulkhead)


# --------------------------------------------------------------------------- no leaks


@pytest.mark.parametrize("error_type", [ValueError, KeyboardInterrupt, SystemExit])
def test_slot_is_released_when_the_call_raises(error_type: type[BaseException]) -> None:
    bulkhead = Bulkhead(1)

    def fail() -> None:
        raise error_type("boom")

    with pytest.raises(error_type):
        bulkhead.call(fail)
    assert_idle(bulkhead)
    assert bulkhead.call(lambda: "again") == "again"


@pytest.mark.parametrize("error_type", [ValueError, KeyboardInterrupt, asyncio.CancelledError])
def test_slot_is_released_when_the_async_call_raises(error_type: type[BaseException]) -> None:
    bulkhead = Bulkhead(1)

    async def fail() -> None:
        await asyncio.sleep(0)
        raise error_type("boom")

    async def main() -> BaseException | None:
        try:
            await bulkhead.acall(fail)
        except BaseException as error:  # checked below
            return error
        return None  # pragma: no cover

    assert isinstance(asyncio.run(main()), error_type)
    assert_idle(bulkhead)


def test_slot_is_released_when_the_running_task_is_cancelled() -> None:
    bulkhead = Bulkhead(1, max_waiting=1)

    async def main() -> list[str]:
        ran: list[str] = []

        async def hang() -> None:
            await asyncio.Event().wait()

        async def job() -> None:
            ran.append("next")

        running = asyncio.create_task(bulkhead.acall(hang))
        await async_wait_until(lambda: bulkhead.active == 1)
        queued = asyncio.create_task(bulkhead.acall(job))
        await async_wait_until(lambda: bulkhead.waiting == 1)
        running.cancel()
        await queued  # the cancelled call's slot went to the queued one
        with pytest.raises(asyncio.CancelledError):
            await running
        return ran

    assert asyncio.run(main()) == ["next"]
    assert_idle(bulkhead)


def test_released_slot_passes_to_a_waiter_on_exception() -> None:
    bulkhead = Bulkhead(1, max_waiting=1)
    inside = threading.Event()
    go = threading.Event()
    ran: list[str] = []

    def fail() -> None:
        inside.set()
        assert go.wait(10)
        raise ValueError("boom")

    def run_fail() -> None:
        with pytest.raises(ValueError):
            bulkhead.call(fail)

    failing = start(run_fail)
    assert inside.wait(10)
    waiter = start(bulkhead.call, ran.append, "waiter")
    wait_until(lambda: bulkhead.waiting == 1)
    go.set()
    failing.join(10)
    waiter.join(10)
    assert ran == ["waiter"]
    assert_idle(bulkhead)


def test_a_waiting_task_cancelled_before_its_turn_leaves_the_queue() -> None:
    bulkhead = Bulkhead(1, max_waiting=2)

    async def main() -> None:
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        async def job() -> None:
            raise AssertionError("must not run")  # pragma: no cover

        holding = asyncio.create_task(bulkhead.acall(hold))
        await asyncio.sleep(0)
        queued = asyncio.create_task(bulkhead.acall(job))
        await async_wait_until(lambda: bulkhead.waiting == 1)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert bulkhead.waiting == 0
        assert bulkhead.active == 1
        gate.set()
        await holding

    asyncio.run(main())
    assert_idle(bulkhead)


def test_a_waiting_task_cancelled_after_being_granted_passes_the_slot_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grants: list[object] = []
    real_grant = BULKHEAD_MODULE._Waiter.grant

    def grant(waiter: Any) -> None:
        grants.append(waiter)
        real_grant(waiter)

    monkeypatch.setattr(BULKHEAD_MODULE._Waiter, "grant", grant)
    bulkhead = Bulkhead(1, max_waiting=2)

    async def main() -> list[str]:
        gate = asyncio.Event()
        ran: list[str] = []

        async def hold() -> None:
            await gate.wait()

        async def job(name: str) -> None:
            ran.append(name)

        holding = asyncio.create_task(bulkhead.acall(hold))
        await asyncio.sleep(0)
        second = asyncio.create_task(bulkhead.acall(job, "second"))
        third = asyncio.create_task(bulkhead.acall(job, "third"))
        await async_wait_until(lambda: bulkhead.waiting == 2)
        gate.set()
        await holding
        # The holder released: the slot was granted to "second", which has not run yet.
        assert len(grants) == 1
        assert bulkhead.waiting == 1
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await third
        return ran

    assert asyncio.run(main()) == ["third"]
    assert len(grants) == 2  # "second" was granted, and passed its slot to "third"
    assert_idle(bulkhead)


def test_an_async_wait_that_times_out_as_it_is_granted_keeps_the_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, timeout=5)

    async def main() -> list[str]:
        gate = asyncio.Event()
        ran: list[str] = []

        async def hold() -> None:
            await gate.wait()

        async def job() -> None:
            ran.append("job")

        holding = asyncio.create_task(bulkhead.acall(hold))
        await asyncio.sleep(0)

        async def racy_wait_for(future: asyncio.Future[None], timeout: float | None) -> None:
            # Our wait times out (wait_for cancels the future) and, at that very moment,
            # the holder releases and grants us the slot.
            future.cancel()
            gate.set()
            await holding
            raise TimeoutError

        monkeypatch.setattr(asyncio, "wait_for", racy_wait_for)
        await bulkhead.acall(job)
        await asyncio.sleep(0)  # let the (now pointless) grant callback run
        return ran

    assert asyncio.run(main()) == ["job"]
    assert_idle(bulkhead)


def _patch_event(
    monkeypatch: pytest.MonkeyPatch, wait: Callable[[threading.Event, float | None], bool]
) -> None:
    class RacyEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            return wait(self, timeout)

    fake_threading = SimpleNamespace(Event=RacyEvent, Lock=threading.Lock)
    monkeypatch.setattr(BULKHEAD_MODULE, "threading", fake_threading)


def test_a_sync_wait_that_times_out_as_it_is_granted_keeps_the_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, timeout=5)
    holder = Holder(bulkhead)

    def racy_wait(event: threading.Event, timeout: float | None) -> bool:
        holder.release()  # grants our waiter...
        assert threading.Event.wait(event, 0)
        return False  # ...just as the wait timed out

    _patch_event(monkeypatch, racy_wait)
    assert bulkhead.call(lambda: "ran") == "ran"
    assert_idle(bulkhead)


def test_an_interrupted_sync_waiter_that_was_granted_passes_the_slot_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bulkhead = Bulkhead(1, max_waiting=1)
    holder = Holder(bulkhead)

    def interrupted(event: threading.Event, timeout: float | None) -> bool:
        holder.release()  # grants our waiter, then Ctrl-C arrives
        raise KeyboardInterrupt

    _patch_event(monkeypatch, interrupted)
    with pytest.raises(KeyboardInterrupt):
        bulkhead.call(lambda: "never")
    assert_idle(bulkhead)


def test_an_interrupted_sync_waiter_leaves_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    bulkhead = Bulkhead(1, max_waiting=1)
    holder = Holder(bulkhead)

    def interrupted(event: threading.Event, timeout: float | None) -> bool:
        raise KeyboardInterrupt

    _patch_event(monkeypatch, interrupted)
    with pytest.raises(KeyboardInterrupt):
        bulkhead.call(lambda: "never")
    assert bulkhead.waiting == 0
    assert bulkhead.active == 1
    holder.release()
    assert_idle(bulkhead)


# --------------------------------------------------------------------------- threads + tasks


def test_threads_and_tasks_share_one_queue_in_order() -> None:
    bulkhead = Bulkhead(1, max_waiting=3)
    holder = Holder(bulkhead)
    order: list[str] = []

    async def main() -> None:
        async def job(name: str) -> None:
            await asyncio.sleep(0)
            order.append(name)

        first = asyncio.create_task(bulkhead.acall(job, "task 1"))
        await async_wait_until(lambda: bulkhead.waiting == 1)
        thread = start(bulkhead.call, order.append, "thread")
        await async_wait_until(lambda: bulkhead.waiting == 2)
        second = asyncio.create_task(bulkhead.acall(job, "task 2"))
        await async_wait_until(lambda: bulkhead.waiting == 3)
        holder.release()
        await asyncio.gather(first, second)
        thread.join(10)

    asyncio.run(main())
    assert order == ["task 1", "thread", "task 2"]
    assert_idle(bulkhead)


def test_tasks_in_several_event_loops_share_one_bulkhead() -> None:
    bulkhead = Bulkhead(2, max_waiting=20)
    lock = threading.Lock()
    inside = most = 0

    async def work() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        await asyncio.sleep(0.001)
        with lock:
            inside -= 1

    def loop_thread() -> None:
        async def main() -> None:
            await asyncio.gather(*(bulkhead.acall(work) for _ in range(5)))

        asyncio.run(main())

    threads = [start(loop_thread) for _ in range(4)]
    for thread in threads:
        thread.join(30)
    assert most <= 2
    assert_idle(bulkhead)


# --------------------------------------------------------------------------- API


def test_decorator_sync_and_async() -> None:
    bulkhead = Bulkhead(2, name="db")

    @bulkhead
    def query(x: int) -> int:
        """Run a query."""
        return x + bulkhead.active

    @bulkhead
    async def aquery(x: int) -> int:
        return x + bulkhead.active

    assert query(10) == 11
    assert query.__name__ == "query"
    assert query.__doc__ == "Run a query."
    assert query.__wrapped__ is not None  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(aquery)
    assert asyncio.run(aquery(20)) == 21
    assert_idle(bulkhead)


def test_decorating_a_generator_function_is_a_type_error() -> None:
    def rows() -> Iterator[int]:
        yield 1

    async def arows() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"Bulkhead\('db'\) cannot decorate the generator"):
        Bulkhead(1, name="db")(rows)
    with pytest.raises(TypeError, match="generator function"):
        Bulkhead(1)(arows)


def test_properties_and_repr() -> None:
    bulkhead = Bulkhead(4, max_waiting=2, timeout=1.5, name="db")
    assert (bulkhead.max_concurrent, bulkhead.max_waiting, bulkhead.timeout) == (4, 2, 1.5)
    assert bulkhead.name == "db"
    assert repr(bulkhead) == (
        "Bulkhead(name='db', max_concurrent=4, max_waiting=2, active=0, waiting=0)"
    )

    def inside() -> str:
        return repr(bulkhead)

    assert "active=1" in bulkhead.call(inside)
    assert Bulkhead(1).name == "bulkhead"


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((0,), {}, "max_concurrent must be an int > 0"),
        ((2.5,), {}, "max_concurrent must be an int > 0"),
        (("2",), {}, "max_concurrent must be an int > 0"),
        ((True,), {}, "max_concurrent must be an int > 0"),
        ((1,), {"max_waiting": -1}, "max_waiting must be an int >= 0"),
        ((1,), {"max_waiting": 1.5}, "max_waiting must be an int >= 0"),
        ((1,), {"timeout": -1}, "timeout must be seconds >= 0 or a timedelta"),
        ((1,), {"timeout": math.nan}, "timeout must be seconds >= 0 or a timedelta"),
        ((1,), {"timeout": 1e10}, "timeout must be seconds or a timedelta, at most"),
    ],
    ids=repr,
)
def test_invalid_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Bulkhead(*args, **kwargs)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        Bulkhead(0, max_waiting=-1, timeout=-1, name="x")
    assert str(info.value).startswith("invalid bulkhead 'x': ")
    assert str(info.value).count(";") == 2
