"""Every row of the translation table, details, retry_after, retried, and the classifier."""

from __future__ import annotations

import email.utils
import pickle
import time
from typing import Any

import pytest
from botocore import exceptions as bx
from botocore.exceptions import ClientError

from utils.aws import (
    S3,
    AWSConfigError,
    AWSConflictError,
    AWSError,
    AWSNotFoundError,
    AWSPermissionDeniedError,
    AWSThrottledError,
    AWSTimeoutError,
    AWSUnavailableError,
    AWSValidationError,
    client,
    translate,
)
from utils.aws.testing import mocked_aws
from utils.aws.transient import classify_botocore_error
from utils.aws.translation import error_code
from utils.core import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    UnavailableError,
    UtilsError,
    deadline,
    is_transient,
)


def client_error(
    code: str,
    status: int | None = 400,
    *,
    headers: dict[str, str] | None = None,
    retries: int = 0,
    operation: str = "GetObject",
) -> ClientError:
    meta: Any = {
        "RequestId": "RID",
        "HTTPHeaders": headers or {},
        "RetryAttempts": retries,
    }
    if status is not None:
        meta["HTTPStatusCode"] = status
    return ClientError(
        {"Error": {"Code": code, "Message": f"msg {code}"}, "ResponseMetadata": meta}, operation
    )


ROWS = [
    ("NoSuchKey", 404, AWSNotFoundError, NotFoundError),
    ("NoSuchBucket", 404, AWSNotFoundError, NotFoundError),
    ("ResourceNotFoundException", 400, AWSNotFoundError, NotFoundError),
    ("ParameterNotFound", 400, AWSNotFoundError, NotFoundError),
    ("AWS.SimpleQueueService.NonExistentQueue", 400, AWSNotFoundError, NotFoundError),
    ("404", 404, AWSNotFoundError, NotFoundError),
    ("AccessDenied", 403, AWSPermissionDeniedError, PermissionDeniedError),
    ("AccessDeniedException", 400, AWSPermissionDeniedError, PermissionDeniedError),
    ("403", 403, AWSPermissionDeniedError, PermissionDeniedError),
    ("ExpiredToken", 400, AWSPermissionDeniedError, PermissionDeniedError),
    ("Throttling", 400, AWSThrottledError, ThrottledError),
    ("ThrottlingException", 400, AWSThrottledError, ThrottledError),
    ("SlowDown", 503, AWSThrottledError, ThrottledError),
    ("ProvisionedThroughputExceededException", 400, AWSThrottledError, ThrottledError),
    ("RequestLimitExceeded", 400, AWSThrottledError, ThrottledError),
    ("TooManyRequestsException", 429, AWSThrottledError, ThrottledError),
    ("ConditionalCheckFailedException", 400, AWSConflictError, ConflictError),
    ("PreconditionFailed", 412, AWSConflictError, ConflictError),
    ("ValidationException", 400, AWSValidationError, AWSValidationError),
    ("InternalError", 500, AWSUnavailableError, UnavailableError),
    ("ServiceUnavailable", 503, AWSUnavailableError, UnavailableError),
    ("Whatever", 502, AWSUnavailableError, UnavailableError),
    ("Whatever", 404, AWSNotFoundError, NotFoundError),
    ("Whatever", 403, AWSPermissionDeniedError, PermissionDeniedError),
    ("Whatever", 429, AWSThrottledError, ThrottledError),
    ("Whatever", 409, AWSConflictError, ConflictError),
    ("InvalidObjectState", 400, AWSError, AWSError),
    ("Unmodelled", None, AWSError, AWSError),
]


@pytest.mark.parametrize(("code", "status", "cls", "meaning"), ROWS)
def test_translation_table(code: str, status: int | None, cls: type, meaning: type) -> None:
    original = client_error(code, status)
    error = translate(original)
    assert type(error) is cls
    assert isinstance(error, meaning)
    assert isinstance(error, AWSError)
    assert error.details == {
        "code": code,
        "operation": "GetObject",
        "status": status,
        "request_id": "RID",
        "attempts": 1,
    }
    assert error.retryable == issubclass(cls, AWSThrottledError | AWSUnavailableError)
    assert "GetObject" in str(error)
    assert code in str(error)


def test_403_is_never_missing() -> None:
    assert not isinstance(translate(client_error("AccessDenied", 403)), NotFoundError)


