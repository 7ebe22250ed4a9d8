"""SQS helpers: send, send_many (batches, retries of failed entries), the consumer loop."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests._stubs import StubServer

from utils.aws import SQS, AWSNotFoundError, ConsumeResult, Message, SendFailure, client
from utils.aws.testing import mocked_aws
from utils.core import InMemorySink, ValidationError
from utils.core.testing import wait_until


@pytest.fixture
def queue() -> Iterator[SQS]:
    with mocked_aws():
        yield SQS(client("sqs").create_queue(QueueName="jobs")["QueueUrl"])


def bodies(queue: SQS) -> list[str]:
    found: list[str] = []
    queue.consume(lambda m: found.append(m.body), wait_time=0, max_messages=1000, batch_size=10)
    return found


def drain(queue: SQS, limit: int = 100) -> list[str]:
    found: list[str] = []
    while True:
        response = client("sqs").receive_message(QueueUrl=queue.queue_url, MaxNumberOfMessages=10)
        messages = response.get("Messages", [])
        if not messages:
            return found
        found += [m["Body"] for m in messages]
        for m in messages:
            client("sqs").delete_message(
                QueueUrl=queue.queue_url, ReceiptHandle=m["ReceiptHandle"]
            )


def test_send(queue: SQS) -> None:
    message_id = queue.send(
        "hello",
        delay_seconds=0,
        attributes={"kind": {"DataType": "String", "StringValue": "greeting"}},
    )
    assert message_id
    got: list[Message] = []
    queue.consume(got.append, wait_time=0, max_messages=1)
    assert got[0].body == "hello"
    assert got[0].id == message_id
    assert got[0].receive_count == 1
    assert got[0].message_attributes["kind"]["StringValue"] == "greeting"
    assert "receipt_handle" not in repr(got[0])
    with pytest.raises(ValidationError):
        queue.send(b"bytes")  # type: ignore[arg-type]


def test_send_fifo() -> None:
    with mocked_aws():
        url = client("sqs").create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})[
            "QueueUrl"
        ]
        queue = SQS(url)
        queue.send("a", group_id="g", deduplication_id="1")
        queue.send("a", group_id="g", deduplication_id="1")  # deduplicated
        assert drain(queue) == ["a"]


def test_send_many_in_batches(queue: SQS, utils_metrics: InMemorySink) -> None:
    assert queue.send_many(f"m{n}" for n in range(25)) == []
    assert sorted(drain(queue)) == sorted(f"m{n}" for n in range(25))
    batches = utils_metrics.select("aws.call", operation="send_message_batch")
    assert len(batches) == 3
    # The 256 KiB limit splits batches too.
    big = "x" * (100 * 1024)
    assert queue.send_many([big, big, big, {"MessageBody": "tail", "Id": "ignored"}]) == []
    assert len(utils_metrics.select("aws.call", operation="send_message_batch")) == 5
    with pytest.raises(ValidationError, match="MessageBody"):
        queue.send_many([{"Body": "x"}])
    with pytest.raises(ValidationError):
        queue.send_many(["x"], max_tries=0)


def test_send_many_retries_only_failed_entries(utils_logs: list[dict[str, Any]]) -> None:
    calls: list[list[str]] = []

    def answer(stub: StubServer, path: str, body: bytes) -> Any:
        entries = json.loads(body)["Entries"]
        calls.append([e["MessageBody"] for e in entries])
        ok, failed = [], []
        for entry in entries:
            if entry["MessageBody"] == "bad":
                failed.append(
                    {
                        "Id": entry["Id"],
                        "Code": "InvalidMessageContents",
                        "SenderFault": True,
                        "Message": "no",
                    }
                )
            elif entry["MessageBody"] == "flaky" and len(calls) < 3:
                failed.append(
                    {
                        "Id": entry["Id"],
                        "Code": "InternalError",
                        "SenderFault": False,
                        "Message": "later",
                    }
                )
            elif entry["MessageBody"] == "doomed":
                failed.append(
                    {
                        "Id": entry["Id"],
                        "Code": "InternalError",
                        "SenderFault": False,
                        "Message": "never",
                    }
                )
            else:
                ok.append({"Id": entry["Id"], "MessageId": "m", "MD5OfMessageBody": "x"})
        reply = json.dumps({"Successful": ok, "Failed": failed}).encode()
        return 200, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "R"}, reply

    slept: list[float] = []
    with StubServer(answer) as stub:
        queue = SQS(f"{stub.url}/123456789012/q", endpoint_url=stub.url)
        failures = queue.send_many(
            ["ok", "bad", "flaky", "doomed"], max_tries=3, sleep=slept.append
        )
    assert calls == [["ok", "bad", "flaky", "doomed"], ["flaky", "doomed"], ["flaky", "doomed"]]
    assert failures == [
        SendFailure("bad", "InvalidMessageContents", "no", sender_fault=True),
        SendFailure("doomed", "InternalError", "never", sender_fault=False),
    ]
    assert slept == [0.05, 0.1]
    assert len([e for e in utils_logs if e["event"] == "aws.sqs.send_failed"]) == 2


def test_consume_with_a_failing_handler(queue: SQS, utils_logs: list[dict[str, Any]]) -> None:
    queue.send_many(["ok-1", "bad", "ok-2"])
    seen: list[str] = []

    def handler(message: Message) -> None:
        seen.append(message.body)
        if message.body == "bad":
            raise ValueError("cannot handle")

    result = queue.consume(handler, wait_time=0, visibility_timeout=0, max_messages=3)
    assert result == ConsumeResult(delivered=3, handled=2, failed=1)
    assert sorted(seen) == ["bad", "ok-1", "ok-2"]
    # The failed message is redelivered; the handled ones were deleted.
    again: list[Message] = []
    queue.consume(again.append, wait_time=0, max_messages=1)
    assert [m.body for m in again] == ["bad"]
    assert again[0].receive_count == 2
    assert drain(queue) == []
    failed = [e for e in utils_logs if e["event"] == "aws.sqs.handler_failed"]
    assert failed[0]["error"] == "ValueError"
    assert "cannot handle" in failed[0]["detail"]


def test_consume_extends_visibility_for_slow_handlers(
    queue: SQS, utils_metrics: InMemorySink
) -> None:
    queue.send("slow")

    def slow(message: Message) -> None:
        # The handler stays busy until the heartbeat thread has extended the visibility.
        wait_until(
            lambda: utils_metrics.select("aws.sqs.visibility_extended"),
            10.0,
            message="visibility extended",
        )

    result = queue.consume(slow, wait_time=0, visibility_timeout=1, max_messages=1)
    assert result.handled == 1
    assert utils_metrics.select("aws.sqs.visibility_extended", queue="jobs")
    assert drain(queue) == []


def test_consume_stops_when_asked(queue: SQS) -> None:
    queue.send_many(["a", "b", "c"])
    stop = threading.Event()

    def handler(message: Message) -> None:
        stop.set()

    result = queue.consume(handler, wait_time=0, visibility_timeout=30, batch_size=10, stop=stop)
    assert result.delivered == 1
    # The messages received but not handled were made visible again at once.
    assert len(drain(queue)) == 2


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_consume_stops_on_sigterm(queue: SQS) -> None:
    queue.send_many(["a", "b"])
    before = signal.getsignal(signal.SIGTERM)

    def handler(message: Message) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    result = queue.consume(handler, wait_time=0, batch_size=1)
    assert result.delivered == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_consume_in_a_thread_ignores_signals(queue: SQS) -> None:
    queue.send("a")
    results: list[ConsumeResult] = []
    thread = threading.Thread(
        target=lambda: results.append(queue.consume(lambda m: None, wait_time=0, max_messages=1))
    )
    thread.start()
    thread.join()
    assert results[0].handled == 1


def test_consume_validation(queue: SQS) -> None:
    cases: list[dict[str, Any]] = [
        {"batch_size": 11},
        {"batch_size": 0},
        {"wait_time": -1},
        {"max_messages": 0},
    ]
    for options in cases:
        with pytest.raises(ValidationError):
            queue.consume(lambda m: None, **options)


def test_missing_queue() -> None:
    with mocked_aws(), pytest.raises(AWSNotFoundError):
        SQS("https://sqs.us-east-1.amazonaws.com/123456789012/nope").send("x")


def test_queue_url_validation_and_repr() -> None:
    with pytest.raises(ValidationError):
        SQS("jobs")
    queue = SQS("https://sqs.eu-west-1.amazonaws.com/1/jobs")
    assert queue.name == "jobs"
    assert repr(queue) == "SQS('https://sqs.eu-west-1.amazonaws.com/1/jobs')"
    assert Message("i", "[1]", "rh").json() == [1]
