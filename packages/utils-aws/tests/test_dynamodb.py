"""DynamoTable against moto: CRUD, conditions, lazy query/scan, batch writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from tests._stubs import StubServer

from utils.aws import AWSConflictError, AWSNotFoundError, DynamoTable, resource
from utils.aws.testing import mocked_aws
from utils.core import ConflictError, ValidationError


@pytest.fixture
def table() -> Iterator[DynamoTable]:
    with mocked_aws():
        resource("dynamodb").create_table(
            TableName="orders",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[
                {"AttributeName": "customer", "KeyType": "HASH"},
                {"AttributeName": "n", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "customer", "AttributeType": "S"},
                {"AttributeName": "n", "AttributeType": "N"},
            ],
        )
        yield DynamoTable("orders")


def test_crud_and_conditions(table: DynamoTable) -> None:
    key = {"customer": "ann", "n": 1}
    assert table.get(key) is None
    table.put({**key, "total": Decimal("9.5"), "tags": ["a"]})
    assert table.get(key, consistent=True) == {**key, "total": Decimal("9.5"), "tags": ["a"]}
    with pytest.raises(AWSConflictError) as info:
        table.put({**key, "total": 1}, condition=Attr("customer").not_exists())
    assert isinstance(info.value, ConflictError)
    assert info.value.details["code"] == "ConditionalCheckFailedException"
    after = table.update(
        key, {"total": 10, "status": "paid"}, condition=Attr("total").eq(Decimal("9.5"))
    )
    assert after["status"] == "paid"
    with pytest.raises(AWSConflictError):
        table.update(key, {"status": "x"}, condition=Attr("status").eq("new"))
    with pytest.raises(AWSConflictError):
        table.delete(key, condition=Attr("status").eq("new"))
    table.delete(key)
    assert table.get(key) is None
    with pytest.raises(ValidationError):
        table.update(key, {})


def test_query_and_scan_are_lazy_and_paginated(table: DynamoTable) -> None:
    assert (
        table.batch_write({"customer": "bob" if n % 2 else "ann", "n": n} for n in range(60)) == []
    )
    pages = table.query_all(Key("customer").eq("ann"), Limit=7)
    assert next(pages)["n"] == 0
    assert [item["n"] for item in pages] == list(range(2, 60, 2))
    assert sum(1 for _ in table.scan_all(Limit=9)) == 60
    assert sum(1 for _ in table.scan_all(FilterExpression=Attr("n").lt(10))) == 10


def test_batch_write_retries_unprocessed_items() -> None:
    calls: list[int] = []
    stubborn = {"calls": 3}

    def answer(stub: StubServer, path: str, body: bytes) -> Any:
        requests = json.loads(body)["RequestItems"]["t"]
        calls.append(len(requests))
        unprocessed = requests[1:] if len(calls) < stubborn["calls"] else []
        reply = {"UnprocessedItems": {"t": unprocessed} if unprocessed else {}}
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(reply).encode()

    slept: list[float] = []
    with StubServer(answer) as stub:
        table = DynamoTable("t", endpoint_url=stub.url)
        assert table.batch_write(({"id": str(n)} for n in range(30)), sleep=slept.append) == []
        assert calls == [25, 24, 23, 5]
        calls.clear()
        stubborn["calls"] = 99  # never processes more than the first item
        left = table.batch_write([{"id": "a"}, {"id": "b"}], max_tries=1, sleep=slept.append)
    assert left == [{"id": "b"}]
    assert slept == [0.05, 0.1]


def test_missing_table_and_validation() -> None:
    with mocked_aws(), pytest.raises(AWSNotFoundError):
        DynamoTable("nope").get({"id": "x"})
    with pytest.raises(ValidationError):
        DynamoTable("")
    assert repr(DynamoTable("t")) == "DynamoTable('t')"
