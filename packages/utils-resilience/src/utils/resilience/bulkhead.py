"""Bulkheads: a cap on concurrent calls, with an optional bounded waiting line.

One :class:`Bulkhead` serves threads and asyncio tasks alike: both share the same slots and
the same first-come-first-served queue. The lock only guards a few counters — it is never
held while user code runs or across an ``await``. A freed slot is handed straight to the next
waiter, so nobody can jump the queue, and a waiter that gives up (timeout, cancellation,
``KeyboardInterrupt``) after being handed a slot passes it on: slots never leak.

Example:
    >>> db = Bulkhead(2, max_waiting=10, timeout=5.0, name="db")
    >>> @db
    ... def query() -> int:
    ...     return db.active
    >>> query()
    1
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from utils.core import OperationTimeoutError, remaining
from utils.core.report import Event
from utils.core.validate import duration, non_negative_int, positive_int
from utils.resilience import _forksafe
from utils.resilience._strategy import Strategy
from utils.resilience._validation import Problems
from utils.resilience.errors import BulkheadFullError

__all__ = ["Bulkhead"]

P = ParamSpec("P")
R = TypeVar("R")

# Every refused call, metered only.
REJECTED = Event(
    "bulkhead.rejected", logger="utils.resilience.bulkhead", level=None, tags=("bulkhead",)
)


class _Waiter:
    """A queued caller; ``grant`` is called under the bulkhead lock."""

    __slots__ = ("event", "future", "granted", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.granted = False
        self.loop = loop
        self.future = future
        self.event = threading.Event() if future is None else None

    def grant(self) -> None:
        self.granted = True
        if self.event is not None:
            self.event.set()
        else:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Bulkhead(Strategy):
    """Allow at most ``max_concurrent`` calls at once; queue up to ``max_waiting`` more.

    Args:
        max_concurrent: Calls that may run at the same time.
        max_waiting: Callers that may wait for a slot; beyond that, calls are refused at
            once with :class:`~utils.resilience.BulkheadFullError`. ``0`` = never wait.
        timeout: Longest wait for a slot, in seconds (``None`` or ``math.inf`` = as long as
            needed); the :func:`utils.core.deadline` caps it either way.
        name: Used in errors and metrics (``bulkhead.rejected``).

    Example:
        >>> Bulkhead(1).call(lambda: "ran")
        'ran'
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_lock",
        "_waiters",
        "max_concurrent",
        "max_waiting",
        "name",
        "timeout",
    )

    timeout: float | None

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int = 0,
        timeout: float | None = None,
        name: str = "bulkhead",
    ) -> None:
        problems = Problems()
        problems.check(positive_int, max_concurrent, "max_concurrent")
        problems.check(non_negative_int, max_waiting, "max_waiting")
        # math.inf = wait as long as needed (None); it must never reach Event.wait().
        limit = problems.check(duration, timeout, "timeout")
        problems.raise_if_any(f"invalid bulkhead {name!r}")
        self.max_concurrent: int = max_concurrent
        self.max_waiting: int = max_waiting
        self.timeout = limit
        self.name: str = name
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()
        _forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held it at the fork (see _forksafe).
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Calls running now.

        Example:
            >>> Bulkhead(3).active
            0
        """
        return self._active

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now.

        Example:
            >>> Bulkhead(3).waiting
            0
        """
        return len(self._waiters)

    def _describe(self) -> str:
        return f"Bulkhead({self.name!r})"

    def _full(self, reason: str) -> BulkheadFullError:
        REJECTED.emit(bulkhead=self.name)
        return BulkheadFullError(
            f"bulkhead {self.name!r} is full ({self.max_concurrent} running, "
            f"{self.max_waiting} waiting allowed): {reason}",
            details={"bulkhead": self.name, "reason": reason},
        )

    def _try_enter(self) -> bool:
        """Under the lock: take a free slot if nobody is queued ahead of us."""
        if self._active < self.max_concurrent and not self._waiters:
            self._active += 1
            return True
        return False

    def _enqueue(self, waiter: _Waiter) -> bool:
        """Under the lock: queue ``waiter``; False when the queue is full."""
        if len(self._waiters) >= self.max_waiting:
            return False
        self._waiters.append(waiter)
        return True

    def _abandon(self, waiter: _Waiter) -> bool:
        """A waiter gives up; returns True when it had been granted a slot meanwhile."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().grant()  # the slot passes straight to the next waiter
            else:
                self._active -= 1

    def _wait_timeout(self) -> float | None:
        # Not clamp_timeout(), which raises once the deadline has passed: a wait of 0 takes a
        # slot that was already handed over, and otherwise _gave_up_waiting names the bulkhead.
        left = remaining()
        if left is None or (self.timeout is not None and self.timeout < left):
            return self.timeout
        return left

    def _gave_up_waiting(self) -> Exception:
        """The error for a wait that ran out: the deadline's, or the bulkhead's own."""
        left = remaining()
        if left is not None and left <= 0:
            return OperationTimeoutError(
                f"deadline exceeded while waiting for a slot of bulkhead {self.name!r}",
                details={"bulkhead": self.name},
            )
        return self._full("timed out waiting for a slot")

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` in a slot, waiting for one if the bulkhead allows.

        Example:
            >>> Bulkhead(1, max_waiting=1).call(max, 2, 7)
            7
        """
        with self._lock:
            entered = self._try_enter()
            if not entered:
                waiter = _Waiter()
                queued = self._enqueue(waiter)
        if not entered:
            if not queued:  # raised outside the lock: the metrics sink is user code
                raise self._full("queue full" if self.max_waiting else "no free slot")
            assert waiter.event is not None
            try:
                granted = waiter.event.wait(self._wait_timeout())
            except BaseException:
                if self._abandon(waiter):
                    self._release()
                raise
            if not granted and not self._abandon(waiter):
                raise self._gave_up_waiting()
        try:
            return fn(*args, **kwargs)
        finally:
            self._release()

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn`` in a slot, waiting for one if the bulkhead allows.

        Example:
            >>> async def job() -> str:
            ...     return "done"
            >>> asyncio.run(Bulkhead(1).acall(job))
            'done'
        """
        with self._lock:
            entered = self._try_enter()
            if not entered:
                loop = asyncio.get_running_loop()
                waiter = _Waiter(loop, loop.create_future())
                queued = self._enqueue(waiter)
        if not entered:
            if not queued:
                raise self._full("queue full" if self.max_waiting else "no free slot")
            assert waiter.future is not None
            try:
                await asyncio.wait_for(waiter.future, self._wait_timeout())
            except BaseException as exc:
                if self._abandon(waiter):
                    if not isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                        self._release()
                        raise
                    # Granted at the very moment the wait timed out: keep the slot.
                else:
                    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                        raise self._gave_up_waiting() from None
                    raise
        try:
            return await fn(*args, **kwargs)
        finally:
            self._release()

    def __repr__(self) -> str:
        return (
            f"Bulkhead(name={self.name!r}, max_concurrent={self.max_concurrent}, "
            f"max_waiting={self.max_waiting}, active={self._active}, waiting={self.waiting})"
        )
