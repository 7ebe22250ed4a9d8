"""Outages, slowness and write refusals: fail-open, fail-closed, logging once, recovery.

The shared server is never stopped or paused: every test here that disturbs Redis uses a
private ``redis-server`` started for this module (no persistence, so a restart loses every
value — which is how "nothing stale after restart" is checked). A server that is down is
also simulated by a free port where nothing listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from tests.conftest import pooled_connection

from utils.cache.errors import CacheUnavailableError
from utils.cache.protocol import MISSING
from utils.cache.redis_cache import AsyncRedisCache, RedisCache
from utils.core import OperationTimeoutError, deadline
from utils.core.testing import (
    FakeClock,
    PrivateRedis,
    async_wait_until,
    find_free_port,
    private_redis,
    wait_until,
)

pytestmark = pytest.mark.redis

#: Recovery must be noticed this soon after the server answers PING again.
RECOVERY_BUDGET = 1.0


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture
def server(private_server: PrivateRedis) -> Iterator[PrivateRedis]:
    private_server.start()  # whatever the previous test did
    yield private_server
    private_server.start()
    client = redis.Redis.from_url(private_server.url)
    try:
        client.config_set("maxmemory", 0)
        client.flushall()
    finally:
        client.close()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


class Load:
    """A thread doing set + get in a loop, recording every exception and every miss."""

    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache
        self.errors: list[BaseException] = []
        self.calls = 0
        self.misses = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                self.cache.set(f"load:{i}", i)
                if self.cache.get(f"load:{i}", MISSING) is MISSING:
                    self.misses += 1
                self.cache.get_many([f"load:{i}", "pre:0"])
            except BaseException as exc:
                self.errors.append(exc)
            self.calls += 1
            self.stop.wait(0.001)  # pacing: a wait on the stop signal

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


# -- an outage in the middle of a load ------------------------------------------------------------


def test_sync_outage_mid_load(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], utils_metrics: Any
) -> None:
    # A known outage is probed once per probe_interval: keep it well inside the budget.
    with RedisCache(server.url, namespace="load", ttl=60, probe_interval=0.1) as cache:
        cache.set_many({f"pre:{i}": i for i in range(50)})
        with Load(cache) as load:
            wait_until(lambda: load.calls > 20)
            server.stop()
            misses_before = load.misses
            wait_until(lambda: load.misses > misses_before + 20)  # reads are misses while down
            assert cache.get("pre:1", "default") == "default"
            assert cache.get_many(["pre:1", "pre:2"]) == {}
            assert events(utils_logs, "cache.unavailable") != []
            server.start()

            def probe() -> bool:
                cache.set("probe", 1)
                return bool(cache.get("probe") == 1)

            took = wait_until(probe)
            assert took < RECOVERY_BUDGET
            calls = load.calls
            wait_until(lambda: load.calls > calls + 20)
        assert load.errors == []
        # The private server keeps nothing across a restart: the old values are misses,
        # never served from anywhere.
        assert cache.get_many([f"pre:{i}" for i in range(50)]) == {}
        assert cache.get("load:1", MISSING) is MISSING
    down = events(utils_logs, "cache.unavailable")
    up = events(utils_logs, "cache.recovered")
    assert len(down) == 1, down
    assert len(up) == 1, up
    assert down[0]["log_level"] == "warning"
    assert down[0]["namespace"] == "load"
    assert up[0]["log_level"] == "info"
    assert utils_metrics.count("cache.error", cache="load", reason="unavailable") > 0
    assert cache.stats().errors > 0


def test_async_outage_mid_load(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], utils_metrics: Any
) -> None:
    errors: list[BaseException] = []
    counts = {"calls": 0, "misses": 0, "hits": 0}

    async def load(cache: AsyncRedisCache, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await cache.set(f"load:{i}", i)
                if await cache.get(f"load:{i}", MISSING) is MISSING:
                    counts["misses"] += 1
                else:
                    counts["hits"] += 1
                await cache.get_many([f"load:{i}", "pre:0"])
            except BaseException as exc:
                errors.append(exc)
            counts["calls"] += 1
            with contextlib.suppress(TimeoutError):  # pacing: a wait on the stop signal
                await asyncio.wait_for(stop.wait(), 0.001)

    async def main() -> None:
        # A known outage is probed once per probe_interval: keep it well inside the budget.
        async with AsyncRedisCache(
            server.url, namespace="aload", ttl=60, probe_interval=0.1
        ) as cache:
            await cache.set_many({f"pre:{i}": i for i in range(50)})
            stop = asyncio.Event()
            task = asyncio.create_task(load(cache, stop))
            await async_wait_until(lambda: counts["calls"] > 20)
            await asyncio.to_thread(server.stop)
            misses = counts["misses"]
            await async_wait_until(lambda: counts["misses"] > misses + 20)
            assert await cache.get("pre:1", "default") == "default"
            hits = counts["hits"]
            await asyncio.to_thread(server.start)
            # The load's own set-then-get round trip is the probe: it succeeds again
            # as soon as the cache has noticed the recovery.
            took = await async_wait_until(lambda: counts["hits"] > hits)
            assert took < RECOVERY_BUDGET
            await cache.set("probe", 1)
            assert await cache.get("probe") == 1
            calls = counts["calls"]
            await async_wait_until(lambda: counts["calls"] > calls + 20)
            stop.set()
            await task
            assert await cache.get_many([f"pre:{i}" for i in range(50)]) == {}

    asyncio.run(main())
    assert errors == []
    assert len(events(utils_logs, "cache.unavailable")) == 1
    assert len(events(utils_logs, "cache.recovered")) == 1
    assert utils_metrics.count("cache.error", cache="aload", reason="unavailable") > 0


def test_strict_caches_raise_while_down_and_work_again_after(server: PrivateRedis) -> None:
    clock = FakeClock()
    with RedisCache(server.url, namespace="strict", fail_open=False, clock=clock) as cache:
        cache.set("k", 1)
        server.stop()
        with pytest.raises(CacheUnavailableError) as caught:
            cache.get("k")
        assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
        assert caught.value.retryable
        # Known down: the next calls fail fast, saying when the next probe is due.
        with pytest.raises(CacheUnavailableError) as fast:
            cache.set("k", 2)
        assert fast.value.retry_after == 1.0
        with pytest.raises(CacheUnavailableError):
            cache.get_many(["k"])
        server.start()
        clock.advance(1.0)  # the next call is the probe: Redis answers, the outage ends
        assert cache.exists("x") is False
        cache.set("k", 3)
        assert cache.get("k") == 3


def test_async_strict_caches_raise_while_down(server: PrivateRedis) -> None:
    async def main() -> None:
        clock = FakeClock()
        async with AsyncRedisCache(
            server.url, namespace="astrict", fail_open=False, clock=clock
        ) as cache:
            await cache.set("k", 1)
            await asyncio.to_thread(server.stop)
            with pytest.raises(CacheUnavailableError) as caught:
                await cache.get("k")
            assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
            with pytest.raises(CacheUnavailableError):
                await cache.set("k", 2)
            with pytest.raises(CacheUnavailableError):
                await cache.get_many(["k"])
            await asyncio.to_thread(server.start)
            clock.advance(1.0)
            await cache.set("k", 3)
            assert await cache.get("k") == 3

    asyncio.run(main())


@pytest.mark.parametrize("method", ["get", "get_many", "exists", "set", "get_with_ttl"])
def test_any_successful_call_ends_the_outage(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], method: str
) -> None:
    calls: dict[str, Callable[[Any], Any]] = {
        "get": lambda cache: cache.get("k"),
        "get_many": lambda cache: cache.get_many(["k"]),
        "exists": lambda cache: cache.exists("k"),
        "set": lambda cache: cache.set("k", 1),
        "get_with_ttl": lambda cache: cache._get_with_ttl("k", None),
    }
    call = calls[method]
    clock = FakeClock()
    with RedisCache(server.url, namespace="recover", clock=clock) as cache:
        server.stop()
        call(cache)
        server.start()
        clock.advance(1.0)  # a probe is due
        call(cache)  # may meet a connection of the old server first: then the next works
        clock.advance(1.0)
        call(cache)

    async def main() -> None:
        async with AsyncRedisCache(server.url, namespace="arecover", clock=clock) as cache:
            await asyncio.to_thread(server.stop)
            await call(cache)
            await asyncio.to_thread(server.start)
            clock.advance(1.0)
            await call(cache)
            clock.advance(1.0)
            await call(cache)

    asyncio.run(main())
    assert [entry["cache"] for entry in events(utils_logs, "cache.unavailable")] == [
        "recover",
        "arecover",
    ]
    assert [entry["cache"] for entry in events(utils_logs, "cache.recovered")] == [
        "recover",
        "arecover",
    ]


# -- every method against a server that is not there --------------------------------------------


def down_url() -> str:
    return f"redis://127.0.0.1:{find_free_port()}/0"


def test_every_method_fails_open(utils_logs: list[dict[str, Any]], utils_metrics: Any) -> None:
    with RedisCache(down_url(), namespace="down", ttl=60) as cache:
        assert cache.get("k") is None
        assert cache.get("k", MISSING) is MISSING
        cache.set("k", 1)
        assert cache.get_many(["a", "b"]) == {}
        cache.set_many({"a": 1})
        assert cache.exists("k") is False
        assert cache.delete("k") is False
        assert cache.delete_many(["a", "b"]) == 0
        assert cache.incr("n", 5) == 5
        assert cache.ttl("k") is None
        cache.clear()
        assert cache._get_with_ttl("k", MISSING) == (MISSING, None)
        with deadline(5):
            assert cache.get("k", "d") == "d"
            cache.set("k", 1)
            assert cache.get_many(["a"]) == {}
        stats = cache.stats()
    assert stats.errors == 15
    assert (stats.hits, stats.sets, stats.deletes) == (0, 0, 0)
    assert stats.misses == 7
    assert len(events(utils_logs, "cache.unavailable")) == 1
    assert events(utils_logs, "cache.recovered") == []
    assert utils_metrics.count("cache.error", cache="down") == 15


def test_every_method_raises_when_strict() -> None:
    with RedisCache(down_url(), namespace="down", fail_open=False) as cache:
        calls: list[Callable[[], Any]] = [
            lambda: cache.get("k"),
            lambda: cache.set("k", 1),
            lambda: cache.get_many(["a"]),
            lambda: cache.set_many({"a": 1}),
            lambda: cache.exists("k"),
            lambda: cache.delete("k"),
            lambda: cache.delete_many(["k"]),
            lambda: cache.incr("k"),
            lambda: cache.ttl("k"),
            cache.clear,
            lambda: cache._get_with_ttl("k", None),
        ]
        for call in calls:
            with pytest.raises(CacheUnavailableError):
                call()


def test_every_async_method_fails_open_or_raises(utils_logs: list[dict[str, Any]]) -> None:
    url = down_url()

    async def main() -> None:
        async with AsyncRedisCache(url, namespace="adown", ttl=60) as cache:
            assert await cache.get("k", "d") == "d"
            await cache.set("k", 1)
            assert await cache.get_many(["a"]) == {}
            await cache.set_many({"a": 1})
            assert await cache.exists("k") is False
            assert await cache.delete("k") is False
            assert await cache.delete_many(["a"]) == 0
            assert await cache.incr("n", 2) == 2
            assert await cache.ttl("k") is None
            await cache.clear()
            assert await cache._get_with_ttl("k", None) == (None, None)
            async with deadline(5):
                assert await cache.get("k", "d") == "d"
                await cache.set("k", 1)
            assert cache.stats().errors == 13
        async with AsyncRedisCache(url, namespace="adown", fail_open=False) as strict:
            for call in (
                lambda: strict.get("k"),
                lambda: strict.set("k", 1),
                lambda: strict.get_many(["k"]),
                lambda: strict.incr("k"),
                strict.clear,
            ):
                with pytest.raises(CacheUnavailableError):
                    await call()

    asyncio.run(main())
    assert len([e for e in events(utils_logs, "cache.unavailable") if e["cache"] == "adown"]) == 2


# -- slow Redis and deadlines -------------------------------------------------------------------


def pause(server: PrivateRedis, milliseconds: int) -> float:
    """Make the server answer nobody for a while; return when the pause ends (monotonic)."""
    client = redis.Redis.from_url(server.url)
    try:
        client.client_pause(milliseconds, all=True)
    finally:
        client.close()
    return time.monotonic() + milliseconds / 1000.0


def test_a_slow_redis_is_an_outage_too(
    server: PrivateRedis, utils_logs: list[dict[str, Any]]
) -> None:
    url = server.url + "?socket_timeout=0.1"
    with RedisCache(url, namespace="slow") as cache:
        cache.set("k", 1)
        resumes = pause(server, 400)
        started = time.monotonic()
        assert cache.get("k", "d") == "d"
        assert time.monotonic() - started < 0.35
        assert len(events(utils_logs, "cache.unavailable")) == 1
        wait_until(lambda: time.monotonic() > resumes and cache.get("k") == 1)
        assert len(events(utils_logs, "cache.recovered")) == 1


def test_a_deadline_caps_the_socket_timeout(
    server: PrivateRedis, utils_logs: list[dict[str, Any]], utils_metrics: Any
) -> None:
    with (
        RedisCache(server.url, namespace="dl") as cache,
        RedisCache(server.url, namespace="dl", fail_open=False) as strict,
    ):
        cache.set("k", 1)
        strict.set("k", 1)
        resumes = pause(server, 500)
        started = time.monotonic()
        with deadline(0.05):
            assert cache.get("k", "d") == "d"
        assert time.monotonic() - started < 0.3  # not the 1 s socket timeout, not the pause
        started = time.monotonic()
        with deadline(0.05), pytest.raises(OperationTimeoutError) as caught:
            strict.get("k")
        cause = caught.value.__cause__
        assert isinstance(cause, OperationTimeoutError)  # utils.core.redis: the deadline ran out
        assert isinstance(cause.__cause__, redis.exceptions.TimeoutError)
        assert time.monotonic() - started < 0.3
        assert events(utils_logs, "cache.unavailable") == []  # a spent budget is no outage
        assert utils_metrics.count("cache.error", reason="deadline") == 2
        wait_until(lambda: time.monotonic() > resumes and cache.get("k") == 1)
        connection = pooled_connection(cache.client.connection_pool)
        try:
            sock: Any = connection._sock
            assert sock.gettimeout() == 1.0
        finally:
            cache.client.connection_pool.release(connection)


def test_a_deadline_caps_async_calls(
    server: PrivateRedis, utils_logs: list[dict[str, Any]]
) -> None:
    async def main() -> None:
        async with (
            AsyncRedisCache(server.url, namespace="adl") as cache,
            AsyncRedisCache(server.url, namespace="adl", fail_open=False) as strict,
        ):
            await cache.set("k", 1)
            await strict.set("k", 1)
            resumes = pause(server, 500)
            started = time.monotonic()
            async with deadline(0.05):
                assert await cache.get("k", "d") == "d"
            assert time.monotonic() - started < 0.3
            async with deadline(0.05):
                with pytest.raises(OperationTimeoutError):
                    await strict.get("k")
            await async_wait_until(lambda: time.monotonic() > resumes)
            assert await cache.get("k") == 1

    asyncio.run(main())
    assert events(utils_logs, "cache.unavailable") == []


# -- write refusals (OOM) ----------------------------------------------------------------------


def test_refused_writes_are_dropped_and_logged_once(
    server: PrivateRedis, utils_logs: list[dict[str, Any]]
) -> None:
    admin = redis.Redis.from_url(server.url)
    try:
        with (
            RedisCache(server.url, namespace="oom") as cache,
            RedisCache(server.url, namespace="oom", fail_open=False) as strict,
        ):
            cache.set("k", 1)
            admin.config_set("maxmemory", 1)  # every write is now refused with OOM
            cache.set("k", 2)
            cache.set("k", 3)
            assert cache.incr("n") == 1
            assert cache.get("k") == 1  # reads still work, and do not end the refusal
            with pytest.raises(CacheUnavailableError):
                strict.set("k", 4)
            refused = events(utils_logs, "cache.unavailable")
            assert [entry["scope"] for entry in refused] == ["writes", "writes"]
            assert events(utils_logs, "cache.recovered") == []
            admin.config_set("maxmemory", 0)
            cache.set("k", 5)
            assert cache.get("k") == 5
            recovered = events(utils_logs, "cache.recovered")
            assert [entry["scope"] for entry in recovered] == ["writes"]
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()


# -- regressions: fail fast (D1), reporting that never breaks a caller (D5) --------------------


def test_d1_an_unresponsive_redis_costs_one_timeout_then_calls_fail_fast(
    server: PrivateRedis,
) -> None:
    """SIGSTOP'd server, 1 s socket timeouts: one call pays the timeout, the next are instant."""
    from utils.cache import TieredCache, cached
    from utils.cache.memory import MemoryCache

    clock = FakeClock()
    with RedisCache(server.url, namespace="d1", clock=clock) as cache:
        calls: list[int] = []

        @cached(cache, ttl=60)
        def compute(x: int) -> int:
            calls.append(x)
            return x * 2

        assert compute(1) == 2  # warm: the connection is open
        server.freeze()  # SIGSTOP: connections stay open, nothing answers
        try:
            started = time.monotonic()
            assert compute(2) == 4  # a miss: peek, lock, set, release — one timeout only
            assert time.monotonic() - started < 1.5
            started = time.monotonic()
            for x in range(3, 13):
                assert compute(x) == 2 * x  # fail fast: computed, no round trip
            assert cache.get("anything", "d") == "d"
            assert time.monotonic() - started < 0.5
            tiered_l2 = RedisCache(server.url, namespace="d1t", clock=clock)
            tiered_l2._outage.failed(ConnectionError("known down"))  # shares nothing: mark it
            with TieredCache(MemoryCache(maxsize=10), tiered_l2) as tiered:
                started = time.monotonic()
                assert tiered.get_or_set("k", lambda: 1) == 1
                tiered.set("j", 2)
                assert time.monotonic() - started < 0.5
            tiered_l2.close()
        finally:
            server.thaw()
        clock.advance(1.0)  # the probe is due: it finds Redis back
        assert compute(20) == 40
        assert cache.get(compute.key_for(20)) == 40  # stored again: recovered
        assert not cache._outage.down


