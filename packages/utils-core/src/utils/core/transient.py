"""Answer "is retrying this exception likely to help?" for any exception.

:func:`is_transient` looks at :attr:`UtilsError.retryable` first, then asks the classifiers
that installed packages register through the ``utils.transient`` entry-point group (botocore
throttling, psycopg connection loss, redis timeouts, ...), then a few stdlib facts. This is
how ``utils.resilience.retry`` retries raw driver errors without importing any driver.

Example:
    >>> from utils.core import TransientError, NotFoundError, is_transient
    >>> is_transient(TransientError("connection reset")), is_transient(NotFoundError("x"))
    (True, False)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeAlias

from utils.core.errors import UtilsError

__all__ = [
    "TransientClassifier",
    "is_transient",
    "register_transient_classifier",
    "unregister_transient_classifier",
]

TransientClassifier: TypeAlias = Callable[[BaseException], "bool | None"]
"""A function that returns True (transient), False (permanent) or None (no opinion)."""

#: Classifiers registered at run time, consulted before the entry-point ones.
_registered: list[TransientClassifier] = []
_from_entry_points: list[TransientClassifier] | None = None
_load_lock = threading.Lock()
#: Classifiers that already raised once: we log each only once so a hot retry loop
#: cannot flood the logs.
_reported: set[int] = set()

# Standard-library exceptions that are transient by nature.
_STDLIB_TRANSIENT = (ConnectionError, TimeoutError)


def register_transient_classifier(classifier: TransientClassifier) -> TransientClassifier:
    """Register ``classifier`` for code that is not an installed distribution.

    Returns the classifier unchanged, so it works as a decorator. Distributions should
    declare an entry point in the ``utils.transient`` group instead.

    Example:
        >>> @register_transient_classifier
        ... def busy(exc: BaseException) -> bool | None:
        ...     return True if "server busy" in str(exc) else None
        >>> is_transient(RuntimeError("server busy"))
        True
        >>> unregister_transient_classifier(busy)
    """
    candidate: object = classifier  # untyped callers can pass anything
    if not callable(candidate):
        from utils.core.errors import ValidationError

        raise ValidationError(
            f"a transient classifier must be callable, got {type(classifier).__name__}"
        )
    _registered.append(classifier)
    return classifier


def unregister_transient_classifier(classifier: TransientClassifier) -> None:
    """Remove a classifier added with :func:`register_transient_classifier`.

    Example:
        >>> f = register_transient_classifier(lambda exc: None)
        >>> unregister_transient_classifier(f)
    """
    if classifier in _registered:
        _registered.remove(classifier)


def _entry_point_classifiers() -> list[TransientClassifier]:
    global _from_entry_points  # noqa: PLW0603 - a lazily filled, process-wide cache
    if _from_entry_points is None:
        with _load_lock:
            if _from_entry_points is None:
                from utils.core import plugins

                _from_entry_points = [
                    classifier
                    for classifier in plugins.load("utils.transient").values()
                    if callable(classifier)
                ]
    return _from_entry_points


def _ask(classifier: TransientClassifier, exc: BaseException) -> bool | None:
    try:
        return classifier(exc)
    except Exception as error:  # a broken classifier must never break the caller
        if id(classifier) not in _reported:
            _reported.add(id(classifier))
            from utils.core.log import get_logger

            get_logger("utils.core.transient").warning(
                "transient.classifier_failed",
                classifier=getattr(classifier, "__qualname__", repr(classifier)),
                error=f"{type(error).__name__}: {error}",
            )
        return None


def _builtin(exc: BaseException) -> bool | None:
    """The classifiers utils-core ships for drivers several family members share.

    Recognised by the exception's module, so the driver is never imported here (an
    exception raised by redis-py means redis-py is already loaded).
    """
    module = type(exc).__module__
    if module.startswith("redis.") or module == "redis":
        try:
            from utils.core.redis import is_transient_error
        except ImportError:  # a redis-py older than the family supports: no opinion
            return None
        return is_transient_error(exc)
    return None


def is_transient(exc: BaseException) -> bool:
    """Return True when retrying the operation that raised ``exc`` is likely to help.

    Order: a :class:`UtilsError` answers with its ``retryable``; ``BaseException``s that are
    not ``Exception``s (cancellation, ``KeyboardInterrupt``) are never transient; then run-time
    classifiers, then the built-in ones (redis-py errors: see
    :func:`utils.core.redis.is_transient_error`), then ``utils.transient`` entry points (first
    definite answer wins); finally
    ``ConnectionError`` and ``TimeoutError`` are transient and everything else is not.

    Example:
        >>> is_transient(ConnectionResetError()), is_transient(ValueError("bad"))
        (True, False)
    """
    if isinstance(exc, UtilsError):
        return exc.retryable
    if not isinstance(exc, Exception):
        return False
    for classifier in _registered:
        verdict = _ask(classifier, exc)
        if verdict is not None:
            return bool(verdict)
    verdict = _builtin(exc)
    if verdict is not None:
        return verdict
    for classifier in _entry_point_classifiers():
        verdict = _ask(classifier, exc)
        if verdict is not None:
            return bool(verdict)
    return isinstance(exc, _STDLIB_TRANSIENT)
