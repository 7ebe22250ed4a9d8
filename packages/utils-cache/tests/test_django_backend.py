"""utils.cache.django on real Redis: a port of Django's own cache tests (``BaseCacheTests``),
the async twins, Django's timeout and key semantics, configuration errors, outages, and
invalidation between two tiered backends."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings  # type: ignore[import-untyped,unused-ignore]

if not settings.configured:  # once per process, whichever test module comes first
    settings.configure(
        SECRET_KEY="utils-cache-tests-secret-key-not-for-production",
        SECRET_KEY_FALLBACKS=[],
        USE_TZ=True,
    )


import django  # type: ignore[import-untyped,unused-ignore]
from django.core.cache import CacheKeyWarning, caches  # type: ignore[import-untyped,unused-ignore]
from django.core.cache.backends.base import DEFAULT_TIMEOUT  # type: ignore[import-untyped,unused-ignore]
from django.test import override_settings  # type: ignore[import-untyped,unused-ignore]
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from utils.cache.django import (
    _NOW,
    RedisCacheBackend,
    TieredCacheBackend,
    ashutdown,
    shutdown,
)
from utils.cache.errors import (
    CacheError,
    CacheIntegrityError,
    CacheUnavailableError,
    CacheValueError,
)
from utils.cache.redis_cache import RedisCache
from utils.cache.testing import unique_namespace
from utils.cache.tiered import TieredCache
from utils.core import ConfigError, ValidationError
from utils.core.testing import PrivateRedis, async_wait_until, wait_until

django.setup()

pytestmark = pytest.mark.redis

Backend = RedisCacheBackend
Make = Callable[..., RedisCacheBackend]
BACKENDS = {"redis": RedisCacheBackend, "tiered": TieredCacheBackend}


@dataclass
class Poll:
    """A model-like object: what Django applications cache (pickled)."""

    question: str
    votes: int


def custom_key_func(key: str, key_prefix: str, version: int) -> str:
    """Django's test-suite KEY_FUNCTION."""
    return "CUSTOM-" + "-".join([key_prefix, str(version), key])


@pytest.fixture
def make(utils_redis_url: str) -> Iterator[Make]:
    """Make backends in a namespace of this test; cleared and shut down afterwards."""
    namespace = unique_namespace("django")
    made: list[RedisCacheBackend] = []

    def factory(kind: str = "tiered", **params: Any) -> RedisCacheBackend:
        options = params.setdefault("OPTIONS", {})
        options.setdefault("namespace", namespace)
        location = params.pop("LOCATION", utils_redis_url)
        backend = BACKENDS[kind](location, params)
        made.append(backend)
        if isinstance(backend.cache, TieredCache):
            assert backend.cache.wait_subscribed(5)
        return backend

    yield factory
    for backend in made:
        with contextlib.suppress(CacheUnavailableError):
            backend.clear()
    shutdown()


@pytest.fixture(params=sorted(BACKENDS))
def cache(request: pytest.FixtureRequest, make: Make) -> RedisCacheBackend:
    return make(request.param)


def l2_of(backend: RedisCacheBackend) -> RedisCache:
    """The Redis cache behind a backend (the L2 of a tiered one)."""
    cache = backend.cache
    return cache.l2 if isinstance(cache, TieredCache) else cache


def pttl(backend: RedisCacheBackend, key: str, version: int | None = None) -> float | None:
    """Seconds left in Redis for ``key`` (None: no expiry or missing)."""
    return backend.cache.ttl(backend.make_key(key, version=version))


# -- Django's BaseCacheTests, ported -----------------------------------------------------------


def test_simple(cache: Backend) -> None:
    cache.set("key", "value")
    assert cache.get("key") == "value"
    assert cache.get("missing") is None
    assert cache.get("missing", "default") == "default"
    cache.set("none", None)
    sentinel = object()
    assert cache.get("none", sentinel) is None  # a cached None is a hit
    assert cache.get("key", version=2) is None


