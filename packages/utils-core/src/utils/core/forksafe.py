"""Objects that own locks, made safe across ``os.fork()``.

``fork()`` copies a lock in whatever state it had in the parent. When another thread held it
at that instant (a cache evicting, a rate limiter deciding, a breaker recording a failure),
the child inherits a lock whose owner does not exist there, and its first use waits
forever. Pre-fork servers (gunicorn, uWSGI, Celery's prefork pool, ``multiprocessing`` with
the fork start method) fork exactly like that.

Every family object that owns a lock registers a *reset* function here; one
``os.register_at_fork(after_in_child=...)`` hook calls each with its object in the child, so
the object can replace its locks (and drop state that belonged to the parent's threads).
Objects are held weakly: registering costs one dictionary insertion per object, nothing per
call.

Example:
    >>> import threading
    >>> class Counter:
    ...     def __init__(self) -> None:
    ...         self.lock = threading.Lock()
    ...         reset_after_fork(self, Counter._new_lock)
    ...
    ...     def _new_lock(self) -> None:
    ...         self.lock = threading.Lock()
    >>> counter = Counter()
    >>> registered(counter)
    True
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["registered", "reset_after_fork"]

T = TypeVar("T")

# Two passes: objects that bound another object's lock methods into fast closures (the
# in-memory rate limiter) rebuild them after every lock has been replaced.
_first: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_late: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def reset_after_fork(owner: T, reset: Callable[[T], None], *, late: bool = False) -> None:
    """Call ``reset(owner)`` in every child process forked while ``owner`` is alive.

    Args:
        owner: The object that owns locks (it must support weak references: give a class
            with ``__slots__`` a ``"__weakref__"`` slot).
        reset: Replaces ``owner``'s locks; runs in the child, single-threaded, before any
            other code of the child.
        late: Run after every other reset (for objects that hold bound methods of other
            objects' locks).
    """
    with _guard:
        (_late if late else _first)[owner] = reset


def registered(owner: object) -> bool:
    """Whether ``owner`` has a reset registered (for tests).

    Example:
        >>> registered(object())
        False
    """
    try:
        return owner in _first or owner in _late
    except TypeError:  # not weak-referenceable: it cannot be registered
        return False


def _after_fork_in_child() -> None:
    global _guard  # noqa: PLW0603 - the parent's guard may have been held at fork time
    _guard = threading.Lock()
    for table in (_first, _late):
        # list(): the table must not change size while iterated (a reset may allocate).
        for owner, reset in list(table.items()):
            reset(owner)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
