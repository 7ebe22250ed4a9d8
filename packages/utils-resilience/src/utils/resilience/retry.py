"""Retry with exponential backoff, jitter, deadlines, ``retry_after`` and retry budgets.

``retry()`` builds an immutable policy. Use it as a decorator (sync or async), call through
it (``.call`` / ``.acall``), or retry a block::

    for attempt in retry(attempts=5):
        with attempt:
            send()

By default it retries what :func:`utils.core.is_transient` calls transient, so raw driver
errors (botocore throttling, psycopg connection loss, redis timeouts) are retried as soon as
the matching ``utils`` package is installed — no configuration needed.

Example:
    >>> from utils.resilience.testing import instant_retries
    >>> calls = []
    >>> @retry(attempts=3)
    ... def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionResetError("reset by peer")
    ...     return "ok"
    >>> with instant_retries():
    ...     flaky()
    'ok'
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeAlias, TypeVar

from utils.core import UtilsError, ValidationError, is_transient, remaining
from utils.core.deadline import (
    DEADLINE,  # read on the hot path, without a call
    check_deadline,
)
from utils.core.report import Event
from utils.core.validate import duration, positive_int
from utils.resilience import _timing
from utils.resilience._http_classify import retry_after_of
from utils.resilience._strategy import Strategy
from utils.resilience._validation import Problems
from utils.resilience.backoff import Backoff, Jitter
from utils.resilience.budget import RetryBudget

__all__ = ["Attempt", "Retry", "RetryState", "retry"]

P = ParamSpec("P")
R = TypeVar("R")

RetryOn: TypeAlias = (
    "type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]"
)

_LOGGER = "utils.resilience.retry"
ATTEMPT_FAILED = Event("retry.attempt_failed", logger=_LOGGER, level="warning", tags=("retry",))
GAVE_UP = Event("retry.gave_up", logger=_LOGGER, level="warning", tags=("retry", "reason"))

# ``code`` of CircuitOpenError (not imported: it needs pybreaker).
_CIRCUIT_OPEN = "circuit_open"


@dataclass(frozen=True, slots=True)
class RetryState:
    """What ``before_sleep`` callbacks receive before each wait.

    Example:
        >>> RetryState("fetch", attempt=1, error=None, result=None, delay=0.2, elapsed=0.01)
        RetryState(name='fetch', attempt=1, error=None, result=None, delay=0.2, elapsed=0.01)
    """

    name: str
    #: The attempt that just failed (1-based).
    attempt: int
    #: Its exception, or None when ``on_result`` asked for the retry.
    error: BaseException | None
    #: Its result, when ``on_result`` asked for the retry.
    result: Any
    #: Seconds about to be slept.
    delay: float
    #: Seconds since the first attempt started.
    elapsed: float


def _make_predicate(on: RetryOn) -> Callable[[BaseException], bool]:
    if isinstance(on, type) and issubclass(on, BaseException):
        kinds: tuple[type[BaseException], ...] = (on,)
    elif isinstance(on, type):
        raise ValidationError(
            f"retry(on={on.__name__}) is not an exception type; pass exception types, "
            "a tuple of them, or a predicate function"
        )
    elif isinstance(on, tuple):
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise ValidationError(f"retry(on=...) tuple must hold exception types, got {on!r}")
        kinds = on
    elif callable(on):
        return on
    else:
        raise ValidationError(
            f"retry(on=...) takes an exception type, a tuple of them or a predicate, got {on!r}"
        )
    return lambda exc: isinstance(exc, kinds)


def _add_note(exc: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10 keeps notes without displaying them
        notes = getattr(exc, "__notes__", None)
        if notes is None:
            notes = []
            exc.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)


# What a block-form attempt "returned": results are not the block form's business.
_BLOCK_DONE: Any = object()


class _Run:
    """Per-call state, created only after a first failure: the policy itself stays immutable."""

    __slots__ = (
        "args",
        "attempt",
        "fn",
        "kwargs",
        "name",
        "policy",
        "previous_delay",
        "started",
        "stop_reason",
    )

    def __init__(
        self, policy: Retry, fn: Callable[..., Any] | None, args: Any, kwargs: Any, started: float
    ) -> None:
        self.policy = policy
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = policy.name or (_name_of(fn) if fn is not None else "retry block")
        self.started = started
        self.attempt = 1
        self.previous_delay = 0.0
        self.stop_reason = ""

    def after(self, error: BaseException | None, result: Any) -> float | None:
        """After an attempt: the wait before the next one, or None to stop (done or gave up).

        ``error`` is the attempt's retryable exception (None if it returned ``result``).
        """
        if error is None and (result is _BLOCK_DONE or not self.policy._needs_retry(result)):
            self.stop_reason = "done"
            return None
        return self.next_delay(error, result)

    def outcome(self, error: BaseException | None, result: Any) -> Any:
        """Once stopped: the result, or the last error (with its note on the attempts)."""
        if error is not None:
            raise error
        return result  # a success, or the last result when on_result gave up

    def next_delay(self, error: BaseException | None, result: Any) -> float | None:
        """The wait before the next attempt, or None (with ``stop_reason``) to give up."""
        policy = self.policy
        if policy.attempts is not None and self.attempt >= policy.attempts:
            return self._stop("attempts", error, result)
        delay = policy.backoff.delay(self.attempt, self.previous_delay, policy._rng)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None and error is not None:
            # A raw 429/503 of an HTTP client (httpx.HTTPStatusError...) has no retry_after
            # attribute: its Retry-After header says the same (one dict look-up otherwise).
            retry_after = retry_after_of(error)
        # An open breaker says when it lets a call through again: when that is past what
        # is left of the budget, waiting is pointless, and the give-up is the breaker's.
        # isinstance first: a foreign exception's `code` may be anything (aiohttp's
        # ClientResponseError.code is a property that warns of its deprecation).
        circuit_open = isinstance(error, UtilsError) and error.code == _CIRCUIT_OPEN
        if isinstance(retry_after, int | float) and retry_after > delay:
            # The server said when: wait that long (never shortened by jitter), within reason.
            if retry_after > policy.max_retry_after:
                return self._stop("circuit_open" if circuit_open else "retry_after", error, result)
            delay = float(retry_after)
        elapsed = _timing.clock() - self.started
        if policy.timeout is not None and elapsed + delay >= policy.timeout:
            return self._stop("circuit_open" if circuit_open else "timeout", error, result)
        left = remaining()
        if left is not None and delay >= left:
            return self._stop("circuit_open" if circuit_open else "deadline", error, result)
        if policy.budget is not None and not policy.budget.try_spend():
            return self._stop("budget", error, result)
        self._report_failure(error, result, delay, elapsed)
        if policy.before_sleep is not None:
            policy.before_sleep(RetryState(self.name, self.attempt, error, result, delay, elapsed))
        self.previous_delay = delay
        self.attempt += 1
        return delay

    def _report_failure(
        self, error: BaseException | None, result: Any, delay: float | None, elapsed: float
    ) -> None:
        """Log and count one failed attempt; ``delay`` is None when no retry follows."""
        ATTEMPT_FAILED.emit(
            retry=self.name,
            attempt=self.attempt,
            delay=None if delay is None else round(delay, 4),
            elapsed=round(elapsed, 4),
            error=f"{type(error).__name__}: {error}" if error is not None else None,
            result=None if error is not None else repr(result)[:200],
        )

    def _stop(self, reason: str, error: BaseException | None, result: Any) -> float | None:
        self.stop_reason = reason
        elapsed = _timing.clock() - self.started
        self._report_failure(error, result, None, elapsed)  # the last attempt failed too
        GAVE_UP.emit(
            retry=self.name,
            attempts=self.attempt,
            reason=reason,
            elapsed=round(elapsed, 4),
            error=f"{type(error).__name__}: {error}" if error is not None else None,
        )
        if error is not None:
            plural = "s" if self.attempt != 1 else ""
            _add_note(
                error,
                f"utils.resilience: gave up after {self.attempt} attempt{plural} over "
                f"{elapsed:.3f}s ({reason}) in {self.name}",
            )
        return None


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Retry(Strategy):
    """An immutable retry policy; build it with :func:`retry`.

    Example:
        >>> policy = retry(attempts=4, initial=0.05, jitter="none")
        >>> policy.attempts, policy.backoff.capped(3)
        (4, 0.2)
    """

    __slots__ = (
        "_rng",
        "_should_retry",
        "attempts",
        "backoff",
        "before_sleep",
        "budget",
        "max_retry_after",
        "name",
        "on_result",
        "timeout",
    )

    def __init__(
        self,
        *,
        attempts: int | None,
        timeout: float | None,
        on: RetryOn,
        on_result: Callable[[Any], bool] | None,
        backoff: Backoff,
        max_retry_after: float,
        budget: RetryBudget | None,
        before_sleep: Callable[[RetryState], None] | None,
        name: str | None,
    ) -> None:
        problems = Problems()
        if attempts is not None:
            problems.check(positive_int, attempts, "attempts")
        # math.inf = no limit (None); a limit must be > 0.
        limit = problems.check(duration, timeout, "timeout", allow_zero=False)
        if attempts is None and limit is None and not problems.messages:
            problems.add("attempts=None retries forever: give a finite timeout as well")
        most = problems.check(duration, max_retry_after, "max_retry_after", allow_none=False)
        problems.raise_if_any("invalid retry policy")
        self.attempts: int | None = attempts
        self.timeout: float | None = limit
        self._should_retry = _make_predicate(on)
        self.on_result: Callable[[Any], bool] | None = on_result
        self.backoff: Backoff = backoff
        self.max_retry_after: float = math.inf if most is None else most
        self.budget: RetryBudget | None = budget
        self.before_sleep: Callable[[RetryState], None] | None = before_sleep
        self.name: str | None = name
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    def _describe(self) -> str:
        return "retry()"

    def _decorate(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """A sync or async wrapper specialised for the success path."""
        if inspect.iscoroutinefunction(fn):
            return self._decorate_async(fn)
        # The same steps as call(), inlined with the policy's fields bound as locals: this
        # is the cost of every successful call, so it is one frame and no attribute lookups.
        policy = self
        budget = self.budget
        on_result = self.on_result
        should_retry = self._should_retry
        timing = _timing
        monotonic = time.monotonic
        current_deadline = DEADLINE

        @functools.wraps(fn)
        def retrying(*args: Any, **kwargs: Any) -> Any:
            at = current_deadline.get()
            if at is not None and at <= monotonic():
                check_deadline("the first attempt")
            if budget is not None:
                budget.record_request()
            started = timing.clock()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not should_retry(exc):
                    raise
                return policy._retry_sync(_Run(policy, fn, args, kwargs, started), exc, None)
            if on_result is not None and on_result(result):
                return policy._retry_sync(_Run(policy, fn, args, kwargs, started), None, result)
            return result

        return retrying

    def _decorate_async(self, fn: Callable[P, Awaitable[Any]]) -> Callable[P, Any]:
        """The async twin of the inlined wrapper above (acall's steps, one coroutine frame).

        Deliberately not a shell over :meth:`acall`: one more coroutine per ``await`` is
        about 40% more overhead (measured with benchmarks/bench_resilience.py).
        """
        policy = self
        budget = self.budget
        on_result = self.on_result
        should_retry = self._should_retry
        timing = _timing
        monotonic = time.monotonic
        current_deadline = DEADLINE

        @functools.wraps(fn)
        async def retrying(*args: P.args, **kwargs: P.kwargs) -> Any:
            at = current_deadline.get()
            if at is not None and at <= monotonic():
                check_deadline("the first attempt")
            if budget is not None:
                budget.record_request()
            started = timing.clock()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                if not should_retry(exc):
                    raise
                run = _Run(policy, fn, args, kwargs, started)
                return await policy._retry_async(run, exc, None)
            if on_result is not None and on_result(result):
                run = _Run(policy, fn, args, kwargs, started)
                return await policy._retry_async(run, None, result)
            return result

        return retrying

    # -- the call paths ------------------------------------------------------------------
    # Thin shells: every decision is _Run's (no I/O); the shells only call, await and sleep.

    def _begin(self) -> float:
        """Before the first attempt: check the deadline, count the request, start the clock."""
        at = DEADLINE.get()  # a context-variable read, not a call to check_deadline()
        if at is not None and at <= time.monotonic():  # the deadline's own clock
            check_deadline("the first attempt")
        if self.budget is not None:
            self.budget.record_request()
        return _timing.clock()

    def _retryable(self, exc: Exception) -> Exception:
        """``exc`` if it is worth another attempt; otherwise it propagates at once."""
        if not self._should_retry(exc):
            raise exc
        return exc

    def _needs_retry(self, result: Any) -> bool:
        return self.on_result is not None and bool(self.on_result(result))

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)``, retrying per the policy.

        Example:
            >>> retry().call(int, "42")
            42
        """
        started = self._begin()  # nothing is allocated until an attempt fails
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            error = self._retryable(exc)
            result = self._retry_sync(_Run(self, fn, args, kwargs, started), error, None)
        else:
            if self._needs_retry(result):
                result = self._retry_sync(_Run(self, fn, args, kwargs, started), None, result)
        return result

    def _retry_sync(self, run: _Run, error: Exception | None, result: Any) -> Any:
        fn, args, kwargs = run.fn, run.args, run.kwargs
        assert fn is not None
        while (delay := run.after(error, result)) is not None:
            _timing.sleep(delay)
            try:
                error, result = None, fn(*args, **kwargs)
            except Exception as exc:
                error, result = self._retryable(exc), None
        return run.outcome(error, result)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)``, retrying per the policy.

        Example:
            >>> import asyncio
            >>> async def answer() -> int:
            ...     return 42
            >>> asyncio.run(retry().acall(answer))
            42
        """
        started = self._begin()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            run = _Run(self, fn, args, kwargs, started)
            return await self._retry_async(run, self._retryable(exc), None)  # type: ignore[no-any-return]
        if self._needs_retry(result):
            run = _Run(self, fn, args, kwargs, started)
            return await self._retry_async(run, None, result)  # type: ignore[no-any-return]
        return result

    async def _retry_async(self, run: _Run, error: Exception | None, result: Any) -> Any:
        fn, args, kwargs = run.fn, run.args, run.kwargs
        assert fn is not None
        while (delay := run.after(error, result)) is not None:
            await _timing.asleep(delay)
            try:
                error, result = None, await fn(*args, **kwargs)
            except Exception as exc:
                error, result = self._retryable(exc), None
        return run.outcome(error, result)

    # -- the block form ------------------------------------------------------------------

    def __iter__(self) -> Iterator[Attempt]:
        """Retry a block: ``for attempt in policy: with attempt: ...``.

        Example:
            >>> for attempt in retry(attempts=2):
            ...     with attempt:
            ...         value = attempt.number * 10
            >>> value
            10
        """
        run = _Run(self, None, (), {}, self._begin())
        yield (attempt := Attempt(self, run.attempt))
        while (delay := run.after(attempt.error, _BLOCK_DONE)) is not None:
            _timing.sleep(delay)
            yield (attempt := Attempt(self, run.attempt))
        run.outcome(attempt.error, None)

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        """Retry a block in async code: ``async for attempt in policy: with attempt: ...``.

        Example:
            >>> import asyncio
            >>> async def main() -> int:
            ...     async for attempt in retry():
            ...         with attempt:
            ...             return attempt.number
            ...     return 0
            >>> asyncio.run(main())
            1
        """
        run = _Run(self, None, (), {}, self._begin())
        yield (attempt := Attempt(self, run.attempt))
        while (delay := run.after(attempt.error, _BLOCK_DONE)) is not None:
            await _timing.asleep(delay)
            yield (attempt := Attempt(self, run.attempt))
        run.outcome(attempt.error, None)

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.attempts!r}, timeout={self.timeout!r}, "
            f"backoff={self.backoff!r}, budget={self.budget!r})"
        )


class Attempt:
    """One attempt of the block form; use it as a ``with`` block.

    A retryable exception raised in the block is swallowed and the loop goes on (after the
    backoff); a non-retryable one propagates at once; on giving up the last exception
    propagates from the ``for`` statement.

    Example:
        >>> attempt = Attempt(retry(), 1)
        >>> attempt.number
        1
    """

    __slots__ = ("_policy", "error", "number")

    def __init__(self, policy: Retry, number: int) -> None:
        self._policy = policy
        self.number: int = number
        #: The retryable exception this attempt raised, if any.
        self.error: BaseException | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # success, or cancellation/KeyboardInterrupt: never retried
        if not self._policy._should_retry(exc):
            return False
        self.error = exc
        return True


def retry(
    *,
    attempts: int | None = 3,
    timeout: float | None = None,
    on: RetryOn = is_transient,
    on_result: Callable[[Any], bool] | None = None,
    initial: float = 0.1,
    maximum: float = 10.0,
    multiplier: float = 2.0,
    jitter: Jitter = "full",
    max_retry_after: float = 60.0,
    budget: RetryBudget | None = None,
    before_sleep: Callable[[RetryState], None] | None = None,
    name: str | None = None,
) -> Retry:
    """Build a retry policy (a decorator, a ``.call``/``.acall`` runner and a block iterator).

    Args:
        attempts: Total attempts including the first; ``None`` = until ``timeout``.
        timeout: Total seconds for all attempts and waits; no wait ever ends past it.
        on: What to retry: exception types, a tuple of them, or a predicate. The default,
            :func:`utils.core.is_transient`, knows the drivers of installed packages.
        on_result: Retry when this returns True for a result (the last result is returned
            when attempts run out).
        initial: First backoff delay, seconds.
        maximum: Cap of any delay, seconds (applied before the jitter).
        multiplier: Exponential growth factor.
        jitter: ``"full"``, ``"equal"``, ``"decorrelated"`` or ``"none"``.
        max_retry_after: Longest ``retry_after`` (from a ``ThrottledError``, a
            ``RateLimitExceeded``, the ``Retry-After`` header of a raw httpx, requests or
            aiohttp 429/503 error...) honoured; a longer one ends the retries at once.
        budget: A :class:`RetryBudget` shared with other policies; when spent, the error
            propagates without retrying.
        before_sleep: Called with a :class:`RetryState` before each wait.
        name: Used in logs and metrics; defaults to the function's qualified name.

    Never retries ``BaseException``s that are not ``Exception``s (cancellation,
    ``KeyboardInterrupt``); never starts an attempt past the :func:`utils.core.deadline`,
    nor sleeps past it. On giving up, the original exception propagates with a note saying
    how many attempts over how long.

    Example:
        >>> @retry(attempts=5, on=TimeoutError, timeout=30)
        ... def fetch() -> str:
        ...     return "data"
        >>> fetch()
        'data'
    """
    return Retry(
        attempts=attempts,
        timeout=timeout,
        on=on,
        on_result=on_result,
        backoff=Backoff(initial=initial, maximum=maximum, multiplier=multiplier, jitter=jitter),
        max_retry_after=max_retry_after,
        budget=budget,
        before_sleep=before_sleep,
        name=name,
    )