def test_add(cache: Backend) -> None:
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_non_existent(cache: Backend) -> None:
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"


def test_get_many(cache: Backend) -> None:
    cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    assert cache.get_many([]) == {}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}


def test_delete(cache: Backend) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"
    assert cache.delete("key1") is False


def test_has_key(cache: Backend) -> None:
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True
    assert "hello1" in cache
    assert "goodbye1" not in cache


def test_incr_decr(cache: Backend) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41
    assert cache.decr("answer", 10) == 31
    assert cache.decr("answer", -10) == 41
    with pytest.raises(ValueError, match="not found"):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("does_not_exist")
    assert cache.get("does_not_exist") is None  # incr never creates a key
    cache.set("text", "not a number")
    with pytest.raises(CacheValueError):
        cache.incr("text")
    with pytest.raises(ValidationError, match="delta"):
        cache.incr("answer", True)


def test_incr_keeps_the_expiry(cache: Backend) -> None:
    cache.set("counter", 1, timeout=100)
    cache.incr("counter")
    left = pttl(cache, "counter")
    assert left is not None
    assert 90 < left <= 100


def test_incr_after_redis_forgot_the_script(cache: Backend, utils_redis: Any) -> None:
    cache.set("n", 1)
    utils_redis.script_flush()  # what a restart or a failover does
    assert cache.incr("n") == 2
    assert asyncio.run(cache.aincr("n")) == 3  # EVALSHA works again: EVAL reloaded it
    utils_redis.script_flush()
    assert asyncio.run(cache.aincr("n")) == 4


def test_close(cache: Backend) -> None:
    cache.set("key", "value")
    cache.close()  # Django calls it after every request: the shared caches stay open
    assert cache.get("key") == "value"
    asyncio.run(cache.aclose())
    assert cache.get("key") == "value"


def test_data_types(cache: Backend) -> None:
    stuff = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "set": {1, 2},
        "decimal": Decimal("9.90"),
        "datetime": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc),
        "function": len,
        "class": Poll,
        "model": Poll("What's up?", 3),
    }
    cache.set("stuff", stuff)
    assert cache.get("stuff") == stuff
    cache.set_many({"many": stuff})
    assert cache.get_many(["many"]) == {"many": stuff}


def test_model_instances_round_trip_through_redis(make: Make) -> None:
    writer, reader = make("redis"), make("redis", OPTIONS={"probe_interval": 2.0})
    assert writer.cache is not reader.cache  # two processes, as far as caches go
    writer.set("poll", Poll("Why?", 1))
    assert reader.get("poll") == Poll("Why?", 1)


def test_unicode(cache: Backend) -> None:
    stuff = {
        "ascii": "ascii_value",
        "unicode_ascii": "Iñtërnâtiônàlizætiøn1",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
    }
    for key, value in stuff.items():
        cache.delete(key)
        cache.set(key, value)
        assert cache.get(key) == value
        cache.delete(key)
        cache.add(key, value)
        assert cache.get(key) == value
        cache.delete(key)
    cache.set_many(stuff)
    for key, value in stuff.items():
        assert cache.get(key) == value


def test_binary_string(cache: Backend) -> None:
    import zlib

    value = "value_to_be_compressed" * 20
    compressed = zlib.compress(value.encode())
    cache.set("binary1", compressed)
    assert zlib.decompress(cache.get("binary1")).decode() == value
    cache.add("binary1-add", compressed)
    assert zlib.decompress(cache.get("binary1-add")).decode() == value
    cache.set_many({"binary1-set_many": compressed})
    assert zlib.decompress(cache.get("binary1-set_many")).decode() == value


def test_set_many(cache: Backend) -> None:
    assert cache.set_many({"key1": "spam", "key2": "eggs"}) == []
    assert cache.get("key1") == "spam"
    assert cache.get("key2") == "eggs"
    assert cache.set_many({}) == []


