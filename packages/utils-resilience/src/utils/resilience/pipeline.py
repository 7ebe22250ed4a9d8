"""Compose strategies into one: ``pipeline(timeout(2), retry(), breaker, limiter, bulkhead)``.

Strategies are listed outermost first, like Polly's resilience pipelines. The recommended
order, and why:

1. :func:`~utils.resilience.timeout` — the budget for the *whole* operation, retries and
   waits included (it sets the deadline every inner stage and ``utils`` helper honours).
2. :func:`~utils.resilience.retry` — retries the stages inside it. It honours the
   ``retry_after`` of a :class:`~utils.resilience.CircuitOpenError` or
   :class:`~utils.resilience.RateLimitExceeded`, so it backs off as long as they ask.
3. :class:`~utils.resilience.CircuitBreaker` — inside the retry, so *each attempt* is
   counted and an open circuit stops the retries quickly instead of hammering.
4. :class:`~utils.resilience.RateLimiter` — inside the breaker, so refused calls never count
   as failures of the dependency.
5. :class:`~utils.resilience.Bulkhead` — innermost, so a slot is held only while the call
   really runs, never while waiting for a retry.

Example:
    >>> from utils.resilience import retry, timeout
    >>> guarded = pipeline(timeout(2), retry(attempts=3))
    >>> guarded.call(pow, 2, 10)
    1024
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from utils.core import ValidationError
from utils.resilience._strategy import Strategy

__all__ = ["Pipeline", "pipeline"]

P = ParamSpec("P")
R = TypeVar("R")


class Pipeline(Strategy):
    """Strategies applied in order, outermost first; build it with :func:`pipeline`.

    Example:
        >>> from utils.resilience import timeout
        >>> len(Pipeline([timeout(1), timeout(2)]).strategies)
        2
    """

    __slots__ = ("strategies",)

    def __init__(self, strategies: Sequence[Strategy]) -> None:
        flat: list[Strategy] = []
        for strategy in strategies:
            if isinstance(strategy, Pipeline):
                flat.extend(strategy.strategies)
            elif isinstance(strategy, Strategy):
                flat.append(strategy)
            else:
                raise ValidationError(
                    f"pipeline() takes resilience strategies (retry, timeout, CircuitBreaker, "
                    f"RateLimiter, Bulkhead), got {strategy!r}"
                )
        self.strategies: tuple[Strategy, ...] = tuple(flat)

    def _describe(self) -> str:
        return "pipeline(" + ", ".join(s._describe() for s in self.strategies) + ")"

    def _decorate(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate ``fn`` by nesting each strategy's own decorator, outermost first.

        Built once at decoration time, so a call pays only for the strategies themselves
        (each with its own specialised wrapper), not for assembling the chain.
        """
        wrapped = fn
        for strategy in reversed(self.strategies):
            wrapped = strategy(wrapped)
        return wrapped

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` through every strategy, outermost first.

        Example:
            >>> pipeline().call(len, "abc")
            3
        """
        strategies = self.strategies
        depth = len(strategies)

        def stage(index: int) -> R:
            if index == depth:
                return fn(*args, **kwargs)
            return strategies[index].call(stage, index + 1)

        # Strategies name what they guard after the function (retry logs, breaker errors).
        stage.__qualname__ = getattr(fn, "__qualname__", stage.__qualname__)
        return stage(0)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn`` through every strategy, outermost first.

        Example:
            >>> import asyncio
            >>> async def ping() -> str:
            ...     return "pong"
            >>> asyncio.run(pipeline().acall(ping))
            'pong'
        """
        strategies = self.strategies
        depth = len(strategies)

        async def stage(index: int) -> Any:
            if index == depth:
                return await fn(*args, **kwargs)
            return await strategies[index].acall(stage, index + 1)

        stage.__qualname__ = getattr(fn, "__qualname__", stage.__qualname__)

        result: R = await stage(0)
        return result

    def __repr__(self) -> str:
        return self._describe()


def pipeline(*strategies: Strategy) -> Pipeline:
    """Compose ``strategies`` (outermost first) into one decorator / ``.call`` / ``.acall``.

    Example:
        >>> from utils.resilience import Bulkhead, retry, timeout
        >>> @pipeline(timeout(2), retry(attempts=3), Bulkhead(10))
        ... def handler(x: int) -> int:
        ...     return x + 1
        >>> handler(1)
        2
    """
    return Pipeline(strategies)
