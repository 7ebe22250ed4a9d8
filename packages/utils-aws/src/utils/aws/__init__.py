"""utils-aws: boto3 helpers — cached clients, error translation, S3, SQS, DynamoDB, secrets.

``client("s3")`` is a cached, thread-safe, fork-safe, deadline-aware boto3 client; the
helpers (:class:`S3`, :class:`SQS`, :class:`DynamoTable`, :func:`get_secret`,
:func:`get_parameter` ...) call AWS through it and raise :class:`AWSError` subclasses that
carry meaning (``except NotFoundError``). ``import utils.aws`` does not import boto3: every
name is loaded on first use.

Example:
    >>> from utils.aws import S3, client
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     _ = client("s3").create_bucket(Bucket="reports")
    ...     _ = S3("reports").put_json("2026/12.json", {"total": 3})
    ...     S3("reports").get_json("2026/12.json")
    {'total': 3}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from utils.core.lazy import lazy_exports

if TYPE_CHECKING:
    from utils.aws.clients import clear_clients, client, resource
    from utils.aws.dynamodb import DynamoTable
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
    from utils.aws.handler import lambda_handler, process_sqs_batch
    from utils.aws.parameters import (
        Parameters,
        clear_parameter_cache,
        get_parameter,
        get_parameters_by_path,
        get_secret,
    )
    from utils.aws.s3 import S3, DeleteResult
    from utils.aws.settings import AWSSettings
    from utils.aws.sqs import SQS, ConsumeResult, Message, SendFailure
    from utils.aws.translation import translate

__version__ = "0.1.0"

__all__ = [
    "S3",
    "SQS",
    "AWSConfigError",
    "AWSConflictError",
    "AWSError",
    "AWSNotFoundError",
    "AWSPermissionDeniedError",
    "AWSSettings",
    "AWSThrottledError",
    "AWSTimeoutError",
    "AWSUnavailableError",
    "AWSValidationError",
    "ConsumeResult",
    "DeleteResult",
    "DynamoTable",
    "Message",
    "Parameters",
    "SendFailure",
    "__version__",
    "clear_clients",
    "clear_parameter_cache",
    "client",
    "get_parameter",
    "get_parameters_by_path",
    "get_secret",
    "lambda_handler",
    "process_sqs_batch",
    "resource",
    "translate",
]

_ERRORS = "utils.aws.errors"
__getattr__: Callable[[str], Any]
__dir__: Callable[[], list[str]]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "client": "utils.aws.clients",
        "resource": "utils.aws.clients",
        "clear_clients": "utils.aws.clients",
        "DynamoTable": "utils.aws.dynamodb",
        "AWSConfigError": _ERRORS,
        "AWSConflictError": _ERRORS,
        "AWSError": _ERRORS,
        "AWSNotFoundError": _ERRORS,
        "AWSPermissionDeniedError": _ERRORS,
        "AWSThrottledError": _ERRORS,
        "AWSTimeoutError": _ERRORS,
        "AWSUnavailableError": _ERRORS,
        "AWSValidationError": _ERRORS,
        "lambda_handler": "utils.aws.handler",
        "process_sqs_batch": "utils.aws.handler",
        "Parameters": "utils.aws.parameters",
        "clear_parameter_cache": "utils.aws.parameters",
        "get_parameter": "utils.aws.parameters",
        "get_parameters_by_path": "utils.aws.parameters",
        "get_secret": "utils.aws.parameters",  # nosec B105 - a module name, not a password
        "S3": "utils.aws.s3",
        "DeleteResult": "utils.aws.s3",
        "AWSSettings": "utils.aws.settings",
        "SQS": "utils.aws.sqs",
        "ConsumeResult": "utils.aws.sqs",
        "Message": "utils.aws.sqs",
        "SendFailure": "utils.aws.sqs",
        "translate": "utils.aws.translation",
    },
)
