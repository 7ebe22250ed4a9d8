"""@cached: sync/async functions, methods, classmethods, keys, helpers, and the miss machinery."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest

from utils.cache import _compute
from utils.cache._compute import SWR_MARK
from utils.cache._flight import TASKS, THREADS
from utils.cache.decorator import cached
from utils.cache.errors import ReentrantComputeError
from utils.cache.memory import MemoryCache
from utils.cache.protocol import MISSING, TTL, CacheStats
from utils.core import ValidationError
from utils.core.testing import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DictCache:
    """A minimal sync cache: exercises the generic (not inlined) hit path."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: dict[str, TTL] = {}
        self.reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return self.data.get(key, default)

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        self.data[key] = value
        self.ttls[key] = ttl

    def delete(self, key: str) -> bool:
        return self.data.pop(key, MISSING) is not MISSING


class AsyncDictCache:
    """A minimal async cache."""

    def __init__(self) -> None:
        self.sync = DictCache()

    async def get(self, key: str, default: Any = None) -> Any:
        return self.sync.get(key, default)

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        self.sync.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return self.sync.delete(key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:  # pragma: no cover
        return {}

    async def set_many(
        self, mapping: Mapping[str, Any], ttl: TTL = None
    ) -> None:  # pragma: no cover
        pass

    def stats(self) -> CacheStats:  # pragma: no cover
        return CacheStats()


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache()


@pytest.fixture(autouse=True)
def _no_flights_left() -> Iterator[None]:
    yield
    assert len(THREADS) == 0
    assert len(TASKS) == 0


async def settle(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (bounded)."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0.0001)
    raise AssertionError("condition not reached")


# -- sync functions -----------------------------------------------------------------------


def test_sync_function_hits_and_misses(cache: MemoryCache) -> None:
    calls: list[tuple[int, str]] = []

    @cached(cache, ttl=30)
    def load(x: int, y: str = "a") -> str:
        calls.append((x, y))
        return f"{x}{y}"

    assert load(1) == "1a"
    assert load(1, "a") == "1a"
    assert load(x=1) == "1a"
    assert load(y="a", x=1) == "1a"
    assert load(1, "b") == "1b"
    assert calls == [(1, "a"), (1, "b")]
    assert load.cache is cache
    assert cache.ttl(load.key_for(1)) == pytest.approx(30, abs=1)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 2)


def test_signature_and_metadata_are_preserved(cache: MemoryCache) -> None:
    def original(a: int, /, b: str = "x", *args: int, c: bool = False, **kw: Any) -> str:
        """Docs."""
        return ""

    wrapped = cached(cache)(original)
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is original
    assert wrapped.key_for.__qualname__.endswith("original.key_for")


def test_every_parameter_kind(cache: MemoryCache) -> None:
    calls: list[Any] = []

    @cached(cache)
    def full(a: int, /, b: int = 2, *args: int, c: int = 3, d: int, **kw: int) -> int:
        calls.append((a, b, args, c, d, kw))
        return a + b + sum(args) + c + d + sum(kw.values())

    assert full(1, d=4) == 10
    assert full(1, 2, d=4, c=3) == 10
    assert full(1, 2, 5, d=4, e=1) == 16
    assert full(1, 2, 5, e=1, d=4) == 16
    assert len(calls) == 2
    assert calls[1] == (1, 2, (5,), 3, 4, {"e": 1})
    with pytest.raises(TypeError):
        full(1)  # type: ignore[call-arg]  # missing d: Python's own binding error


def test_positional_only_parameters(cache: MemoryCache) -> None:
    @cached(cache)
    def pos(a: int, b: int = 2, /) -> int:
        return a + b

    assert pos(1) == pos(1, 2) == 3
    assert pos.key_for(1) == pos.key_for(1, 2)
    assert bool(MemoryCache())  # an empty cache is still truthy: `cache or other` is safe


def test_keyword_only_and_zero_parameters(cache: MemoryCache) -> None:
    calls: list[int] = []

    @cached(cache)
    def config() -> dict[str, int]:
        calls.append(1)
        return {"a": 1}

    @cached(cache)
    def named(*, flag: bool) -> bool:
        return flag

    assert config() == config() == {"a": 1}
    assert calls == [1]
    assert config.key_for() == f"{__name__}.{config.__qualname__}()"
    assert named(flag=True) is True
    assert named.key_for(flag=True) != named.key_for(flag=False)


def test_none_is_cached_unless_told_otherwise(cache: MemoryCache) -> None:
    calls: list[str] = []

    @cached(cache)
    def plain(x: str) -> None:
        calls.append(x)

    @cached(cache, cache_none=False)
    def skip(x: str) -> None:
        calls.append(x)

    @cached(cache, ttl=300, negative_ttl=5)
    def negative(x: str) -> None:
        calls.append(x)

    plain("a"), plain("a")
    skip("b"), skip("b")
    negative("c"), negative("c")
    assert calls == ["a", "b", "b", "c"]
    assert cache.ttl(negative.key_for("c")) == pytest.approx(5, abs=1)


def test_invalidate_and_key_for(cache: MemoryCache) -> None:
    calls: list[int] = []

    @cached(cache, namespace="sq")
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square.key_for(3) == "sq(x=3)"
    assert square(3) == 9
    assert square.invalidate(3) is True
    assert square.invalidate(3) is False
    assert square(x=3) == 9
    assert calls == [3, 3]


def test_ignore_custom_key_and_namespace(cache: MemoryCache) -> None:
    @cached(cache, ignore=("session",))
    def by_user(user_id: int, session: object) -> int:
        return user_id

    assert by_user(1, object()) == 1
    assert by_user.key_for(1, session=None) == by_user.key_for(1, object())

    @cached(cache, key=lambda user_id, region="eu": f"{region}/{user_id}", namespace="u")
    def custom(user_id: int, region: str = "eu") -> str:
        return f"{region}{user_id}"

    assert custom(5) == "eu5"
    assert custom.key_for(5) == "u:eu/5"
    assert cache.get("u:eu/5") == "eu5"

    @cached(cache, key=lambda a: (a, "x"), namespace="")
    def tuple_key(a: int) -> int:
        return a

    assert tuple_key.key_for(1) == '(1,"x")'


def test_unkeyable_argument_fails_at_call_time(cache: MemoryCache) -> None:
    @cached(cache)
    def use(conn: object) -> int:
        return 1

    with pytest.raises(TypeError, match=r"argument 'conn'.*ignore=\('conn',\)"):
        use(object())


def test_objects_with_cache_key(cache: MemoryCache) -> None:
    class Tenant:
        def __init__(self, slug: str) -> None:
            self.slug = slug

        def __cache_key__(self) -> str:
            return self.slug

    calls: list[str] = []

    @cached(cache)
    def settings(tenant: Tenant) -> str:
        calls.append(tenant.slug)
        return tenant.slug.upper()

    assert settings(Tenant("acme")) == settings(Tenant("acme")) == "ACME"
    assert calls == ["acme"]


def test_parameter_names_that_clash_with_generated_names(cache: MemoryCache) -> None:
    @cached(cache)
    def clash(_uc_k: int, _uc_memo: int = 0, _uc__e: int = 1) -> int:
        return _uc_k + _uc_memo + _uc__e

    assert clash(1) == clash(1) == 2


def test_unhashable_and_float_arguments_take_the_slow_path(cache: MemoryCache) -> None:
    calls: list[Any] = []

    @cached(cache)
    def total(values: list[float], scale: float = 1.0) -> float:
        calls.append(values)
        return sum(values) * scale

    assert total([1.5, 2.5]) == total([1.5, 2.5]) == 4.0
    assert total([1.0], 0.5) == total([1.0], scale=0.5) == 0.5
    assert len(calls) == 2


def test_equal_arguments_share_an_entry_like_lru_cache(cache: MemoryCache) -> None:
    calls: list[Any] = []

    @cached(cache)
    def ident(x: Any) -> Any:
        calls.append(x)
        return x

    assert ident(1) == 1
    assert ident(True) == 1  # True == 1: one entry, as with functools.lru_cache
    assert ident(1.0) == 1
    assert calls == [1]


def test_expired_entries_are_recomputed() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    calls: list[int] = []

    @cached(cache, ttl=10)
    def load(x: int) -> int:
        calls.append(x)
        return x

    load(1)
    clock.now += 9
    load(1)
    clock.now += 1
    load(1)
    assert calls == [1, 1]


def test_entries_deleted_concurrently_are_still_returned(cache: MemoryCache) -> None:
    @cached(cache)
    def load(x: int) -> int:
        return x

    load(1)
    key = load.key_for(1)
    move = cache._move

    def deleted_meanwhile(k: str, last: bool = True) -> None:
        cache.delete(k)
        move(k)

    cache._move = deleted_meanwhile  # type: ignore[assignment]
    # The generated wrapper captured the original move_to_end; exercise MemoryCache.get too.
    assert cache.get(key) == 1
    cache._move = move


def test_generic_sync_cache(cache: MemoryCache) -> None:
    store = DictCache()
    calls: list[int] = []

    @cached(store, ttl=7)
    def load(x: int) -> int:
        calls.append(x)
        return x * 2

    assert load(2) == load(2) == 4
    assert calls == [2]
    assert store.ttls[load.key_for(2)] == 7
    assert load.invalidate(2)
    assert not load.invalidate(2)


def test_async_memory_view_works_for_sync_functions(cache: MemoryCache) -> None:
    @cached(cache.as_async())
    def load(x: int) -> int:
        return x

    assert load(3) == 3
    assert cache.get(load.key_for(3)) == 3
    assert load.invalidate(3)


# -- decoration errors --------------------------------------------------------------------


def test_refused_decorations(cache: MemoryCache) -> None:
    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        cached(cache)(gen)
    with pytest.raises(TypeError, match="generator"):
        cached(cache)(agen)
    with pytest.raises(TypeError, match="decorates functions"):
        cached(cache)(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="needs a sync cache"):
        cached(AsyncDictCache())(lambda: 1)

    async def coro() -> int:
        return 1

    with pytest.raises(TypeError, match="needs an async cache"):
        cached(DictCache())(coro)
    with pytest.raises(TypeError, match="collection of names"):
        cached(cache, ignore="session")
    with pytest.raises(TypeError, match="key must be a function"):
        cached(cache, key="k")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="does not have"):
        cached(cache, ignore=("nope",))(lambda x: x)
    with pytest.raises(ValidationError):
        cached(cache, ttl=-5)


