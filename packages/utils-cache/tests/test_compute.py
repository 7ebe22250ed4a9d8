"""get_or_set: single-flight (threads and tasks), errors, re-entrancy, SWR, negative caching, locks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from utils.cache import _compute
from utils.cache._compute import SWR_MARK, Policy, aget_or_set, get_or_set
from utils.cache._flight import RETRY, TASKS, THREADS, Flight, Flights
from utils.cache.errors import ReentrantComputeError
from utils.cache.memory import MemoryCache
from utils.cache.protocol import MISSING
from utils.core import OperationTimeoutError, ValidationError, bind_context, deadline, get_context
from utils.core.metrics import InMemorySink
from utils.core.testing import async_wait_until, wait_until


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(1_700_000_000.0)
    monkeypatch.setattr(_compute, "wall_clock", clock)
    return clock


@pytest.fixture(autouse=True)
def _no_flights_left() -> Iterator[None]:
    yield
    assert len(THREADS) == 0
    assert len(TASKS) == 0


def count_lock_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every cross-process lock attempt of the async miss protocol (its key job)."""
    attempts: list[object] = []
    steps = list(_compute._ASYNC_STEPS)
    acquire = steps[_compute._ACQUIRE]

    async def counted(job: Any, held: Any, wait: float) -> Any:
        attempts.append(job.key)
        return await acquire(job, held, wait)

    steps[_compute._ACQUIRE] = counted
    monkeypatch.setattr(_compute, "_ASYNC_STEPS", tuple(steps))
    return attempts


def waiting(cache: Any, key: str, table: Flights = THREADS) -> int:
    flight = table.get(cache, key)
    return 0 if flight is None else flight.waiting


# -- basics -------------------------------------------------------------------------------


def test_policy_validation() -> None:
    assert Policy.make(stale_ttl=0).stale_ttl is None
    assert Policy.make(stale_ttl=float("inf")).stale_ttl == float("inf")
    with pytest.raises(ValidationError):
        Policy.make(ttl=-1)
    with pytest.raises(ValidationError):
        Policy.make(negative_ttl=-1)
    with pytest.raises(ValidationError):
        Policy.make(stale_ttl="soon")  # type: ignore[arg-type]


def test_computes_once_and_stores_for_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        return "v"

    assert get_or_set(cache, "k", load, ttl=30) == "v"
    assert get_or_set(cache, "k", load, ttl=30) == "v"
    assert calls == [1]
    assert cache.ttl("k") == 30.0
    clock.now += 30
    assert get_or_set(cache, "k", load, ttl=30) == "v"
    assert calls == [1, 1]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.sets) == (1, 2, 2)  # one miss counted per miss


def test_none_results() -> None:
    clock = Clock()
    cache = MemoryCache(ttl=100, clock=clock)
    calls: list[int] = []

    def nothing() -> None:
        calls.append(1)

    assert get_or_set(cache, "plain", nothing) is None
    assert get_or_set(cache, "plain", nothing) is None  # a cached None is a hit
    assert calls == [1]
    assert get_or_set(cache, "neg", nothing, negative_ttl=5) is None
    assert cache.ttl("neg") == 5.0
    assert get_or_set(cache, "skip", nothing, cache_none=False) is None
    assert get_or_set(cache, "skip", nothing, cache_none=False) is None
    assert not cache.exists("skip")
    assert len(calls) == 4
    assert get_or_set(cache, "value", lambda: 1, negative_ttl=5) == 1
    assert cache.ttl("value") == 100.0


def test_ttl_zero_stores_nothing() -> None:
    cache = MemoryCache()
    assert get_or_set(cache, "k", lambda: 1, ttl=0) == 1
    assert not cache.exists("k")


# -- single-flight (threads) --------------------------------------------------------------


def run_threads(count: int, target: Callable[[], Any]) -> tuple[list[Any], list[threading.Thread]]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(target())
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    return results, threads


def test_sixteen_threads_compute_once() -> None:
    cache = MemoryCache()
    release = threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        release.wait(5)
        return "value"

    results, threads = run_threads(16, lambda: get_or_set(cache, "k", slow))
    wait_until(lambda: waiting(cache, "k") == 15)
    release.set()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == ["value"] * 16


