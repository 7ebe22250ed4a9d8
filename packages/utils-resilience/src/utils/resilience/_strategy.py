"""The shape every resilience strategy shares: ``call``, ``acall`` and use as a decorator.

A strategy implements :meth:`Strategy.call` and :meth:`Strategy.acall`; this base turns them
into a decorator for sync and async functions (signatures preserved for type checkers) and
lets :func:`~utils.resilience.pipeline` nest strategies without knowing what they are.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")


def reject_generators(fn: Callable[..., Any], what: str) -> None:
    """Decorating a generator would only guard its creation, not its iteration: refuse."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} cannot decorate the generator function {fn.__qualname__!r}: it would "
            "only guard creating the generator, not running it. Decorate a function that "
            "consumes it, or use the block form."
        )


class Strategy(ABC):
    """Base class of retry policies, breakers, limiters, timeouts, bulkheads and pipelines.

    Example:
        >>> from utils.resilience import retry
        >>> policy = retry(attempts=2)
        >>> policy.call(lambda x: x * 2, 21)
        42
    """

    __slots__ = ()

    @abstractmethod
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` under this strategy."""

    @abstractmethod
    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` under this strategy."""

    def _describe(self) -> str:
        return type(self).__name__

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function.

        Raises:
            TypeError: for generator functions, which cannot be guarded by a wrapper.
        """
        reject_generators(fn, self._describe())
        return self._decorate(fn)

    def _decorate(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The wrapper of ``fn`` (generator functions are already refused).

        Strategies whose success path matters override it with a specialised wrapper; the
        public, overloaded :meth:`__call__` stays here, once.
        """
        if inspect.iscoroutinefunction(fn):
            acall = self.acall

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await acall(fn, *args, **kwargs)

            return async_wrapper

        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return call(fn, *args, **kwargs)

        return wrapper
