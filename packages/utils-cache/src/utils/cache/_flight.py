"""Single-flight: concurrent misses of one key wait for one computation instead of repeating it.

A :class:`Flights` table maps ``(cache, key)`` to the :class:`Flight` computing it. The first
caller becomes the owner and computes; later callers wait and receive its outcome — the value,
or the very exception the factory raised. When the owner stops for a reason that says nothing
about the value (its task was cancelled, ``KeyboardInterrupt``, a background refresh that
found another process already refreshing), the flight is *abandoned*: the waiters wake and
try again, and one of them becomes the new owner.

Two tables are used, one for threads (:data:`THREADS`, owner = thread id) and one for asyncio
tasks (:data:`TASKS`, owner = the task), so sync code blocking on a flight can never stall the
event loop that would finish it. A task waits on a future of its own loop, woken thread-safely,
so tasks of several loops (in several threads) share one flight. The table lock only guards
the dictionary: it is never held while computing, waiting or awaiting.

A caller that finds its *own* flight — the factory of ``f(1)`` calling ``f(1)`` again in the
same thread or task — gets :class:`~utils.cache.errors.ReentrantComputeError` at once: waiting
for itself would never end. (A cycle through *another* thread or task cannot be detected; it
waits until the deadline, if any.)

Example:
    >>> table = Flights()
    >>> flight, owner = table.join("cache", "k", owner=1)
    >>> owner, table.join("cache", "k", owner=2)[1]
    (True, False)
    >>> table.finish(flight, value=42)
    >>> flight.outcome()
    42
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Final

from utils.cache.errors import ReentrantComputeError
from utils.core import OperationTimeoutError, remaining
from utils.core.forksafe import reset_after_fork

__all__ = ["RETRY", "TASKS", "THREADS", "Flight", "Flights"]

_PENDING, _DONE, _FAILED, _ABANDONED = range(4)


class _Retry:
    __slots__ = ()

    def __repr__(self) -> str:
        return "RETRY"


#: Returned by :meth:`Flight.outcome` when the flight was abandoned: look again.
RETRY: Final = _Retry()


class Flight:
    """One computation in progress, and the callers waiting for it."""

    __slots__ = (
        "_event",
        "_futures",
        "_state",
        "cache",
        "error",
        "key",
        "owner",
        "value",
        "waiting",
    )

    def __init__(self, cache: Any, key: str, owner: object) -> None:
        self.cache = cache  # keeps id(cache) from being reused while the flight runs
        self.key = key
        #: Thread id or task computing the value (None for a refresh not yet started).
        self.owner = owner
        self.value: Any = None
        self.error: BaseException | None = None
        #: Callers that joined to wait for the outcome.
        self.waiting = 0
        self._state = _PENDING
        self._event: threading.Event | None = None
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def outcome(self) -> Any:
        """The value, or raise the factory's error, or :data:`RETRY` when abandoned."""
        if self._state == _FAILED:
            assert self.error is not None
            raise self.error
        if self._state == _DONE:
            return self.value
        return RETRY

    def wait(self) -> Any:
        """Block this thread until the flight ends (never past the deadline); its outcome.

        Raises:
            OperationTimeoutError: when the current deadline passes first.
        """
        event = self._event
        assert event is not None
        if not event.wait(remaining()):
            raise OperationTimeoutError(
                f"deadline exceeded while waiting for another caller to compute {self.key!r}",
                details={"key": self.key},
            )
        return self.outcome()

    async def await_(self, future: asyncio.Future[None]) -> Any:
        """Wait for ``future`` (made by :meth:`Flights.join_task`); the flight's outcome."""
        left = remaining()
        try:
            if left is None:
                await future
            else:
                await asyncio.wait_for(future, left)
        except asyncio.TimeoutError:
            raise OperationTimeoutError(
                f"deadline exceeded while waiting for another task to compute {self.key!r}",
                details={"key": self.key},
            ) from None
        return self.outcome()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # a waiter that gave up (cancelled, timed out) is skipped
        future.set_result(None)


class Flights:
    """A table of flights keyed by ``(id(cache), key)``."""

    __slots__ = ("__weakref__", "_lock", "_table")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: dict[tuple[int, str], Flight] = {}
        reset_after_fork(self, Flights._forget_parent)

    def _forget_parent(self) -> None:
        """In a forked child: forget the parent's flights and lock.

        The flights belong to threads and tasks that do not exist here (nobody would ever
        finish them), and the lock may have been held at the fork.
        """
        self._lock = threading.Lock()
        self._table = {}

    def __len__(self) -> int:
        return len(self._table)

    def get(self, cache: Any, key: str) -> Flight | None:
        """The flight computing ``key`` of ``cache`` now, if any."""
        return self._table.get((id(cache), key))

    def join(self, cache: Any, key: str, owner: object) -> tuple[Flight, bool]:
        """Start a flight (True: the caller computes) or join the running one (False).

        A thread that joins gets to :meth:`Flight.wait`. ``owner`` identifies the caller.

        Raises:
            ReentrantComputeError: when ``owner`` is already computing this key.
        """
        with self._lock:
            flight = self._lookup(cache, key, owner)
            if flight is None:
                flight = self._table[id(cache), key] = Flight(cache, key, owner)
                return flight, True
            if flight._event is None:
                flight._event = threading.Event()
            flight.waiting += 1
        return flight, False

    def join_task(
        self, cache: Any, key: str, owner: object
    ) -> tuple[Flight, asyncio.Future[None] | None]:
        """Like :meth:`join` for a task: the future to await when it joins (None: compute)."""
        with self._lock:
            flight = self._lookup(cache, key, owner)
            if flight is None:
                flight = self._table[id(cache), key] = Flight(cache, key, owner)
                return flight, None
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            flight._futures.append((loop, future))
            flight.waiting += 1
        return flight, future

    def _lookup(self, cache: Any, key: str, owner: object) -> Flight | None:
        flight = self._table.get((id(cache), key))
        if flight is not None and owner is not None and flight.owner == owner:
            raise ReentrantComputeError(
                f"{key!r} is already being computed by this caller: the factory asked for "
                "its own result (waiting for itself would deadlock)",
                details={"key": key},
            )
        return flight

    def start_background(self, cache: Any, key: str) -> Flight | None:
        """Register a refresh flight unless ``key`` is already being computed (then None)."""
        with self._lock:
            if (id(cache), key) in self._table:
                return None
            flight = self._table[id(cache), key] = Flight(cache, key, None)
            return flight

    def finish(
        self,
        flight: Flight,
        *,
        value: Any = None,
        error: BaseException | None = None,
        abandoned: bool = False,
    ) -> None:
        """End ``flight`` with a value, an error, or abandoned; wake every waiter."""
        with self._lock:
            slot = (id(flight.cache), flight.key)
            if self._table.get(slot) is flight:
                del self._table[slot]
            if abandoned:
                flight._state = _ABANDONED
            elif error is not None:
                flight.error = error
                flight._state = _FAILED
            else:
                flight.value = value
                flight._state = _DONE
            event, futures = flight._event, flight._futures
            flight._futures = []
        if event is not None:
            event.set()
        for loop, future in futures:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)


#: Flights of threads (owner: ``threading.get_ident()``).
THREADS: Final = Flights()
#: Flights of asyncio tasks (owner: ``asyncio.current_task()``).
TASKS: Final = Flights()
