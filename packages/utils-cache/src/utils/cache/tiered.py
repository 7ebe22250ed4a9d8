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

A write that did not reach L2 — refused (``OOM``, ``READONLY``) or dropped during an outage
while the L2 fails open — does not stay in L1 either: the key is dropped from L1, so this
process serves what Redis (and so every other process) holds. Keys are ``str``; any other
key is a :class:`~utils.core.ValidationError` (a message could not name it).

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
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from utils.cache._compute import AsyncGetOrSet, GetOrSet
from utils.cache._invalidation import Coherence, check_key, check_keys, encode
from utils.cache._plan import Plan
from utils.cache._subscriber import TaskSubscriber, ThreadSubscriber
from utils.cache._ttl import DO_NOT_STORE, resolve_ttl
from utils.cache.memory import GIL_ENABLED, AsyncMemoryCache, MemoryCache
from utils.cache.protocol import MISSING, TTL, CacheStats

if TYPE_CHECKING:
    from typing_extensions import Self

    from utils.cache.protocol import Cache
    from utils.cache.redis_cache import AsyncRedisCache, RedisCache

__all__ = ["AsyncTieredCache", "TieredCache", "invalidation_channel", "invalidation_message"]

#: A planned tiered method: yields ``(l2 method name, args)``, receives the outcome.
TieredSteps = Generator[tuple[str, tuple[Any, ...]], Any, Any]

_Coherence = Coherence  # the former private name


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
    return encode(origin, keys)


def invalidation_channel(namespace: str) -> str:
    """The default invalidation channel of a namespace.

    Example:
        >>> invalidation_channel("shop")
        'shop:invalidate'
    """
    return f"{namespace}:invalidate"


