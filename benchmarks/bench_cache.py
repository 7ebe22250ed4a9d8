"""utils.cache against functools.lru_cache, cachetools, dogpile.cache, aiocache, cashews and raw
redis-py, side by side.

Run with ``nox -s bench`` or ``python benchmarks/bench_cache.py [--quick] [--json PATH]
[--verbose]`` in an environment holding the utils-core and utils-cache wheels and the peers of
``requirements.txt``. Every comparison checks first, untimed, that both sides do the same
work: the call returns the cached value and the wrapped function does not run again (a
decorator), or the read returns the value stored (a cache ``get``).

1. ``@cached(MemoryCache(maxsize=1024, ttl=60))`` hit, sync, plain positional call ``f(1)``,
   against ``functools.lru_cache(maxsize=1024)`` (target ours/peer <= 2) and
   ``cachetools.cached(TTLCache(maxsize=1024, ttl=60))`` (target: faster, ratio < 1);
   dogpile's ``region.cache_on_arguments()`` on the memory backend is informational.
2. ``@cached`` hit on a ``MemoryCache``, async (``await f(1)`` in a loop inside one running
   event loop, timed inside the coroutine), against cashews' ``@cache(ttl=60)`` on
   ``mem://``: target at least 10x faster (ratio <= 0.1). Informational: aiocache's
   ``SimpleMemoryCache(timeout=None).get``.
3. Redis, WALL-CLOCK time: ``RedisCache.get`` hit of a small JSON value against raw
   ``client.get`` + ``json.loads`` on the SAME client (one connection,
   ``single_connection_client=True``; target <= 1.1; informational: the same through the
   default connection pool, and against ``orjson.loads``, which ours uses when installed);
   ``get_many`` of 100 keys against raw ``MGET`` + loads (target <= 1.2, and one round trip:
   commands counted server-side with ``INFO commandstats``); ``AsyncRedisCache.get`` against
   raw ``redis.asyncio`` ``GET`` + ``json.loads`` on the same client (target <= 1.1);
   aiocache's and cashews' Redis gets informational; ``get_many(100)`` with the hiredis reply
   parser (the ``[hiredis]`` extra) against redis-py's pure-Python parser, each chosen with
   ``parser_class`` on its own client (target: 1.8x faster, ratio <= 0.56). Skipped, with a note, when Redis
   (``UTILS_TEST_REDIS_URL`` or redis://127.0.0.1:6379/0) is not reachable.
4. ``TieredCache`` hit from L1 against ``MemoryCache.get`` of its own L1 (target <= 1.5),
   CPU time (needs Redis for the L2 and its invalidation subscriber).

In-process loops are timed in CPU time (see ``_harness.py``); the Redis rows in wall time.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import json
import os
import statistics
import sys
import time
import timeit
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from _harness import (
    Measure,
    Result,
    Settings,
    environment,
    installed_version,
    interleaved,
    loop,
    pair_result,
    parse_args,
    print_table,
    write_json,
)

PEERS = ("utils-cache", "cachetools", "dogpile.cache", "aiocache", "cashews", "redis", "orjson")
CALL = "f(1)"  # the statement of every in-process decorator benchmark
EXPECTED = 2  # what every benchmarked function returns for 1
MAXSIZE = 1024
TTL = 60
REDIS_URL = os.environ.get("UTILS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
#: The small JSON value of the Redis rows.
VALUE = {"id": 42, "name": "Ada Lovelace", "active": True, "tags": ["admin", "math"]}
MANY = 100  # keys per get_many


def work(x: int) -> int:
    """The trivial function every decorator wraps."""
    return x + 1


async def awork(x: int) -> int:
    """Its async twin: returns at once."""
    return x + 1


# --------------------------------------------------------------------------------------
# Measuring more than two sides at once (as in bench_resilience.py)


def wall_loop(stmt: str, setup: str = "", **names: Any) -> Measure:
    """Like ``_harness.loop`` but in wall-clock time: for calls that wait on the network."""
    bind = [f"{name} = _names[{name!r}]" for name in names]
    timer = timeit.Timer(
        stmt,
        setup="\n".join([*bind, setup]) or "pass",
        timer=time.perf_counter,
        globals={"_names": names},
    )
    return timer.timeit


def async_loop(
    event_loop: asyncio.AbstractEventLoop,
    fn: Callable[[Any], Any],
    arg: Any = 1,
    *,
    clock: Callable[[], float] = time.process_time,
) -> Measure:
    """``await fn(arg)`` n times inside one coroutine on one event loop (CPU time by default).

    The clock is read inside the coroutine, around the loop only: neither the event loop's
    start-up nor ``run_until_complete``'s scheduling is measured. The garbage collector is
    off while timing, as in ``timeit``.
    """

    async def batch(n: int) -> float:
        started = clock()
        for _ in itertools.repeat(None, n):
            await fn(arg)
        return clock() - started

    def measure(n: int) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return event_loop.run_until_complete(batch(n))
        finally:
            if enabled:
                gc.enable()

    return measure


def medians(rounds: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in rounds.items()}


class Problems(list[str]):
    """What the checks found wrong; ``checked`` counts the checks made."""

    checked = 0

    def expect(self, condition: bool, message: str) -> None:
        self.checked += 1
        if not condition:
            self.append(message)


def counting(fn: Callable[[int], Any]) -> tuple[Callable[[int], Any], list[int]]:
    """A fresh function doing what ``fn`` does, plus a list that grows by one per call."""
    calls: list[int] = []
    if asyncio.iscoroutinefunction(fn):

        async def counted_async(x: int) -> Any:
            calls.append(x)
            return await fn(x)

        return counted_async, calls

    def counted(x: int) -> Any:
        calls.append(x)
        return fn(x)

    return counted, calls


def check_decorated(
    problems: Problems,
    label: str,
    decorate: Callable[[Callable[..., Any]], Callable[..., Any]],
    fn: Callable[[int], Any],
    event_loop: asyncio.AbstractEventLoop | None = None,
) -> Callable[..., Any]:
    """Decorate a counting ``fn``, call it 3 times: same value, one call. Returns it (warm)."""
    counted, calls = counting(fn)
    decorated = decorate(counted)
    for _ in range(3):
        result = decorated(1)
        if event_loop is not None:
            result = event_loop.run_until_complete(result)
        problems.expect(result == EXPECTED, f"{label}: returned {result!r}, not {EXPECTED}")
    problems.expect(len(calls) == 1, f"{label}: the function ran {len(calls)} times, not 1")
    return decorated


# --------------------------------------------------------------------------------------
# 1. @cached sync hit


def bench_sync(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import cachetools
    from dogpile.cache import make_region

    from utils.cache import MemoryCache, cached

    def dogpile(fn: Callable[..., Any]) -> Callable[..., Any]:
        region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)
        return region.cache_on_arguments()(fn)

    decorators: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
        "ours": cached(MemoryCache(maxsize=MAXSIZE, ttl=TTL)),
        "lru_cache": functools.lru_cache(maxsize=MAXSIZE),
        "cachetools": cachetools.cached(cachetools.TTLCache(maxsize=MAXSIZE, ttl=TTL)),
        "dogpile": dogpile,
    }
    problems = Problems()
    # The timed functions are the checked ones (fresh caches, the entry for 1 in place).
    decorated = {
        side: check_decorated(problems, f"sync {side}", decorate, work)
        for side, decorate in decorators.items()
    }
    measures = {"plain": loop(CALL, f=work)}
    measures.update({side: loop(CALL, f=f) for side, f in decorated.items()})
    rounds, loops = interleaved(measures, settings)
    ours = ("ours", "@cached(MemoryCache(maxsize=1024, ttl=60)) f(1), hit")
    results = [
        pair_result(
            "1. @cached hit (sync) vs lru_cache",
            rounds,
            loops,
            ours=ours,
            peer=("lru_cache", "@functools.lru_cache(maxsize=1024) f(1), hit"),
            max_ratio=2.0,
            target="<= 2.00",
        ),
        pair_result(
            "1. @cached hit (sync) vs cachetools",
            rounds,
            loops,
            ours=ours,
            peer=("cachetools", "@cachetools.cached(TTLCache(maxsize=1024, ttl=60)) f(1), hit"),
            max_ratio=0.999,
            target="< 1 (faster)",
        ),
        pair_result(
            "1. @cached hit (sync) vs dogpile",
            rounds,
            loops,
            ours=ours,
            peer=("dogpile", "dogpile region(memory, expiration_time=60).cache_on_arguments()"),
        ),
    ]
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------
# 2. @cached async hit


def bench_async(
    settings: Settings, event_loop: asyncio.AbstractEventLoop
) -> tuple[list[Result], dict[str, Any]]:
    from aiocache import SimpleMemoryCache
    from cashews import Cache

    from utils.cache import MemoryCache, cached

    problems = Problems()
    cashews = Cache()
    cashews.setup("mem://")
    ours_f = check_decorated(
        problems,
        "async ours",
        cached(MemoryCache(maxsize=MAXSIZE, ttl=TTL)),
        awork,
        event_loop,
    )
    cashews_f = check_decorated(
        problems, "async cashews", cashews.cache(ttl=TTL), awork, event_loop
    )
    aio = SimpleMemoryCache(timeout=None)
    event_loop.run_until_complete(aio.set("k", EXPECTED, ttl=TTL))
    got = event_loop.run_until_complete(aio.get("k"))
    problems.expect(got == EXPECTED, f"aiocache memory get returned {got!r}")
    ours_mem = MemoryCache(maxsize=MAXSIZE, ttl=TTL).as_async()
    event_loop.run_until_complete(ours_mem.set("k", EXPECTED))
    got = event_loop.run_until_complete(ours_mem.get("k"))
    problems.expect(got == EXPECTED, f"AsyncMemoryCache get returned {got!r}")

    measures = {
        "plain": async_loop(event_loop, awork),
        "ours": async_loop(event_loop, ours_f),
        "cashews": async_loop(event_loop, cashews_f),
        "ours.get": async_loop(event_loop, ours_mem.get, "k"),
        "aiocache.get": async_loop(event_loop, aio.get, "k"),
    }
    rounds, loops = interleaved(measures, settings)
    results = [
        pair_result(
            "2. @cached hit (async) vs cashews",
            rounds,
            loops,
            ours=("ours", "@cached(MemoryCache(maxsize=1024, ttl=60)) async f(1), hit"),
            peer=("cashews", 'cashews Cache().setup("mem://"), @cache(ttl=60) async f(1), hit'),
            max_ratio=0.1,
            target="<= 0.10 (10x faster)",
        ),
        pair_result(
            "2. async memory get vs aiocache",
            rounds,
            loops,
            ours=("ours.get", "await MemoryCache(...).as_async().get('k'), hit"),
            peer=("aiocache.get", "await aiocache SimpleMemoryCache(timeout=None).get('k')"),
        ),
    ]
    event_loop.run_until_complete(cashews.close())
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------
# 3. Redis


def redis_reachable() -> str | None:
    """None when Redis answers PING, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{REDIS_URL} not reachable: {type(exc).__name__}: {exc}"
    return None


