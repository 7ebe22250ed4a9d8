"""Test helpers for code that uses utils.resilience.

``instant_retries()`` turns every retry wait (and rate-limiter sleep) into a no-op, moves the
strategies' clock forward as if the wait had happened, and records the delays. It is also a pytest fixture,
``instant_retries``, registered through the ``pytest11`` entry point.

Example:
    >>> from utils.resilience import retry
    >>> attempts = []
    >>> def flaky() -> str:
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise TimeoutError
    ...     return "ok"
    >>> with instant_retries() as delays:
    ...     retry(attempts=3, jitter="none", initial=0.5).call(flaky)
    'ok'
    >>> delays
    [0.5, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from utils.resilience import _timing

__all__ = ["instant_retries"]


@contextmanager
def instant_retries() -> Iterator[list[float]]:
    """Make every resilience sleep instant for the block; yield the list of skipped delays.

    Time still seems to pass for the strategies: their clock (``utils.resilience._timing``)
    is moved forward by each skipped delay, so a retry ``timeout=`` or a rate limiter's
    ``acquire()`` behaves exactly as if the sleeps had happened. The ``utils.core`` deadline
    keeps real time.

    Example:
        >>> with instant_retries() as delays:
        ...     before = _timing.clock()
        ...     _timing.sleep(30)
        ...     _timing.clock() - before >= 30
        True
        >>> delays
        [30]
    """
    delays: list[float] = []
    saved = (_timing.clock, _timing.sleep, _timing.asleep)
    real_clock = saved[0]
    skipped = [0.0]

    def clock() -> float:
        return real_clock() + skipped[0]

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        skipped[0] += max(0.0, seconds)

    async def asleep(seconds: float) -> None:
        delays.append(seconds)
        skipped[0] += max(0.0, seconds)

    _timing.clock, _timing.sleep, _timing.asleep = clock, sleep, asleep
    try:
        yield delays
    finally:
        _timing.clock, _timing.sleep, _timing.asleep = saved
