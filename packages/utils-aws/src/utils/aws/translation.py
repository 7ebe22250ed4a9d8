"""``translate(exc)``: botocore exceptions become ``AWSError`` subclasses that carry meaning.

=====================================================================  ==========================
AWS answer                                                             raised as
=====================================================================  ==========================
NoSuchKey, NoSuchBucket, ResourceNotFound, ParameterNotFound, ...,     :class:`AWSNotFoundError`
``head_object``'s bare 404
AccessDenied, 403 (never "missing"), expired or invalid tokens         :class:`AWSPermissionDeniedError`
Throttling, SlowDown, ProvisionedThroughputExceeded,                   :class:`AWSThrottledError`
RequestLimitExceeded, TooManyRequests, 429                             (``retry_after`` when sent)
ConditionalCheckFailed, TransactionConflict, 409, 412                  :class:`AWSConflictError`
ValidationException, InvalidParameter..., ParamValidationError         :class:`AWSValidationError`
endpoint and connection errors, socket timeouts, 5xx                   :class:`AWSUnavailableError`
a socket timeout while a :func:`utils.core.deadline` is active         :class:`AWSTimeoutError`
no credentials, no region, unknown profile                             :class:`AWSConfigError`
anything else                                                          :class:`AWSError`
=====================================================================  ==========================

``details`` holds ``code``, ``operation``, ``status`` and ``request_id`` (when AWS answered)
and ``attempts`` (HTTP attempts botocore made). A :class:`~utils.core.UtilsError` passes
through unchanged; the original exception is always the ``__cause__``.

**One retry budget.** botocore retries transient failures itself (``standard`` mode,
``max_attempts`` from :class:`~utils.aws.AWSSettings`). An error that comes out *after*
botocore retried has spent the budget, so it is translated with ``retryable=False``:
``@retry()`` from utils-resilience around the call does not multiply the attempts. With
``max_attempts=1`` botocore does not retry and transient errors stay ``retryable=True``, so
``@retry()`` owns the budget instead.

Example:
    >>> from botocore.exceptions import ClientError
    >>> error = ClientError(
    ...     {"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."},
    ...      "ResponseMetadata": {"HTTPStatusCode": 404, "RequestId": "R1"}},
    ...     "GetObject",
    ... )
    >>> err = translate(error)
    >>> type(err).__name__, err.details["code"], err.details["status"]
    ('AWSNotFoundError', 'NoSuchKey', 404)
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from botocore import exceptions as bx

from utils.aws.errors import (
    AWSConfigError,
    AWSConflictError,
    AWSError,
    AWSNotFoundError,
    AWSPermissionDeniedError,
    AWSThrottledError,
    AWSTimeoutError,
    AWSUnavailableError,
    AWSValidationError,
)
from utils.core import UtilsError, deadline_at

__all__ = ["EXPIRED_TOKEN_CODES", "THROTTLING_CODES", "error_code", "translate"]

_NOT_FOUND = frozenset(
    {
        "NoSuchKey",
        "NoSuchBucket",
        "NoSuchUpload",
        "NoSuchVersion",
        "NoSuchEntity",
        "NotFound",
        "NotFoundException",
        "404",
        "ResourceNotFound",
        "ResourceNotFoundException",
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "TableNotFoundException",
        "FunctionNotFound",
    }
)
#: Codes meaning "the temporary credentials expired": the cached client is rebuilt.
EXPIRED_TOKEN_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "RequestExpired"}
)
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "AuthorizationError",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "KMSAccessDeniedException",
        "403",
        "Forbidden",
    }
    | EXPIRED_TOKEN_CODES
)
#: Codes meaning "slow down" (botocore's standard retry mode retries them too).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        "429",
    }
)
_CONFLICT = frozenset(
    {
        "ConditionalCheckFailedException",
        "TransactionConflictException",
        "TransactionCanceledException",
        "PreconditionFailed",
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "ResourceInUseException",
        "ResourceExistsException",
        "ParameterAlreadyExists",
        "QueueAlreadyExists",
        "QueueNameExists",
        "OperationAborted",
        "409",
        "412",
    }
)
_INVALID = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterException",
        "InvalidParameterCombination",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidRequestException",
        "MalformedPolicyDocument",
        "InvalidBucketName",
        "KeyTooLongError",
        "EntityTooLarge",
        "MissingParameter",
        "SerializationException",
        "InvalidAttributeValue",
        "BatchRequestTooLong",
        "TooManyEntriesInBatchRequest",
        "EmptyBatchRequest",
    }
)
_BY_CODE: tuple[tuple[frozenset[str], type[AWSError]], ...] = (
    (_NOT_FOUND, AWSNotFoundError),
    (_DENIED, AWSPermissionDeniedError),
    (THROTTLING_CODES, AWSThrottledError),
    (_CONFLICT, AWSConflictError),
    (_INVALID, AWSValidationError),
)
_BY_STATUS = {
    404: AWSNotFoundError,
    403: AWSPermissionDeniedError,
    401: AWSPermissionDeniedError,
    429: AWSThrottledError,
    409: AWSConflictError,
    412: AWSConflictError,
}
_CONFIG_ERRORS: tuple[type[BaseException], ...] = (
    bx.NoCredentialsError,
    bx.PartialCredentialsError,
    bx.NoRegionError,
    bx.ProfileNotFound,
    bx.CredentialRetrievalError,
    bx.TokenRetrievalError,
    bx.UnknownServiceError,
    bx.InvalidConfigError,
)
_TIMEOUTS: tuple[type[BaseException], ...] = (bx.ReadTimeoutError, bx.ConnectTimeoutError)
_CONNECTION: tuple[type[BaseException], ...] = (bx.ConnectionError, bx.HTTPClientError)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else).

    Example:
        >>> from botocore.exceptions import ClientError
        >>> error_code(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
        'SlowDown'
        >>> error_code(ValueError()) is None
        True
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def _retry_after(headers: dict[str, Any]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _class_for(code: str, status: int | None) -> type[AWSError]:
    for codes, cls in _BY_CODE:
        if code in codes:
            return cls
    if status is not None:
        if status >= 500:
            return AWSUnavailableError
        found = _BY_STATUS.get(status)
        if found is not None:
            return found
    return AWSError


def _service_of(exc: BaseException) -> str:
    service = getattr(exc, "utils_aws_service", None)
    return f"{service} " if service else ""


def _translate_client_error(exc: bx.ClientError, retried: bool | None) -> AWSError:
    response: dict[str, Any] = dict(exc.response or {})
    error: dict[str, Any] = response.get("Error") or {}
    meta: dict[str, Any] = response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "Unknown")
    status = meta.get("HTTPStatusCode")
    status = int(status) if isinstance(status, int) else None
    operation = exc.operation_name
    headers: dict[str, Any] = meta.get("HTTPHeaders") or {}
    attempts = int(meta.get("RetryAttempts") or 0) + 1
    details: dict[str, Any] = {
        "code": code,
        "operation": operation,
        "status": status,
        "request_id": (
            meta.get("RequestId") or headers.get("x-amz-request-id") or error.get("RequestId")
        ),
        "attempts": attempts,
    }
    cls = _class_for(code, status)
    message = str(error.get("Message") or "").strip()
    text = f"AWS {_service_of(exc)}{operation} failed: {code}"
    if status is not None:
        text += f" (HTTP {status})"
    if message and message != code:
        text += f": {message}"
    spent = attempts > 1 if retried is None else retried
    transient = issubclass(cls, AWSThrottledError | AWSUnavailableError)
    return cls(
        text,
        details=details,
        retryable=transient and not spent,
        retry_after=_retry_after(headers) if cls is AWSThrottledError else None,
    )


def translate(exc: BaseException, *, retried: bool | None = None) -> UtilsError:  # noqa: PLR0911
    """Return the :class:`~utils.core.UtilsError` that says what ``exc`` means.

    The result is returned, not raised: ``raise translate(exc) from exc``.

    Args:
        exc: Any exception raised by boto3/botocore (other exceptions become a plain
            :class:`AWSError`; a :class:`~utils.core.UtilsError` is returned as it is).
        retried: Whether botocore already retried the call (its attempts are spent, so a
            transient error is marked ``retryable=False``). ``None``: infer it from the
            response (``RetryAttempts``); errors without a response count as not retried.

    Example:
        >>> from botocore.exceptions import EndpointConnectionError
        >>> err = translate(EndpointConnectionError(endpoint_url="https://s3.example"))
        >>> type(err).__name__, err.retryable
        ('AWSUnavailableError', True)
        >>> translate(EndpointConnectionError(endpoint_url="x"), retried=True).retryable
        False
    """
    if isinstance(exc, UtilsError):
        return exc
    spent = bool(retried)
    if isinstance(exc, bx.ClientError):
        return _translate_client_error(exc, retried)
    name = type(exc).__name__
    details: dict[str, Any] = {"code": name}
    if isinstance(exc, _CONFIG_ERRORS):
        return AWSConfigError(f"AWS configuration problem: {exc}", details=details)
    if isinstance(exc, bx.ParamValidationError):
        return AWSValidationError(f"invalid AWS request: {exc}", details=details)
    if isinstance(exc, _TIMEOUTS) and deadline_at() is not None:
        return AWSTimeoutError(f"deadline exceeded waiting for AWS: {exc}", details=details)
    if isinstance(exc, _CONNECTION):
        return AWSUnavailableError(
            f"AWS is unreachable: {exc}", details=details, retryable=not spent
        )
    nested = exc.__cause__ or exc.__context__
    if isinstance(nested, bx.BotoCoreError | bx.ClientError):
        # boto3's transfer errors (S3UploadFailedError) wrap the botocore error.
        return translate(nested, retried=retried)
    return AWSError(f"AWS call failed: {name}: {exc}", details=details)