def command_calls(probe: Any) -> dict[str, int]:
    """Server-side calls per command (``INFO commandstats``; server-wide, informational)."""
    stats = probe.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def count_round_trips(
    client: Any, probe: Any, run: Callable[[], Any], times: int
) -> dict[str, Any]:
    """Round trips per call of ``run`` on the single connection of ``client``.

    Client side: packets written and replies read on that connection (instance attributes
    wrap the connection's methods for the count, then are removed). Server side, for
    information: the ``INFO commandstats`` delta, which counts every client of the server
    (another process using the same Redis shows up there, not in the client-side count).
    """
    connection = client.connection
    counts = {"sends": 0, "replies": 0}
    send, read = connection.send_packed_command, connection.read_response

    def counted_send(*args: Any, **kwargs: Any) -> Any:
        counts["sends"] += 1
        return send(*args, **kwargs)

    def counted_read(*args: Any, **kwargs: Any) -> Any:
        counts["replies"] += 1
        return read(*args, **kwargs)

    before = command_calls(probe)
    connection.send_packed_command = counted_send
    connection.read_response = counted_read
    try:
        for _ in range(times):
            run()
    finally:
        del connection.send_packed_command, connection.read_response
    after = command_calls(probe)
    delta = {
        name: calls - before.get(name, 0)
        for name, calls in after.items()
        if calls != before.get(name, 0) and name != "info"
    }
    sends, replies = counts["sends"] / times, counts["replies"] / times
    return {
        "calls": times,
        "client_sends_per_call": sends,
        "client_replies_per_call": replies,
        "status": "PASS" if sends == replies == 1 else "MISS",
        "server_commands_delta": delta,
    }


