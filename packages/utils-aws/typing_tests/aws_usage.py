"""Type-checked usage of the public API (mypy --strict runs over this file; pytest does not)."""

from __future__ import annotations

from typing import Any

from utils.aws import (
    S3,
    SQS,
    AWSError,
    AWSSettings,
    ConsumeResult,
    DeleteResult,
    DynamoTable,
    Message,
    Parameters,
    SendFailure,
    client,
    get_parameter,
    get_secret,
    lambda_handler,
    process_sqs_batch,
    translate,
)
from utils.core import NotFoundError, UtilsError


def s3_usage(bucket: S3) -> tuple[bytes, str, bool, DeleteResult, list[str]]:
    """S3 methods return plain values."""
    data: bytes = bucket.get_bytes("k")
    etag: str = bucket.put_text("k", "v")
    exists: bool = bucket.exists("k")
    deleted: DeleteResult = bucket.delete_prefix("tmp/")
    keys: list[str] = list(bucket.list_keys("a/"))
    url: str = bucket.presign_get("k", expires=60)
    assert url
    return data, etag, exists, deleted, keys


def sqs_usage(queue: SQS) -> ConsumeResult:
    """send_many returns failures; consume takes a Message handler."""
    failures: list[SendFailure] = queue.send_many(["a", {"MessageBody": "b"}])
    assert not failures

    def handle(message: Message) -> None:
        assert message.body

    return queue.consume(handle, wait_time=0, max_messages=10)


def dynamo_usage(table: DynamoTable) -> dict[str, Any] | None:
    """Get returns the item or None."""
    table.put({"id": "a"})
    return table.get({"id": "a"})


def errors_usage(exc: Exception) -> str:
    """Translate returns a UtilsError to raise."""
    error: UtilsError = translate(exc)
    if isinstance(error, NotFoundError | AWSError):
        return error.code
    return str(error)


def parameters_usage(store: Parameters) -> Any:
    """Settings fields are typed; values are Any (Secret, str, dict, bytes)."""
    settings: AWSSettings = AWSSettings.from_env({})
    assert settings.max_attempts >= 1
    return store.get_secret("db"), get_secret("db"), get_parameter("/p"), client("s3")


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """lambda_handler keeps the signature."""
    return process_sqs_batch(event, print)
