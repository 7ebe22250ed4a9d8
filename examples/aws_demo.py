"""utils-aws in one screen, against moto (no AWS account, no network).

Run it with `python examples/aws_demo.py` where utils-aws[testing] is installed: fake
credentials and moto's in-process `mock_aws` stand in for AWS.
"""

from __future__ import annotations

import sys

from utils.aws import (
    S3,
    SQS,
    DynamoTable,
    Message,
    client,
    get_parameter,
    get_secret,
    process_sqs_batch,
    resource,
)
from utils.aws.testing import mocked_aws
from utils.core import ConflictError, NotFoundError, configure_logging


def main() -> int:
    configure_logging(level="WARNING", format="console")
    with mocked_aws():
        # S3: bytes, JSON, listing, errors with meaning.
        client("s3").create_bucket(Bucket="reports")
        reports = S3("reports")
        reports.put_json("2026/12.json", {"total": 3})
        print("S3 json:", reports.get_json("2026/12.json"), list(reports.list_keys("2026/")))
        try:
            reports.get_bytes("2026/11.json")
        except NotFoundError as exc:
            print("S3 missing key ->", type(exc).__name__, exc.details["code"])
        print(
            "presigned URL is SigV4:",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256" in reports.presign_get("2026/12.json"),
        )

        # SQS: batched sends and a consumer that leaves failures for redelivery.
        queue = SQS(client("sqs").create_queue(QueueName="jobs")["QueueUrl"])
        print("send_many failures:", queue.send_many(f"job {n}" for n in range(12)))

        def handle(message: Message) -> None:
            if message.body == "job 7":
                raise ValueError("cannot do job 7 yet")

        print(
            "consume:", queue.consume(handle, wait_time=0, visibility_timeout=0, max_messages=12)
        )

        # DynamoDB: conditions raise ConflictError.
        resource("dynamodb").create_table(
            TableName="users",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        )
        from boto3.dynamodb.conditions import Attr

        users = DynamoTable("users")
        users.put({"id": "ann"}, condition=Attr("id").not_exists())
        try:
            users.put({"id": "ann"}, condition=Attr("id").not_exists())
        except ConflictError:
            print("DynamoDB: 'ann' exists already -> ConflictError")

        # Secrets and parameters: cached, masked.
        client("secretsmanager").create_secret(Name="prod/db", SecretString="hunter2")
        client("ssm").put_parameter(Name="/app/mode", Value="fast", Type="String")
        print("secret:", get_secret("prod/db"), "parameter:", get_parameter("/app/mode"))

        # Lambda: partial batch failures.
        event = {
            "Records": [
                {"messageId": "1", "body": "ok", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q"},
                {"messageId": "2", "body": "boom", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q"},
            ]
        }

        def work(record: dict[str, str]) -> None:
            if record["body"] == "boom":
                raise ValueError("boom")

        print("process_sqs_batch:", process_sqs_batch(event, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
