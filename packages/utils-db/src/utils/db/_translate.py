"""Translate psycopg / psycopg_pool exceptions into :mod:`utils.db.errors` (the one table)."""

from __future__ import annotations

from typing import Any

from utils.db._dsn import redact_dsn
from utils.db._sqlstate import is_unavailable_state
from utils.db.errors import (
    CheckViolationError,
    ConstraintViolationError,
    DatabaseError,
    DatabasePermissionError,
    DatabaseUnavailableError,
    DataError,
    DeadlockError,
    ExclusionViolationError,
    ForeignKeyViolationError,
    LockTimeoutError,
    NotNullViolationError,
    QueryTimeoutError,
    SerializationError,
    UniqueViolationError,
)

__all__ = ["is_connection_loss", "translate"]

#: SQLSTATE -> (error class, message template). Templates use only names from the
#: diagnostics (constraint, table, column), never values: no row data in messages.
_BY_STATE: dict[str, tuple[type[DatabaseError], str]] = {
    "23505": (UniqueViolationError, "unique constraint {constraint!r} violated{on_table}"),
    "23P01": (ExclusionViolationError, "exclusion constraint {constraint!r} violated{on_table}"),
    "23503": (ForeignKeyViolationError, "foreign key {constraint!r} violated{on_table}"),
    "23514": (CheckViolationError, "check constraint {constraint!r} violated{on_table}"),
    "23502": (NotNullViolationError, "column {column!r}{on_table} must not be null"),
    "40001": (SerializationError, "serialization failure: re-run the whole transaction"),
    "40P01": (DeadlockError, "deadlock detected: re-run the whole transaction"),
    "57014": (
        QueryTimeoutError,
        "statement cancelled: statement_timeout (capped by the deadline) ran out",
    ),
    "55P03": (LockTimeoutError, "lock not granted within lock_timeout"),
    "42501": (DatabasePermissionError, "permission denied: {primary}"),
}
#: SQLSTATE class (first two characters) -> (error class, message template).
_BY_CLASS: dict[str, tuple[type[DatabaseError], str]] = {
    "23": (ConstraintViolationError, "integrity constraint {constraint!r} violated{on_table}"),
    # Class 22 messages quote the offending value ('invalid input syntax for type integer:
    # "abc"'): only the condition name is shown.
    "22": (DataError, "invalid value ({condition}, SQLSTATE {sqlstate})"),
    "28": (DatabasePermissionError, "authentication failed: {primary}"),
}


def _diag_fields(exc: Any) -> dict[str, Any]:
    diag = getattr(exc, "diag", None)
    if diag is None:
        return {}
    fields = {
        "constraint": diag.constraint_name,
        "table": diag.table_name,
        "column": diag.column_name,
        "schema": diag.schema_name,
    }
    return {key: value for key, value in fields.items() if value}


def is_connection_loss(exc: BaseException) -> bool:
    """True for a psycopg error that means the connection failed or was lost."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return is_unavailable_state(sqlstate)
    return type(exc).__name__ in ("OperationalError", "InterfaceError") and type(
        exc
    ).__module__.startswith("psycopg")


def translate(exc: BaseException, *, operation: str) -> DatabaseError:
    """The :class:`DatabaseError` for psycopg exception ``exc`` (set it as ``__cause__``)."""
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    fields = _diag_fields(exc)
    details: dict[str, Any] = {"operation": operation, **fields}
    if sqlstate:
        details["sqlstate"] = sqlstate
    diag = getattr(exc, "diag", None)
    primary = redact_dsn(str(getattr(diag, "message_primary", None) or exc).strip())
    found = _BY_STATE.get(sqlstate or "") or _BY_CLASS.get((sqlstate or "")[:2])
    if found is not None:
        cls, template = found
        table = fields.get("table")
        message = template.format(
            constraint=fields.get("constraint"),
            column=fields.get("column"),
            on_table=f" on table {table!r}" if table else "",
            condition=type(exc).__name__,
            sqlstate=sqlstate,
            primary=primary,
        )
    elif is_connection_loss(exc):
        cls, message = DatabaseUnavailableError, f"database unavailable: {primary}"
    else:
        cls, message = DatabaseError, primary
    return cls(f"{message} (during {operation})", details=details)
