"""Lambda helpers: context binding, cold start, partial batch failures."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from utils.aws import handler as handler_module
from utils.aws import lambda_handler, process_sqs_batch
from utils.core import get_context


def test_lambda_handler_binds_and_clears_context(monkeypatch: Any) -> None:
    monkeypatch.setattr(handler_module, "_cold", True)
    seen: list[dict[str, Any]] = []

    @lambda_handler
    def handle(event: Any, context: Any) -> str:
        seen.append(get_context())
        return "done"

    context = SimpleNamespace(aws_request_id="r-1", function_name="fn")
    assert handle({}, context) == "done"
    assert handle({}, SimpleNamespace(aws_request_id="r-2", function_name="fn")) == "done"
    assert seen == [
        {"aws_request_id": "r-1", "function_name": "fn", "cold_start": True},
        {"aws_request_id": "r-2", "function_name": "fn", "cold_start": False},
    ]
    assert get_context() == {}
    assert handle.__name__ == "handle"


def test_process_sqs_batch(utils_logs: list[dict[str, Any]]) -> None:
    arn = "arn:aws:sqs:eu-west-1:1:q"
    event = {
        "Records": [{"messageId": str(n), "body": str(n), "eventSourceARN": arn} for n in range(5)]
    }
    handled: list[str] = []

    def work(record: dict[str, Any]) -> None:
        if record["body"] in ("1", "3"):
            raise ValueError("no")
        handled.append(record["body"])

    assert process_sqs_batch(event, work) == {
        "batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]
    }
    assert handled == ["0", "2", "4"]
    failed = [e for e in utils_logs if e["event"] == "aws.lambda.record_failed"]
    assert [e["message_id"] for e in failed] == ["1", "3"]
    assert failed[0]["source"] == "q"
    assert process_sqs_batch({"Records": []}, work) == {"batchItemFailures": []}
    assert process_sqs_batch({}, work) == {"batchItemFailures": []}


def test_fifo_stops_at_the_first_failure() -> None:
    arn = "arn:aws:sqs:eu-west-1:1:q.fifo"
    event = {
        "Records": [{"messageId": str(n), "body": str(n), "eventSourceARN": arn} for n in range(4)]
    }
    handled: list[str] = []

    def work(record: dict[str, Any]) -> None:
        if record["body"] == "1":
            raise ValueError("no")
        handled.append(record["body"])

    failures = process_sqs_batch(event, work)["batchItemFailures"]
    assert [f["itemIdentifier"] for f in failures] == ["1", "2", "3"]
    assert handled == ["0"]