def test_a_failing_factory_wakes_every_waiter_with_its_error() -> None:
    cache = MemoryCache()
    release = threading.Event()
    calls: list[int] = []
    boom = LookupError("backend said no")

    def failing() -> str:
        calls.append(1)
        release.wait(5)
        raise boom

    results, threads = run_threads(8, lambda: get_or_set(cache, "k", failing))
    wait_until(lambda: waiting(cache, "k") == 7)
    release.set()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == [boom] * 8  # the very exception, unchanged
    assert not cache.exists("k")
    assert get_or_set(cache, "k", lambda: "later") == "later"  # nothing was cached


def test_reentrant_call_raises_instead_of_deadlocking() -> None:
    cache = MemoryCache()

    def recursive() -> Any:
        return get_or_set(cache, "k", recursive)

    with pytest.raises(ReentrantComputeError, match="already being computed"):
        get_or_set(cache, "k", recursive)
    # A factory may use other keys freely.
    assert get_or_set(cache, "outer", lambda: get_or_set(cache, "inner", lambda: 1) + 1) == 2


def test_waiter_gives_up_at_the_deadline() -> None:
    cache = MemoryCache()
    release = threading.Event()
    _, threads = run_threads(1, lambda: get_or_set(cache, "k", lambda: release.wait(5)))
    wait_until(lambda: THREADS.get(cache, "k") is not None)
    with deadline(0.05), pytest.raises(OperationTimeoutError, match="waiting for another"):
        get_or_set(cache, "k", lambda: "never")
    release.set()
    threads[0].join()


def test_abandoned_flight_lets_a_waiter_compute() -> None:
    cache = MemoryCache()
    started, release = threading.Event(), threading.Event()

    class Stop(BaseException):
        pass

    def interrupted() -> str:
        started.set()
        release.wait(5)
        raise Stop

    results, threads = run_threads(1, lambda: get_or_set(cache, "k", interrupted))
    started.wait(5)
    late, late_threads = run_threads(1, lambda: get_or_set(cache, "k", lambda: "second"))
    wait_until(lambda: waiting(cache, "k") == 1)
    release.set()
    for thread in threads + late_threads:
        thread.join()
    assert isinstance(results[0], Stop)
    assert late == ["second"]


def test_flight_bookkeeping() -> None:
    table = Flights()
    flight, owner = table.join("c", "k", owner=1)
    assert owner
    with pytest.raises(ReentrantComputeError):
        table.join("c", "k", owner=1)
    assert table.start_background("c", "k") is None
    table.finish(flight, abandoned=True)
    assert flight.outcome() is RETRY
    assert repr(RETRY) == "RETRY"
    background = table.start_background("c", "k")
    assert isinstance(background, Flight)
    assert background.owner is None
    table.finish(background, error=KeyError("x"))
    with pytest.raises(KeyError):
        background.outcome()
    table.finish(background, value=1)  # finishing twice is harmless
    assert len(table) == 0


# -- single-flight (tasks) ----------------------------------------------------------------


def test_sixteen_tasks_compute_once() -> None:
    view = MemoryCache().as_async()
    calls: list[int] = []

    async def main() -> list[Any]:
        release = asyncio.Event()

        async def slow() -> str:
            calls.append(1)
            await release.wait()
            return "value"

        tasks = [asyncio.create_task(aget_or_set(view, "k", slow)) for _ in range(16)]
        await async_wait_until(lambda: waiting(view, "k", TASKS) >= 15)
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == ["value"] * 16
    assert calls == [1]


def test_tasks_get_the_factory_error_and_nothing_is_cached() -> None:
    view = MemoryCache().as_async()
    boom = ValueError("bad")

    async def main() -> list[Any]:
        release = asyncio.Event()

        async def failing() -> str:
            await release.wait()
            raise boom

        tasks = [asyncio.create_task(aget_or_set(view, "k", failing)) for _ in range(5)]
        await async_wait_until(lambda: waiting(view, "k", TASKS) >= 4)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    assert asyncio.run(main()) == [boom] * 5
    assert not view.sync.exists("k")


