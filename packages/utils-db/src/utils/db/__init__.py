"""utils-db: PostgreSQL on psycopg 3 — a pool that survives restarts, retrying transactions, COPY.

:class:`Database` and :class:`AsyncDatabase` have the same methods and semantics. Rows are
dicts (or dataclasses with ``as_=``), every psycopg error is translated into a
:class:`DatabaseError` that also carries a core meaning class, statements honour
:func:`utils.core.deadline`, and ``import utils.db`` does not import psycopg.

Example:
    >>> import utils.db
    >>> from utils.db import Database, PostgresSettings, UniqueViolationError
    >>> db = Database("postgresql://app:s3cret@db.internal:5432/app", max_size=20)
    >>> db  # the password never shows
    <Database app@db.internal:5432/app pool=1..20 closed>
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from utils.core.lazy import lazy_exports
from utils.db.errors import (
    CheckViolationError,
    CommitUnknownError,
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
    PoolTimeoutError,
    QueryTimeoutError,
    RecordNotFoundError,
    SerializationError,
    TransactionStateError,
    UniqueViolationError,
)
from utils.db.settings import PostgresSettings

if TYPE_CHECKING:
    from utils.db._types import Notification
    from utils.db.async_database import AsyncDatabase
    from utils.db.database import Database

__version__ = "0.1.0"

__all__ = [
    "AsyncDatabase",
    "CheckViolationError",
    "CommitUnknownError",
    "ConstraintViolationError",
    "DataError",
    "Database",
    "DatabaseError",
    "DatabasePermissionError",
    "DatabaseUnavailableError",
    "DeadlockError",
    "ExclusionViolationError",
    "ForeignKeyViolationError",
    "LockTimeoutError",
    "NotNullViolationError",
    "Notification",
    "PoolTimeoutError",
    "PostgresSettings",
    "QueryTimeoutError",
    "RecordNotFoundError",
    "SerializationError",
    "TransactionStateError",
    "UniqueViolationError",
    "__version__",
]

# psycopg is imported on first use of these names, never by `import utils.db`.
__getattr__: Callable[[str], Any]
__dir__: Callable[[], list[str]]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AsyncDatabase": "utils.db.async_database",
        "Database": "utils.db.database",
        "Notification": "utils.db._types",
    },
)
