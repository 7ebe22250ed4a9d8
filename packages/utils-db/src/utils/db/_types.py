"""Type aliases and small value types shared by both shells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from psycopg import sql

__all__ = ["Notification", "Params", "Query", "Row", "T", "Table"]

#: A statement: text, or SQL composed with :mod:`psycopg.sql`.
Query: TypeAlias = "str | bytes | sql.SQL | sql.Composed"
#: Statement parameters: a sequence for ``%s``, a mapping for ``%(name)s``.
Params: TypeAlias = "Sequence[Any] | Mapping[str, Any] | None"
#: A row as returned without ``as_``.
Row: TypeAlias = "dict[str, Any]"
#: A table: ``"name"``, ``"schema.name"`` or ``("schema", "name")`` (always quoted).
Table: TypeAlias = "str | Sequence[str]"
T = TypeVar("T")


@dataclass(frozen=True)
class Notification:
    """One ``NOTIFY`` received by :meth:`~utils.db.Database.listen`.

    Example:
        >>> Notification("jobs", "42", 1234).payload
        '42'
    """

    channel: str
    payload: str
    pid: int