def test_task_reentrancy_raises() -> None:
    view = MemoryCache().as_async()

    async def recursive() -> Any:
        return await aget_or_set(view, "k", recursive)

    with pytest.raises(ReentrantComputeError):
        asyncio.run(aget_or_set(view, "k", recursive))


def test_cancelled_owner_hands_over_to_a_waiter() -> None:
    view = MemoryCache().as_async()

    async def main() -> Any:
        never = asyncio.Event()

        async def stuck() -> str:
            await never.wait()
            return "never"

        owner = asyncio.create_task(aget_or_set(view, "k", stuck))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(aget_or_set(view, "k", lambda: "from the waiter"))
        await async_wait_until(lambda: waiting(view, "k", TASKS) >= 1)
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        return await waiter

    assert asyncio.run(main()) == "from the waiter"


def test_task_waiter_gives_up_at_the_deadline() -> None:
    view = MemoryCache().as_async()

    async def main() -> None:
        never = asyncio.Event()
        owner = asyncio.create_task(aget_or_set(view, "k", never.wait))
        await asyncio.sleep(0)
        with pytest.raises(OperationTimeoutError, match="another task"):
            async with deadline(0.02):
                await aget_or_set(view, "k", lambda: 1)
        owner.cancel()
        await asyncio.gather(owner, return_exceptions=True)

    asyncio.run(main())


def test_tasks_of_two_loops_share_one_flight() -> None:
    view = MemoryCache().as_async()
    calls: list[int] = []
    release = threading.Event()

    async def slow() -> str:
        calls.append(1)
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        return "shared"

    results, threads = run_threads(2, lambda: asyncio.run(aget_or_set(view, "k", slow)))
    wait_until(lambda: waiting(view, "k", TASKS) == 1)
    release.set()
    for thread in threads:
        thread.join()
    assert results == ["shared", "shared"]
    assert calls == [1]


def test_waking_a_closed_loop_is_ignored() -> None:
    table = Flights()
    flight, _ = table.join("c", "k", owner=1)
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    flight._futures.append((loop, future))
    loop.close()
    table.finish(flight, value=1)
    assert flight.outcome() == 1


def test_sync_factory_in_async_get_or_set() -> None:
    view = MemoryCache().as_async()
    assert asyncio.run(aget_or_set(view, "k", lambda: 5)) == 5
    assert asyncio.run(aget_or_set(view, "none", lambda: None, cache_none=False)) is None
    assert not view.sync.exists("none")


# -- stale-while-revalidate ---------------------------------------------------------------


def test_stale_while_revalidate_threads(wall: Clock, utils_metrics: InMemorySink) -> None:
    cache = MemoryCache()
    assert get_or_set(cache, "k", lambda: "v1", ttl=10, stale_ttl=100) == "v1"
    assert cache.get("k") == [SWR_MARK, wall.now + 10, "v1"]
    assert cache.ttl("k") == pytest.approx(110, abs=1)
    wall.now += 5
    assert get_or_set(cache, "k", lambda: "unused", ttl=10, stale_ttl=100) == "v1"  # fresh

    wall.now += 6  # stale now
    release = threading.Event()
    calls: list[str] = []

    def refresh() -> str:
        calls.append(get_context().get("request_id", "?"))
        release.wait(5)
        return "v2"

    with bind_context(request_id="r-1"):
        served = [get_or_set(cache, "k", refresh, ttl=10, stale_ttl=100) for _ in range(5)]
    assert served == ["v1"] * 5  # served stale at once, while one refresh runs
    wait_until(lambda: calls == ["r-1"])  # the refresh carries the caller's context
    release.set()
    wait_until(lambda: THREADS.get(cache, "k") is None)
    assert calls == ["r-1"]
    assert get_or_set(cache, "k", refresh, ttl=10, stale_ttl=100) == "v2"
    assert cache.get("k")[1] == wall.now + 10


