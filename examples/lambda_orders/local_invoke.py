"""Run the orders function on your machine against moto: no AWS account, no network.

    python local_invoke.py            # one batch: three orders and a poison message
    python local_invoke.py --twice    # the same batch again: a warm start, all duplicates

It creates the queue, bucket, table and signing key in moto's in-process AWS, sends the
messages to the queue, receives them as Lambda's SQS poller would, calls the handler with
that event, and prints the partial batch response on stdout. The function's JSON log lines
go to stderr, as in CloudWatch.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

from utils.aws import client, resource
from utils.aws.testing import mocked_aws

ORDERS = [
    {"order_id": f"o-{n}", "customer_id": "c-7",
     "lines": [{"sku": "BOOK-1", "quantity": n, "unit_price": "12.50"}]}
    for n in (1, 2, 3)
]  # fmt: skip
POISON = '{"order_id": "o-4", "lines": "not a list"}'


class LambdaContext:
    """The attributes and method of Lambda's context object that the handler uses."""

    def __init__(self, timeout: float = 30.0, function_name: str = "orders") -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.memory_limit_in_mb = 256
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def create_resources(environ: Any = os.environ) -> str:
    """Create the queue, bucket, table and secret in (mocked) AWS; set ORDERS_*; queue URL."""
    client("s3").create_bucket(Bucket="receipts")
    resource("dynamodb").create_table(
        TableName="orders",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
    )
    client("secretsmanager").create_secret(Name="orders/receipt-key", SecretString=SIGNING_KEY)
    environ.update(
        ORDERS_BUCKET="receipts",
        ORDERS_TABLE="orders",
        ORDERS_RECEIPT_KEY_SECRET="orders/receipt-key",
    )
    url: str = client("sqs").create_queue(QueueName="orders")["QueueUrl"]
    return url


#: A fake key for moto; in AWS, template.yaml generates one.
SIGNING_KEY = "local-signing-key-0123456789"


def receive_event(queue_url: str) -> dict[str, Any]:
    """Receive up to 10 messages and shape them as the SQS event Lambda delivers."""
    sqs = client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn["Attributes"]["QueueArn"],
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def main(argv: list[str]) -> int:
    with mocked_aws():
        queue_url = create_resources()
        bodies = [json.dumps(order) for order in ORDERS] + [POISON]
        from orders.handler import handler  # after the environment is set

        for _ in range(2 if "--twice" in argv else 1):
            for body in bodies:
                client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)
            response = handler(receive_event(queue_url), LambdaContext())
            print(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