# -- methods and classmethods -------------------------------------------------------------


def test_methods_ignore_self_and_never_collide_across_classes(cache: MemoryCache) -> None:
    calls: list[str] = []

    class Users:
        @cached(cache)
        def get(self, user_id: int) -> str:
            calls.append("users")
            return f"user{user_id}"

    class Teams:
        @cached(cache)
        def get(self, user_id: int) -> str:
            calls.append("teams")
            return f"team{user_id}"

    assert Users().get(1) == Users().get(1) == "user1"  # instances share entries
    assert Teams().get(1) == "team1"
    assert calls == ["users", "teams"]
    assert Users.get.key_for(1) != Teams.get.key_for(1)
    assert Users().get.key_for(1) == Users.get.key_for(1)  # no self needed
    assert Users().get.invalidate(1)


def test_key_self(cache: MemoryCache) -> None:
    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        def __cache_key__(self) -> str:
            return self.name

        @cached(cache, key_self=True)
        def get(self, item: int) -> str:
            return f"{self.name}:{item}"

    assert Repo("a").get(1) == "a:1"
    assert Repo("b").get(1) == "b:1"
    assert Repo.get.key_for(Repo("a"), 1) != Repo.get.key_for(Repo("b"), 1)

    class Opaque:
        @cached(cache, key_self=True)
        def get(self) -> int:
            return 1

    with pytest.raises(TypeError, match="argument 'self'"):
        Opaque().get()