def test_failed_refresh_keeps_serving_stale(
    wall: Clock, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    cache = MemoryCache(name="pages")
    get_or_set(cache, "k", lambda: "old", ttl=1, stale_ttl=60)
    wall.now += 2

    def broken() -> str:
        raise RuntimeError("backend down")

    assert get_or_set(cache, "k", broken, ttl=1, stale_ttl=60) == "old"
    wait_until(lambda: THREADS.get(cache, "k") is None)
    assert get_or_set(cache, "k", broken, ttl=1, stale_ttl=60) == "old"
    wait_until(lambda: utils_metrics.count("cache.refresh_failed", cache="pages") == 2)
    wait_until(
        lambda: utils_metrics.count("cache.refresh_error", cache="pages") == 2
    )  # deprecated
    wait_until(lambda: sum(e["event"] == "cache.refresh_failed" for e in utils_logs) == 2)
    events = [entry for entry in utils_logs if entry["event"] == "cache.refresh_failed"]
    assert events[0]["log_level"] == "warning"
    assert events[0]["key"] == "k"


def test_stale_value_without_policy_still_refreshes(wall: Clock) -> None:
    cache = MemoryCache()
    cache.set("k", [SWR_MARK, wall.now - 1, "stale"])
    assert get_or_set(cache, "k", lambda: "fresh") == "stale"
    wait_until(lambda: cache.get("k") == "fresh")


def test_stale_ttl_without_expiry_and_with_ttl_zero(wall: Clock) -> None:
    cache = MemoryCache()
    assert get_or_set(cache, "k", lambda: 1, ttl=None, stale_ttl=10) == 1
    assert cache.get("k") == [SWR_MARK, None, 1]
    assert cache.ttl("k") is None
    wall.now += 10**6
    assert get_or_set(cache, "k", lambda: 2, stale_ttl=10) == 1  # never stale
    assert get_or_set(cache, "z", lambda: 3, ttl=0, stale_ttl=10) == 3
    assert not cache.exists("z")


def test_refresh_that_cannot_start_is_abandoned(
    wall: Clock, monkeypatch: pytest.MonkeyPatch, utils_metrics: InMemorySink
) -> None:
    cache = MemoryCache()
    get_or_set(cache, "k", lambda: "old", ttl=1, stale_ttl=60)
    wall.now += 2

    def no_threads(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    assert get_or_set(cache, "k", lambda: "new", ttl=1, stale_ttl=60) == "old"
    assert THREADS.get(cache, "k") is None
    assert utils_metrics.count("cache.refresh_failed") == 1


def test_stale_while_revalidate_tasks(wall: Clock, utils_logs: list[dict[str, Any]]) -> None:
    view = MemoryCache().as_async()
    calls: list[int] = []

    async def main() -> list[Any]:
        await aget_or_set(view, "k", lambda: "v1", ttl=10, stale_ttl=100)
        wall.now += 11
        release = asyncio.Event()

        async def refresh() -> str:
            calls.append(1)
            await release.wait()
            return "v2"

        served = [await aget_or_set(view, "k", refresh, ttl=10, stale_ttl=100) for _ in range(3)]
        release.set()
        await async_wait_until(lambda: TASKS.get(view, "k") is None)
        served.append(await aget_or_set(view, "k", refresh, ttl=10, stale_ttl=100))

        async def broken() -> str:
            raise RuntimeError("nope")

        wall.now += 11
        served.append(await aget_or_set(view, "k", broken, ttl=10, stale_ttl=100))
        await async_wait_until(lambda: TASKS.get(view, "k") is None)
        return served

    assert asyncio.run(main()) == ["v1", "v1", "v1", "v2", "v2"]
    assert calls == [1]
    assert any(entry["event"] == "cache.refresh_failed" for entry in utils_logs)


# -- the cross-process lock protocol (an in-process stand-in; Redis below) ----------------


class LockServer:
    """Shared by several LockingCache objects, like one Redis shared by processes."""

    def __init__(self) -> None:
        self.held: dict[str, object] = {}
        #: Guards ``held``; notified on every release (a waiter wakes on it, not a timer).
        self.guard = threading.Condition()
        self.attempts = 0


class FakeLock:
    def __init__(self, server: LockServer, key: str, fail_release: bool = False) -> None:
        self.server, self.key, self.fail_release = server, key, fail_release

    def acquire(self, wait: float = 0.0) -> bool:
        give_up = time.monotonic() + wait
        while True:
            with self.server.guard:
                self.server.attempts += 1
                if self.key not in self.server.held:
                    self.server.held[self.key] = self
                    return True
                left = give_up - time.monotonic()
                if left <= 0:
                    return False
                self.server.guard.wait(left)  # until a release (or the wait runs out)

    def release(self) -> bool:
        with self.server.guard:
            mine = self.server.held.get(self.key) is self
            if mine:
                del self.server.held[self.key]
                self.server.guard.notify_all()
        if self.fail_release:
            raise ConnectionError("lost the server")
        return mine


class LockingCache(MemoryCache):
    def __init__(self, server: LockServer, storage: MemoryCache | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.server = server
        self.fail_release = False
        if storage is not None:  # share entries like two processes sharing Redis
            self._data = storage._data
            self._get_entry = storage._get_entry
            self._move = storage._move

    def _lock(self, key: str, ttl: float) -> FakeLock:  # type: ignore[override]
        return FakeLock(self.server, key, self.fail_release)


def test_two_processes_compute_once() -> None:
    server = LockServer()
    first = LockingCache(server)
    second = LockingCache(server, storage=first)
    release = threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        release.wait(5)
        return "v"

    results, threads = run_threads(1, lambda: get_or_set(first, "k", slow))
    wait_until(lambda: "k" in server.held)
    late, late_threads = run_threads(1, lambda: get_or_set(second, "k", slow))
    wait_until(lambda: server.attempts >= 3)  # the second one is waiting for the lock
    release.set()
    for thread in threads + late_threads:
        thread.join()
    assert results == late == ["v"]
    assert calls == [1]
    assert server.held == {}


def test_lock_wait_times_out_then_computes(
    monkeypatch: pytest.MonkeyPatch, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    monkeypatch.setattr(_compute, "LOCK_WAIT", 0.05)
    monkeypatch.setattr(_compute, "_last_lock_warning", float("-inf"))
    server = LockServer()
    server.held["k"] = object()  # a holder that never finishes (killed)
    cache = LockingCache(server, name="shared")
    assert get_or_set(cache, "k", lambda: "computed anyway") == "computed anyway"
    assert get_or_set(cache, "k2", lambda: 1) == 1  # not affected
    server.held["k3"] = object()
    assert get_or_set(cache, "k3", lambda: 3) == 3
    assert utils_metrics.count("cache.lock_timeout", cache="shared") == 2
    warnings = [entry for entry in utils_logs if entry["event"] == "cache.lock_timeout"]
    assert len(warnings) == 1  # rate-limited
    assert warnings[0]["key"] == "k"


def test_lock_wait_is_capped_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    server = LockServer()
    server.held["k"] = object()
    cache = LockingCache(server)
    started = time.monotonic()
    with deadline(0.05):
        assert get_or_set(cache, "k", lambda: 1) == 1
    assert time.monotonic() - started < 2.0  # far below LOCK_WAIT = 5 s


def test_lock_waiter_takes_the_value_the_holder_stored() -> None:
    server = LockServer()
    holder = FakeLock(server, "k")
    holder.acquire()
    cache = LockingCache(server)
    results, threads = run_threads(1, lambda: get_or_set(cache, "k", lambda: "mine"))
    wait_until(lambda: server.attempts >= 2)
    cache.set("k", "theirs")
    holder.release()
    threads[0].join()
    assert results == ["theirs"]


def test_lock_waiter_takes_what_a_holder_stored_while_still_holding(wall: Clock) -> None:
    server = LockServer()
    server.held["k"] = object()  # the holder stores, and has not released yet
    cache = LockingCache(server)
    results, threads = run_threads(1, lambda: get_or_set(cache, "k", lambda: "mine", stale_ttl=9))
    wait_until(lambda: server.attempts >= 2)
    cache.set("k", [SWR_MARK, wall.now - 1, "stale"])  # not good enough: keep waiting
    attempts = server.attempts
    wait_until(lambda: server.attempts >= attempts + 2)
    cache.set("k", [SWR_MARK, wall.now + 60, "theirs"])
    threads[0].join()
    assert results == ["theirs"]


def test_async_unlock_failure_is_logged(utils_logs: list[dict[str, Any]]) -> None:
    from utils.cache.memory import AsyncMemoryCache

    class BrokenLock:
        async def aacquire(self, wait: float = 0.0) -> bool:
            return True

        async def arelease(self) -> bool:
            raise ConnectionError("lost the server")

    class LockingView(AsyncMemoryCache):
        def _alock(self, key: str, ttl: float) -> BrokenLock:  # type: ignore[override]
            return BrokenLock()

    view = LockingView(MemoryCache())
    assert asyncio.run(aget_or_set(view, "k", lambda: 1)) == 1
    assert any(entry["event"] == "cache.unlock_failed" for entry in utils_logs)


def test_lock_false_skips_the_lock() -> None:
    server = LockServer()
    server.held["k"] = object()
    cache = LockingCache(server)
    assert get_or_set(cache, "k", lambda: 1, lock=False) == 1
    assert server.attempts == 0


def test_failed_unlock_is_logged_not_raised(utils_logs: list[dict[str, Any]]) -> None:
    cache = LockingCache(LockServer())
    cache.fail_release = True
    assert get_or_set(cache, "k", lambda: 1) == 1
    assert any(entry["event"] == "cache.unlock_failed" for entry in utils_logs)


def test_refresh_skipped_while_another_process_refreshes(wall: Clock) -> None:
    server = LockServer()
    cache = LockingCache(server)
    get_or_set(cache, "k", lambda: "old", ttl=1, stale_ttl=60)
    wall.now += 2
    server.held["k"] = object()
    calls: list[int] = []

    def refresh() -> str:
        calls.append(1)
        return "new"

    assert get_or_set(cache, "k", refresh, ttl=1, stale_ttl=60) == "old"
    wait_until(lambda: THREADS.get(cache, "k") is None)
    assert calls == []
    del server.held["k"]
    assert get_or_set(cache, "k", refresh, ttl=1, stale_ttl=60) == "old"
    wait_until(lambda: calls == [1] and THREADS.get(cache, "k") is None)
    assert cache.get("k")[2] == "new"


# -- real Redis ---------------------------------------------------------------------------


redis_cache_module = pytest.importorskip("utils.cache.redis_cache")


@pytest.fixture
def namespace(utils_redis_url: str) -> Iterator[str]:
    from utils.cache.testing import unique_namespace

    name = unique_namespace("compute")
    yield name
    cleaner = redis_cache_module.RedisCache(utils_redis_url, namespace=name)
    cleaner.clear(all_versions=True)
    cleaner.close()


@pytest.mark.redis
def test_two_redis_clients_compute_once(utils_redis_url: str, namespace: str) -> None:
    RedisCache = redis_cache_module.RedisCache
    caches = [RedisCache(utils_redis_url, namespace=namespace) for _ in range(2)]
    release = threading.Event()
    calls: list[int] = []

    def slow() -> dict[str, int]:
        calls.append(1)
        release.wait(5)
        return {"answer": 42}

    # Separate cache objects do not share a flight: only the Redis lock keeps them apart.
    results, threads = run_threads(1, lambda: get_or_set(caches[0], "k", slow, ttl=60))
    wait_until(lambda: calls == [1])
    late, late_threads = run_threads(1, lambda: get_or_set(caches[1], "k", slow, ttl=60))
    wait_until(lambda: caches[1].stats().misses >= 1)  # the second one went for the lock
    release.set()
    for thread in threads + late_threads:
        thread.join()
    assert results == late == [{"answer": 42}]
    assert calls == [1]
    for cache in caches:
        cache.close()


@pytest.mark.redis
def test_redis_lock_timeout_computes_anyway(
    utils_redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_compute, "LOCK_WAIT", 0.1)
    RedisCache = redis_cache_module.RedisCache
    cache = RedisCache(utils_redis_url, namespace=namespace)
    other = RedisCache(utils_redis_url, namespace=namespace)
    lock = other._lock("k", 30)
    assert lock.acquire()
    try:
        assert get_or_set(cache, "k", lambda: "anyway", ttl=60) == "anyway"
        assert other.get("k") == "anyway"
    finally:
        lock.release()
        cache.close()
        other.close()


@pytest.mark.redis
def test_two_async_redis_clients_compute_once(
    utils_redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    AsyncRedisCache = redis_cache_module.AsyncRedisCache
    calls: list[int] = []
    acquiring = count_lock_attempts(monkeypatch)

    async def main() -> list[Any]:
        caches = [AsyncRedisCache(utils_redis_url, namespace=namespace) for _ in range(2)]
        computing = asyncio.Event()

        async def slow() -> str:
            calls.append(1)
            await computing.wait()
            return "v"

        try:
            both = asyncio.gather(*(aget_or_set(c, "k", slow, ttl=60) for c in caches))
            # One computes; finish only once the other has gone for the lock too.
            await async_wait_until(lambda: calls == [1] and len(acquiring) >= 2)
            computing.set()
            return await both
        finally:
            for cache in caches:
                await cache.aclose()

    assert asyncio.run(main()) == ["v", "v"]
    assert calls == [1]


@pytest.mark.redis
def test_async_redis_swr_and_lock_timeout(
    utils_redis_url: str, namespace: str, wall: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_compute, "LOCK_WAIT", 0.05)
    AsyncRedisCache = redis_cache_module.AsyncRedisCache
    acquiring = count_lock_attempts(monkeypatch)

    async def main() -> list[Any]:
        cache = AsyncRedisCache(utils_redis_url, namespace=namespace)
        other = AsyncRedisCache(utils_redis_url, namespace=namespace)
        try:
            out = [await aget_or_set(cache, "s", lambda: "old", ttl=1, stale_ttl=60)]
            wall.now += 2
            lock = other._alock("s", 30)
            assert await lock.aacquire()
            out.append(await aget_or_set(cache, "s", lambda: "new", ttl=1, stale_ttl=60))
            await async_wait_until(lambda: TASKS.get(cache, "s") is None)
            out.append(await cache.get("s"))  # the refresh saw the lock and stood down
            await lock.arelease()
            out.append(await aget_or_set(cache, "s", lambda: "new", ttl=1, stale_ttl=60))
            await async_wait_until(lambda: TASKS.get(cache, "s") is None)
            out.append((await cache.get("s"))[2])  # this time the refresh ran
            held = other._alock("u", 30)
            assert await held.aacquire()
            tried = len(acquiring)
            waiter = asyncio.create_task(aget_or_set(cache, "u", lambda: "mine"))
            # The waiter polls the held lock.
            await async_wait_until(lambda: len(acquiring) > tried)
            await other.set("u", "stored by the holder")
            out.append(await waiter)
            await held.arelease()
            held = other._alock("t", 30)
            assert await held.aacquire()
            out.append(await aget_or_set(cache, "t", lambda: "anyway"))
            await held.arelease()
            await other.set("w", "theirs")
            out.append(await aget_or_set(cache, "w", lambda: "mine"))
            return out
        finally:
            await cache.aclose()
            await other.aclose()

    out = asyncio.run(main())
    assert out[:2] == ["old", "old"]
    assert out[2][2] == "old"
    assert out[3:] == ["old", "new", "stored by the holder", "anyway", "theirs"]


def test_peek_falls_back_to_get_for_other_caches() -> None:
    class Plain:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        def get(self, key: str, default: Any = None) -> Any:
            return self.data.get(key, default)

        def set(self, key: str, value: Any, ttl: Any = None) -> None:
            self.data[key] = value

    cache = Plain()
    assert get_or_set(cache, "k", lambda: 1) == 1
    assert cache.data == {"k": 1}
    assert _compute._peek(cache, "zz") is MISSING
