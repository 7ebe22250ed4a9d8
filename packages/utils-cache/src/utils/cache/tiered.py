"""Two-tier caches: a per-process memory L1 in front of a shared Redis L2, kept coherent.

:class:`TieredCache` (sync) and :class:`AsyncTieredCache` read L1 first, then L2, and copy
an L2 hit into L1; writes and deletes go to both. A value copied into L1 never outlives
its remaining TTL in Redis (read with ``GET`` + ``PTTL`` in one round trip) nor the L1
bound ``l1_ttl``.

**Invalidation.** Every ``set``, ``set_many``, ``delete``, ``delete_many``, ``incr`` and
``clear`` publishes the affected keys on the Redis pub/sub channel
``{namespace}:invalidate``. Each cache object runs a subscriber (a daemon thread, or a task
for the async cache) that drops those keys from its own L1. A message carries the
publisher's origin id, so a process never drops the value it has just written itself.
Whenever the subscriber (re)subscribes — at start and after every lost connection — it
flushes its whole L1: invalidations sent while it was not listening are lost, so nothing
in L1 can be trusted any more.

**Staleness bound** (how long a process may serve a value after another process deleted or
replaced it):

- normally, the pub/sub delivery delay (well under a millisecond on a LAN, plus the time
  the subscriber thread or task needs to be scheduled);
- while the subscriber is disconnected (Redis down, network cut), at most ``l1_ttl``: L1
  keeps serving what it holds — that is the point of a fail-open L1 — but every entry
  expires within ``l1_ttl``, and the whole L1 is flushed as soon as the subscription is
  re-established. A connection that silently stops delivering (half-open TCP) is noticed
  by an idle-time PING (``ping_interval``, 10 s) and treated the same way.
  ``l1_ttl`` defaults to the L1 cache's own TTL; set one whenever serving a deleted
  value for long would hurt — without any TTL, only the flush on reconnection bounds it.

A value read from L2 while an invalidation of that key (or a flush) arrives is returned
but not copied into L1, so a slow read cannot put back a value that was just invalidated.

Publishing follows the L2's policy (it runs through the L2's command runner): under a
:func:`~utils.core.deadline` it waits no longer than the time left; when Redis is down a
``fail_open`` L2 drops the message (other processes then rely on their reconnect flush
and ``l1_ttl``) and a strict one raises :class:`~utils.cache.errors.CacheUnavailableError`.
``utils cache delete`` and ``utils cache clear`` publish the same messages.

The first subscription flushes L1 too (it may hold values written before it listened);
:meth:`TieredCache.wait_subscribed` waits for it. A :class:`TieredCache` made before the
process forks (a pre-forking server's ``--preload``) starts a new subscriber in the child.

Example:
    >>> from utils.cache import MemoryCache, RedisCache
    >>> cache = TieredCache(MemoryCache(maxsize=10_000), RedisCache(url, namespace="shop"),
    ...                     l1_ttl=30)  # doctest: +SKIP
    >>> cache.set("user:1", {"name": "Ada"})  # doctest: +SKIP
    >>> cache.get("user:1")  # doctest: +SKIP
    {'name': 'Ada'}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis.exceptions

from utils.cache._compute import AsyncGetOrSet, GetOrSet
from utils.cache._ttl import DO_NOT_STORE, resolve_ttl
from utils.cache.memory import GIL_ENABLED, HITS, AsyncMemoryCache, MemoryCache
from utils.cache.protocol import MISSING, TTL, CacheStats
from utils.core import get_logger
from utils.core.metrics import get_metrics_sink

if TYPE_CHECKING:
    from typing_extensions import Self

    from utils.cache.protocol import Cache
    from utils.cache.redis_cache import AsyncRedisCache, RedisCache

__all__ = ["AsyncTieredCache", "TieredCache", "invalidation_channel", "invalidation_message"]

_log = get_logger("utils.cache.tiered")


def _client_of(l2: Any) -> Any:
    # The redis-py client the L2 cache talks through: the subscriber must use the same
    # server and connection settings (TLS, credentials, timeouts).
    client = getattr(l2, "client", None)
    if client is None or not hasattr(client, "pubsub") or not hasattr(l2, "_get_with_ttl"):
        raise TypeError(
            f"TieredCache needs a RedisCache (AsyncRedisCache) as L2, got {type(l2).__name__}"
        )
    return client


def invalidation_message(origin: str, keys: list[str] | None) -> str:
    """The pub/sub message that drops ``keys`` (None: every key) from the L1 of listeners.

    ``origin`` identifies the sender; a cache ignores messages carrying its own origin.
    The ``utils cache delete`` / ``clear`` commands send these too.

    Example:
        >>> invalidation_message("cli", ["user:1"]), invalidation_message("cli", None)
        ('{"o":"cli","k":["user:1"]}', '{"o":"cli","all":true}')
    """
    body: dict[str, Any] = {"o": origin}
    if keys is None:
        body["all"] = True
    else:
        body["k"] = keys
    return json.dumps(body, separators=(",", ":"))


def invalidation_channel(namespace: str) -> str:
    """The default invalidation channel of a namespace.

    Example:
        >>> invalidation_channel("shop")
        'shop:invalidate'
    """
    return f"{namespace}:invalidate"


class _Coherence:
    """L1 plus the bookkeeping that keeps concurrent fills and invalidations consistent.

    A read that misses L1 notes the ``epoch``, reads L2, then asks :meth:`fill` to copy the
    value into L1. If the key was invalidated (or L1 flushed) while the read was in flight,
    the value read may be the very one just invalidated, so it is not copied. Each drop
    records the epoch at which it happened, per key; the record is bounded (past
    ``_MAX_DROPPED`` keys it is replaced by a floor that rejects every fill in flight).

    Shared by the cache object and its subscriber. The subscriber holds no reference to the
    cache object, so a forgotten cache can be garbage-collected (which stops its subscriber).
    """

    __slots__ = ("dropped", "epoch", "floor", "l1", "lock", "namespace", "origin")

    _MAX_DROPPED = 4096

    def __init__(self, l1: Any, namespace: str) -> None:
        self.l1 = l1
        self.namespace = namespace
        self.origin = uuid.uuid4().hex
        self.lock = threading.Lock()
        #: Counts invalidations and local writes.
        self.epoch = 0
        #: Fills that started before this epoch are refused (set by a flush).
        self.floor = 0
        #: Key -> epoch of its last invalidation or local write.
        self.dropped: dict[str, int] = {}

    def _stale(self, key: str, epoch: int) -> bool:
        return epoch < self.floor or self.dropped.get(key, 0) > epoch

    def fill(self, key: str, value: Any, ttl: float | None, epoch: int) -> None:
        with self.lock:
            if not self._stale(key, epoch):
                self.l1.set(key, value, ttl)

    def fill_many(self, items: Mapping[str, tuple[Any, float | None]], epoch: int) -> None:
        with self.lock:
            for key, (value, ttl) in items.items():
                if not self._stale(key, epoch):
                    self.l1.set(key, value, ttl)

    def _touch(self, keys: Iterable[str]) -> None:
        """Record that ``keys`` changed now (lock held)."""
        self.epoch += 1
        dropped = self.dropped
        if len(dropped) > self._MAX_DROPPED:
            dropped.clear()
            self.floor = self.epoch
        epoch = self.epoch
        for key in keys:
            dropped[key] = epoch

    def store(self, key: str, value: Any, ttl: float | None) -> None:
        with self.lock:
            self._touch((key,))
            self.l1.set(key, value, ttl)

    def store_many(self, mapping: Mapping[str, Any], ttl: float | None) -> None:
        with self.lock:
            self._touch(mapping)
            self.l1.set_many(mapping, ttl)

    def drop(self, keys: list[str]) -> int:
        with self.lock:
            self._touch(keys)
            return int(self.l1.delete_many(keys))

    def flush(self) -> None:
        with self.lock:
            self.epoch += 1
            self.floor = self.epoch
            self.dropped.clear()
            self.l1.clear()

    def message(self, keys: list[str] | None) -> str:
        """The invalidation message for ``keys`` (None: everything)."""
        return invalidation_message(self.origin, keys)

    def apply(self, data: Any) -> None:
        """Apply an invalidation message received from the channel."""
        try:
            body = json.loads(data)
            if body.get("o") == self.origin:
                return  # our own write: L1 already holds the new value
            if body.get("all"):
                self.flush()
                return
            keys = body.get("k")
            if isinstance(keys, list) and keys:
                self.drop([key for key in keys if isinstance(key, str)])
        except (ValueError, TypeError, AttributeError):
            # Not one of ours (someone else publishing on the channel): flushing is the
            # safe reading of a message we cannot understand.
            _log.warning("cache.invalidation_unreadable", cache=self.namespace)
            self.flush()


class _Subscriber:
    """Connection bookkeeping shared by the thread and the task subscribers."""

    #: First and largest pause between reconnection attempts (seconds).
    backoff_min = 0.05
    backoff_max = 1.0
    #: Idle seconds after which the subscriber PINGs; no reply within as long again
    #: counts as a lost connection (a half-open TCP connection delivers nothing).
    ping_interval = 10.0
    #: Seconds one poll of the connection blocks (bounds how long ``close`` waits).
    poll = 1.0

    def __init__(self, coherence: _Coherence, channel: str) -> None:
        self.coherence = coherence
        self.channel = channel
        self.backoff = self.backoff_min
        self.in_outage = False
        self.subscriptions = 0

    def on_subscribed(self) -> None:
        # Invalidations sent while we were not subscribed are lost: drop everything.
        self.coherence.flush()
        self.subscriptions += 1
        self.backoff = self.backoff_min
        if self.in_outage:
            self.in_outage = False
            _log.info(
                "cache.invalidation_resumed", cache=self.coherence.namespace, l1_flushed=True
            )

    def on_lost(self, exc: BaseException) -> float:
        """Record a lost connection; return the pause before the next attempt."""
        get_metrics_sink().increment(
            "cache.error", tags={"cache": self.coherence.namespace, "op": "subscribe"}
        )
        if not self.in_outage:
            self.in_outage = True
            _log.warning(
                "cache.invalidation_lost",
                cache=self.coherence.namespace,
                channel=self.channel,
                error=f"{type(exc).__name__}: {exc}",
            )
        pause = self.backoff
        self.backoff = min(self.backoff * 2, self.backoff_max)
        return pause

    @staticmethod
    def check_silence(pinged: bool) -> None:
        """Raise when an idle connection did not even answer our PING: it is dead."""
        if pinged:
            raise redis.exceptions.ConnectionError("no reply to PING")

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self.on_subscribed()
        elif kind == "message":
            self.coherence.apply(message.get("data"))


#: Live thread subscribers, restarted in a forked child (see _restart_after_fork).
_THREAD_SUBSCRIBERS: weakref.WeakSet[_ThreadSubscriber] = weakref.WeakSet()


class _ThreadSubscriber(_Subscriber):
    def __init__(self, coherence: _Coherence, channel: str, client: Any) -> None:
        super().__init__(coherence, channel)
        self.client = client
        self.stopping = threading.Event()
        self.subscribed = threading.Event()
        self.thread = self._new_thread()
        _THREAD_SUBSCRIBERS.add(self)

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(
            target=self.run, name=f"utils-cache-invalidation[{self.channel}]", daemon=True
        )

    def restart_in_child(self) -> None:
        """After ``fork()``: the child has no subscriber thread; give it one.

        A cache made before a pre-forking server (gunicorn ``--preload``) forks its workers
        would otherwise never hear an invalidation in them. Locks and events are made anew
        (a thread that no longer exists may have held them at the fork), and so is the
        origin id (the parent's messages are not the child's own); redis-py gives the child
        fresh connections; the new subscription flushes the L1 inherited from the parent.
        """
        if self.stopping.is_set():
            return
        self.stopping = threading.Event()
        self.subscribed = threading.Event()
        self.coherence.lock = threading.Lock()
        self.coherence.origin = uuid.uuid4().hex
        self.in_outage = False
        self.thread = self._new_thread()
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                self.listen(pubsub)
            except Exception as exc:  # the subscriber must outlive any Redis failure
                self.subscribed.clear()
                self.stopping.wait(self.on_lost(exc))
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def listen(self, pubsub: Any) -> None:
        last_seen = time.monotonic()
        pinged = False
        while not self.stopping.is_set():
            message = pubsub.get_message(timeout=self.poll)
            now = time.monotonic()
            if message is None:
                if now - last_seen >= self.ping_interval:
                    self.check_silence(pinged)
                    pubsub.ping()
                    pinged, last_seen = True, now
                continue
            pinged, last_seen = False, now
            self.handle(message)
            if message.get("type") == "subscribe":
                self.subscribed.set()

    def stop(self) -> None:
        self.stopping.set()


def _restart_after_fork() -> None:
    for subscriber in list(_THREAD_SUBSCRIBERS):
        subscriber.restart_in_child()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_restart_after_fork)


class _TaskSubscriber(_Subscriber):
    def __init__(self, coherence: _Coherence, channel: str, client: Any) -> None:
        super().__init__(coherence, channel)
        self.client = client
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        if self.task is None and not self.closed:
            self.task = asyncio.get_running_loop().create_task(
                self.run(), name=f"utils-cache-invalidation[{self.channel}]"
            )

    def cancel_soon(self) -> None:
        """Cancel the task from any thread (the cache was garbage-collected)."""
        self.closed = True
        task = self.task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)

    async def run(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self.listen(pubsub)
            except Exception as exc:  # the subscriber must outlive any Redis failure
                self.subscribed.clear()
                await asyncio.sleep(self.on_lost(exc))
            finally:
                with contextlib.suppress(Exception):
                    closing = getattr(pubsub, "aclose", None) or pubsub.close
                    await closing()

    async def listen(self, pubsub: Any) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval)
            if message is not None:
                pinged = False
                self.handle(message)
                if message.get("type") == "subscribe":
                    self.subscribed.set()
                continue
            self.check_silence(pinged)
            await pubsub.ping()
            pinged = True

    async def stop(self) -> None:
        self.closed = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _TieredBase:
    """Configuration and bookkeeping shared by the sync and async tiered caches."""

    def __init__(self, l1: Cache, l2: Any, *, l1_ttl: TTL, channel: str | None) -> None:
        self.l1 = l1
        self.l2 = l2
        #: The L1 bound: no value stays in L1 longer (None: L1 entries do not expire).
        self.l1_ttl = resolve_ttl(l1_ttl, getattr(l1, "default_ttl", None))
        self.namespace = str(getattr(l2, "namespace", "cache"))
        self.channel = channel or invalidation_channel(self.namespace)
        self.default_ttl: float | None = getattr(l2, "default_ttl", None)
        self._coherence = _Coherence(l1, self.namespace)
        self._client = _client_of(l2)
        # The hot path: one bound-method call, no attribute chain.
        self._l1_get: Callable[[str, Any], Any] = l1.get

    def _can_inline(self) -> bool:
        """Prepare the inlined L1 hit path; True when L1 is a MemoryCache that allows it.

        The hit path of MemoryCache.get, inlined into ``get``: one Python frame per hit
        instead of two, which keeps a tiered hit as cheap as a MemoryCache one. (MemoryCache
        exposes these attributes for the same inlining by @cached; on a free-threaded build
        its reads take a lock, so there is nothing to inline.)
        """
        l1 = self.l1
        if not (isinstance(l1, MemoryCache) and GIL_ENABLED):
            return False
        self._entry = l1._get_entry
        self._move = l1._move
        self._clock = l1._clock
        self._counts = l1._counts
        return True

    def _l1_ttl_for(self, l2_ttl: float | None) -> float | None:
        """The L1 TTL for a value that lives ``l2_ttl`` more seconds in L2 (None: forever)."""
        bound = self.l1_ttl
        if l2_ttl is None:
            return bound
        return l2_ttl if bound is None or l2_ttl < bound else bound

    def stats(self) -> CacheStats:
        """Counters of both tiers combined: an L1 hit and an L2 hit are both hits.

        ``misses``, ``sets`` and ``deletes`` are L2's (every miss, write and delete reaches
        it), ``evictions`` and ``size`` are L1's, ``errors`` adds both tiers' (a failed
        invalidation message counts in L2's).

        Example:
            >>> cache.stats().hits  # doctest: +SKIP
            12
        """
        one, two = self.l1.stats(), self.l2.stats()
        return CacheStats(
            hits=one.hits + two.hits,
            misses=two.misses,
            sets=two.sets,
            deletes=two.deletes,
            evictions=one.evictions,
            errors=one.errors + two.errors,
            size=one.size,
        )

    def _fill_items(
        self, found: Mapping[str, tuple[Any, float | None]]
    ) -> dict[str, tuple[Any, float | None]]:
        items: dict[str, tuple[Any, float | None]] = {}
        for key, (value, remaining) in found.items():
            ttl = self._l1_ttl_for(remaining)
            if ttl != DO_NOT_STORE:
                items[key] = (value, ttl)
        return items


class TieredCache(GetOrSet, _TieredBase):
    """A memory L1 in front of a :class:`~utils.cache.RedisCache` L2, coherent across processes.

    ``l1_ttl`` bounds how long a value stays in L1 (default: the L1 cache's own TTL) and so
    how long a process may serve a value deleted elsewhere while invalidation messages
    cannot reach it; ``channel`` defaults to ``"{namespace}:invalidate"``. The subscriber is
    a daemon thread with its own Redis connection; stop it with :meth:`close` (or use the
    cache as a context manager). The L1 and L2 caches are not closed: they are the caller's.

    Example:
        >>> from utils.cache import MemoryCache, RedisCache
        >>> with TieredCache(MemoryCache(maxsize=1000), RedisCache(url, namespace="shop"),
        ...                  l1_ttl=30) as cache:  # doctest: +SKIP
        ...     cache.set("k", 1)
        ...     cache.get("k")
        1
    """

    def __init__(
        self,
        l1: Cache,
        l2: RedisCache,
        *,
        l1_ttl: TTL = None,
        channel: str | None = None,
    ) -> None:
        super().__init__(l1, l2, l1_ttl=l1_ttl, channel=channel)
        self.l2: RedisCache = l2
        if self._can_inline():
            self.get = self._get_inlined  # type: ignore[method-assign]
        self._subscriber = _ThreadSubscriber(self._coherence, self.channel, self._client)
        self._subscriber.thread.start()
        # A forgotten cache stops its thread when it is garbage-collected.
        self._finalizer = weakref.finalize(self, self._subscriber.stop)

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` from L1, else from L2 (copied into L1), else ``default``.

        Example:
            >>> cache.get("missing", default=0)  # doctest: +SKIP
            0
        """
        value = self._l1_get(key, MISSING)
        if value is not MISSING:
            return value
        return self._get_from_l2(key, default)

    def _get_inlined(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` from L1, else from L2 (copied into L1), else ``default``."""
        entry = self._entry(key)
        if entry is not None:
            expires = entry[1]
            if expires is None or self._clock() < expires:
                try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
                    self._move(key)
                except KeyError:  # pragma: no cover - deleted by another thread meanwhile
                    pass
                self._counts[HITS] += 1
                return entry[0]
        # Expired or missing: MemoryCache.get drops it and counts the miss.
        value = self._l1_get(key, MISSING)
        if value is not MISSING:  # pragma: no cover - stored by another thread meanwhile
            return value
        return self._get_from_l2(key, default)

    def _get_from_l2(self, key: str, default: Any) -> Any:
        epoch = self._coherence.epoch
        value, remaining = self.l2._get_with_ttl(key, MISSING)
        if value is MISSING:
            return default
        ttl = self._l1_ttl_for(remaining)  # 0.0 when it expires now, or with l1_ttl=0
        if ttl != DO_NOT_STORE:
            self._coherence.fill(key, value, ttl, epoch)
        return value

    def exists(self, key: str) -> bool:
        """True when ``key`` holds a value in L1 or L2."""
        return self.l1.exists(key) or self.l2.exists(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hold one: L1 first, the rest from L2 in one round trip.

        Values found in L2 are copied into L1 when L2 can tell their remaining TTLs in the
        same round trip (``_get_many_with_ttl``); otherwise they are only returned.
        """
        wanted = list(keys)
        found = self.l1.get_many(wanted)
        missing = [key for key in wanted if key not in found]
        if not missing:
            return found
        epoch = self._coherence.epoch
        many_with_ttl = getattr(self.l2, "_get_many_with_ttl", None)
        if many_with_ttl is None:
            found.update(self.l2.get_many(missing))
            return found
        from_l2: dict[str, tuple[Any, float | None]] = many_with_ttl(missing)
        self._coherence.fill_many(self._fill_items(from_l2), epoch)
        found.update((key, value) for key, (value, _) in from_l2.items())
        return found

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires in L2 (the source of truth)."""
        return self.l2.ttl(key)

    # -- writes --------------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` in L2 and L1, and tell the other processes to drop ``key``.

        ``ttl=None`` is L2's default TTL; L1 keeps the value at most ``l1_ttl``. ``ttl=0``
        stores nothing and changes nothing, like :meth:`RedisCache.set` (the value L2 holds
        stays, so L1 keeps it too).

        Example:
            >>> cache.set("k", {"a": 1}, ttl=60)  # doctest: +SKIP
        """
        seconds = resolve_ttl(ttl, self.default_ttl)
        if seconds == DO_NOT_STORE:
            return
        try:
            self.l2.set(key, value, seconds)
        except BaseException:
            self._coherence.drop([key])  # L2 state unknown: L1 must not keep the old value
            raise
        self._coherence.store(key, value, self._l1_ttl_for(seconds))
        self._publish([key])

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in L2 and L1; one invalidation message for all the keys."""
        items = dict(mapping)
        seconds = resolve_ttl(ttl, self.default_ttl)
        if not items or seconds == DO_NOT_STORE:
            return
        try:
            self.l2.set_many(items, seconds)
        except BaseException:
            self._coherence.drop(list(items))
            raise
        self._coherence.store_many(items, self._l1_ttl_for(seconds))
        self._publish(list(items))

    def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers and from every other process's L1."""
        try:
            existed = self.l2.delete(key)
        finally:
            in_l1 = self._coherence.drop([key])
        self._publish([key])
        return bool(existed) or in_l1 > 0

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys from both tiers and every L1; return how many existed in L2."""
        wanted = list(keys)
        if not wanted:
            return 0
        try:
            removed = self.l2.delete_many(wanted)
        finally:
            self._coherence.drop(wanted)
        self._publish(wanted)
        return removed

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` in L2 (atomic across processes); L1 copies are dropped."""
        try:
            return self.l2.incr(key, delta)
        finally:
            self._coherence.drop([key])
            self._publish([key])

    def clear(self) -> None:
        """Remove this namespace from L2, this L1 and every other process's L1."""
        try:
            self.l2.clear()
        finally:
            self._coherence.flush()
        self._publish(None)

    def _publish(self, keys: list[str] | None) -> None:
        # Through L2's command runner: the deadline, fail-open policy, outage log and error
        # counters of the L2 apply to the invalidation message as to any other command.
        # write=False: a replica that refuses writes still delivers messages.
        message = self._coherence.message(keys)
        self.l2._run("publish", [("PUBLISH", self.channel, message)], write=False)

    # -- compute helpers -----------------------------------------------------------------

    def _lock(self, key: str, ttl: float) -> Any:
        return self.l2._lock(key, ttl)

    # -- lifecycle -----------------------------------------------------------------------

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the invalidation subscriber listens; False if ``timeout`` passed first.

        Writes made elsewhere before this returns True may not reach this L1 (that is why
        the first subscription flushes it).
        """
        return self._subscriber.subscribed.wait(timeout)

    def close(self) -> None:
        """Stop the invalidation subscriber; idempotent.

        L1 and L2 are not closed (they are the caller's). Do not use the tiered cache
        afterwards: its L1 would no longer hear invalidations.
        """
        if not self._finalizer.alive:
            return
        self._finalizer()
        # Wake the subscriber from its poll at once: a message of our own, which it skips.
        with contextlib.suppress(Exception):
            self._client.publish(self.channel, self._coherence.message([]))
        self._subscriber.thread.join(timeout=self._subscriber.poll + 1.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTieredCache(AsyncGetOrSet, _TieredBase):
    """The async twin of :class:`TieredCache`: a memory L1 before an :class:`AsyncRedisCache`.

    L1 is used through its (non-blocking, thread-safe) sync methods, so an L1 hit costs no
    extra await. The subscriber is a task started by the first operation that reaches L2
    (or by ``async with`` / :meth:`start`); stop it with :meth:`aclose`.

    Example:
        >>> from utils.cache import AsyncRedisCache, MemoryCache
        >>> async with AsyncTieredCache(MemoryCache(maxsize=1000),
        ...                             AsyncRedisCache(url, namespace="shop")) as cache:  # doctest: +SKIP
        ...     await cache.set("k", 1)
        ...     await cache.get("k")
        1
    """

    def __init__(
        self,
        l1: Cache | AsyncMemoryCache,
        l2: AsyncRedisCache,
        *,
        l1_ttl: TTL = None,
        channel: str | None = None,
    ) -> None:
        # The async view's methods only wrap the sync ones: call those, without an await.
        sync_l1: Cache = l1.sync if isinstance(l1, AsyncMemoryCache) else l1
        super().__init__(sync_l1, l2, l1_ttl=l1_ttl, channel=channel)
        self.l2: AsyncRedisCache = l2
        if self._can_inline():
            self.get = self._get_inlined  # type: ignore[method-assign]
        self._subscriber = _TaskSubscriber(self._coherence, self.channel, self._client)
        # A forgotten cache cancels its task when it is garbage-collected.
        weakref.finalize(self, self._subscriber.cancel_soon)

    def start(self) -> None:
        """Start the invalidation subscriber now (otherwise the first L2 access does)."""
        self._subscriber.start()

    # -- reads ---------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` from L1, else from L2 (copied into L1), else ``default``."""
        value = self._l1_get(key, MISSING)
        if value is not MISSING:
            return value
        return await self._get_from_l2(key, default)

    async def _get_inlined(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` from L1, else from L2 (copied into L1), else ``default``."""
        entry = self._entry(key)
        if entry is not None:
            expires = entry[1]
            if expires is None or self._clock() < expires:
                try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
                    self._move(key)
                except KeyError:  # pragma: no cover - deleted by another thread meanwhile
                    pass
                self._counts[HITS] += 1
                return entry[0]
        value = self._l1_get(key, MISSING)  # expired or missing: drops it, counts the miss
        if value is not MISSING:  # pragma: no cover - stored by another thread meanwhile
            return value
        return await self._get_from_l2(key, default)

    async def _get_from_l2(self, key: str, default: Any) -> Any:
        self._subscriber.start()
        epoch = self._coherence.epoch
        value, remaining = await self.l2._get_with_ttl(key, MISSING)
        if value is MISSING:
            return default
        ttl = self._l1_ttl_for(remaining)  # 0.0 when it expires now, or with l1_ttl=0
        if ttl != DO_NOT_STORE:
            self._coherence.fill(key, value, ttl, epoch)
        return value

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds a value in L1 or L2."""
        return self.l1.exists(key) or bool(await self.l2.exists(key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hold one: L1 first, the rest from L2 in one round trip."""
        wanted = list(keys)
        found = self.l1.get_many(wanted)
        missing = [key for key in wanted if key not in found]
        if not missing:
            return found
        self._subscriber.start()
        epoch = self._coherence.epoch
        many_with_ttl = getattr(self.l2, "_get_many_with_ttl", None)
        if many_with_ttl is None:
            found.update(await self.l2.get_many(missing))
            return found
        from_l2: dict[str, tuple[Any, float | None]] = await many_with_ttl(missing)
        self._coherence.fill_many(self._fill_items(from_l2), epoch)
        found.update((key, value) for key, (value, _) in from_l2.items())
        return found

    async def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires in L2 (the source of truth)."""
        return await self.l2.ttl(key)

    # -- writes --------------------------------------------------------------------------

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` in L2 and L1, and tell the other processes to drop ``key``."""
        seconds = resolve_ttl(ttl, self.default_ttl)
        if seconds == DO_NOT_STORE:
            return
        self._subscriber.start()
        try:
            await self.l2.set(key, value, seconds)
        except BaseException:
            self._coherence.drop([key])
            raise
        self._coherence.store(key, value, self._l1_ttl_for(seconds))
        await self._publish([key])

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in L2 and L1; one invalidation message for all the keys."""
        items = dict(mapping)
        seconds = resolve_ttl(ttl, self.default_ttl)
        if not items or seconds == DO_NOT_STORE:
            return
        self._subscriber.start()
        try:
            await self.l2.set_many(items, seconds)
        except BaseException:
            self._coherence.drop(list(items))
            raise
        self._coherence.store_many(items, self._l1_ttl_for(seconds))
        await self._publish(list(items))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers and from every other process's L1."""
        try:
            existed = await self.l2.delete(key)
        finally:
            in_l1 = self._coherence.drop([key])
        await self._publish([key])
        return bool(existed) or in_l1 > 0

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys from both tiers and every L1; return how many existed in L2."""
        wanted = list(keys)
        if not wanted:
            return 0
        try:
            removed = await self.l2.delete_many(wanted)
        finally:
            self._coherence.drop(wanted)
        await self._publish(wanted)
        return removed

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` in L2 (atomic across processes); L1 copies are dropped."""
        try:
            return await self.l2.incr(key, delta)
        finally:
            self._coherence.drop([key])
            await self._publish([key])

    async def clear(self) -> None:
        """Remove this namespace from L2, this L1 and every other process's L1."""
        try:
            await self.l2.clear()
        finally:
            self._coherence.flush()
        await self._publish(None)

    async def _publish(self, keys: list[str] | None) -> None:
        # See TieredCache._publish: L2's policies apply to the invalidation message.
        message = self._coherence.message(keys)
        await self.l2._arun("publish", [("PUBLISH", self.channel, message)], write=False)

    # -- compute helpers -----------------------------------------------------------------

    def _alock(self, key: str, ttl: float) -> Any:
        return self.l2._alock(key, ttl)

    # -- lifecycle -----------------------------------------------------------------------

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Start the subscriber if needed and wait until it listens; False on timeout."""
        self._subscriber.start()
        try:
            await asyncio.wait_for(self._subscriber.subscribed.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the invalidation subscriber for good; idempotent.

        L1 and L2 are not closed (they are the caller's). Do not use the tiered cache
        afterwards: its L1 would no longer hear invalidations.
        """
        await self._subscriber.stop()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
