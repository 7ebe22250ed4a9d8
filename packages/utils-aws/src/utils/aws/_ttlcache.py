"""A thread-safe TTL cache with single-flight misses (private, used by ``parameters``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from utils.core.forksafe import reset_after_fork


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class TTLCache:
    """``get(key, max_age, fetch)``: the cached value while fresh; one ``fetch`` per miss.

    Concurrent misses of one key wait for the first caller's fetch (and get its error).
    """

    __slots__ = ("__weakref__", "_clock", "_data", "_flights", "_lock")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._data: dict[Hashable, tuple[Any, float]] = {}
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        reset_after_fork(self, TTLCache._after_fork)

    def _after_fork(self) -> None:
        # The parent's fetching threads do not exist in a forked child: nobody would finish
        # their flights. The cached values are still good.
        self._lock = threading.Lock()
        self._flights = {}

    def lookup(self, key: Hashable) -> tuple[bool, Any]:
        """``(True, value)`` while fresh, else ``(False, None)``: the hit path."""
        entry = self._data.get(key)
        if entry is not None and entry[1] > self._clock():
            return True, entry[0]
        return False, None

    def fetch(self, key: Hashable, max_age: float, fetch: Callable[[], Any]) -> Any:
        """Run ``fetch`` once for all concurrent callers of ``key``; store it for ``max_age``."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            return flight.wait()
        try:
            value = fetch()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
            if max_age > 0:
                self._data[key] = (value, self._clock() + max_age)
            else:
                self._data.pop(key, None)
            return value
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def clear(self) -> None:
        """Forget every value."""
        self._data.clear()
