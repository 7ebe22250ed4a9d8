"""The exception taxonomy shared by every ``utils`` package.

Every error raised by a ``utils`` helper is a :class:`UtilsError`. Meaning-classes
(:class:`NotFoundError`, :class:`ConflictError`, :class:`TransientError`, ...) say *what
happened*; each package adds an origin-class (``AWSError``, ``DatabaseError``, ...) that says
*where*, and its concrete errors inherit from both, so callers can catch either way::

    try:
        user = repo.get(42)
    except NotFoundError:
        user = None

The family's tree, by meaning (``retryable`` is the class default, which
:func:`utils.core.is_transient` and ``utils.resilience.retry`` read; the concrete errors of
each package in brackets)::

    UtilsError                      retryable=False
    ├── ConfigError                 [PluginError, AWSConfigError]
    ├── ValidationError             [CacheValueError, AWSValidationError, DataError,
    │                                ConstraintViolationError > ForeignKeyViolationError,
    │                                CheckViolationError, NotNullViolationError,
    │                                HTTPBadRequestError]
    ├── NotFoundError               [AWSNotFoundError, RecordNotFoundError, HTTPNotFoundError]
    ├── ConflictError               [AWSConflictError, UniqueViolationError,
    │                                ExclusionViolationError, HTTPConflictError]
    ├── PermissionDeniedError       [AWSPermissionDeniedError, DatabasePermissionError,
    │                                HTTPPermissionDeniedError]
    ├── OperationTimeoutError       [ResilienceTimeoutError, QueryTimeoutError,
    │                                LockTimeoutError, AWSTimeoutError,
    │                                HTTPRequestTimeoutError, HTTPGatewayTimeoutError]
    └── TransientError              retryable=True  [SerializationError, DeadlockError,
        │                            HTTPServerError, HTTPRequestTimeoutError]
        ├── UnavailableError        [CacheUnavailableError, CircuitOpenError,
        │                            BulkheadFullError, RateLimitStorageError,
        │                            DatabaseUnavailableError > PoolTimeoutError,
        │                            AWSUnavailableError, HTTPUnavailableError >
        │                            HTTPGatewayTimeoutError]
        └── ThrottledError          [RateLimitExceeded, AWSThrottledError, HTTPThrottledError]

    Origin only (no meaning class fits; retryable=False): CacheIntegrityError,
    ReentrantComputeError (CacheError), StorageError, HTTPStatusError and HTTPClientError
    (ResilienceError; their retryable follows the HTTP status), CommitUnknownError,
    TransactionStateError (DatabaseError).

Origins: ``CacheError`` (utils-cache), ``ResilienceError`` (utils-resilience),
``DatabaseError`` (utils-db), ``AWSError`` (utils-aws). An operation timing out is not
retryable by default (the budget is spent); a single error can say otherwise with
``retryable=True``.
"""

from __future__ import annotations

import pickle
from typing import Any, ClassVar

__all__ = [
    "ConfigError",
    "ConflictError",
    "NotFoundError",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "ThrottledError",
    "TransientError",
    "UnavailableError",
    "UtilsError",
    "ValidationError",
]


def _rebuild(
    cls: type[UtilsError], args: tuple[Any, ...], state: dict[str, Any], cause: Any
) -> UtilsError:
    # Bypasses __init__ so subclasses with any constructor signature unpickle correctly.
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    if cause is not None:
        error.__cause__ = cause
    return error


