"""Deterministic test objects: order lines as CSV or JSON lines, some of them bad."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: Every BAD_EVERY-th row is bad, in one of these ways (field, value), in turn.
BAD_EVERY = 50
BAD_VALUES: list[tuple[str, Any]] = [
    ("quantity", "0"),
    ("unit_price", "1.005"),
    ("ordered_at", "2026-03-01 09:30:00"),  # no UTC offset
    ("sku", ""),
    ("order_id", "o/../x"),
]


@dataclass
class Batch:
    """One object's body and what loading it must give."""

    key: str
    body: bytes
    good: int
    bad: int
    amount: Decimal  # the sum of the good rows' amounts


def make_object(key: str, rows: int, first: int = 0) -> Batch:
    """``rows`` order lines numbered from ``first``; CSV or JSON lines by ``key``'s suffix."""
    records: list[dict[str, Any]] = []
    good = bad = 0
    amount = Decimal(0)
    for n in range(first, first + rows):
        quantity = n % 7 + 1
        price = Decimal(n % 1000) / 100
        record: dict[str, Any] = {
            "order_id": f"o-{n // 3}",
            "sku": f"sku-{n % 101}",
            "quantity": str(quantity),
            "unit_price": str(price),
            "ordered_at": f"2026-03-{n % 28 + 1:02d}T{n % 24:02d}:15:00+01:00",
        }
        if n % BAD_EVERY == BAD_EVERY - 1:
            field, value = BAD_VALUES[(n // BAD_EVERY) % len(BAD_VALUES)]
            record[field] = value
            bad += 1
        else:
            good += 1
            amount += quantity * price
        records.append(record)
    if key.endswith(".csv"):
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        body = out.getvalue().encode()
    else:
        body = "".join(json.dumps(r) + "\n" for r in records).encode()
    return Batch(key, body, good, bad, amount)


def make_objects(prefix: str, count: int, rows: int) -> list[Batch]:
    """``count`` objects of ``rows`` rows, alternately CSV and JSON lines."""
    return [
        make_object(f"{prefix}part-{i:03d}.{'csv' if i % 2 == 0 else 'jsonl'}", rows, i * rows)
        for i in range(count)
    ]
