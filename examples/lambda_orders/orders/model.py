"""Orders as the producer sends them: parsing, validation and the signed receipt (no I/O).

A message body is JSON::

    {"order_id": "o-1001", "customer_id": "c-7",
     "lines": [{"sku": "BOOK-1", "quantity": 2, "unit_price": "12.50"}]}

Anything else is a poison message: :func:`parse_order` raises
:class:`~utils.core.ValidationError` naming the first problem, and the record is reported
as failed (SQS redelivers it until the queue's redrive policy moves it to the dead-letter
queue). Prices are decimal strings: a binary float cannot hold 12.10 exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from utils.core import ValidationError

__all__ = ["Line", "Order", "parse_order", "receipt"]

#: Identifiers: what the producer guarantees, and safe inside an S3 key.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_LINES = 100
MAX_QUANTITY = 10_000
MAX_PRICE = Decimal(1_000_000)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Line:
    """One order line."""

    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        """Quantity times unit price."""
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class Order:
    """A valid order."""

    order_id: str
    customer_id: str
    lines: tuple[Line, ...]

    @property
    def total(self) -> Decimal:
        """The sum of the line amounts."""
        return sum((line.amount for line in self.lines), Decimal(0))


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValidationError(f"{name} must be 1-64 letters, digits, '-' or '_', got {value!r}")
    return value


def _line(number: int, data: Any) -> Line:
    if not isinstance(data, dict):
        raise ValidationError(f"lines[{number}] must be an object")
    sku = _identifier(data.get("sku"), f"lines[{number}].sku")
    quantity = data.get("quantity")
    # bool is an int in Python; `true` is not a quantity.
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationError(
            f"lines[{number}].quantity must be an integer from 1 to {MAX_QUANTITY}"
        )
    return Line(sku, quantity, _price(number, data.get("unit_price")))


def _price(number: int, text: object) -> Decimal:
    price = None
    if isinstance(text, str):
        with contextlib.suppress(InvalidOperation):
            price = Decimal(text)
    # is_finite first: comparing a NaN raises.
    if price is None or not price.is_finite() or not 0 <= price < MAX_PRICE:
        raise ValidationError(
            f"lines[{number}].unit_price must be a decimal string from 0 to {MAX_PRICE}, "
            f'like "12.50", got {text!r}'
        )
    if price != price.quantize(CENT):
        raise ValidationError(f"lines[{number}].unit_price has more than two decimal places")
    return price.quantize(CENT)  # always two places: "12.5" is stored as "12.50"


def parse_order(body: str) -> Order:
    """Parse and validate one message body.

    Raises:
        ValidationError: The body is not a valid order; the message says what is wrong.

    Example:
        >>> order = parse_order('{"order_id": "o-1", "customer_id": "c-1", '
        ...                     '"lines": [{"sku": "A", "quantity": 3, "unit_price": "2.50"}]}')
        >>> order.total
        Decimal('7.50')
        >>> parse_order('{"order_id": "o-1"}')
        Traceback (most recent call last):
        ...
        utils.core.errors.ValidationError: customer_id must be 1-64 letters, digits, '-' or '_', got None
    """
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValidationError(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object")
    order_id = _identifier(data.get("order_id"), "order_id")
    customer_id = _identifier(data.get("customer_id"), "customer_id")
    lines = data.get("lines")
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
        raise ValidationError(f"lines must be a list of 1 to {MAX_LINES} lines")
    return Order(order_id, customer_id, tuple(_line(n, line) for n, line in enumerate(lines)))


def receipt(order: Order, key: bytes) -> dict[str, Any]:
    """The receipt stored in S3: the order plus an HMAC-SHA256 signature made with ``key``.

    The signature covers the canonical JSON of every other field, so anyone holding the key
    can check that a receipt was written by this function and not altered.

    Example:
        >>> order = Order("o-1", "c-1", (Line("A", 1, Decimal("2.00")),))
        >>> receipt(order, b"k")["total"]
        '2.00'
    """
    body = {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "unit_price": str(line.unit_price)}
            for line in order.lines
        ],
        "total": str(order.total),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {**body, "signature": hmac.new(key, canonical, hashlib.sha256).hexdigest()}