def test_d5_prometheus_sink_and_a_real_outage(server: PrivateRedis) -> None:
    from prometheus_client import CollectorRegistry

    from utils.cache import TieredCache, cached
    from utils.cache.memory import MemoryCache
    from utils.core.metrics import set_metrics_sink
    from utils.core.prometheus import PrometheusSink

    registry = CollectorRegistry()
    previous = set_metrics_sink(PrometheusSink(registry=registry))
    clock = FakeClock()
    try:
        l2 = RedisCache(server.url, namespace="d5", clock=clock)
        with TieredCache(MemoryCache(maxsize=10), l2) as tiered:
            assert tiered.wait_subscribed(5)

            @cached(l2, ttl=60)
            def compute(x: int) -> int:
                return x

            server.stop()
            # The subscriber reports its lost connection (cache.error, op=subscribe) ...
            wait_until(lambda: tiered._subscriber.in_outage)
            # ... and the cache its failed calls: the same metric, the same labels.
            assert compute(1) == 1
            assert tiered.get("k", "d") == "d"
            server.start()
            assert tiered.wait_subscribed(5)  # the subscriber survived
            assert tiered._subscriber.thread.is_alive()
        samples = [
            sample.labels
            for metric in registry.collect()
            if metric.name == "utils_cache_error"
            for sample in metric.samples
            if sample.name == "utils_cache_error_total"
        ]
        assert {tuple(sorted(labels)) for labels in samples} == {("cache", "op", "reason")}
        assert {labels["op"] for labels in samples} >= {"subscribe", "get"}
        l2.close()
    finally:
        set_metrics_sink(previous)


