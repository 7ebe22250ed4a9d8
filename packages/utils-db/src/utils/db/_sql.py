"""The SQL utils.db composes itself: identifiers only through :mod:`psycopg.sql`, never formatting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg import sql

from utils.core import ValidationError

__all__ = ["copy_in_sql", "copy_out_sql", "insert_sql", "listen_sql", "upsert_sql"]


def _names(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _identifier(name: str | Sequence[str], what: str) -> sql.Identifier:
    parts = name.split(".") if isinstance(name, str) else list(name)
    if not parts or not all(isinstance(part, str) and part for part in parts):
        raise ValidationError(f"{what} must be a non-empty name or (schema, name), got {name!r}")
    return sql.Identifier(*parts)


def _columns(names: Iterable[str], what: str) -> list[sql.Identifier]:
    listed = [names] if isinstance(names, str) else list(names)
    if not listed or not all(isinstance(name, str) and name for name in listed):
        raise ValidationError(f"{what} must be a non-empty list of column names, got {names!r}")
    return [sql.Identifier(name) for name in listed]


def _returning(returning: str | Sequence[str] | None) -> sql.Composable:
    if returning is None:
        return sql.SQL("")
    return sql.SQL(" RETURNING {}").format(sql.SQL(", ").join(_columns(returning, "returning")))


def insert_sql(
    table: str | Sequence[str], row: Mapping[str, Any], returning: Any
) -> tuple[sql.Composed, list[Any]]:
    """``INSERT INTO t (cols) VALUES (...) [RETURNING ...]`` and its parameters."""
    columns = _row_columns(row)
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}){}").format(
        _identifier(table, "table"),
        sql.SQL(", ").join(columns),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        _returning(returning),
    )
    return query, list(row.values())


def upsert_sql(
    table: str | Sequence[str],
    row: Mapping[str, Any],
    conflict: str | Sequence[str],
    update: Sequence[str] | None,
    returning: Any,
) -> tuple[sql.Composed, list[Any]]:
    """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET ... | DO NOTHING``."""
    insert, values = insert_sql(table, row, None)
    targets = _columns(conflict, "conflict")
    chosen = (
        [name for name in row if name not in set(_names(conflict))]
        if update is None
        else list(update)
    )
    if chosen:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(column)
                for column in _columns(chosen, "update")
            )
        )
    else:
        action = sql.SQL("DO NOTHING").format()
    query = sql.SQL("{} ON CONFLICT ({}) {}{}").format(
        insert, sql.SQL(", ").join(targets), action, _returning(returning)
    )
    return query, values


def copy_in_sql(
    table: str | Sequence[str], columns: Sequence[str]
) -> tuple[sql.Composed, sql.Composed]:
    """The ``LIMIT 0`` probe that yields the column types, and the binary COPY FROM."""
    target = _identifier(table, "table")
    names = sql.SQL(", ").join(_columns(columns, "columns"))
    probe = sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, target)
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names)
    return probe, copy


def copy_out_sql(query: str) -> tuple[sql.Composed, sql.Composed]:
    """The ``LIMIT 0`` probe of ``query``'s types, and the binary COPY TO."""
    if not isinstance(query, str) or not query.strip():
        raise ValidationError(f"copy_out needs a SELECT statement, got {query!r}")
    inner = sql.SQL(query.strip().rstrip(";"))  # the caller's own SQL, as for fetch_all
    probe = sql.SQL("SELECT * FROM ({}) AS utils_copy_out LIMIT 0").format(inner)
    copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(inner)
    return probe, copy


def _row_columns(row: Mapping[str, Any]) -> list[sql.Identifier]:
    if not isinstance(row, Mapping) or not row:
        raise ValidationError(f"row must be a non-empty mapping of column -> value, got {row!r}")
    return _columns(row, "row keys")


def listen_sql(channel: str) -> sql.Composed:
    """``LISTEN "channel"`` (the channel is an identifier, quoted)."""
    if not isinstance(channel, str) or not channel:
        raise ValidationError(f"channel must be a non-empty string, got {channel!r}")
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


def csv_copy_in_sql(
    table: str | Sequence[str], columns: Sequence[str] | None, header: bool
) -> sql.Composed:
    """``COPY t [(cols)] FROM STDIN (FORMAT CSV, HEADER ...)`` for the CLI's ``copy-in``."""
    names = (
        sql.SQL(" ({})").format(sql.SQL(", ").join(_columns(columns, "columns")))
        if columns
        else sql.SQL("")
    )
    return sql.SQL("COPY {}{} FROM STDIN (FORMAT CSV, HEADER {})").format(
        _identifier(table, "table"), names, sql.SQL("true" if header else "false")
    )


def csv_copy_out_sql(query: str, header: bool) -> sql.Composed:
    """``COPY (query) TO STDOUT (FORMAT CSV, HEADER ...)`` for the CLI's ``copy-out``."""
    copy_out_sql(query)  # the same checks as copy_out
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT CSV, HEADER {})").format(
        sql.SQL(query.strip().rstrip(";")), sql.SQL("true" if header else "false")
    )
