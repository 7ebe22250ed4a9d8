"""The Lambda entry point: ``orders.handler.handler``, triggered by SQS.

For each SQS record: parse the order (:mod:`orders.model`), sign a receipt with the key read
from Secrets Manager (cached per container by :func:`~utils.aws.get_secret`), write the
receipt to S3 and the order to DynamoDB. A record that fails is reported in
``batchItemFailures`` (:func:`~utils.aws.process_sqs_batch`), so SQS redelivers that one
only; the event source mapping must enable ``ReportBatchItemFailures`` (see template.yaml).

Three choices worth copying:

- **Idempotent writes.** SQS delivers at least once. The receipt's S3 key is the order id
  (a rewrite stores the same bytes) and the DynamoDB put is conditional on the order being
  new, so a redelivered message is a no-op, logged as ``orders.duplicate``.
- **One retry budget under the invocation's deadline.** The AWS clients make one attempt
  (``max_attempts=1``) and :data:`STORE_RETRY` owns retries of the whole store step (a
  throttled DynamoDB write, a 503 from S3), under a :func:`~utils.core.deadline` that ends
  :data:`RESPONSE_MARGIN` seconds before Lambda would kill the invocation: a record that
  cannot finish in time is reported as failed instead of lost mid-write with the whole
  batch.
- **Structured logs.** JSON lines on stderr (CloudWatch keeps them as they are), with
  ``aws_request_id``, ``function_name`` and ``cold_start`` bound by
  :func:`~utils.aws.lambda_handler` on every line, the signing key never among them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr

from orders.model import Order, parse_order, receipt
from utils.aws import S3, DynamoTable, get_secret, lambda_handler, process_sqs_batch
from utils.core import (
    ConflictError,
    Settings,
    ValidationError,
    configure_logging,
    deadline,
    get_logger,
)
from utils.resilience import retry

__all__ = ["RESPONSE_MARGIN", "STORE_RETRY", "OrdersSettings", "handler", "resources"]

# The init phase: once per container, before the first invocation.
configure_logging(level=os.environ.get("LOG_LEVEL", "INFO"), format="json")
log = get_logger("orders")

#: Seconds kept back from the invocation's time to return the batch response.
RESPONSE_MARGIN = 2.0
#: Retries of one record's writes; transient errors only (utils.core.is_transient).
STORE_RETRY = retry(attempts=4, initial=0.1, maximum=2.0, name="orders.store")


class OrdersSettings(Settings, env_prefix="ORDERS_"):
    """Configuration from the environment (set by template.yaml)."""

    #: Receipts go to ``s3://<bucket>/receipts/<order_id>.json``.
    bucket: str
    #: The DynamoDB table of orders (partition key ``order_id``).
    table: str
    #: Name or ARN of the Secrets Manager secret holding the receipt signing key.
    receipt_key_secret: str
    #: How long a fetched signing key is reused, in seconds (rotation takes that long).
    secret_max_age: float = 300.0


@dataclass(frozen=True)
class Resources:
    """What every invocation of a warm container reuses."""

    settings: OrdersSettings
    receipts: S3
    orders: DynamoTable


@functools.cache
def resources() -> Resources:
    """Settings and AWS helpers, built on the first invocation (a bad setting fails it).

    ``resources.cache_clear()`` forgets them (tests change the environment).
    """
    settings = OrdersSettings.from_env()
    # max_attempts=1: STORE_RETRY owns the retries; botocore retrying too would multiply them.
    return Resources(
        settings,
        S3(settings.bucket, max_attempts=1),
        DynamoTable(settings.table, max_attempts=1),
    )


@lambda_handler
def handler(event: Mapping[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Process an SQS batch; return the records that failed (partial batch response)."""
    env = resources()
    budget = context.get_remaining_time_in_millis() / 1000 - RESPONSE_MARGIN
    with deadline(max(budget, 0.0)):
        response = process_sqs_batch(event, functools.partial(handle_record, env))
    log.info(
        "orders.batch_done",
        records=len(event.get("Records") or ()),
        failed=len(response["batchItemFailures"]),
    )
    return response


def handle_record(env: Resources, record: Mapping[str, Any]) -> None:
    """Parse, sign and store the order of one SQS record (raise = report it as failed)."""
    try:
        order = parse_order(record["body"])
    except ValidationError as exc:
        # Why, for whoever reads the dead-letter queue; the failure itself is reported by
        # process_sqs_batch (aws.lambda.record_failed).
        log.warning("orders.invalid", message_id=record.get("messageId"), reason=str(exc))
        raise
    key = get_secret(env.settings.receipt_key_secret, max_age=env.settings.secret_max_age)
    signed = receipt(order, key.get_secret_value().encode())
    store(env, order, signed, str(record["messageId"]))


@STORE_RETRY
def store(env: Resources, order: Order, signed: Mapping[str, Any], message_id: str) -> None:
    """Write the receipt and the order; retried as a whole on transient errors."""
    receipt_key = f"receipts/{order.order_id}.json"
    env.receipts.put_json(receipt_key, signed)
    item = {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "total": order.total,
        "line_count": len(order.lines),
        "receipt_key": receipt_key,
        "message_id": message_id,
    }
    try:
        env.orders.put(item, condition=Attr("order_id").not_exists())
    except ConflictError:
        log.info("orders.duplicate", order_id=order.order_id, message_id=message_id)
        return
    log.info("orders.stored", order_id=order.order_id, total=str(order.total))