def test_set_many_expiration(cache: Backend) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"}, 100)
    for key in ("key1", "key2"):
        left = pttl(cache, key)
        assert left is not None
        assert 90 < left <= 100
    cache.set_many({"key3": "ham"}, None)
    assert pttl(cache, "key3") is None
    assert cache.get("key3") == "ham"


def test_delete_many(cache: Backend) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    cache.delete_many(["key1", "key2"])
    assert cache.get("key1") is None
    assert cache.get("key2") is None
    assert cache.get("key3") == "ham"
    cache.delete_many([])  # no round trip, no error


def test_clear(cache: Backend, make: Make) -> None:
    other_prefix = make("redis", KEY_PREFIX="other")
    elsewhere = make("redis", OPTIONS={"namespace": unique_namespace("django-elsewhere")})
    cache.set_many({"key1": "spam", "key2": "eggs"})
    cache.set("old", "version", version=7)
    other_prefix.set("key1", "other prefix, same namespace")
    elsewhere.set("key1", "another namespace")
    cache.clear()
    assert cache.get("key1") is None
    assert cache.get("old", version=7) is None
    assert other_prefix.get("key1") is None  # the whole namespace, as Django's clear()
    assert elsewhere.get("key1") == "another namespace"  # never FLUSHDB


def test_expiration(cache: Backend) -> None:
    # No sleeping: a short timeout, then wait for Redis (and L1) to let it go.
    cache.set("expire1", "very quickly", 0.05)
    cache.add("expire2", "newvalue", 0.05)
    cache.set("expire3", "stays")
    wait_until(lambda: cache.get("expire1") is None, 5, message="expire1 did not expire")
    wait_until(lambda: not cache.has_key("expire2"), 5, message="expire2 did not expire")
    assert cache.add("expire2", "again") is True
    assert cache.get("expire3") == "stays"


def test_touch(cache: Backend) -> None:
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=400) is True
    left = pttl(cache, "expire1")
    assert left is not None
    assert 390 < left <= 400
    assert cache.touch("expire1", timeout=None) is True
    assert pttl(cache, "expire1") is None
    # Django's own Redis backend answers False here (PERSIST of a key without expiry).
    assert cache.touch("expire1", timeout=None) is True
    assert cache.get("expire1") == "very quickly"
    assert cache.touch("expire1") is True  # DEFAULT_TIMEOUT: TIMEOUT (300)
    left = pttl(cache, "expire1")
    assert left is not None
    assert 290 < left <= 300
    assert cache.touch("nonexistent") is False
    assert cache.touch("nonexistent", None) is False


def test_zero_timeout(cache: Backend) -> None:
    """Django's test_zero_timeout, plus: set with 0 deletes what was there."""
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None
    assert cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None
    cache.set("key6", "present")
    cache.set("key6", "gone", timeout=0)
    assert cache.has_key("key6") is False
    cache.set("key7", "present")
    assert cache.add("key7", "other", 0) is False  # present: add answers False
    assert cache.get("key7") == "present"
    cache.set_many({"key8": 1})
    cache.set_many({"key8": 2}, -5)  # negative: expire at once, as 0
    assert cache.get("key8") is None


def test_forever_timeout(cache: Backend) -> None:
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert pttl(cache, "key1") is None
    assert cache.add("key2", "ham", None) is True
    assert cache.get("key2") == "ham"
    assert cache.add("key1", "new eggs", None) is False
    assert cache.get("key1") == "eggs"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, None)
    assert cache.get("key3") == "sausage"
    assert pttl(cache, "key4") is None
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=None) is True
    assert pttl(cache, "key5") is None


