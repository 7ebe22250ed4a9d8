"""Parsing and signing orders: property-based (any valid order parses, anything else is a
ValidationError naming the problem, never another exception)."""

from __future__ import annotations

import contextlib
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from orders.model import MAX_QUANTITY, Line, Order, parse_order, receipt

from utils.core import ValidationError

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)
prices = st.decimals(min_value=0, max_value=Decimal("999999.99"), places=2)
lines = st.fixed_dictionaries(
    {"sku": ids, "quantity": st.integers(1, MAX_QUANTITY), "unit_price": prices.map(str)}
)
orders = st.fixed_dictionaries(
    {"order_id": ids, "customer_id": ids, "lines": st.lists(lines, min_size=1, max_size=5)}
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(orders)
def test_every_valid_order_parses_with_exact_totals(data: dict[str, Any]) -> None:
    order = parse_order(json.dumps(data))
    expected = sum(
        (line["quantity"] * Decimal(line["unit_price"]) for line in data["lines"]), Decimal(0)
    )
    assert order.total == expected
    assert [line.sku for line in order.lines] == [line["sku"] for line in data["lines"]]


@given(orders, st.sampled_from(["order_id", "customer_id", "lines"]), json_values)
def test_a_bad_field_is_a_validation_error_naming_it(
    data: dict[str, Any], field: str, value: Any
) -> None:
    data[field] = value
    try:
        parse_order(json.dumps(data))
    except ValidationError as exc:
        message = str(exc)
    else:
        return  # some generated values are valid (a valid id, a list of valid lines)
    assert field in message or "lines[" in message


@given(json_values | st.text())
def test_any_body_parses_or_is_a_validation_error(value: Any) -> None:
    body = value if isinstance(value, str) else json.dumps(value)
    with contextlib.suppress(ValidationError):
        parse_order(body)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"sku": "A", "quantity": True, "unit_price": "1.00"}, "quantity"),
        ({"sku": "A", "quantity": 0, "unit_price": "1.00"}, "quantity"),
        ({"sku": "A", "quantity": 1, "unit_price": 1.5}, "unit_price"),
        ({"sku": "A", "quantity": 1, "unit_price": "NaN"}, "unit_price"),
        ({"sku": "A", "quantity": 1, "unit_price": "-1.00"}, "unit_price"),
        ({"sku": "A", "quantity": 1, "unit_price": "1.005"}, "two decimal places"),
        ({"sku": "A/../B", "quantity": 1, "unit_price": "1.00"}, "sku"),
        ("A", "lines[0] must be an object"),
    ],
)
def test_bad_lines_are_named(line: Any, problem: str) -> None:
    body = json.dumps({"order_id": "o", "customer_id": "c", "lines": [line]})
    with pytest.raises(ValidationError, match=re.escape(problem)):
        parse_order(body)


def test_prices_keep_two_places() -> None:
    order = parse_order(
        json.dumps(
            {"order_id": "o", "customer_id": "c",
             "lines": [{"sku": "A", "quantity": 3, "unit_price": "0.1"}]}
        )
    )  # fmt: skip
    assert str(order.lines[0].unit_price) == "0.10"
    assert str(order.total) == "0.30"


def test_the_signature_depends_on_the_key_and_on_every_field() -> None:
    order = Order("o-1", "c-1", (Line("A", 2, Decimal("1.50")),))
    signed = receipt(order, b"key")
    assert receipt(order, b"key") == signed
    assert receipt(order, b"other")["signature"] != signed["signature"]
    changed = Order("o-1", "c-1", (Line("A", 3, Decimal("1.50")),))
    assert receipt(changed, b"key")["signature"] != signed["signature"]
    assert signed["total"] == "3.00"
