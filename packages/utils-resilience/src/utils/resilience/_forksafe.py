"""Locks that survive ``os.fork()``, through :mod:`utils.core.forksafe`.

``fork()`` copies a lock in whatever state it had in the parent. When another thread held
it at that instant (a rate limiter deciding, a breaker recording a failure), the child
inherits a lock whose owner does not exist there, and its first use waits forever. Every
strategy object that owns a lock registers here; utils-core's one ``os.register_at_fork``
hook then calls its ``_after_fork_in_child()`` in the child, which replaces the locks.

Objects that bound a lock's methods into fast closures (the in-memory rate limiter)
register with ``rebind=True``: they run once every lock is new.
"""

from __future__ import annotations

from typing import Protocol

from utils.core.forksafe import reset_after_fork


class ForkSafe(Protocol):
    """An object that owns locks and knows how to replace them in a forked child."""

    def _after_fork_in_child(self) -> None: ...


def _reset(obj: ForkSafe) -> None:
    obj._after_fork_in_child()  # looked up per object: subclasses extend it


def register(obj: ForkSafe, *, rebind: bool = False) -> None:
    """Call ``obj._after_fork_in_child()`` in every child forked from now on."""
    reset_after_fork(obj, _reset, late=rebind)