def reply_parsers() -> dict[str, Any]:
    """redis-py's reply parsers to compare: ``python`` always, ``hiredis`` when installed."""
    from redis._parsers import _HiredisParser, _RESP2Parser
    from redis.utils import HIREDIS_AVAILABLE

    found: dict[str, Any] = {"python": _RESP2Parser}
    if HIREDIS_AVAILABLE:
        found["hiredis"] = _HiredisParser
    return found


def bench_redis(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import orjson
    import redis

    from utils.cache import RedisCache

    problems = Problems()
    namespace = f"bench-cache-{uuid.uuid4().hex[:8]}"
    # One connection, the same client for ours and the raw calls.
    client = redis.Redis.from_url(REDIS_URL, single_connection_client=True)
    pooled = redis.Redis.from_url(REDIS_URL)  # the default connection pool (informational)
    probe = redis.Redis.from_url(REDIS_URL)
    server = probe.info("server")
    cache = RedisCache(client, namespace=namespace)
    cache_pooled = RedisCache(pooled, namespace=namespace)
    cache.set("small", VALUE)
    name = cache.redis_key("small")
    keys = [f"k{i}" for i in range(MANY)]
    names = [cache.redis_key(key) for key in keys]
    cache.set_many({key: {**VALUE, "id": i} for i, key in enumerate(keys)})
    # The reply parser: hiredis (the [hiredis] extra) against redis-py's pure-Python one,
    # chosen explicitly so both run in this process.
    parsers = reply_parsers()
    parser_clients = {
        label: redis.Redis.from_url(REDIS_URL, single_connection_client=True, parser_class=cls)
        for label, cls in parsers.items()
    }
    parser_caches = {
        label: RedisCache(c, namespace=namespace) for label, c in parser_clients.items()
    }
    for label, parsed in parser_caches.items():
        problems.expect(parsed.get_many(keys) == cache.get_many(keys), f"get_many ({label})")

    loads = json.loads
    olds = orjson.loads
    get, mget = client.get, client.mget

    def raw_get() -> Any:
        return loads(get(name))

    def raw_get_many() -> dict[str, Any]:
        return {k: loads(v) for k, v in zip(keys, mget(names), strict=True) if v is not None}

    def raw_get_many_orjson() -> dict[str, Any]:
        return {k: olds(v) for k, v in zip(keys, mget(names), strict=True) if v is not None}

    problems.expect(cache.get("small") == VALUE, "RedisCache.get: wrong value")
    problems.expect(cache_pooled.get("small") == VALUE, "RedisCache.get (pool): wrong value")
    problems.expect(raw_get() == VALUE, "raw GET + json.loads: wrong value")
    many = cache.get_many(keys)
    problems.expect(
        len(many) == MANY and many["k7"]["id"] == 7, "RedisCache.get_many: wrong values"
    )
    problems.expect(raw_get_many() == many, "raw MGET + loads: not what get_many returned")
    problems.expect(raw_get_many_orjson() == many, "raw MGET + orjson: not what get_many returned")
    trips = {
        "get": count_round_trips(client, probe, lambda: cache.get("small"), 100),
        "get_many": count_round_trips(client, probe, lambda: cache.get_many(keys), 100),
    }
    problems.expect(trips["get"]["status"] == "PASS", "RedisCache.get: not one round trip")

    measures = {
        "ours": wall_loop("get('small')", get=cache.get),
        "raw": wall_loop("loads(get(name))", loads=loads, get=get, name=name),
        "raw-orjson": wall_loop("loads(get(name))", loads=olds, get=get, name=name),
        "ours-pool": wall_loop("get('small')", get=cache_pooled.get),
        "raw-pool": wall_loop("loads(get(name))", loads=loads, get=pooled.get, name=name),
        "ours-many": wall_loop("get_many(keys)", get_many=cache.get_many, keys=keys),
        "raw-many": wall_loop("f()", f=raw_get_many),
        "raw-many-orjson": wall_loop("f()", f=raw_get_many_orjson),
        # CPU time of the same two get calls: the client-side cost, without the wait.
        "ours-cpu": loop("get('small')", get=cache.get),
        "raw-cpu": loop("loads(get(name))", loads=loads, get=get, name=name),
        **{
            f"many-{label}": wall_loop("get_many(keys)", get_many=parsed.get_many, keys=keys)
            for label, parsed in parser_caches.items()
        },
    }
    rounds, loops = interleaved(measures, settings)
    one = "same client (single_connection_client=True)"
    results = [
        pair_result(
            "3. RedisCache.get vs GET+json.loads",
            rounds,
            loops,
            ours=("ours", f"RedisCache(client).get('small'), {one}"),
            peer=("raw", f"json.loads(client.get(key)), {one}"),
            max_ratio=1.1,
            target="<= 1.10",
        ),
        pair_result(
            "3. RedisCache.get vs GET+orjson.loads",
            rounds,
            loops,
            ours=("ours", "RedisCache(client).get('small')"),
            peer=("raw-orjson", "orjson.loads(client.get(key)) (ours' own loads)"),
        ),
        pair_result(
            "3. same, default connection pool",
            rounds,
            loops,
            ours=("ours-pool", "RedisCache(redis.Redis.from_url(url)).get('small')"),
            peer=("raw-pool", "json.loads(same pooled client.get(key))"),
        ),
        pair_result(
            "3. RedisCache.get_many(100) vs MGET",
            rounds,
            loops,
            ours=("ours-many", f"RedisCache(client).get_many({MANY} keys), {one}"),
            peer=("raw-many", "{k: json.loads(v) for k, v in zip(keys, client.mget(names))}"),
            max_ratio=1.2,
            target="<= 1.20",
        ),
        pair_result(
            "3. get_many(100) vs MGET+orjson.loads",
            rounds,
            loops,
            ours=("ours-many", f"RedisCache(client).get_many({MANY} keys)"),
            peer=("raw-many-orjson", "the same dict from client.mget(names), orjson.loads"),
        ),
        pair_result(
            "3. RedisCache.get, CPU time",
            rounds,
            loops,
            ours=("ours-cpu", "RedisCache(client).get('small'), CPU time of this process"),
            peer=("raw-cpu", "json.loads(client.get(key)), CPU time of this process"),
        ),
    ]
    if len(parsers) == 2:
        results.append(
            pair_result(
                "3. get_many(100): hiredis vs Python parser",
                rounds,
                loops,
                ours=("many-hiredis", "RedisCache(client with parser_class=_HiredisParser)"),
                peer=("many-python", "RedisCache(client with parser_class=_RESP2Parser)"),
                max_ratio=1 / 1.8,
                target="<= 0.56 (1.8x faster)",
            )
        )
    cache.clear()
    for c in (client, pooled, probe, *parser_clients.values()):
        c.close()
    extra = {
        "url": REDIS_URL,
        "server_version": server.get("redis_version"),
        "totals_us": medians(rounds),
        "round_trips": trips,
        "checks": problems.checked,
        "problems": list(problems),
    }
    return results, extra


def bench_async_redis(
    settings: Settings, event_loop: asyncio.AbstractEventLoop
) -> tuple[list[Result], dict[str, Any]]:
    import redis.asyncio
    from aiocache import RedisCache as AioRedisCache
    from cashews import Cache

    from utils.cache import AsyncRedisCache

    problems = Problems()
    namespace = f"bench-cache-{uuid.uuid4().hex[:8]}"
    run = event_loop.run_until_complete
    client = redis.asyncio.Redis.from_url(REDIS_URL, single_connection_client=True)
    cache = AsyncRedisCache(client, namespace=namespace)
    run(cache.set("small", VALUE))
    name = cache.redis_key("small")
    loads = json.loads
    aget = client.get

    async def raw_get(key: str) -> Any:
        return loads(await aget(key))

    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL)
    db = int((parts.path or "/0").lstrip("/") or 0)
    aio = AioRedisCache(
        endpoint=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=db,
        namespace=namespace,
        timeout=None,
    )
    run(aio.set("small", VALUE))
    cashews = Cache()
    cashews.setup(REDIS_URL)
    cashews_key = f"{namespace}:cashews:small"
    run(cashews.set(cashews_key, VALUE))

    problems.expect(run(cache.get("small")) == VALUE, "AsyncRedisCache.get: wrong value")
    problems.expect(run(raw_get(name)) == VALUE, "raw async GET + loads: wrong value")
    problems.expect(run(aio.get("small")) == VALUE, "aiocache Redis get: wrong value")
    problems.expect(run(cashews.get(cashews_key)) == VALUE, "cashews Redis get: wrong value")

    wall = time.perf_counter
    measures = {
        "ours": async_loop(event_loop, cache.get, "small", clock=wall),
        "raw": async_loop(event_loop, raw_get, name, clock=wall),
        "aiocache": async_loop(event_loop, aio.get, "small", clock=wall),
        "cashews": async_loop(event_loop, cashews.get, cashews_key, clock=wall),
    }
    rounds, loops = interleaved(measures, settings)
    ours = ("ours", "await AsyncRedisCache(client).get('small'), single connection")
    results = [
        pair_result(
            "3. AsyncRedisCache.get vs GET+loads",
            rounds,
            loops,
            ours=ours,
            peer=("raw", "json.loads(await client.get(key)), same redis.asyncio client"),
            max_ratio=1.1,
            target="<= 1.10",
        ),
        pair_result(
            "3. AsyncRedisCache.get vs aiocache",
            rounds,
            loops,
            ours=ours,
            peer=("aiocache", "await aiocache RedisCache(timeout=None).get('small') (its pool)"),
        ),
        pair_result(
            "3. AsyncRedisCache.get vs cashews",
            rounds,
            loops,
            ours=ours,
            peer=("cashews", f"await cashews Cache().setup({REDIS_URL!r}).get(key)"),
        ),
    ]
    run(cache.clear())
    run(aio.delete("small"))
    run(cashews.delete(cashews_key))
    run(aio.close())
    run(cashews.close())
    run(client.aclose())
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------
# 4. TieredCache L1 hit


