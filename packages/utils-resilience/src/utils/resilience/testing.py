"""Test helpers for code that uses utils.resilience.

``instant_retries()`` turns every retry wait (and limiter/bulkhead sleep) into a no-op and
records the delays that would have been slept. It is also a pytest fixture,
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

    The clock is not touched: timeouts based on elapsed time still see real (tiny) elapsed
    times, so a test of ``timeout=`` should inject a clock instead.

    Example:
        >>> with instant_retries() as delays:
        ...     _timing.sleep(30)
        >>> delays
        [30]
    """
    delays: list[float] = []
    saved = (_timing.sleep, _timing.asleep)

    def sleep(seconds: float) -> None:
        delays.append(seconds)

    async def asleep(seconds: float) -> None:
        delays.append(seconds)

    _timing.sleep, _timing.asleep = sleep, asleep
    try:
        yield delays
    finally:
        _timing.sleep, _timing.asleep = saved