class RaisingSink:
    """A metrics sink that fails on every call."""

    def increment(self, name: str, value: float = 1.0, tags: Any = None) -> None:
        raise RuntimeError("the metrics backend is down")

    observe = gauge = increment


def test_d5_a_failing_sink_or_logger_never_reaches_a_caller(server: PrivateRedis) -> None:
    import logging

    from utils.cache import TieredCache, cached
    from utils.cache.memory import MemoryCache
    from utils.core.metrics import set_metrics_sink

    previous = set_metrics_sink(RaisingSink())
    broken = logging.getLogger("utils.cache")

    class Explodes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("the log shipper is down")

        def handleError(self, record: logging.LogRecord) -> None:
            raise RuntimeError("and so is its error handler")

    handler = Explodes()
    broken.addHandler(handler)
    clock = FakeClock()
    try:
        l2 = RedisCache(server.url, namespace="d5b", clock=clock)
        with TieredCache(MemoryCache(maxsize=10), l2) as tiered:
            assert tiered.wait_subscribed(5)

            @cached(tiered, ttl=60)
            def compute(x: int) -> int:
                return x

            assert compute(1) == 1
            server.stop()
            wait_until(lambda: tiered._subscriber.in_outage)
            assert compute(2) == 2
            tiered.set("k", 1)
            server.start()
            clock.advance(1.0)
            assert tiered.wait_subscribed(5)
            assert tiered._subscriber.thread.is_alive()
            assert compute(3) == 3
        l2.close()
    finally:
        broken.removeHandler(handler)
        set_metrics_sink(previous)