class _TieredBase:
    """Configuration and bookkeeping shared by the sync and async tiered caches."""

    def __init__(self, l1: Cache, l2: Any, *, l1_ttl: TTL, channel: str | None) -> None:
        self.l1 = l1
        self.l2 = l2
        #: The L1 bound: no value stays in L1 longer (None: L1 entries do not expire).
        self.l1_ttl: float | None = resolve_ttl(l1_ttl, getattr(l1, "default_ttl", None))
        self.namespace: str = str(getattr(l2, "namespace", "cache"))
        self.channel: str = channel or invalidation_channel(self.namespace)
        self.default_ttl: float | None = getattr(l2, "default_ttl", None)
        self._coherence = Coherence(l1, self.namespace)
        self._client = _client_of(l2)
        # The hot path: one bound-method call, no attribute chain.
        self._l1_get: Callable[[str, Any], Any] = l1.get

    def _inline_get(self, miss: Callable[[str, Any], Any], *, is_async: bool) -> None:
        """Serve ``get`` through L1's own inlined hit path when L1 is a MemoryCache.

        One Python frame per L1 hit instead of two keeps a tiered hit as cheap as a
        MemoryCache one. MemoryCache compiles the path itself (the code reading its entries
        stays in the class that owns them); on a free-threaded build its reads take a lock,
        so there is nothing to inline.
        """
        l1 = self.l1
        if isinstance(l1, MemoryCache) and GIL_ENABLED:
            self.get: Callable[..., Any] = l1._fast_get(miss, is_async=is_async)

    # -- the methods, planned once for both twins ------------------------------------------
    #
    # A step is ``(name, args)``: call ``l2.<name>(*args)`` — or, for ``"publish"``, send
    # the invalidation message of ``args[0]`` through L2's command runner. The sync cache
    # performs each step, the async cache awaits it; the outcome (or the exception) goes
    # back to the plan, which keeps L1 consistent with what L2 did.

    def _get_steps(self, key: str, default: Any) -> TieredSteps:
        check_key(key)
        epoch = self._coherence.epoch
        value, left = yield ("_get_with_ttl", (key, MISSING))
        return self._filled(key, value, left, epoch, default)

    def _exists_steps(self, key: str) -> TieredSteps:
        check_key(key)
        return self.l1.exists(key) or bool((yield ("exists", (key,))))

    def _get_many_steps(self, keys: Iterable[str]) -> TieredSteps:
        wanted = check_keys(keys)
        found = self.l1.get_many(wanted)
        missing = [key for key in wanted if key not in found]
        if not missing:
            return found
        epoch = self._coherence.epoch
        from_l2 = yield ("_get_many_with_ttl", (missing,))
        self._coherence.fill_many(self._fill_items(from_l2), epoch)
        found.update((key, value) for key, (value, _) in from_l2.items())
        return found

    def _ttl_steps(self, key: str) -> TieredSteps:
        check_key(key)
        return (yield ("ttl", (key,)))

    def _set_steps(self, items: dict[str, Any], ttl: TTL, one: bool) -> TieredSteps:
        check_keys(items)
        seconds = resolve_ttl(ttl, self.default_ttl)
        if not items or seconds == DO_NOT_STORE:
            return None
        keys = list(items)
        try:
            if one:
                stored = yield ("_store", (keys[0], items[keys[0]], seconds))
            else:
                stored = yield ("_store_many", (items, seconds))
        except BaseException:
            self._coherence.drop(keys)  # L2 state unknown: L1 must not keep the old value
            raise
        if not stored:
            # Refused (OOM, READONLY) or dropped (Redis down) and failing open: L1 must not
            # serve a value that Redis, and so every other process, does not hold.
            self._coherence.drop(keys)
            return None
        self._coherence.store_many(items, self._l1_ttl_for(seconds))
        yield ("publish", (keys,))
        return None

    def _delete_steps(self, keys: Iterable[str], one: bool) -> TieredSteps:
        wanted = check_keys(keys)
        if not wanted:
            return 0
        try:
            existed = yield ("delete", (wanted[0],)) if one else ("delete_many", (wanted,))
        finally:
            in_l1 = self._coherence.drop(wanted)
        yield ("publish", (wanted,))
        return (bool(existed) or in_l1 > 0) if one else existed

    def _incr_steps(self, key: str, delta: int) -> TieredSteps:
        check_key(key)
        try:
            return (yield ("incr", (key, delta)))
        finally:
            self._coherence.drop([key])
            yield ("publish", ([key],))

    def _clear_steps(self) -> TieredSteps:
        try:
            yield ("clear", ())
        finally:
            self._coherence.flush()
        yield ("publish", (None,))

    def _publish_command(self, keys: list[str] | None) -> list[tuple[Any, ...]]:
        # Sent through L2's command runner: the deadline, fail-open policy, outage log and
        # error counters of the L2 apply to the invalidation message as to any other
        # command. (write=False: a replica that refuses writes still delivers messages.)
        return [("PUBLISH", self.channel, self._coherence.message(keys))]

    def _filled(self, key: str, value: Any, left: float | None, epoch: int, default: Any) -> Any:
        """Copy a value read from L2 (``left`` seconds to live there) into L1; return it."""
        if value is MISSING:
            return default
        ttl = self._l1_ttl_for(left)  # 0.0 when it expires now, or with l1_ttl=0
        if ttl != DO_NOT_STORE:
            self._coherence.fill(key, value, ttl, epoch)
        return value

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
        self._inline_get(self._get_from_l2, is_async=False)
        self._subscriber = ThreadSubscriber(self._coherence, self.channel, self._client)
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

    def _get_from_l2(self, key: str, default: Any) -> Any:
        return self._drive(self._get_steps(key, default))

    def exists(self, key: str) -> bool:
        """True when ``key`` holds a value in L1 or L2."""
        return bool(self._drive(self._exists_steps(key)))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hold one: L1 first, the rest from L2 in one round trip.

        Values found in L2 are copied into L1, for at most their remaining TTL in Redis
        (``MGET`` and ``PTTL`` in the same round trip).
        """
        return self._drive(self._get_many_steps(keys))  # type: ignore[no-any-return]

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires in L2 (the source of truth)."""
        return self._drive(self._ttl_steps(key))  # type: ignore[no-any-return]

    # -- writes --------------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` in L2 and L1, and tell the other processes to drop ``key``.

        ``ttl=None`` is L2's default TTL; L1 keeps the value at most ``l1_ttl``. ``ttl=0``
        stores nothing and changes nothing, like :meth:`RedisCache.set` (the value L2 holds
        stays, so L1 keeps it too). A write Redis refused or dropped (failing open) leaves
        L1 without the key.

        Example:
            >>> cache.set("k", {"a": 1}, ttl=60)  # doctest: +SKIP
        """
        check_key(key)
        self._drive(self._set_steps({key: value}, ttl, one=True))

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in L2 and L1; one invalidation message for all the keys."""
        self._drive(self._set_steps(dict(mapping), ttl, one=False))

    def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers and from every other process's L1."""
        check_key(key)
        return bool(self._drive(self._delete_steps([key], one=True)))

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys from both tiers and every L1; return how many existed in L2."""
        return int(self._drive(self._delete_steps(keys, one=False)))

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` in L2 (atomic across processes); L1 copies are dropped."""
        return int(self._drive(self._incr_steps(key, delta)))

    def clear(self) -> None:
        """Remove this namespace from L2, this L1 and every other process's L1."""
        self._drive(self._clear_steps())

    def _drive(self, steps: TieredSteps) -> Any:
        plan = Plan(steps)
        while not plan.done:
            self._perform(plan)
        return plan.result

    def _perform(self, plan: Plan) -> None:
        name, args = plan.step
        try:
            if name == "publish":
                outcome = self.l2._run("publish", self._publish_command(*args), write=False)
            else:
                outcome = getattr(self.l2, name)(*args)
        except BaseException as exc:  # the plan decides (L1 first), then it raises
            plan.advance(None, exc)
            return
        plan.advance(outcome)

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


