"""Deadlines that flow through the call stack: one budget for a whole request.

``with deadline(2.0):`` sets an absolute deadline in a context variable; every ``utils``
helper underneath reads :func:`remaining` to cap its timeouts, and retries never sleep past
it. Nested deadlines keep the earlier one. The value follows ``await`` and is carried into
threads started through :func:`~utils.core.with_current_context` or
``contextvars.copy_context``. Deadlines are cooperative: they never interrupt running code;
helpers raise :class:`~utils.core.OperationTimeoutError` when the budget is spent.

Example:
    >>> from utils.core import deadline, remaining
    >>> remaining() is None
    True
    >>> with deadline(5):
    ...     0 < remaining() <= 5
    True
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from datetime import timedelta
from types import TracebackType

from utils.core.errors import OperationTimeoutError
from utils.core.validate import duration

__all__ = ["DEADLINE", "check_deadline", "clamp_timeout", "deadline", "deadline_at", "remaining"]

#: The absolute deadline on the ``time.monotonic`` clock, or None for "no deadline".
#:
#: Public for the family's hot paths (``utils.resilience.timeout`` sets it, ``retry`` reads
#: it) where a function call per operation would show in the benchmarks. Read it freely; set
#: it only the way :class:`deadline` does — never later than the value already there — and
#: always ``reset`` the token.
DEADLINE: ContextVar[float | None] = ContextVar("utils_deadline", default=None)
_deadline = DEADLINE  # the old private name, kept for code that still imports it


class deadline:  # noqa: N801 - used like a function: `with deadline(2):`
    """Limit everything inside the block to ``seconds`` from now (sync and async).

    Args:
        seconds: The budget, as seconds or a ``timedelta``; ``None`` or ``math.inf`` adds no
            deadline (handy when the budget comes from optional configuration). A finite
            budget above :data:`utils.core.validate.MAX_SECONDS` (ten years) is refused.

    A nested ``deadline`` can only shorten the budget, never extend it. The object is
    reusable but not re-entrant: each ``with`` computes its own deadline.

    Example:
        >>> with deadline(10):
        ...     with deadline(60):  # the outer, earlier deadline still wins
        ...         remaining() <= 10
        True
    """

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float | timedelta | None) -> None:
        self._seconds = duration(seconds, "deadline")
        self._token: Token[float | None] | None = None

    def __enter__(self) -> deadline:
        if self._seconds is not None:
            at = time.monotonic() + self._seconds
            current = DEADLINE.get()
            if current is not None and current < at:
                at = current
            self._token = DEADLINE.set(at)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            DEADLINE.reset(self._token)
            self._token = None

    async def __aenter__(self) -> deadline:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def deadline_at() -> float | None:
    """The current deadline as a ``time.monotonic()`` value, or None without one.

    Useful to compute a deadline once and compare it cheaply later, or to hand it to code
    that works with absolute times.

    Example:
        >>> import time
        >>> deadline_at() is None
        True
        >>> with deadline(5):
        ...     deadline_at() - time.monotonic() <= 5
        True
    """
    return DEADLINE.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (never negative), or None without one.

    Example:
        >>> with deadline(0):
        ...     remaining()
        0.0
    """
    at = DEADLINE.get()
    if at is None:
        return None
    left = at - time.monotonic()
    return left if left > 0.0 else 0.0


def clamp_timeout(timeout: float | None, operation: str = "the operation") -> float | None:
    """Cap a socket/read/statement timeout by the current deadline.

    Returns ``timeout`` unchanged when there is no deadline, ``remaining()`` when there is
    no timeout, and the smaller of the two otherwise. Once the deadline has passed it raises
    :class:`OperationTimeoutError` naming ``operation``: a timeout of ``0`` would mean "no
    timeout" or "non-blocking" to many clients, never "give up now".

    The HTTP recipe: ``httpx.get(url, timeout=clamp_timeout(5.0, "GET /prices"))``.

    Example:
        >>> clamp_timeout(30.0)
        30.0
        >>> with deadline(1):
        ...     clamp_timeout(30.0) <= 1
        True
        >>> with deadline(0):
        ...     clamp_timeout(30.0, "GET /prices")
        Traceback (most recent call last):
        ...
        utils.core.errors.OperationTimeoutError: deadline exceeded before GET /prices
    """
    at = DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0.0:
        raise OperationTimeoutError(
            f"deadline exceeded before {operation}", details={"operation": operation}
        )
    if timeout is None:
        return left
    return timeout if timeout < left else left


def check_deadline(operation: str = "the operation") -> None:
    """Raise :class:`OperationTimeoutError` when the current deadline has passed.

    Call it before starting work that would be pointless once the budget is spent.

    Example:
        >>> with deadline(0):
        ...     check_deadline("SELECT 1")
        Traceback (most recent call last):
        ...
        utils.core.errors.OperationTimeoutError: deadline exceeded before SELECT 1
    """
    left = remaining()
    if left is not None and left <= 0.0:
        raise OperationTimeoutError(
            f"deadline exceeded before {operation}", details={"operation": operation}
        )
