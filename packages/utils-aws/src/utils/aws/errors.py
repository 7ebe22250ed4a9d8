"""Errors raised by utils.aws: each is an ``AWSError`` and, where it fits, a core meaning-class.

Catch by meaning (``except NotFoundError``) or by origin (``except AWSError``). Every error
translated from botocore keeps the original as ``__cause__`` and carries ``details``:
``code`` (the AWS error code), ``operation``, ``status`` (HTTP), ``request_id`` and, once
botocore already retried, ``attempts``.

Example:
    >>> from utils.core import NotFoundError, TransientError
    >>> isinstance(AWSNotFoundError("no object 'a.txt'"), NotFoundError)
    True
    >>> issubclass(AWSThrottledError, TransientError)
    True
"""

from __future__ import annotations

from utils.core import (
    ConfigError,
    ConflictError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
    ThrottledError,
    UnavailableError,
    UtilsError,
    ValidationError,
)

__all__ = [
    "AWSConfigError",
    "AWSConflictError",
    "AWSError",
    "AWSNotFoundError",
    "AWSPermissionDeniedError",
    "AWSThrottledError",
    "AWSTimeoutError",
    "AWSUnavailableError",
    "AWSValidationError",
]


class AWSError(UtilsError):
    """Origin class of every error raised by ``utils.aws``.

    Example:
        >>> AWSError("S3 GetObject failed: InvalidObjectState").code
        'aws_error'
    """

    default_code = "aws_error"


class AWSNotFoundError(AWSError, NotFoundError):
    """The bucket, key, queue, table, secret or parameter does not exist (never a 403).

    Example:
        >>> AWSNotFoundError("no such key").code
        'aws_not_found'
    """

    default_code = "aws_not_found"


class AWSPermissionDeniedError(AWSError, PermissionDeniedError):
    """The credentials are valid but not allowed to do this (AccessDenied, 403), or expired.

    Example:
        >>> AWSPermissionDeniedError("AccessDenied").retryable
        False
    """

    default_code = "aws_permission_denied"


class AWSThrottledError(AWSError, ThrottledError):
    """AWS asked us to slow down (Throttling, SlowDown, 429 ...); ``retry_after`` when sent.

    Example:
        >>> AWSThrottledError("SlowDown", retry_after=2).retry_after
        2.0
    """

    default_code = "aws_throttled"


class AWSConflictError(AWSError, ConflictError):
    """A condition failed or the thing exists already (ConditionalCheckFailed, 409, 412).

    Example:
        >>> AWSConflictError("ConditionalCheckFailedException").code
        'aws_conflict'
    """

    default_code = "aws_conflict"


class AWSUnavailableError(AWSError, UnavailableError):
    """AWS could not be reached or answered 5xx (endpoint, connection, socket timeout).

    Example:
        >>> AWSUnavailableError("S3 answered 503").retryable
        True
    """

    default_code = "aws_unavailable"


class AWSTimeoutError(AWSError, OperationTimeoutError):
    """The call ran out of the time left by :func:`utils.core.deadline`.

    Example:
        >>> AWSTimeoutError("deadline exceeded during S3 GetObject").code
        'aws_timeout'
    """

    default_code = "aws_timeout"


class AWSValidationError(AWSError, ValidationError):
    """The request was refused as malformed (bad parameter, ValidationException).

    Example:
        >>> AWSValidationError("Key must be a string").code
        'aws_validation_error'
    """

    default_code = "aws_validation_error"


class AWSConfigError(AWSError, ConfigError):
    """No credentials, no region, an unknown profile: fix the configuration, then retry.

    Example:
        >>> AWSConfigError("no AWS region: set AWS_REGION or UTILS_AWS_REGION").code
        'aws_config_error'
    """

    default_code = "aws_config_error"