class _Started:
    """What :meth:`AsyncTieredCache.start` returns: awaiting it does nothing more."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


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
        self._inline_get(self._get_from_l2, is_async=True)
        self._subscriber = TaskSubscriber(self._coherence, self.channel, self._client)
        # A forgotten cache cancels its task when it is garbage-collected.
        weakref.finalize(self, self._subscriber.cancel_soon)

    def start(self) -> _Started:
        """Start the invalidation subscriber on the running loop (else the first L2 access does).

        Await it (``await cache.start()``), like the rest of the async API; calling it
        without ``await`` still works, as it did before it became awaitable.
        """
        self._subscriber.start()
        return _Started()

    # -- reads ---------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` from L1, else from L2 (copied into L1), else ``default``."""
        value = self._l1_get(key, MISSING)
        if value is not MISSING:
            return value
        return await self._get_from_l2(key, default)

    async def _get_from_l2(self, key: str, default: Any) -> Any:
        return await self._adrive(self._get_steps(key, default))

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds a value in L1 or L2."""
        return bool(await self._adrive(self._exists_steps(key)))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hold one: L1 first, the rest from L2 in one round trip."""
        return await self._adrive(self._get_many_steps(keys))  # type: ignore[no-any-return]

    async def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires in L2 (the source of truth)."""
        return await self._adrive(self._ttl_steps(key))  # type: ignore[no-any-return]

    # -- writes --------------------------------------------------------------------------

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` in L2 and L1, and tell the other processes to drop ``key``."""
        check_key(key)
        await self._adrive(self._set_steps({key: value}, ttl, one=True))

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item in L2 and L1; one invalidation message for all the keys."""
        await self._adrive(self._set_steps(dict(mapping), ttl, one=False))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers and from every other process's L1."""
        check_key(key)
        return bool(await self._adrive(self._delete_steps([key], one=True)))

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys from both tiers and every L1; return how many existed in L2."""
        return int(await self._adrive(self._delete_steps(keys, one=False)))

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` in L2 (atomic across processes); L1 copies are dropped."""
        return int(await self._adrive(self._incr_steps(key, delta)))

    async def clear(self) -> None:
        """Remove this namespace from L2, this L1 and every other process's L1."""
        await self._adrive(self._clear_steps())

    async def _adrive(self, steps: TieredSteps) -> Any:
        self._subscriber.start()  # on the loop that uses the cache (see TaskSubscriber)
        plan = Plan(steps)
        while not plan.done:
            await self._aperform(plan)
        return plan.result

    async def _aperform(self, plan: Plan) -> None:
        name, args = plan.step
        try:
            if name == "publish":
                outcome = await self.l2._arun("publish", self._publish_command(*args), write=False)
            else:
                outcome = await getattr(self.l2, name)(*args)
        except BaseException as exc:  # the plan decides (L1 first), then it raises
            plan.advance(None, exc)
            return
        plan.advance(outcome)

    # -- compute helpers -----------------------------------------------------------------

    def _alock(self, key: str, ttl: float) -> Any:
        return self.l2._alock(key, ttl)

    # -- lifecycle -----------------------------------------------------------------------

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Start the subscriber if needed and wait until it listens; False on timeout.

        The subscriber is a task of the loop that uses the cache: on another loop (a second
        ``asyncio.run()``) it starts again there, and this waits for *that* subscription.
        """
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