def test_long_timeout(cache: Backend) -> None:
    one_year = 60 * 60 * 24 * 365 + 1
    cache.set("key1", "eggs", one_year)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", one_year) is True
    cache.set_many({"key3": "sausage"}, one_year)
    assert cache.get("key3") == "sausage"
    with pytest.raises(ValidationError, match="10 years"):
        cache.set("key4", "absurd", 10**10)


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_default_timeouts(make: Make, kind: str) -> None:
    sixty = make(kind, TIMEOUT=60)
    sixty.set("k", 1)
    left = pttl(sixty, "k")
    assert left is not None
    assert 50 < left <= 60
    forever = make(kind, TIMEOUT=None)
    forever.set("k", 2)
    assert pttl(forever, "k") is None
    assert forever.get("k") == 2
    never = make(kind, TIMEOUT=0)
    never.set("k", 3)  # TIMEOUT 0: nothing is cached (and k is deleted)
    assert never.get("k") is None


def test_timeout_is_checked(cache: Backend) -> None:
    for bad in ("60", True, float("nan")):
        with pytest.raises(ValidationError):
            cache.set("key", "value", bad)
    cache.set("key", "value", datetime.timedelta(seconds=30))  # accepted, too
    left = pttl(cache, "key")
    assert left is not None
    assert 20 < left <= 30


@given(timeout=st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6), st.none()))
@hypothesis_settings(max_examples=200)
def test_timeout_mapping(timeout: float | None) -> None:
    backend = RedisCacheBackend("redis://localhost", {"OPTIONS": {"serializer": "json"}})
    seconds = backend._seconds(timeout)
    if timeout is None:
        assert seconds is None
    elif timeout <= 0:
        assert seconds == _NOW
    else:
        assert seconds == pytest.approx(float(timeout))


def test_default_timeout_sentinel() -> None:
    backend = RedisCacheBackend(
        "redis://localhost", {"TIMEOUT": 60, "OPTIONS": {"serializer": "json"}}
    )
    assert backend._seconds(DEFAULT_TIMEOUT) == 60.0


@given(
    key=st.text(min_size=1, max_size=40),
    value=st.one_of(
        st.integers(), st.text(), st.binary(), st.lists(st.integers()), st.none(), st.floats()
    ),
)
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_key_and_value_round_trip(cache: Backend, key: str, value: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)  # portability warnings only
        cache.set(key, value)
        got = cache.get(key, "miss")
        assert got == value or (got != got and value != value)  # NaN
        many = cache.get_many([key])
        assert list(many) == [key]
        assert repr(many[key]) == repr(got)  # repr: NaN is never equal to itself
        assert cache.delete(key) is True


def test_cache_versioning_get_set(make: Make) -> None:
    cache = make("tiered")
    cache2 = make("tiered", VERSION=2)
    # set, using default version = 1
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert cache2.get("answer1") is None
    assert cache2.get("answer1", version=1) == 42
    # set, default version = 1, but manually override version = 2
    cache.set("answer2", 42, version=2)
    assert cache.get("answer2") is None
    assert cache.get("answer2", version=2) == 42
    assert cache2.get("answer2") == 42
    # v2 set, using default version = 2
    cache2.set("answer3", 42)
    assert cache.get("answer3") is None
    assert cache.get("answer3", version=2) == 42
    assert cache2.get("answer3", version=1) is None


def test_cache_versioning_add_delete_has_key(make: Make) -> None:
    cache = make("redis")
    cache2 = make("redis", VERSION=2)
    cache.add("answer1", 42, version=2)
    assert cache.get("answer1", version=2) == 42
    assert cache.add("answer1", 37, version=2) is False
    assert cache.add("answer1", 37, version=1) is True
    assert cache.get("answer1", version=1) == 37
    assert cache.has_key("answer1", version=2)
    assert cache2.has_key("answer1")
    cache.delete("answer1", version=2)
    assert cache.get("answer1", version=1) == 37
    assert cache2.get("answer1") is None


def test_cache_versioning_incr_decr_many(make: Make) -> None:
    cache = make("tiered")
    cache2 = make("tiered", VERSION=2)
    cache.set("answer1", 37, version=1)
    cache.set("answer1", 42, version=2)
    assert cache.incr("answer1") == 38
    assert cache.decr("answer1", version=2) == 41
    assert cache2.get("answer1") == 41
    cache2.set_many({"ford1": 37, "arthur1": 42})
    assert cache.get_many(["ford1", "arthur1"]) == {}
    assert cache.get_many(["ford1", "arthur1"], version=2) == {"ford1": 37, "arthur1": 42}
    cache.delete_many(["ford1", "arthur1"], version=2)
    assert cache2.get_many(["ford1", "arthur1"]) == {}