def bench_tiered(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import redis

    from utils.cache import MemoryCache, RedisCache, TieredCache

    problems = Problems()
    client = redis.Redis.from_url(REDIS_URL)
    l1 = MemoryCache(maxsize=MAXSIZE, ttl=TTL)
    l2 = RedisCache(client, namespace=f"bench-cache-{uuid.uuid4().hex[:8]}")
    tiered = TieredCache(l1, l2, l1_ttl=TTL)
    try:
        tiered.set("small", VALUE)
        problems.expect(tiered.get("small") == VALUE, "TieredCache.get: wrong value")
        problems.expect(l1.get("small") == VALUE, "TieredCache: the value is not in L1")
        hits = l2.stats().hits
        tiered.get("small")
        problems.expect(l2.stats().hits == hits, "TieredCache.get: read L2 on an L1 hit")
        measures = {
            "ours": loop("get('small')", get=tiered.get),
            "memory": loop("get('small')", get=l1.get),
        }
        rounds, loops = interleaved(measures, settings)
        results = [
            pair_result(
                "4. TieredCache L1 hit vs MemoryCache",
                rounds,
                loops,
                ours=("ours", "TieredCache(MemoryCache(...), RedisCache(...)).get, L1 hit"),
                peer=("memory", "MemoryCache.get of the same L1, hit"),
                max_ratio=1.5,
                target="<= 1.50",
            )
        ]
        l2.clear()
    finally:
        tiered.close()
        client.close()
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------


def section(
    name: str, run: Callable[[], tuple[list[Result], dict[str, Any]]], errors: dict[str, str]
) -> tuple[list[Result], dict[str, Any]]:
    """Run one section; a failure is reported and the other sections still run."""
    try:
        return run()
    except Exception:
        errors[name] = traceback.format_exc()
        print(f"ERROR in {name} (reported, not gating):\n{errors[name]}", file=sys.stderr)
        return [], {}


def fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def report_totals(name: str, part: dict[str, Any]) -> None:
    totals = part.get("totals_us")
    if totals:
        text = ", ".join(f"{side} {fmt(us)}" for side, us in totals.items())
        print(f"  per call ({name}), median µs: {text}")


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0], rounds=(25, 3))
    errors: dict[str, str] = {}
    extra: dict[str, Any] = {}
    cpu_results: list[Result] = []
    wall_results: list[Result] = []
    skipped = redis_reachable()

    event_loop = asyncio.new_event_loop()
    try:
        plan: list[tuple[str, Callable[[], tuple[list[Result], dict[str, Any]]], bool]] = [
            ("sync", lambda: bench_sync(settings), False),
            ("async", lambda: bench_async(settings, event_loop), False),
        ]
        if skipped is None:
            plan += [
                ("tiered", lambda: bench_tiered(settings), False),
                ("redis", lambda: bench_redis(settings), True),
                ("async_redis", lambda: bench_async_redis(settings, event_loop), True),
            ]
        else:
            for name in ("tiered", "redis", "async_redis"):
                extra[name] = {"skipped": skipped}
        for name, run, wall in plan:
            results, extra[name] = section(name, run, errors)
            (wall_results if wall else cpu_results).extend(results)
    finally:
        event_loop.close()

    versions = {dist: installed_version(dist) for dist in PEERS}
    env = environment({"peer_versions": versions, "redis_url": REDIS_URL})
    title = f"bench_cache  Python {env['python']}, {env['cpus']} CPUs, " + ", ".join(
        f"{dist} {version}" for dist, version in versions.items()
    )
    print_table(title, cpu_results, settings)
    for name in ("sync", "async", "tiered"):
        report_totals(name, extra.get(name, {}))
    if skipped is not None:
        print(f"\nRedis: skipped ({skipped}); rows 3 and 4 not measured")
    elif wall_results:
        print_table(
            f"bench_cache  Redis {extra['redis'].get('server_version')} at {REDIS_URL}",
            wall_results,
            settings,
            method=(
                f"median of {settings.rounds} interleaved rounds, min of {settings.repeat} per "
                "side per round, WALL-CLOCK time per call (network I/O) except the CPU time row"
            ),
        )
        trips = extra["redis"].get("round_trips", {})
        for op, figures in trips.items():
            print(
                f"  round trips per {op} ({figures['calls']} calls, client side): "
                f"{figures['client_sends_per_call']:.2f} packets sent, "
                f"{figures['client_replies_per_call']:.2f} replies read; target one: "
                f"{figures['status']} (server-wide INFO commandstats delta, other clients "
                f"included: {figures['server_commands_delta']})"
            )
        for name in ("redis", "async_redis"):
            report_totals(name, extra.get(name, {}))
    problems = [p for part in extra.values() for p in part.get("problems", [])]
    for problem in problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    checked = sum(part.get("checks", 0) for part in extra.values())
    print(f"\nchecks before timing: {checked} made, {len(problems)} problem(s)")
    if settings.verbose:
        print(f"environment: {env}")
    if errors:
        print(f"\nsections that failed (see stderr): {', '.join(errors)}")
    if settings.json_path:
        write_json(
            settings.json_path,
            "cache",
            cpu_results + wall_results,
            env,
            details=extra,
            errors=errors,
        )
    return 0  # reports, never gates


if __name__ == "__main__":
    sys.exit(main())