def test_classmethods_in_both_orders_and_staticmethods(cache: MemoryCache) -> None:
    calls: list[str] = []

    class Factory:
        @cached(cache)
        @classmethod
        def outer(cls, x: int) -> str:
            calls.append("outer")
            return f"{cls.__name__}{x}"

        @classmethod
        @cached(cache)
        def inner(cls, x: int) -> str:
            calls.append("inner")
            return f"{cls.__name__}{x}"

        @cached(cache)
        @staticmethod
        def static(x: int) -> int:
            calls.append("static")
            return x

    assert Factory.outer(1) == Factory.outer(1) == Factory().outer(1) == "Factory1"
    assert Factory.inner(1) == Factory.inner(1) == "Factory1"
    # Type checkers cannot tell a cached staticmethod from a method: call it on the class.
    assert Factory.static(2) == Factory().static(2) == 2  # type: ignore[call-arg]
    assert calls == ["outer", "inner", "static"]
    assert Factory.outer.key_for(1) == f"{__name__}.{Factory.__qualname__}.outer(x=1)"
    assert Factory.inner.invalidate(1)
    assert Factory.static.key_for(2).endswith("static(x=2)")


def test_custom_key_on_a_method_receives_self(cache: MemoryCache) -> None:
    class Shop:
        region = "eu"

        @cached(cache, key=lambda self, item: f"{self.region}:{item}", namespace="shop")
        def price(self, item: str) -> int:
            return len(item)

    assert Shop().price("pen") == 3
    assert Shop.price.key_for(Shop(), "pen") == "shop:eu:pen"


