"""MemoryCache: LRU order, per-key TTL on an injected clock, thread safety, the async view."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.cache.errors import CacheValueError
from utils.cache.memory import AsyncMemoryCache, MemoryCache
from utils.cache.protocol import MISSING, AsyncCache, Cache, CacheStats
from utils.core import ValidationError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_satisfies_the_protocols() -> None:
    cache = MemoryCache()
    assert isinstance(cache, Cache)
    assert isinstance(cache.as_async(), AsyncCache)
    assert repr(cache) == "MemoryCache(name='memory', maxsize=1024, ttl=None, size=0)"
    assert repr(cache.as_async()).startswith("AsyncMemoryCache(MemoryCache(")


@pytest.mark.parametrize("maxsize", [0, -1, True, 1.5, "10"])
def test_maxsize_must_be_a_positive_int(maxsize: object) -> None:
    with pytest.raises(ValidationError, match="maxsize"):
        MemoryCache(maxsize=maxsize)  # type: ignore[arg-type]


def test_default_ttl_is_validated() -> None:
    with pytest.raises(ValidationError):
        MemoryCache(ttl=-1)
    assert MemoryCache(ttl=timedelta(minutes=1)).default_ttl == 60.0


# -- LRU ----------------------------------------------------------------------------------


def test_lru_eviction_order() -> None:
    cache = MemoryCache(maxsize=3)
    for key in "abc":
        cache.set(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.set("b", "B2")  # rewriting b makes it the most recent too
    cache.set("d", "D")  # evicts c
    assert cache.get("c") is None
    assert cache.get_many(["a", "b", "d"]) == {"a": "A", "b": "B2", "d": "D"}
    assert cache.stats().evictions == 1
    assert len(cache) == 3


def test_exists_and_peek_do_not_touch_lru_or_stats() -> None:
    cache = MemoryCache(maxsize=2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.exists("a")
    assert cache._peek("a") == 1
    assert cache._peek("zz", "dflt") == "dflt"
    cache.set("c", 3)  # a was not refreshed by exists/peek: it goes
    assert not cache.exists("a")
    assert cache.stats().hits == 0
    assert cache.stats().misses == 0


def test_set_many_evicts_beyond_maxsize() -> None:
    cache = MemoryCache(maxsize=2)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a", "b", "c"]) == {"b": 2, "c": 3}
    assert cache.stats().sets == 3
    assert cache.stats().evictions == 1


# -- values and misses --------------------------------------------------------------------


def test_none_is_a_hit_and_defaults() -> None:
    cache = MemoryCache()
    cache.set("none", None)
    assert cache.get("none", MISSING) is None
    assert cache.get("absent", MISSING) is MISSING
    assert cache.get("absent") is None
    assert cache.get("absent", 5) == 5
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 3)


def test_values_are_stored_by_reference() -> None:
    cache = MemoryCache()
    value = [1]
    cache.set("list", value)
    cache.get("list").append(2)
    assert cache.get("list") == [1, 2]


# -- TTL ----------------------------------------------------------------------------------


def test_per_key_ttl_and_default_ttl(clock: Clock) -> None:
    cache = MemoryCache(ttl=10, clock=clock)
    cache.set("default", 1)
    cache.set("short", 2, ttl=2)
    cache.set("forever", 3, ttl=float("inf"))
    cache.set("delta", 4, ttl=timedelta(seconds=5))
    assert cache.ttl("default") == 10.0
    assert cache.ttl("forever") is None
    clock.advance(2)
    assert cache.get("short") is None
    assert cache.ttl("short") is None
    assert cache.get("delta") == 4
    clock.advance(3)
    assert cache.get("delta", MISSING) is MISSING
    clock.advance(5)
    assert cache.get("default") is None
    assert cache.get("forever") == 3
    assert not cache.exists("default")
    assert cache.get_many(["default", "short", "forever"]) == {"forever": 3}


def test_ttl_of_missing_and_unexpiring_keys(clock: Clock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("a", 1)
    assert cache.ttl("a") is None
    assert cache.ttl("nope") is None
    cache.set("b", 1, ttl=1)
    clock.advance(0.25)
    assert cache.ttl("b") == pytest.approx(0.75)


def test_ttl_zero_stores_nothing(clock: Clock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("a", 1, ttl=0)
    cache.set_many({"b": 1, "c": 2}, ttl=0)
    assert len(cache) == 0
    cache.set("a", 1)
    cache.set("a", 2, ttl=0)  # like RedisCache: nothing is written, the old value stays
    assert cache.get("a") == 1
    assert cache.stats().sets == 1


def test_default_ttl_zero_disables_storing(clock: Clock) -> None:
    cache = MemoryCache(ttl=0, clock=clock)
    cache.set("a", 1)
    assert not cache.exists("a")
    cache.set("b", 1, ttl=5)
    assert cache.exists("b")
    assert cache.incr("n") == 1
    assert not cache.exists("n")


def test_negative_ttl_is_refused() -> None:
    with pytest.raises(ValidationError):
        MemoryCache().set("a", 1, ttl=-1)


def test_expired_entries_are_dropped_before_live_ones_when_full(clock: Clock) -> None:
    cache = MemoryCache(maxsize=4, clock=clock)
    cache.set("live1", 1)
    cache.set("old1", 1, ttl=1)
    cache.set("old2", 1, ttl=1)
    cache.set("live2", 1)
    clock.advance(5)
    cache.set("new1", 1)  # full: the sweep drops old1 and old2, nothing live is evicted
    cache.set("new2", 1)
    assert sorted(cache.get_many(["live1", "live2", "new1", "new2"])) == [
        "live1",
        "live2",
        "new1",
        "new2",
    ]
    assert cache.stats().evictions == 0
    cache.set("new3", 1)  # the next sweep is `maxsize` writes away: plain LRU eviction
    assert cache.stats().evictions == 1
    assert not cache.exists("live1")


def test_expired_entry_read_is_removed(clock: Clock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("a", 1, ttl=1)
    clock.advance(1)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_expired_entry_replaced_meanwhile_is_kept(clock: Clock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("a", 1, ttl=1)
    stale = cache._data["a"]
    cache.set("a", 2)
    cache._drop_expired("a", stale)  # another thread replaced it: do not drop the new one
    assert cache.get("a") == 2


# -- writes -------------------------------------------------------------------------------


def test_delete_and_delete_many(clock: Clock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    cache.set("short", 1, ttl=1)
    assert cache.delete("a")
    assert not cache.delete("a")
    clock.advance(1)
    assert cache.delete_many(["b", "c", "short", "zz"]) == 2  # the expired one does not count
    assert cache.stats().deletes == 3
    assert len(cache) == 0


def test_clear_keeps_counters() -> None:
    cache = MemoryCache()
    cache.set("a", 1)
    cache.get("a")
    cache.clear()
    assert len(cache) == 0
    assert cache.stats() == CacheStats(hits=1, sets=1, size=0)


def test_incr(clock: Clock) -> None:
    cache = MemoryCache(ttl=60, clock=clock)
    assert cache.incr("n") == 1
    assert cache.incr("n", 10) == 11
    assert cache.incr("n", -20) == -9
    assert cache.ttl("n") == 60.0  # created with the default TTL
    clock.advance(30)
    cache.incr("n")
    assert cache.ttl("n") == 30.0  # an existing counter keeps its expiry
    clock.advance(30)
    assert cache.incr("n") == 1  # expired: starts again
    cache.set("s", "text")
    with pytest.raises(CacheValueError, match="holds a str"):
        cache.incr("s")
    cache.set("b", True)
    with pytest.raises(CacheValueError, match="holds a bool"):
        cache.incr("b")
    with pytest.raises(ValidationError, match="delta"):
        cache.incr("n", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="delta"):
        cache.incr("n", True)


def test_incr_evicts_when_full() -> None:
    cache = MemoryCache(maxsize=1)
    cache.set("a", 1)
    cache.incr("b")
    assert not cache.exists("a")


def test_stats_size() -> None:
    cache = MemoryCache()
    cache.set_many({"a": 1, "b": 2})
    cache.get("a")
    cache.get("x")
    assert cache.stats() == CacheStats(hits=1, misses=1, sets=2, size=2)
    assert cache.stats().hit_ratio == 0.5


def test_lock_hook_is_none() -> None:
    cache = MemoryCache()
    hooks: list[Callable[[str, float], object]] = [cache._lock, cache.as_async()._alock]
    assert [hook("k", 10.0) for hook in hooks] == [None, None]


# -- threads ------------------------------------------------------------------------------


def test_concurrent_incr_is_exact() -> None:
    cache = MemoryCache()
    per_thread, threads = 2000, 8

    def work() -> None:
        for _ in range(per_thread):
            cache.incr("n")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert cache.get("n") == per_thread * threads


def test_mixed_concurrent_operations_keep_the_bounds() -> None:
    cache = MemoryCache(maxsize=50, ttl=0.001)
    errors: list[BaseException] = []
    keys = [f"k{i}" for i in range(200)]

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(3000):
                key = rnd.choice(keys)
                op = rnd.random()
                if op < 0.5:
                    cache.get(key)
                elif op < 0.8:
                    cache.set(key, op, ttl=rnd.choice([None, 0.0005, 60]))
                elif op < 0.9:
                    cache.delete(key)
                elif op < 0.95:
                    cache.get_many(rnd.sample(keys, 5))
                else:
                    cache.set_many(dict.fromkeys(rnd.sample(keys, 5), 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(cache) <= 50


# -- the async view -----------------------------------------------------------------------


def test_async_view_shares_storage(clock: Clock) -> None:
    cache = MemoryCache(ttl=10, clock=clock)
    asyncio.run(_exercise_view(cache, clock))


async def _exercise_view(cache: MemoryCache, clock: Clock) -> None:
    view = cache.as_async()
    assert isinstance(view, AsyncMemoryCache)
    assert view.name == "memory"
    assert view.default_ttl == 10.0
    await view.set("a", 1)
    assert cache.get("a") == 1
    assert await view.get("a") == 1
    assert await view.exists("a")
    await view.set_many({"b": 2, "c": 3}, ttl=5)
    assert await view.get_many(["a", "b", "zz"]) == {"a": 1, "b": 2}
    assert await view.ttl("b") == 5.0
    assert await view.incr("n", 2) == 2
    assert await view.delete("a")
    assert await view.delete_many(["b", "c"]) == 2
    assert await view._peek("n") == 2
    await view.clear()
    assert len(cache) == 0
    assert view.stats() == cache.stats()


def test_async_view_get_or_set() -> None:
    view = MemoryCache().as_async()

    async def load() -> str:
        await asyncio.sleep(0)
        return "v"

    async def main() -> tuple[str, str]:
        return await view.get_or_set("k", load, ttl=60), await view.get_or_set("k", lambda: "x")

    assert asyncio.run(main()) == ("v", "v")


def test_get_or_set_method() -> None:
    cache = MemoryCache()
    assert cache.get_or_set("k", lambda: None, negative_ttl=5) is None
    assert cache.get("k", MISSING) is None
    assert cache.ttl("k") == pytest.approx(5.0, abs=0.5)


# -- regressions -----------------------------------------------------------------------------


def _child_status(pid: int, timeout: float = 5.0) -> int | None:
    """The exit status of child ``pid``, or None (after killing it) when it hangs."""
    import signal

    from utils.core.testing import wait_until

    status: list[int] = []

    def exited() -> bool:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status.append(code)
        return bool(done)

    try:
        wait_until(exited, timeout, interval=0.01)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.waitstatus_to_exitcode(status[0])


# Forking a multi-threaded process is the very situation under test (Python 3.12+ warns).
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_d7_a_forked_child_can_use_a_cache_whose_lock_a_thread_held() -> None:
    """fork() while another thread holds the cache's lock: the child must not hang (D7)."""

    cache = MemoryCache(maxsize=10)
    cache.set("before", 1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cache._mutex:  # what a writer does: the lock is held at the moment of fork
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: report through the exit code only
            try:
                cache.set("after", 2)
                ok = cache.get("after") == 2 and cache.get("before") == 1
                cache.delete("before")
                os._exit(0 if ok else 1)
            except BaseException:
                os._exit(2)
    finally:
        release.set()
        holder.join()
    assert _child_status(pid) == 0


# Forking a multi-threaded process is the very situation under test (Python 3.12+ warns).
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_d7_fork_while_threads_churn_the_cache() -> None:

    cache = MemoryCache(maxsize=50)
    stop = threading.Event()

    def churn(seed: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            cache.set(f"{seed}:{i % 100}", i)
            cache.delete(f"{seed}:{(i + 50) % 100}")

    workers = [threading.Thread(target=churn, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    try:
        pids = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    cache.set("child", 1)
                    os._exit(0 if cache.get("child") == 1 else 1)
                except BaseException:
                    os._exit(2)
            pids.append(pid)
        assert [_child_status(pid) for pid in pids] == [0] * len(pids)
    finally:
        stop.set()
        for worker in workers:
            worker.join()


@pytest.mark.parametrize(
    "ttl", [10**400, 1e308, 11 * 365 * 86400.0], ids=["10**400", "1e308", "11y"]
)
def test_d13_absurd_ttls_are_a_validation_error(ttl: float) -> None:
    cache = MemoryCache()
    with pytest.raises(ValidationError, match="ttl"):
        cache.set("k", 1, ttl=ttl)
    with pytest.raises(ValidationError, match="ttl"):
        MemoryCache(ttl=ttl)


def test_d13_infinite_ttl_means_no_expiry() -> None:
    import math

    cache = MemoryCache(ttl=60)
    cache.set("k", 1, ttl=math.inf)
    assert cache.get("k") == 1
    assert cache.ttl("k") is None


def test_hit_miss_set_and_eviction_metrics(utils_metrics: Any) -> None:
    cache = MemoryCache(maxsize=1, name="users")
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert cache.get("a") == 1
    assert cache.get("b") is None
    cache.set("b", 2)  # evicts "a"; the hits so far are reported with this write
    assert utils_metrics.total("cache.hit", cache="users") == 2.0
    assert utils_metrics.total("cache.miss", cache="users") == 1.0
    assert utils_metrics.total("cache.set", cache="users") == 2.0
    assert utils_metrics.total("cache.eviction", cache="users") == 1.0
    cache.get("b")
    cache.stats()  # reading the stats reports too
    assert utils_metrics.total("cache.hit", cache="users") == 3.0


def test_metrics_cost_nothing_without_a_sink() -> None:
    cache = MemoryCache(name="quiet")
    cache.set("a", 1)
    cache.get("a")
    assert cache._reported == [0, 0, 0, 0, 0]  # nothing listened: nothing was reported


# -- the inlined hit path agrees with get() --------------------------------------------------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "advance", "delete"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from([None, 0, 1, 2, 5]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_the_inlined_hit_path_answers_as_get_does(ops: list[tuple[str, str, int | None]]) -> None:
    """MemoryCache._fast_get (what @cached and TieredCache inline) == MemoryCache.get."""
    clock = Clock()
    plain = MemoryCache(maxsize=3, clock=clock)
    inlined = MemoryCache(maxsize=3, clock=clock)
    fast = inlined._fast_get(lambda key, default: default)
    for op, key, number in ops:
        if op == "set":
            for cache in (plain, inlined):
                cache.set(key, number, ttl=number)
        elif op == "delete":
            assert plain.delete(key) == inlined.delete(key)
        elif op == "advance":
            clock.advance(number or 0)
        else:
            assert fast(key, MISSING) == plain.get(key, MISSING)
        assert list(inlined._data) == list(plain._data)  # the same entries, in the same order
    assert inlined.stats() == plain.stats()


def test_the_inlined_async_hit_path_awaits_the_miss() -> None:
    cache = MemoryCache()
    cache.set("a", 1)

    async def miss(key: str, default: object) -> object:
        return f"miss:{key}"

    fast = cache._fast_get(miss, is_async=True)
    assert asyncio.run(fast("a")) == 1
    assert asyncio.run(fast("b")) == "miss:b"