def test_head_object_bare_404_against_moto() -> None:
    with mocked_aws():
        client("s3").create_bucket(Bucket="bkt")
        with pytest.raises(AWSNotFoundError) as info:
            S3("bkt")._call("head_object", Bucket="bkt", Key="missing")
    assert info.value.details["code"] == "404"
    assert info.value.details["operation"] == "HeadObject"
    assert isinstance(info.value.__cause__, ClientError)


def test_missing_bucket_against_moto() -> None:
    with mocked_aws(), pytest.raises(NotFoundError) as info:
        S3("nobucket").get_bytes("k")
    assert info.value.details["code"] == "NoSuchBucket"


def test_retry_after_seconds_and_http_date() -> None:
    assert (
        translate(client_error("SlowDown", 503, headers={"retry-after": "3"})).retry_after == 3.0
    )
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    later = translate(client_error("Throttling", 400, headers={"retry-after": when}))
    assert later.retry_after is not None
    assert 50 < later.retry_after <= 60
    assert (
        translate(client_error("SlowDown", 503, headers={"retry-after": "soon"})).retry_after
        is None
    )
    assert translate(client_error("SlowDown", 503)).retry_after is None
    # Only throttling carries it.
    assert (
        translate(client_error("InternalError", 500, headers={"retry-after": "3"})).retry_after
        is None
    )


def test_retried_errors_are_not_retryable_again() -> None:
    spent = translate(client_error("SlowDown", 503, retries=2))
    assert spent.retryable is False
    assert spent.details["attempts"] == 3
    assert translate(client_error("SlowDown", 503), retried=True).retryable is False
    assert translate(client_error("SlowDown", 503, retries=2), retried=False).retryable is True


def test_connection_errors() -> None:
    for exc in (
        bx.EndpointConnectionError(endpoint_url="https://x"),
        bx.ConnectionClosedError(endpoint_url="https://x"),
        bx.ReadTimeoutError(endpoint_url="https://x"),
        bx.ConnectTimeoutError(endpoint_url="https://x"),
    ):
        error = translate(exc)
        assert type(error) is AWSUnavailableError
        assert error.retryable
        assert error.details["code"] == type(exc).__name__
        assert translate(exc, retried=True).retryable is False


def test_timeouts_under_a_deadline_are_timeouts() -> None:
    with deadline(10):
        error = translate(bx.ReadTimeoutError(endpoint_url="https://x"))
    assert type(error) is AWSTimeoutError
    assert not error.retryable


@pytest.mark.parametrize(
    "exc",
    [
        bx.NoCredentialsError(),
        bx.NoRegionError(),
        bx.ProfileNotFound(profile="nope"),
        bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_configuration_errors(exc: Exception) -> None:
    assert type(translate(exc)) is AWSConfigError


def test_param_validation_and_other_errors() -> None:
    assert (
        type(translate(bx.ParamValidationError(report="Bucket is required"))) is AWSValidationError
    )
    other = translate(bx.DataNotFoundError(data_path="x"))
    assert type(other) is AWSError
    assert type(translate(RuntimeError("boom"))) is AWSError


def test_wrapped_botocore_error_is_found() -> None:
    outer = RuntimeError("Failed to upload")
    outer.__cause__ = client_error("AccessDenied", 403)
    assert type(translate(outer)) is AWSPermissionDeniedError


def test_utils_errors_pass_through() -> None:
    error = UtilsError("mine")
    assert translate(error) is error


def test_translated_errors_pickle() -> None:
    error = translate(client_error("NoSuchKey", 404))
    error.__cause__ = client_error("NoSuchKey", 404)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is AWSNotFoundError
    assert again.details == error.details


def test_error_code() -> None:
    assert error_code(client_error("SlowDown")) == "SlowDown"
    assert error_code(ClientError({}, "X")) is None
    assert error_code(ValueError()) is None


def test_classifier_for_raw_botocore_errors() -> None:
    assert classify_botocore_error(client_error("SlowDown", 503)) is True
    assert classify_botocore_error(client_error("InternalError", 500)) is True
    assert classify_botocore_error(client_error("SlowDown", 503, retries=2)) is False
    assert classify_botocore_error(client_error("NoSuchKey", 404)) is False
    assert classify_botocore_error(bx.EndpointConnectionError(endpoint_url="x")) is True
    assert classify_botocore_error(bx.NoCredentialsError()) is False
    assert classify_botocore_error(ValueError()) is None
    # Through utils.core.is_transient and the installed entry point.
    assert is_transient(client_error("Throttling"))
    assert not is_transient(client_error("AccessDenied", 403))
