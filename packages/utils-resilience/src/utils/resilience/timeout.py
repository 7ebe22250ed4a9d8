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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from utils.core.deadline import DEADLINE  # set on the hot path, without a call
from utils.core.validate import duration
from utils.resilience._strategy import Strategy
from utils.resilience.errors import ResilienceTimeoutError

__all__ = ["Timeout", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")

_INF = math.inf


class Timeout(Strategy):
    """A time limit for one call; build it with :func:`timeout`.

    ``seconds`` may be ``math.inf``: no limit of its own (the :func:`utils.core.deadline`
    still applies).

    Example:
        >>> Timeout(2.5).seconds
        2.5
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float | timedelta) -> None:
        limit = duration(seconds, "timeout seconds", allow_zero=False, allow_none=False)
        self.seconds: float = _INF if limit is None else limit

    def _describe(self) -> str:
        return f"timeout({self.seconds:g})"

    def _decorate(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Async: the generic wrapper over :meth:`acall`; sync: ``call`` inlined."""
        if inspect.iscoroutinefunction(fn):
            return super()._decorate(fn)
        seconds = self.seconds
        monotonic = time.monotonic
        current_deadline = DEADLINE
        if seconds == _INF:  # no limit of its own: the caller's deadline, if any, stands

            @functools.wraps(fn)
            def unlimited(*args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)

            return unlimited

        # call() inlined into the wrapper: one frame per call on the success path.
        @functools.wraps(fn)
        def limited(*args: Any, **kwargs: Any) -> Any:
            at = monotonic() + seconds
            current = current_deadline.get()
            if current is not None and current <= at:
                return fn(*args, **kwargs)  # the caller's deadline is earlier: it stands
            token = current_deadline.set(at)
            try:
                return fn(*args, **kwargs)
            finally:
                current_deadline.reset(token)

        return limited

    def _expired(self, cause: BaseException | None, by_deadline: bool) -> ResilienceTimeoutError:
        if by_deadline:
            error = ResilienceTimeoutError(
                "the deadline expired before the call finished "
                f"(its own timeout was {self.seconds:g}s)",
                details={"timeout": self.seconds, "reason": "deadline"},
            )
        else:
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
        current = DEADLINE.get()
        if (current is not None and current <= at) or at == _INF:
            return fn(*args, **kwargs)
        token = DEADLINE.set(at)
        try:
            return fn(*args, **kwargs)
        finally:
            DEADLINE.reset(token)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn``; cancel it and raise ``ResilienceTimeoutError`` when time is up.

        Time is up at the earlier of ``seconds`` from now and the current
        :func:`utils.core.deadline`; the error says which one it was.

        Example:
            >>> async def slow() -> None:
            ...     await asyncio.sleep(10)
            >>> asyncio.run(timeout(0.01).acall(slow))
            Traceback (most recent call last):
            ...
            utils.resilience.errors.ResilienceTimeoutError: the call did not finish within 0.01s
        """
        now = time.monotonic()
        own = now + self.seconds
        current = DEADLINE.get()
        by_deadline = current is not None and current < own
        at = current if by_deadline else own
        if at == _INF:  # no limit of its own and no deadline
            return await fn(*args, **kwargs)
        assert at is not None
        token = None if by_deadline else DEADLINE.set(at)
        left = at - now
        try:
            if sys.version_info >= (3, 11):
                scope = asyncio.timeout(left)
                try:
                    async with scope:
                        return await fn(*args, **kwargs)
                except TimeoutError as exc:
                    if scope.expired():
                        raise self._expired(exc, by_deadline) from exc
                    raise
            else:  # pragma: no cover - Python 3.10
                try:
                    return await asyncio.wait_for(fn(*args, **kwargs), max(left, 0.0))
                except asyncio.TimeoutError as exc:
                    if time.monotonic() >= at:
                        raise self._expired(exc, by_deadline) from exc
                    raise
        finally:
            if token is not None:
                DEADLINE.reset(token)

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r})"


def timeout(seconds: float | timedelta) -> Timeout:
    """Limit a call to ``seconds``: cancels async calls; sets the deadline for sync calls.

    The earlier of ``seconds`` and the current :func:`utils.core.deadline` wins, in sync
    and async code alike. ``math.inf`` sets no limit of its own.

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
