"""The default rate-limit storage: one float per key in a dict, behind one short lock.

Private: :class:`MemoryRateLimitStorage` is public through :mod:`utils.resilience.ratelimit`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import islice

from utils.core import ValidationError
from utils.resilience import _forksafe, _timing
from utils.resilience._ratelimit_decision import (
    _COUNT_SLACK,
    _ONE,
    _RELATIVE_SLACK,
    _SLACK,
    DEFAULT_KEY,
    Decision,
)
from utils.resilience._timing import Clock

__all__ = ["MemoryRateLimitStorage"]


class MemoryRateLimitStorage:
    """Per-process storage: a dict of key -> TAT (one float per key) behind one short lock.

    The lock covers only the GCRA arithmetic and the dict update. Memory is bounded by
    ``max_keys``: when an insertion goes above it, the storage first forgets every key
    whose TAT is in the past — such a key is equivalent to a fresh one, so forgetting it
    never changes a decision — and, if still above 90% of ``max_keys``, forgets the
    oldest-inserted keys until it is at 90%. Forgetting a key whose TAT is still ahead can
    only make the limiter *more permissive* for that key (it gets a fresh burst), never
    stricter; size ``max_keys`` above the number of keys active within one refill period
    (``burst * per / rate``) and it never happens. The sweep runs outside the lock on a
    snapshot, about once per ``max_keys / 10`` new keys (amortised O(1) per request).

    One storage may be shared by several limiters if each has its own ``name`` (it
    namespaces the keys); ``max_keys`` then bounds them all together.

    Args:
        max_keys: The most keys kept at once (>= 1).

    Example:
        >>> from utils.resilience import RateLimiter
        >>> storage = MemoryRateLimitStorage(max_keys=1000)
        >>> limiter = RateLimiter(5, per=1.0, storage=storage, name="api")
        >>> limiter.try_acquire("bob").allowed, len(storage)
        (True, 1)
    """

    __slots__ = ("__weakref__", "_lock", "_low_water", "_max_keys", "_sweep_lock", "_tats")

    def __init__(self, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValidationError(
                f"max_keys must be an int >= 1, got {max_keys!r}",
                details={"max_keys": repr(max_keys)},
            )
        self._max_keys = max_keys
        self._low_water = max_keys - max(1, max_keys // 10)
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sweep_lock = threading.Lock()
        _forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held them at the fork (see _forksafe).
        self._lock = threading.Lock()
        self._sweep_lock = threading.Lock()

    @property
    def max_keys(self) -> int:
        """The most keys kept at once.

        Example:
            >>> MemoryRateLimitStorage(max_keys=10).max_keys
            10
        """
        return self._max_keys

    def __len__(self) -> int:
        return len(self._tats)

    def __repr__(self) -> str:
        return f"MemoryRateLimitStorage(max_keys={self._max_keys}, keys={len(self._tats)})"

    def update(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """Decide one request (see :class:`RateLimitStorage`).

        Example:
            >>> storage = MemoryRateLimitStorage()
            >>> storage.update("k", 0.5, 0.5, 1, lambda: 100.0)  # T=0.5 s, burst 2
            (True, 0.5)
            >>> storage.update("k", 0.5, 0.5, 2, lambda: 100.0)  # needs 2 cells, has 1
            (False, 0.5)
        """
        now = clock()
        tats = self._tats
        self._lock.acquire()
        try:
            tat = max(tats.get(key, now), now)
            new_tat = tat + cost * emission_interval
            backlog = new_tat - now
            limit = tolerance + emission_interval + _SLACK
            if backlog > limit and backlog > limit + new_tat * _RELATIVE_SLACK:
                return False, tat - now
            tats[key] = new_tat
            size = len(tats)
        finally:
            self._lock.release()
        if size > self._max_keys:
            self._sweep(now)
        return True, new_tat - now

    async def aupdate(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """Same as :meth:`update` (no I/O, never blocks the event loop).

        Example:
            >>> import asyncio
            >>> asyncio.run(MemoryRateLimitStorage().aupdate("k", 1.0, 0.0, 1, lambda: 5.0))
            (True, 1.0)
        """
        return self.update(key, emission_interval, tolerance, cost, clock)

    def _decider(
        self,
        namespace: str,
        interval: float,
        tolerance: float,
        clock: Clock | None,
        decisions: tuple[Decision, ...],
        refused: Callable[[float, int], Decision],
        check_cost: Callable[[int], None],
    ) -> Callable[[str, int], Decision]:
        """The in-memory hot path of one limiter: :meth:`update` and the Decision, inlined.

        Everything constant is bound in the closure; an allowed request allocates nothing
        but a few floats and returns a precomputed :class:`Decision`.
        """
        tats = self._tats
        get = tats.get
        acquire = self._lock.acquire
        release = self._lock.release
        max_keys = self._max_keys
        sweep = self._sweep
        limit = tolerance + interval + _SLACK
        inverse = 1.0 / interval
        # remaining = floor((tolerance + interval - backlog) / interval), i.e. this:
        whole = (tolerance + interval) * inverse + _COUNT_SLACK
        timing = _timing
        cached = len(decisions)

        def decide(key: str = DEFAULT_KEY, cost: int = 1) -> Decision:
            if cost is not _ONE:  # identity: True == 1, and a bool is not a cost
                check_cost(cost)
            if namespace:
                key = namespace + key
            now = (clock or timing.clock)()
            acquire()
            try:
                tat = get(key)
                if tat is None:  # a new key: is there room for it?
                    full = len(tats) >= max_keys
                    tat = now
                else:
                    full = False
                    if tat < now:  # noqa: PLR1730 - cheaper than a call to max()
                        tat = now
                new_tat = tat + cost * interval
                backlog = new_tat - now
                # The relative slack only matters, and is only computed, near a refusal.
                allowed = backlog <= limit or backlog <= limit + new_tat * _RELATIVE_SLACK
                if allowed:
                    tats[key] = new_tat
            finally:
                release()
            if not allowed:
                return refused(tat - now, cost)
            if full:
                sweep(now)
            count = int(whole - backlog * inverse)
            if count < cached:
                return decisions[count]
            return Decision(True, 0.0, count)  # a burst above the cache size

        return decide

    def _sweep(self, now: float) -> None:
        """Bring the table back to the low-water mark (see the class docstring)."""
        if not self._sweep_lock.acquire(blocking=False):
            return  # another thread is sweeping; the table may briefly exceed max_keys
        try:
            with self._lock:
                if len(self._tats) <= self._max_keys:
                    return
                snapshot = self._tats.copy()
            # The O(n) scan runs outside the lock; decisions go on meanwhile.
            expired = [key for key, tat in snapshot.items() if tat <= now]
            del snapshot
            with self._lock:
                tats = self._tats
                for key in expired:
                    tat = tats.get(key)
                    if tat is not None and tat <= now:  # not refreshed meanwhile
                        del tats[key]
                excess = len(tats) - self._low_water
                if excess > 0:
                    for key in list(islice(tats, excess)):  # oldest-inserted first
                        del tats[key]
        finally:
            self._sweep_lock.release()