def test_incr_version(make: Make) -> None:
    cache = make("tiered")
    cache.set("answer", 42, version=2)
    assert cache.get("answer") is None
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError):
        cache.incr_version("does_not_exist")


def test_key_prefix_and_key_function(make: Make) -> None:
    plain = make("tiered")
    prefixed = make("tiered", KEY_PREFIX="cacheprefix")
    custom = make("redis", KEY_FUNCTION=custom_key_func)
    by_path = make("redis", KEY_FUNCTION="django.core.cache.backends.base.default_key_func")
    plain.set("somekey", "value")
    assert prefixed.get("somekey") is None  # same namespace, other KEY_PREFIX
    assert prefixed.make_key("somekey") == "cacheprefix:1:somekey"
    custom.set("answer1", 42)
    assert custom.get("answer1") == 42
    assert plain.get("answer1") is None
    assert by_path.get("somekey") == "value"  # the default key function, named
    assert custom.cache.get("CUSTOM--1-answer1") == 42  # the key Redis holds


def test_invalid_keys_warn(cache: Backend) -> None:
    for key in ("key with spaces", "a" * 251, "key\x00"):
        with pytest.warns(CacheKeyWarning):
            cache.set(key, "value")
        with pytest.warns(CacheKeyWarning):
            assert cache.get(key) == "value"


def test_get_or_set(cache: Backend) -> None:
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get_or_set("mykey", lambda: "callable") == "callable"
    assert cache.get_or_set("mykey", lambda: "other") == "callable"


# -- async twins ---------------------------------------------------------------------------


def test_async_api(cache: Backend) -> None:
    async def main() -> None:
        await cache.aset("key", "value")
        assert await cache.aget("key") == "value"
        assert cache.get("key") == "value"  # the sync side sees it at once
        assert await cache.aget("missing", "default") == "default"
        assert await cache.aadd("key", "other") is False
        assert await cache.aadd("new", 1) is True
        assert await cache.aincr("new", 2) == 3
        assert await cache.adecr("new") == 2
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("nothing")
        assert await cache.ahas_key("new") is True
        assert await cache.aset_many({"a": 1, "b": 2}, 100) == []
        assert await cache.aset_many({}) == []
        assert await cache.aget_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert await cache.atouch("a", None) is True
        assert pttl(cache, "a") is None
        assert await cache.atouch("nothing") is False
        assert await cache.adelete("a") is True
        assert await cache.adelete("a") is False
        await cache.adelete_many(["b", "new"])
        await cache.adelete_many([])
        assert await cache.aget_many(["b", "new"]) == {}
        await cache.aset("zero", 1)
        await cache.aset("zero", 2, timeout=0)
        assert await cache.ahas_key("zero") is False
        await cache.aset_many({"z1": 1}, 0)
        assert await cache.aget("z1") is None
        assert await cache.aadd("z2", 1, 0) is True
        assert await cache.aget_or_set("gos", lambda: 7) == 7
        assert await cache.aincr_version("gos") == 2
        await cache.aclear()
        assert await cache.aget("gos", version=2) is None
        assert cache.get("key") is None
        await ashutdown()

    asyncio.run(main())


def test_async_follows_event_loops(cache: Backend) -> None:
    """Each asyncio.run() has its own loop: the backend talks to Redis on each of them."""
    for round_ in range(3):
        asyncio.run(cache.aset("round", round_))
        assert asyncio.run(cache.aget("round")) == round_
    errors: list[BaseException] = []

    def in_thread(n: int) -> None:  # async_to_sync under WSGI: a loop per thread, at once
        try:
            for i in range(20):
                asyncio.run(cache.aset(f"t{n}", i))
                assert asyncio.run(cache.aget(f"t{n}")) == i
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    asyncio.run(ashutdown())


