"""The ``utils.transient`` classifier for raw psycopg errors (entry point ``psycopg``).

:func:`utils.core.is_transient` asks it about exceptions that did not go through a
:mod:`utils.db` helper (code that uses psycopg directly). It recognises psycopg's exceptions
by their module, so it never imports psycopg: an exception raised by psycopg means psycopg is
already loaded.

Transient: connection failures and losses (``OperationalError`` without a SQLSTATE, class
``08``), admin or crash shutdown (``57P01``-``57P03``), too many connections (``53300``),
serialization failures (``40001``), deadlocks (``40P01``) and psycopg_pool's ``PoolTimeout``.
Everything else psycopg raises (constraint violations, syntax errors) is permanent.

Example:
    >>> class OperationalError(Exception):
    ...     sqlstate = "40001"
    >>> OperationalError.__module__ = "psycopg.errors"
    >>> classify_psycopg_error(OperationalError())
    True
    >>> classify_psycopg_error(ValueError("not psycopg")) is None
    True
"""

from __future__ import annotations

from utils.db._sqlstate import is_transient_state

__all__ = ["classify_psycopg_error"]

_CONNECTION_CLASSES = frozenset({"OperationalError", "PoolTimeout", "TooManyRequests"})


def classify_psycopg_error(exc: BaseException) -> bool | None:
    """True/False for psycopg and psycopg_pool exceptions, None (no opinion) for others.

    Example:
        >>> classify_psycopg_error(KeyError("x")) is None
        True
    """
    module = type(exc).__module__
    if not (module == "psycopg" or module.startswith(("psycopg.", "psycopg_pool"))):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return is_transient_state(sqlstate)
    return type(exc).__name__ in _CONNECTION_CLASSES
