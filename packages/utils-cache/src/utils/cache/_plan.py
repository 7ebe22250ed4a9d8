"""A planned operation: a generator that decides everything and yields the I/O it needs.

The sync and async twins of the package (``RedisCache`` / ``AsyncRedisCache`` and the
others) share one I/O-free plan per operation, written as a generator: it yields a *step*
(what to do), receives its outcome (or has its exception thrown in, to clean up or decide),
and returns the result. A sync shell performs each step directly, an async shell awaits it
— httpx's ``BaseClient`` model, with the logic written once.

Example:
    >>> def double() -> Generator[str, int, int]:
    ...     value = yield "read"
    ...     return value * 2
    >>> plan = Plan(double())
    >>> plan.step, plan.done
    ('read', False)
    >>> plan.advance(21)
    >>> plan.done, plan.result
    (True, 42)
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

__all__ = ["Plan"]


class Plan:
    """A running plan: the step to perform next, or the result once done."""

    __slots__ = ("_steps", "done", "result", "step")

    def __init__(self, steps: Generator[Any, Any, Any]) -> None:
        self._steps = steps
        self.done = False
        self.result: Any = None
        self.step: Any = None
        self.advance(None)

    def advance(self, outcome: Any, error: BaseException | None = None) -> None:
        """Hand the plan the outcome of the last step (or its exception, thrown in)."""
        try:
            if error is None:
                self.step = self._steps.send(outcome)
            else:
                self.step = self._steps.throw(error)
        except StopIteration as finished:
            self.done = True
            self.result = finished.value
