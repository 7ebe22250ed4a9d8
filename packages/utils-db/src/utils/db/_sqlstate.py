"""What a SQLSTATE means to the family, without importing psycopg (I/O-free, driver-free)."""

from __future__ import annotations

__all__ = ["UNAVAILABLE_STATES", "is_transient_state", "is_unavailable_state"]

#: SQLSTATEs that mean "the server is going away or refuses connections right now".
UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
#: SQLSTATEs where re-running the whole transaction is the documented fix.
RETRY_STATES = frozenset({"40001", "40P01"})


def is_unavailable_state(sqlstate: str | None) -> bool:
    """True for connection exceptions (class 08), admin/crash shutdown, too many connections."""
    if not sqlstate:
        return False
    return sqlstate.startswith("08") or sqlstate in UNAVAILABLE_STATES


def is_transient_state(sqlstate: str | None) -> bool:
    """True when retrying is likely to help: unavailable, serialization failure, deadlock."""
    return sqlstate in RETRY_STATES or is_unavailable_state(sqlstate)
