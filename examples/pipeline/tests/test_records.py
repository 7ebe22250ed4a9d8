"""Validation and transformation of rows: property-based where it parses."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pipeline.records import FIELDS, format_of, parse_object, transform

from utils.core import ValidationError

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)
prices = st.decimals(min_value=0, max_value=Decimal("999999.99"), places=2)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30))]),
)
rows = st.fixed_dictionaries(
    {
        "order_id": ids,
        "sku": ids,
        "quantity": st.integers(1, 10_000).map(str),
        "unit_price": prices.map(str),
        "ordered_at": moments.map(datetime.isoformat),
    }
)
anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


@given(rows)
def test_every_valid_row_transforms_exactly(row: dict[str, str]) -> None:
    order_id, sku, quantity, price, amount, moment = transform(row)
    assert (order_id, sku, quantity) == (row["order_id"], row["sku"].upper(), int(row["quantity"]))
    assert price == Decimal(row["unit_price"])
    assert amount == quantity * price
    assert moment == datetime.fromisoformat(row["ordered_at"])  # the same instant
    assert moment.tzinfo is timezone.utc


@given(rows, st.sampled_from(FIELDS), anything)
def test_any_field_value_transforms_or_is_a_validation_error_naming_the_field(
    row: dict[str, Any], field: str, value: Any
) -> None:
    row[field] = value
    try:
        transform(row)
    except ValidationError as exc:
        message = str(exc)
    else:
        return  # the value happened to be valid
    assert message.startswith(field)


@given(st.lists(st.one_of(rows, st.dictionaries(st.sampled_from(FIELDS), anything)), max_size=20))
def test_csv_and_json_lines_give_the_same_rows_and_rejects(records: list[dict[str, Any]]) -> None:
    # Both formats carry text here; one physical line per row, so line numbers compare.
    texts = [
        {
            f: "" if r.get(f) is None else str(r[f]).replace("\n", " ").replace("\r", " ")
            for f in FIELDS
        }
        for r in records
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(texts)
    jsonl = "".join(json.dumps(text, ensure_ascii=False) + "\n" for text in texts)

    from_csv = parse_object("x.csv", out.getvalue().encode())
    from_json = parse_object("x.jsonl", jsonl.encode())

    assert from_csv.read == from_json.read == len(records)
    assert [r[2:] for r in from_csv.rows] == [r[2:] for r in from_json.rows]
    assert [r.reason for r in from_csv.rejects] == [r.reason for r in from_json.rejects]
    # Line numbers are the object's own: JSON line n is CSV line n + 1 (the header).
    assert [r[1] - 1 for r in from_csv.rows] == [r[1] for r in from_json.rows]


@given(st.binary(max_size=200), st.sampled_from(["x.csv", "x.jsonl"]))
def test_any_bytes_parse_or_fail_as_a_whole_with_a_validation_error(body: bytes, key: str) -> None:
    with contextlib.suppress(ValidationError):
        parsed = parse_object(key, body)
        assert all(reject.reason for reject in parsed.rejects)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("quantity", "1.5", "quantity must be an integer"),
        ("quantity", True, "quantity must be an integer"),
        ("unit_price", 1.1, "unit_price must be a decimal"),
        ("unit_price", "sNaN", "unit_price must be a decimal"),
        ("unit_price", "2.999", "more than two decimal places"),
        ("ordered_at", "2026-03-01T09:30:00", "UTC offset"),
        ("sku", "  ", "sku must be"),
    ],
)
def test_bad_values_are_named(field: str, value: Any, reason: str) -> None:
    row = {
        "order_id": "o-1",
        "sku": "a",
        "quantity": "1",
        "unit_price": "1.00",
        "ordered_at": "2026-03-01T09:30:00Z",
    }
    row[field] = value
    with pytest.raises(ValidationError, match=reason):
        transform(row)


def test_json_numbers_are_accepted_where_exact() -> None:
    row = {
        "order_id": "o",
        "sku": "a",
        "quantity": 2,
        "unit_price": 3,
        "ordered_at": "2026-01-01T00:00:00Z",
    }
    assert transform(row)[2:5] == (2, Decimal("3.00"), Decimal("6.00"))


def test_objects_as_a_whole() -> None:
    assert format_of("a/b.ndjson") == "jsonl"
    with pytest.raises(ValidationError, match="unknown format"):
        parse_object("a.parquet", b"")
    with pytest.raises(ValidationError, match="header"):
        parse_object("a.csv", b"a,b\n1,2\n")
    assert parse_object("a.csv", b"").read == 0
    short = parse_object(
        "a.csv", b"\xef\xbb\xbforder_id,sku,quantity,unit_price,ordered_at\n1,2\n\n"
    )
    assert [(r.line_no, r.reason) for r in short.rejects] == [(2, "expected 5 fields, found 2")]
    lines = parse_object("a.jsonl", b'[1]\n\n{"order_id": 1}\nnot json\n')
    assert [r.line_no for r in lines.rejects] == [1, 3, 4]
