"""``DynamoTable(name)``: items as plain Python values, conditions that raise ConflictError.

Built on boto3's DynamoDB *resource* layer, which converts between Python values and
DynamoDB's typed JSON (numbers come back as ``Decimal``). A failed ``condition`` raises
:class:`~utils.aws.AWSConflictError`; ``query_all`` / ``scan_all`` page lazily;
``batch_write`` sends 25 items per request and retries ``UnprocessedItems`` with backoff.

boto3 has no asyncio API: sync only.

Example:
    >>> from utils.aws.testing import mocked_aws
    >>> from boto3.dynamodb.conditions import Attr
    >>> with mocked_aws():
    ...     _ = resource("dynamodb").create_table(
    ...         TableName="users", BillingMode="PAY_PER_REQUEST",
    ...         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    ...         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    ...     users = DynamoTable("users")
    ...     users.put({"id": "ann", "age": 41}, condition=Attr("id").not_exists())
    ...     users.get({"id": "ann"})
    {'id': 'ann', 'age': Decimal('41')}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from utils.aws._service import Service
from utils.aws.clients import resource
from utils.core import ValidationError
from utils.core.validate import positive_int

__all__ = ["DynamoTable"]

#: Items per BatchWriteItem request (the DynamoDB maximum).
BATCH = 25


class DynamoTable(Service):
    """One table. ``client=`` is not accepted here (the resource layer needs its own client).

    Example:
        >>> DynamoTable("users").name
        'users'
    """

    service = "dynamodb"

    def __init__(self, name: str, **overrides: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"table name must be a non-empty string, got {name!r}")
        super().__init__(**overrides)
        self.name = name

    def __repr__(self) -> str:
        return f"DynamoTable({self.name!r})"

    def client(self) -> Any:
        """The boto3 ``Table`` resource (its calls accept and return Python values)."""
        return resource("dynamodb", **self._overrides).Table(self.name)

    @staticmethod
    def _conditional(params: dict[str, Any], condition: Any) -> dict[str, Any]:
        if condition is not None:
            params["ConditionExpression"] = condition
        return params

    def get(self, key: Mapping[str, Any], *, consistent: bool = False) -> dict[str, Any] | None:
        """The item with primary key ``key``, or None when there is none."""
        response = self._call("get_item", Key=dict(key), ConsistentRead=consistent)
        item = response.get("Item")
        return None if item is None else dict(item)

    def put(self, item: Mapping[str, Any], *, condition: Any = None) -> None:
        """Write ``item`` (replacing any item with its key).

        ``condition``: a ``boto3.dynamodb.conditions`` expression (``Attr("id").not_exists()``
        = create only); when it does not hold, :class:`~utils.aws.AWSConflictError` is raised.
        """
        self._call("put_item", **self._conditional({"Item": dict(item)}, condition))

    def update(
        self, key: Mapping[str, Any], changes: Mapping[str, Any], *, condition: Any = None
    ) -> dict[str, Any]:
        """Set the attributes in ``changes`` on the item ``key``; return the item after it.

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = resource("dynamodb").create_table(
            ...         TableName="t", BillingMode="PAY_PER_REQUEST",
            ...         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            ...         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
            ...     DynamoTable("t").update({"id": "a"}, {"status": "done"})
            {'id': 'a', 'status': 'done'}
        """
        if not changes:
            raise ValidationError("update() needs at least one attribute to set")
        names = {f"#a{index}": name for index, name in enumerate(changes)}
        values = {f":v{index}": value for index, value in enumerate(changes.values())}
        expression = "SET " + ", ".join(f"#a{index} = :v{index}" for index in range(len(changes)))
        params = {
            "Key": dict(key),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        response = self._call("update_item", **self._conditional(params, condition))
        return dict(response.get("Attributes", {}))

    def delete(self, key: Mapping[str, Any], *, condition: Any = None) -> None:
        """Delete the item ``key`` (no error when there is none, unless ``condition`` fails)."""
        self._call("delete_item", **self._conditional({"Key": dict(key)}, condition))

    def _all(self, operation: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            response = self._call(operation, **params)
            yield from (dict(item) for item in response.get("Items", ()))
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params = {**params, "ExclusiveStartKey": last}

    def query_all(self, key_condition: Any, **params: Any) -> Iterator[dict[str, Any]]:
        """Lazily yield every item matching ``key_condition`` (``Key("pk").eq("x")``), page by page.

        ``params``: more Query arguments (``IndexName``, ``FilterExpression``, ...).
        """
        return self._all("query", {"KeyConditionExpression": key_condition, **params})

    def scan_all(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Lazily yield every item of the table (``params``: more Scan arguments)."""
        return self._all("scan", params)

    def batch_write(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        max_tries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[dict[str, Any]]:
        """Put ``items`` 25 per request, retrying ``UnprocessedItems`` with backoff.

        Returns the items still unprocessed after ``max_tries`` requests per batch (empty
        when everything was written).

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = resource("dynamodb").create_table(
            ...         TableName="t", BillingMode="PAY_PER_REQUEST",
            ...         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            ...         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
            ...     DynamoTable("t").batch_write({"id": str(n)} for n in range(60))
            ...     sum(1 for _ in DynamoTable("t").scan_all())
            []
            60
        """
        positive_int(max_tries, "max_tries")
        left: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        for item in items:
            batch.append({"PutRequest": {"Item": dict(item)}})
            if len(batch) == BATCH:
                left += self._write_batch(batch, max_tries, sleep)
                batch = []
        if batch:
            left += self._write_batch(batch, max_tries, sleep)
        return left

    def _write_batch(
        self, requests: list[dict[str, Any]], max_tries: int, sleep: Callable[[float], None]
    ) -> list[dict[str, Any]]:
        low_level = resource("dynamodb", **self._overrides).meta.client
        pending = requests
        for attempt in range(1, max_tries + 1):
            response = self._invoke(
                low_level, "batch_write_item", {"RequestItems": {self.name: pending}}
            )
            pending = response.get("UnprocessedItems", {}).get(self.name, [])
            if not pending:
                return []
            if attempt < max_tries:
                sleep(min(0.05 * 2 ** (attempt - 1), 5.0))
        return [dict(request["PutRequest"]["Item"]) for request in pending]