# -- one cache per process ------------------------------------------------------------------


def test_backends_of_one_configuration_share_the_caches(make: Make) -> None:
    first = make("tiered", KEY_PREFIX="a")
    second = make("tiered", KEY_PREFIX="b", TIMEOUT=10)  # per-backend settings only
    assert first.cache is second.cache
    other = make("tiered", OPTIONS={"l1_maxsize": 5})
    assert other.cache is not first.cache


def test_django_caches_handler(utils_redis_url: str) -> None:
    namespace = unique_namespace("django-handler")
    config = {
        "default": {
            "BACKEND": "utils.cache.django.TieredCacheBackend",
            "LOCATION": utils_redis_url,
            "KEY_PREFIX": "site",
            "OPTIONS": {"namespace": namespace},
        }
    }
    with override_settings(CACHES=config):
        from django.core.cache import cache

        try:
            cache.set("page", "<html>")
            seen: list[Any] = []

            def other_thread() -> None:  # Django gives each thread its own backend object
                backend = caches["default"]
                seen.append((backend, backend.cache, backend.get("page")))

            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            backend, shared, value = seen[0]
            assert backend is not caches["default"]
            assert shared is caches["default"].cache
            assert value == "<html>"
        finally:
            cache.clear()
            shutdown()


def test_shutdown_then_reuse(make: Make) -> None:
    cache = make("tiered")
    cache.set("k", 1)
    before = cache.cache
    shutdown()
    assert cache.get("k") == 1  # new caches, made on demand
    assert cache.cache is not before
    assert isinstance(cache.cache, TieredCache)


# -- coherence between processes (two engines on one namespace) ----------------------------


def test_tiered_invalidation_between_processes(make: Make) -> None:
    one = make("tiered")
    two = make("tiered", OPTIONS={"l1_maxsize": 9_999})  # another engine: another "process"
    assert one.cache is not two.cache

    def seen_by_two(key: str, value: Any) -> None:
        wait_until(lambda: two.get(key, "miss") == value, 5, message=f"{key} did not converge")

    one.set("k", "v1")
    assert two.get("k") == "v1"  # now in two's L1
    one.set("k", "v2")
    seen_by_two("k", "v2")
    assert one.add("n", 1) is True
    assert two.get("n") == 1
    assert one.incr("n") == 2
    seen_by_two("n", 2)
    one.incr("n", 5)
    seen_by_two("n", 7)
    one.touch("k", 0)
    seen_by_two("k", "miss")
    one.set("k", "v3")
    seen_by_two("k", "v3")
    one.delete("k")
    seen_by_two("k", "miss")
    one.set_many({"a": 1, "b": 2})
    assert two.get_many(["a", "b"]) == {"a": 1, "b": 2}
    one.set_many({"a": 3}, 0)
    seen_by_two("a", "miss")
    one.clear()
    seen_by_two("b", "miss")

    async def from_async() -> None:
        await one.aset("k", "async")
        await async_wait_until(lambda: two.get("k", "miss") == "async", 5)
        assert await two.aget("k") == "async"  # from two's L1: no await on Redis
        await one.aset("k", "async2")
        await async_wait_until(lambda: two.get("k", "miss") == "async2", 5)
        await ashutdown()

    asyncio.run(from_async())


def test_tiered_add_and_touch_reach_other_l1(make: Make) -> None:
    one = make("tiered")
    two = make("tiered", OPTIONS={"l1_maxsize": 9_999})
    two.set("k", "old")  # in two's L1 (its own write: no message will drop it there)
    # Redis loses k behind the caches' backs (an eviction, say): two's L1 still has it.
    assert isinstance(one.cache, TieredCache)
    one.cache.l2.delete(one.make_key("k"))
    assert two.get("k") == "old"
    assert one.add("k", "new") is True  # add tells every L1 to drop k
    wait_until(lambda: two.get("k") == "new", 5, message="add did not invalidate")
    assert one.touch("k", 1000) is True
    assert two.get("k") == "new"