class UtilsError(Exception):
    """Root of every error raised by the ``utils`` packages.

    Args:
        message: A sentence saying what went wrong and, where possible, how to fix it.
        code: A stable, machine-readable identifier; defaults to the class's ``default_code``.
        details: Extra structured facts (never secrets); shown in logs, not in ``str()``.
        retryable: Whether retrying may help; defaults to the class's ``default_retryable``.
        retry_after: Seconds the caller should wait before retrying, when known.

    Example:
        >>> err = UtilsError("queue is full", code="queue_full", details={"size": 10})
        >>> str(err), err.code, err.details, err.retryable
        ('queue is full', 'queue_full', {'size': 10}, False)
    """

    default_code: ClassVar[str] = "utils_error"
    default_retryable: ClassVar[bool] = False

    code: str
    details: dict[str, Any]
    retryable: bool
    retry_after: float | None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code if code is not None else self.default_code
        self.details = dict(details) if details else {}
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))

    @property
    def from_dependency(self) -> bool:
        """Whether the error reports a dependency's failure rather than the caller's mistake.

        True for an error translated from a driver (it has the driver's exception as
        ``__cause__``, which is how every family package raises one); error classes that
        describe a dependency's answer without a cause (an upstream HTTP status) say True
        themselves. HTTP answers use it (:func:`utils.core.problems.http_status_for`): a 403
        from a dependency is the server's problem, not the client's.

        Example:
            >>> PermissionDeniedError("not yours").from_dependency
            False
            >>> try:
            ...     try:
            ...         raise OSError("EACCES")
            ...     except OSError as exc:
            ...         raise PermissionDeniedError("cannot read the key file") from exc
            ... except PermissionDeniedError as err:
            ...     err.from_dependency
            True
        """
        return self.__cause__ is not None

    @property
    def message(self) -> str:
        """The human-readable message the error was created with.

        Example:
            >>> NotFoundError("user 42 does not exist").message
            'user 42 does not exist'
        """
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        text = self.message or self.code
        if self.retry_after is not None:
            text = f"{text} (retry after {self.retry_after:g}s)"
        return text

    def __repr__(self) -> str:
        parts = [repr(self.message), f"code={self.code!r}"]
        if self.retryable != self.default_retryable:
            parts.append(f"retryable={self.retryable!r}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        cause = self.__cause__
        if cause is not None:
            try:
                # Round-trip, not just dumps: some causes pickle but cannot be rebuilt
                # (botocore's ClientError has a two-argument __init__).
                pickle.loads(pickle.dumps(cause))  # noqa: S301 - our own bytes, just made
            except Exception:  # an unusable cause must not make the error unpicklable
                cause = None
        return (_rebuild, (type(self), self.args, dict(self.__dict__), cause))


class ConfigError(UtilsError):
    """Configuration is missing or invalid (environment variables, settings, arguments).

    Example:
        >>> raise ConfigError("UTILS_REDIS_URL is not set; export it or pass url=")
        Traceback (most recent call last):
        ...
        utils.core.errors.ConfigError: UTILS_REDIS_URL is not set; export it or pass url=
    """

    default_code = "config_error"


class ValidationError(UtilsError):
    """A value given by the caller is not acceptable.

    Example:
        >>> ValidationError("ttl must be positive, got -1").code
        'validation_error'
    """

    default_code = "validation_error"


class NotFoundError(UtilsError):
    """The requested thing does not exist.

    Example:
        >>> NotFoundError("no object 'a.txt' in bucket 'b'").code
        'not_found'
    """

    default_code = "not_found"


class ConflictError(UtilsError):
    """The operation conflicts with the current state (duplicate key, version mismatch).

    Example:
        >>> ConflictError("user 'ann' already exists").code
        'conflict'
    """

    default_code = "conflict"


class PermissionDeniedError(UtilsError):
    """The caller is not allowed to do this (credentials valid, rights missing).

    Example:
        >>> PermissionDeniedError("role cannot read bucket 'b'").code
        'permission_denied'
    """

    default_code = "permission_denied"


class OperationTimeoutError(UtilsError):
    """An operation ran out of time: its own timeout or the ambient :func:`deadline`.

    Example:
        >>> OperationTimeoutError("deadline exceeded before query").code
        'timeout'
    """

    default_code = "timeout"


class TransientError(UtilsError):
    """A failure that may go away by itself; retrying is likely to help.

    Example:
        >>> TransientError("connection reset").retryable
        True
    """

    default_code = "transient"
    default_retryable = True


class UnavailableError(TransientError):
    """A dependency is down or unreachable right now.

    Example:
        >>> UnavailableError("redis is unreachable").code
        'unavailable'
    """

    default_code = "unavailable"


class ThrottledError(TransientError):
    """The caller is being rate limited; ``retry_after`` says how long to wait when known.

    Example:
        >>> str(ThrottledError("slow down", retry_after=2))
        'slow down (retry after 2s)'
    """

    default_code = "throttled"
