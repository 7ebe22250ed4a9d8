"""An in-process LRU cache with per-key TTL, for threads and asyncio alike.

:class:`MemoryCache` holds at most ``maxsize`` entries in one ``OrderedDict`` (least recently
used first); each entry is a ``(value, expires_at)`` tuple on the cache's monotonic clock.
Expired entries are dropped when they are read and, in batches, when the cache is full, so
memory stays bounded without a timer thread.

**Threads.** Writers take a lock. A hit takes none: under the GIL, one ``dict.get`` and one
``OrderedDict.move_to_end`` are each atomic, so a lock-free hit is safe — if another thread
deletes the key in between, the hit simply returns the value it read (it was live when read).
On a free-threaded build (no GIL) reads take the lock too. Counters are plain integers bumped
without the lock: they may miss an increment under contention, which ``stats()`` tolerates.

**Asyncio.** Nothing here blocks or awaits, so async code may call the sync methods directly;
:meth:`MemoryCache.as_async` gives an :class:`AsyncMemoryCache` view (the same storage, the
:class:`~utils.cache.protocol.AsyncCache` methods) for code written against that protocol.

Values are stored as they are, not copied: mutating a value you got from the cache mutates
the cached value.

Example:
    >>> clock = iter([0.0, 0.0, 5.0, 11.0]).__next__
    >>> cache = MemoryCache(maxsize=2, ttl=10, clock=clock)
    >>> cache.set("a", 1)  # expires at 10.0
    >>> cache.get("a"), cache.get("a")  # read at 0.0 and at 5.0, then expired at 11.0
    (1, 1)
    >>> cache.get("a", "gone")
    'gone'
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from utils.cache._compute import AsyncGetOrSet, GetOrSet
from utils.cache._events import CACHE_EVICTION, CACHE_HIT, CACHE_MISS, CACHE_SET
from utils.cache._ttl import DO_NOT_STORE, resolve_ttl
from utils.cache.errors import CacheValueError
from utils.cache.protocol import MISSING, TTL, CacheStats
from utils.core import NullSink, ValidationError, get_metrics_sink
from utils.core.forksafe import reset_after_fork

__all__ = ["AsyncMemoryCache", "MemoryCache"]

#: Lock-free hits rely on the GIL making single dict operations atomic.
GIL_ENABLED: Final[bool] = bool(getattr(sys, "_is_gil_enabled", lambda: True)())

# Indexes into MemoryCache._counts (a list, so @cached's inlined hit path can bump it too).
HITS, MISSES, SETS, DELETES, EVICTIONS = range(5)

Entry = tuple[Any, "float | None"]


class MemoryCache(GetOrSet):
    """LRU + per-key TTL in process memory; thread-safe; usable from sync and async code.

    Args:
        maxsize: Most entries held; the least recently used is evicted beyond it.
        ttl: Default TTL in seconds or a ``timedelta`` (``None``: entries never expire;
            ``0``: :meth:`set` stores nothing unless given a TTL).
        name: Names the cache in stats, metrics and logs.
        clock: Monotonic clock in seconds (``time.monotonic``), injectable for tests.

    Example:
        >>> cache = MemoryCache(maxsize=2)
        >>> cache.set("a", 1); cache.set("b", 2)
        >>> cache.get("a")  # "a" becomes the most recently used
        1
        >>> cache.set("c", 3)  # evicts "b"
        >>> cache.get("b") is None, cache.stats().evictions
        (True, 1)
        >>> cache.set("none", None)
        >>> cache.get("none", MISSING)  # a cached None is a hit
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_counts",
        "_data",
        "_get_entry",
        "_metered",
        "_move",
        "_mutex",
        "_next_purge",
        "_reported",
        "_view",
        "default_ttl",
        "maxsize",
        "name",
    )

    def __init__(
        self,
        maxsize: int = 1024,
        ttl: TTL = None,
        *,
        name: str = "memory",
        clock: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValidationError(f"maxsize must be an int >= 1, got {maxsize!r}")
        self.maxsize: int = maxsize
        #: The TTL used when a call passes ``ttl=None`` (seconds; None = no expiry).
        self.default_ttl: float | None = resolve_ttl(ttl, None)
        self.name: str = name
        self._clock = clock or time.monotonic
        self._mutex = threading.Lock()
        # Never rebound (only mutated): @cached captures its bound methods once.
        self._data: OrderedDict[str, Entry] = OrderedDict()
        self._get_entry = self._data.get
        self._move = self._data.move_to_end
        self._counts = [0, 0, 0, 0, 0]
        # The metrics cache.hit / miss / set / eviction, tagged with the name; reported
        # as deltas of the counters (see _report), so a hit costs no reporting at all.
        self._metered = (
            (HITS, CACHE_HIT.bind(cache=name)),
            (MISSES, CACHE_MISS.bind(cache=name)),
            (SETS, CACHE_SET.bind(cache=name)),
            (EVICTIONS, CACHE_EVICTION.bind(cache=name)),
        )
        self._reported = [0, 0, 0, 0, 0]
        self._next_purge = maxsize
        self._view: AsyncMemoryCache | None = None
        # fork() copies the lock as it is: held by a writer thread of the parent, it would
        # never be released in the child, whose first write would hang forever.
        reset_after_fork(self, MemoryCache._new_lock)

    def _new_lock(self) -> None:
        """In a forked child: a fresh lock (the entries, counters and view are kept)."""
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MemoryCache(name={self.name!r}, maxsize={self.maxsize}, "
            f"ttl={self.default_ttl}, size={len(self._data)})"
        )

    def __len__(self) -> int:
        """Entries held, expired ones not yet dropped included."""
        return len(self._data)

    def __bool__(self) -> bool:
        # A cache is a service, not a container: `cache or default` must not swap an
        # empty cache for another one.
        return True

    def _report(self) -> None:
        """Report what the counters gained since the last report to the metrics sink.

        Hits are the hot path: counting one is a list increment, and the metrics follow in
        batches — at the next write, delete or :meth:`stats` — rather than with a call per
        hit. Nothing is reported while the sink is the default no-op one (the deltas are
        kept and go to a sink installed later).
        """
        if get_metrics_sink().__class__ is NullSink:
            return
        counts, reported = self._counts, self._reported
        for index, event in self._metered:
            delta = counts[index] - reported[index]
            if delta > 0:
                reported[index] += delta
                event(value=float(delta))

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` (pass ``MISSING`` to spot a cached None).

        Example:
            >>> cache = MemoryCache()
            >>> cache.get("nope", "fallback")
            'fallback'
        """
        entry = self._get_entry(key)
        if entry is not None:
            value, expires = entry
            if expires is None or self._clock() < expires:
                try:  # noqa: SIM105 - contextlib.suppress costs a call on the hot path
                    self._move(key)
                except KeyError:  # deleted by another thread since we read it
                    pass
                self._counts[HITS] += 1
                return value
            self._drop_expired(key, entry)
        self._counts[MISSES] += 1
        return default

    if not GIL_ENABLED:  # pragma: no cover - free-threaded builds: reads take the lock too
        _get_lock_free = get

        def get(self, key: str, default: Any = None) -> Any:  # type: ignore[no-redef,unused-ignore]
            """The value under ``key``, or ``default`` (pass ``MISSING`` to spot a cached None)."""
            with self._mutex:
                return self._get_lock_free(key, default)

    def _drop_expired(self, key: str, entry: Entry) -> None:
        with self._mutex:
            if self._data.get(key) is entry:  # not replaced meanwhile
                del self._data[key]

    def _live(self, key: str) -> Entry | None:
        entry = self._get_entry(key)
        if entry is not None and entry[1] is not None and self._clock() >= entry[1]:
            self._drop_expired(key, entry)
            return None
        return entry

    def _peek(self, key: str, default: Any = None) -> Any:
        """Like :meth:`get` without counting a hit or miss, nor refreshing the LRU order."""
        entry = self._live(key)
        return default if entry is None else entry[0]

    def exists(self, key: str) -> bool:
        """True when ``key`` holds a live value (does not count as a hit, nor refresh LRU).

        Example:
            >>> cache = MemoryCache()
            >>> cache.set("a", None)
            >>> cache.exists("a"), cache.exists("b")
            (True, False)
        """
        return self._live(key) is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the keys that hold one (misses are left out).

        Example:
            >>> cache = MemoryCache()
            >>> cache.set_many({"a": 1, "b": 2})
            >>> cache.get_many(["a", "b", "c"])
            {'a': 1, 'b': 2}
        """
        found: dict[str, Any] = {}
        lookup = self.get
        for key in keys:
            value = lookup(key, MISSING)
            if value is not MISSING:
                found[key] = value
        return found

    def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires; None when it has no expiry or does not exist.

        Example:
            >>> cache = MemoryCache(clock=lambda: 100.0)
            >>> cache.set("a", 1, ttl=30)
            >>> cache.ttl("a"), cache.ttl("missing")
            (30.0, None)
        """
        entry = self._live(key)
        if entry is None or entry[1] is None:
            return None
        return max(entry[1] - self._clock(), 0.0)

    # -- writes --------------------------------------------------------------------------

    def _expiry(self, ttl: TTL) -> float | None:
        seconds = resolve_ttl(ttl, self.default_ttl)
        if seconds is None:
            return None
        if seconds == DO_NOT_STORE:
            return DO_NOT_STORE
        return self._clock() + seconds

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (None: the default TTL; 0: do not store).

        Example:
            >>> cache = MemoryCache()
            >>> cache.set("a", 1, ttl=0)
            >>> cache.exists("a")
            False
        """
        expires = self._expiry(ttl)
        if expires == DO_NOT_STORE:
            return
        with self._mutex:
            self._data[key] = (value, expires)
            self._move(key)
            self._counts[SETS] += 1
            if len(self._data) > self.maxsize:
                self._shrink()
        self._report()

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """Store every item of ``mapping`` with one TTL.

        Example:
            >>> cache = MemoryCache()
            >>> cache.set_many({"a": 1, "b": 2}, ttl=60)
            >>> sorted(cache.get_many(["a", "b"]).items())
            [('a', 1), ('b', 2)]
        """
        expires = self._expiry(ttl)
        if expires == DO_NOT_STORE:
            return
        data = self._data
        with self._mutex:
            for key, value in mapping.items():
                data[key] = (value, expires)
                self._move(key)
            self._counts[SETS] += len(mapping)
            if len(data) > self.maxsize:
                self._shrink()
        self._report()

    def _shrink(self) -> None:
        """Bring the size back to ``maxsize`` (lock held): expired entries first, then LRU."""
        data = self._data
        counts = self._counts
        if counts[SETS] >= self._next_purge:
            # One O(n) sweep at most once per `maxsize` writes: amortised O(1) per write.
            self._next_purge = counts[SETS] + self.maxsize
            now = self._clock()
            # list() copies in one C call: lock-free hits may reorder `data` meanwhile.
            for key, entry in list(data.items()):
                if entry[1] is not None and entry[1] <= now:
                    del data[key]
        while len(data) > self.maxsize:
            data.popitem(last=False)
            counts[EVICTIONS] += 1

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it held a live value.

        Example:
            >>> cache = MemoryCache()
            >>> cache.set("a", 1)
            >>> cache.delete("a"), cache.delete("a")
            (True, False)
        """
        return self.delete_many((key,)) == 1

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys; return how many held a live value.

        Example:
            >>> cache = MemoryCache()
            >>> cache.set_many({"a": 1, "b": 2})
            >>> cache.delete_many(["a", "b", "c"])
            2
        """
        removed = 0
        with self._mutex:
            now: float | None = None
            for key in keys:
                entry = self._data.pop(key, None)
                if entry is None:
                    continue
                if entry[1] is not None:
                    if now is None:
                        now = self._clock()
                    if entry[1] <= now:
                        continue
                removed += 1
            self._counts[DELETES] += removed
        self._report()
        return removed

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` and return the result.

        A missing (or expired) key counts as 0 and is created with the default TTL; an
        existing counter keeps its expiry. Atomic across threads.

        Raises:
            CacheValueError: when ``key`` holds something other than an int.

        Example:
            >>> cache = MemoryCache()
            >>> cache.incr("hits"), cache.incr("hits", 5)
            (1, 6)
            >>> cache.set("name", "ada")
            >>> cache.incr("name")
            Traceback (most recent call last):
            ...
            utils.cache.errors.CacheValueError: cannot incr 'name': it holds a str, not an int
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValidationError(f"incr delta must be an int, got {delta!r}")
        with self._mutex:
            entry = self._get_entry(key)
            if entry is not None and entry[1] is not None and self._clock() >= entry[1]:
                entry = None  # expired: start again from 0
            if entry is None:
                expires = self._expiry(None)
                if expires == DO_NOT_STORE:  # the default TTL says "store nothing"
                    return delta
                current = 0
            else:
                current, expires = entry
                if isinstance(current, bool) or not isinstance(current, int):
                    raise CacheValueError(
                        f"cannot incr {key!r}: it holds a {type(current).__name__}, not an int",
                        details={"key": key, "type": type(current).__name__},
                    )
            value = current + delta
            self._data[key] = (value, expires)
            self._move(key)
            self._counts[SETS] += 1
            if len(self._data) > self.maxsize:
                self._shrink()
        self._report()
        return value

    def clear(self) -> None:
        """Remove every entry (the counters are kept).

        Example:
            >>> cache = MemoryCache()
            >>> cache.set("a", 1)
            >>> cache.clear()
            >>> len(cache)
            0
        """
        with self._mutex:
            self._data.clear()

    def stats(self) -> CacheStats:
        """Counters since creation; ``size`` counts expired entries not yet dropped.

        Example:
            >>> cache = MemoryCache()
            >>> cache.set("a", 1)
            >>> _ = cache.get("a"), cache.get("b")
            >>> cache.stats()
            CacheStats(hits=1, misses=1, sets=1, deletes=0, evictions=0, errors=0, size=1)
        """
        self._report()
        hits, misses, sets, deletes, evictions = self._counts
        return CacheStats(
            hits=hits,
            misses=misses,
            sets=sets,
            deletes=deletes,
            evictions=evictions,
            size=len(self._data),
        )

    # -- the inlined hit path ------------------------------------------------------------
    #
    # @cached and TieredCache compile this cache's hit path into their own functions (one
    # Python frame per hit instead of two). The code that reads the entries lives here, in
    # the class that owns them; the hypothesis test in test_memory.py checks that it
    # answers exactly as get() does.

    def _hit_source(self, pfx: str) -> tuple[list[str], dict[str, Any]]:
        """Source of this cache's hit path, and the names it uses.

        The lines return the value under the key named ``{pfx}k`` on a hit (counting it);
        otherwise they drop an expired entry, count a miss and fall through.

        Only for a GIL build (see :data:`GIL_ENABLED`): without a GIL the lock-free read
        is not safe, and callers use :meth:`get`.
        """
        lines = [
            f"{pfx}e = {pfx}dget({pfx}k)",
            f"if {pfx}e is not None:",
            f"    {pfx}v, {pfx}x = {pfx}e",
            f"    if {pfx}x is None or {pfx}clock() < {pfx}x:",
            "        try:",
            f"            {pfx}move({pfx}k)",
            "        except KeyError:",
            "            pass",
            f"        {pfx}counts[{HITS}] += 1",
            f"        return {pfx}v",
            f"    {pfx}drop({pfx}k, {pfx}e)",
            f"{pfx}counts[{MISSES}] += 1",
        ]
        names = {
            f"{pfx}dget": self._get_entry,
            f"{pfx}move": self._move,
            f"{pfx}clock": self._clock,
            f"{pfx}counts": self._counts,
            f"{pfx}drop": self._drop_expired,
        }
        return lines, names

    def _fast_get(
        self, miss: Callable[[str, Any], Any], *, is_async: bool = False
    ) -> Callable[..., Any]:
        """A ``get(key, default=None)`` reading this cache inline, ``miss(key, default)`` else.

        ``miss`` is awaited when ``is_async``: the L1 read of a tiered cache.
        """
        pfx = "_mc_"
        lines, names = self._hit_source(pfx)
        names[f"{pfx}miss"] = miss
        body = "\n".join(f"        {line}" for line in lines)
        text = (
            f"def {pfx}make({', '.join(names)}):\n"
            f"    {'async ' if is_async else ''}def get({pfx}k, {pfx}d=None):\n{body}\n"
            f"        return {'await ' if is_async else ''}{pfx}miss({pfx}k, {pfx}d)\n"
            "    return get\n"
        )
        scope: dict[str, Any] = {}
        exec(compile(text, f"<MemoryCache {self.name} get>", "exec"), {}, scope)  # noqa: S102 - fixed source
        get: Callable[..., Any] = scope[f"{pfx}make"](**names)
        get.__doc__ = "The value under ``key``: from this process's memory, else the slower path."
        return get

    # -- compute helpers -----------------------------------------------------------------

    def _lock(self, key: str, ttl: float) -> None:
        """No cross-process lock: single-flight within the process is all a memory cache needs."""
        return

    def as_async(self) -> AsyncMemoryCache:
        """An :class:`AsyncMemoryCache` over the same entries (one per cache).

        Example:
            >>> cache = MemoryCache()
            >>> cache.as_async() is cache.as_async(), cache.as_async().sync is cache
            (True, True)
        """
        view = self._view
        if view is None:
            view = self._view = AsyncMemoryCache(self)
        return view


class AsyncMemoryCache(AsyncGetOrSet):
    """The :class:`~utils.cache.protocol.AsyncCache` face of a :class:`MemoryCache`.

    Every method runs the sync method at once (nothing here waits), so the view shares the
    storage, counters and TTLs of its cache. Get it with :meth:`MemoryCache.as_async`.

    Example:
        >>> import asyncio
        >>> cache = MemoryCache()
        >>> async def main() -> int:
        ...     view = cache.as_async()
        ...     await view.set("a", 1)
        ...     return await view.get("a")
        >>> asyncio.run(main()), cache.get("a")
        (1, 1)
    """

    __slots__ = ("sync",)

    def __init__(self, cache: MemoryCache) -> None:
        #: The :class:`MemoryCache` this view reads and writes.
        self.sync: MemoryCache = cache

    def __repr__(self) -> str:
        return f"AsyncMemoryCache({self.sync!r})"

    @property
    def name(self) -> str:
        """The name of the underlying cache."""
        return self.sync.name

    @property
    def default_ttl(self) -> float | None:
        """The default TTL of the underlying cache."""
        return self.sync.default_ttl

    async def get(self, key: str, default: Any = None) -> Any:
        """See :meth:`MemoryCache.get`."""
        return self.sync.get(key, default)

    async def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """See :meth:`MemoryCache.set`."""
        self.sync.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        """See :meth:`MemoryCache.delete`."""
        return self.sync.delete(key)

    async def exists(self, key: str) -> bool:
        """See :meth:`MemoryCache.exists`."""
        return self.sync.exists(key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """See :meth:`MemoryCache.get_many`."""
        return self.sync.get_many(keys)

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None) -> None:
        """See :meth:`MemoryCache.set_many`."""
        self.sync.set_many(mapping, ttl)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """See :meth:`MemoryCache.delete_many`."""
        return self.sync.delete_many(keys)

    async def incr(self, key: str, delta: int = 1) -> int:
        """See :meth:`MemoryCache.incr`."""
        return self.sync.incr(key, delta)

    async def ttl(self, key: str) -> float | None:
        """See :meth:`MemoryCache.ttl`."""
        return self.sync.ttl(key)

    async def clear(self) -> None:
        """See :meth:`MemoryCache.clear`."""
        self.sync.clear()

    def stats(self) -> CacheStats:
        """See :meth:`MemoryCache.stats` (not awaited)."""
        return self.sync.stats()

    async def _peek(self, key: str, default: Any = None) -> Any:
        return self.sync._peek(key, default)

    def _alock(self, key: str, ttl: float) -> None:
        """No cross-process lock (see :meth:`MemoryCache._lock`)."""
        return
