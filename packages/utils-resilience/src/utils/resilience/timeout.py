"""Time limits: cancel async work, and give sync work a deadline it can honour.

``timeout(seconds)`` is a strategy (decorator, ``.call``, ``.acall``, pipeline stage).

- **Async**: the awaited call is *cancelled* when the time is up, and
  :class:`~utils.resilience.ResilienceTimeoutError` (an ``OperationTimeoutError``) is raised.
- **Sync**: Python cannot safely interrupt a running thread, so the timeout sets the
  :func:`utils.core.deadline` for the call instead. Code that cooperates — every ``utils``
  helper, anything that reads :func:`utils.core.remaining` or caps its socket timeouts with
  :func:`utils.core.clamp_timeout` — stops in time and raises. Code that does not (a
  ``time.sleep``, a CPU loop, a driver call with its own long timeout) runs to completion,
  and its result is returned even if it was late. If you need a hard stop for sync code,
  run it in a subprocess.

Example:
    >>> import asyncio
    >>> from utils.core import remaining
    >>> @timeout(5)
    ... def work() -> bool:
    ...     return remaining() <= 5
    >>> work()
    True
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

from utils.core import ValidationError, deadline
from utils.core.deadline import _deadline as _current_deadline  # set on the hot path
from utils.resilience._strategy import Strategy, reject_generators
from utils.resilience.errors import ResilienceTimeoutError

__all__ = ["Timeout", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")


class Timeout(Strategy):
    """A time limit for one call; build it with :func:`timeout`.

    Example:
        >>> Timeout(2.5).seconds
        2.5
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float | timedelta) -> None:
        value = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
            raise ValidationError(f"timeout seconds must be a finite number > 0, got {seconds!r}")
        self.seconds = float(value)

    def _describe(self) -> str:
        return f"timeout({self.seconds:g})"

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function (generator functions are refused)."""
        if inspect.iscoroutinefunction(fn):
            return super().__call__(fn)
        reject_generators(fn, self._describe())
        seconds = self.seconds
        monotonic = time.monotonic
        current_deadline = _current_deadline

        # call() inlined into the wrapper: one frame per call on the success path.
        @functools.wraps(fn)
        def limited(*args: P.args, **kwargs: P.kwargs) -> Any:
            at = monotonic() + seconds
            current = current_deadline.get()
            token = current_deadline.set(at if current is None or at < current else current)
            try:
                return fn(*args, **kwargs)
            finally:
                current_deadline.reset(token)

        return limited

    def _expired(self, cause: BaseException | None) -> ResilienceTimeoutError:
        error = ResilienceTimeoutError(
            f"the call did not finish within {self.seconds:g}s",
            details={"timeout": self.seconds},
        )
        error.__cause__ = cause
        return error

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` under a :func:`utils.core.deadline` of ``seconds`` (cooperative).

        Example:
            >>> timeout(1).call(sum, [1, 2])
            3
        """
        # deadline() inlined (same semantics: the earlier deadline wins): this runs on the
        # success path of every pipeline that starts with a timeout.
        at = time.monotonic() + self.seconds  # the clock of utils.core.deadline
        current = _current_deadline.get()
        token = _current_deadline.set(at if current is None or at < current else current)
        try:
            return fn(*args, **kwargs)
        finally:
            _current_deadline.reset(token)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn``; cancel it and raise ``ResilienceTimeoutError`` when time is up.

        Example:
            >>> async def slow() -> None:
            ...     await asyncio.sleep(10)
            >>> asyncio.run(timeout(0.01).acall(slow))
            Traceback (most recent call last):
            ...
            utils.resilience.errors.ResilienceTimeoutError: the call did not finish within 0.01s
        """
        with deadline(self.seconds):
            if sys.version_info >= (3, 11):
                scope = asyncio.timeout(self.seconds)
                try:
                    async with scope:
                        return await fn(*args, **kwargs)
                except TimeoutError as exc:
                    if scope.expired():
                        raise self._expired(exc) from exc
                    raise
            else:  # pragma: no cover - Python 3.10
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    return await asyncio.wait_for(fn(*args, **kwargs), self.seconds)
                except asyncio.TimeoutError as exc:
                    if loop.time() - started >= self.seconds:
                        raise self._expired(exc) from exc
                    raise

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r})"


def timeout(seconds: float | timedelta) -> Timeout:
    """Limit a call to ``seconds``: cancels async calls; sets the deadline for sync calls.

    Example:
        >>> import asyncio
        >>> @timeout(0.05)
        ... async def fetch() -> str:
        ...     await asyncio.sleep(1)
        ...     return "late"
        >>> asyncio.run(fetch())
        Traceback (most recent call last):
        ...
        utils.resilience.errors.ResilienceTimeoutError: the call did not finish within 0.05s
    """
    return Timeout(seconds)
