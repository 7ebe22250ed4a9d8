"""RedisCache and AsyncRedisCache against the real test Redis: every method, both kinds.

Each test gets a fresh namespace (deleted afterwards, every version) and runs twice: on
:class:`RedisCache` and, through a small facade that runs coroutines on a private loop, on
:class:`AsyncRedisCache`. Round trips are counted by a connection class that counts
``send_packed_command`` calls (one per round trip, pipelines included), so other processes
using the same server cannot disturb the counts.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
import redis
import redis.asyncio
from tests.conftest import pooled_connection

from utils.cache.errors import (
    CacheError,
    CacheIntegrityError,
    CacheUnavailableError,
    CacheValueError,
)
from utils.cache.protocol import MISSING, AsyncCache, Cache, CacheStats
from utils.cache.redis_cache import DEFAULT_SOCKET_TIMEOUT, AsyncRedisCache, RedisCache
from utils.cache.serializers import JsonSerializer, PickleSerializer
from utils.core import OperationTimeoutError, ValidationError, deadline

pytestmark = pytest.mark.redis

SECRET = "test-secret-key-0123456789abcdef"


async def aclose(client: Any) -> None:
    """Close an async client (redis-py 5.0.0 has no ``aclose`` yet)."""
    close = getattr(client, "aclose", None) or client.close
    await close()


# -- counting connections -----------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.sends = 0

    def reset(self) -> None:
        self.sends = 0


def counting_sync_client(url: str, counter: Counter, **kwargs: Any) -> redis.Redis:
    class CountingConnection(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter.sends += 1
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection, **kwargs)
    return redis.Redis(connection_pool=pool)


def counting_async_client(url: str, counter: Counter, **kwargs: Any) -> redis.asyncio.Redis:
    class CountingConnection(redis.asyncio.Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter.sends += 1
            await super().send_packed_command(command, check_health)

    pool = redis.asyncio.ConnectionPool.from_url(
        url, connection_class=CountingConnection, **kwargs
    )
    return redis.asyncio.Redis(connection_pool=pool)


# -- one test body for both kinds -------------------------------------------------------------


class SyncLock:
    """The async lock seen through sync method names."""

    def __init__(self, lock: Any, run: Callable[[Any], Any]) -> None:
        self.lock, self.run = lock, run

    def acquire(self, wait: float = 0.0) -> bool:
        return bool(self.run(self.lock.aacquire(wait)))

    def release(self) -> bool:
        return bool(self.run(self.lock.arelease()))

    @property
    def held(self) -> bool:
        return bool(self.lock.held)


class SyncFacade:
    """Run an AsyncRedisCache's coroutines on a private loop, so a test body serves both."""

    def __init__(self, cache: AsyncRedisCache, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = cache
        self.loop = loop

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return self.run(result) if inspect.isawaitable(result) else result

        return call

    def _lock(self, key: str, ttl: float) -> SyncLock:
        return SyncLock(self.inner._alock(key, ttl), self.run)


class Kit:
    """What a test needs: a cache factory on the test server, a raw client, a counter."""

    def __init__(self, kind: str, url: str, raw: redis.Redis) -> None:
        self.kind = kind
        self.url = url
        self.raw = raw
        self.counter = Counter()
        self.namespaces: list[str] = []
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self._closers: list[Callable[[], Any]] = []

    def namespace(self) -> str:
        namespace = f"test-{uuid.uuid4().hex[:12]}"
        self.namespaces.append(namespace)
        return namespace

    def run(self, awaitable: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(awaitable)

    def client(self, **kwargs: Any) -> Any:
        if self.kind == "sync":
            client: Any = counting_sync_client(self.url, self.counter, **kwargs)
            self._closers.append(client.connection_pool.disconnect)
        else:
            client = counting_async_client(self.url, self.counter, **kwargs)
            self._closers.append(lambda: self.run(client.connection_pool.disconnect()))
        return client

    def cache(self, namespace: str | None = None, client: Any = None, **kwargs: Any) -> Any:
        client = client if client is not None else self.client()
        kwargs.setdefault("namespace", namespace or self.namespace())
        if self.kind == "sync":
            return RedisCache(client, **kwargs)
        assert self.loop is not None
        return SyncFacade(AsyncRedisCache(client, **kwargs), self.loop)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        if self.loop is not None:
            self.loop.close()
        for namespace in self.namespaces:
            names = list(self.raw.scan_iter(match=f"{namespace}#*", count=1000))
            if names:
                self.raw.unlink(*names)


@pytest.fixture
def raw(utils_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(utils_redis_url)
    yield client
    client.close()


@pytest.fixture(params=["sync", "async"])
def kit(request: pytest.FixtureRequest, utils_redis_url: str, raw: redis.Redis) -> Iterator[Kit]:
    kit = Kit(request.param, utils_redis_url, raw)
    yield kit
    kit.close()


@pytest.fixture
def cache(kit: Kit) -> Any:
    return kit.cache()


def warm(kit: Kit, cache: Any) -> None:
    """Open the pooled connection (its handshake is not a cache round trip), reset counts."""
    cache.exists("warm-up")
    kit.counter.reset()


# -- the protocol ---------------------------------------------------------------------------


def test_caches_satisfy_the_protocols(utils_redis_url: str) -> None:
    with RedisCache(utils_redis_url, namespace="proto") as cache:
        assert isinstance(cache, Cache)
    assert isinstance(AsyncRedisCache(utils_redis_url, namespace="proto"), AsyncCache)


def test_set_get_and_miss(kit: Kit, cache: Any) -> None:
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    cache.set("k", {"a": [1, 2.5, "x", None, True]})
    assert cache.get("k") == {"a": [1, 2.5, "x", None, True]}
    assert cache.stats() == CacheStats(hits=1, misses=2, sets=1)


def test_a_cached_none_is_a_hit(cache: Any) -> None:
    cache.set("none", None)
    assert cache.get("none", MISSING) is None
    assert cache.get("absent", MISSING) is MISSING
    assert cache.stats().hits == 1


def test_get_is_one_round_trip(kit: Kit, cache: Any) -> None:
    cache.set("k", 1)
    warm(kit, cache)
    assert cache.get("k") == 1
    assert cache.get("missing") is None
    assert kit.counter.sends == 2


def test_keys_live_under_namespace_and_version(kit: Kit, raw: redis.Redis) -> None:
    namespace = kit.namespace()
    cache = kit.cache(namespace, version=3)
    cache.set("user:42", [1, 2])
    assert cache.prefix == f"{namespace}#3:"
    assert cache.redis_key("user:42") == f"{namespace}#3:user:42"
    assert raw.get(f"{namespace}#3:user:42") == b"[1,2]"


def test_delete_and_exists(cache: Any) -> None:
    cache.set("k", "v")
    assert cache.exists("k") is True
    assert cache.delete("k") is True
    assert cache.exists("k") is False
    assert cache.delete("k") is False
    assert cache.stats().deletes == 1


def test_get_many_is_one_mget(kit: Kit, cache: Any) -> None:
    cache.set_many({f"k{i}": i for i in range(100)})
    warm(kit, cache)
    keys = [f"k{i}" for i in range(0, 120, 2)]
    found = cache.get_many(keys)
    assert found == {f"k{i}": i for i in range(0, 100, 2)}
    assert kit.counter.sends == 1
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (50, 10)


def test_get_many_of_nothing_makes_no_round_trip(kit: Kit, cache: Any) -> None:
    warm(kit, cache)
    assert cache.get_many([]) == {}
    assert cache.get_many(iter(())) == {}
    assert cache.delete_many([]) == 0
    cache.set_many({})
    assert kit.counter.sends == 0


def test_get_many_accepts_any_iterable_and_cached_none(cache: Any) -> None:
    cache.set("a", None)
    cache.set("b", 2)
    assert cache.get_many(key for key in ["a", "b", "c"]) == {"a": None, "b": 2}


@pytest.mark.parametrize("ttl", [None, 30, timedelta(seconds=30)])
def test_set_many_is_one_round_trip(kit: Kit, cache: Any, ttl: Any) -> None:
    warm(kit, cache)
    cache.set_many({f"k{i}": (i, str(i)) for i in range(50)}, ttl=ttl)
    assert kit.counter.sends == 1
    assert cache.get("k7") == (7, "7")
    remaining = cache.ttl("k49")
    if ttl is None:
        assert remaining is None
    else:
        assert 29 < remaining <= 30
    assert cache.stats().sets == 50


def test_set_many_serializes_everything_before_writing(kit: Kit, cache: Any) -> None:
    warm(kit, cache)
    with pytest.raises(CacheValueError, match="object"):
        cache.set_many({"good": 1, "bad": object()})
    assert kit.counter.sends == 0
    assert cache.get("good") is None


def test_delete_many_is_one_unlink(kit: Kit, cache: Any) -> None:
    cache.set_many({"a": 1, "b": 2, "c": 3})
    warm(kit, cache)
    assert cache.delete_many(["a", "b", "zz"]) == 2
    assert kit.counter.sends == 1
    assert cache.get_many(["a", "b", "c"]) == {"c": 3}
    assert cache.stats().deletes == 2


# -- TTLs ------------------------------------------------------------------------------------


def test_ttl_none_uses_the_default_which_defaults_to_no_expiry(kit: Kit) -> None:
    forever = kit.cache()
    forever.set("k", 1)
    assert forever.ttl("k") is None
    assert forever.default_ttl is None
    minute = kit.cache(ttl=60)
    minute.set("k", 1)
    assert 59 < minute.ttl("k") <= 60
    minute.set("short", 1, ttl=timedelta(seconds=5))
    assert 4 < minute.ttl("short") <= 5
    minute.set("frac", 1, ttl=0.25)
    assert 0.1 < minute.ttl("frac") <= 0.25
    minute.set("forever", 1, ttl=float("inf"))
    assert minute.ttl("forever") is None


def test_ttl_zero_does_not_store(kit: Kit) -> None:
    cache = kit.cache(ttl=60)
    warm(kit, cache)
    cache.set("k", 1, ttl=0)
    cache.set_many({"a": 1}, ttl=timedelta(0))
    assert kit.counter.sends == 0
    assert cache.get("k") is None
    assert cache.get("a") is None
    assert cache.stats().sets == 0


def test_a_default_ttl_of_zero_stores_nothing(kit: Kit) -> None:
    cache = kit.cache(ttl=0)
    cache.set("k", 1)
    assert cache.get("k") is None
    assert cache.incr("n", 3) == 3
    assert cache.get("n") is None
    cache.set("k", 1, ttl=10)  # an explicit TTL still stores
    assert cache.get("k") == 1


def test_sub_millisecond_ttls_round_up_to_one_millisecond(kit: Kit, raw: redis.Redis) -> None:
    cache = kit.cache()
    cache.set("k", 1, ttl=0.0001)
    assert raw.pttl(cache.redis_key("k")) in (-2, 0, 1)


def test_ttl_of_missing_and_persistent_keys_is_none(cache: Any) -> None:
    assert cache.ttl("missing") is None
    cache.set("k", 1)
    assert cache.ttl("k") is None


@pytest.mark.parametrize("ttl", [-1, float("nan"), "10", True])
def test_invalid_ttls_are_refused(kit: Kit, cache: Any, ttl: Any) -> None:
    with pytest.raises(ValidationError):
        cache.set("k", 1, ttl=ttl)
    with pytest.raises(ValidationError):
        kit.cache(ttl=ttl)


# -- incr ------------------------------------------------------------------------------------


def test_incr_counts_from_zero_and_reads_back_as_int(cache: Any) -> None:
    assert cache.incr("n") == 1
    assert cache.incr("n", 10) == 11
    assert cache.incr("n", -20) == -9
    assert cache.get("n") == -9


def test_incr_works_on_a_stored_json_int(cache: Any) -> None:
    cache.set("n", 41)
    assert cache.incr("n") == 42
    assert cache.get("n") == 42


def test_incr_works_with_the_pickle_serializer(kit: Kit) -> None:
    cache = kit.cache(serializer=PickleSerializer(SECRET))
    cache.set("n", 5)
    assert cache.incr("n", 2) == 7
    assert cache.get("n") == 7


def test_incr_of_a_non_integer_is_a_value_error(cache: Any) -> None:
    cache.set("s", "text")
    with pytest.raises(CacheValueError, match="not an integer") as caught:
        cache.incr("s")
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    cache.set("f", 1.5)
    with pytest.raises(CacheValueError):
        cache.incr("f")


def test_incr_gives_a_new_counter_the_default_ttl_and_keeps_an_existing_ttl(kit: Kit) -> None:
    cache = kit.cache(ttl=60)
    warm(kit, cache)
    assert cache.incr("n") == 1
    assert kit.counter.sends == 1  # MULTI/SET NX/INCRBY/EXEC in one round trip
    assert 59 < cache.ttl("n") <= 60
    cache.set("m", 1, ttl=5)
    assert cache.incr("m") == 2
    assert 4 < cache.ttl("m") <= 5


def test_incr_without_a_default_ttl_never_expires(cache: Any) -> None:
    cache.incr("n")
    assert cache.ttl("n") is None


@pytest.mark.parametrize("delta", [True, 1.5, "1"])
def test_incr_delta_must_be_an_int(cache: Any, delta: Any) -> None:
    with pytest.raises(ValidationError):
        cache.incr("n", delta)


# -- clear, namespaces, versions --------------------------------------------------------------


def test_clear_removes_only_its_namespace(kit: Kit, raw: redis.Redis) -> None:
    namespace = kit.namespace()
    mine = kit.cache(namespace)
    other = kit.cache()
    old = kit.cache(namespace, version=1)
    lookalike = kit.cache(namespace + "x")
    outside = [f"{namespace}", f"{namespace}:0:k", f"{namespace}#0", f"x{namespace}#0:k"]
    try:
        for name in outside:
            raw.set(name, b"raw")
        mine.set_many({f"k{i}": i for i in range(1200)})  # more than two SCAN batches
        other.set("k1", "other")
        old.set("k1", "old")
        lookalike.set("k1", "lookalike")
        lock = mine._lock("k1", 30)
        assert lock.acquire()
        mine.clear()
        assert mine.get_many([f"k{i}" for i in range(1200)]) == {}
        assert other.get("k1") == "other"
        assert old.get("k1") == "old"
        assert lookalike.get("k1") == "lookalike"
        assert all(raw.get(name) == b"raw" for name in outside)
        assert raw.exists(f"{namespace}#0#lock:k1")  # a held lock is left alone
        lock.release()
    finally:
        raw.delete(*outside)


def test_clear_all_versions(kit: Kit, raw: redis.Redis) -> None:
    namespace = kit.namespace()
    current = kit.cache(namespace, version=2)
    for version in range(3):
        kit.cache(namespace, version=version).set("k", version)
    neighbour = kit.cache(namespace + "2")
    neighbour.set("k", "kept")
    current.clear(all_versions=True)
    assert [kit.cache(namespace, version=v).get("k") for v in range(3)] == [None] * 3
    assert neighbour.get("k") == "kept"


def test_clear_escapes_glob_characters_of_the_namespace(kit: Kit) -> None:
    base = kit.namespace()
    special = kit.cache(f"{base}*[ab]?\\")
    victim = kit.cache(f"{base}xaz\\")
    special.set("k", 1)
    victim.set("k", 2)
    special.clear()
    assert special.get("k") is None
    assert victim.get("k") == 2
    special.set("k", 1)
    special.clear(all_versions=True)
    assert victim.get("k") == 2
    kit.namespaces.append(f"{base}*[ab]?\\")


def test_clear_of_an_empty_namespace(cache: Any) -> None:
    cache.clear()
    assert cache.get("k") is None


def test_bumping_the_version_invalidates_the_namespace(kit: Kit) -> None:
    namespace = kit.namespace()
    v0 = kit.cache(namespace)
    v0.set_many({"a": 1, "b": 2})
    v1 = kit.cache(namespace, version=1)
    assert v1.get_many(["a", "b"]) == {}
    v1.set("a", "new")
    assert v0.get("a") == 1
    assert v1.get("a") == "new"


# -- serializers through Redis ------------------------------------------------------------------


def test_json_round_trips_rich_values_through_redis(cache: Any) -> None:
    value = {
        "when": datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
        "day": date(2024, 5, 1),
        "price": Decimal("9.99"),
        "id": uuid.UUID(int=7),
        "raw": b"\x00\xff",
        "pair": (1, (2, 3)),
        "tags": {"a", "b"},
        "by_id": {1: "one"},
    }
    cache.set("rich", value)
    assert cache.get("rich") == value


def test_pickle_serializer_through_redis_and_tampering(kit: Kit, raw: redis.Redis) -> None:
    cache = kit.cache(serializer=PickleSerializer(SECRET))
    cache.set("c", complex(1, 2))
    assert cache.get("c") == complex(1, 2)
    name = cache.redis_key("c")
    data = bytearray(cast(bytes, raw.get(name)))
    data[-2] ^= 0x01
    raw.set(name, bytes(data))
    with pytest.raises(CacheIntegrityError):
        cache.get("c")
    with pytest.raises(CacheIntegrityError):
        cache.get_many(["c"])
    with pytest.raises(CacheIntegrityError):
        cache._get_with_ttl("c", None)
    assert cache.stats().errors == 3


def test_undecodable_json_is_an_integrity_error(kit: Kit, cache: Any, raw: redis.Redis) -> None:
    raw.set(cache.redis_key("k"), b"{not json")
    with pytest.raises(CacheIntegrityError):
        cache.get("k")


def test_values_that_cannot_be_serialized_are_refused_before_io(kit: Kit, cache: Any) -> None:
    warm(kit, cache)
    with pytest.raises(CacheValueError, match="'object'") as caught:
        cache.set("k", {"a": object()})
    assert isinstance(caught.value, ValidationError)
    assert kit.counter.sends == 0


# -- redis errors that are not outages --------------------------------------------------------------


def test_wrong_type_is_a_cache_error_even_when_failing_open(cache: Any, raw: redis.Redis) -> None:
    raw.rpush(cache.redis_key("list"), b"x")
    calls: list[Callable[[], Any]] = [
        lambda: cache.get("list"),
        lambda: cache.incr("list"),
        lambda: cache._get_with_ttl("list", None),
    ]
    for call in calls:
        with pytest.raises(CacheError) as caught:
            call()
        assert not isinstance(caught.value, CacheUnavailableError)
        assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    assert cache.stats().errors == 3
    assert cache.get_many(["list"]) == {}  # MGET answers nil for other types


def test_wrong_type_under_a_deadline(cache: Any, raw: redis.Redis) -> None:
    raw.rpush(cache.redis_key("list"), b"x")
    with deadline(5), pytest.raises(CacheError) as caught:
        cache.get("list")
    assert "WRONGTYPE" in str(caught.value)
    with deadline(5), pytest.raises(CacheError, match="WRONGTYPE"):
        cache.incr("list")
    cache.set("text", "x")
    with deadline(5), pytest.raises(CacheValueError):
        cache.incr("text")


def test_incr_of_a_non_integer_inside_the_ttl_transaction(kit: Kit) -> None:
    cache = kit.cache(ttl=60)
    cache.set("text", "x")
    with pytest.raises(CacheValueError):
        cache.incr("text")
    with deadline(5), pytest.raises(CacheValueError):
        cache.incr("text")
    assert cache.get("text") == "x"


def test_error_metric_and_stats(
    kit: Kit, cache: Any, raw: redis.Redis, utils_metrics: Any
) -> None:
    raw.rpush(cache.redis_key("list"), b"x")
    with pytest.raises(CacheError):
        cache.get("list")
    assert utils_metrics.count("cache.error", cache=cache.name, op="get", reason="error") == 1


# -- _get_with_ttl (TieredCache) ----------------------------------------------------------------


def test_get_with_ttl_is_one_round_trip(kit: Kit) -> None:
    cache = kit.cache(ttl=60)
    cache.set("k", [1])
    cache.set("forever", 1, ttl=float("inf"))
    warm(kit, cache)
    value, ttl = cache._get_with_ttl("k", MISSING)
    assert value == [1]
    assert 59 < ttl <= 60
    assert kit.counter.sends == 1
    assert cache._get_with_ttl("forever", MISSING) == (1, None)
    assert cache._get_with_ttl("missing", MISSING) == (MISSING, None)
    with deadline(5):
        assert cache._get_with_ttl("forever", MISSING) == (1, None)


# -- deadlines --------------------------------------------------------------------------------


def test_every_method_works_under_a_deadline(kit: Kit) -> None:
    cache = kit.cache(ttl=60)
    with deadline(10):
        cache.set("a", {"x": 1})
        cache.set("b", 2, ttl=None)
        cache.set_many({"c": 3, "d": (4,)})
        cache.set_many({"e": 5}, ttl=float("inf"))
        assert cache.get("a") == {"x": 1}
        assert cache.get("zz", "d") == "d"
        assert cache.get_many(["a", "c", "d", "zz"]) == {"a": {"x": 1}, "c": 3, "d": (4,)}
        assert cache.exists("a")
        assert 59 < cache.ttl("a") <= 60
        assert cache.ttl("e") is None
        assert cache.incr("n", 2) == 2
        assert cache.delete("a")
        assert cache.delete_many(["c", "d"]) == 2
        cache.clear()
        assert cache.get_many(["b", "e", "n"]) == {}


def test_every_method_works_under_a_deadline_without_default_ttl(cache: Any) -> None:
    with deadline(10):
        cache.set("k", 1)
        assert cache.incr("k") == 2
        assert cache.ttl("k") is None


def test_a_spent_deadline_misses_at_once_when_failing_open(
    kit: Kit, cache: Any, utils_metrics: Any
) -> None:
    cache.set("k", 1)
    warm(kit, cache)
    with deadline(0):
        assert cache.get("k", "d") == "d"
        assert cache.get_many(["k"]) == {}
        cache.set("k", 2)
        cache.set_many({"k": 2})
        assert cache.incr("k") == 1
        assert cache.exists("k") is False
        assert cache.ttl("k") is None
        assert cache.delete("k") is False
        assert cache.delete_many(["k"]) == 0
        cache.clear()
    assert kit.counter.sends == 0
    assert cache.get("k") == 1
    assert cache.stats().errors == 10
    assert utils_metrics.count("cache.error", reason="deadline") == 10


def test_a_spent_deadline_raises_when_strict(kit: Kit) -> None:
    cache = kit.cache(fail_open=False)
    with deadline(0), pytest.raises(OperationTimeoutError):
        cache.get("k")
    with deadline(0), pytest.raises(OperationTimeoutError):
        cache.set("k", 1)


def test_a_capped_call_puts_the_socket_timeout_back(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url, socket_timeout=3.0)
    try:
        cache = RedisCache(client, namespace=f"test-{uuid.uuid4().hex[:12]}")
        with deadline(0.5):
            cache.set("k", 1)
            assert cache.get("k") == 1
        connection = pooled_connection(client.connection_pool)
        try:
            sock: Any = connection._sock
            assert sock.gettimeout() == 3.0
        finally:
            client.connection_pool.release(connection)
        cache.clear()
    finally:
        client.close()


def test_single_connection_clients_still_work_under_a_deadline(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url, single_connection_client=True)
    try:
        cache = RedisCache(client, namespace=f"test-{uuid.uuid4().hex[:12]}")
        with deadline(5):
            cache.set("k", 1)
            assert cache.get("k") == 1
            assert cache.incr("n") == 1
        cache.clear()
    finally:
        client.close()


# -- get_or_set and the lock hook -----------------------------------------------------------------


def test_get_or_set_delegates_to_compute(cache: Any) -> None:
    pytest.importorskip("utils.cache._compute")
    calls: list[int] = []

    def factory() -> int:
        calls.append(1)
        return 42

    assert cache.get_or_set("k", factory, ttl=30) == 42
    assert cache.get_or_set("k", factory, ttl=30) == 42
    assert calls == [1]
    assert cache.get("k") == 42


def test_lock_keys_live_beside_the_namespace(kit: Kit, raw: redis.Redis) -> None:
    namespace = kit.namespace()
    cache = kit.cache(namespace)
    lock = cache._lock("k", 30)
    assert lock.acquire()
    assert raw.exists(f"{namespace}#0#lock:k")
    assert lock.release()


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespace": ""}, "namespace"),
        ({"namespace": "a#b"}, "namespace"),
        ({"namespace": 3}, "namespace"),
        ({"namespace": "ok", "version": -1}, "version"),
        ({"namespace": "ok", "version": True}, "version"),
        ({"namespace": "ok", "fail_open": "yes"}, "fail_open"),
        ({"namespace": "ok", "name": ""}, "name"),
        ({"namespace": "ok", "serializer": object()}, "serializer"),
    ],
)
def test_invalid_configuration(utils_redis_url: str, kwargs: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedisCache(utils_redis_url, **kwargs)
    with pytest.raises(ValidationError, match=message):
        AsyncRedisCache(utils_redis_url, **kwargs)


def test_the_client_kind_must_match(utils_redis_url: str) -> None:
    async_client = redis.asyncio.Redis.from_url(utils_redis_url)
    sync_client = redis.Redis.from_url(utils_redis_url)
    try:
        with pytest.raises(TypeError, match=r"redis\.Redis"):
            RedisCache(async_client, namespace="x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
            AsyncRedisCache(sync_client, namespace="x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="redis client"):
            RedisCache(object(), namespace="x")  # type: ignore[arg-type]
    finally:
        sync_client.close()
        asyncio.run(aclose(async_client))


def test_decoding_clients_are_refused(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url, decode_responses=True)
    try:
        with pytest.raises(ValidationError, match="decode_responses"):
            RedisCache(client, namespace="x")
    finally:
        client.close()


def test_a_url_builds_a_fail_fast_client_that_close_closes(utils_redis_url: str) -> None:
    cache = RedisCache(utils_redis_url, namespace="x")
    kwargs = cache.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == DEFAULT_SOCKET_TIMEOUT
    assert kwargs["socket_connect_timeout"] == DEFAULT_SOCKET_TIMEOUT
    assert kwargs["retry"]._retries == 0
    assert cache.exists("k") is False
    cache.close()
    url = utils_redis_url + ("&" if "?" in utils_redis_url else "?") + "socket_timeout=0.25"
    with RedisCache(url, namespace="x") as tuned:
        assert tuned.client.connection_pool.connection_kwargs["socket_timeout"] == 0.25


def test_a_passed_client_stays_open(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url)
    try:
        with RedisCache(client, namespace="x") as cache:
            assert cache.client is client
        assert client.ping()
    finally:
        client.close()


def test_async_url_client_and_context_manager(utils_redis_url: str) -> None:
    async def main() -> None:
        async with AsyncRedisCache(utils_redis_url, namespace=f"t-{uuid.uuid4().hex}") as cache:
            kwargs = cache.client.connection_pool.connection_kwargs
            assert kwargs["retry"]._retries == 0
            await cache.set("k", 1)
            assert await cache.get("k") == 1
            await cache.clear()
        client = redis.asyncio.Redis.from_url(utils_redis_url)
        async with AsyncRedisCache(client, namespace="x"):
            pass
        assert await client.ping()
        await aclose(client)

    asyncio.run(main())


def test_properties_and_repr(utils_redis_url: str) -> None:
    serializer = JsonSerializer(backend="json")
    cache = RedisCache(
        utils_redis_url,
        namespace="shop",
        serializer=serializer,
        ttl=timedelta(minutes=1),
        fail_open=False,
        version=4,
        name="shop-cache",
    )
    assert (cache.namespace, cache.version, cache.name) == ("shop", 4, "shop-cache")
    assert (cache.default_ttl, cache.fail_open, cache.serializer) == (60.0, False, serializer)
    assert repr(cache) == "RedisCache(namespace='shop', version=4, ttl=60.0, fail_open=False)"
    assert RedisCache(utils_redis_url, namespace="n").name == "n"
    cache.close()


# -- regressions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ttl", [1e308, 10**400, 11 * 365 * 86400.0], ids=["1e308", "10**400", "11y"]
)
def test_d13_absurd_ttls_are_a_validation_error(kit: Kit, ttl: Any) -> None:
    cache = kit.cache()
    calls: list[Callable[[], Any]] = [
        lambda: cache.set("k", 1, ttl=ttl),
        lambda: cache.set_many({"k": 1}, ttl=ttl),
        lambda: cache.get_or_set("k", lambda: 1, ttl=ttl),
    ]
    for call in calls:
        with pytest.raises(ValidationError, match="ttl"):
            call()
    with pytest.raises(ValidationError, match="ttl"):
        kit.cache(ttl=ttl)


def test_d13_infinite_ttl_means_no_expiry(kit: Kit, raw: redis.Redis) -> None:
    import math

    cache = kit.cache(ttl=60)
    cache.set("k", 1, ttl=math.inf)
    cache.set_many({"m": 1}, ttl=math.inf)
    assert raw.pttl(cache.redis_key("k")) == -1
    assert raw.pttl(cache.redis_key("m")) == -1
    assert cache.get("k") == 1


def test_hit_miss_and_set_metrics(kit: Kit, utils_metrics: Any) -> None:
    cache = kit.cache(name="metered")
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert cache.get("b") is None
    assert cache.get_many(["a", "b", "c"]) == {"a": 1}
    assert utils_metrics.total("cache.hit", cache="metered") == 2.0
    assert utils_metrics.total("cache.miss", cache="metered") == 3.0
    assert utils_metrics.total("cache.set", cache="metered") == 1.0
    assert {tuple(m.tags) for m in utils_metrics.select("cache.hit")} == {("cache",)}
