"""TieredCache / AsyncTieredCache on real Redis: tiers, TTL caps, pub/sub invalidation
across two processes, and the L1 flush when the subscriber reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from utils.cache.errors import CacheError, CacheUnavailableError
from utils.cache.memory import MemoryCache
from utils.cache.protocol import MISSING, Cache
from utils.cache.redis_cache import AsyncRedisCache, RedisCache
from utils.cache.testing import unique_namespace
from utils.cache.tiered import (
    AsyncTieredCache,
    TieredCache,
    _Coherence,
    invalidation_channel,
    invalidation_message,
)
from utils.core.metrics import InMemorySink
from utils.core.testing import (
    FakeClock,
    PrivateRedis,
    async_wait_until,
    private_redis,
    wait_until,
)

pytestmark = pytest.mark.redis

#: How long another process may keep serving an invalidated value in these tests (seconds).
BOUND = 2.0


def eventually(predicate: Callable[[], bool], timeout: float = BOUND) -> bool:
    """``predicate`` holds within ``timeout`` (the documented staleness bound by default)."""
    wait_until(predicate, timeout, message="the caches did not converge")
    return True


@pytest.fixture
def namespace() -> str:
    return unique_namespace("tiered")


@pytest.fixture
def l2(utils_redis_url: str, namespace: str) -> Iterator[RedisCache]:
    cache = RedisCache(utils_redis_url, namespace=namespace)
    yield cache
    cache.clear()
    cache.close()


@pytest.fixture
def tiered(l2: RedisCache) -> Iterator[TieredCache]:
    with TieredCache(MemoryCache(maxsize=100), l2, l1_ttl=60) as cache:
        assert cache.wait_subscribed(5)
        yield cache


@pytest.fixture
def peer(l2: RedisCache) -> Iterator[TieredCache]:
    """A second TieredCache on the same namespace: another process, as far as L1 goes."""
    with TieredCache(MemoryCache(maxsize=100), l2, l1_ttl=60) as cache:
        assert cache.wait_subscribed(5)
        yield cache


def pings(admin: redis.Redis) -> int:
    """How many PINGs the server has answered so far (``INFO commandstats``)."""
    stats: dict[str, Any] = admin.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


def in_l1(cache: TieredCache | AsyncTieredCache, key: str) -> Any:
    return cache.l1.get(key, MISSING)


def heard(cache: TieredCache, key: str) -> None:
    """Wait until ``cache``'s subscriber has applied a message about ``key``.

    A value read from L2 while an invalidation of its key arrives is returned but not copied
    into L1 (it may be the value just invalidated), so a test that wants a peer to hold a
    key in L1 lets the peer hear about the write first.
    """
    assert eventually(lambda: key in cache._coherence.dropped)


# -- reads and writes through both tiers ---------------------------------------------------


def test_protocol_and_defaults(tiered: TieredCache, namespace: str) -> None:
    assert isinstance(tiered, Cache)
    assert tiered.namespace == namespace
    assert tiered.channel == invalidation_channel(namespace) == f"{namespace}:invalidate"
    assert tiered.l1_ttl == 60.0


def test_reads_l1_then_l2_and_fills_l1(tiered: TieredCache, l2: RedisCache) -> None:
    l2.set("k", {"v": 1}, ttl=30)
    assert not tiered.l1.exists("k")
    assert tiered.get("k") == {"v": 1}  # an L2 hit, copied into L1
    assert tiered.l1.exists("k")
    # The next read is an L1 hit: L2 is not asked (its hit count does not move).
    before = l2.stats().hits
    assert tiered.get("k") == {"v": 1}
    assert l2.stats().hits == before
    assert tiered.get("missing") is None
    assert tiered.get("missing", MISSING) is MISSING
    stats = tiered.stats()
    assert (stats.hits, stats.misses) == (2, 2)  # L1 + L2 hits; L2 misses


def test_a_cached_none_is_a_hit(tiered: TieredCache, peer: TieredCache) -> None:
    tiered.set("none", None)
    assert tiered.get("none", MISSING) is None
    heard(peer, "none")
    assert peer.get("none", MISSING) is None  # from L2, then L1
    assert in_l1(peer, "none") is None


def test_l1_copy_keeps_at_most_the_remaining_l2_ttl(tiered: TieredCache, l2: RedisCache) -> None:
    l2.set("short", "v", ttl=5)
    assert tiered.get("short") == "v"
    left = tiered.l1.ttl("short")
    assert left is not None
    assert 4.0 < left <= 5.0
    l2.set("long", "v", ttl=3600)
    tiered.get("long")
    left = tiered.l1.ttl("long")
    assert left is not None
    assert 59.0 < left <= 60.0  # capped by l1_ttl
    l2.set("forever", "v")
    tiered.get("forever")
    left = tiered.l1.ttl("forever")
    assert left is not None
    assert left <= 60.0
    assert (tiered.ttl("long") or 0) > 3500


def test_without_any_bound_l1_keeps_what_l2_keeps(l2: RedisCache) -> None:
    with TieredCache(MemoryCache(maxsize=10), l2) as cache:
        assert cache.wait_subscribed(5)
        assert cache.l1_ttl is None
        l2.set("forever", 1)
        cache.get("forever")
        assert cache.l1.ttl("forever") is None
        l2.set("brief", 1, ttl=9)
        cache.get("brief")
        assert 8 < (cache.l1.ttl("brief") or 0) <= 9


def test_l1_ttl_defaults_to_the_l1_caches_own(l2: RedisCache) -> None:
    with TieredCache(MemoryCache(maxsize=10, ttl=7), l2) as cache:
        assert cache.wait_subscribed(5)
        assert cache.l1_ttl == 7.0
        cache.set("k", 1, ttl=100)
        assert 6 < (cache.l1.ttl("k") or 0) <= 7


def test_an_expired_l1_copy_is_read_again_from_l2(l2: RedisCache) -> None:
    now = [0.0]
    with TieredCache(MemoryCache(maxsize=10, clock=lambda: now[0]), l2, l1_ttl=5) as cache:
        assert cache.wait_subscribed(5)
        cache.set("k", "v1")
        l2.client.set(l2.redis_key("k"), json.dumps("v2"))  # changed without a message
        assert cache.get("k") == "v1"  # from L1
        now[0] = 5.0  # the L1 copy expires: the staleness bound without messages
        assert cache.get("k") == "v2"
        assert in_l1(cache, "k") == "v2"


class WrappedL1:
    """Any object with the Cache methods can be L1 (here: a MemoryCache behind a facade)."""

    def __init__(self) -> None:
        self.inner = MemoryCache(maxsize=10)
        self.default_ttl = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_any_cache_can_be_l1(l2: RedisCache) -> None:
    l1 = WrappedL1()
    with TieredCache(l1, l2, l1_ttl=60) as cache:
        assert cache.wait_subscribed(5)
        l2.set("k", 1)
        assert cache.get("k") == 1  # L2 hit, copied
        assert l1.inner.get("k") == 1
        assert cache.get("k") == 1  # L1 hit through the generic path
        assert cache.get("nope", "default") == "default"


def test_l1_ttl_zero_disables_l1(l2: RedisCache) -> None:
    with TieredCache(MemoryCache(maxsize=10), l2, l1_ttl=0) as no_l1:
        assert no_l1.wait_subscribed(5)
        no_l1.set("k", 1)
        assert no_l1.get("k") == 1
        assert in_l1(no_l1, "k") is MISSING  # l1_ttl=0: L1 disabled


def test_writes_go_to_both_tiers(tiered: TieredCache, l2: RedisCache) -> None:
    tiered.set("a", 1, ttl=30)
    assert (in_l1(tiered, "a"), l2.get("a")) == (1, 1)
    assert 29 < (l2.ttl("a") or 0) <= 30
    tiered.set_many({"b": 2, "c": 3})
    assert tiered.l1.get_many(["b", "c"]) == {"b": 2, "c": 3}
    assert l2.get_many(["b", "c"]) == {"b": 2, "c": 3}
    tiered.set_many({})
    assert tiered.exists("a")
    assert not tiered.exists("zzz")
    l2.set("only-in-l2", 1)
    assert tiered.exists("only-in-l2")
    assert tiered.delete("a") is True
    assert tiered.delete("a") is False
    assert (in_l1(tiered, "a"), l2.get("a", MISSING)) == (MISSING, MISSING)
    assert tiered.delete_many(["b", "c", "nope"]) == 2
    assert tiered.delete_many([]) == 0
    assert tiered.get_many(["b", "c"]) == {}
    stats = tiered.stats()
    assert (stats.sets, stats.deletes) == (4, 3)  # L2's: only-in-l2 was set there


def test_ttl_zero_stores_nothing_and_keeps_the_old_value(
    tiered: TieredCache, l2: RedisCache
) -> None:
    tiered.set("k", "old")
    tiered.set("k", "new", ttl=0)
    tiered.set_many({"k": "new"}, ttl=0)
    assert tiered.get("k") == "old"
    assert l2.get("k") == "old"


def test_get_many_reads_l1_then_l2(tiered: TieredCache, l2: RedisCache) -> None:
    tiered.set("a", 1)
    l2.set_many({"b": 2, "c": 3})
    assert tiered.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": 2, "c": 3}
    assert tiered.get_many(["a"]) == {"a": 1}


def test_incr_counts_in_l2_and_drops_l1(tiered: TieredCache, peer: TieredCache) -> None:
    tiered.set("n", 5)
    heard(peer, "n")
    assert peer.get("n") == 5
    assert in_l1(peer, "n") == 5
    assert tiered.incr("n") == 6
    assert in_l1(tiered, "n") is MISSING
    assert eventually(lambda: in_l1(peer, "n") is MISSING)
    assert peer.get("n") == 6


def test_clear_empties_the_namespace_and_every_l1(
    tiered: TieredCache, peer: TieredCache, l2: RedisCache
) -> None:
    tiered.set_many({"a": 1, "b": 2})
    heard(peer, "b")
    assert (peer.get("a"), peer.get("b")) == (1, 2)
    assert peer.l1.stats().size == 2
    tiered.clear()
    assert l2.get_many(["a", "b"]) == {}
    assert tiered.l1.stats().size == 0
    assert eventually(lambda: peer.l1.stats().size == 0)


def test_get_or_set_computes_once_and_fills_both_tiers(
    tiered: TieredCache, l2: RedisCache
) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    assert tiered.get_or_set("answer", compute, ttl=30) == 42
    assert tiered.get_or_set("answer", compute, ttl=30) == 42
    assert calls == [1]
    assert l2.get("answer") == 42
    lock = tiered._lock("answer", 1.0)
    assert lock.acquire(0.1)
    lock.release()


# -- invalidation --------------------------------------------------------------------------


def test_a_write_elsewhere_reaches_this_l1(tiered: TieredCache, peer: TieredCache) -> None:
    tiered.set("k", "v1")
    heard(peer, "k")
    assert peer.get("k") == "v1"
    assert in_l1(peer, "k") == "v1"
    tiered.set("k", "v2")
    assert eventually(lambda: peer.get("k") == "v2")
    tiered.set_many({"k": "v3"})
    assert eventually(lambda: peer.get("k") == "v3")
    tiered.delete("k")
    assert eventually(lambda: peer.get("k") is None)
    tiered.set("x", 1)
    heard(peer, "x")
    peer.get("x")
    assert in_l1(peer, "x") == 1
    tiered.delete_many(["x"])
    assert eventually(lambda: in_l1(peer, "x") is MISSING)


def test_own_messages_do_not_drop_own_writes(tiered: TieredCache, peer: TieredCache) -> None:
    tiered.set("k", "mine")
    # The peer has seen the message once it dropped its copy; ours has arrived by then too.
    peer.get("k")
    tiered.set("k", "mine again")
    assert eventually(lambda: in_l1(peer, "k") is MISSING)
    # Messages on one channel arrive in order: once ours has applied the peer's later
    # invalidation of "probe", it has also seen (and skipped) its own message about "k".
    tiered.set("probe", 1)
    peer.delete("probe")
    assert eventually(lambda: in_l1(tiered, "probe") is MISSING)
    assert in_l1(tiered, "k") == "mine again"


def test_an_unreadable_message_flushes_l1(
    tiered: TieredCache, l2: RedisCache, utils_logs: list[dict[str, Any]]
) -> None:
    tiered.set("k", 1)
    l2.client.publish(tiered.channel, b"\xff not json")
    assert eventually(lambda: in_l1(tiered, "k") is MISSING)
    assert any(e["event"] == "cache.invalidation_unreadable" for e in utils_logs)
    tiered.set("k", 1)
    l2.client.publish(tiered.channel, json.dumps({"o": "someone", "k": "not a list"}))
    l2.client.publish(tiered.channel, json.dumps({"o": "someone", "k": [7, "k"]}))
    assert eventually(lambda: in_l1(tiered, "k") is MISSING)


def test_a_fill_racing_an_invalidation_is_not_stored() -> None:
    """A value read from L2 before an invalidation arrived must not land in L1 after it."""
    coherence = _Coherence(MemoryCache(maxsize=10), "ns")
    epoch = coherence.epoch  # a reader starts its L2 reads here ...
    coherence.apply(invalidation_message("another process", ["k"]))  # ... this arrives ...
    coherence.fill("k", "stale", None, epoch)  # ... and the read returns the old value
    assert coherence.l1.get("k", MISSING) is MISSING
    coherence.fill_many({"k": ("stale", None), "j": ("fine", None)}, epoch)
    assert coherence.l1.get("k", MISSING) is MISSING
    assert coherence.l1.get("j") == "fine"  # another key's invalidation does not matter
    coherence.fill("k", "fresh", None, coherence.epoch)  # a read started afterwards
    assert coherence.l1.get("k") == "fresh"

    epoch = coherence.epoch
    coherence.apply(invalidation_message(coherence.origin, None))  # our own: ignored
    assert coherence.l1.get("k") == "fresh"
    coherence.apply(invalidation_message("another process", None))  # a flush ...
    assert coherence.l1.get("k", MISSING) is MISSING
    coherence.fill("j", "stale", None, epoch)  # ... refuses every read in flight
    assert coherence.l1.get("j", MISSING) is MISSING

    epoch = coherence.epoch
    coherence.store("k", "written here", None)  # a local write also wins over a slow read
    coherence.fill("k", "stale", None, epoch)
    assert coherence.l1.get("k") == "written here"


def test_the_record_of_invalidated_keys_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Coherence, "_MAX_DROPPED", 3)
    coherence = _Coherence(MemoryCache(maxsize=10), "ns")
    epoch = coherence.epoch
    for key in "abcde":
        coherence.drop([key])
    assert len(coherence.dropped) <= 4
    coherence.fill("z", "read before the record was pruned", None, epoch)
    assert coherence.l1.get("z", MISSING) is MISSING  # refused: the record was lost
    coherence.fill("z", "read after", None, coherence.epoch)
    assert coherence.l1.get("z") == "read after"


def test_cli_style_messages_are_understood(tiered: TieredCache, l2: RedisCache) -> None:
    tiered.set("k", 1)
    l2.client.publish(tiered.channel, invalidation_message("utils-cli:1", ["k"]))
    assert eventually(lambda: in_l1(tiered, "k") is MISSING)


CHILD = textwrap.dedent(
    """
    import json, sys
    from utils.cache.memory import MemoryCache
    from utils.cache.protocol import MISSING
    from utils.cache.redis_cache import RedisCache
    from utils.cache.tiered import TieredCache

    url, namespace = sys.argv[1], sys.argv[2]
    cache = TieredCache(MemoryCache(maxsize=100), RedisCache(url, namespace=namespace),
                        l1_ttl=3600)
    assert cache.wait_subscribed(10)
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        command, key = line.split()
        if command == "get":
            reply = cache.get(key)
        else:  # "peek": what L1 alone holds
            value = cache.l1.get(key, MISSING)
            reply = "<missing>" if value is MISSING else value
        print(json.dumps(reply), flush=True)
    cache.close()
    """
)


class Child:
    """Another process with its own TieredCache on the same namespace."""

    def __init__(self, url: str, namespace: str, script: Path) -> None:
        script.write_text(CHILD)
        self.process = subprocess.Popen(
            [sys.executable, str(script), url, namespace],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask_line() == "ready"

    def ask_line(self) -> Any:
        assert self.process.stdout is not None
        return json.loads(self.process.stdout.readline())

    def ask(self, command: str, key: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command} {key}\n")
        self.process.stdin.flush()
        return self.ask_line()

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture
def child(utils_redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Child]:
    other = Child(utils_redis_url, namespace, tmp_path / "child.py")
    yield other
    other.close()


def test_two_processes_stop_serving_what_the_other_deleted(
    child: Child, tiered: TieredCache, l2: RedisCache
) -> None:
    tiered.set("user:1", "v1")
    # Held in the child's L1 (l1_ttl 1 h) once its read no longer races the set's message.
    assert eventually(
        lambda: (child.ask("get", "user:1"), child.ask("peek", "user:1")) == ("v1", "v1")
    )

    # Without a message the child keeps serving its L1 copy: the test can tell.
    l2.client.set(l2.redis_key("user:1"), json.dumps("changed behind its back"))
    assert child.ask("get", "user:1") == "v1"

    started = time.monotonic()
    tiered.delete("user:1")
    assert eventually(lambda: child.ask("get", "user:1") is None)
    delete_seen = time.monotonic() - started

    tiered.set("user:1", "v2")
    assert eventually(
        lambda: (child.ask("get", "user:1"), child.ask("peek", "user:1")) == ("v2", "v2")
    )

    started = time.monotonic()
    tiered.set("user:1", "v3")
    assert eventually(lambda: child.ask("get", "user:1") == "v3")
    update_seen = time.monotonic() - started

    tiered.clear()
    assert eventually(lambda: child.ask("peek", "user:1") == "<missing>")
    assert child.ask("get", "user:1") is None
    assert max(delete_seen, update_seen) < BOUND


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_subscriber(tiered: TieredCache) -> None:
    """A cache made before a pre-forking server forks keeps hearing invalidations."""
    tiered.set("k", "v1")
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock: the point of
        # the feature under test is that the child does not depend on those threads.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        verdict = b"0"
        try:
            assert tiered._subscriber.thread.is_alive()
            assert tiered.wait_subscribed(5)
            assert tiered.get("k") == "v1"
            os.write(from_child, b"r")
            assert os.read(to_child, 1) == b"d"  # the parent deleted "k"
            assert eventually(lambda: tiered.get("k") is None)
            verdict = b"1"
        except BaseException:
            import traceback

            traceback.print_exc()  # shown by pytest with the parent's failure
            raise
        finally:
            os.write(from_child, verdict)
            with contextlib.suppress(Exception):
                import coverage

                current = coverage.Coverage.current()
                if current is not None:
                    current.stop()
                    current.save()
            os._exit(0)
    try:
        assert os.read(to_parent, 1) == b"r"
        tiered.delete("k")
        os.write(from_parent, b"d")
        assert os.read(to_parent, 1) == b"1"
    finally:
        os.waitpid(pid, 0)
        for fd in (to_child, from_parent, to_parent, from_child):
            os.close(fd)


# -- outages and reconnection --------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    with private_redis() as private:
        yield private


def test_l1_is_flushed_when_the_subscriber_reconnects(
    server: PrivateRedis,
    namespace: str,
    utils_logs: list[dict[str, Any]],
    utils_metrics: InMemorySink,
) -> None:
    clock = FakeClock()
    l2 = RedisCache(server.url, namespace=namespace, clock=clock)
    with TieredCache(MemoryCache(maxsize=100), l2, l1_ttl=60) as cache:
        assert cache.wait_subscribed(5)
        cache.set("k", "before")
        assert in_l1(cache, "k") == "before"

        server.stop()
        assert eventually(lambda: not cache._subscriber.subscribed.is_set())
        # Several reconnection attempts fail; the outage is still logged once.
        assert eventually(
            lambda: utils_metrics.count("cache.error", cache=namespace, op="subscribe") >= 2
        )
        # Redis is down: L1 keeps serving (fail-open), writes are dropped, nothing raises.
        assert cache.get("k") == "before"
        assert cache.get("other") is None
        cache.set("during", 1)
        cache.delete("nothing")
        assert cache.stats().errors > 0

        assert in_l1(cache, "during") is MISSING  # not in Redis: not in L1 either

        server.start()
        assert cache.wait_subscribed(5)
        assert in_l1(cache, "k") is MISSING  # flushed: invalidations may have been missed
        clock.advance(1.0)  # L2 fails fast until its next probe is due
        assert cache.get("k") is None  # the restarted server kept nothing: nothing stale
        cache.set("k", "after")
        assert cache.get("k") == "after"

    events = [entry["event"] for entry in utils_logs]
    assert events.count("cache.invalidation_lost") == 1
    assert events.count("cache.invalidation_resumed") == 1
    assert events.count("cache.unavailable") == 1  # L2's log, the publish included
    assert utils_metrics.count("cache.error", cache=namespace, op="subscribe") >= 2
    # The first publish met the outage; the second failed fast (counted, no round trip);
    # the write of "during" failed fast too, so nothing was published for it.
    assert utils_metrics.count("cache.error", cache=namespace, op="publish") >= 1
    l2.close()


def test_a_silent_connection_is_detected_by_ping(
    server: PrivateRedis, namespace: str, utils_logs: list[dict[str, Any]]
) -> None:
    """A connection that delivers nothing (half-open TCP) counts as lost after one PING."""
    l2 = RedisCache(server.url, namespace=namespace)
    admin = redis.Redis.from_url(server.url)
    with TieredCache(MemoryCache(maxsize=100), l2, l1_ttl=60) as cache:
        cache._subscriber.ping_interval = 0.05
        cache._subscriber.poll = 0.02
        assert cache.wait_subscribed(5)
        # Idle: the subscriber PINGs, the answers come back, the subscription stays.
        seen = pings(admin)
        wait_until(lambda: pings(admin) >= seen + 3, BOUND, message="no keep-alive PINGs")
        assert cache._subscriber.subscriptions == 1
        cache.set("k", 1)
        admin.client_pause(600, all=True)  # the server stops answering anyone
        assert eventually(lambda: not cache._subscriber.subscribed.is_set())
        assert cache.wait_subscribed(5)
        assert in_l1(cache, "k") is MISSING
    assert any(e["event"] == "cache.invalidation_lost" for e in utils_logs)
    admin.close()
    l2.close()


def test_publish_failure_raises_when_l2_does_not_fail_open(
    server: PrivateRedis, namespace: str
) -> None:
    class DiesAfterWrite(RedisCache):
        """Redis dies right after the L2 write, before the invalidation is published."""

        def _store(self, key: str, value: Any, ttl: Any = None) -> bool:
            stored = super()._store(key, value, ttl)
            server.stop()
            return stored

    strict = DiesAfterWrite(server.url, namespace=namespace, fail_open=False)
    with TieredCache(MemoryCache(maxsize=10), strict) as cache:
        assert cache.wait_subscribed(5)
        with pytest.raises(CacheUnavailableError, match="cannot reach Redis") as caught:
            cache.set("k", 1)
        assert caught.value.details["op"] == "publish"
    strict.close()


def test_a_refused_publish_is_a_cache_error(server: PrivateRedis, namespace: str) -> None:
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser(
        "nopub",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-publish"],
    )
    l2 = RedisCache(f"redis://nopub:pw@127.0.0.1:{server.port}/0", namespace=namespace)
    with TieredCache(MemoryCache(maxsize=10), l2) as cache:
        assert cache.wait_subscribed(5)
        with pytest.raises(CacheError, match=r"Redis refused cache publish"):
            cache.set("k", 1)
    admin.close()
    l2.close()


def test_a_failed_l2_write_drops_the_l1_copy(server: PrivateRedis, namespace: str) -> None:
    strict = RedisCache(server.url, namespace=namespace, fail_open=False)
    with TieredCache(MemoryCache(maxsize=10), strict) as cache:
        assert cache.wait_subscribed(5)
        cache.set("k", "old")
        cache.set("j", "old")
        assert in_l1(cache, "k") == in_l1(cache, "j") == "old"
        server.stop()
        with pytest.raises(CacheUnavailableError):
            cache.set("k", "new")
        with pytest.raises(CacheUnavailableError):
            cache.set_many({"j": "new"})
        assert in_l1(cache, "k") is MISSING
        assert in_l1(cache, "j") is MISSING
        with pytest.raises(CacheUnavailableError):
            cache.delete("k")
    strict.close()


def test_close_is_idempotent_and_a_forgotten_cache_stops_its_thread(l2: RedisCache) -> None:
    cache = TieredCache(MemoryCache(maxsize=10), l2)
    assert cache.wait_subscribed(5)
    thread = cache._subscriber.thread
    del cache
    gc.collect()
    thread.join(timeout=3)
    assert not thread.is_alive()
    other = TieredCache(MemoryCache(maxsize=10), l2)
    other.close()
    other.close()
    assert not other._subscriber.thread.is_alive()


def test_l2_must_be_a_redis_cache() -> None:
    with pytest.raises(TypeError, match="needs a RedisCache"):
        TieredCache(MemoryCache(), MemoryCache())  # type: ignore[arg-type]


# -- async ---------------------------------------------------------------------------------


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_async_reads_writes_and_invalidation(utils_redis_url: str, namespace: str) -> None:
    async def main() -> None:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        async with (
            AsyncTieredCache(MemoryCache(maxsize=100).as_async(), l2, l1_ttl=60) as one,
            AsyncTieredCache(MemoryCache(maxsize=100), l2, l1_ttl=60) as two,
        ):
            assert await one.wait_subscribed(5)
            assert await two.wait_subscribed(5)
            await one.set("k", {"v": 1}, ttl=30)
            # Let two's subscriber see the message first: a value read from L2 while an
            # invalidation of its key arrives is returned but (rightly) not copied to L1.
            await async_wait_until(lambda: "k" in two._coherence.dropped, BOUND)
            assert await two.get("k") == {"v": 1}
            assert 29 < (two.l1.ttl("k") or 0) <= 30
            assert await two.get("k") == {"v": 1}  # L1 hit
            assert await two.get("nope", MISSING) is MISSING
            await one.set("k", {"v": 2})
            # two's subscriber drops its L1 copy; the next read then comes from L2.
            await async_wait_until(lambda: in_l1(two, "k") is MISSING, BOUND)
            assert await two.get("k") == {"v": 2}
            assert await one.exists("k")
            assert not await one.exists("zzz")
            await l2.set("only-l2", 1)
            assert await one.exists("only-l2")
            await one.set_many({"a": 1, "b": 2})
            await one.set_many({"a": 9}, ttl=0)
            await one.set("a", 9, ttl=0)
            await one.set_many({})
            assert await two.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
            assert await two.get_many(["a"]) == {"a": 1}
            assert await one.get_many(["a", "b"]) == {"a": 1, "b": 2}  # all from L1
            assert await one.ttl("k") is None
            assert await one.incr("n", 3) == 3
            assert await one.delete("a") is True
            assert await one.delete_many(["b", "zz"]) == 1
            assert await one.delete_many([]) == 0
            assert await one.get_or_set("computed", lambda: 7) == 7
            lock = one._alock("computed", 1.0)
            assert await lock.aacquire(0.1)
            await lock.arelease()
            await one.clear()
            await async_wait_until(lambda: two.l1.stats().size == 0, BOUND)
            assert two.l1.stats().size == 0
            assert await l2.get_many(["k", "computed"]) == {}
            assert one.stats().hits >= 1
        await l2.clear()
        await l2.aclose()

    run(main())


def test_async_l1_is_flushed_when_the_subscriber_reconnects(
    server: PrivateRedis, namespace: str, utils_logs: list[dict[str, Any]]
) -> None:
    async def main() -> None:
        clock = FakeClock()
        l2 = AsyncRedisCache(server.url, namespace=namespace, clock=clock)
        cache = AsyncTieredCache(MemoryCache(maxsize=10), l2, l1_ttl=60)
        assert await cache.wait_subscribed(5)
        await cache.set("k", "before")
        server.stop()
        await async_wait_until(lambda: not cache._subscriber.subscribed.is_set(), BOUND)
        assert await cache.get("k") == "before"  # L1 serves while Redis is down
        await cache.set("down", 1)  # dropped, and the publish fails: nothing raises
        server.start()
        assert await cache.wait_subscribed(5)
        assert in_l1(cache, "k") is MISSING
        clock.advance(1.0)  # L2 fails fast until its next probe is due
        assert await cache.get("k") is None
        await cache.set("k", "after")
        assert await cache.get("k") == "after"
        await cache.aclose()
        await cache.aclose()
        await l2.aclose()

    run(main())
    events = [entry["event"] for entry in utils_logs]
    assert events.count("cache.invalidation_lost") == 1
    assert events.count("cache.invalidation_resumed") == 1
    assert events.count("cache.recovered") == 1


def test_async_strict_l2_failures_drop_l1_and_raise(server: PrivateRedis, namespace: str) -> None:
    async def main() -> None:
        strict = AsyncRedisCache(server.url, namespace=namespace, fail_open=False)
        async with AsyncTieredCache(MemoryCache(maxsize=10), strict) as cache:
            assert await cache.wait_subscribed(5)
            await cache.set_many({"k": "old", "j": "old"})
            assert in_l1(cache, "k") == in_l1(cache, "j") == "old"
            server.stop()
            with pytest.raises(CacheUnavailableError):
                await cache.set("k", "new")
            with pytest.raises(CacheUnavailableError):
                await cache.set_many({"j": "new"})
            assert in_l1(cache, "k") is MISSING
            assert in_l1(cache, "j") is MISSING
        await strict.aclose()

    run(main())


def test_async_refused_publish_is_a_cache_error(server: PrivateRedis, namespace: str) -> None:
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser(
        "nopub",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-publish"],
    )
    admin.close()

    async def main() -> None:
        l2 = AsyncRedisCache(f"redis://nopub:pw@127.0.0.1:{server.port}/0", namespace=namespace)
        async with AsyncTieredCache(MemoryCache(maxsize=10), l2) as cache:
            assert await cache.wait_subscribed(5)
            with pytest.raises(CacheError, match=r"Redis refused cache publish"):
                await cache.delete("k")
            assert cache.stats().errors == 1
        await l2.aclose()

    run(main())


def test_async_silent_connection_is_detected_by_ping(server: PrivateRedis, namespace: str) -> None:
    async def main() -> None:
        l2 = AsyncRedisCache(server.url, namespace=namespace)
        admin = redis.asyncio.Redis.from_url(server.url)
        cache = AsyncTieredCache(MemoryCache(maxsize=10), l2, l1_ttl=60)
        cache._subscriber.ping_interval = 0.05
        assert await cache.wait_subscribed(5)
        # Idle: the subscriber PINGs, the answers come back, the subscription stays.
        counter = redis.Redis.from_url(server.url)
        seen = pings(counter)
        await async_wait_until(lambda: pings(counter) >= seen + 3, BOUND)
        counter.close()
        assert cache._subscriber.subscriptions == 1
        await cache.set("k", 1)
        await admin.client_pause(600, all=True)
        await async_wait_until(lambda: not cache._subscriber.subscribed.is_set(), BOUND)
        assert await cache.wait_subscribed(5)
        assert in_l1(cache, "k") is MISSING
        await cache.aclose()
        await admin.aclose()
        await l2.aclose()

    run(main())


def test_async_l1_paths(utils_redis_url: str, namespace: str) -> None:
    """An expired L1 copy is read again from L2; any Cache can be L1 (the generic path)."""

    async def main() -> None:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        now = [0.0]
        l1 = MemoryCache(maxsize=10, clock=lambda: now[0])
        async with AsyncTieredCache(l1, l2, l1_ttl=5) as cache:
            assert await cache.wait_subscribed(5)
            await cache.set("k", "v1")
            await l2.client.set(l2.redis_key("k"), json.dumps("v2"))  # no message
            assert await cache.get("k") == "v1"
            now[0] = 5.0
            assert await cache.get("k") == "v2"
        wrapped = WrappedL1()
        async with AsyncTieredCache(wrapped, l2, l1_ttl=60) as generic:
            assert await generic.wait_subscribed(5)
            assert await generic.get("k") == "v2"
            assert await generic.get("k") == "v2"  # from L1, through the generic path
            assert wrapped.inner.get("k") == "v2"
        await l2.clear()
        await l2.aclose()

    run(main())


def test_a_forgotten_async_cache_cancels_its_task(utils_redis_url: str, namespace: str) -> None:
    async def main() -> None:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        cache = AsyncTieredCache(MemoryCache(maxsize=10), l2)
        assert await cache.wait_subscribed(5)
        task = cache._subscriber.task
        assert task is not None
        del cache
        gc.collect()
        await async_wait_until(task.done)
        closed = AsyncTieredCache(MemoryCache(maxsize=10), l2)
        await closed.aclose()
        await closed.set("k", 1)  # works, but no subscriber starts again after aclose()
        assert closed._subscriber.task is None
        await l2.clear()
        await l2.aclose()

    run(main())

    # The finalizer of a cache whose loop has finished does nothing harmful.
    async def orphan() -> AsyncTieredCache:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        cache = AsyncTieredCache(MemoryCache(maxsize=10), l2)
        assert await cache.wait_subscribed(5)
        await cache.aclose()
        await l2.aclose()
        cache._subscriber.task = asyncio.current_task()  # a task that will be done
        return cache

    left_behind = run(orphan())
    left_behind._subscriber.cancel_soon()


def test_async_wait_subscribed_times_out(namespace: str) -> None:
    async def main() -> None:
        from utils.core.testing import find_free_port

        l2 = AsyncRedisCache(f"redis://127.0.0.1:{find_free_port()}/0", namespace=namespace)
        cache = AsyncTieredCache(MemoryCache(maxsize=10), l2)
        assert await cache.wait_subscribed(0.05) is False
        await cache.aclose()
        await l2.aclose()

    run(main())


# -- regressions -----------------------------------------------------------------------------


def test_d2_a_write_redis_refused_does_not_stay_in_l1(
    server: PrivateRedis, namespace: str
) -> None:
    """OOM with fail_open: the refused value must not be served from L1 (D2)."""
    admin = redis.Redis.from_url(server.url)
    l2_a = RedisCache(server.url, namespace=namespace)  # fail_open=True, the default
    l2_b = RedisCache(server.url, namespace=namespace)
    with (
        TieredCache(MemoryCache(maxsize=10), l2_a, l1_ttl=60) as a,
        TieredCache(MemoryCache(maxsize=10), l2_b, l1_ttl=60) as b,
    ):
        assert a.wait_subscribed(5)
        assert b.wait_subscribed(5)
        a.set("k", "old")
        a.set_many({"m": "old"})
        heard(b, "m")
        assert b.get("k") == "old"
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # the PRIVATE server refuses every write (OOM)
        try:
            a.set("k", "new")  # fail open: no exception
            a.set_many({"m": "new"})
            assert in_l1(a, "k") is MISSING  # the refused write left L1
            assert in_l1(a, "m") is MISSING
            assert a.get("k") == b.get("k") == "old"  # one truth: what Redis holds
            assert a.get_many(["m"]) == b.get_many(["m"]) == {"m": "old"}
        finally:
            admin.config_set("maxmemory", 0)
    admin.close()
    l2_a.close()
    l2_b.close()


# The first loop's pooled L2 connections cannot be closed once their loop is gone: they are
# dropped (redis.asyncio warns about the unclosed sockets when they are collected).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_d3_async_cache_used_from_a_second_event_loop(
    utils_redis_url: str, namespace: str
) -> None:
    """Two asyncio.run() jobs: the subscriber follows the loop, wait_subscribed tells the truth."""
    l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
    cache = AsyncTieredCache(MemoryCache(maxsize=10), l2, l1_ttl=60)
    writer = redis.Redis.from_url(utils_redis_url)

    async def first_job() -> None:
        assert await cache.wait_subscribed(5)
        await cache.set("k", "v1")
        assert await cache.get("k") == "v1"

    async def second_job() -> None:
        # The first loop is gone, and its subscriber with it: this must not claim otherwise
        # before a subscriber really listens on this loop.
        assert await cache.wait_subscribed(5)
        await cache.set("k", "v1")
        assert in_l1(cache, "k") == "v1"
        # Another process replaces the value: this L1 must hear it.
        writer.set(l2.redis_key("k"), json.dumps("v2"))
        writer.publish(cache.channel, invalidation_message("elsewhere", ["k"]))
        await async_wait_until(lambda: in_l1(cache, "k") is MISSING)
        assert await cache.get("k") == "v2"

    run(first_job())
    assert in_l1(cache, "k") is MISSING  # nothing listens between the loops: L1 flushed
    run(second_job())
    run(cache.aclose())
    writer.delete(l2.redis_key("k"))
    writer.close()
    run(l2.aclose())
    gc.collect()  # the dropped connections' warnings surface here, inside the filters


def test_d11_non_string_keys_are_refused_everywhere(tiered: TieredCache) -> None:
    from utils.core import ValidationError

    bad: Any = 42
    calls: list[Callable[[], Any]] = [
        lambda: tiered.get(bad),
        lambda: tiered.set(bad, 1),
        lambda: tiered.delete(bad),
        lambda: tiered.exists(bad),
        lambda: tiered.get_many(["ok", bad]),
        lambda: tiered.set_many({bad: 1}),
        lambda: tiered.delete_many([bad]),
        lambda: tiered.incr(bad),
        lambda: tiered.ttl(bad),
        lambda: tiered.get_or_set(bad, lambda: 1),
    ]
    for call in calls:
        with pytest.raises(ValidationError, match="keys must be str"):
            call()
    assert in_l1(tiered, bad) is MISSING


def test_d11_async_non_string_keys_are_refused_everywhere(
    utils_redis_url: str, namespace: str
) -> None:
    from utils.core import ValidationError

    async def main() -> None:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        async with AsyncTieredCache(MemoryCache(maxsize=10), l2) as cache:
            bad: Any = 42
            calls: list[Callable[[], Any]] = [
                lambda: cache.get(bad),
                lambda: cache.set(bad, 1),
                lambda: cache.delete(bad),
                lambda: cache.exists(bad),
                lambda: cache.get_many([bad]),
                lambda: cache.set_many({bad: 1}),
                lambda: cache.delete_many([bad]),
                lambda: cache.incr(bad),
                lambda: cache.ttl(bad),
                lambda: cache.get_or_set(bad, lambda: 1),
            ]
            for call in calls:
                with pytest.raises(ValidationError, match="keys must be str"):
                    await call()
        await l2.aclose()

    run(main())


def test_d17_get_many_copies_l2_hits_into_l1_on_real_redis(l2: RedisCache) -> None:
    with TieredCache(MemoryCache(maxsize=10), l2, l1_ttl=60) as cache:
        assert cache.wait_subscribed(5)
        l2.set("a", 1, ttl=10)
        l2.set("b", 2)
        l2.set("gone", 3, ttl=0.001)
        wait_until(lambda: not l2.exists("gone"))
        assert cache.get_many(["a", "b", "gone"]) == {"a": 1, "b": 2}
        assert 9 < (cache.l1.ttl("a") or 0) <= 10
        assert 59 < (cache.l1.ttl("b") or 0) <= 60
        before = l2.stats().hits
        assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}  # both from L1 now
        assert l2.stats().hits == before


def test_d17_async_get_many_copies_l2_hits_into_l1(utils_redis_url: str, namespace: str) -> None:
    async def main() -> None:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        async with AsyncTieredCache(MemoryCache(maxsize=10), l2, l1_ttl=60) as cache:
            assert await cache.wait_subscribed(5)
            await l2.set("a", 1, ttl=10)
            assert await cache.get_many(["a", "b"]) == {"a": 1}
            assert 9 < (cache.l1.ttl("a") or 0) <= 10
        await l2.clear()
        await l2.aclose()

    run(main())


def test_async_start_can_be_awaited_or_not(utils_redis_url: str, namespace: str) -> None:
    async def main() -> None:
        l2 = AsyncRedisCache(utils_redis_url, namespace=namespace)
        awaited = AsyncTieredCache(MemoryCache(maxsize=10), l2)
        await awaited.start()  # like the rest of the async API
        assert await awaited.wait_subscribed(5)
        plain = AsyncTieredCache(MemoryCache(maxsize=10), l2)
        plain.start()  # the former, sync, way still works
        assert await plain.wait_subscribed(5)
        await awaited.aclose()
        await plain.aclose()
        await l2.aclose()

    run(main())