# -- concurrency, re-entrancy, stale ------------------------------------------------------


def test_threads_missing_one_key_compute_once(cache: MemoryCache) -> None:
    release = threading.Event()
    calls: list[int] = []

    @cached(cache)
    def slow(x: int) -> int:
        calls.append(x)
        release.wait(5)
        return x

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(7))) for _ in range(16)]
    for thread in threads:
        thread.start()
    key = slow.key_for(7)
    wait_until(lambda: (f := THREADS.get(cache, key)) is not None and f.waiting == 15)
    release.set()
    for thread in threads:
        thread.join()
    assert results == [7] * 16
    assert calls == [7]


def test_recursion_on_other_keys_works_and_on_its_own_key_raises(cache: MemoryCache) -> None:
    @cached(cache)
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(30) == 832040

    @cached(cache)
    def loop(n: int) -> int:
        return loop(n)

    with pytest.raises(ReentrantComputeError):
        loop(1)


def test_stale_while_revalidate_through_the_decorator(
    cache: MemoryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = Clock()
    monkeypatch.setattr(_compute, "wall_clock", wall)
    version = ["v1"]

    @cached(cache, ttl=10, stale_ttl=60)
    def page(slug: str) -> str:
        return version[0]

    assert page("home") == "v1"
    assert cache.get(page.key_for("home"))[0] == SWR_MARK
    version[0] = "v2"
    wall.now += 11
    assert page("home") == "v1"  # stale, refreshed in the background
    wait_until(lambda: cache.get(page.key_for("home"))[2] == "v2")
    wait_until(lambda: THREADS.get(cache, page.key_for("home")) is None)
    assert page("home") == "v2"
    assert page.invalidate("home")

    generic = DictCache()

    @cached(generic, ttl=10, stale_ttl=60)
    def other(slug: str) -> str:
        return "x"

    assert other("a") == other("a") == "x"


# -- async functions ----------------------------------------------------------------------


def test_async_function_with_memory_cache(cache: MemoryCache) -> None:
    calls: list[int] = []

    @cached(cache, ttl=30)
    async def load(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        return x * 10

    async def main() -> list[Any]:
        out = [await load(1), await load(x=1)]
        out += await asyncio.gather(*(load(2) for _ in range(10)))
        out.append(await load.invalidate(1))
        out.append(await load(1))
        return out

    assert asyncio.run(main()) == [10, 10] + [20] * 10 + [True, 10]
    assert calls == [1, 2, 1]
    assert inspect.iscoroutinefunction(load)
    assert load.cache is cache


def test_async_function_with_async_caches(
    cache: MemoryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AsyncDictCache()
    calls: list[int] = []

    @cached(store, ttl=30)
    async def load(x: int) -> int:
        calls.append(x)
        return x

    @cached(cache.as_async())
    async def view_load(x: int) -> int:
        calls.append(-x)
        return x

    wall = Clock()
    monkeypatch.setattr(_compute, "wall_clock", wall)

    @cached(store, ttl=1, stale_ttl=10)
    async def swr(x: int) -> int:
        calls.append(100 + x)
        return x

    async def main() -> list[Any]:
        out = [await load(1), await load(1), await view_load(2), await view_load(2)]
        out.append(await load.invalidate(1))
        out.append(await view_load.invalidate(2))
        out += [await swr(3), await swr(3)]
        wall.now += 2
        out.append(await swr(3))  # stale: served, refreshed by a task
        await settle(lambda: TASKS.get(store, swr.key_for(3)) is None)
        return out

    assert asyncio.run(main()) == [1, 1, 2, 2, True, True, 3, 3, 3]
    assert calls == [1, -2, 103, 103]
    assert store.sync.ttls[load.key_for(1)] == 30


def test_async_methods_and_reentrancy(cache: MemoryCache) -> None:
    class Api:
        @cached(cache)
        async def fetch(self, path: str) -> str:
            return path.upper()

        @cached(cache)
        async def loop(self, path: str) -> str:
            return await self.loop(path)

    async def main() -> str:
        return await Api().fetch("a") + await Api().fetch("a")

    assert asyncio.run(main()) == "AA"
    with pytest.raises(ReentrantComputeError):
        asyncio.run(Api().loop("x"))


def test_functools_wraps_chain_keeps_key_for(cache: MemoryCache) -> None:
    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return inner

    @cached(cache)
    @logged
    def add(a: int, b: int = 1) -> int:
        return a + b

    assert add(1) == add(a=1, b=1) == 2
    assert add.key_for(1) == add.key_for(1, 1)


def test_callable_objects_and_type_hints(cache: MemoryCache) -> None:
    import typing

    class Scale:
        def __call__(self, x: int) -> int:
            return x * 3

    scaled = cached(cache)(Scale())
    assert scaled(2) == scaled(2) == 6
    assert scaled.key_for(2).endswith("Scale(x=2)")

    @cached(cache)
    def hinted(x: int, y: str = "") -> dict[str, int]:
        return {}

    assert typing.get_type_hints(hinted) == {"x": int, "y": str, "return": dict[str, int]}


def test_a_sync_function_returning_a_coroutine_is_refused(cache: MemoryCache) -> None:
    async def work() -> int:
        return 1

    @cached(cache)
    def looks_sync() -> Any:
        return work()

    with pytest.raises(TypeError, match="returned an awaitable"):
        looks_sync()
    assert len(cache) == 0


def test_async_function_with_memory_cache_and_stale_ttl(
    cache: MemoryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = Clock()
    monkeypatch.setattr(_compute, "wall_clock", wall)
    version = ["v1"]

    @cached(cache, ttl=10, stale_ttl=60)
    async def page(slug: str) -> str:
        return version[0]

    async def main() -> list[str]:
        out = [await page("a")]
        version[0] = "v2"
        wall.now += 11
        out.append(await page("a"))
        await settle(lambda: TASKS.get(cache.as_async(), page.key_for("a")) is None)
        out.append(await page("a"))
        return out

    assert asyncio.run(main()) == ["v1", "v1", "v2"]


# -- real Redis ---------------------------------------------------------------------------


@pytest.mark.redis
def test_cached_on_redis_with_stale_envelope(
    utils_redis_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = Clock()
    monkeypatch.setattr(_compute, "wall_clock", wall)
    calls: list[int] = []

    @cached(utils_redis_cache, ttl=10, stale_ttl=60)
    def report(day: int) -> dict[str, int]:
        calls.append(day)
        return {"day": day, "version": len(calls)}

    assert report(1) == report(day=1) == {"day": 1, "version": 1}
    stored = utils_redis_cache.get(report.key_for(1))
    assert stored[0] == SWR_MARK  # the envelope survives the JSON round trip
    wall.now += 11
    assert report(1) == {"day": 1, "version": 1}  # stale, refreshed in the background
    wait_until(
        lambda: THREADS.get(utils_redis_cache, report.key_for(1)) is None and len(calls) == 2
    )
    assert report(1) == {"day": 1, "version": 2}
    assert report.invalidate(1)
    assert not report.invalidate(1)


@pytest.mark.redis
def test_cached_async_on_redis(utils_redis_url: str) -> None:
    from utils.cache.redis_cache import AsyncRedisCache
    from utils.cache.testing import unique_namespace

    calls: list[str] = []

    async def main() -> list[Any]:
        out: list[Any] = []
        cache = AsyncRedisCache(utils_redis_url, namespace=unique_namespace("deco"))
        try:

            @cached(cache, negative_ttl=5)
            async def find(email: str) -> dict[str, str] | None:
                calls.append(email)
                return None if email.startswith("nobody") else {"email": email}

            out += await asyncio.gather(*(find("a@x.io") for _ in range(5)))
            out += [await find("nobody@x.io"), await find("nobody@x.io")]
            out.append(await cache.ttl(find.key_for("nobody@x.io")))
            out.append(await find.invalidate("a@x.io"))
            await cache.clear()
            return out
        finally:
            await cache.aclose()

    out = asyncio.run(main())
    assert out[:5] == [{"email": "a@x.io"}] * 5
    assert out[5:7] == [None, None]
    assert 0 < out[7] <= 5
    assert out[8] is True
    assert calls == ["a@x.io", "nobody@x.io"]


# -- regressions -----------------------------------------------------------------------------


def test_cached_without_ttl_uses_the_caches_default_ttl() -> None:
    now = [0.0]
    cache = MemoryCache(ttl=5, clock=lambda: now[0])
    forever = MemoryCache()

    @cached(cache)
    def five(x: int) -> int:
        return x

    @cached(forever)
    def kept(x: int) -> int:
        return x

    five(1)
    kept(1)
    assert cache.ttl(five.key_for(1)) == 5.0  # the cache's TTL, not a decorator default
    assert forever.ttl(kept.key_for(1)) is None  # no default TTL: no expiry
