"""Retry budgets: cap the extra load retries put on a struggling dependency.

Per-call retry limits multiply during an outage: with 3 attempts, every caller triples its
load exactly when the dependency can least take it. A :class:`RetryBudget` shared by the
policies that name it lets a whole process retry at most ``ratio`` of its recent requests
(plus a small floor, ``min_per_second``, so rarely used paths can still retry). When the
budget is spent, the original error propagates at once. This is Finagle's and gRPC's
answer to retry storms; none of tenacity, stamina or backoff has it.

Example:
    >>> budget = RetryBudget(ratio=0.1, min_per_second=0, window=10)
    >>> for _ in range(100):
    ...     budget.record_request()
    >>> sum(budget.try_spend() for _ in range(50))  # 10% of 100 requests
    10
"""

from __future__ import annotations

import threading

from utils.core.validate import non_negative, positive_int
from utils.resilience import _forksafe, _timing
from utils.resilience._timing import Clock
from utils.resilience._validation import Problems

__all__ = ["RetryBudget"]


class RetryBudget:
    """A sliding-window budget of retries, shared by every policy that names it.

    Args:
        ratio: Retries allowed per request in the window (``0.1`` = 10% extra load).
        min_per_second: Retries always allowed per second of window, whatever the traffic.
        window: Length of the sliding window, in whole seconds.
        clock: Monotonic clock (default ``time.monotonic``), injectable for tests.

    Thread-safe. Recording a request is lock-free except once per second, when a slot of the
    window is recycled; spending takes a short lock (it happens only on failures).

    Example:
        >>> budget = RetryBudget(ratio=0.2, min_per_second=1, window=10)
        >>> budget.try_spend()  # the floor: 1 per second over 10 s = 10 retries
        True
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_lock",
        "_requests",
        "_retries",
        "_stamps",
        "min_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self,
        ratio: float = 0.1,
        min_per_second: float = 10.0,
        *,
        window: int = 10,
        clock: Clock | None = None,
    ) -> None:
        problems = Problems()
        problems.check(non_negative, ratio, "ratio")
        problems.check(non_negative, min_per_second, "min_per_second")
        problems.check(positive_int, window, "window")
        problems.raise_if_any("invalid retry budget")
        self.ratio: float = ratio
        self.min_per_second: float = min_per_second
        self.window: int = window
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps = [-1] * window
        self._requests = [0] * window
        self._retries = [0] * window
        _forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held it at the fork (see _forksafe).
        self._lock = threading.Lock()

    def _now(self) -> int:
        return int((self._clock or _timing.clock)())

    def _slot(self, second: int) -> int:
        slot = second % self.window
        if self._stamps[slot] != second:
            with self._lock:
                if self._stamps[slot] != second:
                    self._stamps[slot] = second
                    self._requests[slot] = 0
                    self._retries[slot] = 0
        return slot

    def record_request(self) -> None:
        """Count one call (its first attempt). Called by the retry policies.

        Example:
            >>> RetryBudget().record_request()
        """
        self._requests[self._slot(self._now())] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when the budget is exhausted.

        Example:
            >>> RetryBudget(ratio=0.0, min_per_second=0).try_spend()
            False
        """
        second = self._now()
        slot = self._slot(second)
        oldest = second - self.window + 1
        with self._lock:
            requests = retries = 0
            for index, stamp in enumerate(self._stamps):
                if stamp >= oldest:
                    requests += self._requests[index]
                    retries += self._retries[index]
            allowed = self.min_per_second * self.window + self.ratio * requests
            if retries + 1 > allowed:
                return False
            self._retries[slot] += 1
            return True

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"window={self.window!r})"
        )
