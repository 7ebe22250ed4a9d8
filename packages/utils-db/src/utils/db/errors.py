"""The errors of utils-db: one origin class, each concrete error also a core meaning class.

Every psycopg error that leaves a :mod:`utils.db` call is translated into one of these, with
the psycopg exception as ``__cause__``, the SQLSTATE in ``details["sqlstate"]`` and, for
constraint violations, the constraint (and table/column when the server says) in
``details``. Messages never contain row data: PostgreSQL's ``DETAIL`` line (``Key
(email)=(ann@example.com) already exists``) stays on the cause, out of logs.

Catch by meaning (``except ConflictError``) or by origin (``except DatabaseError``).

Example:
    >>> from utils.core import ConflictError
    >>> error = UniqueViolationError(
    ...     "unique constraint 'users_email_key' violated", details={"constraint": "users_email_key"}
    ... )
    >>> isinstance(error, ConflictError), isinstance(error, DatabaseError)
    (True, True)
"""

from __future__ import annotations

from utils.core import (
    ConflictError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
    TransientError,
    UnavailableError,
    UtilsError,
    ValidationError,
)

__all__ = [
    "CheckViolationError",
    "CommitUnknownError",
    "ConstraintViolationError",
    "DataError",
    "DatabaseError",
    "DatabasePermissionError",
    "DatabaseUnavailableError",
    "DeadlockError",
    "ExclusionViolationError",
    "ForeignKeyViolationError",
    "LockTimeoutError",
    "NotNullViolationError",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "RecordNotFoundError",
    "SerializationError",
    "TransactionStateError",
    "UniqueViolationError",
]


class DatabaseError(UtilsError):
    """Origin class of every error raised by :mod:`utils.db`.

    ``details`` holds ``sqlstate`` (when the server sent one) and, where known,
    ``constraint``, ``table``, ``column`` and ``operation``.

    Example:
        >>> DatabaseError("syntax error at or near 'selec'", details={"sqlstate": "42601"}).code
        'database_error'
    """

    default_code = "database_error"


class UniqueViolationError(DatabaseError, ConflictError):
    """A unique or primary-key constraint refused the row (SQLSTATE 23505).

    Example:
        >>> UniqueViolationError("duplicate key").code
        'unique_violation'
    """

    default_code = "unique_violation"


class ExclusionViolationError(DatabaseError, ConflictError):
    """An exclusion constraint refused the row (SQLSTATE 23P01).

    Example:
        >>> ExclusionViolationError("overlapping booking").code
        'exclusion_violation'
    """

    default_code = "exclusion_violation"


class ConstraintViolationError(DatabaseError, ValidationError):
    """A row broke a foreign-key, check or not-null constraint (SQLSTATE class 23).

    Example:
        >>> ConstraintViolationError("bad row").code
        'constraint_violation'
    """

    default_code = "constraint_violation"


class ForeignKeyViolationError(ConstraintViolationError):
    """A foreign key refused the row (SQLSTATE 23503).

    Example:
        >>> ForeignKeyViolationError("no such user").code
        'foreign_key_violation'
    """

    default_code = "foreign_key_violation"


class CheckViolationError(ConstraintViolationError):
    """A check constraint refused the row (SQLSTATE 23514).

    Example:
        >>> CheckViolationError("price must be positive").code
        'check_violation'
    """

    default_code = "check_violation"


class NotNullViolationError(ConstraintViolationError):
    """A NOT NULL column got a NULL (SQLSTATE 23502).

    Example:
        >>> NotNullViolationError("name is required").code
        'not_null_violation'
    """

    default_code = "not_null_violation"


class DataError(DatabaseError, ValidationError):
    """A value the server could not accept: bad syntax for its type, out of range (class 22).

    Example:
        >>> DataError("invalid input value").code
        'data_error'
    """

    default_code = "data_error"


class DatabasePermissionError(DatabaseError, PermissionDeniedError):
    """The role lacks a privilege (SQLSTATE 42501) or failed to authenticate (28xxx).

    Example:
        >>> DatabasePermissionError("permission denied for table users").code
        'permission_denied'
    """

    default_code = "permission_denied"


class DatabaseUnavailableError(DatabaseError, UnavailableError):
    """The server cannot be reached, is shutting down, or refuses more connections.

    Retryable. ``retry_after`` is set while an outage is known (calls fail fast until the
    next probe).

    Example:
        >>> DatabaseUnavailableError("connection refused").retryable
        True
    """

    default_code = "database_unavailable"


class PoolTimeoutError(DatabaseUnavailableError):
    """No pooled connection became free (or could be made) within the pool timeout.

    ``details`` names the pool size and the wait, so the fix (a bigger pool, shorter
    transactions) is obvious from the log line.

    Example:
        >>> PoolTimeoutError("no connection free after 5s", details={"max_size": 10}).code
        'pool_timeout'
    """

    default_code = "pool_timeout"


class SerializationError(DatabaseError, TransientError):
    """The transaction lost a serialization conflict (SQLSTATE 40001): re-run all of it.

    Example:
        >>> SerializationError("could not serialize access").retryable
        True
    """

    default_code = "serialization_failure"


class DeadlockError(DatabaseError, TransientError):
    """The server broke a deadlock by aborting this transaction (SQLSTATE 40P01).

    Example:
        >>> DeadlockError("deadlock detected").retryable
        True
    """

    default_code = "deadlock_detected"


class QueryTimeoutError(DatabaseError, OperationTimeoutError):
    """The statement was cancelled: ``statement_timeout`` (capped by the deadline) ran out.

    Example:
        >>> QueryTimeoutError("statement cancelled after 0.2s").code
        'query_timeout'
    """

    default_code = "query_timeout"


class LockTimeoutError(DatabaseError, OperationTimeoutError):
    """A lock (an advisory lock, a row lock under ``lock_timeout``) was not granted in time.

    Example:
        >>> LockTimeoutError("advisory lock 42 not granted within 1s").code
        'lock_timeout'
    """

    default_code = "lock_timeout"


class CommitUnknownError(DatabaseError):
    """The connection died during ``COMMIT``: the transaction may or may not have committed.

    Never retried automatically: re-running would apply the work twice if it did commit.
    Check the outcome (an idempotency key, a read) before trying again.

    Example:
        >>> CommitUnknownError("connection lost during COMMIT").retryable
        False
    """

    default_code = "commit_unknown"


class RecordNotFoundError(DatabaseError, NotFoundError):
    """``fetch_required`` found no row.

    Example:
        >>> RecordNotFoundError("no row for the query").code
        'not_found'
    """

    default_code = "not_found"


class TransactionStateError(DatabaseError):
    """A call that cannot work in the current transaction state (a bug in the caller).

    Raised by :meth:`~utils.db.Database.run_in_transaction` inside an outer transaction (it
    could only retry a savepoint, not the transaction that failed).

    Example:
        >>> TransactionStateError("already in a transaction").code
        'transaction_state'
    """

    default_code = "transaction_state"