# -- serialization ---------------------------------------------------------------------------


def test_pickle_is_signed_with_secret_key(make: Make) -> None:
    cache = make("redis")
    cache.set("poll", Poll("Signed?", 1))
    raw = l2_of(cache).client.get(l2_of(cache).redis_key(cache.make_key("poll")))
    assert raw.startswith(b"U1")  # PickleSerializer's signed format
    # Someone who can write to Redis but has not got the key:
    import pickle

    l2_of(cache).client.set(l2_of(cache).redis_key(cache.make_key("evil")), pickle.dumps("x"))
    with pytest.raises(CacheIntegrityError):
        cache.get("evil")
    with override_settings(SECRET_KEY="a-new-secret-key-after-rotation-0123456789"):
        rotated = make("redis", OPTIONS={"probe_interval": 3.0})
        with pytest.raises(CacheIntegrityError):
            rotated.get("poll")
    with override_settings(
        SECRET_KEY="a-new-secret-key-after-rotation-0123456789",
        SECRET_KEY_FALLBACKS=[settings.SECRET_KEY],
    ):
        rotating = make("redis", OPTIONS={"probe_interval": 4.0})
        assert rotating.get("poll") == Poll("Signed?", 1)


def test_json_serializer(make: Make) -> None:
    cache = make("tiered", OPTIONS={"serializer": "json"})
    cache.set("k", {"when": datetime.date(2024, 5, 1)})
    assert cache.get("k") == {"when": datetime.date(2024, 5, 1)}
    with pytest.raises(CacheValueError):
        cache.set("poll", Poll("JSON?", 0))
    with pytest.raises(CacheValueError):
        cache.add("poll", Poll("JSON?", 0))
    assert cache.get("poll") is None


def test_serializer_objects_and_paths(make: Make) -> None:
    from utils.cache.serializers import JsonSerializer

    by_class = make("redis", OPTIONS={"serializer": "utils.cache.serializers.JsonSerializer"})
    assert isinstance(l2_of(by_class).serializer, JsonSerializer)
    instance = JsonSerializer()
    by_object = make("redis", OPTIONS={"serializer": instance})
    assert l2_of(by_object).serializer is instance
    by_path = make("redis", OPTIONS={"serializer": "utils.cache._redis_core._DEFAULT_SERIALIZER"})
    assert isinstance(l2_of(by_path).serializer, JsonSerializer)


