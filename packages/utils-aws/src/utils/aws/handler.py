"""AWS Lambda helpers: a logging-context decorator and partial-batch SQS processing.

``@lambda_handler`` binds ``aws_request_id``, ``function_name`` and ``cold_start`` into the
log context (:func:`utils.core.bind_context`) for the invocation and removes them when it
returns, so nothing leaks into the next invocation of a warm container.

``process_sqs_batch(event, fn)`` calls ``fn`` for every record of an SQS event and returns
``{"batchItemFailures": [...]}`` naming the records that failed (enable
``ReportBatchItemFailures`` on the event source mapping): only those are redelivered. For a
FIFO queue it stops at the first failure and reports that record and every later one, so
order within a message group is kept.

Example:
    >>> event = {"Records": [{"messageId": "1", "body": "ok", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q"},
    ...                      {"messageId": "2", "body": "boom", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q"}]}
    >>> def work(record: dict) -> None:
    ...     if record["body"] == "boom":
    ...         raise ValueError("cannot")
    >>> process_sqs_batch(event, work)
    {'batchItemFailures': [{'itemIdentifier': '2'}]}
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from utils.core import bind_context
from utils.core.report import Event

__all__ = ["lambda_handler", "process_sqs_batch"]

R = TypeVar("R")

LAMBDA_RECORD_FAILED = Event(
    "aws.lambda.record_failed", logger="utils.aws", level="warning", tags=("source", "error")
)

_cold = True
_cold_lock = threading.Lock()


def _take_cold_start() -> bool:
    global _cold
    with _cold_lock:
        cold, _cold = _cold, False
    return cold


def lambda_handler(fn: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
    """Bind the invocation's request id, function name and cold start into the log context.

    Example:
        >>> from types import SimpleNamespace
        >>> from utils.core import get_context
        >>> @lambda_handler
        ... def handle(event, context):
        ...     return sorted(get_context())
        >>> handle({}, SimpleNamespace(aws_request_id="r-1", function_name="fn"))
        ['aws_request_id', 'cold_start', 'function_name']
        >>> get_context()
        {}
    """

    @functools.wraps(fn)
    def handler(event: Any, context: Any) -> R:
        with bind_context(
            aws_request_id=getattr(context, "aws_request_id", None),
            function_name=getattr(context, "function_name", None),
            cold_start=_take_cold_start(),
        ):
            return fn(event, context)

    return handler


def process_sqs_batch(
    event: Mapping[str, Any], fn: Callable[[dict[str, Any]], object]
) -> dict[str, list[dict[str, str]]]:
    """Run ``fn`` on each SQS record; return the ``batchItemFailures`` response.

    Example:
        >>> fifo = "arn:aws:sqs:eu-west-1:1:q.fifo"
        >>> event = {"Records": [{"messageId": str(n), "body": str(n), "eventSourceARN": fifo}
        ...                      for n in range(4)]}
        >>> def work(record: dict) -> None:
        ...     if record["body"] == "1":
        ...         raise ValueError("cannot")
        >>> [f["itemIdentifier"] for f in process_sqs_batch(event, work)["batchItemFailures"]]
        ['1', '2', '3']
    """
    records = list(event.get("Records") or ())
    failures: list[dict[str, str]] = []
    for index, record in enumerate(records):
        try:
            fn(record)
        except Exception as exc:
            source = str(record.get("eventSourceARN", ""))
            LAMBDA_RECORD_FAILED.emit(
                source=source.rsplit(":", 1)[-1],
                error=type(exc).__name__,
                message_id=record.get("messageId"),
            )
            if source.endswith(".fifo"):
                failures += [{"itemIdentifier": str(r["messageId"])} for r in records[index:]]
                break
            failures.append({"itemIdentifier": str(record["messageId"])})
    return {"batchItemFailures": failures}
