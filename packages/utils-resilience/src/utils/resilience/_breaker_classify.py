"""What counts as a failure of the dependency: the default rule and the checks of ``on=``.

Private: :func:`counts_as_failure` is public through :mod:`utils.resilience.breaker`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import cast

from utils.core import OperationTimeoutError, ValidationError, is_transient
from utils.resilience._breaker_state import Exclusion, FailurePredicate

__all__ = ["check_exclusions", "counts_as_failure", "make_predicate"]


_TIMEOUTS = (OperationTimeoutError, TimeoutError, asyncio.TimeoutError)


def counts_as_failure(exc: BaseException) -> bool:
    """The default ``on`` of a :class:`~utils.resilience.CircuitBreaker`: transient errors, timeouts.

    :func:`utils.core.is_transient` (connection errors, 5xx/throttling of installed drivers,
    ``UnavailableError``...) plus every timeout, including
    :class:`~utils.core.OperationTimeoutError`, which is not retryable but says the
    dependency is too slow — exactly what a breaker is for. A ``NotFoundError`` or a
    ``ValueError`` says nothing about the dependency's health and is not counted.

    Example:
        >>> from utils.core import NotFoundError
        >>> counts_as_failure(ConnectionResetError()), counts_as_failure(NotFoundError("x"))
        (True, False)
        >>> counts_as_failure(OperationTimeoutError("deadline exceeded"))
        True
    """
    return isinstance(exc, _TIMEOUTS) or is_transient(exc)


def make_predicate(on: object) -> FailurePredicate:
    if on is None:
        return counts_as_failure
    if isinstance(on, type) and issubclass(on, BaseException):
        exc_type: type[BaseException] = on

        def is_instance(exc: BaseException) -> bool:
            return isinstance(exc, exc_type)

        return is_instance
    if isinstance(on, tuple) and on:
        if all(isinstance(item, type) and issubclass(item, BaseException) for item in on):
            exc_types: tuple[type[BaseException], ...] = on

            def is_any(exc: BaseException) -> bool:
                return isinstance(exc, exc_types)

            return is_any
    elif callable(on):
        return cast("FailurePredicate", on)
    raise ValidationError(
        f"on= takes an exception type, a non-empty tuple of them, or a predicate "
        f"(exception -> bool), got {on!r}"
    )


def check_exclusions(exclude: Iterable[object]) -> list[Exclusion]:
    checked: list[Exclusion] = []
    for item in exclude:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise ValidationError(
                    f"exclude= takes exception types or predicates, got {item!r}"
                )
            checked.append(item)
        elif callable(item):
            checked.append(item)
        else:
            raise ValidationError(f"exclude= takes exception types or predicates, got {item!r}")
    return checked