# -- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "options", "message"),
    [
        ("redis://localhost", {"MAX_ENTRIES": 10}, "MAX_ENTRIES and CULL_FREQUENCY do not"),
        ("redis://localhost", {"l1_maxsize": 10}, "unknown RedisCacheBackend OPTIONS"),
        ("redis://localhost", {"namespace": "a#b"}, "namespace"),
        ("redis://localhost", {"namespace": ""}, "namespace"),
        ("redis://localhost", {"fail_open": "yes"}, "fail_open"),
        ("redis://localhost", {"probe_interval": 0}, "probe_interval"),
        ("redis://localhost", {"serializer": "yaml.nothing"}, "cannot be imported"),
        ("redis://localhost", {"serializer": "utils.cache.django._NOW"}, "neither a class"),
        ("redis://localhost", {"serializer": 42}, "must be 'pickle', 'json'"),
        (["redis://a", "redis://b"], {}, "one Redis URL"),
        ("redis://:secret@a;redis://:secret@b", {}, "replicas"),
        ("", {}, "one Redis URL"),
        (None, {}, "one Redis URL"),
    ],
)
def test_configuration_errors(location: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        RedisCacheBackend(location, {"OPTIONS": options})
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"l1_maxsize": 0}, "l1_maxsize"),
        ({"l1_maxsize": True}, "l1_maxsize"),
        ({"l1_ttl": 0}, "l1_ttl"),
        ({"l1_ttl": "30"}, "l1_ttl"),
        ({"channel": ""}, "channel"),
        ("not a dict", "OPTIONS must be a dict"),
    ],
)
def test_tiered_configuration_errors(options: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TieredCacheBackend("redis://localhost", {"OPTIONS": options})


def test_serializer_path_that_makes_no_serializer() -> None:
    with pytest.raises(ConfigError, match="lacks dumps"):
        RedisCacheBackend(
            "redis://localhost",
            {"OPTIONS": {"serializer": "collections.OrderedDict", "namespace": "never-made"}},
        )


def test_pickle_needs_a_secret_key() -> None:
    with (
        override_settings(SECRET_KEY=""),
        pytest.raises(ConfigError, match="SECRET_KEY"),
    ):
        RedisCacheBackend("redis://localhost", {})


def test_tiered_options_and_location_list(make: Make, utils_redis_url: str) -> None:
    cache = make(
        "tiered",
        LOCATION=[utils_redis_url],
        OPTIONS={"l1_maxsize": 3, "l1_ttl": None, "channel": "django-test-channel"},
    )
    tiered = cache.cache
    assert isinstance(tiered, TieredCache)
    assert tiered.l1_ttl is None
    assert tiered.channel == "django-test-channel"
    assert tiered.l1.maxsize == 3  # type: ignore[attr-defined]
    plain = make("redis")
    assert isinstance(plain.cache, RedisCache)
    assert plain.cache.namespace == cache.cache.namespace


# -- Redis down ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_fail_open_while_redis_is_down(
    make: Make, utils_private_redis: PrivateRedis, kind: str
) -> None:
    cache = make(kind, LOCATION=utils_private_redis.url)
    cache.set("k", 1)
    utils_private_redis.stop()
    assert cache.get("other", "miss") == "miss"
    assert cache.has_key("other") is False
    assert cache.add("new", 1) is False
    assert cache.add("new", 1, 0) is False
    assert cache.touch("k", 10) is False
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    with pytest.raises(ValueError, match="not found"):
        cache.incr("k")
    cache.set("k", 2)  # dropped, and not kept in L1 either
    assert cache.get("k", "miss") == "miss"

    async def main() -> None:
        assert await cache.aget("other", "miss") == "miss"
        assert await cache.aset_many({"a": 1}) == ["a"]
        assert await cache.aadd("new", 1) is False
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("k")
        await ashutdown()

    asyncio.run(main())


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_strict_backend_raises_while_redis_is_down(
    make: Make, utils_private_redis: PrivateRedis, kind: str
) -> None:
    cache = make(kind, LOCATION=utils_private_redis.url, OPTIONS={"fail_open": False})
    cache.set("k", 1)
    utils_private_redis.stop()
    with pytest.raises(CacheUnavailableError):
        cache.set_many({"a": 1})
    with pytest.raises(CacheUnavailableError):
        cache.incr("k")
    with pytest.raises(CacheUnavailableError):
        cache.touch("k")
    with pytest.raises(CacheUnavailableError):
        asyncio.run(cache.aset_many({"a": 1}))
    assert cache.cache.stats().errors >= 3
    utils_private_redis.start()  # an empty server: nothing was persisted
    wait_until(lambda: _answers(cache), 10, message="the cache did not recover")
    cache.set("k", 2)
    assert cache.get("k") == 2


def _answers(cache: Backend) -> bool:
    try:
        cache.get("k")
    except CacheUnavailableError:
        return False
    return True


def test_redis_errors_that_are_not_outages_raise(cache: Backend, utils_redis: Any) -> None:
    utils_redis.lpush(l2_of(cache).redis_key(cache.make_key("list")), "x")
    with pytest.raises(CacheError, match="WRONGTYPE"):
        cache.incr("list")
    with pytest.raises(CacheError, match="WRONGTYPE"):
        cache.get("list")
