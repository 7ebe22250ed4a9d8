"""The orders function, invoked with real SQS event shapes against moto."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from local_invoke import SIGNING_KEY
from orders import handler as orders
from tests.conftest import EXAMPLE, LambdaContext, Queue, Throttle, order_body

from utils.aws import S3, DynamoTable
from utils.core import ConfigError
from utils.core.metrics import InMemorySink
from utils.resilience.testing import instant_retries


def failed_ids(response: dict[str, list[dict[str, str]]]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def stored_orders() -> dict[str, dict[str, Any]]:
    return {item["order_id"]: item for item in DynamoTable("orders").scan_all()}


def test_a_batch_stores_every_order_and_reports_only_the_poison_messages(
    queue: Queue, utils_logs: list[dict[str, Any]]
) -> None:
    event = queue.event(
        order_body("o-1", quantity=2, price="12.50"),
        "this is not JSON",
        order_body("o-2"),
        json.dumps({"order_id": "o-3", "customer_id": "c-1", "lines": []}),
        order_body("o-4", quantity=3, price="0.10"),
    )
    records = event["Records"]
    context = LambdaContext()

    response = orders.handler(event, context)

    assert failed_ids(response) == [records[1]["messageId"], records[3]["messageId"]]
    items = stored_orders()
    assert sorted(items) == ["o-1", "o-2", "o-4"]
    assert items["o-1"]["total"] == Decimal("25.00")
    assert items["o-4"]["total"] == Decimal("0.30")
    assert items["o-1"]["message_id"] == records[0]["messageId"]
    # The receipt is signed with the key from Secrets Manager.
    signed = S3("receipts").get_json("receipts/o-1.json")
    signature = signed.pop("signature")
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    expected = hmac.new(SIGNING_KEY.encode(), canonical, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    # Why each poison message failed is logged with its message id, inside the invocation.
    invalid = [e for e in utils_logs if e["event"] == "orders.invalid"]
    assert [e["message_id"] for e in invalid] == [records[1]["messageId"], records[3]["messageId"]]
    assert "lines must be a list" in invalid[1]["reason"]
    assert {e["aws_request_id"] for e in invalid} == {context.aws_request_id}
    failed = [e for e in utils_logs if e["event"] == "aws.lambda.record_failed"]
    assert [e["error"] for e in failed] == ["ValidationError", "ValidationError"]


def test_a_redelivered_message_is_a_no_op(queue: Queue, utils_logs: list[dict[str, Any]]) -> None:
    body = order_body("o-1", quantity=1, price="5.00")
    first = orders.handler(queue.event(body), LambdaContext())
    again = orders.handler(queue.event(body), LambdaContext())

    assert failed_ids(first) == failed_ids(again) == []
    assert list(stored_orders()) == ["o-1"]
    assert [e["event"] for e in utils_logs if e["event"].startswith("orders.")] == [
        "orders.stored",
        "orders.batch_done",
        "orders.duplicate",
        "orders.batch_done",
    ]


def test_a_throttled_dynamodb_write_is_retried(
    queue: Queue, throttle: Throttle, utils_logs: list[dict[str, Any]]
) -> None:
    throttle.when = lambda _item: throttle.throttled == 0  # the first PutItem only
    event = queue.event(order_body("o-1"), order_body("o-2"))

    with instant_retries() as delays:
        response = orders.handler(event, LambdaContext())

    assert failed_ids(response) == []
    assert sorted(stored_orders()) == ["o-1", "o-2"]
    assert throttle.throttled == 1
    assert throttle.seen == 3  # o-1 throttled, o-1 again, o-2
    assert len(delays) == 1
    retried = [e for e in utils_logs if e["event"] == "retry.attempt_failed"]
    assert len(retried) == 1
    assert retried[0]["retry"] == "orders.store"
    assert "AWSThrottledError" in retried[0]["error"]
    # The throttled write stored nothing: the retry stored o-1, it was no duplicate.
    assert [e["order_id"] for e in utils_logs if e["event"] == "orders.stored"] == ["o-1", "o-2"]


def test_throttling_that_lasts_fails_only_that_record_after_the_retry_budget(
    queue: Queue, throttle: Throttle
) -> None:
    throttle.when = lambda item: item["order_id"] == {"S": "o-2"}
    event = queue.event(order_body("o-1"), order_body("o-2"), order_body("o-3"))

    with instant_retries() as delays:
        response = orders.handler(event, LambdaContext())

    assert failed_ids(response) == [event["Records"][1]["messageId"]]
    assert sorted(stored_orders()) == ["o-1", "o-3"]
    attempts = orders.STORE_RETRY.attempts
    assert throttle.throttled == attempts  # one HTTP request per attempt: botocore never retried
    assert len(delays) == attempts - 1


def test_records_that_cannot_finish_before_the_timeout_are_reported(queue: Queue) -> None:
    event = queue.event(order_body("o-1"), order_body("o-2"))
    context = LambdaContext(timeout=orders.RESPONSE_MARGIN)  # nothing left for the work

    response = orders.handler(event, context)

    assert failed_ids(response) == [record["messageId"] for record in event["Records"]]
    assert stored_orders() == {}


def test_the_signing_key_is_fetched_once_per_container(
    queue: Queue, utils_metrics: InMemorySink
) -> None:
    for n in range(3):
        orders.handler(queue.event(order_body(f"o-{n}")), LambdaContext())

    assert utils_metrics.total("aws.parameters.miss") == 1
    assert utils_metrics.total("aws.parameters.hit") == 2


def test_a_missing_setting_fails_the_invocation_naming_the_variable(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORDERS_TABLE")
    orders.resources.cache_clear()

    with pytest.raises(ConfigError, match="ORDERS_TABLE"):
        orders.handler(queue.event(order_body("o-1")), LambdaContext())


def test_logs_are_json_lines_with_request_id_and_cold_start_and_no_secret() -> None:
    # A fresh process, as a new Lambda container: its first invocation is the cold start.
    done = subprocess.run(
        [sys.executable, "local_invoke.py", "--twice"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    responses = [json.loads(line) for line in done.stdout.splitlines()]
    assert [len(r["batchItemFailures"]) for r in responses] == [1, 1]  # the poison message
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    ours = [line for line in lines if line.get("logger") in {"orders", "utils.aws"}]
    batches = [line for line in ours if line["event"] == "orders.batch_done"]
    assert [b["cold_start"] for b in batches] == [True, False]
    assert batches[0]["aws_request_id"] != batches[1]["aws_request_id"]
    for line in ours:  # every line of an invocation carries its context
        assert {"aws_request_id", "function_name", "cold_start", "timestamp"} <= set(line)
    assert [line["event"] for line in ours].count("orders.stored") == 3
    assert [line["event"] for line in ours].count("orders.duplicate") == 3
    assert SIGNING_KEY not in done.stdout + done.stderr


def test_the_template_matches_the_code() -> None:
    template = (EXAMPLE / "template.yaml").read_text(encoding="utf-8")
    handler_path = re.search(r"Handler: ([\w.]+)", template)
    assert handler_path is not None
    module, _, name = handler_path[1].rpartition(".")
    assert module == orders.__name__
    assert getattr(orders, name) is orders.handler
    variables = set(re.findall(r"(ORDERS_[A-Z_]+):", template))
    fields = {f"ORDERS_{name.upper()}" for name in orders.OrdersSettings.__dataclass_fields__}
    required = {
        f"ORDERS_{f.name.upper()}"
        for f in orders.OrdersSettings.__dataclass_fields__.values()
        if f.default is f.default_factory  # both MISSING: no default
    }
    assert required <= variables <= fields
    assert "ReportBatchItemFailures" in template
