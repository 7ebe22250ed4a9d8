"""Fixtures: moto in-process with the function's resources, SQS events, a Lambda context.

Everything AWS is moto's in-process ``mock_aws`` (utils.aws.testing.mocked_aws): real boto3
calls, real SQS message ids and receipt handles, no network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import handlers
from botocore.awsrequest import AWSResponse, HTTPHeaders

# local_invoke.py (the example's folder is on pythonpath): what a developer runs by hand.
from local_invoke import LambdaContext, create_resources, receive_event

from utils.aws import clear_clients, client
from utils.aws.testing import mocked_aws

EXAMPLE = Path(__file__).resolve().parents[1]

__all__ = ["EXAMPLE", "LambdaContext", "Throttle", "order_body"]


def order_body(order_id: str, quantity: int = 1, price: str = "10.00") -> str:
    return json.dumps(
        {
            "order_id": order_id,
            "customer_id": "c-1",
            "lines": [{"sku": "SKU-1", "quantity": quantity, "unit_price": price}],
        }
    )


class Queue:
    """The orders queue in moto: send bodies, receive them as a Lambda SQS event."""

    def __init__(self, url: str) -> None:
        self.url = url

    def event(self, *bodies: str) -> dict[str, Any]:
        for body in bodies:
            client("sqs").send_message(QueueUrl=self.url, MessageBody=body)
        event = receive_event(self.url)
        assert len(event["Records"]) == len(bodies)
        return event


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """moto with the bucket, table, secret and queue; ORDERS_* set; fresh handler resources."""
    from orders.handler import resources

    with mocked_aws():
        url = create_resources(environ=_Setenv(monkeypatch))
        resources.cache_clear()
        yield Queue(url)
    resources.cache_clear()


class _Setenv:
    """``environ.update(...)`` through monkeypatch, so the variables are removed afterwards."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    def update(self, **values: str) -> None:
        for name, value in values.items():
            self._monkeypatch.setenv(name, value)


class Throttle:
    """Answers DynamoDB PutItem calls with ProvisionedThroughputExceededException.

    A botocore ``before-call`` handler, registered first in every new session. When it
    answers, botocore sends nothing (so moto stores nothing, as DynamoDB would not) and
    raises the error exactly as for a real answer: the modelled exception class, built from
    the error code, goes through utils.aws's translation (AWSThrottledError, retryable) and
    the retry policy. ``when(item)`` picks the calls to throttle (``item`` in DynamoDB JSON);
    ``seen`` counts every PutItem call, ``throttled`` those answered with the error.
    """

    def __init__(self) -> None:
        self.when: Callable[[dict[str, Any]], bool] = lambda _item: False
        self.seen = 0
        self.throttled = 0

    def __call__(self, params: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]] | None:
        self.seen += 1
        if not self.when(json.loads(params["body"])["Item"]):
            return None  # botocore sends the request; moto answers
        self.throttled += 1
        error = {
            "Code": "ProvisionedThroughputExceededException",
            "Message": "The level of configured provisioned throughput for the table was exceeded.",
        }
        metadata = {"RequestId": "throttled", "HTTPStatusCode": 400, "RetryAttempts": 0}
        http = AWSResponse(
            params["url"], 400, HTTPHeaders.from_dict({"x-amzn-RequestId": "throttled"}), None
        )
        return http, {"Error": error, "ResponseMetadata": metadata}


@pytest.fixture
def throttle() -> Iterator[Throttle]:
    """A :class:`Throttle` installed in every botocore session built during the test."""
    throttler = Throttle()
    spec = ("before-call.dynamodb.PutItem", throttler, handlers.REGISTER_FIRST)
    handlers.BUILTIN_HANDLERS.append(spec)
    clear_clients()  # the next clients come from new sessions, which register the handler
    try:
        yield throttler
    finally:
        handlers.BUILTIN_HANDLERS.remove(spec)
        clear_clients()
